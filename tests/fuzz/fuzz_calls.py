"""Calling any RPC with raw bytes, and what makes an answer acceptable.

Calls go through grpc's generic multi-callables (``channel.unary_unary(path,
request_serializer=None, response_deserializer=None)`` and the stream variants), so requests
are bytes the suite made (valid or not) and answers are bytes it parses itself. Every call has a
deadline; a server stream is read to ``MAX_RESPONSES`` answers and then cancelled.

An answer is acceptable when it is

- OK, its answers parse as the RPC's output type and carry only finite numbers (no ``inf`` or
  ``nan`` in a float field or a float32 vector), or
- a deliberate status (``DELIBERATE``) whose details are a sentence: not empty, at most
  ``MAX_DETAILS_CHARS`` characters, not one of grpc's own messages, and never holding the
  server's configured secret; DEADLINE_EXCEEDED and CANCELLED only for long jobs cut short.

Never INTERNAL, UNKNOWN, UNIMPLEMENTED, DATA_LOSS, ABORTED, UNAUTHENTICATED, nor UNAVAILABLE
(unless ``ABSENT_DEPENDENCIES`` names the service: every dependency of the fuzz server is
present), nor a deadline on a call that should be quick. The server's log may grow by at most
``MAX_LOG_GROWTH_PER_CALL`` per call (an echoed client value is bounded in logs too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from fuzz_messages import Rpc, message_class, short_repr
from fuzz_server import SECRET_CANARY
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

#: Deadline of a call that should answer quickly, seconds (generous for a shared 2-core machine).
QUICK_DEADLINE_S = 30.0
#: Deadline of a long job (Train, IndexDocuments): fuzzed with small inputs and cut short.
LONG_JOB_DEADLINE_S = 4.0
#: Answers read from a server stream before the call is cancelled.
MAX_RESPONSES = 8
#: The longest details sentence accepted: about 1,000 characters (the kit cuts a longer one at 1,000
#: and marks the cut with the original length).
MAX_DETAILS_CHARS = 1100

DELIBERATE = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.ALREADY_EXISTS,
    }
)
#: Services whose dependency this fuzz server does not provide, with the reason: only these may
#: answer UNAVAILABLE. None yet: the encoder, sae and search services have all they need here.
ABSENT_DEPENDENCIES: dict[str, str] = {}
#: How much the server's log may grow from one fuzzed call (a client's megabyte must not be logged).
MAX_LOG_GROWTH_PER_CALL = 64 * 1024
#: Statuses a long job may end with when the suite's short deadline (or its cancel) cuts it off.
CUT_SHORT = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})
#: Details that grpc writes itself: the status did not come from the service's error handling.
GRPC_OWN_DETAILS = (
    "received metadata size exceeds",
    "exception deserializing",
    "exception serializing",
    "exception iterating",
    "exception calling application",
    "unexpected <class",
    "method not implemented",
    "failed parsing http/2",
    "stream removed",
)


@dataclass
class Answer:
    """How one call ended."""

    code: grpc.StatusCode
    details: str
    responses: list[bytes] = field(default_factory=list)
    #: The suite cancelled the server stream after reading MAX_RESPONSES answers.
    cut_by_client: bool = False

    def summary(self) -> str:
        details = (
            self.details
            if len(self.details) <= 300
            else f"{self.details[:300]}... ({len(self.details):,} chars)"
        )
        return f"{self.code.name} {details!r} after {len(self.responses)} answer(s)"


def deadline_of(rpc: Rpc) -> float:
    return LONG_JOB_DEADLINE_S if rpc.long_job else QUICK_DEADLINE_S


def _multicallable(channel: grpc.Channel, rpc: Rpc) -> Any:
    """The generic multi-callable of the RPC's kind, sending and receiving raw bytes."""
    if rpc.client_streaming:
        make: Any = channel.stream_stream if rpc.server_streaming else channel.stream_unary
    else:
        make = channel.unary_stream if rpc.server_streaming else channel.unary_unary
    return make(rpc.path, request_serializer=None, response_deserializer=None)


def call(channel: grpc.Channel, rpc: Rpc, payloads: Sequence[bytes], timeout: float | None = None) -> Answer:
    """Send ``payloads`` (one, or a client stream of them) as raw bytes; how the call ended."""
    timeout = deadline_of(rpc) if timeout is None else timeout
    callable_ = _multicallable(channel, rpc)
    request: Any = iter(list(payloads)) if rpc.client_streaming else payloads[0]
    responses: list[bytes] = []
    if not rpc.server_streaming:
        try:
            responses.append(callable_(request, timeout=timeout))
        except grpc.RpcError as error:
            return Answer(error.code(), error.details() or "")
        return Answer(grpc.StatusCode.OK, "", responses)
    stream = callable_(request, timeout=timeout)
    try:
        for response in stream:
            responses.append(response)
            if len(responses) >= MAX_RESPONSES:
                stream.cancel()
                return Answer(grpc.StatusCode.OK, "", responses, cut_by_client=True)
    except grpc.RpcError as error:
        return Answer(error.code(), error.details() or "", responses)
    return Answer(grpc.StatusCode.OK, "", responses)


def describe(messages: Sequence[Message] | None, payloads: Sequence[bytes]) -> str:
    """The request for a failure message: its text form (shortened), else its bytes."""
    if messages is not None:
        return short_repr(messages)
    return "raw bytes: " + short_repr(payloads, limit=160)


def _float32_vector(descriptor: FieldDescriptor, names: set[str]) -> bool:
    return descriptor.name == "data" and descriptor.type == FieldDescriptor.TYPE_BYTES and "dim" in names


def _all_finite_float32(data: bytes) -> bool:
    return len(data) % 4 != 0 or bool(np.isfinite(np.frombuffer(data, dtype="<f4")).all())


def non_finite_numbers(message: Message, prefix: str = "") -> list[str]:
    """Paths of float fields (and float32 vectors: ``bytes data`` next to ``dim``) that hold inf or nan."""
    found: list[str] = []
    names = {f.name for f in message.DESCRIPTOR.fields}
    for descriptor, value in message.ListFields():
        path = f"{prefix}{descriptor.name}"
        repeated = descriptor.is_repeated
        if descriptor.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
            values = list(value) if repeated else [value]
            if not all(math.isfinite(v) for v in values):
                found.append(path)
        elif descriptor.message_type is not None and not descriptor.message_type.GetOptions().map_entry:
            for index, child in enumerate(value if repeated else [value]):
                found += non_finite_numbers(child, f"{path}[{index}]." if repeated else f"{path}.")
        elif _float32_vector(descriptor, names) and not _all_finite_float32(value):
            found.append(path)
    return found


def problems(rpc: Rpc, answer: Answer) -> list[str]:
    """What is wrong with how the call ended (empty: acceptable)."""
    found: list[str] = []
    if answer.code == grpc.StatusCode.OK:
        output = message_class(rpc.output_type)
        for index, raw in enumerate(answer.responses):
            try:
                parsed = output.FromString(raw)
            except DecodeError as error:
                found.append(f"answer {index} does not parse as {rpc.output_type.full_name}: {error}")
                continue
            bad = non_finite_numbers(parsed)
            if bad:
                found.append(f"answer {index} holds non-finite numbers in {', '.join(bad[:5])}")
        return found
    allowed = DELIBERATE | (CUT_SHORT if rpc.long_job else frozenset())
    if rpc.service.full_name in ABSENT_DEPENDENCIES:
        allowed |= {grpc.StatusCode.UNAVAILABLE}
    if answer.code not in allowed:
        found.append(f"status {answer.code.name} is not a deliberate answer")
    details = answer.details.strip()
    if not details:
        found.append("the status has no sentence")
    if len(answer.details) > MAX_DETAILS_CHARS:
        found.append(f"the sentence is {len(answer.details):,} characters long (at most {MAX_DETAILS_CHARS})")
    lowered = details.lower()
    own = [marker for marker in GRPC_OWN_DETAILS if marker in lowered]
    if own and answer.code not in CUT_SHORT:
        found.append(f"the sentence is grpc's own ({own[0]!r}), not the service's")
    if SECRET_CANARY in answer.details:
        found.append("the sentence holds a configured secret")
    return found


def check(rpc: Rpc, answer: Answer, request: str) -> None:
    """Fail with the request and the answer when the answer is not acceptable."""
    found = problems(rpc, answer)
    assert not found, f"{rpc.path}: {'; '.join(found)}\n  answer: {answer.summary()}\n  request: {request}"

"""Every RPC of every service answers random and hostile requests deliberately and stays healthy.

The RPCs are found in the proto descriptors (``fuzz_messages.api_rpcs``), so a new RPC is fuzzed
as soon as its stubs are generated; one that no running servicer implements yet is skipped with
the reason. For each RPC, two kinds of examples:

- typed: requests built field by field from the descriptors, tame or wild (``fuzz_messages``);
- mutated: valid-looking requests serialized and then truncated, bit-flipped, padded with garbage.

Every answer must be OK or a deliberate status with a bounded sentence (``fuzz_calls.problems``),
and the server must report SERVING after each batch of examples. The short profile runs by
default, the long one under ``-m slow``. A request that ever fails here is added, verbatim, to
``test_fuzz_regressions.py`` so that it is sent on every run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
import pytest
from fuzz_calls import MAX_LOG_GROWTH_PER_CALL, Answer, call, check, describe
from fuzz_messages import Rpc, Sent, SentBytes, api_rpcs, mutated, requests
from fuzz_profiles import LONG, SHORT, Tally
from fuzz_server import FuzzServer
from google.protobuf.message import Message
from hypothesis import given, settings

pytestmark = pytest.mark.fuzz

RPCS = api_rpcs()
#: Health is asked again after this many examples (and after every batch).
HEALTH_EVERY = 10


def served(server: FuzzServer, rpc: Rpc) -> None:
    """Skip, saying why, an RPC that nothing on the server implements yet."""
    if rpc.service.full_name not in server.served:
        pytest.skip(
            f"{rpc.service.full_name} is not served: no running servicer implements it yet "
            "(the server's health service does not know it)"
        )
    answer = call(server.channel, rpc, [b""])
    if answer.code == grpc.StatusCode.UNIMPLEMENTED:
        pytest.skip(f"{rpc.path} answers UNIMPLEMENTED: its servicer does not implement it yet")


def run_batch(server: FuzzServer, what: str, examples: Callable[[], None]) -> None:
    """Run a Hypothesis test, then require a healthy server (noted on a failure too)."""
    try:
        examples()
    except BaseException as error:
        exit_code = server.host.process.poll()
        status = server.health() if exit_code is None else f"the server exited with {exit_code}"
        error.add_note(f"server after the failing example: {status}; log: {server.log_path}")
        raise
    server.assert_healthy(after=what)


class Sender:
    """Sends one example's payloads, counts it, checks the answer and, every few, the health."""

    def __init__(self, server: FuzzServer, rpc: Rpc, profile: str, tally: Tally) -> None:
        self.server, self.rpc, self.profile, self.tally = server, rpc, profile, tally
        self.sent = 0

    def __call__(self, payloads: Sequence[bytes], messages: Sequence[Message] | None) -> Answer:
        log_before = self.server.log_size()
        answer = call(self.server.channel, self.rpc, payloads)
        grown = self.server.log_size() - log_before
        self.tally.add(self.profile, self.rpc.id, len(payloads), answer.code.name, answer.details)
        self.sent += 1
        check(self.rpc, answer, describe(messages, payloads))
        assert grown <= MAX_LOG_GROWTH_PER_CALL, (
            f"{self.rpc.path}: one call grew the server log by {grown:,} bytes\n"
            f"  request: {describe(messages, payloads)}"
        )
        if self.sent % HEALTH_EVERY == 0:
            self.server.assert_healthy(after=f"{self.sent} examples of {self.rpc.id}")
        return answer


def fuzz_typed(server: FuzzServer, rpc: Rpc, profile: str, tally: Tally) -> None:
    send = Sender(server, rpc, profile, tally)

    @settings(settings.get_profile(profile))
    @given(sent=requests(rpc, server.hints))
    def typed(sent: Sent) -> None:
        send([message.SerializeToString() for message in sent], sent)

    run_batch(server, f"typed messages for {rpc.id}", typed)


def fuzz_mutated(server: FuzzServer, rpc: Rpc, profile: str, tally: Tally) -> None:
    send = Sender(server, rpc, profile, tally)
    base = settings.get_profile(profile)
    payloads = requests(rpc, server.hints).flatmap(
        lambda sent: mutated([m.SerializeToString() for m in sent])
    )

    @settings(base, max_examples=max(1, base.max_examples // 2))
    @given(sent=payloads)
    def mutated_bytes(sent: SentBytes) -> None:
        send(sent, None)

    run_batch(server, f"mutated bytes for {rpc.id}", mutated_bytes)


@pytest.fixture(params=RPCS, ids=[rpc.id for rpc in RPCS])
def rpc(request: pytest.FixtureRequest, fuzz_server: FuzzServer) -> Rpc:
    chosen: Rpc = request.param
    served(fuzz_server, chosen)
    return chosen


def test_every_rpc_is_found_in_the_descriptors() -> None:
    ids = {rpc.id for rpc in RPCS}
    assert {"EncoderService.Embed", "SaeService.Train", "SearchService.IndexDocuments"} <= ids


def test_typed_messages_get_deliberate_answers(fuzz_server: FuzzServer, rpc: Rpc, fuzz_tally: Tally) -> None:
    fuzz_typed(fuzz_server, rpc, SHORT, fuzz_tally)


def test_mutated_bytes_get_deliberate_answers(fuzz_server: FuzzServer, rpc: Rpc, fuzz_tally: Tally) -> None:
    fuzz_mutated(fuzz_server, rpc, SHORT, fuzz_tally)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_many_typed_messages_get_deliberate_answers(
    fuzz_server: FuzzServer, rpc: Rpc, fuzz_tally: Tally
) -> None:
    fuzz_typed(fuzz_server, rpc, LONG, fuzz_tally)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_many_mutated_bytes_get_deliberate_answers(
    fuzz_server: FuzzServer, rpc: Rpc, fuzz_tally: Tally
) -> None:
    fuzz_mutated(fuzz_server, rpc, LONG, fuzz_tally)

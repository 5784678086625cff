"""Hypothesis strategies that build requests for any RPC from its proto descriptors.

Nothing here names an RPC: every service of every ``featurelens.v1.*_pb2`` module is found by
walking ``DESCRIPTOR.services_by_name``, and a request is built field by field from the
``FieldDescriptor`` types, recursing into nested messages down to a depth limit. A new RPC (the
labelling and family services to come) is fuzzed without new code here.

Two temperatures, drawn once per request and passed down to nested messages:

- **tame**: values a client would plausibly send (an SAE id the server has, a corpus it holds, a
  path inside the allowed folder, small counts, a vector of the right dimension), so the request
  gets past validation into the code behind it; a client stream starts with the first member of
  its oneof (the set-up message) and goes on with the others;
- **wild**: each field tame, just out of range (the limit plus one, a feature id past the last
  latent, a damaged file) or hostile: empty, ~1 MB and NUL-bearing strings, unicode, ``../``
  paths, random bytes, integers at 0, 1 and their type's limits, nan, ±inf, -0.0, 3e38 and
  subnormal floats, empty and long repeated fields, unknown enum values, no member of a oneof.

Values that reach deep code are chosen by field name (``sae_id``, ``corpus``, ``*_path``,
``feature``, ...) and by message shape (a ``bytes data`` with a ``dim`` is a little-endian float32
vector), never by message name, so new messages that reuse the vocabulary benefit as well.

``mutated`` turns serialized requests into raw bytes that may no longer parse: truncated,
bit-flipped, with garbage appended or spliced in, with an unknown field or a bad wire type.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
import numpy as np
from fuzz_server import Hints
from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

import featurelens.v1

#: How deep nested messages are built (a message inside a message inside a request is depth 2).
MAX_DEPTH = 4
#: The longest string or bytes value a strategy makes (the issue's probes went to ~1 MB).
HUGE = 1 << 20
#: The most elements of a repeated scalar field (a wild one); messages get fewer.
LONG_REPEATED = 300
MAX_REPEATED_MESSAGES = 12
#: The most float32 values in one generated dense vector or matrix.
MAX_DENSE_VALUES = 1 << 16
#: How many messages a client stream sends at most.
MAX_STREAM_MESSAGES = 4


# -- the RPCs, from the descriptors ---------------------------------------------------------------


@dataclass(frozen=True)
class Rpc:
    """One method of one service, as its descriptor describes it."""

    service: ServiceDescriptor
    method: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.service.full_name}/{self.method.name}"

    @property
    def id(self) -> str:
        return f"{self.service.name}.{self.method.name}"

    @property
    def input_type(self) -> Descriptor:
        return self.method.input_type

    @property
    def output_type(self) -> Descriptor:
        return self.method.output_type

    @property
    def client_streaming(self) -> bool:
        return bool(self.method.client_streaming)

    @property
    def server_streaming(self) -> bool:
        return bool(self.method.server_streaming)

    @property
    def long_job(self) -> bool:
        """A job that may run for minutes (Train, IndexDocuments, LabelFeatures, ...): a server
        stream whose answers report ``Progress``. Only these may be cut short by a deadline."""
        return self.server_streaming and any(
            f.message_type is not None and f.message_type.name == "Progress" for f in self.output_type.fields
        )


def api_services() -> list[ServiceDescriptor]:
    """Every service of every generated ``featurelens.v1.*_pb2`` module, in a stable order."""
    services: dict[str, ServiceDescriptor] = {}
    for module_info in pkgutil.iter_modules(featurelens.v1.__path__):
        if not module_info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"featurelens.v1.{module_info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            services[service.full_name] = service
    return [services[name] for name in sorted(services)]


def api_rpcs() -> list[Rpc]:
    return [Rpc(service, method) for service in api_services() for method in service.methods]


def message_class(descriptor: Descriptor) -> type[Message]:
    return GetMessageClass(descriptor)


# -- scalar values ----------------------------------------------------------------------------------

_T = FieldDescriptor
_INT_RANGES = {
    _T.TYPE_INT32: (-(2**31), 2**31 - 1),
    _T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _T.TYPE_INT64: (-(2**63), 2**63 - 1),
    _T.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _T.TYPE_UINT32: (0, 2**32 - 1),
    _T.TYPE_FIXED32: (0, 2**32 - 1),
    _T.TYPE_UINT64: (0, 2**64 - 1),
    _T.TYPE_FIXED64: (0, 2**64 - 1),
}
SPECIAL_FLOATS = [
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    3e38,
    -3e38,
    3.4028234663852886e38,
    1e-45,
    1.1754943508222875e-38,
    1e-30,
    1.0,
    -1.0,
    0.5,
    2.0,
]
SPECIAL_DOUBLES = [*SPECIAL_FLOATS, 1.7976931348623157e308, 5e-324]
HOSTILE_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "../",
    "../../../../etc/passwd",
    "..",
    ".",
    "/",
    "z" * 255,
    "z" * 256,
    "z" * 300,
    "é",
    "🙂" * 10,
    "\u202e\u0635\u0648\u062a",
    "\ufeff",
    "\ud7ff\ue000\uffff",
    "%s%n%x{0}{}",
    "'; DROP TABLE documents; --",
    '{"id": 1}',
    "\r\n\t\x1b[31m",
    "NaN",
    "-1",
    "sk-fuzz0000000000000000000000000000",
    "Basic dXNlcjpwYXNz",
]
#: Units a huge string repeats (its length is drawn, up to ~1 MB).
HUGE_UNITS = ["z", "é", "\x00", "../", "🙂", "a/"]


def ints_of(field: FieldDescriptor) -> st.SearchStrategy[int]:
    low, high = _INT_RANGES[field.type]
    edges = sorted(
        {0, 1, 2, high, high - 1, low, low + 1, -1 if low < 0 else 0, 2**31 - 1 if high > 2**31 else 0}
    )
    return st.one_of(st.sampled_from(edges), st.integers(0, 1024), st.integers(low, high))


def floats_of(field: FieldDescriptor) -> st.SearchStrategy[float]:
    if field.type == _T.TYPE_FLOAT:
        return st.one_of(st.sampled_from(SPECIAL_FLOATS), st.floats(-10, 10, width=32), st.floats(width=32))
    return st.one_of(st.sampled_from(SPECIAL_DOUBLES), st.floats(-10, 10), st.floats())


def huge_strings() -> st.SearchStrategy[str]:
    return st.builds(lambda unit, n: unit * (n // len(unit.encode()) or 1), st.sampled_from(HUGE_UNITS),
                     st.integers(8 * 1024, HUGE))  # fmt: skip


def hostile_strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(HOSTILE_STRINGS),
        st.text(max_size=40),
        st.text(st.characters(codec="utf-8"), max_size=300),
        huge_strings(),
    )


def random_bytes(max_size: int = 1 << 16) -> st.SearchStrategy[bytes]:
    """Bytes of a random length (drawn as a length and a seed, so long ones are cheap to make)."""
    return st.one_of(
        st.binary(max_size=64),
        st.builds(
            lambda n, seed: random.Random(seed).randbytes(n), st.integers(0, max_size), st.integers(0, 2**32)
        ),
    )


def _enum_numbers(field: FieldDescriptor) -> list[int]:
    assert field.enum_type is not None, field.full_name
    return [value.number for value in field.enum_type.values]


def tame_scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    """A plausible value of a scalar field of this type (no hint for its name)."""
    if field.type in _INT_RANGES:
        low, _ = _INT_RANGES[field.type]
        return st.integers(max(low, -2), 16)
    if field.type in (_T.TYPE_FLOAT, _T.TYPE_DOUBLE):
        return st.floats(-4, 4, width=32)
    if field.type == _T.TYPE_BOOL:
        return st.booleans()
    if field.type == _T.TYPE_STRING:
        return st.text(st.characters(codec="ascii", categories=["L", "N"]), max_size=12)
    if field.type == _T.TYPE_BYTES:
        return st.binary(max_size=16)
    if field.type == _T.TYPE_ENUM:
        return st.sampled_from(_enum_numbers(field))
    raise TypeError(f"no scalar strategy for {field.full_name} (type {field.type})")


def wild_scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    """Any value of a scalar field of this type, hostile ones favoured."""
    if field.type in _INT_RANGES:
        return ints_of(field)
    if field.type in (_T.TYPE_FLOAT, _T.TYPE_DOUBLE):
        return floats_of(field)
    if field.type == _T.TYPE_BOOL:
        return st.booleans()
    if field.type == _T.TYPE_STRING:
        return hostile_strings()
    if field.type == _T.TYPE_BYTES:
        return random_bytes()
    if field.type == _T.TYPE_ENUM:
        known = _enum_numbers(field)
        return st.one_of(
            st.sampled_from(known), st.sampled_from([-1, max(known) + 1, 99, 2**31 - 1, -(2**31)])
        )
    raise TypeError(f"no scalar strategy for {field.full_name} (type {field.type})")


# -- hints: values that reach deep code, by field name ---------------------------------------------

_FEATURE_FIELDS = {"feature", "features", "indices", "features_must_fire", "features_must_not_fire"}
#: Counts a client keeps small: pages, batches, sample sizes, steps.
_SMALL_COUNTS = {"top_k", "n", "limit", "count", "max_steps", "batch_id"}


def _paths_for(name: str, hints: Hints) -> list[str]:
    """Good server paths for a ``*_path`` field: embedding stores where its name says embeddings."""
    return hints.stores if "embedding" in name else hints.corpus_files


def tame_hint(field: FieldDescriptor, hints: Hints) -> st.SearchStrategy[Any] | None:
    """Values a client would send in a field with this name and type (None: no idea)."""
    name = field.name
    if field.type == _T.TYPE_STRING:
        if name in ("sae_id", "sae_ids"):
            # Empty means "the default SAE" in a single id; in a list it is an id of nothing.
            return st.sampled_from([*hints.sae_ids, *hints.sae_ids, *([] if field.is_repeated else [""])])
        if name in ("corpus", "corpora"):
            return st.sampled_from([*hints.corpora, *hints.corpora, "fuzz-new"])
        if name in ("model", "embedding_model", "model_id"):
            return st.sampled_from([*hints.models, ""])
        if name.endswith("_path"):
            return st.sampled_from(_paths_for(name, hints))
        if name in ("text", "texts", "title", "query", "label", "description"):
            return st.lists(st.sampled_from(hints.words), min_size=1, max_size=12).map(" ".join)
        if name in ("id", "ids", "doc_id", "doc_ids"):
            return st.one_of(
                st.sampled_from(hints.doc_ids), st.text(st.characters(codec="ascii"), max_size=20)
            )
        if name == "categories":
            return st.sampled_from(hints.categories)
        if name.startswith("date"):
            return st.sampled_from(hints.dates)
        return None
    if field.type in _INT_RANGES:
        if name in _FEATURE_FIELDS:
            return st.integers(0, hints.num_latents - 1)
        if name in ("dim", "d_in"):
            return st.sampled_from([0, hints.dim, hints.train_dim])
        if name == "num_latents":
            return st.sampled_from([64, 128, 256])
        if name == "k":
            return st.sampled_from([4, 8, 16])
        if name in ("k_aux", "multik_k", "dead_steps_threshold"):
            return st.sampled_from([0, 0, 32, 64])
        if name == "epochs":
            return st.sampled_from([1, 2])
        if name == "batch_size":
            return st.sampled_from([16, 32, 64, 128])
        if name == "offset":
            return st.sampled_from([0, 0, 1, 5])
        if name in _SMALL_COUNTS:
            return st.integers(1, 50)
        return None
    if field.type in (_T.TYPE_FLOAT, _T.TYPE_DOUBLE):
        if name in ("learning_rate", "lr"):
            return st.sampled_from([1e-3, 2e-3, 1e-2])
        if name.endswith("_fraction"):
            return st.sampled_from([0.0, 0.1, 0.25])
        if name.endswith("_coef"):
            return st.sampled_from([0.0, 1 / 32, 0.5])
        if name == "weight":
            return st.floats(-3, 3, width=32)
        if name.endswith("_weight"):
            return st.floats(0, 3, width=32)
        return None
    return None


def wild_hint(field: FieldDescriptor, hints: Hints) -> st.SearchStrategy[Any] | None:
    """Values just past what a field with this name accepts: off-by-one ids and limits, bad
    dates, names of nothing, paths that are wrong in every way."""
    name = field.name
    if field.type == _T.TYPE_STRING:
        if name.endswith("_path"):
            return st.sampled_from([*hints.bad_paths, *hints.corpus_files, *hints.stores])
        if name.startswith("date"):
            return st.sampled_from(["2024-13-45", "2024-02-30", "yesterday", "99999-01-01", "2024-1-1"])
        if name in ("sae_id", "sae_ids", "corpus", "model", "embedding_model"):
            return st.sampled_from(
                ["other", "sae-000000000000", "../" + hints.sae_ids[0], hints.sae_ids[0].upper()]
            )
        return None
    if field.type in _INT_RANGES:
        latents = hints.num_latents
        if name in _FEATURE_FIELDS:
            return st.sampled_from([latents - 1, latents, latents + 1, 2**31])
        if name in ("dim", "d_in"):
            return st.sampled_from([1, hints.dim - 1, hints.dim + 1, 2**20])
        if name in ("num_latents", "k", "k_aux", "multik_k"):
            return st.sampled_from([0, 1, 63, 64, 65, 1000, 4096, 4097, 1_000_000, 4294967295])
        if name == "offset":
            return st.sampled_from([9001, 10_000, 10_001])
        if name in ("top_k", "n", "batch_size", "epochs", "limit"):
            return st.sampled_from(
                [0, 1, 2, 4, 5, 1000, 1001, 2048, 2049, 4096, 4097, 10_000, 65_536, 65_537]
            )
        return None
    return None


# -- messages ----------------------------------------------------------------------------------------


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _oneof_groups(descriptor: Descriptor) -> tuple[list[list[FieldDescriptor]], list[FieldDescriptor]]:
    """The real oneofs' member lists, and the other fields (proto3 ``optional`` fields sit in a
    one-member synthetic oneof: they are plain fields with presence)."""
    groups = [list(o.fields) for o in descriptor.oneofs if len(o.fields) > 1 or not o.name.startswith("_")]
    grouped = {f.full_name for group in groups for f in group}
    return groups, [f for f in descriptor.fields if f.full_name not in grouped]


def _dense_shape(descriptor: Descriptor) -> bool:
    """A ``bytes data`` field with an unsigned ``dim``: a float32 vector or (with ``count``) matrix."""
    fields = descriptor.fields_by_name
    return (
        "data" in fields
        and fields["data"].type == _T.TYPE_BYTES
        and "dim" in fields
        and fields["dim"].type in _INT_RANGES
    )


def _float32_payload(draw: st.DrawFn, values: int, wild: bool) -> bytes:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1.0, 0.1, 10.0] + ([1e-30, 1e30, 3e38, 1e-45] if wild else [])))
    fill = draw(
        st.sampled_from(["normal", "normal", "constant", "specials"] if wild else ["normal", "constant"])
    )
    with np.errstate(over="ignore", invalid="ignore"):
        if fill == "constant":
            array = np.full(values, scale, dtype=np.float32)
        else:
            array = (rng.standard_normal(values) * scale).astype(np.float32)
        if fill == "specials" and values:
            picks = rng.integers(0, values, size=max(1, values // 10))
            array[picks] = rng.choice(np.array(SPECIAL_FLOATS, dtype=np.float32), size=len(picks))
    return array.astype("<f4").tobytes()


@st.composite
def dense_messages(draw: st.DrawFn, descriptor: Descriptor, hints: Hints, wild: bool) -> Message:
    """A dense vector or matrix whose bytes agree with its shape (mostly), filled with floats."""
    message: Any = message_class(descriptor)()
    fields = descriptor.fields_by_name
    dim_choices = [hints.dim, hints.dim, hints.train_dim]
    if wild:
        dims = st.one_of(st.sampled_from([*dim_choices, 0, 1, 2, 4096]), st.integers(0, 2**32 - 1))
    else:
        dims = st.sampled_from(dim_choices)
    dim = draw(dims)
    rows = 1
    if "count" in fields:
        rows = draw(st.sampled_from([1, 1, 2, 3, 8]) if not wild else st.sampled_from([0, 1, 2, 7, 64, 4097]))
        message.count = rows
    message.dim = dim
    values = dim * rows
    if values > MAX_DENSE_VALUES:
        message.data = draw(random_bytes(4096))
        return message
    data = _float32_payload(draw, values, wild)
    if wild:
        cut = draw(st.sampled_from(["none", "none", "short", "long", "odd"]))
        if cut == "short":
            data = data[: max(0, len(data) - 4 * draw(st.integers(1, 4)))]
        elif cut == "long":
            data += data[:4] * draw(st.integers(1, 4))
        elif cut == "odd":
            data += b"\x01"
    message.data = data
    return message


def _set_value(message: Message, field: FieldDescriptor, value: Any) -> None:
    if field.message_type is not None:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


def value_strategy(field: FieldDescriptor, hints: Hints, wild: bool, depth: int) -> st.SearchStrategy[Any]:
    """One (non-repeated) value of ``field``."""
    if field.message_type is not None:
        return messages(field.message_type, hints, wild=wild, depth=depth + 1)
    tame = tame_hint(field, hints)
    if tame is None:
        tame = tame_scalar(field)
    if not wild:
        return tame
    near = wild_hint(field, hints)
    return st.one_of(tame, *([near] if near is not None else []), wild_scalar(field))


def _list_sizes(wild: bool, of_messages: bool) -> st.SearchStrategy[int]:
    if of_messages:
        return st.integers(0, MAX_REPEATED_MESSAGES if wild else 4)
    if wild:
        return st.one_of(st.integers(0, 8), st.sampled_from([0, 1, 64, 255, 256, 257, LONG_REPEATED]))
    return st.integers(0, 8)


@st.composite
def _fill_field(
    draw: st.DrawFn, message: Message, field: FieldDescriptor, hints: Hints, wild: bool, depth: int
) -> None:
    if _is_map(field):
        entry = field.message_type
        assert entry is not None
        key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
        target = getattr(message, field.name)
        for _ in range(draw(_list_sizes(wild, of_messages=True))):
            key = draw(value_strategy(key_field, hints, wild, depth))
            value = draw(value_strategy(value_field, hints, wild, depth))
            if value_field.message_type is not None:
                target[key].CopyFrom(value)
            else:
                target[key] = value
        return
    if field.is_repeated:
        size = draw(_list_sizes(wild, of_messages=field.message_type is not None))
        if size == 0:
            return
        element = value_strategy(field, hints, wild, depth)
        if field.message_type is None and size > 16:
            # A long list: one drawn value repeated with a few drawn ones mixed in (cheap to make).
            values = [draw(element)] * size
            for _ in range(draw(st.integers(0, 4))):
                values[draw(st.integers(0, size - 1))] = draw(element)
        else:
            values = [draw(element) for _ in range(size)]
        target = getattr(message, field.name)
        if field.message_type is not None:
            for value in values:
                target.add().CopyFrom(value)
        else:
            target.extend(values)
        return
    _set_value(message, field, draw(value_strategy(field, hints, wild, depth)))


def _oneof_choice(group: list[FieldDescriptor], wild: bool, lead: bool | None) -> st.SearchStrategy[Any]:
    if lead is True:
        return st.just(group[0])
    if lead is False and len(group) > 1:
        return st.sampled_from(group[1:])
    members = st.sampled_from(group)
    return st.one_of(st.none(), members) if wild else members


@st.composite
def _generic_message(
    draw: st.DrawFn, descriptor: Descriptor, hints: Hints, wild: bool, depth: int, lead: bool | None = None
) -> Message:
    message = message_class(descriptor)()
    if depth > MAX_DEPTH:
        return message
    groups, plain = _oneof_groups(descriptor)
    for group in groups:
        chosen = draw(_oneof_choice(group, wild, lead))
        if chosen is not None:
            draw(_fill_field(message, chosen, hints, wild, depth))
    for field in plain:
        # Most requests set the fields there are good values for (a wild one then spoils some).
        known = field.message_type is not None or tame_hint(field, hints) is not None
        if draw(_likely(0.9 if not wild else 0.7) if known else st.booleans()):
            draw(_fill_field(message, field, hints, wild, depth))
    return message


def _likely(p: float) -> st.SearchStrategy[bool]:
    """True with probability about ``p``."""
    return st.integers(0, 99).map(lambda n: n < round(p * 100))


def messages(
    descriptor: Descriptor, hints: Hints, *, wild: bool, depth: int = 0, lead: bool | None = None
) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``: tame ones that look valid, or wild ones with hostile values.

    ``lead`` (a client stream's messages): True picks the first member of every oneof, as the first
    message of a stream usually sets up the call (``IndexSetup``); False picks the other members.
    """
    generic = _generic_message(descriptor, hints, wild, depth, lead)
    if _dense_shape(descriptor) and depth <= MAX_DEPTH:
        shaped = dense_messages(descriptor, hints, wild)
        return st.one_of(shaped, shaped, generic) if wild else shaped
    return generic


class Sent(list[Message]):
    """The requests of one call, with a bounded repr (Hypothesis prints a failing example's repr,
    and a drawn request can hold megabytes)."""

    def __repr__(self) -> str:
        return short_repr(self)


class SentBytes(list[bytes]):
    """The raw payloads of one call, with a bounded repr."""

    def __repr__(self) -> str:
        return short_repr(self)


def short_repr(messages: Sequence[Message | bytes], limit: int = 600) -> str:
    """The text form of each request (its bytes in hex for a raw payload), each cut at ``limit``."""
    parts = []
    for message in messages:
        if isinstance(message, bytes):
            text = message.hex()
        else:
            text = text_format.MessageToString(message, as_one_line=True, as_utf8=True)
        parts.append(text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} chars)")
    return "[" + " | ".join(parts) + "]"


def requests(rpc: Rpc, hints: Hints) -> st.SearchStrategy[Sent]:
    """What one call sends: one request, or (client streaming) a few of them; tame or wild."""

    def of_temperature(wild: bool) -> st.SearchStrategy[Sent]:
        if not rpc.client_streaming:
            return st.builds(lambda m: Sent([m]), messages(rpc.input_type, hints, wild=wild))
        if wild:
            return st.lists(messages(rpc.input_type, hints, wild=True), max_size=MAX_STREAM_MESSAGES).map(
                Sent
            )
        first = messages(rpc.input_type, hints, wild=False, lead=True)
        rest = st.lists(
            messages(rpc.input_type, hints, wild=False, lead=False), max_size=MAX_STREAM_MESSAGES - 1
        )
        return st.builds(lambda head, tail: Sent([head, *tail]), first, rest)

    return st.booleans().flatmap(of_temperature)


# -- raw byte mutations --------------------------------------------------------------------------------


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))] if data else data


def _flip_bits(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    mutable = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        mutable[rng.randrange(len(mutable))] ^= 1 << rng.randrange(8)
    return bytes(mutable)


def _append_garbage(data: bytes, rng: random.Random) -> bytes:
    return data + rng.randbytes(rng.randint(1, 64))


def _splice_garbage(data: bytes, rng: random.Random) -> bytes:
    at = rng.randint(0, len(data))
    return data[:at] + rng.randbytes(rng.randint(1, 32)) + data[at:]


def _overlong_length(data: bytes, rng: random.Random) -> bytes:
    # A length-delimited field 1..15 whose length runs past the end.
    return data + bytes([(rng.randint(1, 15) << 3) | 2]) + b"\xff\xff\xff\xff\x0f" + rng.randbytes(4)


def _unknown_field(data: bytes, rng: random.Random) -> bytes:
    # A well-formed field the schema does not have: must be ignored, never fail the call.
    return data + b"\xf8\x07" + bytes([rng.randrange(128)])


def _bad_wire_type(data: bytes, rng: random.Random) -> bytes:
    return bytes([(rng.randint(1, 15) << 3) | rng.choice([3, 4, 6, 7])]) + data


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncate": _truncate,
    "flip": _flip_bits,
    "append": _append_garbage,
    "splice": _splice_garbage,
    "overlong": _overlong_length,
    "unknown-field": _unknown_field,
    "bad-wire-type": _bad_wire_type,
}


@st.composite
def mutated(draw: st.DrawFn, payloads: Sequence[bytes]) -> SentBytes:
    """``payloads`` (one call's serialized requests) with one to three mutations applied to one or
    all of them."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    names = draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3))
    result = list(payloads) or [b""]
    targets = range(len(result)) if draw(st.booleans()) else [draw(st.integers(0, len(result) - 1))]
    for index in targets:
        for name in names:
            result[index] = MUTATIONS[name](result[index], rng)
    return SentBytes(result)

"""Every request that ever got a wrong answer, sent on every run.

The first cases are the requests of issue 8 (found by probing the services from outside); a
request the fuzz suite finds later is added here verbatim, with what was wrong. Each must get an
acceptable answer (``fuzz_calls.problems``: OK with finite numbers, or a deliberate status with a
bounded sentence) and, where the issue says more, the status it names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from fuzz_calls import Answer, call, check, describe
from fuzz_messages import Rpc, api_rpcs, message_class
from fuzz_profiles import Tally
from fuzz_server import CORPUS, FuzzServer, Hints
from google.protobuf.message import Message

from featurelens.v1 import common_pb2, encoder_pb2, labelling_pb2, sae_pb2, search_pb2

pytestmark = pytest.mark.fuzz

PROFILE = "regressions"
RPCS = {rpc.id: rpc for rpc in api_rpcs()}
Code = grpc.StatusCode
#: How much the server's log may grow from one request that names something of many kilobytes.
MAX_LOG_GROWTH = 8 * 1024
#: Bytes that cannot be a protobuf message of any type: a field whose length runs past the end,
#: a varint cut off, a group end with no start.
INVALID_PROTOBUF = {
    "overlong-length": b"\x0a\xff\xff\xff\xff\x0f",
    "cut-varint": b"\x08\xff",
    "bad-wire-type": b"\x0f\x01",
}


@dataclass(frozen=True)
class Env:
    """What a case builds its request from."""

    hints: Hints
    allowed: Path

    @property
    def sae_id(self) -> str:
        return self.hints.sae_ids[0]


@dataclass(frozen=True)
class Case:
    """One request that once got a wrong answer, and what the answer must be now."""

    name: str
    rpc: str
    build: Callable[[Env], list[Message]]
    #: The issue's wrong answer, for the report.
    was: str
    #: The statuses the answer must have (empty: any acceptable answer).
    expect: frozenset[grpc.StatusCode] = frozenset()
    #: Phrases the sentence must not hold (it named something the client never sent).
    not_in_details: tuple[str, ...] = ()
    #: Names the sentence must hold when the call is refused (the file that is wrong).
    names: Callable[[Env], list[str]] | None = None
    check_log: bool = False


def setup(corpus: str = "fuzz-files", **fields: object) -> search_pb2.IndexDocumentsRequest:
    return search_pb2.IndexDocumentsRequest(setup=search_pb2.IndexSetup(corpus=corpus, **fields))  # type: ignore[arg-type]


def index_file(name: str) -> Callable[[Env], list[Message]]:
    """A job that indexes the allowed folder's file ``name``."""
    return lambda env: [setup(corpus_path=str(env.allowed / name))]


def name_of(name: str) -> Callable[[Env], list[str]]:
    return lambda env: [name]


def matrix(value: float, dim: int, count: int = 1) -> common_pb2.DenseMatrix:
    data = np.full(dim * count, value, dtype="<f4").tobytes()
    return common_pb2.DenseMatrix(data=data, dim=dim, count=count)


def vector(value: float, dim: int) -> common_pb2.DenseVector:
    return common_pb2.DenseVector(data=np.full(dim, value, dtype="<f4").tobytes(), dim=dim)


def steer_up(feature: int = 1, weight: float = 2.0) -> common_pb2.Intervention:
    return common_pb2.Intervention(feature=feature, weight=weight)


def train(env: Env, path: str | None = None, **config: int) -> sae_pb2.TrainRequest:
    return sae_pb2.TrainRequest(
        embeddings_path=str(env.allowed / "train.emb") if path is None else path,
        config=sae_pb2.SaeConfig(d_in=env.hints.train_dim, **config),
        epochs=1,
    )


HUGE_NAME = 20_000
FIVE_MB = 5 * 1024 * 1024

CASES = [
    # 1. A NUL byte in a path.
    Case("index-corpus-path-nul", "SearchService.IndexDocuments",
         lambda e: [setup(corpus_path=str(e.allowed / "a\x00b.jsonl"))],
         "INTERNAL embedded null byte", frozenset({Code.INVALID_ARGUMENT})),
    Case("index-embeddings-path-nul", "SearchService.IndexDocuments",
         lambda e: [setup(embeddings_path=str(e.allowed / "a\x00b.jsonl"))],
         "INTERNAL embedded null byte", frozenset({Code.INVALID_ARGUMENT})),
    Case("train-path-nul", "SaeService.Train",
         lambda e: [train(e, str(e.allowed / "a\x00b.emb"), num_latents=64, k=8)],
         "INVALID_ARGUMENT already (kept as the reference)", frozenset({Code.INVALID_ARGUMENT})),
    # 2. A path component over 255 characters.
    Case("train-path-300-chars", "SaeService.Train", lambda e: [train(e, "z" * 300, num_latents=64, k=8)],
         "INTERNAL File name too long", frozenset({Code.INVALID_ARGUMENT})),
    Case("index-corpus-path-300-chars", "SearchService.IndexDocuments",
         lambda e: [setup(corpus_path="z" * 300 + ".jsonl")],
         "INTERNAL File name too long", frozenset({Code.INVALID_ARGUMENT})),
    Case("index-embeddings-path-300-chars", "SearchService.IndexDocuments",
         lambda e: [setup(embeddings_path="z" * 300)],
         "INTERNAL File name too long", frozenset({Code.INVALID_ARGUMENT})),
    # 3. Malformed corpus files inside the allowed folder.
    *[
        Case(f"index-{name.replace('.', '-')}", "SearchService.IndexDocuments", index_file(name),
             "INTERNAL while counting records", names=name_of(name))
        for name in ("corrupt.parquet", "truncated.jsonl.gz", "latin1.csv")
    ],
    # 5. Unknown names of many kilobytes (echoed whole: RESOURCE_EXHAUSTED from grpc's metadata limit).
    Case("embed-unknown-model-20k", "EncoderService.Embed",
         lambda e: [encoder_pb2.EmbedRequest(texts=["galaxy"], model="m" * HUGE_NAME)],
         "RESOURCE_EXHAUSTED received metadata size exceeds limit",
         frozenset({Code.NOT_FOUND, Code.INVALID_ARGUMENT}), check_log=True),
    Case("get-sae-unknown-id-20k", "SaeService.GetSae",
         lambda e: [sae_pb2.GetSaeRequest(sae_id="s" * HUGE_NAME)],
         "RESOURCE_EXHAUSTED received metadata size exceeds limit",
         frozenset({Code.NOT_FOUND, Code.INVALID_ARGUMENT}), check_log=True),
    Case("encode-unknown-sae-20k", "SaeService.Encode",
         lambda e: [sae_pb2.EncodeRequest(sae_id="s" * HUGE_NAME, vectors=matrix(0.1, e.hints.dim))],
         "RESOURCE_EXHAUSTED received metadata size exceeds limit",
         frozenset({Code.NOT_FOUND, Code.INVALID_ARGUMENT}), check_log=True),
    Case("search-unknown-corpus-20k", "SearchService.Search",
         lambda e: [search_pb2.SearchRequest(corpus="c" * HUGE_NAME, text="galaxy")],
         "RESOURCE_EXHAUSTED received metadata size exceeds limit",
         frozenset({Code.NOT_FOUND, Code.INVALID_ARGUMENT}), check_log=True),
    Case("index-unknown-corpus-path-20k", "SearchService.IndexDocuments",
         lambda e: [setup(corpus_path=str(e.allowed) + "/d" * (HUGE_NAME // 2) + ".jsonl")],
         "RESOURCE_EXHAUSTED received metadata size exceeds limit",
         frozenset({Code.NOT_FOUND, Code.INVALID_ARGUMENT, Code.PERMISSION_DENIED}), check_log=True),
    Case("index-outside-corpus-path-20k", "SearchService.IndexDocuments",
         lambda e: [setup(corpus_path="/nowhere/" + "q" * HUGE_NAME)],
         "RESOURCE_EXHAUSTED received metadata size exceeds limit",
         frozenset({Code.NOT_FOUND, Code.INVALID_ARGUMENT, Code.PERMISSION_DENIED}), check_log=True),
    Case("train-unknown-path-20k", "SaeService.Train",
         lambda e: [train(e, str(e.allowed) + "/t" * (HUGE_NAME // 2), num_latents=64, k=8)],
         "RESOURCE_EXHAUSTED received metadata size exceeds limit",
         frozenset({Code.NOT_FOUND, Code.INVALID_ARGUMENT, Code.PERMISSION_DENIED}), check_log=True),
    Case("get-sae-unknown-id-5mb", "SaeService.GetSae",
         lambda e: [sae_pb2.GetSaeRequest(sae_id="s" * FIVE_MB)],
         "RESOURCE_EXHAUSTED, and 5 MB in the log",
         frozenset({Code.NOT_FOUND, Code.INVALID_ARGUMENT}), check_log=True),
    Case("embed-unknown-model-5mb", "EncoderService.Embed",
         lambda e: [encoder_pb2.EmbedRequest(texts=["galaxy"], model="m" * FIVE_MB)],
         "RESOURCE_EXHAUSTED, and 5 MB in the log",
         frozenset({Code.NOT_FOUND, Code.INVALID_ARGUMENT}), check_log=True),
    # Found by this suite on the code before the fixes: a unicode name, which grpc percent-encodes
    # to three times its UTF-8 size, over the metadata limit at 3,000 characters.
    Case("get-sae-unknown-unicode-id", "SaeService.GetSae",
         lambda e: [sae_pb2.GetSaeRequest(sae_id="🙂" * 3000)],
         "RESOURCE_EXHAUSTED received metadata size exceeds hard limit (value length 43988)",
         frozenset({Code.NOT_FOUND, Code.INVALID_ARGUMENT}), check_log=True),
    # 6. A valid search refused when rank changes are on.
    Case("search-rank-changes-deep-page", "SearchService.Search",
         lambda e: [search_pb2.SearchRequest(
             corpus=CORPUS, text="galaxy", mode=search_pb2.SEARCH_MODE_HYBRID, top_k=1000, offset=9001,
             interventions=[steer_up()], with_rank_changes=True)],
         "INVALID_ARGUMENT top_k must be from 1 to 10000, got 10001", frozenset({Code.OK})),
    # 7. Finite inputs that overflow to infinity.
    Case("encode-3e38", "SaeService.Encode",
         lambda e: [sae_pb2.EncodeRequest(sae_id=e.sae_id, vectors=matrix(3e38, e.hints.dim))],
         "OK with infinite activations"),
    Case("steer-3e38", "SaeService.Steer",
         lambda e: [sae_pb2.SteerRequest(sae_id=e.sae_id, vector=vector(3e38, e.hints.dim),
                                          interventions=[steer_up()])],
         "OK with infinite activations"),
    Case("decode-256-latents-3e38", "SaeService.Decode",
         lambda e: [sae_pb2.DecodeRequest(sae_id=e.sae_id, rows=[common_pb2.SparseVector(
             indices=list(range(e.hints.num_latents)), values=[3e38] * e.hints.num_latents)])],
         "OK with infinities"),
    Case("search-hybrid-3e38-vector", "SearchService.Search",
         lambda e: [search_pb2.SearchRequest(corpus=CORPUS, vector=vector(3e38, e.hints.dim),
                                              mode=search_pb2.SEARCH_MODE_HYBRID)],
         "INVALID_ARGUMENT naming a sparse vector the client never sent",
         not_in_details=("sparse vector holds",)),
    Case("search-steered-3e38-vector", "SearchService.Search",
         lambda e: [search_pb2.SearchRequest(corpus=CORPUS, vector=vector(3e38, e.hints.dim),
                                              mode=search_pb2.SEARCH_MODE_DENSE, interventions=[steer_up()])],
         "INVALID_ARGUMENT naming a sparse vector the client never sent",
         not_in_details=("sparse vector holds",)),
    Case("search-dbsf-3e38-weights", "SearchService.Search",
         lambda e: [search_pb2.SearchRequest(
             corpus=CORPUS, text="galaxy", mode=search_pb2.SEARCH_MODE_HYBRID, fusion=search_pb2.FUSION_DBSF,
             dense_weight=3e38, sparse_weight=3e38)],
         "OK with inf scores"),
    # 8. Train settings not fully checked.
    Case("train-k-aux-max-uint32", "SaeService.Train",
         lambda e: [train(e, num_latents=64, k=8, k_aux=4294967295)],
         "OK: trained and registered", frozenset({Code.INVALID_ARGUMENT})),
    Case("train-multik-k-1000-of-64", "SaeService.Train",
         lambda e: [train(e, num_latents=64, k=8, multik_k=1000)],
         "OK: trained and registered", frozenset({Code.INVALID_ARGUMENT})),
    # An SAE id too long to name a labels collection (the store's escaped key is at most 180).
    Case("list-labels-sae-id-250-chars", "LabellingService.ListLabels",
         lambda e: [labelling_pb2.ListLabelsRequest(sae_id="z" * 250)],
         "INTERNAL: the store's InvalidQueryError", frozenset({Code.INVALID_ARGUMENT})),
]  # fmt: skip


def case_problems(case: Case, env: Env, answer: Answer) -> list[str]:
    found = []
    if case.expect and answer.code not in case.expect:
        wanted = " or ".join(sorted(code.name for code in case.expect))
        found.append(f"expected {wanted}, got {answer.code.name}")
    for phrase in case.not_in_details:
        if phrase in answer.details:
            found.append(f"the sentence says {phrase!r}")
    if case.names is not None:
        # Refused: the sentence names the file; accepted: an answer reports it (a failure reason).
        said = answer.details if answer.code != Code.OK else " ".join(_texts(case, answer))
        missing = [name for name in case.names(env) if name not in said]
        if missing:
            found.append(f"neither the sentence nor an answer names {', '.join(missing)}")
    return found


def _texts(case: Case, answer: Answer) -> list[str]:
    output = message_class(RPCS[case.rpc].output_type)
    return [str(output.FromString(raw)) for raw in answer.responses]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_known_case_gets_a_deliberate_answer(case: Case, fuzz_server: FuzzServer, fuzz_tally: Tally) -> None:
    rpc = RPCS[case.rpc]
    if rpc.service.full_name not in fuzz_server.served:
        pytest.skip(f"{rpc.service.full_name} is not served here")
    env = Env(fuzz_server.hints, fuzz_server.allowed)
    messages = case.build(env)
    payloads = [message.SerializeToString() for message in messages]
    log_before = fuzz_server.log_size()
    answer = call(fuzz_server.channel, rpc, payloads)
    fuzz_tally.add(PROFILE, rpc.id, len(payloads), answer.code.name, answer.details)
    request = describe(messages, payloads)
    found = case_problems(case, env, answer)
    assert not found, f"{case.name} (was: {case.was}): {'; '.join(found)}\n  answer: {answer.summary()}"
    check(rpc, answer, request)
    if case.check_log:
        grown = fuzz_server.log_size() - log_before
        assert grown <= MAX_LOG_GROWTH, f"{case.name}: the server log grew by {grown:,} bytes for one request"
    fuzz_server.assert_healthy(after=case.name)


@pytest.mark.parametrize("garbage", sorted(INVALID_PROTOBUF))
@pytest.mark.parametrize("rpc", list(RPCS.values()), ids=lambda rpc: rpc.id)
def test_bytes_that_are_not_protobuf_are_invalid_argument(
    rpc: Rpc, garbage: str, fuzz_server: FuzzServer, fuzz_tally: Tally
) -> None:
    """4. Was UNKNOWN ("Unexpected <class 'DecodeError'>") on unary calls, INTERNAL on streams."""
    if rpc.service.full_name not in fuzz_server.served:
        pytest.skip(f"{rpc.service.full_name} is not served here")
    payloads = [INVALID_PROTOBUF[garbage]]
    answer = call(fuzz_server.channel, rpc, payloads)
    fuzz_tally.add(PROFILE, rpc.id, len(payloads), answer.code.name, answer.details)
    assert answer.code == Code.INVALID_ARGUMENT, f"{rpc.path}: {answer.summary()}"
    check(rpc, answer, describe(None, payloads))
    fuzz_server.assert_healthy(after=f"{garbage} bytes to {rpc.id}")

"""Bad requests get the right status and a sentence that names the problem; the server carries on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest
from sae_testing import Running, failure_of, matrix, vectors

from featurelens.v1 import common_pb2, sae_pb2
from featurelens.wire.arrays import to_dense_vector

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
CLAMP = common_pb2.STEER_MODE_CLAMP


def with_nan(row: int) -> np.ndarray:
    x = vectors(4)
    x[row, 5] = np.nan
    return x


def steer(*interventions: common_pb2.Intervention, dim: int = 32) -> sae_pb2.SteerRequest:
    return sae_pb2.SteerRequest(vector=to_dense_vector(vectors(1, dim=dim)[0]), interventions=interventions)


def filled(value: float, rows: int = 1, dim: int = 32) -> np.ndarray:
    """Every value the same: finite, but near float32's limit (3.4e38) or the wire's (1e6)."""
    return np.full((rows, dim), value, dtype=np.float32)


def latents(value: float, count: int = 256) -> common_pb2.SparseVector:
    return common_pb2.SparseVector(indices=range(count), values=[value] * count)


def feature(
    number: int, weight: float = 1.0, mode: int = common_pb2.STEER_MODE_ADDITIVE
) -> common_pb2.Intervention:
    return common_pb2.Intervention(feature=number, weight=weight, mode=mode)  # type: ignore[arg-type]


# (rpc name, request builder taking the default sae_id, expected code, words the message must hold)
CASES: list[tuple[str, str, Callable[[str], Any], grpc.StatusCode, list[str]]] = [
    (
        "encode_wrong_dim",
        "Encode",
        lambda _: sae_pb2.EncodeRequest(vectors=matrix(vectors(2, dim=16))),
        INVALID,
        ["dim 16", "expects 32", "{sae_id}"],
    ),
    (
        "encode_nan",
        "Encode",
        lambda _: sae_pb2.EncodeRequest(vectors=matrix(with_nan(2))),
        INVALID,
        ["row 2", "NaN"],
    ),
    (
        "encode_empty",
        "Encode",
        lambda _: sae_pb2.EncodeRequest(vectors=common_pb2.DenseMatrix(dim=32)),
        INVALID,
        ["empty"],
    ),
    (
        "encode_too_many",
        "Encode",
        lambda _: sae_pb2.EncodeRequest(vectors=matrix(vectors(65))),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        ["65", "limit is 64"],
    ),
    (
        "encode_short_bytes",
        "Encode",
        lambda _: sae_pb2.EncodeRequest(vectors=common_pb2.DenseMatrix(data=b"\0" * 12, dim=32, count=1)),
        INVALID,
        ["12 bytes", "count=1"],
    ),
    (
        "encode_unknown_sae",
        "Encode",
        lambda _: sae_pb2.EncodeRequest(sae_id="sae-nope", vectors=matrix(vectors(1))),
        NOT_FOUND,
        ["sae-nope", "{sae_id}"],
    ),
    # Issue 8, item 5: an 8 KB sae_id came back as RESOURCE_EXHAUSTED instead of NOT_FOUND.
    (
        "encode_huge_sae_id",
        "Encode",
        lambda _: sae_pb2.EncodeRequest(sae_id="z" * 10_000, vectors=matrix(vectors(1))),
        NOT_FOUND,
        ["unknown SAE 'zzz", "... (10,000 characters); known SAEs: "],
    ),
    (
        "encode_path_as_sae_id",
        "Encode",
        lambda _: sae_pb2.EncodeRequest(sae_id="../models/x", vectors=matrix(vectors(1))),
        NOT_FOUND,
        ["../models/x"],
    ),
    ("decode_empty", "Decode", lambda _: sae_pb2.DecodeRequest(), INVALID, ["rows is empty"]),
    (
        "decode_out_of_range",
        "Decode",
        lambda _: sae_pb2.DecodeRequest(rows=[common_pb2.SparseVector(indices=[1, 9999], values=[1.0, 1.0])]),
        INVALID,
        ["latent 9999 is out of range", "256 latents"],
    ),
    (
        "decode_repeated",
        "Decode",
        lambda _: sae_pb2.DecodeRequest(
            rows=[common_pb2.SparseVector(), common_pb2.SparseVector(indices=[4, 4], values=[1.0, 2.0])]
        ),
        INVALID,
        ["rows[1]", "repeats"],
    ),
    (
        "decode_lengths",
        "Decode",
        lambda _: sae_pb2.DecodeRequest(rows=[common_pb2.SparseVector(indices=[4, 5], values=[1.0])]),
        INVALID,
        ["2 indices but 1 values"],
    ),
    (
        "decode_nan",
        "Decode",
        lambda _: sae_pb2.DecodeRequest(rows=[common_pb2.SparseVector(indices=[4], values=[float("inf")])]),
        INVALID,
        ["rows[0]", "infinite"],
    ),
    # Issue 8, item 7: finite inputs that overflowed to infinity came back OK.
    (
        "encode_3e38",
        "Encode",
        lambda _: sae_pb2.EncodeRequest(vectors=matrix(filled(3e38, rows=2))),
        INVALID,
        ["vectors: dense matrix holds 3e+38 at row 0, column 0", "within ±1,000,000"],
    ),
    (
        "decode_3e38",
        "Decode",
        lambda _: sae_pb2.DecodeRequest(rows=[latents(3e38)]),
        INVALID,
        ["rows[0]: sparse vector holds 3e+38 at position 0", "within ±1,000,000"],
    ),
    (
        "steer_3e38",
        "Steer",
        lambda _: sae_pb2.SteerRequest(vector=to_dense_vector(filled(3e38)[0]), interventions=[feature(7)]),
        INVALID,
        ["vector: dense vector holds 3e+38 at position 0", "within ±1,000,000"],
    ),
    # Inside the bound, yet the result is not: refused at the last line, never returned.
    (
        "encode_result_beyond_the_bound",
        "Encode",
        lambda _: sae_pb2.EncodeRequest(vectors=matrix(filled(1e6))),
        INVALID,
        ["vectors row 0 encodes to an activation of", "beyond the ±1,000,000", "scale it down"],
    ),
    (
        "decode_result_beyond_the_bound",
        "Decode",
        lambda _: sae_pb2.DecodeRequest(rows=[latents(1.0, 4), latents(1e6)]),
        INVALID,
        ["rows[1] decodes to a value of", "beyond the ±1,000,000", "scale it down"],
    ),
    (
        "steer_result_beyond_the_bound",
        "Steer",
        lambda _: sae_pb2.SteerRequest(vector=to_dense_vector(filled(1e6)[0]), interventions=[feature(7)]),
        INVALID,
        ["the vector encodes to an activation of", "beyond the ±1,000,000"],
    ),
    (
        "directions_out_of_range",
        "DecoderDirections",
        lambda _: sae_pb2.DecoderDirectionsRequest(features=[0, 9999]),
        INVALID,
        ["feature 9999 is out of range", "{sae_id} has 256 latents"],
    ),
    (
        "directions_empty",
        "DecoderDirections",
        lambda _: sae_pb2.DecoderDirectionsRequest(),
        INVALID,
        ["empty"],
    ),
    (
        "steer_family",
        "Steer",
        lambda _: steer(common_pb2.Intervention(family_id="fam-3", weight=1.0)),
        INVALID,
        ["fam-3", "resolve families through the search service"],
    ),
    (
        "steer_phrase",
        "Steer",
        lambda _: steer(feature(3), common_pb2.Intervention(phrase="dark matter halos", weight=1.0)),
        INVALID,
        ["interventions[1] targets phrase 'dark matter halos'", "resolve phrases through the search service"],
    ),
    (
        "steer_no_target",
        "Steer",
        lambda _: steer(common_pb2.Intervention(weight=1.0)),
        INVALID,
        ["names no feature"],
    ),
    (
        "steer_out_of_range",
        "Steer",
        lambda _: steer(feature(9999)),
        INVALID,
        ["interventions[0]: feature 9999 does not exist: SAE '{sae_id}' has latents 0 to 255"],
    ),
    (
        "steer_duplicate",
        "Steer",
        lambda _: steer(feature(7), feature(7, 2.0, CLAMP)),
        INVALID,
        ["feature 7 is steered twice: by interventions[0] and by interventions[1]; steer it once"],
    ),
    (
        "steer_negative_clamp",
        "Steer",
        lambda _: steer(feature(7, -1.0, CLAMP)),
        INVALID,
        ["interventions[0]: clamp value -1 on feature 7 is negative"],
    ),
    (
        "steer_weight_beyond_the_bound",
        "Steer",
        lambda _: steer(feature(3), feature(7, 10.5)),
        INVALID,
        ["interventions[1]: additive weight 10.5 on feature 7 is beyond ±10"],
    ),
    (
        "steer_absurd_clamp",
        "Steer",
        lambda _: steer(feature(7, 1e6, CLAMP)),
        INVALID,
        ["interventions[0]: clamp value 1e+06 on feature 7 is above 10"],
    ),
    (
        "steer_nan_weight",
        "Steer",
        lambda _: steer(feature(7, float("nan"))),
        INVALID,
        ["interventions[0]: the weight on feature 7 is not a finite number"],
    ),
    (
        "steer_unknown_mode",
        "Steer",
        lambda _: steer(feature(7, 1.0, 9)),
        INVALID,
        ["interventions[0] has steer mode 9, which is unknown"],
    ),
    (
        "steer_too_many",
        "Steer",
        lambda _: steer(*(feature(i % 256) for i in range(16_385))),
        INVALID,
        ["16385 interventions; the limit is 16384 in one request"],
    ),
    ("steer_wrong_dim", "Steer", lambda _: steer(dim=16), INVALID, ["dim 16", "expects 32"]),
    ("steer_no_vector", "Steer", lambda _: sae_pb2.SteerRequest(), INVALID, ["vector is empty"]),
    (
        "get_unknown",
        "GetSae",
        lambda _: sae_pb2.GetSaeRequest(sae_id="sae-missing"),
        NOT_FOUND,
        ["sae-missing"],
    ),
]


@pytest.mark.parametrize(
    ("rpc", "build", "code", "words"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
async def test_a_bad_request_gets_its_status_and_a_sentence_naming_the_problem(
    running: Running,
    sae_id: str,
    rpc: str,
    build: Callable[[str], Any],
    code: grpc.StatusCode,
    words: list[str],
) -> None:
    error = await failure_of(getattr(running.stub, rpc)(build(sae_id)))

    assert error.code() == code, error.details()
    details = error.details() or ""
    for word in words:
        assert word.format(sae_id=sae_id) in details


async def test_the_server_keeps_serving_after_every_kind_of_bad_request(
    running: Running, sae_id: str
) -> None:
    for _, rpc, build, _, _ in CASES:
        await failure_of(getattr(running.stub, rpc)(build(sae_id)))

    reply = await running.stub.Encode(sae_pb2.EncodeRequest(vectors=matrix(vectors(3))))
    assert len(reply.rows) == 3

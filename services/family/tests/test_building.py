"""Building families: the job streams its progress, stores the families, labels them when it can and
replaces them on a rebuild."""

from __future__ import annotations

import math
from pathlib import Path

import grpc
import pytest
from family_testing import CORPUS, FamilyStack, final, serve_family
from search_testing import CountingBackend, failure_of

from featurelens.embedding.backends import EmbeddingBackend
from featurelens.kit.embedded import free_port
from featurelens.v1 import family_pb2, labelling_pb2


async def test_a_build_streams_progress_and_stores_the_families_it_reports(
    stack: FamilyStack, sae_id: str
) -> None:
    messages = await stack.build(sae_id=sae_id)

    last = final(messages)
    stages = [m.progress.stage for m in messages]
    listed = await stack.families(sae_id)
    assert stages[0] == "read"
    assert {"extract", "store"} <= set(stages)
    assert stages[-1] == "done"
    assert last.families_built == last.statistics.families == len(listed) > 0
    assert last.statistics.block_score > last.statistics.block_control
    assert last.statistics.parent_child > last.statistics.child_child
    sizes = [len(f.features) - 1 for f in listed]
    assert sizes == sorted(sizes, reverse=True)
    assert min(sizes) >= 4
    for family in listed:
        assert family.family_id == f"f{family.parent_feature}-p{family.family_id.split('-p')[1]}"
        assert family.corpus == CORPUS
        assert family.sae_id == sae_id
        assert 0 < family.root_density <= 1
        assert 1.0 < family.direction_norm <= len(family.features)
        assert len(family.edge_parents) == len(family.edge_children) == len(family.features) - 1


async def test_the_default_sae_is_built_when_none_is_named(stack: FamilyStack, sae_id: str) -> None:
    built = final(await stack.build())

    listed = await stack.families(sae_id)

    assert built.families_built == len(listed) > 0


async def test_a_rebuild_replaces_the_families_and_the_same_activations_give_the_same_ids(
    stack: FamilyStack, sae_id: str
) -> None:
    await stack.build(sae_id=sae_id)
    first = [f.family_id for f in await stack.families(sae_id)]
    await stack.build(sae_id=sae_id)
    again = [f.family_id for f in await stack.families(sae_id)]

    stricter = final(await stack.build(sae_id=sae_id, min_family_size=8))
    after = await stack.families(sae_id)

    assert again == first
    assert stricter.families_built == len(after) < len(first)
    assert all(len(f.features) - 1 >= 8 for f in after)
    assert {f.family_id for f in after} <= set(first)


async def test_families_are_named_from_their_members_labels(stack: FamilyStack, sae_id: str) -> None:
    await stack.build(sae_id=sae_id)
    family = (await stack.families(sae_id))[0]
    labelled = [
        m
        async for m in stack.labelling.LabelFeatures(
            labelling_pb2.LabelFeaturesRequest(corpus=CORPUS, sae_id=sae_id, features=list(family.features))
        )
    ]
    assert labelled

    rebuilt = final(await stack.build(sae_id=sae_id))
    named = await stack.stub.GetFamily(family_pb2.GetFamilyRequest(sae_id=sae_id, family_id=family.family_id))

    assert named.family.label
    assert rebuilt.llm_calls == 0  # the offline labeller: no LLM is configured here
    assert [m.label for m in named.members if m.label]


async def test_a_labelling_outage_leaves_the_families_stored_unlabelled_and_says_so(
    wordllama: EmbeddingBackend, models_dir: Path, edge_copy: Path, tmp_path: Path, sae_id: str
) -> None:
    nobody = f"127.0.0.1:{free_port('127.0.0.1')}"
    async with serve_family(
        CountingBackend(wordllama),
        models_dir,
        edge_copy,
        tmp_path,
        labelling_address=nobody,
        peer_timeout_s=2.0,
    ) as stack:
        last = final(await stack.build(sae_id=sae_id))
        listed = await stack.families(sae_id)
        got = await stack.stub.GetFamily(
            family_pb2.GetFamilyRequest(sae_id=sae_id, family_id=listed[0].family_id)
        )

    assert last.families_built == len(listed) > 0
    assert "families left unlabelled" in last.progress.message
    assert "labelling service" in last.progress.message
    assert all(not f.label for f in listed)
    assert [m.label for m in got.members] == [""] * len(got.members)


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        ({"threshold": math.nan}, grpc.StatusCode.INVALID_ARGUMENT, "threshold is nan"),
        ({"threshold": 1.5}, grpc.StatusCode.INVALID_ARGUMENT, "threshold is 1.5"),
        ({"threshold": -0.1}, grpc.StatusCode.INVALID_ARGUMENT, "fraction in (0, 1]"),
        ({"threshold": 0.001}, grpc.StatusCode.INVALID_ARGUMENT, "use at least 0.01"),
        ({"min_family_size": 10_001}, grpc.StatusCode.INVALID_ARGUMENT, "min_family_size"),
        ({"budget_usd": -1.0}, grpc.StatusCode.INVALID_ARGUMENT, "budget_usd"),
        ({"domain": "x" * 300}, grpc.StatusCode.INVALID_ARGUMENT, "domain"),
        ({"corpus": ""}, grpc.StatusCode.INVALID_ARGUMENT, "corpus is empty"),
        ({"corpus": "no such"}, grpc.StatusCode.INVALID_ARGUMENT, "corpus name"),
        ({"corpus": "elsewhere"}, grpc.StatusCode.NOT_FOUND, "corpus 'elsewhere' is not indexed"),
        ({"sae_id": "sae-000000000000"}, grpc.StatusCode.NOT_FOUND, "sae-000000000000"),
    ],
)
async def test_a_build_with_bad_input_is_refused_with_a_sentence(
    stack: FamilyStack, sae_id: str, fields: dict[str, object], code: grpc.StatusCode, says: str
) -> None:
    request = family_pb2.BuildFamiliesRequest(**({"corpus": CORPUS, "sae_id": sae_id} | fields))

    error = await failure_of(_drain(stack, request))

    assert error.code() == code
    assert says in (error.details() or "")


async def _drain(stack: FamilyStack, request: family_pb2.BuildFamiliesRequest) -> None:
    async for _ in stack.stub.BuildFamilies(request):
        pass

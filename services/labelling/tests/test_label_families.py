"""LabelFamilies end to end over real gRPC: families named from their members' stored labels,
offline and through the fake OpenAI-compatible server with the answer cache in the real Redis."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from fake_openai import FakeOpenAI, serve_fake_openai
from labelling_testing import CORPUS, LabellingStack, family_names_of, labels_of
from search_testing import failure_of

from featurelens.interp.family_names import FamilyMembers, offline_family_name
from featurelens.v1 import labelling_pb2, search_pb2

MODEL = "gpt-4o-mini"
_PARENT_LINE = re.compile(r"^Parent feature's label: (.*)$", re.MULTILINE)


def family_responder(body: dict[str, Any]) -> str:
    """Answers a family prompt with "family of <the parent's label>", like a small deterministic LLM."""
    parent = _PARENT_LINE.search(body["messages"][-1]["content"])
    return json.dumps({"label": f"family of {parent.group(1) if parent else 'nothing'}"})


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with serve_fake_openai(model=MODEL, responder=family_responder) as fake:
        yield fake


async def live_features(stack: LabellingStack, sae_id: str, wanted: int) -> list[int]:
    """The first latents that fire on some paper."""
    fired: set[int] = set()
    request = search_pb2.ExportActivationsRequest(corpus=CORPUS, sae_id=sae_id)
    async for message in stack.search.stub.ExportActivations(request):
        for latents in message.latents:
            fired.update(latents.indices)
    return sorted(fired)[:wanted]


async def labelled_features(stack: LabellingStack, sae_id: str, count: int) -> dict[int, str]:
    """Label ``count`` live latents offline (stored); feature → its label."""
    features = await live_features(stack, sae_id, count)
    messages = await stack.label(sae_id=sae_id, features=features, seed=1)
    return {label.feature: label.label for label in labels_of(messages)}


def family(family_id: str, parent: int, *children: int) -> labelling_pb2.FamilyToLabel:
    return labelling_pb2.FamilyToLabel(family_id=family_id, parent_feature=parent, features=list(children))


async def test_offline_names_come_from_the_members_stored_labels(stack: LabellingStack, sae_id: str) -> None:
    labels = await labelled_features(stack, sae_id, 6)
    a, b, c, d, e, f = sorted(labels)

    messages = await stack.name_families(
        sae_id=sae_id, families=[family("fam-1", a, b, c), family("fam-2", d, e, f)]
    )

    names = family_names_of(messages)
    assert names == {
        "fam-1": offline_family_name(FamilyMembers("fam-1", labels[a], (labels[b], labels[c]))),
        "fam-2": offline_family_name(FamilyMembers("fam-2", labels[d], (labels[e], labels[f]))),
    }
    assert all(
        name.startswith(labels[parent].split(";")[0])
        for name, parent in zip(names.values(), (a, d), strict=True)
    )
    named = [m for m in messages if m.label]
    assert all(m.interpreter_model == "offline" for m in named)
    last = messages[-1]
    assert last.progress.done == last.progress.total == 2
    assert last.llm_calls == 0
    assert last.cost_usd == 0.0
    assert not last.budget_exhausted
    assert "named 2 of 2 families" in last.progress.message


async def test_a_family_without_stored_member_labels_gets_an_empty_label_and_the_stream_says_why(
    stack: LabellingStack, sae_id: str
) -> None:
    labels = await labelled_features(stack, sae_id, 3)
    unlabelled = [f for f in range(256) if f not in labels][:3]
    a, b, c = sorted(labels)

    messages = await stack.name_families(
        sae_id=sae_id, families=[family("named", a, b, c), family("bare", *unlabelled)]
    )

    names = family_names_of(messages)
    assert names["named"]
    assert names["bare"] == ""
    why = next(m for m in messages if m.family_id == "bare")
    assert "none of its 3 members has a stored label" in why.progress.message
    assert why.interpreter_model == ""
    assert messages[-1].progress.done == 2
    assert "1 not named" in messages[-1].progress.message


async def test_an_sae_without_any_labels_names_no_family_and_says_so(
    stack: LabellingStack, sae_id: str
) -> None:
    messages = await stack.name_families(sae_id=sae_id, families=[family("f", 1, 2, 3)])

    assert family_names_of(messages) == {"f": ""}
    assert "has no labels at all" in messages[1].progress.message


async def test_the_llm_names_families_through_the_endpoint_and_a_rerun_is_served_from_redis(
    cached_stack: LabellingStack, sae_id: str, llm: FakeOpenAI
) -> None:
    labels = await labelled_features(cached_stack, sae_id, 6)
    a, b, c, d, e, f = sorted(labels)
    request = {
        "sae_id": sae_id,
        "families": [family("fam-1", a, b, c), family("fam-2", d, e, f)],
        "llm_base_url": llm.base_url,
        "domain": "astrophysics abstracts",
    }

    first = await cached_stack.name_families(**request)
    calls = llm.chat_calls
    rerun = await cached_stack.name_families(**request)

    assert family_names_of(first) == {"fam-1": f"family of {labels[a]}", "fam-2": f"family of {labels[d]}"}
    assert all(m.interpreter_model == MODEL for m in first if m.label)
    assert first[-1].llm_calls == llm.answered_chat_calls == 2
    assert first[-1].cache_hits == 0
    assert first[-1].cost_usd > 0
    sent = [r.body for r in llm.requests if r.body and "messages" in r.body]
    assert all("astrophysics abstracts" in str(body["messages"]) for body in sent)
    assert llm.chat_calls == calls
    assert rerun[-1].llm_calls == 0
    assert rerun[-1].cost_usd == 0.0
    assert rerun[-1].cache_hits == 2
    assert family_names_of(rerun) == family_names_of(first)


async def test_the_budget_stops_the_job_cleanly_with_what_was_named(
    stack: LabellingStack, sae_id: str, llm: FakeOpenAI
) -> None:
    labels = await labelled_features(stack, sae_id, 2)
    parent, child = sorted(labels)
    families = [family(f"fam-{i}", parent, child) for i in range(30)]

    messages = await stack.name_families(
        sae_id=sae_id, families=families, llm_base_url=llm.base_url, budget_usd=0.0003
    )

    last = messages[-1]
    assert last.budget_exhausted
    assert "budget" in last.progress.message
    assert 0 < last.cost_usd <= 0.0003
    named = [name for name in family_names_of(messages).values() if name]
    assert 0 < len(named) < len(families)
    assert llm.answered_chat_calls == len(named)


@pytest.mark.parametrize(
    ("families", "fields", "code", "words"),
    [
        ([], {}, grpc.StatusCode.INVALID_ARGUMENT, "families is empty"),
        ([family("x", 1), family("x", 2)], {}, grpc.StatusCode.INVALID_ARGUMENT, "named twice"),
        ([family("", 1)], {}, grpc.StatusCode.INVALID_ARGUMENT, "empty family_id"),
        ([family("x", 1, 2, 2)], {}, grpc.StatusCode.INVALID_ARGUMENT, "latent 2 twice"),
        ([family("x", 1, 300)], {}, grpc.StatusCode.INVALID_ARGUMENT, "out of range"),
        ([family("x", 300)], {}, grpc.StatusCode.INVALID_ARGUMENT, "out of range"),
        ([family(f"f{i}", 1) for i in range(10_001)], {}, grpc.StatusCode.INVALID_ARGUMENT, "10,000"),
        ([family("x", 0, *range(1, 10_002))], {}, grpc.StatusCode.INVALID_ARGUMENT, "per family"),
        ([family("x", 1)], {"budget_usd": -1.0}, grpc.StatusCode.INVALID_ARGUMENT, "budget_usd"),
        ([family("x", 1)], {"domain": "x" * 500}, grpc.StatusCode.INVALID_ARGUMENT, "domain"),
        (
            [family("x", 1)],
            {"interpreter_model": MODEL},
            grpc.StatusCode.FAILED_PRECONDITION,
            "needs an LLM endpoint",
        ),
        (
            [family("x", 1)],
            {"llm_base_url": "https://api.example.org/v1"},
            grpc.StatusCode.FAILED_PRECONDITION,
            "not allowed",
        ),
        ([family("x", 1)], {"sae_id": "no-such-sae"}, grpc.StatusCode.NOT_FOUND, "no-such-sae"),
    ],
)
async def test_a_bad_request_is_refused_with_a_clear_sentence(
    stack: LabellingStack,
    sae_id: str,
    families: list[labelling_pb2.FamilyToLabel],
    fields: dict[str, object],
    code: grpc.StatusCode,
    words: str,
) -> None:
    request = {"sae_id": sae_id, "families": families} | fields

    error = await failure_of(stack.name_families(**request))

    assert error.code() == code, error.details()
    assert words in (error.details() or "")

"""Family names from members' labels: the offline namer, the prompt, and the LLM namer end to end
(the real openai client against the fake server on loopback, the in-process answer cache)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fake_openai import FakeOpenAI, serve_fake_openai

from featurelens.interp.budget import Budget, BudgetExhausted
from featurelens.interp.family_names import (
    MAX_PROMPT_CHILDREN,
    FamilyMembers,
    LlmFamilyNamer,
    NoMemberLabels,
    family_messages,
    offline_family_name,
)
from featurelens.interp.llm import ChatClient, InMemoryChatCache, LlmConfig
from featurelens.interp.parsing import MAX_LABEL_CHARS, LabelParseError

MODEL = "gpt-4o-mini"
DOMAIN = "astrophysics paper abstracts"

HALOS = FamilyMembers(
    "f-halos",
    "dark matter halos; halo mass function; N-body simulations",
    (
        "subhalo abundance in simulations",
        "satellite galaxies in subhalo catalogues",
        "",
        "simulations of satellite subhalo stripping",
    ),
)

_PARENT_LINE = re.compile(r"^Parent feature's label: (.*)$", re.MULTILINE)


def family_responder(body: dict[str, Any]) -> str:
    """Answers a family prompt with the parent's label and "family", like a small deterministic LLM."""
    user = body["messages"][-1]["content"]
    parent = _PARENT_LINE.search(user)
    return json.dumps({"label": f"{parent.group(1) if parent else 'unknown'} family"})


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with serve_fake_openai(model=MODEL, responder=family_responder) as server:
        yield server


def llm_config(fake: FakeOpenAI) -> LlmConfig:
    return LlmConfig(base_url=fake.base_url, api_key="sk-test", backoff_base_s=0.001)


# -- offline ----------------------------------------------------------------------------------


def test_the_offline_name_is_the_parents_leading_phrase_refined_by_the_childrens_shared_words() -> None:
    assert offline_family_name(HALOS) == "dark matter halos (subhalo, simulations)"


def test_the_offline_name_without_a_parent_label_is_the_words_most_children_share() -> None:
    family = FamilyMembers("f", "", HALOS.child_labels)

    assert offline_family_name(family) == "subhalo simulations satellite"


def test_the_offline_name_falls_back_to_the_first_labelled_childs_phrase_when_nothing_is_shared() -> None:
    family = FamilyMembers("f", "", ("", "pulsar timing arrays; gravitational waves", "stellar flares"))

    assert offline_family_name(family) == "pulsar timing arrays"


def test_the_offline_name_is_the_parents_phrase_alone_when_the_children_add_nothing() -> None:
    family = FamilyMembers("f", "galaxy clusters", ("weak lensing", "galaxy cluster masses"))

    assert offline_family_name(family) == "galaxy clusters"


def test_the_offline_name_ignores_stop_words_and_abstract_filler() -> None:
    family = FamilyMembers("f", "", ("the results of a study", "the results of lensing", "study of lensing"))

    assert offline_family_name(family) == "lensing"


def test_the_offline_name_is_the_same_whenever_it_is_asked() -> None:
    assert {offline_family_name(HALOS) for _ in range(5)} == {offline_family_name(HALOS)}


def test_a_long_offline_name_is_capped_like_a_parsed_label() -> None:
    family = FamilyMembers("f", " ".join(["magnetohydrodynamic"] * 20), ("turbulence a", "turbulence b"))

    name = offline_family_name(family)

    assert len(name) <= MAX_LABEL_CHARS
    assert name.startswith("magnetohydrodynamic")
    assert "(" not in name


def test_a_family_without_any_member_label_gets_no_offline_name() -> None:
    with pytest.raises(NoMemberLabels, match="f-empty"):
        offline_family_name(FamilyMembers("f-empty", " ", ("", "")))


# -- prompt -----------------------------------------------------------------------------------


def test_the_prompt_shows_the_parent_and_each_distinct_child_label_on_one_line() -> None:
    family = FamilyMembers("f", "dark matter\nhalos", ("subhalos", "Subhalos", "satellite\ngalaxies", ""))

    system, user = family_messages(family, DOMAIN)

    assert system["role"] == "system"
    assert '{"label": "<label>"}' in system["content"]
    content = user["content"]
    assert "Corpus: astrophysics paper abstracts" in content
    assert "Parent feature's label: dark matter halos" in content
    assert re.findall(r"^\d+\. .*$", content, re.MULTILINE) == ["1. subhalos", "2. satellite galaxies"]


def test_the_prompt_shows_a_bounded_number_of_children_and_says_how_many_were_left_out() -> None:
    family = FamilyMembers("f", "", tuple(f"topic {i}" for i in range(MAX_PROMPT_CHILDREN + 7)))

    content = family_messages(family, DOMAIN)[1]["content"]

    assert "Parent feature's label: (no label)" in content
    assert len(re.findall(r"^\d+\. ", content, re.MULTILINE)) == MAX_PROMPT_CHILDREN
    assert "(and 7 more children not shown)" in content


def test_no_prompt_is_written_for_a_family_without_labels() -> None:
    with pytest.raises(NoMemberLabels):
        family_messages(FamilyMembers("f", "", ("",)), DOMAIN)


# -- the LLM namer ----------------------------------------------------------------------------


async def test_the_llm_names_a_family_and_a_second_ask_is_answered_by_the_cache(fake: FakeOpenAI) -> None:
    cache = InMemoryChatCache()
    async with ChatClient(llm_config(fake), cache=cache) as client:
        namer = LlmFamilyNamer(client, MODEL)
        first = await namer.name(HALOS, DOMAIN)
        second = await namer.name(HALOS, DOMAIN)

    assert first.label == "dark matter halos; halo mass function; N-body simulations family"
    assert first.usage.calls == 1
    assert first.usage.cost_usd > 0
    assert second.label == first.label
    assert second.usage.calls == 0
    assert second.usage.cache_hits == 1
    assert fake.answered_chat_calls == 1
    assert DOMAIN in json.dumps(fake.requests[-1].body)


async def test_an_answer_without_a_name_fails_the_family_with_its_cost(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: "I'm sorry, I can't help with that."

    async with ChatClient(llm_config(fake)) as client:
        with pytest.raises(LabelParseError, match="f-halos") as raised:
            await LlmFamilyNamer(client, MODEL).name(HALOS, DOMAIN)

    assert raised.value.usage.calls == 1


async def test_the_budget_stops_the_namer_before_anything_is_sent(fake: FakeOpenAI) -> None:
    async with ChatClient(llm_config(fake), budget=Budget(0.0)) as client:
        with pytest.raises(BudgetExhausted):
            await LlmFamilyNamer(client, MODEL).name(HALOS, DOMAIN)

    assert fake.chat_calls == 0


async def test_a_family_without_labels_makes_no_call(fake: FakeOpenAI) -> None:
    async with ChatClient(llm_config(fake)) as client:
        with pytest.raises(NoMemberLabels):
            await LlmFamilyNamer(client, MODEL).name(FamilyMembers("f", "", ("",)), DOMAIN)

    assert fake.chat_calls == 0

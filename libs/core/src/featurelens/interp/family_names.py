"""Names for feature families, written from their members' labels (no documents are read).

A family is a parent feature and its children (features that fire with it). Its name is made
from labels that already exist, two ways:

- ``LlmFamilyNamer``: one chat completion per family through the job's ``ChatClient`` (so the
  same cache, budget, retries and prices as feature labelling), with the ``FAMILY_PROMPT_VERSION``
  prompt; the answer is read by ``parse_label``, the same parser as a feature's label.
- ``offline_family_name``: no LLM (see its docstring for the rule).

A family none of whose members has a label gets no name from either (``NoMemberLabels``); the
caller reports it rather than make a name up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from featurelens.interp.llm import ChatClient
from featurelens.interp.offline import ABSTRACT_FILLER
from featurelens.interp.parsing import MAX_LABEL_CHARS, LabelParseError, parse_label
from featurelens.interp.prompts import MAX_LABEL_WORDS, ChatMessage, domain_line, one_line
from featurelens.interp.types import Interpretation

logger = logging.getLogger(__name__)

#: Part of every family prompt's cache key: change it whenever the wording changes.
FAMILY_PROMPT_VERSION = "family-2026.11-1"
#: Children's labels shown to the LLM at most; a family can have thousands of children, and the
#: first few dozen (in the family's own order) say what it is about at a bounded prompt cost.
MAX_PROMPT_CHILDREN = 40
#: Longest member label shown in a prompt, in characters.
MAX_PROMPT_LABEL_CHARS = 200
#: Shared words the offline name adds to the parent's label (or makes of itself without one).
OFFLINE_REFINING_WORDS = 2
OFFLINE_ONLY_WORDS = 4

_STOP_WORDS = ENGLISH_STOP_WORDS | ABSTRACT_FILLER
_WORD = re.compile(r"[^\W\d_][\w-]*[^\W_]")

_FAMILY_SYSTEM = (
    "You are an interpretability researcher. A sparse autoencoder was trained on embeddings of whole "
    "documents, and each of its features was given a short label. Features that fire on the same "
    "documents were grouped into a family: a broader parent feature and more specific child features. "
    "You are shown the members' labels. Name the family in a short, specific label of at most "
    f"{MAX_LABEL_WORDS} words that covers what its members share: usually the parent's subject, "
    "narrowed or widened to fit the children. Every document comes from the same corpus, so do not "
    'name the corpus\'s general field. Answer with JSON only, no other text: {"label": "<label>"}'
)


class NoMemberLabels(ValueError):  # noqa: N818 - a reason, read by the job, not a crash
    """None of the family's members has a label: there is nothing to name it from."""


@dataclass(frozen=True)
class FamilyMembers:
    """A family's members' labels ("" for a member without one), children in the family's order."""

    family_id: str
    parent_label: str
    child_labels: tuple[str, ...]

    @property
    def labelled_children(self) -> tuple[str, ...]:
        return tuple(label for label in self.child_labels if label.strip())

    @property
    def has_labels(self) -> bool:
        return bool(self.parent_label.strip() or self.labelled_children)


def family_messages(family: FamilyMembers, domain: str) -> list[ChatMessage]:
    """The system and user messages asking for a family's name.

    Each label is shown on one line, so a label cannot fake the prompt's structure; children
    repeating a label already shown are shown once, and at most ``MAX_PROMPT_CHILDREN`` of them.
    """
    if not family.has_labels:
        raise NoMemberLabels(f"family {family.family_id!r}: none of its members has a label")
    parent = one_line(family.parent_label, MAX_PROMPT_LABEL_CHARS) or "(no label)"
    children = _distinct(family.labelled_children)
    shown = children[:MAX_PROMPT_CHILDREN]
    listed = "\n".join(
        f"{index}. {one_line(label, MAX_PROMPT_LABEL_CHARS)}" for index, label in enumerate(shown, start=1)
    )
    if not listed:
        listed = "(no child has a label)"
    elif len(children) > len(shown):
        listed += f"\n(and {len(children) - len(shown)} more children not shown)"
    user = (
        f"Corpus: {domain_line(domain)}\n\n"
        f"Parent feature's label: {parent}\n\n"
        f"Child features' labels:\n{listed}\n\n"
        f"What is this family of features about? Answer with JSON only: "
        f'{{"label": "<at most {MAX_LABEL_WORDS} words>"}}'
    )
    return [{"role": "system", "content": _FAMILY_SYSTEM}, {"role": "user", "content": user}]


class LlmFamilyNamer:
    """Names a family with one chat completion (``FAMILY_PROMPT_VERSION`` prompt)."""

    def __init__(self, client: ChatClient, model: str) -> None:
        if not model.strip():
            raise ValueError("model is empty; name the interpreter model")
        self.client = client
        self.model = model

    async def name(self, family: FamilyMembers, domain: str) -> Interpretation:
        """The family's name; ``NoMemberLabels`` without member labels (no call is made),
        ``LabelParseError`` (with the call's usage) when the answer holds no label."""
        messages = family_messages(family, domain)
        completion = await self.client.complete(
            self.model, messages, FAMILY_PROMPT_VERSION, self.client.config.interpreter_max_tokens
        )
        try:
            label = parse_label(completion.text)
        except LabelParseError as error:
            logger.info("family %r: %s", family.family_id, error)
            raise LabelParseError(
                f"family {family.family_id!r}: the interpreter ({self.model}) gave no name"
                + (" (its answer was cut off at max_tokens)" if completion.finish_reason == "length" else ""),
                error.excerpt,
                completion.usage,
            ) from None
        return Interpretation(label, completion.usage)


def offline_family_name(family: FamilyMembers) -> str:
    """A family's name from its members' labels, without an LLM: deterministic and cheap.

    - With a parent label: the parent's leading phrase (the offline labeller puts its best phrase
      first, "a; b; c"), then in parentheses up to ``OFFLINE_REFINING_WORDS`` content words that
      most children's labels share and the parent's phrase lacks: "dark matter halos (subhalo,
      satellite)". The parent is the family's broadest feature, so it names the family; the
      children's shared words say which part of that subject the family is about.
    - Without one: up to ``OFFLINE_ONLY_WORDS`` words shared by the most children's labels, or,
      when no word is in two of them, the first labelled child's leading phrase.

    A word counts once per label; stop words and abstract filler never count; a word is shared
    when at least two labels hold it; ties keep the order the words first appear in (children in
    the family's order), so the same family always gets the same name. Raises ``NoMemberLabels``
    when no member has a label.
    """
    if not family.has_labels:
        raise NoMemberLabels(f"family {family.family_id!r}: none of its members has a label")
    children = family.labelled_children
    parent = _leading_phrase(family.parent_label)
    if parent:
        known = set(_content_words(parent))
        refining = [word for word in _shared_words(children) if word not in known]
        words = refining[:OFFLINE_REFINING_WORDS]
        refined = f"{parent} ({', '.join(words)})"
        name = refined if words and len(refined) <= MAX_LABEL_CHARS else parent
    else:
        shared = _shared_words(children)[:OFFLINE_ONLY_WORDS]
        name = " ".join(shared) if shared else _leading_phrase(children[0])
    return _capped(name)


def _leading_phrase(label: str) -> str:
    """The label's first phrase ("a; b; c" → "a"), on one line."""
    return " ".join(label.split(";", 1)[0].split()).strip(" ,.:")


def _content_words(label: str) -> list[str]:
    """The label's words that can make a name, lower case, each once, in order."""
    words: list[str] = []
    for word in _WORD.findall(label.lower()):
        if word not in _STOP_WORDS and word not in words:
            words.append(word)
    return words


def _shared_words(labels: Sequence[str]) -> list[str]:
    """Words in at least two of ``labels``, most labels first, ties in order of first appearance."""
    counts: dict[str, int] = {}
    for label in labels:
        for word in _content_words(label):
            counts[word] = counts.get(word, 0) + 1
    order = {word: index for index, word in enumerate(counts)}
    shared = [word for word, count in counts.items() if count >= 2]
    return sorted(shared, key=lambda word: (-counts[word], order[word]))


def _distinct(labels: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    kept: list[str] = []
    for label in labels:
        key = " ".join(label.lower().split())
        if key not in seen:
            seen.add(key)
            kept.append(label)
    return kept


def _capped(name: str) -> str:
    """At most ``MAX_LABEL_CHARS`` characters, cut at a word (the same cap as a parsed label)."""
    if len(name) <= MAX_LABEL_CHARS:
        return name
    cut = name[:MAX_LABEL_CHARS]
    space = cut.rfind(" ")
    return (cut[:space] if space > MAX_LABEL_CHARS // 2 else cut).rstrip(" ,;:")

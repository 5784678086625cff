"""Reading the interpreter's label and the predictor's scores out of what an LLM answered.

Models wrap JSON in code fences, add prose around it, write ``Label: X`` instead, stop in the
middle of a list, or refuse. The label parser accepts every honest form of an answer and
raises ``LabelParseError`` when there is no label (the job counts the feature as failed; it
never makes one up). The predictions parser salvages every well-formed entry and gives None
for each document it cannot read, so a parse failure is counted, never scored as a 0.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterator
from typing import Any

from featurelens.interp.prompts import SCALE_MAX
from featurelens.interp.types import Usage

#: Longest label kept, in characters (cut at a word boundary).
MAX_LABEL_CHARS = 100
#: A bare answer (no JSON, no "Label:") is taken as the label only up to this many words.
_MAX_BARE_WORDS = 10
_EXCERPT_CHARS = 120

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_LABEL_KEYS = ("label", "feature_label", "name", "explanation")
# "label": "..." with its closing quote, found even when the JSON around it is broken.
_LABEL_FIELD = re.compile(r'"(?:feature_)?label"\s*:\s*"((?:[^"\\\n]|\\.)*)"', re.IGNORECASE)
_LABEL_LINE = re.compile(
    r"^[\s>*_#-]*(?:(?:the|my)\s+)?(?:feature\s+)?label(?:\s+is)?[\s*_]*[:：=]\s*(.+)$",
    re.IGNORECASE | re.MULTILINE,
)
_REFUSAL = re.compile(
    r"\b(?:i\s*(?:'|’)?m sorry|i am sorry|i can(?:'|’)?t|i cannot|i'm unable|i am unable|unable to|"
    r"as an ai|cannot (?:help|assist|determine))\b",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(r"^(?:sure|okay|ok|certainly|here(?:'s|’s| is| are))\b", re.IGNORECASE)
_PLACEHOLDERS = frozenset({"", "n/a", "na", "none", "null", "unknown", "label", "...", "…", "tbd", "<label>"})
_QUOTES = "\"'`“”‘’«»"
_TRAILING = ".,;:!?" + _QUOTES
_WHITESPACE = re.compile(r"\s+")
# One {"id": 3, "score": 7} entry, for salvaging a cut-off answer.
_ENTRY = re.compile(
    r'\{\s*"(?:id|document|doc|index)"\s*:\s*"?(\d+)"?\s*,\s*"(?:score|activation|prediction)"\s*:\s*'
    r'"?(-?\d+(?:\.\d+)?)"?\s*\}',
    re.IGNORECASE,
)
_ID_KEYS = ("id", "document", "doc", "index", "doc_id")
_SCORE_KEYS = ("score", "activation", "prediction", "value")


class LabelParseError(ValueError):
    """The interpreter's answer holds no label.

    ``excerpt`` is the start of the answer (for the log and the job's failure reason);
    ``usage`` is what the call that produced it cost, so a failed feature's cost is still counted.
    """

    def __init__(self, message: str, excerpt: str, usage: Usage | None = None) -> None:
        super().__init__(f"{message}; the answer began: {excerpt!r}")
        self.reason = message
        self.excerpt = excerpt
        self.usage = usage or Usage()


def parse_label(text: str) -> str:
    """The label in an interpreter's answer, cleaned (no quotes, no trailing punctuation, capped).

    Accepted, in this order: a JSON object with a ``label`` key (in a code fence or among prose),
    a ``"label": "..."`` field in broken JSON, a ``Label: X`` line, or a short bare answer that is
    not a refusal. Raises ``LabelParseError`` otherwise.
    """
    excerpt = _excerpt(text)
    for candidate in _label_candidates(text):
        label = _clean_label(candidate)
        if label.lower() not in _PLACEHOLDERS:
            return label
    if not text.strip():
        raise LabelParseError("the interpreter's answer is empty", excerpt)
    if _REFUSAL.search(text):
        raise LabelParseError("the interpreter declined to give a label", excerpt)
    raise LabelParseError("the interpreter's answer holds no label", excerpt)


def parse_predictions(text: str, n: int) -> tuple[float | None, ...]:
    """The predictor's score of each of ``n`` documents (ids 1..n) mapped from 0-10 to [0, 1].

    A document gets None when its id is missing or appears twice, or its score is not a number
    in 0-10; an answer with nothing readable gives None for every document.
    """
    if n < 0:
        raise ValueError(f"n is {n}; the number of documents cannot be negative")
    entries = _prediction_entries(text, n)
    scores: dict[int, float | None] = {}
    for doc_id, score in entries:
        if not 1 <= doc_id <= n:
            continue
        # A document scored twice is ambiguous: neither answer is trusted.
        scores[doc_id] = None if doc_id in scores else score
    return tuple(scores.get(doc_id) for doc_id in range(1, n + 1))


def _label_candidates(text: str) -> Iterator[str]:
    for body in _bodies(text):
        for value in _json_values(body):
            if isinstance(value, dict):
                for key in _LABEL_KEYS:
                    found = _get_ci(value, key)
                    if isinstance(found, str):
                        yield found
                        break
        python = _python_dict(body)
        if python is not None:
            found = _first_ci(python, _LABEL_KEYS)
            if isinstance(found, str):
                yield found
        for match in _LABEL_FIELD.finditer(body):
            yield _unescape(match.group(1))
        for match in _LABEL_LINE.finditer(body):
            yield match.group(1)
    bare = _strip_fences(text).strip()
    if _is_bare_label(bare):
        yield bare


def _is_bare_label(text: str) -> bool:
    """Whether a whole answer (no JSON, no "Label:") reads as a label rather than prose or a refusal."""
    return bool(
        text
        and "\n" not in text
        and "{" not in text
        and not text.endswith(":")
        and len(text.split()) <= _MAX_BARE_WORDS
        and not _REFUSAL.search(text)
        and not _PREAMBLE.match(text)
    )


def _prediction_entries(text: str, n: int) -> list[tuple[int, float | None]]:
    for body in _bodies(text):
        for value in _json_values(body):
            entries = _entries_from_json(value, n)
            if entries is not None:
                return entries
    # A cut-off or otherwise broken answer: keep every complete entry.
    for body in _bodies(text):
        salvaged = [(int(doc_id), _score(score)) for doc_id, score in _ENTRY.findall(body)]
        if salvaged:
            return salvaged
    return []


def _entries_from_json(value: Any, n: int) -> list[tuple[int, float | None]] | None:
    """Entries of a parsed answer; None when this JSON value is not a predictions answer."""
    if isinstance(value, dict):
        items = _get_ci(value, "predictions")
        if items is None:
            items = _get_ci(value, "scores")
        if items is None:
            # {"1": 7, "2": 0, ...}
            numbered = [(key, score) for key, score in value.items() if str(key).strip().isdigit()]
            if numbered:
                return [(int(str(key).strip()), _score(score)) for key, score in numbered]
            return None
        value = items
    if not isinstance(value, list):
        return None
    if value and all(_is_number(item) for item in value):
        # A bare list of scores, in document order, only when it has one score per document.
        if len(value) != n:
            return None
        return [(index, _score(item)) for index, item in enumerate(value, start=1)]
    entries: list[tuple[int, float | None]] = []
    for item in value:
        if not isinstance(item, dict):
            continue
        doc_id = _as_int(_first_ci(item, _ID_KEYS))
        if doc_id is None:
            continue
        entries.append((doc_id, _score(_first_ci(item, _SCORE_KEYS))))
    return entries


def _score(value: Any) -> float | None:
    """A 0-10 score as a value in [0, 1]; None when it is not a number in range."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not _is_number(value):
        return None
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= SCALE_MAX:
        return None
    return number / SCALE_MAX


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _bodies(text: str) -> list[str]:
    """Where to look for an answer: the insides of code fences first, then the whole text."""
    fenced = [match.group(1) for match in _FENCE.finditer(text)]
    return [*fenced, text]


def _strip_fences(text: str) -> str:
    fenced = [match.group(1) for match in _FENCE.finditer(text)]
    return fenced[0] if fenced else text


def _json_values(text: str) -> Iterator[Any]:
    """Every JSON object or array that starts somewhere in ``text`` and parses, in order."""
    decoder = json.JSONDecoder()
    position = 0
    while True:
        starts = [index for index in (text.find("{", position), text.find("[", position)) if index >= 0]
        if not starts:
            return
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            position = start + 1
            continue
        yield value
        position = end


def _python_dict(text: str) -> dict[Any, Any] | None:
    """A Python-style dict ({'label': '...'}) some small models write instead of JSON."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start or "'" not in text[start:end]:
        return None
    try:
        value = ast.literal_eval(text[start : end + 1])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _get_ci(mapping: dict[Any, Any], key: str) -> Any:
    for name, value in mapping.items():
        if isinstance(name, str) and name.strip().lower() == key:
            return value
    return None


def _first_ci(mapping: dict[Any, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = _get_ci(mapping, key)
        if value is not None:
            return value
    return None


def _unescape(value: str) -> str:
    try:
        decoded = json.loads(f'"{value}"')
    except json.JSONDecodeError:
        return value
    return decoded if isinstance(decoded, str) else value


def _clean_label(raw: str) -> str:
    label = _WHITESPACE.sub(" ", raw.replace("**", "").replace("__", "")).strip()
    previous = None
    while label != previous:
        previous = label
        label = label.strip().strip(_QUOTES).rstrip(_TRAILING).strip()
    if len(label) > MAX_LABEL_CHARS:
        cut = label[:MAX_LABEL_CHARS]
        space = cut.rfind(" ")
        label = (cut[:space] if space > MAX_LABEL_CHARS // 2 else cut).rstrip(_TRAILING + " ")
    return label


def _excerpt(text: str) -> str:
    flat = _WHITESPACE.sub(" ", text).strip()
    return flat if len(flat) <= _EXCERPT_CHARS else flat[:_EXCERPT_CHARS] + "…"


_CHOICE_KEYS = ("choice", "answer", "topic", "candidate")
_CHOICE_LINE = re.compile(r"^[\s>*_#-]*(?:choice|answer|topic)[\s*_]*[:：=]\s*\(?(\d+)\)?", re.I | re.M)
_BARE_NUMBER = re.compile(r"^\s*\(?(\d+)\)?[.)]?\s*$")
_REWRITE_KEYS = ("query", "rewritten_query", "rewrite")
#: Longest rewritten query kept, in characters (a search query, not an essay).
MAX_REWRITE_CHARS = 300


def parse_choice(text: str, candidates: int) -> int:
    """The 0-based index of the candidate a judge's answer picks (it numbers them 1..candidates).

    Accepted, in this order: a JSON object with a ``choice`` (or ``answer``, ``topic``,
    ``candidate``) number, a ``Choice: 3`` line, or an answer that is only the number. Raises
    ``LabelParseError`` when none names a candidate in range: a guess is never made up.
    """
    excerpt = _excerpt(text)
    numbers: list[int] = []
    for body in _bodies(text):
        for value in _json_values(body):
            if isinstance(value, dict):
                found = _first_ci(value, _CHOICE_KEYS)
                if isinstance(found, int | str) and str(found).strip().isdigit():
                    numbers.append(int(str(found).strip()))
    numbers += [int(match) for match in _CHOICE_LINE.findall(text)]
    bare = _BARE_NUMBER.match(text)
    if bare:
        numbers.append(int(bare.group(1)))
    for number in numbers:
        if 1 <= number <= candidates:
            return number - 1
    if numbers:
        raise LabelParseError(f"the judge picked {numbers[0]}, not one of 1 to {candidates}", excerpt)
    raise LabelParseError("the judge's answer names no candidate", excerpt)


def parse_rewrite(text: str) -> str:
    """The rewritten query in an answer: a JSON object's ``query`` or the answer's first line,
    cleaned and capped at ``MAX_REWRITE_CHARS``. Raises ``LabelParseError`` when it is empty or a
    refusal."""
    excerpt = _excerpt(text)
    for body in _bodies(text):
        for value in _json_values(body):
            if isinstance(value, dict):
                found = _first_ci(value, _REWRITE_KEYS)
                if isinstance(found, str) and found.strip():
                    return _capped_query(found)
    if _REFUSAL.search(text):
        raise LabelParseError("the rewriter declined to rewrite the query", excerpt)
    stripped = _strip_fences(text).strip()
    if stripped.startswith(("{", "[")):
        raise LabelParseError("the rewriter's answer holds no query", excerpt)
    first = next((line for line in stripped.splitlines() if line.strip()), "")
    first = re.sub(r"^\s*(?:rewritten\s+)?query\s*[:：=]\s*", "", first, flags=re.I)
    query = _capped_query(first)
    if not query:
        raise LabelParseError("the rewriter's answer is empty", excerpt)
    return query


def _capped_query(raw: str) -> str:
    query = _WHITESPACE.sub(" ", raw).strip().strip(_QUOTES).strip()
    if len(query) > MAX_REWRITE_CHARS:
        cut = query[:MAX_REWRITE_CHARS]
        space = cut.rfind(" ")
        query = cut[:space] if space > MAX_REWRITE_CHARS // 2 else cut
    return query

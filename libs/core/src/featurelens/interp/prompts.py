"""The interpreter's and the predictor's chat messages, versioned.

Both prompts are document-level (a feature of an SAE over document embeddings fires on whole
documents, not tokens) and name the corpus's domain, so the label says what sets the firing
documents apart *within* that domain rather than naming the domain itself. ``PROMPT_VERSION``
is part of every cache key and of every stored label: change it whenever the wording changes.

Each document is shown on one line (whitespace collapsed, cut at ``max_doc_chars``), so a
document cannot fake the structure of the prompt with line breaks.
"""

from __future__ import annotations

from collections.abc import Sequence

from featurelens.interp.types import ExampleDocument, FeatureExamples

PROMPT_VERSION = "interp-2026.11-1"

#: The most words a label may have, as the interpreter is told.
MAX_LABEL_WORDS = 8
#: The activation scale shown to the interpreter and asked of the predictor: 0 to this.
SCALE_MAX = 10

ChatMessage = dict[str, str]


_INTERPRETER_SYSTEM = (
    "You are an interpretability researcher. A sparse autoencoder was trained on embeddings of whole "
    "documents; each of its features fires on some documents and not on others. You are shown documents "
    f"on which one feature fires, with how strongly (0 to {SCALE_MAX}, {SCALE_MAX} being its strongest), "
    "and documents from the same corpus on which it does not fire. Find the topic, method, object or "
    "style that the firing documents share and the others lack, and name it in a short, specific label "
    f"of at most {MAX_LABEL_WORDS} words. Every document comes from the same corpus, so do not name the "
    "corpus's general field. Answer with JSON only, no other text: "
    '{"label": "<label>"}'
)

_PREDICTOR_SYSTEM = (
    "You are an interpretability researcher. A sparse autoencoder was trained on embeddings of whole "
    "documents; one of its features is described by a short label. Predict, from the label alone, how "
    "strongly the feature fires on each document: a score from 0 (it does not fire) to "
    f"{SCALE_MAX} (it fires as strongly as it ever does). Many documents may not fire at all. Answer "
    'with JSON only, no other text: {"predictions": [{"id": 1, "score": 0}, ...]} with exactly one '
    "entry for every document, using the documents' ids."
)


def interpreter_messages(
    examples: FeatureExamples, domain: str, max_doc_chars: int = 600
) -> list[ChatMessage]:
    """The system and user messages asking for a label of ``examples.feature``.

    Shows the train firing documents (in the order given, with their activation on a 0-10 scale
    relative to the strongest one shown) and the train negatives; never a test document.
    """
    _check_max_doc_chars(max_doc_chars)
    if not examples.train_firing:
        raise ValueError(f"feature {examples.feature}: there is no firing document to show the interpreter")
    strongest = max(document.activation for document in examples.train_firing)
    if not strongest > 0.0:
        raise ValueError(
            f"feature {examples.feature}: the firing documents shown to the interpreter have no positive "
            "activation"
        )
    firing = "\n".join(
        f"{index}. (activation {_scaled(document.activation, strongest)}) "
        f"{one_line(document.text, max_doc_chars)}"
        for index, document in enumerate(examples.train_firing, start=1)
    )
    if examples.train_negatives:
        negatives = "\n".join(
            f"{index}. {one_line(document.text, max_doc_chars)}"
            for index, document in enumerate(examples.train_negatives, start=1)
        )
    else:
        negatives = "(none shown)"
    user = (
        f"Corpus: {domain_line(domain)}\n\n"
        f"Documents on which the feature fires, with its activation (0-{SCALE_MAX}):\n{firing}\n\n"
        f"Documents on which the feature does not fire:\n{negatives}\n\n"
        f"What do the firing documents share that the others lack? Answer with JSON only: "
        f'{{"label": "<at most {MAX_LABEL_WORDS} words>"}}'
    )
    return [{"role": "system", "content": _INTERPRETER_SYSTEM}, {"role": "user", "content": user}]


def predictor_messages(
    label: str, documents: Sequence[ExampleDocument], domain: str, max_doc_chars: int = 600
) -> list[ChatMessage]:
    """The system and user messages asking for a 0-10 score of each document, numbered from 1.

    Only the documents' texts are shown, in the order given (the caller shuffles them).
    """
    _check_max_doc_chars(max_doc_chars)
    clean_label = one_line(label, max_doc_chars)
    if not clean_label:
        raise ValueError("label is empty; the predictor needs a label to predict from")
    if not documents:
        raise ValueError("documents is empty; the predictor needs at least one document to score")
    numbered = "\n".join(
        f"{index}. {one_line(document.text, max_doc_chars)}"
        for index, document in enumerate(documents, start=1)
    )
    count = len(documents)
    user = (
        f"Corpus: {domain_line(domain)}\n"
        f"Feature label: {clean_label}\n\n"
        f"Documents ({count}):\n{numbered}\n\n"
        f"Score all {count} documents, ids 1 to {count}. Answer with JSON only: "
        f'{{"predictions": [{{"id": 1, "score": <0-{SCALE_MAX}>}}, ...]}}'
    )
    return [{"role": "system", "content": _PREDICTOR_SYSTEM}, {"role": "user", "content": user}]


def _scaled(activation: float, strongest: float) -> int:
    """The activation on the 0-10 scale; a firing document never shows as 0."""
    return max(1, min(SCALE_MAX, round(SCALE_MAX * activation / strongest)))


def one_line(text: str, max_chars: int) -> str:
    """The text on one line, cut at a word boundary to at most ``max_chars`` characters (+ "…")."""
    # str.split is ~10x faster than a regex; a long abstract only needs its start flattened.
    head = text[: 4 * max_chars + 1]
    flat = " ".join(head.split())
    if len(flat) <= max_chars and len(head) < len(text):
        flat = " ".join(text.split())  # mostly whitespace: flatten it all
    if len(flat) <= max_chars:
        return flat
    cut = flat[:max_chars]
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def domain_line(domain: str) -> str:
    flat = " ".join(domain.split())
    if not flat:
        raise ValueError("domain is empty; say what the corpus is (e.g. 'astrophysics paper abstracts')")
    return flat[:200]


def _check_max_doc_chars(max_doc_chars: int) -> None:
    if max_doc_chars < 20:
        raise ValueError(
            f"max_doc_chars is {max_doc_chars}; documents need at least 20 characters to be read"
        )

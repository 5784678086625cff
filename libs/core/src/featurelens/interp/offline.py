"""The offline labeller: a feature's label from contrastive keyphrases, chosen with the embedding model.

No LLM. For each feature:

1. **Candidates** — phrases of 1 to 3 words that occur in the shown firing documents, never across
   a stop word or punctuation (so "formation of galaxies" yields "formation" and "galaxies", not
   "formation galaxies"); English stop words and scientific-abstract filler ("paper", "results",
   "using", ...) are left out, and so is inline LaTeX. scikit-learn's ``CountVectorizer`` counts
   in how many firing and how many negative documents each phrase occurs.
2. **Contrast** — a phrase scores by how much more often it occurs in the firing documents than
   in the shown negatives and, when the interpreter was given background texts, those random
   corpus documents (a smoothed log-odds weighted by its firing share, the two-class form of
   c-TF-IDF); phrases in too few firing documents are dropped.
3. **Choice** — the best ``candidates`` phrases are embedded (those not remembered from earlier
   features, in one call) and ranked by how well each, as a label, would separate the shown firing
   documents from the others by cosine: when the interpreter was given a background of random
   corpus documents, its AUROC against them and the shown negatives; else its cosine to the firing
   documents' centroid minus its cosine to the negatives' centroid; plus ``keyword_weight`` times its
   contrast (scaled to the best phrase's). The best phrase leads; then, greedily,
   the phrase that makes the whole label (its embedding taken as the mean of its phrases') separate
   best joins it, up to ``max_phrases``, while the label still gains and never with a phrase that
   shares a word with a chosen one or nearly repeats it ("dark matter halos; subhalo mass
   function; satellite galaxies").

A feature whose texts give no phrase is labelled with its top document's most frequent content
words, or its opening words: never an empty label.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from featurelens.interp.examples import ExampleConfig, centroid
from featurelens.interp.types import Embedder, ExampleDocument, FeatureExamples, Interpretation

logger = logging.getLogger(__name__)

#: Words that scientific abstracts use whatever their subject; they never make a label.
ABSTRACT_FILLER = frozenset(
    [
        "paper",
        "papers",
        "result",
        "results",
        "study",
        "studies",
        "studied",
        "using",
        "use",
        "used",
        "uses",
        "show",
        "shows",
        "showed",
        "shown",
        "showing",
        "present",
        "presents",
        "presented",
        "presenting",
        "propose",
        "proposes",
        "proposed",
        "find",
        "finds",
        "found",
        "finding",
        "findings",
        "work",
        "works",
        "also",
        "however",
        "based",
        "new",
        "novel",
        "approach",
        "approaches",
        "method",
        "methods",
        "demonstrate",
        "demonstrates",
        "demonstrated",
        "investigate",
        "investigates",
        "investigated",
        "obtain",
        "obtained",
        "provide",
        "provides",
        "provided",
        "including",
        "include",
        "includes",
        "respectively",
        "furthermore",
        "moreover",
        "additionally",
        "particular",
        "suggest",
        "suggests",
        "suggesting",
        "indicate",
        "indicates",
        "indicating",
        "significant",
        "significantly",
        "recent",
        "recently",
        "different",
        "various",
        "possible",
        "potential",
        "consistent",
        "compared",
        "et",
        "al",
        "resulting",
        "allows",
        "allow",
        "enables",
        "enable",
        "leading",
        "lead",
        "high",
        "higher",
        "low",
        "lower",
        "large",
        "larger",
        "small",
        "smaller",
        "key",
        "main",
        "important",
        "importantly",
        "typical",
        "typically",
        "approximately",
        "overall",
        "current",
        "currently",
        "order",
        "case",
        "cases",
        "number",
        "value",
        "values",
        "role",
        "total",
        "times",
    ]
)

_MATH = re.compile(r"\$[^$]*\$|\\\(.*?\\\)|\\[a-zA-Z]+|https?://\S+")
#: A word (a letter, then letters, digits or hyphens, 2 characters at least) or a phrase break.
_TOKEN = re.compile(r"(?u)[^\W\d_][\w-]*[^\W_]|[.,;:!?()\[\]{}\"“”'`=<>/|]|\s[-–—]\s")


#: The examples the offline labeller does best with: no prompt to keep short, so it reads 20
#: firing documents rather than 10 (measured on astro-ph: +0.02 to +0.03 mean embedding AUROC).
OFFLINE_EXAMPLES = ExampleConfig(top_documents=20)

#: Phrase embeddings an ``OfflineInterpreter`` remembers (16,384 MiniLM rows take 25 MB).
PHRASE_CACHE_SIZE = 16_384


@dataclass(frozen=True)
class OfflineConfig:
    """How the offline labeller finds and chooses phrases."""

    max_phrases: int = 3
    """Most phrases in a label, joined by "; " (on astro-ph, 3 rather than 2: +0.01 mean AUROC)."""

    candidates: int = 40
    """Best keyword candidates embedded (in one call) to choose the label from."""

    max_words: int = 3
    """Longest phrase, in words."""

    min_firing_share: float = 0.2
    """A candidate occurs in at least this share of the shown firing documents (and in 2 of them,
    when there are 2 or more)."""

    duplicate_cosine: float = 0.75
    """A phrase at least this close (cosine) to a chosen one, or sharing a word (or a form of one)
    with it, is not added."""

    min_gain: float = 0.0
    """A phrase after the first is added only when it raises the label's separation of the shown
    firing documents (AUROC against the negatives and background) by more than this."""

    keyword_weight: float = 0.05
    """How much a phrase's keyword contrast (scaled to the feature's best, 1) counts beside its
    separation (an AUROC) when choosing the label: a label's worth is its separation plus this
    times its phrases' mean scaled contrast (on astro-ph with background texts, 0.05 rather than 0:
    +0.01 mean AUROC; 0.03 and 0.08 fall between, 0.15 loses it)."""

    extra_stop_words: frozenset[str] = frozenset()
    """Words never used in a label, on top of English stop words and ``ABSTRACT_FILLER``."""

    def __post_init__(self) -> None:
        for name in ("max_phrases", "candidates", "max_words"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"OfflineConfig.{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.min_firing_share <= 1.0:
            raise ValueError(
                f"OfflineConfig.min_firing_share must be in [0, 1], got {self.min_firing_share!r}"
            )
        if not 0.0 <= self.keyword_weight < float("inf"):
            raise ValueError(
                f"OfflineConfig.keyword_weight must be a finite number >= 0, got {self.keyword_weight!r}"
            )
        if not -1.0 <= self.duplicate_cosine <= 1.0:
            raise ValueError(
                f"OfflineConfig.duplicate_cosine must be in [-1, 1], got {self.duplicate_cosine!r}"
            )


class OfflineInterpreter:
    """An ``Interpreter`` without an LLM: contrastive keyphrases, chosen with an embedding model.

    ``background`` is optional: the embeddings (rows) of a few hundred documents drawn at random
    from the corpus. With it, phrases are chosen by how well they separate the firing documents
    from the corpus at large, which the 3 random negatives shown per feature estimate poorly
    (measured on astro-ph abstracts: +0.04 mean embedding AUROC). Read it once per labelling job.

    ``background_texts`` is optional too: the texts of such random documents (best the same ones).
    With them, a phrase's keyword contrast counts the background beside the shown negatives (the
    class-based TF-IDF of the firing documents against the corpus), so phrases common across the
    corpus ("data", "parameters", "range") rank low. Their phrases are counted once, here.
    """

    def __init__(
        self,
        embedder: Embedder,
        config: OfflineConfig = OfflineConfig(),
        *,
        background: npt.ArrayLike | None = None,
        background_texts: Sequence[str] | None = None,
    ) -> None:
        self._embedder = embedder
        self._config = config
        self._background: npt.NDArray[np.float32] | None = None
        if background is not None:
            rows = np.asarray(background, dtype=np.float32)
            if rows.ndim != 2 or rows.shape[0] == 0 or not np.isfinite(rows).all():
                raise ValueError(
                    f"background must be a non-empty, finite (n, dim) array, got shape {rows.shape}"
                )
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            if (norms == 0).any():
                raise ValueError("background holds an all-zero embedding")
            self._background = rows / norms
        self._stop_words = ENGLISH_STOP_WORDS | ABSTRACT_FILLER | {w.lower() for w in config.extra_stop_words}
        # The same documents show up for many features (over half the lookups of a whole SAE's
        # job hit); 2,048 documents' phrases take about 30 MB.
        self._phrases = lru_cache(maxsize=2048)(self._phrases_of)
        self._vectors: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._corpus_df: dict[str, int] = {}
        self._corpus_size = 0
        if background_texts is not None:
            self._corpus_df, self._corpus_size = self._document_frequencies(background_texts)

    def _document_frequencies(self, texts: Sequence[str]) -> tuple[dict[str, int], int]:
        """In how many of the background texts each phrase occurs, counted once per interpreter."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts) or len(texts) == 0:
            raise ValueError("background_texts must be a non-empty sequence of strings")
        vectorizer = CountVectorizer(analyzer=self._phrases_of, binary=True, lowercase=False)
        try:
            counts = vectorizer.fit_transform(texts)
        except ValueError:  # no text holds a phrase: nothing is common
            return {}, len(texts)
        df = np.asarray(counts.sum(axis=0)).ravel()
        return {str(p): int(n) for p, n in zip(vectorizer.get_feature_names_out(), df, strict=True)}, len(
            texts
        )

    @property
    def model(self) -> str:
        return "offline"

    @property
    def prompt_version(self) -> str:
        return "offline-1"

    @property
    def config(self) -> OfflineConfig:
        return self._config

    def _phrases_of(self, text: str) -> tuple[str, ...]:
        """The 1..max_words-word phrases of a text, never across punctuation or a stop word."""
        runs: list[list[str]] = []
        run: list[str] = []
        for token in _TOKEN.findall(_MATH.sub(" ", text.lower())):
            if token in self._stop_words or not token[0].isalpha():  # a stop word or a break
                if run:
                    runs.append(run)
                    run = []
            else:
                run.append(token)
        if run:
            runs.append(run)
        phrases: list[str] = []
        for words in runs:
            for n in range(1, min(self._config.max_words, len(words)) + 1):
                phrases.extend(map(" ".join, zip(*(words[i:] for i in range(n)), strict=False)))
        return tuple(phrases)

    def keyphrases(self, firing: Sequence[str], negatives: Sequence[str]) -> list[tuple[str, float]]:
        """Phrases of the firing texts with their contrast against the negatives, best first.

        Only phrases in enough firing texts (``min_firing_share``, and 2 when there are 2 or more)
        are counted in the negatives, which keeps the vectorizer's vocabulary small.
        """
        if not firing:
            return []
        n_firing, n_negative = len(firing), len(negatives)
        support = max(min(2, n_firing), int(np.ceil(self._config.min_firing_share * n_firing)))
        vectorizer = CountVectorizer(analyzer=self._phrases, binary=True, lowercase=False, min_df=support)
        try:
            in_firing = vectorizer.fit_transform(firing)
        except ValueError:  # no phrase in enough firing texts (an empty vocabulary)
            return []
        df_firing = np.asarray(in_firing.sum(axis=0), dtype=np.float64).ravel()
        df_negative = np.zeros_like(df_firing)
        if negatives:
            df_negative = np.asarray(vectorizer.transform(negatives).sum(axis=0), dtype=np.float64).ravel()
        names = vectorizer.get_feature_names_out()
        if self._corpus_size:
            df_negative += np.array([self._corpus_df.get(str(p), 0) for p in names], dtype=np.float64)
            n_negative += self._corpus_size
        p_firing = (df_firing + 0.5) / (n_firing + 1.0)
        p_negative = (df_negative + 0.5) / (n_negative + 1.0)
        score = p_firing * np.log(p_firing / p_negative)
        keep = np.flatnonzero(score > 0)
        # Ties (common with 10 documents) go to the longer phrase, then the alphabet: deterministic.
        order = sorted(keep, key=lambda j: (-score[j], -len(names[j]), names[j]))
        return [(str(names[j]), float(score[j])) for j in order]

    async def interpret(self, examples: FeatureExamples, domain: str) -> Interpretation:
        """A short label for the feature: one or two phrases, best first."""
        firing = [d.text for d in examples.train_firing]
        negatives = [d.text for d in examples.train_negatives]
        ranked = self.keyphrases(firing, negatives)[: self._config.candidates]
        if not ranked:
            label = self._fallback(examples)
            logger.debug("feature %d: no contrastive phrase; fell back to %r", examples.feature, label)
            return Interpretation(label)
        phrases = [phrase for phrase, _ in ranked]
        scores = np.array([score for _, score in ranked], dtype=np.float64)
        keyword = self._config.keyword_weight * scores / scores[0]
        vectors = await self._embed(phrases)
        shown, contrasted = self._reference(examples, vectors.shape[1])
        merit = self._merit(vectors, shown, contrasted) + keyword
        chosen = self._choose(phrases, vectors, merit, keyword, shown, contrasted)
        return Interpretation("; ".join(phrases[j] for j in chosen))

    async def _embed(self, phrases: Sequence[str]) -> npt.NDArray[np.float32]:
        """The phrases' embeddings: those not remembered in one call, the last ``PHRASE_CACHE_SIZE``
        remembered (features share many phrases: about three in four over a job on astro-ph)."""
        missing = [p for p in dict.fromkeys(phrases) if p not in self._vectors]
        if missing:
            rows = np.asarray(await self._embedder.embed(missing), dtype=np.float32)
            if rows.ndim != 2 or rows.shape[0] != len(missing):
                raise ValueError(f"the embedder returned {rows.shape[0]} rows for {len(missing)} phrases")
            for phrase, row in zip(missing, rows, strict=True):
                self._vectors[phrase] = row
        vectors = np.stack([self._vectors[p] for p in phrases])
        for phrase in phrases:
            self._vectors.move_to_end(phrase)
        while len(self._vectors) > PHRASE_CACHE_SIZE:
            self._vectors.popitem(last=False)
        return vectors

    def _reference(
        self, examples: FeatureExamples, dim: int
    ) -> tuple[npt.NDArray[np.float32] | None, npt.NDArray[np.float32] | None]:
        """The shown firing documents' and negatives' unit embeddings (None where there are none)."""
        if self._background is not None and self._background.shape[1] != dim:
            raise ValueError(
                f"the background has {self._background.shape[1]} dimensions; the embedder gives {dim}"
            )
        return _embedded(examples.train_firing), _embedded(examples.train_negatives)

    def _merit(
        self,
        vectors: npt.NDArray[np.float32],
        firing: npt.NDArray[np.float32] | None,
        negatives: npt.NDArray[np.float32] | None,
    ) -> npt.NDArray[np.float64]:
        """How well each row, as a label, separates the shown firing documents from the rest: with
        a background, the AUROC of its cosines against the background and the shown negatives, ties
        broken by the contrast; without one (a handful of negatives estimate an AUROC poorly:
        -0.03 measured), the contrast alone: its cosine to the firing centroid minus its cosine to
        the negatives' centroid."""
        # Without embeddings, keep the keyword order (a stable sort of zeros).
        contrast = np.zeros(vectors.shape[0], dtype=np.float64)
        if firing is not None:
            contrast += vectors @ centroid(firing)
        if negatives is not None:
            contrast -= vectors @ centroid(negatives)
        if firing is None or self._background is None:
            return contrast
        others = self._background if negatives is None else np.concatenate([negatives, self._background])
        # The contrast, scaled far below one AUROC step, only breaks ties.
        return separation(firing @ vectors.T, others @ vectors.T) + 1e-6 * contrast

    def _choose(
        self,
        phrases: Sequence[str],
        vectors: npt.NDArray[np.float32],
        merit: npt.NDArray[np.float64],
        keyword: npt.NDArray[np.float64],
        firing: npt.NDArray[np.float32] | None,
        negatives: npt.NDArray[np.float32] | None,
    ) -> list[int]:
        """The best phrase, then, greedily, the phrase whose addition makes the label separate best
        (the label's embedding taken as the mean of its phrases'), while it still gains; never one
        that shares a word with a chosen one or nearly repeats it."""
        chosen = [int(np.argsort(-merit, kind="stable")[0])]
        best = float(merit[chosen[0]])
        total = vectors[chosen[0]].astype(np.float64)
        while len(chosen) < self._config.max_phrases:
            allowed = [
                j
                for j in range(len(phrases))
                if j not in chosen
                and not any(_share_a_word(phrases[j], phrases[c]) for c in chosen)
                and not any(float(vectors[j] @ vectors[c]) >= self._config.duplicate_cosine for c in chosen)
            ]
            if not allowed:
                break
            trial = total[None, :] + vectors[allowed]
            trial /= np.maximum(np.linalg.norm(trial, axis=1, keepdims=True), 1e-12)
            gain = self._merit(trial.astype(np.float32), firing, negatives)
            gain += (keyword[chosen].sum() + keyword[allowed]) / (len(chosen) + 1)
            k = int(np.argmax(gain))
            if gain[k] <= best + self._config.min_gain:
                break
            chosen.append(allowed[k])
            best = float(gain[k])
            total += vectors[allowed[k]]
        return chosen

    def _fallback(self, examples: FeatureExamples) -> str:
        """The top document's most frequent content words, or its opening words, or the feature id."""
        if examples.train_firing:
            text = examples.train_firing[0].text
            words = [p for p in self._phrases(text) if " " not in p]
            if words:
                counts: dict[str, int] = {}
                for word in words:
                    counts[word] = counts.get(word, 0) + 1
                best = sorted(counts, key=lambda w: (-counts[w], words.index(w)))[:3]
                return " ".join(best)
            opening = " ".join(text.split()[:6]).strip()
            if opening:
                return opening
        return f"feature {examples.feature}"


def _embedded(documents: Sequence[ExampleDocument]) -> npt.NDArray[np.float32] | None:
    """The documents' embeddings as unit rows, or None when none has one."""
    vectors = [d.embedding for d in documents if d.embedding is not None]
    if not vectors:
        return None
    rows = np.stack(vectors).astype(np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _share_a_word(first: str, second: str) -> bool:
    """Whether two phrases share a word or forms of one ("molecule" and "molecular", "spectrum"
    and "trispectrum", "pre-trained" and "training"): one inside the other, or the same 5-letter start."""
    for a in first.replace("-", " ").split():
        for b in second.replace("-", " ").split():
            short, long = sorted((a, b), key=len)
            if short in long or (len(short) >= 5 and short[:5] == long[:5]):
                return True
    return False


def separation(firing: npt.ArrayLike, others: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Per column, the AUROC of the firing rows' values against the other rows' (ties count half)."""
    high = np.asarray(firing, dtype=np.float64)
    low = np.sort(np.asarray(others, dtype=np.float64), axis=0)
    wins = np.empty(high.shape[1], dtype=np.float64)
    for j in range(high.shape[1]):
        below = np.searchsorted(low[:, j], high[:, j], side="left")
        not_above = np.searchsorted(low[:, j], high[:, j], side="right")
        wins[j] = (below + not_above).sum() / 2.0
    return wins / (high.shape[0] * low.shape[0])

"""`featurelens eval steering`: does steering search by a feature do what the feature says?

The paper's protocol (O'Neill et al. 2024, section 6), corrected, run against a live stack through
the SDK so that it measures the product:

- Queries are titles of papers held out of the index (``featurelens.corpus.held_out`` and absent
  from the index's export), so a query never finds itself.
- Each trial draws, without replacement and seeded, a target feature (for up-weighting one not
  active on the query, for down-weighting one active on it) and four distinct distractors from
  the target's density quantile (``sampling``).
- For each weight of the grid the query is steered additively (and, as a baseline, by a clamp),
  and cos(q, q′) is the service's ``steer_cosine``. The other baseline rewrites the query
  ("<query> and <label>" / "<query> but not <label>", embedded by the encoder).
- The objective judge (``judges``) picks the candidate whose activation over the top hits rose
  (fell) most; a trial is correct when that is the target. Beside it, the share of the target's
  dominant arXiv category in the top hits before and after.
- Family-level rows steer a whole family against four other families of similar density.
- Two checks ride along: a zero-weight steer must return the unsteered ranking exactly, and
  recall@k of searching with the SAE's reconstruction of the query says what the SAE loses.
- With ``llm`` set, the paper's LLM judge also judges every steered result set (through the
  labelling service's ``JudgeSteering``, reading the candidates' labels and the hits' titles),
  and the LLM's own rewrite of the query is a further baseline (``llm_judge``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featurelens.client import (
    FeaturelensClient,
    FeaturelensError,
    Intervention,
    SearchResult,
    SparseVector,
)
from featurelens.evaluation.intervals import mean_interval, proportion
from featurelens.evaluation.judges import (
    Direction,
    candidate_totals,
    category_share,
    dominant_category,
    objective_pick,
)
from featurelens.evaluation.llm_judge import LlmJudge, LlmOptions
from featurelens.evaluation.report import Section
from featurelens.evaluation.sampling import (
    DENSITY_BINS,
    DISTRACTORS,
    Candidates,
    density_bins,
    draw_candidates,
)

logger = logging.getLogger(__name__)

DIRECTIONS: tuple[Direction, ...] = ("up", "down")
#: Methods in the order the tables list them.
METHODS = ("sae", "clamp", "rewrite", "llm_rewrite", "family")
METHOD_NAMES = {
    "sae": "SAE steering (additive)",
    "clamp": "clamp steering",
    "rewrite": "query rewriting",
    "llm_rewrite": "query rewriting (LLM)",
    "family": "family steering (additive)",
}
#: Largest weight the services accept (``featurelens.steering.MAX_STEER_WEIGHT``, not imported:
#: the SDK side imports no core for this).
MAX_WEIGHT = 10.0
#: Queries embedded and encoded per round trip.
QUERY_CHUNK = 32
#: A target's dominant category: the commonest among the documents it fires on most.
DOMINANT_DOCS = 20
#: Share of the corpus that the held-out rule sets aside (the core's default).
HOLDOUT_FRACTION = 0.05
#: The paper's figures (astro SAE64, GPT-4o judge), set beside ours.
PAPER = {
    "up": "0.90–0.94 at cos(q, q′) ≤ 0.35, 0.78 at 0.70; rewriting at cos ≈ 0.72: 0.58",
    "down": "0.52–0.60; rewriting at cos ≈ 0.72: 0.40",
}


class SteeringEvaluationError(ValueError):
    """The stack or the corpus cannot support the evaluation; the message says why."""


@dataclass(frozen=True)
class SteeringOptions:
    """What ``run_steering`` measures; checked on construction."""

    corpus: str
    """Indexed corpus name, e.g. "astro"."""
    corpus_path: Path
    """The corpus file (JSONL / JSONL.gz) the held-out queries and the categories come from."""
    sae_id: str | None = None
    """None: the server's default SAE."""
    trials: int = 200
    """Trials per direction (up / down)."""
    weights: tuple[float, ...] = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
    """Additive weights (the query and decoder directions are unit-norm); also the clamp values
    for up-weighting and the removed share of the target's activation for clamp down-weighting."""
    seed: int = 0
    top_k: int = 10
    families: bool = True
    """Also family-level rows when the SAE has families."""
    llm: LlmOptions | None = None
    """The paper's LLM judge and the LLM rewrite too (the labelling server needs an LLM endpoint)."""

    def __post_init__(self) -> None:
        if not self.corpus.strip():
            raise ValueError("name the indexed corpus to evaluate, e.g. corpus='astro'")
        if self.trials < 1:
            raise ValueError(f"trials must be at least 1, got {self.trials}")
        if not self.weights:
            raise ValueError("give at least one steering weight")
        for weight in self.weights:
            if not (math.isfinite(weight) and 0 < weight <= MAX_WEIGHT):
                raise ValueError(
                    f"steering weights must be above 0 and at most {MAX_WEIGHT:g}, got {weight!r}"
                )
        if len(set(self.weights)) != len(self.weights):
            raise ValueError(f"steering weights repeat: {self.weights}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.seed < 0:
            raise ValueError(f"seed must be zero or positive, got {self.seed}")


@dataclass(frozen=True)
class Query:
    """A held-out paper whose title is the query."""

    doc_id: str
    title: str


@dataclass
class Cell:
    """Everything measured for one method, direction and weight (weight None for rewriting)."""

    cosines: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    ties: int = 0
    shares_before: list[float] = field(default_factory=list)
    shares_after: list[float] = field(default_factory=list)
    llm_correct: list[bool] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The cell's figures, JSON-ready: mean cos with its 95% half-width, accuracy with its 95%
        Wilson interval, n, ties, the category shares, and the LLM judge's accuracy (``llm_*``,
        over the trials it answered)."""
        mean_cos, cos_half = mean_interval(self.cosines)
        accuracy = proportion(sum(self.correct), len(self.correct))
        llm = proportion(sum(self.llm_correct), len(self.llm_correct))
        return {
            "n": accuracy.n,
            "mean_cos": mean_cos,
            "cos_ci": cos_half,
            "successes": accuracy.successes,
            "accuracy": accuracy.rate,
            "accuracy_low": accuracy.low,
            "accuracy_high": accuracy.high,
            "ties": self.ties,
            "category_share_before": mean_interval(self.shares_before)[0],
            "category_share_after": mean_interval(self.shares_after)[0],
            "llm_n": llm.n,
            "llm_accuracy": llm.rate,
            "llm_accuracy_low": llm.low,
            "llm_accuracy_high": llm.high,
        }


@dataclass(frozen=True)
class IndexView:
    """What the index holds for one SAE: every document's latents and each feature's density."""

    latents: Mapping[str, SparseVector]
    densities: Mapping[int, float]


def export_index(client: FeaturelensClient, corpus: str, sae_id: str) -> IndexView:
    """Every indexed document's latents (through ExportActivations) and each latent's density."""
    latents: dict[str, SparseVector] = {}
    for batch in client.search.export_activations(corpus, sae_id=sae_id):
        latents.update(zip(batch.doc_ids, batch.latents, strict=True))
    if not latents:
        raise SteeringEvaluationError(f"corpus {corpus!r} has no documents indexed for SAE {sae_id!r}")
    counts: dict[int, int] = {}
    for vector in latents.values():
        for feature, value in zip(vector.indices.tolist(), vector.values.tolist(), strict=True):
            if value > 0:
                counts[feature] = counts.get(feature, 0) + 1
    return IndexView(latents, {feature: count / len(latents) for feature, count in counts.items()})


def held_out_queries(path: Path, indexed: Mapping[str, object]) -> tuple[list[Query], dict[str, str]]:
    """The titled papers of ``path`` that are held out and not indexed, in file order, and every
    paper's primary category by id."""
    # Imported here: the held-out rule and the corpus reader live in featurelens-core, which the
    # rest of the SDK does without.
    from featurelens.corpus import held_out, read_corpus

    if not path.is_file():
        raise SteeringEvaluationError(f"corpus file {path} does not exist")
    queries: list[Query] = []
    category_of: dict[str, str] = {}
    for record in read_corpus(path):
        if record.categories:
            category_of[record.id] = record.categories[0]
        if record.title.strip() and record.id not in indexed and held_out(record.id, HOLDOUT_FRACTION):
            queries.append(Query(record.id, " ".join(record.title.split())))
    if not queries:
        raise SteeringEvaluationError(
            f"no held-out paper of {path} is missing from the index: the queries would find "
            "themselves; index the corpus leaving out the held-out papers "
            "(featurelens.corpus.held_out) and run again"
        )
    return queries, category_of


def _ids(result: SearchResult) -> list[str]:
    return [hit.document.id for hit in result.hits]


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


@dataclass
class _Trial:
    """One trial's candidates (the target first), as latent sets, and the unsteered figures."""

    query: str
    members: list[tuple[int, ...]]
    latents: Mapping[str, SparseVector]
    category_of: Mapping[str, str]
    category: str | None
    before_ids: list[str]
    labels: tuple[str, ...] = ()
    """The candidates' labels (target first), for the LLM judge; empty when one has none."""
    before_totals: list[float] = field(default_factory=list)
    share_before: float = 0.0

    def __post_init__(self) -> None:
        self.before_totals = candidate_totals(self.latents_of(self.before_ids), self.members)
        if self.category is not None:
            self.share_before = category_share(self.before_ids, self.category, self.category_of)

    def latents_of(self, doc_ids: Sequence[str]) -> list[dict[int, float]]:
        return [self.latents[d].to_dict() if d in self.latents else {} for d in doc_ids]


class _Run:
    """One evaluation's state: the stack, the trials' draws and the cells they fill."""

    def __init__(self, client: FeaturelensClient, options: SteeringOptions, sae_id: str, model: str) -> None:
        self.client = client
        self.options = options
        self.sae_id = sae_id
        self.model = model
        self.draws = np.random.default_rng(options.seed)
        # A separate stream for breaking the judge's ties, so that ties never shift the draws.
        self.tie_breaks = np.random.default_rng([options.seed, 1])
        self.cells: dict[tuple[str, Direction, float | None], Cell] = {}
        self.noop_trials = 0
        self.noop_identical = 0
        # Down-weighting trials whose target, though active on the query, fires on none of the
        # unsteered top hits: steering it away can change nothing a judge could see.
        self.down_target_absent = 0
        self.unsteered: dict[str, list[str]] = {}
        self.dominant: dict[int, str | None] = {}
        self.trials = {direction: 0 for direction in DIRECTIONS}
        self.family_trials = {direction: 0 for direction in DIRECTIONS}
        self.titles: dict[str, str] = {}
        self.llm = LlmJudge(client, options.llm, options.seed) if options.llm is not None else None
        # Judgements the LLM judge could not make because a candidate has no label.
        self.llm_unlabelled = 0

    # -- reading the stack --------------------------------------------------------------------

    def search(self, vector: np.ndarray, interventions: Sequence[Intervention] = ()) -> SearchResult:
        result = self.client.search.search(
            self.options.corpus,
            vector=vector,
            sae_id=self.sae_id,
            top_k=self.options.top_k,
            interventions=interventions,
        )
        self.titles.update((hit.document.id, hit.document.title or hit.document.id) for hit in result.hits)
        return result

    def queries(self, pool: Sequence[Query]) -> Iterator[tuple[Query, np.ndarray, SparseVector]]:
        """``pool`` in a seeded random order, each with its embedding and latents, embedded a chunk
        at a time (only as many as the trials use)."""
        order = self.draws.permutation(len(pool))
        for start in range(0, len(order), QUERY_CHUNK):
            chunk = [pool[int(i)] for i in order[start : start + QUERY_CHUNK]]
            vectors = self.client.encoder.embed([q.title for q in chunk], model=self.model).vectors
            latents = self.client.sae.encode(vectors, self.sae_id).rows
            yield from zip(chunk, vectors, latents, strict=True)

    def before(self, query: Query, vector: np.ndarray) -> list[str]:
        if query.doc_id not in self.unsteered:
            self.unsteered[query.doc_id] = _ids(self.search(vector))
        return self.unsteered[query.doc_id]

    def dominant_of(self, feature: int, category_of: Mapping[str, str]) -> str | None:
        if feature not in self.dominant:
            top = self.client.search.top_documents(
                self.options.corpus, feature, sae_id=self.sae_id, n=DOMINANT_DOCS
            )
            self.dominant[feature] = dominant_category((d.document.id for d in top), category_of)
        return self.dominant[feature]

    # -- recording ----------------------------------------------------------------------------

    def record(
        self,
        key: tuple[str, Direction, float | None],
        cosine: float,
        after_ids: Sequence[str],
        trial: _Trial,
    ) -> None:
        """Judge one steered result of ``trial`` and add it to the cell ``key``."""
        after = candidate_totals(trial.latents_of(after_ids), trial.members)
        pick, tied = objective_pick(trial.before_totals, after, key[1], self.tie_breaks)
        logger.debug(
            "%s %s %s: candidate totals before %s, after %s, pick %d%s",
            *key,
            [round(t, 3) for t in trial.before_totals],
            [round(t, 3) for t in after],
            pick,
            " (tied)" if tied else "",
        )
        cell = self.cells.setdefault(key, Cell())
        cell.cosines.append(cosine)
        cell.correct.append(pick == 0)
        cell.ties += tied
        if trial.category is not None:
            cell.shares_before.append(trial.share_before)
            cell.shares_after.append(category_share(after_ids, trial.category, trial.category_of))
        if self.llm is not None and self.llm.active:
            if not trial.labels:
                self.llm_unlabelled += 1
                return
            verdict = self.llm.judge(
                trial.query,
                trial.labels,
                [self.titles[d] for d in trial.before_ids],
                [self.titles[d] for d in after_ids],
                key[1],
            )
            if verdict is not None:
                cell.llm_correct.append(verdict)


def _feature_trial(
    run: _Run,
    direction: Direction,
    query: Query,
    vector: np.ndarray,
    latents: SparseVector,
    candidates: Candidates,
    index: IndexView,
    category_of: Mapping[str, str],
    labels: Mapping[int, str],
) -> None:
    """SAE, clamp and rewriting rows of one feature-level trial, and the no-op check."""
    target = candidates.target
    wanted = [labels.get(f, "") for f in candidates.all]
    trial = _Trial(
        query=query.title,
        members=[(f,) for f in candidates.all],
        latents=index.latents,
        category_of=category_of,
        category=run.dominant_of(target, category_of),
        before_ids=run.before(query, vector),
        labels=tuple(wanted) if all(wanted) else (),
    )
    if direction == "down" and trial.before_totals[0] <= 0:
        run.down_target_absent += 1
    noop = run.search(vector, [Intervention(feature=target, weight=0.0)])
    run.noop_trials += 1
    run.noop_identical += _ids(noop) == trial.before_ids
    sign = 1.0 if direction == "up" else -1.0
    activation = latents.to_dict().get(target, 0.0)
    for weight in run.options.weights:
        steered = run.search(vector, [Intervention(feature=target, weight=sign * weight)])
        run.record(("sae", direction, weight), steered.steer_cosine, _ids(steered), trial)
        clamp_value = weight if direction == "up" else max(0.0, activation * (1.0 - weight))
        clamped = run.search(vector, [Intervention(feature=target, weight=clamp_value, mode="clamp")])
        run.record(("clamp", direction, weight), clamped.steer_cosine, _ids(clamped), trial)
    label = labels.get(target)
    if label:
        joiner = "and" if direction == "up" else "but not"
        rewritten = run.client.encoder.embed([f"{query.title} {joiner} {label}"], model=run.model).vectors[0]
        cosine = float(np.dot(_unit(vector), _unit(rewritten)))
        run.record(("rewrite", direction, None), cosine, _ids(run.search(rewritten)), trial)
        written = run.llm.rewrite(query.title, label, direction) if run.llm is not None else None
        if written:
            by_llm = run.client.encoder.embed([written], model=run.model).vectors[0]
            cosine = float(np.dot(_unit(vector), _unit(by_llm)))
            run.record(("llm_rewrite", direction, None), cosine, _ids(run.search(by_llm)), trial)


def _family_trial(
    run: _Run,
    direction: Direction,
    query: Query,
    vector: np.ndarray,
    families: Sequence[_FamilyView],
    candidates: Candidates,
    index: IndexView,
    category_of: Mapping[str, str],
) -> None:
    """Family rows of one trial: the candidates are family indices, the target first."""
    wanted = [families[i].label for i in candidates.all]
    trial = _Trial(
        query=query.title,
        members=[families[i].members for i in candidates.all],
        latents=index.latents,
        category_of=category_of,
        category=run.dominant_of(families[candidates.target].parent, category_of),
        before_ids=run.before(query, vector),
        labels=tuple(wanted) if all(wanted) else (),
    )
    sign = 1.0 if direction == "up" else -1.0
    family_id = families[candidates.target].family_id
    for weight in run.options.weights:
        steered = run.search(vector, [Intervention(family_id=family_id, weight=sign * weight)])
        run.record(("family", direction, weight), steered.steer_cosine, _ids(steered), trial)


def _labels(client: FeaturelensClient, sae_id: str) -> dict[int, str]:
    """Every stored label of the SAE; none when the labelling service has none or is not there."""
    try:
        return {
            label.feature: label.label
            for label in client.labelling.list_labels(sae_id)
            if label.label.strip()
        }
    except FeaturelensError as error:
        logger.warning("no labels for SAE %s (%s): the rewriting baseline is left out", sae_id, error)
        return {}


@dataclass(frozen=True)
class _FamilyView:
    """What the evaluation needs of one family."""

    family_id: str
    members: tuple[int, ...]
    parent: int
    root_density: float
    label: str


def _families(client: FeaturelensClient, sae_id: str) -> list[_FamilyView]:
    """Every family of the SAE; none when the family service has none or is not there."""
    try:
        return [
            _FamilyView(f.family_id, tuple(f.features), f.parent_feature, f.root_density, f.label)
            for f in client.families.list_families(sae_id)
        ]
    except FeaturelensError as error:
        logger.warning("no families for SAE %s (%s): the family rows are left out", sae_id, error)
        return []


def _resolve(client: FeaturelensClient, options: SteeringOptions) -> tuple[str, str]:
    """The SAE to evaluate and the encoder model of the corpus, checked against the index."""
    corpora = {info.corpus: info for info in client.search.list_corpora()}
    info = corpora.get(options.corpus)
    if info is None:
        raise SteeringEvaluationError(
            f"corpus {options.corpus!r} is not indexed; indexed: {', '.join(sorted(corpora)) or 'none'}"
        )
    sae_id = options.sae_id
    if sae_id is None:
        defaults = [sae.sae_id for sae in client.sae.list_saes() if sae.is_default]
        if not defaults:
            raise SteeringEvaluationError("the sae service has no default SAE; name one with sae_id")
        sae_id = defaults[0]
    if sae_id not in info.sae_ids:
        raise SteeringEvaluationError(
            f"corpus {options.corpus!r} is not indexed with SAE {sae_id!r} (it has: "
            f"{', '.join(info.sae_ids) or 'none'})"
        )
    return sae_id, info.embedding_model


def _fidelity(run: _Run, used: Mapping[str, tuple[np.ndarray, SparseVector]]) -> dict[str, Any]:
    """recall@k of searching with the SAE's reconstruction of each query used, against the query's
    own top k."""
    recalls = []
    items = sorted(used.items())
    for start in range(0, len(items), QUERY_CHUNK):
        chunk = items[start : start + QUERY_CHUNK]
        decoded = run.client.sae.decode([latents for _, (_, latents) in chunk], run.sae_id).vectors
        for (doc_id, _), reconstruction in zip(chunk, decoded, strict=True):
            own = set(run.unsteered[doc_id])
            if own:
                recalls.append(len(own & set(_ids(run.search(reconstruction)))) / len(own))
    mean, half = mean_interval(recalls)
    return {"queries": len(recalls), "k": run.options.top_k, "recall": mean, "recall_ci": half}


def run_steering(client: FeaturelensClient, options: SteeringOptions) -> Section:
    """Run the steering evaluation against the stack ``client`` talks to; the report's section."""
    sae_id, model = _resolve(client, options)
    logger.info("steering evaluation of SAE %s on corpus %s", sae_id, options.corpus)
    index = export_index(client, options.corpus, sae_id)
    queries, category_of = held_out_queries(options.corpus_path, index.latents)
    logger.info("%d held-out queries, %d indexed documents", len(queries), len(index.latents))
    labels = _labels(client, sae_id)
    families = _families(client, sae_id) if options.families else []
    bin_of = density_bins(index.densities)
    # With labels, targets are labelled features so that every trial has its rewriting twin.
    target_pool = set(bin_of) & set(labels) if labels else set(bin_of)
    family_members = [family.members for family in families]
    family_bins = density_bins(
        {i: family.root_density for i, family in enumerate(families)},
        bins=max(1, min(DENSITY_BINS, len(families) // (DISTRACTORS + 1))),
    )

    run = _Run(client, options, sae_id, model)
    used: dict[str, tuple[np.ndarray, SparseVector]] = {}
    for direction in DIRECTIONS:
        for query, vector, latents in run.queries(queries):
            active = {int(f) for f, v in zip(latents.indices, latents.values, strict=True) if v > 0}
            if direction == "up":
                candidates = draw_candidates(run.draws, target_pool - active, set(bin_of) - active, bin_of)
            else:
                candidates = draw_candidates(run.draws, target_pool & active, set(bin_of), bin_of)
            if candidates is None:
                continue
            used[query.doc_id] = (vector, latents)
            _feature_trial(run, direction, query, vector, latents, candidates, index, category_of, labels)
            run.trials[direction] += 1
            if family_bins:
                touched = {i for i, members in enumerate(family_members) if active & set(members)}
                quiet = set(family_bins) - touched
                family_candidates = draw_candidates(
                    run.draws,
                    quiet if direction == "up" else touched,
                    quiet if direction == "up" else set(family_bins),
                    family_bins,
                    compatible=lambda t, d: not set(family_members[t]) & set(family_members[d]),
                )
                if family_candidates is not None:
                    _family_trial(
                        run,
                        direction,
                        query,
                        vector,
                        families,
                        family_candidates,
                        index,
                        category_of,
                    )
                    run.family_trials[direction] += 1
            if run.trials[direction] >= options.trials:
                break
        if run.trials[direction] < options.trials:
            logger.warning(
                "only %d of %d %s-weighting trials: the held-out queries ran out",
                run.trials[direction],
                options.trials,
                direction,
            )

    notes = []
    if not labels:
        notes.append("the SAE has no labels: no rewriting baseline")
    if options.families and not families:
        notes.append("the SAE has no families: no family rows")
    if run.llm is not None and run.llm.stopped:
        notes.append(f"the LLM judge stopped early: {run.llm.stopped}; its figures cover the trials before")
    if run.llm_unlabelled:
        notes.append(
            f"the LLM judge skipped {run.llm_unlabelled:,} steered results whose candidates were not all "
            "labelled"
        )
    cells = [
        {"method": method, "direction": direction, "weight": weight} | cell.summary()
        for (method, direction, weight), cell in sorted(run.cells.items(), key=_cell_order)
    ]
    data: dict[str, Any] = {
        "corpus": options.corpus,
        "sae_id": sae_id,
        "embedding_model": model,
        "judge": "objective" if run.llm is None else "objective and LLM",
        "llm_judge": run.llm.summary() if run.llm is not None else "not asked",
        "seed": options.seed,
        "top_k": options.top_k,
        "weights": list(options.weights),
        "candidates": DISTRACTORS + 1,
        "density_bins": DENSITY_BINS,
        "held_out_fraction": HOLDOUT_FRACTION,
        "queries_available": len(queries),
        "indexed_documents": len(index.latents),
        "labelled_features": len(labels),
        "families": len(families),
        "trials": dict(run.trials),
        "family_trials": dict(run.family_trials),
        "cells": cells,
        "down_target_absent": run.down_target_absent,
        "noop": {"trials": run.noop_trials, "identical": run.noop_identical},
        "fidelity": _fidelity(run, used),
        "paper": PAPER,
        "notes": notes,
    }
    return Section(
        name="steering",
        data=data,
        markdown=steering_markdown(data),
        figures={"steering_accuracy": lambda path: draw_accuracy(cells, path)}
        | ({"steering_accuracy_llm": lambda path: draw_accuracy(cells, path, "llm")} if run.llm else {}),
    )


def _cell_order(item: tuple[tuple[str, Direction, float | None], Cell]) -> tuple[int, int, float]:
    (method, direction, weight), _ = item
    return (DIRECTIONS.index(direction), METHODS.index(method), -1.0 if weight is None else weight)


def _number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _interval(cell: Mapping[str, Any], key: str) -> str:
    return f"{_number(cell[key])} [{_number(cell[key + '_low'])}, {_number(cell[key + '_high'])}]"


def matched_rows(
    cells: Sequence[Mapping[str, Any]], direction: Direction
) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """The rewriting cell of ``direction`` and the SAE-steering cell whose mean cos(q, q′) is
    nearest it: the comparison at matched distance from the query. None without both."""
    rewrite = next(
        (c for c in cells if c["method"] == "rewrite" and c["direction"] == direction and c["n"]), None
    )
    sae = [c for c in cells if c["method"] == "sae" and c["direction"] == direction and c["n"]]
    if rewrite is None or not sae:
        return None
    nearest = min(sae, key=lambda c: abs(c["mean_cos"] - rewrite["mean_cos"]))
    return rewrite, nearest


def _headline(cells: Sequence[Mapping[str, Any]]) -> list[str]:
    """The bold headline: SAE steering against rewriting at matched cos(q, q′), per direction."""
    parts = []
    for direction in DIRECTIONS:
        matched = matched_rows(cells, direction)
        if matched is None:
            continue
        rewrite, sae = matched
        parts.append(
            f"{direction}-weighting {_number(sae['accuracy'])} (weight {sae['weight']:g}, cos "
            f"{_number(sae['mean_cos'])}) vs rewriting {_number(rewrite['accuracy'])} (cos "
            f"{_number(rewrite['mean_cos'])})"
        )
    if not parts:
        return []
    return [f"**Steering, objective judge: {'; '.join(parts)}.**"]


def steering_markdown(data: Mapping[str, Any]) -> str:
    """The section's Markdown: how it was run, a table per direction beside the paper, the checks."""
    trials = data["trials"]
    llm = data["llm_judge"] if isinstance(data["llm_judge"], dict) else None
    headline = _headline(data["cells"])
    lines = ["## Steering", "", *headline, *([""] if headline else [])]
    lines += [
        f"SAE `{data['sae_id']}` on corpus `{data['corpus']}`: {trials['up']} up-weighting and "
        f"{trials['down']} down-weighting trials (seed {data['seed']}), each a held-out paper's title "
        f"as the query ({data['queries_available']:,} available, none indexed), a target and "
        f"{data['candidates'] - 1} distractors of the same density decile, drawn without replacement. "
        f"Objective judge: the candidate whose activation over the top {data['top_k']} rose (fell) "
        "most; chance is 0.2. Intervals are 95% (Wilson for accuracy). Baselines: rewriting embeds "
        '"<title> and <label>" (up) or "<title> but not <label>" (down); a clamp sets the target to '
        "the weight (up) or removes that share of its activation on the query (down).",
    ]
    if llm is not None:
        lines += [
            "",
            f"LLM judge ({llm['model']}, through the labelling service): shown the query, the top "
            f"{data['top_k']} titles before and after, and the five candidates' labels in a random "
            f"order, it names the topic the results moved towards (away from). {llm['calls']:,} calls "
            f"({llm['cache_hits']:,} from the cache), ${llm['cost_usd']:.4f} of a ${llm['budget_usd']:g} "
            f"budget; {llm['unanswered']:,} answers named no candidate. The LLM rewrite asks it for "
            "the query made more (less) about the target's label.",
        ]
    for direction in DIRECTIONS:
        rows = [c for c in data["cells"] if c["direction"] == direction]
        lines += [
            "",
            f"### {'Up' if direction == 'up' else 'Down'}-weighting",
            "",
            "| method | weight | cos(q, q′) | accuracy [95% CI] | n | category share before → after |"
            + (" LLM judge [95% CI] | LLM n |" if llm is not None else ""),
            "|---|---:|---:|---|---:|---|" + ("---|---:|" if llm is not None else ""),
        ]
        for cell in rows:
            weight = "–" if cell["weight"] is None else f"{cell['weight']:g}"
            row = (
                f"| {METHOD_NAMES[cell['method']]} | {weight} | {_number(cell['mean_cos'])} | "
                f"{_interval(cell, 'accuracy')} | {cell['n']} | "
                f"{_number(cell['category_share_before'])} → {_number(cell['category_share_after'])} |"
            )
            if llm is not None:
                row += f" {_interval(cell, 'llm_accuracy')} | {cell['llm_n']} |"
            lines.append(row)
        lines += ["", f"Paper (GPT-4o judge, astro SAE64): {data['paper'][direction]}."]
        if direction == "down" and trials["down"]:
            lines += [
                "",
                f"In {data['down_target_absent']} of {trials['down']} down-weighting trials the target, "
                f"though active on the query, fired on none of the unsteered top {data['top_k']}: there "
                "was nothing to push away, so the judge could at best guess.",
            ]
    noop = data["noop"]
    fidelity = data["fidelity"]
    lines += [
        "",
        f"No-op check: a zero-weight steer returned the unsteered ranking exactly in "
        f"{noop['identical']} of {noop['trials']} trials.",
        "",
        f"Fidelity: searching with the SAE's reconstruction of the query recalls "
        f"{_number(fidelity['recall'])} ± {_number(fidelity['recall_ci'])} of the query's own top "
        f"{fidelity['k']} ({fidelity['queries']} queries).",
    ]
    for note in data["notes"]:
        lines += ["", f"Note: {note}."]
    return "\n".join(lines) + "\n"


def draw_accuracy(cells: Sequence[Mapping[str, Any]], path: Path, judge: str = "objective") -> None:
    """Accuracy against mean cos(q, q′) per direction: each method's weights as a line, rewriting
    as a point, with 95% intervals, like the paper's steering figure; ``judge`` "objective" or
    "llm" says whose accuracy."""
    prefix = "llm_" if judge == "llm" else ""
    # Imported here: matplotlib is slow to import and only the figure needs it. A bare Figure
    # renders with the Agg backend, without pyplot's global state or a display.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.2), dpi=100)
    axes_pair = figure.subplots(1, 2, sharey=True)
    for axes, direction in zip(axes_pair, DIRECTIONS, strict=True):
        for method in METHODS:
            rows = [
                c
                for c in cells
                if c["method"] == method and c["direction"] == direction and c[prefix + "n"] > 0
            ]
            if not rows:
                continue
            x = [c["mean_cos"] for c in rows]
            y = [c[prefix + "accuracy"] for c in rows]
            errors = [
                [c[prefix + "accuracy"] - c[prefix + "accuracy_low"] for c in rows],
                [c[prefix + "accuracy_high"] - c[prefix + "accuracy"] for c in rows],
            ]
            marker = "s" if method.endswith("rewrite") else "o"
            axes.errorbar(x, y, yerr=errors, marker=marker, capsize=3, label=METHOD_NAMES[method])
        axes.axhline(0.2, color="grey", linestyle=":", linewidth=1, label="chance (0.2)")
        axes.set_xlabel("mean cos(q, q′)")
        axes.set_title(f"{direction}-weighting", fontsize=10)
        axes.set_ylim(0.0, 1.02)
        axes.grid(alpha=0.3)
    axes_pair[0].set_ylabel("LLM-judge accuracy" if judge == "llm" else "objective-judge accuracy")
    axes_pair[1].legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, format="png")

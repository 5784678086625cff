"""The steering evaluation's parts on constructed cases: the objective judge's statistics, the
options' checks, the held-out queries, and the section's Markdown and figure. The whole run
against the real services is ``services/family/tests/test_eval_steering_e2e.py``."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featurelens.corpus import held_out
from featurelens.evaluation.intervals import proportion
from featurelens.evaluation.judges import (
    Direction,
    candidate_totals,
    category_share,
    dominant_category,
    objective_pick,
)
from featurelens.evaluation.report import Section, write_report
from featurelens.evaluation.steering import (
    Cell,
    SteeringEvaluationError,
    SteeringOptions,
    draw_accuracy,
    held_out_queries,
    steering_markdown,
)

CANDIDATES = 5
TRIALS = 2000


def _hits(rng: np.random.Generator, features: int = 40, hits: int = 10) -> list[dict[int, float]]:
    """Latents of ``hits`` documents: a few random features each, at random strengths."""
    return [
        {int(f): float(rng.uniform(0.05, 0.5)) for f in rng.choice(features, size=4, replace=False)}
        for _ in range(hits)
    ]


def _judge_trials(moved: str, direction: Direction, seed: int = 0) -> Cell:
    """Trials whose steering moved the target (``moved="target"``), a random candidate
    (``"random"``) or nothing (``"nothing"``), judged by the objective judge; the target is
    candidate 0, as in ``run_steering``."""
    rng = np.random.default_rng(seed)
    ties = np.random.default_rng(seed + 1)
    cell = Cell()
    for _ in range(TRIALS):
        candidates = [(int(f),) for f in rng.choice(40, size=CANDIDATES, replace=False)]
        before = _hits(rng)
        after = [dict(h) for h in before]
        if moved != "nothing":
            chosen = 0 if moved == "target" else int(rng.integers(CANDIDATES))
            feature = candidates[chosen][0]
            for latents in after:
                if direction == "up":
                    latents[feature] = latents.get(feature, 0.0) + 0.3
                else:
                    latents.pop(feature, None)
            if direction == "down":  # make sure the moved one was there to fall
                for latents in before:
                    latents[feature] = latents.get(feature, 0.0) + 0.3
        pick, tied = objective_pick(
            candidate_totals(before, candidates), candidate_totals(after, candidates), direction, ties
        )
        cell.correct.append(pick == 0)
        cell.ties += tied
    return cell


@pytest.mark.parametrize("direction", ["up", "down"])
def test_a_judge_that_always_finds_the_target_scores_1(direction: Direction) -> None:
    summary = _judge_trials("target", direction).summary()
    assert summary["accuracy"] == 1.0
    assert summary["n"] == TRIALS
    assert summary["accuracy_high"] == 1.0
    assert summary["accuracy_low"] > 0.99


@pytest.mark.parametrize("direction", ["up", "down"])
@pytest.mark.parametrize("moved", ["random", "nothing"])
def test_a_judge_with_nothing_to_go_on_scores_about_chance(direction: Direction, moved: str) -> None:
    """Steering that moved a random candidate, or nothing at all (every pick a tie broken at
    random): about 1 in 5, and the 95% interval holds 0.2."""
    cell = _judge_trials(moved, direction, seed=4)
    summary = cell.summary()
    assert abs(summary["accuracy"] - 0.2) < 0.03, summary
    assert summary["accuracy_low"] <= 0.2 <= summary["accuracy_high"], summary
    if moved == "nothing":
        assert cell.ties == TRIALS


def test_the_judge_picks_the_largest_rise_or_fall() -> None:
    rng = np.random.default_rng(0)
    before = [1.0, 0.5, 0.0, 2.0]
    after = [1.2, 1.4, 0.1, 0.5]
    assert objective_pick(before, after, "up", rng) == (1, False)
    assert objective_pick(before, after, "down", rng) == (3, False)
    assert objective_pick([0.0, 0.0], [0.0, 0.0], "up", rng)[1] is True
    with pytest.raises(ValueError, match="one total per candidate"):
        objective_pick([1.0], [1.0, 2.0], "up", rng)


def test_a_family_candidate_sums_its_members() -> None:
    hits = [{1: 0.5, 2: 0.25, 9: 1.0}, {2: 0.25}, {}]
    assert candidate_totals(hits, [(1, 2), (9,), (3,)]) == [1.0, 1.0, 0.0]


def test_dominant_category_and_share() -> None:
    category_of = {
        "a": "astro-ph.GA",
        "b": "astro-ph.GA",
        "c": "astro-ph.CO",
        "d": "astro-ph.CO",
        "e": "astro-ph.SR",
    }
    assert dominant_category(["a", "b", "c", "e"], category_of) == "astro-ph.GA"
    assert dominant_category(["a", "c"], category_of) == "astro-ph.CO"  # a tie: alphabetically first
    assert dominant_category(["x"], category_of) is None
    assert category_share(["a", "c", "d", "x"], "astro-ph.CO", category_of) == 0.5
    assert category_share([], "astro-ph.CO", category_of) == 0.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"corpus": " "}, "name the indexed corpus"),
        ({"trials": 0}, "trials must be at least 1"),
        ({"weights": ()}, "at least one steering weight"),
        ({"weights": (0.5, 0.0)}, "above 0 and at most 10"),
        ({"weights": (11.0,)}, "above 0 and at most 10"),
        ({"weights": (float("nan"),)}, "above 0 and at most 10"),
        ({"weights": (0.5, 0.5)}, "weights repeat"),
        ({"top_k": 0}, "top_k must be at least 1"),
        ({"seed": -1}, "seed must be zero or positive"),
    ],
)
def test_options_check_themselves(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SteeringOptions(**({"corpus": "astro", "corpus_path": Path("x.jsonl")} | fields))  # type: ignore[arg-type]


def _corpus(path: Path, ids: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for n, doc_id in enumerate(ids):
            row = {
                "id": doc_id,
                "title": f"Paper  {n}\n title",
                "abstract": "Text.",
                "categories": ["astro-ph.GA"],
            }
            out.write(json.dumps(row) + "\n")
    return path


def test_queries_are_the_titles_of_held_out_papers_missing_from_the_index(tmp_path: Path) -> None:
    ids = [f"2501.{n:05d}" for n in range(400)]
    out = [i for i in ids if held_out(i)]
    assert len(out) >= 5
    indexed = {i: None for i in ids if not held_out(i)} | {out[0]: None}
    queries, category_of = held_out_queries(_corpus(tmp_path / "c.jsonl.gz", ids), indexed)
    assert [q.doc_id for q in queries] == out[1:]
    assert queries[0].title == f"Paper {ids.index(out[1])} title"  # whitespace folded
    assert category_of[ids[0]] == "astro-ph.GA"
    assert len(category_of) == 400


def test_no_held_out_paper_outside_the_index_is_a_clear_failure(tmp_path: Path) -> None:
    ids = [f"2501.{n:05d}" for n in range(100)]
    path = _corpus(tmp_path / "c.jsonl.gz", ids)
    with pytest.raises(SteeringEvaluationError, match=r"no held-out paper of .* is missing from the index"):
        held_out_queries(path, dict.fromkeys(ids))
    with pytest.raises(SteeringEvaluationError, match="does not exist"):
        held_out_queries(tmp_path / "absent.jsonl", {})


def _cell(
    method: str, direction: str, weight: float | None, cos: float, successes: int, n: int
) -> dict[str, Any]:
    rate = proportion(successes, n)
    return {
        "method": method,
        "direction": direction,
        "weight": weight,
        "n": n,
        "mean_cos": cos,
        "cos_ci": 0.01,
        "successes": successes,
        "accuracy": rate.rate,
        "accuracy_low": rate.low,
        "accuracy_high": rate.high,
        "ties": 0,
        "category_share_before": 0.3,
        "category_share_after": 0.5 if direction == "up" else math.nan,
        "llm_n": n // 2,
        "llm_accuracy": proportion(successes // 2, n // 2).rate,
        "llm_accuracy_low": proportion(successes // 2, n // 2).low,
        "llm_accuracy_high": proportion(successes // 2, n // 2).high,
    }


def test_the_section_renders_tables_beside_the_paper_and_a_figure(tmp_path: Path) -> None:
    cells = [
        _cell("sae", "up", 0.5, 0.8, 18, 20),
        _cell("sae", "up", 1.0, 0.6, 19, 20),
        _cell("rewrite", "up", None, 0.85, 9, 20),
        _cell("sae", "down", 1.0, 0.6, 9, 20),
        _cell("family", "down", 1.0, 0.7, 0, 0),
    ]
    data = {
        "sae_id": "sae-1",
        "corpus": "astro",
        "trials": {"up": 20, "down": 20},
        "seed": 0,
        "queries_available": 500,
        "candidates": 5,
        "top_k": 10,
        "cells": cells,
        "paper": {"up": "0.90–0.94", "down": "0.52–0.60"},
        "down_target_absent": 4,
        "noop": {"trials": 40, "identical": 40},
        "fidelity": {"queries": 40, "k": 10, "recall": 0.7, "recall_ci": 0.05},
        "notes": ["the LLM judge was not run"],
        "llm_judge": "not asked",
    }
    markdown = steering_markdown(data)
    # The headline sets SAE steering beside rewriting at the nearest cos(q, q′) (0.80 to 0.85).
    assert markdown.startswith(
        "## Steering\n\n**Steering, objective judge: up-weighting 0.90 (weight 0.5, cos 0.80) vs "
        "rewriting 0.45 (cos 0.85).**\n"
    )
    assert "LLM judge [95% CI]" not in markdown
    assert "| SAE steering (additive) | 0.5 | 0.80 | 0.90 [0.70, 0.97] | 20 | 0.30 → 0.50 |" in markdown
    assert "| query rewriting | – | 0.85 |" in markdown
    assert "0.30 → – |" in markdown  # a NaN share shows as a dash
    assert "Paper (GPT-4o judge, astro SAE64): 0.52–0.60." in markdown
    assert "in 40 of 40 trials" in markdown
    assert "recalls 0.70 ± 0.05" in markdown
    assert "In 4 of 20 down-weighting trials" in markdown
    assert "Note: the LLM judge was not run." in markdown

    section = Section("steering", data, markdown, {"steering_accuracy": lambda p: draw_accuracy(cells, p)})
    written = write_report(tmp_path, [section], {"command": "test"})
    png = tmp_path / "steering_accuracy.png"
    assert png in written
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_with_the_llm_judge_the_tables_gain_its_column_and_a_figure_of_its_own(tmp_path: Path) -> None:
    cells = [_cell("sae", "up", 1.0, 0.6, 16, 20), _cell("llm_rewrite", "up", None, 0.7, 8, 20)]
    llm = {
        "model": "gpt-4o-mini",
        "calls": 30,
        "cache_hits": 10,
        "cost_usd": 0.0012,
        "tokens": 9000,
        "budget_usd": 2.0,
        "unanswered": 1,
        "stopped": "",
    }
    data = {
        "sae_id": "sae-1",
        "corpus": "astro",
        "trials": {"up": 20, "down": 0},
        "seed": 0,
        "queries_available": 500,
        "candidates": 5,
        "top_k": 10,
        "cells": cells,
        "paper": {"up": "0.90–0.94", "down": "0.52–0.60"},
        "down_target_absent": 0,
        "noop": {"trials": 20, "identical": 20},
        "fidelity": {"queries": 20, "k": 10, "recall": 0.7, "recall_ci": 0.05},
        "notes": [],
        "llm_judge": llm,
    }
    markdown = steering_markdown(data)
    assert "LLM judge (gpt-4o-mini, through the labelling service)" in markdown
    assert "30 calls (10 from the cache), $0.0012 of a $2 budget; 1 answers named no candidate" in markdown
    assert "| SAE steering (additive) | 1 | 0.60 | 0.80 [0.58, 0.92] | 20 | 0.30 → 0.50 | 0.80 [" in markdown
    assert "| query rewriting (LLM) | – | 0.70 |" in markdown
    draw_accuracy(cells, tmp_path / "llm.png", "llm")
    assert (tmp_path / "llm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""``featurelens eval`` against conftest's faked services (labels and families of sae-32-k2; the
family service builds over the corpus "arxiv" only), and ``eval scaling`` on a tiny .npy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from featurelens.cli.main import app

SAE = "sae-32-k2"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

runner = CliRunner()


def _report(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))


def test_eval_families_builds_them_and_writes_the_statistics_beside_the_paper(
    services_address: str, fake_families: Any, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "eval",
            "families",
            "--sae",
            SAE,
            "--corpus",
            "arxiv",
            "--address",
            services_address,
            "--out",
            str(out),
        ],
    )

    assert result.exit_code == 0, result.output
    families = _report(out)["sections"]["families"]
    assert families["families"] == 3
    assert families["median_children"] == 3  # children 4, 3 and 2
    assert families["nested"] == 1
    assert families["build"]["parent_child"] == pytest.approx(0.42)
    assert [r.corpus for r in fake_families.requests["BuildFamilies"]] == ["arxiv"]
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| families | 3 | 610 |" in summary
    assert "![family_children](family_children.png)" in summary
    assert (out / "family_children.png").read_bytes().startswith(PNG_MAGIC)
    assert f"Families of `{SAE}`: 3 families, median 3.0 children" in result.stdout
    assert str(out / "summary.md") in result.stdout.replace("\n", "")


def test_eval_families_without_a_corpus_reads_the_stored_ones_and_builds_nothing(
    services_address: str, fake_families: Any, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = runner.invoke(app, ["eval", "families", "--address", services_address, "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert "BuildFamilies" not in fake_families.requests
    assert _report(out)["sections"]["families"]["build"] is None


def test_eval_labels_writes_the_score_distributions(
    services_address: str, fake_labelling: Any, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = runner.invoke(
        app, ["eval", "labels", "--sae", SAE, "--address", services_address, "--out", str(out)]
    )

    assert result.exit_code == 0, result.output
    report = _report(out)
    assert report["sections"]["labels"]["saes"][SAE]["labels"] == 5
    assert report["meta"]["command"].startswith("featurelens ")
    assert report["meta"]["machine"]["cpu_count"] >= 1
    assert (out / "label_scores.png").read_bytes().startswith(PNG_MAGIC)
    assert f"Labels of `{SAE}`" in result.stdout


def test_eval_all_writes_every_part_not_skipped_into_one_report(
    services_address: str, fake_labelling: Any, fake_families: Any, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            *("eval", "all", "--quick", "--corpus", "arxiv", "--skip", "steering", "--skip", "scaling"),
            *("--address", services_address, "--out", str(out)),
        ],
    )

    assert result.exit_code == 0, result.output
    report = _report(out)
    assert list(report["sections"]) == ["labels", "families"]
    assert report["meta"]["skipped"] == {
        "steering": "skipped by the caller",
        "scaling": "skipped by the caller",
    }
    assert report["meta"]["sae_id"] == SAE
    assert report["meta"]["quick"] is True


def test_a_failed_part_is_written_into_the_report_and_fails_the_command(
    services_address: str, fake_labelling: Any, fake_families: Any, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            *("eval", "all", "--corpus", "no-such-corpus", "--skip", "steering", "--skip", "scaling"),
            *("--address", services_address, "--out", str(out)),
        ],
    )

    assert result.exit_code == 1
    report = _report(out)
    assert report["sections"]["labels"]["saes"][SAE]["labels"] == 5
    assert "no corpus named 'no-such-corpus'" in report["sections"]["families"]["failed"]
    assert "families" in report["meta"]["failed"]
    assert "parts failed: families" in result.output


def test_an_unknown_part_to_skip_is_refused(services_address: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "all", "--skip", "labelz", "--address", services_address])

    assert result.exit_code == 2
    assert "--skip takes scaling, labels, families, steering; got labelz" in result.output


def test_eval_scaling_trains_the_grid_and_writes_the_figure(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    rows = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    np.save(tmp_path / "rows.npy", rows)
    out = tmp_path / "report"

    result = runner.invoke(
        app,
        [
            *("eval", "scaling", "--embeddings", str(tmp_path / "rows.npy"), "--quick"),
            *("--latents", "16,32", "--k", "2", "--out", str(out)),
        ],
    )

    assert result.exit_code == 0, result.output
    runs = _report(out)["sections"]["scaling"]["runs"]
    assert [(r["num_latents"], r["k"]) for r in runs] == [(16, 2), (32, 2)]
    assert (out / "scaling_nmse_vs_latents.png").read_bytes().startswith(PNG_MAGIC)
    assert "held-out NMSE" in result.stdout


def test_eval_scaling_refuses_a_bad_grid(tmp_path: Path) -> None:
    np.save(tmp_path / "rows.npy", np.zeros((10, 4), dtype=np.float32))

    result = runner.invoke(
        app, ["eval", "scaling", "--embeddings", str(tmp_path / "rows.npy"), "--latents", "16,x"]
    )

    assert result.exit_code == 2
    assert "--latents takes comma-separated positive whole numbers" in result.output


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["--llm-model", "gpt-4o"], "--llm-model and --llm-base-url go with --llm-judge"),
        (["--llm-base-url", "http://127.0.0.1:1/v1"], "go with --llm-judge"),
        (["--llm-judge", "--llm-budget", "0"], "--llm-budget: budget_usd must be a positive number"),
        (["--llm-judge", "--llm-budget", "nan"], "--llm-budget: budget_usd must be a positive number"),
    ],
)
def test_the_llm_judges_options_are_checked_before_anything_runs(
    services_address: str, tmp_path: Path, arguments: list[str], words: str
) -> None:
    for command in (["eval", "all"], ["eval", "steering", "--corpus-path", str(tmp_path / "x.jsonl")]):
        result = runner.invoke(app, [*command, *arguments, "--address", services_address])

        assert result.exit_code == 2, result.output
        assert words in " ".join(result.output.split())

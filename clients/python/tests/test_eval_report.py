"""The evaluation report's files: report.json parses (NaN as null), figures are PNGs that
summary.md links, and each section's headline is what the CLI prints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from featurelens.evaluation.report import Section, json_ready, write_report
from featurelens.evaluation.runner import failed_section, headlines

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _draw_line(path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([0, 1], [1, 0])
    figure.savefig(path, format="png")


def _section(name: str, **figures: object) -> Section:
    return Section(
        name=name,
        data={"mean": math.nan, "high": math.inf, "pair": (1, 2), "nested": {"low": -math.inf, "n": 3}},
        markdown=f"## {name}\n\n**{name}: mean 0.5.**\n\nMore text.\n",
        figures=figures,  # type: ignore[arg-type]
    )


def test_report_json_parses_with_non_finite_numbers_as_null(tmp_path: Path) -> None:
    write_report(tmp_path, [_section("labels")], {"command": "featurelens eval labels", "ratio": math.nan})

    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))

    assert report["meta"] == {"command": "featurelens eval labels", "ratio": None}
    assert report["sections"]["labels"] == {
        "mean": None,
        "high": None,
        "pair": [1, 2],
        "nested": {"low": None, "n": 3},
    }


def test_figures_are_pngs_linked_from_the_summary(tmp_path: Path) -> None:
    paths = write_report(tmp_path, [_section("scaling", scaling_nmse=_draw_line)], {"corpus": "astro"})

    assert [p.name for p in paths] == ["report.json", "scaling_nmse.png", "summary.md"]
    assert (tmp_path / "scaling_nmse.png").read_bytes().startswith(PNG_MAGIC)
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "![scaling_nmse](scaling_nmse.png)" in summary
    assert "- corpus: astro" in summary
    assert summary.index("## scaling") < summary.index("![scaling_nmse]")


def test_two_sections_of_one_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="repeat"):
        write_report(tmp_path, [_section("labels"), _section("labels")], {})


def test_numpy_scalars_become_python_numbers() -> None:
    import numpy as np

    assert json_ready({"n": np.int64(3), "x": np.float32(np.nan), "y": np.float64(0.5)}) == {
        "n": 3,
        "x": None,
        "y": 0.5,
    }


def test_headlines_are_the_bold_lines_or_the_title_when_there_is_none() -> None:
    plain = Section(name="steering", data={}, markdown="## Steering\n\nA long paragraph.\n")

    lines = headlines([_section("labels"), plain, failed_section("families", "NotFoundError: no corpus")])

    assert lines == [
        "labels: mean 0.5.",
        "Steering: see summary.md",
        "Families: failed: NotFoundError: no corpus",
    ]

"""One evaluation report: sections of figures, tables and text, written into one folder.

out/report.json    {"sections": {name: section.data, ...}, "meta": {...}}
out/<figure>.png   every section's figures
out/summary.md     every section's Markdown, in order, with its figures linked
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Draws one figure into the PNG file it is given (matplotlib, imported by the caller lazily).
FigureWriter = Callable[[Path], None]


@dataclass(frozen=True)
class Section:
    """One part of a report.

    ``data`` is JSON-ready (numbers, strings, lists, dicts; NaN and infinities become null);
    ``markdown`` is the section's summary, headed by its own ``## `` title; ``figures`` maps a file
    name without extension (unique across the report, e.g. "steering_accuracy") to its writer.
    """

    name: str
    data: Mapping[str, Any]
    markdown: str
    figures: Mapping[str, FigureWriter] = field(default_factory=dict)


def json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities as None, tuples as lists, numpy scalars as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(folder: Path, sections: Sequence[Section], meta: Mapping[str, Any]) -> list[Path]:
    """Write ``sections`` into ``folder`` (created); the paths written, report.json first."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in sections]
    if len(set(names)) != len(names):
        raise ValueError(f"section names repeat: {names}")
    report = folder / "report.json"
    report.write_text(
        json.dumps(
            {"meta": json_ready(meta), "sections": {s.name: json_ready(s.data) for s in sections}}, indent=2
        )
        + "\n",
        encoding="utf-8",
    )
    written = [report]
    parts = ["# featurelens evaluation", ""]
    for key, value in meta.items():
        parts.append(f"- {key}: {value}")
    for section in sections:
        parts += ["", section.markdown.strip(), ""]
        for figure, draw in section.figures.items():
            path = folder / f"{figure}.png"
            draw(path)
            written.append(path)
            parts.append(f"![{figure}]({path.name})")
    summary = folder / "summary.md"
    summary.write_text("\n".join(parts).rstrip() + "\n", encoding="utf-8")
    written.append(summary)
    return written

"""`featurelens eval all`: every part of the evaluation in one report, with the run's provenance.

The parts run in the order scaling, labels, families, steering: families are (re)built before
steering so that the family-level steering rows use the families this report describes. A part
that fails is written into the report as a failed section (its reason stated) and the others still
run: an hour of steering trials is not thrown away because, say, no SAE is labelled yet.
``RunOutcome.failed`` names the failed parts, so the caller can exit non-zero.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurelens.client import FeaturelensClient, FeaturelensError
from featurelens.evaluation.families import run_families
from featurelens.evaluation.labels import run_labels
from featurelens.evaluation.llm_judge import LlmOptions
from featurelens.evaluation.report import Section, write_report
from featurelens.evaluation.scaling import ScalingOptions, run_scaling

if TYPE_CHECKING:
    from featurelens.sae.sweep import SweepCallbacks

logger = logging.getLogger(__name__)

PARTS = ("scaling", "labels", "families", "steering")
#: Steering trials per direction of a ``--quick`` run (the full run: the steering module's default).
QUICK_TRIALS = 100


@dataclass(frozen=True)
class RunOutcome:
    """The files written and the parts that failed (with why)."""

    paths: list[Path]
    sections: list[Section]
    failed: dict[str, str] = field(default_factory=dict)


def machine() -> dict[str, Any]:
    """Where the report was measured: timings and float details depend on it."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def default_sae(client: FeaturelensClient) -> str | None:
    """The server's default SAE, or None when it has none."""
    return next((sae.sae_id for sae in client.sae.list_saes() if sae.is_default), None)


def failed_section(name: str, reason: str) -> Section:
    """A section that says its part failed, and why."""
    return Section(
        name=name,
        data={"failed": reason},
        markdown=f"## {name.capitalize()}\n\n**{name.capitalize()}: failed: {reason}**\n",
    )


def run_all(
    client: FeaturelensClient,
    folder: Path,
    *,
    corpus: str,
    corpus_path: Path | None,
    sae_id: str | None = None,
    scaling: ScalingOptions | None = None,
    quick: bool = False,
    skip: Sequence[str] = (),
    command: str = "",
    seed: int = 0,
    llm: LlmOptions | None = None,
    scaling_callbacks: SweepCallbacks | None = None,
    on_part: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Run every part not in ``skip`` and write the report into ``folder``.

    ``scaling`` None skips the scaling part (it needs local embeddings); ``corpus_path`` None skips
    steering (its queries are held-out papers of the corpus file); ``llm`` adds the LLM judge to
    it. ``on_part`` is told each part's name as it starts.
    """
    unknown = set(skip) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts to skip: {', '.join(sorted(unknown))}; parts are {', '.join(PARTS)}")
    sae_id = sae_id or default_sae(client)
    skipped: dict[str, str] = {name: "skipped by the caller" for name in skip}
    if scaling is None:
        skipped.setdefault("scaling", "no embeddings given")
    if corpus_path is None:
        skipped.setdefault("steering", "no corpus file given for the held-out queries")

    def steering() -> Section:
        # Imported here: the steering part is its own module, and the others run without it.
        from featurelens.evaluation.steering import SteeringOptions, run_steering

        assert corpus_path is not None, "steering is skipped without a corpus file"
        options = SteeringOptions(corpus=corpus, corpus_path=corpus_path, sae_id=sae_id, seed=seed, llm=llm)
        if quick:
            options = dataclasses.replace(options, trials=QUICK_TRIALS)
        return run_steering(client, options)

    def scaling_part() -> Section:
        assert scaling is not None, "scaling is skipped without embeddings"
        return run_scaling(scaling, scaling_callbacks)

    parts: dict[str, Callable[[], Section]] = {
        "scaling": scaling_part,
        "labels": lambda: run_labels(client, None),
        "families": lambda: run_families(client, sae_id, corpus=corpus),
        "steering": steering,
    }
    sections: list[Section] = []
    failed: dict[str, str] = {}
    started = datetime.now(UTC)
    for name in PARTS:
        if name in skipped:
            logger.info("Skipping %s: %s", name, skipped[name])
            continue
        if on_part is not None:
            on_part(name)
        try:
            sections.append(parts[name]())
        except (FeaturelensError, ValueError, RuntimeError, OSError) as error:
            logger.exception("The %s part failed", name)
            failed[name] = f"{type(error).__name__}: {error}"
            sections.append(failed_section(name, failed[name]))
    meta = {
        "command": command,
        "date": started.isoformat(timespec="seconds"),
        "minutes": round((datetime.now(UTC) - started).total_seconds() / 60, 1),
        "machine": machine(),
        "corpus": corpus,
        "corpus_path": str(corpus_path) if corpus_path else None,
        "sae_id": sae_id,
        "quick": quick,
        "skipped": skipped,
        "failed": failed,
    }
    paths = write_report(folder, sections, meta)
    return RunOutcome(paths, sections, failed)


def headlines(sections: Sequence[Section]) -> list[str]:
    """Each section's headline lines: its bold paragraphs (``**…**``), bold marks removed; a section
    without one is named by its title."""
    lines: list[str] = []
    for section in sections:
        bold = [line.strip().strip("*") for line in section.markdown.splitlines() if line.startswith("**")]
        if bold:
            lines += bold
        else:
            title = next(
                (line[3:] for line in section.markdown.splitlines() if line.startswith("## ")), section.name
            )
            lines.append(f"{title}: see summary.md")
    return lines

"""Scaling sweeps: FLOP counts, power-law fits, the files a sweep writes, and NMSE against size."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from featurelens.sae import SaeConfig, SaeConfigError, TrainConfig, load_sae
from featurelens.sae.flops import auxk_steps, training_flops
from featurelens.sae.powerlaw import fit_power_law
from featurelens.sae.sweep import SweepCallbacks, SweepResult, run_sweep, sweep_configs

D_IN = 32
LATENTS = (64, 128, 256)
KS = (4, 8)
# 2000 rows, 200 held out: 14 steps of 128 per epoch, 84 steps per run.
TRAIN_CFG = TrainConfig(batch_size=128, lr=1e-2, epochs=6, seed=0)
# The sweep's result and its progress events: (kind, run index, total runs or step).
SweepFixture = tuple[SweepResult, list[tuple[str, int, int]]]


def structured_data(n: int = 2000, n_directions: int = 512, active: float = 4.0, seed: int = 0) -> np.ndarray:
    """Sparse sums of 512 unit directions with power-law frequencies (~4 active per row) plus noise:
    more directions than the largest SAE has latents, so every extra latent has something to learn."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((n_directions, D_IN))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    frequency = 1.0 / np.arange(1, n_directions + 1) ** 0.8
    frequency = np.minimum(1.0, active * frequency / frequency.sum())
    codes = (rng.random((n, n_directions)) < frequency) * rng.uniform(0.5, 1.5, (n, n_directions))
    return (codes @ directions + 0.01 * rng.standard_normal((n, D_IN))).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """These matrices are tiny: one thread beats two that contend for the shared cores (4 s vs 20 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sweep(one_thread: None, tmp_path_factory: pytest.TempPathFactory) -> SweepFixture:
    """One 3 x 2 sweep with checkpoints and plots, and the progress events it reported."""
    events: list[tuple[str, int, int]] = []
    callbacks = SweepCallbacks(
        on_run_start=lambda i, total, cfg: events.append(("start", i, total)),
        on_step=lambda i, m: events.append(("step", i, m.step)),
        on_run_end=lambda i, run: events.append(("end", i, run.steps)),
        step_every=20,
    )
    result = run_sweep(
        structured_data(),
        LATENTS,
        KS,
        TRAIN_CFG,
        out_dir=tmp_path_factory.mktemp("sweep"),
        callbacks=callbacks,
        save_checkpoints=True,
        embedding_model="synthetic",
    )
    return result, events


# -- FLOPs ----------------------------------------------------------------------------------------------


def test_flops_follow_the_documented_formulas_for_a_hand_computed_case() -> None:
    cfg = SaeConfig(d_in=32, num_latents=64, k=4)  # k_aux resolves to 8
    flops = training_flops(cfg, batch_size=128, steps=10, auxk_steps=6)
    # Forward of one row: encoder 2·32·64 = 4096, top-k decode 2·4·32 = 256, AuxK decode 2·8·32 = 512.
    forward_per_row = 10 * (4096 + 256) + 6 * 512  # = 46,592
    assert flops.paper_axis == forward_per_row
    assert flops.dense_equivalent == 3 * 128 * forward_per_row == 17_891_328
    # Sparse path: dense encoder forward, 8·B·m·d per decoded row of W_dec, 2·L·d per step for b_pre.
    assert flops.sparse == 128 * 10 * 4096 + 8 * 128 * 32 * (10 * 4 + 6 * 8) + 2 * 64 * 32 * 10
    assert flops.sparse == 8_167_424
    assert (flops.steps, flops.auxk_steps, flops.batch_size) == (10, 6, 128)


def test_multik_adds_its_decode_every_step_and_auxk_off_counts_no_auxk_steps() -> None:
    cfg = SaeConfig(d_in=32, num_latents=64, k=4, multik_coef=0.5, auxk_coef=0.0)  # multik_k = 16
    assert auxk_steps(cfg, steps=10, dead_threshold=4) == 0
    flops = training_flops(cfg, batch_size=2, steps=1, auxk_steps=0)
    assert flops.dense_equivalent == 3 * 2 * (4096 + 2 * 32 * (4 + 16))
    assert flops.sparse == 2 * 4096 + 8 * 2 * 32 * (4 + 16) + 2 * 64 * 32 * 2


def test_auxk_is_counted_from_the_dead_threshold_on() -> None:
    cfg = SaeConfig(d_in=32, num_latents=64, k=4)
    assert auxk_steps(cfg, steps=84, dead_threshold=14) == 70
    assert auxk_steps(cfg, steps=10, dead_threshold=14) == 0


def test_every_sweep_run_records_the_flops_of_its_steps_and_batch(
    sweep: SweepFixture,
) -> None:
    result, _ = sweep
    for run in result.runs:
        assert (run.steps, run.batch_size) == (84, 128)
        cfg = SaeConfig(d_in=D_IN, num_latents=run.num_latents, k=run.k)
        # The dead threshold defaults to one epoch, 14 steps: AuxK may run on the other 70.
        assert run.flops == training_flops(cfg, batch_size=128, steps=84, auxk_steps=70)
        assert run.flops.dense_equivalent > 3 * 2 * 128 * D_IN * run.num_latents * 84  # encoder fwd + bwd
        assert run.flops.sparse < run.flops.dense_equivalent


# -- power-law fits ----------------------------------------------------------------------------------------


def test_the_fit_recovers_an_exact_power_law() -> None:
    latents = [64, 128, 256, 512, 1024]
    fit = fit_power_law(latents, [2.0 * n**-0.5 for n in latents])
    assert fit.a == pytest.approx(2.0, rel=1e-9)
    assert fit.b == pytest.approx(0.5, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert (fit.n_points, fit.x_min, fit.x_max) == (5, 64.0, 1024.0)
    assert fit.predict(4096.0) == pytest.approx(2.0 / 64)


def test_noisy_points_give_an_r2_below_one() -> None:
    fit = fit_power_law([1, 2, 4, 8], [1.0, 0.6, 0.55, 0.2])
    assert 0 < fit.r2 < 1
    assert fit.b > 0


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ([10], [1.0], "at least 2 points"),
        ([10, 10], [1.0, 0.5], "2 distinct x"),
        ([10, 20], [1.0, 0.0], "positive"),
        ([10, 20], [1.0, math.nan], "finite"),
    ],
)
def test_a_fit_needs_two_distinct_positive_points(x: list[float], y: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_power_law(x, y)


# -- the sweep ---------------------------------------------------------------------------------------------


def test_a_bad_pair_in_the_grid_is_refused_before_anything_trains(tmp_path: Path) -> None:
    with pytest.raises(SaeConfigError, match=r"k \(64\) cannot exceed num_latents \(32\)"):
        run_sweep(structured_data(n=100), [32, 64], [64], TRAIN_CFG, out_dir=tmp_path)
    assert not (tmp_path / "sweep.json").exists()
    with pytest.raises(SaeConfigError, match="at least one"):
        sweep_configs(D_IN, [], [4])


def test_the_sweep_trains_every_pair_in_order_and_reports_progress(
    sweep: SweepFixture,
) -> None:
    result, events = sweep
    assert [(r.k, r.num_latents) for r in result.runs] == [(k, n) for k in KS for n in LATENTS]
    assert result.grid == [(n, k) for k in KS for n in LATENTS]
    assert not result.cancelled
    assert [e for e in events if e[0] == "start"] == [("start", i, 6) for i in range(6)]
    assert [e for e in events if e[0] == "end"] == [("end", i, 84) for i in range(6)]
    assert [e[2] for e in events if e[0] == "step" and e[1] == 0] == [20, 40, 60, 80, 84]
    assert len({r.sae_id for r in result.runs}) == 6
    for run in result.runs:
        assert run.val_nmse is not None
        assert 0 < run.train_nmse < 1
        assert 0 <= run.dead_fraction <= 1
        assert 0 <= run.dense_fraction <= 1
        assert sum(run.histogram_counts) == round((1 - run.dead_fraction) * run.num_latents)


def test_held_out_nmse_falls_with_the_number_of_latents(
    sweep: SweepFixture,
) -> None:
    # Measured (CPU, fixed seeds): k=4 0.514 / 0.468 / 0.457, k=8 0.348 / 0.333 / 0.327 held-out NMSE.
    result, _ = sweep
    assert result.nmse_metric == "val_nmse"
    for k in KS:
        nmse = {r.num_latents: r.nmse for r in result.runs if r.k == k}
        assert nmse[256] < 0.97 * nmse[64], (k, nmse)
        assert result.latent_fits[k].b > 0
        assert result.latent_fits[k].n_points == 3
        assert result.flops_fits[k].b > 0
    assert all(r.nmse < r_small.nmse for r in result.runs for r_small in result.runs if r.k > r_small.k)


def test_the_sweep_writes_sweep_json_plots_and_loadable_checkpoints(
    sweep: SweepFixture,
) -> None:
    result, _ = sweep
    out = result.json_path.parent
    data = json.loads(result.json_path.read_text())
    assert data == json.loads(
        json.dumps(result.to_dict() | {"created": data["created"], "seconds": data["seconds"]})
    )
    assert data["embedding_model"] == "synthetic"
    assert data["grid"] == {"latents": list(LATENTS), "ks": list(KS), "planned_runs": 6, "finished_runs": 6}
    assert [r["sae_id"] for r in data["runs"]] == [r.sae_id for r in result.runs]
    assert data["runs"][0]["flops"] == result.runs[0].flops.dense_equivalent
    assert {f["k"] for f in data["fits"]["nmse_vs_latents"]} == set(KS)
    assert data["fits"]["nmse_vs_flops"][0]["b"] == pytest.approx(result.flops_fits[KS[0]].b)
    assert sorted(data["plots"]) == ["feature_density.png", "nmse_vs_flops.png", "nmse_vs_latents.png"]
    for path in result.plot_paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000
    for run in result.runs:
        assert run.checkpoint == out / "runs" / run.sae_id
        sae = load_sae(run.checkpoint)
        assert (sae.num_latents, sae.k, sae.d_in) == (run.num_latents, run.k, D_IN)


def test_a_cancelled_sweep_keeps_the_runs_that_finished(tmp_path: Path) -> None:
    steps = {"n": 0}

    def stop_in_the_second_run() -> bool:
        steps["n"] += 1
        return steps["n"] > 14 + 3  # one 14-step run, then 3 steps of the next

    result = run_sweep(
        structured_data(),
        [64, 128],
        [4],
        TrainConfig(batch_size=128, epochs=1),
        out_dir=tmp_path,
        save_checkpoints=True,
        plots=False,
        should_stop=stop_in_the_second_run,
    )
    assert result.cancelled
    assert [r.num_latents for r in result.runs] == [64]
    assert result.latent_fits == {}
    assert result.plot_paths == []
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["cancelled"] is True
    assert len(data["runs"]) == 1
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [result.runs[0].sae_id]

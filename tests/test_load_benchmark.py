"""The pure helpers of benchmarks/load.py: percentiles, the traffic mix and reading a process's RSS."""

from __future__ import annotations

import importlib.util
import math
import os
import random
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("load_benchmark", ROOT / "benchmarks" / "load.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_percentiles_interpolate_between_ranks(load: ModuleType) -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100

    assert load.percentile(values, 50) == pytest.approx(50.5)
    assert load.percentile(values, 99) == pytest.approx(99.01)
    assert load.percentile(values, 0) == 1.0
    assert load.percentile(values, 100) == 100.0
    assert load.percentile([7.0], 99) == 7.0
    assert load.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert math.isnan(load.percentile([], 50))


def test_the_traffic_follows_the_mix_and_is_seeded(load: ModuleType) -> None:
    drawn = load.traffic(random.Random(1), 20_000)
    counts = Counter(drawn)
    total = sum(load.MIX.values())

    assert set(counts) == set(load.MIX) == {"search", "search_steered", "embed", "labels", "families"}
    for kind, weight in load.MIX.items():
        assert counts[kind] / len(drawn) == pytest.approx(weight / total, abs=0.02)
    assert load.traffic(random.Random(1), 50) == drawn[:50]


def test_a_custom_mix_draws_only_its_kinds(load: ModuleType) -> None:
    assert set(load.traffic(random.Random(2), 100, {"embed": 1, "labels": 0})) == {"embed"}


def test_the_rss_of_this_process_is_read_from_proc(load: ModuleType) -> None:
    if not Path(f"/proc/{os.getpid()}/status").exists():
        pytest.skip("no /proc on this system")
    assert load.rss_mb(os.getpid()) > 1.0

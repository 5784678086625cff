"""The inference thread runs torch on ``inference_threads`` threads; the rest of the process keeps
torch's default (training runs start their threads from it)."""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from sae_testing import serve_sae


def _threads_of_a_new_thread() -> int:
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


async def test_inference_runs_on_one_torch_thread_and_the_process_keeps_its_default(models_dir: Path) -> None:
    process_default = torch.get_num_threads()
    async with serve_sae(models_dir) as running:
        assert await running.servicer._infer(torch.get_num_threads) == 1
        assert torch.get_num_threads() == process_default
        assert _threads_of_a_new_thread() == process_default


async def test_inference_threads_zero_keeps_torchs_default(models_dir: Path) -> None:
    process_default = torch.get_num_threads()
    async with serve_sae(models_dir, inference_threads=0) as running:
        assert await running.servicer._infer(torch.get_num_threads) == process_default

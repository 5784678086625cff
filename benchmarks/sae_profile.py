"""Where a training step's time goes: torch.profiler over our trainer at the paper's width.

Setting (b) of benchmarks/sae_train.py (d_in 1536, 9,216 latents, k 64, batch 1024, the same lifted
MiniLM rows), fp32 then bf16 autocast: a warm-up run, then `--steps` steps under the profiler.
Prints the profiler's tables (ops by device time, then by host time) to stderr and one JSON line:
per precision, `device_ms_per_step` (the kernels' own time: the GPU's work on CUDA) and
`host_ms_per_step` (the ops' own time on the host, launches included), so a step that takes longer
than its device time is seen to be bound by the host.

    python3 benchmarks/sae_profile.py --device cuda --embeddings e.npy     # on a GPU machine
    .venv/bin/python benchmarks/sae_profile.py --steps 4                    # on CPU, a quick look

On an H100 (2026-11-27, 40 steps, on 9,984 rows) this gave ~4.7 ms of device time per step before
the dense CUDA branch of `featurelens.sae.sparse_ops` and ~3.0 ms after it, while a step took ~6 ms
either way: the host, launching ~150 kernels a step, was the limit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sae_train import SETTINGS, lift_to_1536, load_minilm_embeddings
from torch.profiler import ProfilerActivity, profile

from featurelens.sae import SaeConfig, TrainConfig, train_sae


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help='torch device, e.g. "cpu" or "cuda"')
    parser.add_argument(
        "--steps", type=int, default=None, help="profiled steps (default: 40 on CUDA, 4 on CPU)"
    )
    parser.add_argument("--embeddings", type=Path, default=None, help="(n, 384) MiniLM rows as .npy")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    steps: int = args.steps or (40 if cuda else 4)
    rows = np.load(args.embeddings) if args.embeddings else load_minilm_embeddings()
    setting = SETTINGS["b"]
    cfg = SaeConfig(d_in=setting.d_in, num_latents=setting.num_latents, k=setting.k)
    data = lift_to_1536(rows)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sort_key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    out: dict[str, object] = {"device": args.device, "steps": steps}
    for bf16 in (False, True) if cuda else (False,):
        train_cfg = TrainConfig(
            batch_size=1024,
            epochs=10_000,
            max_steps=steps,
            device=args.device,
            patience=0,
            use_bf16=bf16,
        )
        train_sae(data, cfg, train_cfg)  # warm-up: kernels loaded, allocator warm
        with profile(activities=activities) as prof:
            train_sae(data, cfg, train_cfg)
        events = prof.key_averages()
        print(events.table(sort_by=sort_key, row_limit=25), file=sys.stderr)
        device_us = sum(e.self_device_time_total for e in events) if cuda else 0.0
        host_us = sum(e.self_cpu_time_total for e in events)
        out["bf16" if bf16 else "fp32"] = {
            "device_ms_per_step": round(device_us / 1e3 / steps, 3),
            "host_ms_per_step": round(host_us / 1e3 / steps, 3),
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The training step as a CUDA graph: captured once, replayed every step.

At the paper's sizes (d_in 1536, 9,216 latents, batch 1024) one step is ~1 ms of GPU work but
~150 kernel launches, each ~10 µs of Python and driver time on the host (measured on an H100 with
torch.profiler): launched one by one, the host is the limit, at ~6 ms a step. A CUDA graph
launches the whole recorded step at once.

What a replayable step needs, and how train_sae provides it:

- static memory: the batch is copied into one input buffer before each replay; every tensor the
  step makes (pre-activations, gradients, the losses it returns) lives in the graph's own pool at
  fixed addresses, so the gradients are not reset between steps (backward overwrites them: they
  were None when the graph was recorded);
- no host synchronisation inside the step: the AuxK selection has a fixed width on CUDA
  (`SparseAutoencoder._select_dead`), the dead-latent mask is always computed on the device (before
  the dead threshold no latent can be dead, so this is the same as passing none), the optimiser is
  Adam with `capturable=True` (its step counters live on the device), and gradient clipping reads
  no norm back;
- no randomness inside the step: runs with `input_noise` keep the eager loop;
- lazily created state exists before recording: the first `WARMUP_STEPS` steps run eagerly on a
  side stream (Adam creates its moments there), as PyTorch's whole-network capture recipe does.

Replays compute what the eager step computes, kernel for kernel; a test on a GPU
(`test_a_cuda_graph_run_trains_the_same_weights_as_an_eager_run`, marked gpu) compares the weights
after a graphed and an eager run. Status: written after profiling on an H100 showed the host-bound
step, but the GPU was gone before this path could run there, so `TrainConfig.cuda_graph` is off by
default until that test has passed on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["WARMUP_STEPS", "GraphedStep"]

#: Eager steps (on a side stream) before the step is recorded.
WARMUP_STEPS = 3


class GraphedStep:
    """Runs `step(batch) -> Tensor` eagerly for WARMUP_STEPS calls, then records and replays it.

    `reset_grads` runs after each eager step (gradients must be None before recording). The
    returned tensor is a copy of the step's output, safe to keep across replays.
    """

    def __init__(self, step: Callable[[Tensor], Tensor], reset_grads: Callable[[], None]) -> None:
        self._step = step
        self._reset_grads = reset_grads
        self._eager_left = WARMUP_STEPS
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static_x: Tensor | None = None
        self._static_out: Tensor | None = None

    def __call__(self, batch: Tensor) -> Tensor:
        if self._eager_left > 0:
            self._eager_left -= 1
            side = torch.cuda.Stream(device=batch.device)
            side.wait_stream(torch.cuda.current_stream(batch.device))
            with torch.cuda.stream(side):
                out = self._step(batch)
                self._reset_grads()
            torch.cuda.current_stream(batch.device).wait_stream(side)
            return out
        if self._graph is None:
            self._record(batch)
        assert self._graph is not None
        assert self._static_x is not None
        assert self._static_out is not None
        self._static_x.copy_(batch)
        self._graph.replay()
        return self._static_out.clone()

    def _record(self, batch: Tensor) -> None:
        """Record the step (recording runs nothing: the first replay does the step)."""
        self._static_x = torch.empty_like(batch)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._static_out = self._step(self._static_x)

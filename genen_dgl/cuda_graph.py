"""A training step replayed as one CUDA graph (issue 12).

With ``--sampler device`` a training step (sample, gather, forward, loss, backward, fused
Adam) has shapes fixed by the batch size and the fanouts, and never reads a value back from
the device (``tests/test_sync_free.py``). So it can be captured once and replayed: one graph
launch per step instead of ~500 operators, each a Python call, a dispatch and a kernel
launch, which on an H200 take longer than the kernels themselves.

:class:`GraphedStep` wraps ``step(seeds) -> tensor``:

* its first ``warmup`` calls run eagerly on a side stream, as real steps (they build the
  sampler's per-shape layouts and cached constants and initialise cuBLAS and cuSPARSE);
* the next call captures the step and replays the graph at once;
* a later call with seeds of the captured size copies them into the graph's input and
  replays; another size (an epoch's last, smaller batch) runs eagerly.

The sampler's generator is registered with the graph, so each replay draws new neighbours
as an eager step would; dropout's default generator is registered by the capture itself.
The optimiser must be capturable (:func:`genen_dgl.trainer.adam` makes it so on a GPU). The
returned tensor is the graph's output: the next replay overwrites it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


class GraphedStep:
    """``step`` captured as a CUDA graph after ``warmup`` eager calls (see the module)."""

    def __init__(self, step: Callable[[torch.Tensor], torch.Tensor], generators: Sequence[torch.Generator] = (),
                 warmup: int = 3):
        self.step, self.generators, self.warmup = step, tuple(generators), warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.seeds = self.out = None
        self.eager_calls = self.replays = 0

    def __call__(self, seeds: torch.Tensor) -> torch.Tensor:
        if seeds.device.type != "cuda":
            raise ValueError(f"GraphedStep: seeds on {seeds.device}, expected a CUDA tensor (copy them first)")
        if self.graph is None and self.eager_calls >= self.warmup:
            self._capture(seeds)
        if self.graph is not None and seeds.shape == self.seeds.shape:
            self.seeds.copy_(seeds)
            self.graph.replay()
            self.replays += 1
            return self.out
        self.eager_calls += 1
        if self.graph is not None:
            return self.step(seeds)
        side = torch.cuda.Stream()  # warm-up away from the capture's stream, as torch.cuda.graph asks
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self.step(seeds)
        torch.cuda.current_stream().wait_stream(side)
        return out

    def _capture(self, seeds: torch.Tensor) -> None:
        self.seeds = seeds.clone()
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        with torch.cuda.graph(graph):
            self.out = self.step(self.seeds)
        self.graph = graph

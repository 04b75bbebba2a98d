"""A training step replayed as one CUDA graph (issue 12): :class:`ReplayedSteps` wraps the
trainer's step function, :class:`GraphedStep` captures and replays it.

With ``--sampler device`` a training step (sample, gather, forward, loss, backward, fused
Adam) has shapes fixed by the batch size and the fanouts, and never reads a value back from
the device (``tests/test_sync_free.py``). So it can be captured once and replayed: one graph
launch per step instead of ~500 operators, each a Python call, a dispatch and a kernel
launch, which on an H200 take longer than the kernels themselves.

:class:`GraphedStep` wraps ``step(seeds) -> tensor``, per batch size (an epoch's last,
smaller batch has its own):

* the first ``warmup`` calls of a size run eagerly on a side stream, as real steps (they
  build the sampler's layout for that size and its cached constants, and initialise
  cuBLAS and cuSPARSE);
* the next call of that size captures the step and replays the graph at once;
* later calls copy their seeds into the graph's input and replay it.

So after ``warmup`` epochs every batch replays. Each graph keeps its own memory pool.

The sampler's generator is registered with the graph, so each replay draws new neighbours
as an eager step would; dropout's default generator is registered by the capture itself.
The optimiser must be capturable (:func:`genen_dgl.training.optimise.adam` with ``capturable=True``).
The returned tensor is the graph's output: the next replay overwrites it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Iterator

import torch

from genen_dgl.sampling.device import DeviceBatches
from genen_dgl.training.sources import SampledSteps, StepFn

log = logging.getLogger(__name__)


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    seeds: torch.Tensor  # the graph's input, copied into before each replay
    out: torch.Tensor  # its output, overwritten by each replay


class GraphedStep:
    """``step`` captured as a CUDA graph per batch size, after ``warmup`` eager calls of that
    size (see the module). ``eager_calls`` and ``replays`` count what ran."""

    def __init__(self, step: Callable[[torch.Tensor], torch.Tensor], generators: Sequence[torch.Generator] = (),
                 warmup: int = 3):
        if warmup < 1:  # the first call makes lazy state (Adam's moments, the sampler's layout): not in a graph
            raise ValueError(f"GraphedStep: warmup = {warmup}, expected >= 1")
        self.step, self.generators, self.warmup = step, tuple(generators), warmup
        self.side: torch.cuda.Stream | None = None  # one warm-up stream: the allocator pools memory per stream
        self.captured: dict[torch.Size, _Captured] = {}
        self.calls: dict[torch.Size, int] = {}  # eager calls per batch size
        self.eager_calls = self.replays = 0

    def __call__(self, seeds: torch.Tensor) -> torch.Tensor:
        if seeds.device.type != "cuda":
            raise ValueError(f"GraphedStep: seeds on {seeds.device}, expected a CUDA tensor (copy them first)")
        size = seeds.shape
        if size not in self.captured and self.calls.get(size, 0) >= self.warmup:
            self.captured[size] = self._capture(seeds)
        if size in self.captured:
            done = self.captured[size]
            done.seeds.copy_(seeds)
            done.graph.replay()
            self.replays += 1
            return done.out
        self.calls[size] = self.calls.get(size, 0) + 1
        self.eager_calls += 1
        self.side = self.side or torch.cuda.Stream()  # warm-up away from the capture's stream, as torch asks
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            out = self.step(seeds)
        torch.cuda.current_stream().wait_stream(self.side)
        return out

    def _capture(self, seeds: torch.Tensor) -> _Captured:
        seeds = seeds.clone()
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        with torch.cuda.graph(graph):
            out = self.step(seeds)
        return _Captured(graph, seeds, out)


class ReplayedSteps(SampledSteps):
    """The device sampler's steps, each whole step (sample, gather, and the trainer's
    ``step_fn``: forward, loss, backward, optimiser) replayed as one CUDA graph per batch
    size (``--cuda-graph``). Its epochs yield the seed batches, on the device; :meth:`wrap`
    makes the trainer's step function take them. The epoch's seed reseeds the one
    generator the graphs draw from, so an epoch samples as :meth:`DeviceBatches.epoch` would."""

    def __init__(self, sampler: DeviceBatches, inputs: dict[str, torch.Tensor], targets: torch.Tensor, device):
        super().__init__(sampler, inputs, targets, device)
        self.generator = torch.Generator(device=device)
        self.graphed: GraphedStep | None = None
        self.replays = 0  # steps replayed by graphs already closed

    def wrap(self, step_fn: StepFn) -> GraphedStep:
        self.graphed = GraphedStep(lambda seeds: step_fn(self.step(self.sampler.sample(seeds, self.generator))),
                                   [self.generator])
        return self.graphed

    def epoch(self, seed: int) -> Iterator[torch.Tensor]:
        self.generator.manual_seed(seed)
        chunks = self.sampler.chunks(seed)  # to the device at once: a copy per step would wait for the last
        return iter(torch.cat(chunks).to(self.device).split([len(c) for c in chunks]))

    def close(self) -> None:
        if self.graphed is not None:
            g = self.graphed
            self.replays += g.replays
            log.info("%d steps replayed as CUDA graphs (%d batch sizes), %d eager", g.replays, len(g.captured),
                     g.eager_calls)
            g.captured.clear()  # the graphs and their memory pools (they hold the model through step_fn)
        self.graphed = None


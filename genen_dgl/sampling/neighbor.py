"""DGL's neighbour sampler as a :class:`~genen_dgl.sampling.base.SeedBatches`, sampled ahead.

DGL's CPU build does the sampling (``dgl.dataloading.NeighborSampler``, fanouts per
layer and per relation); the blocks are converted to :class:`MessageBlock` s
(:func:`~genen_dgl.sampling.blocks.to_message_block`). A background thread samples and
converts the next batches while the current one trains (DGL's C++ sampler releases the GIL).
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np
import torch

from genen_dgl.dgl_compat import dgl
from genen_dgl.nn.sparse import ETYPE
from genen_dgl.sampling.base import Batch, SeedBatches
from genen_dgl.sampling.blocks import graph_degrees, to_message_block


class NeighborBatches(SeedBatches):
    """Minibatches of seed nodes with DGL neighbour sampling (on the CPU), sampled ahead in
    a thread. ``sample`` = ``convert(*sample_blocks(seeds))``: DGL's part and ours."""

    def __init__(self, graph, seeds: np.ndarray, fanouts, batch_size: int, weights: dict[ETYPE, torch.Tensor],
                 target: str = "gene", shuffle: bool = True, prefetch: int = 2, self_loops: bool = True):
        super().__init__(seeds, batch_size, shuffle)
        self.graph, self.sampler = graph, dgl.dataloading.NeighborSampler(fanouts)
        self.weights, self.target, self.prefetch, self.self_loops = weights, target, prefetch, self_loops
        self.degrees = graph_degrees(graph)

    @classmethod
    def for_run(cls, graph, seeds, fanouts, batch_size, weights, device, deterministic) -> "NeighborBatches":
        """On the CPU whatever the device; sampled ahead in a thread unless ``deterministic``
        (DGL's per-thread random engines make a sampling thread drift)."""
        return cls(graph, seeds, fanouts, batch_size, weights, prefetch=0 if deterministic else 2)

    def sample_blocks(self, seeds: torch.Tensor) -> tuple[dict, dict, list]:
        """DGL's sampling alone: (input nodes, output nodes, DGL blocks)."""
        input_nodes, output_nodes, blocks = self.sampler.sample(self.graph, {self.target: seeds})
        if isinstance(input_nodes, torch.Tensor):  # DGL returns a bare tensor on one node type
            input_nodes = {self.target: input_nodes}
        if isinstance(output_nodes, torch.Tensor):
            output_nodes = {self.target: output_nodes}
        return input_nodes, output_nodes, blocks

    def convert(self, input_nodes: dict, output_nodes: dict, blocks: list) -> Batch:
        """DGL blocks as the model's :class:`MessageBlock` s (whole-graph GCN degrees)."""
        mblocks = [to_message_block(b, self.weights, self.self_loops, self.degrees) for b in blocks]
        return Batch(input_nodes, output_nodes[self.target], mblocks)

    def sample(self, seeds: torch.Tensor) -> Batch:
        return self.convert(*self.sample_blocks(seeds))

    def epoch(self, seed: int) -> Iterator[Batch]:
        """One pass over the seeds; ``seed`` fixes the order and the sampled neighbours.
        With ``prefetch=0`` the main thread samples (reproducible under ``dgl.seed`` when
        DGL runs one thread; its per-thread engines make a sampling thread drift)."""
        if self.prefetch == 0:
            dgl.seed(seed)
            yield from super().epoch(seed)
            return
        chunks = self.chunks(seed)
        out: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def produce():
            dgl.seed(seed)  # DGL's random engines are per thread: seed the sampling thread
            try:
                for chunk in chunks:
                    if stop.is_set():
                        return
                    out.put(self.sample(chunk))
                out.put(None)
            except BaseException as err:  # hand the error to the consumer
                out.put(err)

        worker = threading.Thread(target=produce, daemon=True, name="genen-sampler")
        worker.start()
        try:
            while (item := out.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                try:
                    out.get_nowait()
                except queue.Empty:
                    worker.join(0.01)

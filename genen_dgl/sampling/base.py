"""The sampler protocol: seed genes cut into shuffled batches, each sampled into a :class:`Batch`.

A sampler (:class:`SeedBatches`) cuts the seed genes into batches (:func:`seed_chunks`,
the same order for the same epoch seed in every sampler) and samples each one's
:class:`Batch`: input node ids per type, the seeds, one
:class:`~genen_dgl.nn.sparse.MessageBlock` per layer (outermost first).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from genen_dgl.nn.sparse import MessageBlock, on


@dataclass
class Batch:
    """One sampled minibatch: input node ids per type, the seeds, the blocks."""

    input_nodes: dict[str, torch.Tensor]
    seeds: torch.Tensor  # target-type output nodes, in the order of the model's output
    blocks: list[MessageBlock]

    def to(self, device) -> "Batch":
        if on(self.seeds, device):
            return self  # sampled there (DeviceBatches)
        nb = torch.device(device).type == "cuda"
        return Batch({t: n.to(device, non_blocking=nb) for t, n in self.input_nodes.items()},
                     self.seeds.to(device, non_blocking=nb), [b.to(device, nb) for b in self.blocks])


def seed_chunks(seeds: torch.Tensor, batch_size: int, seed: int | None) -> list[torch.Tensor]:
    """``seeds`` in batches, shuffled by ``seed`` (kept in order when it is None)."""
    order = torch.arange(len(seeds)) if seed is None else \
        torch.randperm(len(seeds), generator=torch.Generator().manual_seed(seed))
    return [seeds[order[i:i + batch_size]] for i in range(0, len(order), batch_size)]


class SeedBatches(ABC):
    """A sampler's shared part: the seed genes, cut into shuffled batches per epoch.
    Subclasses implement ``sample(seeds) -> Batch`` and may override ``epoch``."""

    def __init__(self, seeds: np.ndarray, batch_size: int, shuffle: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size = {batch_size}: expected at least 1")
        self.seeds = torch.as_tensor(seeds, dtype=torch.int64)
        self.batch_size, self.shuffle = batch_size, shuffle

    def __len__(self) -> int:
        return (len(self.seeds) + self.batch_size - 1) // self.batch_size

    def chunks(self, seed: int) -> list[torch.Tensor]:
        """This epoch's seed batches (the same order for the same ``seed`` in every sampler)."""
        return seed_chunks(self.seeds, self.batch_size, seed if self.shuffle else None)

    @classmethod
    @abstractmethod
    def for_run(cls, graph, seeds: np.ndarray, fanouts, batch_size: int, weights: dict, device: torch.device,
                deterministic: bool) -> "SeedBatches":
        """The sampler a training run uses over ``graph``'s gene nodes ``seeds``, for a model on
        ``device`` (``deterministic``: reproducible sampling, even at some speed)."""

    @abstractmethod
    def sample(self, seeds: torch.Tensor) -> Batch:
        """The sampled minibatch of ``seeds``."""

    def epoch(self, seed: int) -> Iterator[Batch]:
        return (self.sample(chunk) for chunk in self.chunks(seed))

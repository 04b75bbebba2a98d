"""What a training step reads, and the interfaces the trainer is written against.

Two levels, so that one :class:`~genen_dgl.trainer.FoldTrainer` serves every way of
training (full graph, DGL's sampler, the torch-op sampler, a DistGraph):

* a **sampler** (:class:`SeedBatches`: :class:`~genen_dgl.dataloading.NeighborBatches`,
  :class:`~genen_dgl.device_sampling.DeviceBatches`) cuts the seed genes into batches
  (:func:`seed_chunks`) and samples each one's :class:`Batch`: input node ids per type,
  the seeds, one :class:`~genen_dgl.nn.sparse.MessageBlock` per layer;
* a **step source** (:class:`StepSource`) yields ready :class:`Step` s for an epoch: input
  features, blocks, targets, on the training device. The trainer hands it its
  ``optimise(step)`` (:meth:`StepSource.losses`), so that a source can also run sampling
  and optimisation as one replayed CUDA graph (:class:`~genen_dgl.local.ReplayedSteps`);
  a :class:`Predictor` gives model outputs for any genes, for validation and test.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

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


@dataclass
class Step:
    """One optimisation step's data: the model's inputs and what its output is scored on.
    ``rows`` picks the output rows the targets belong to (None: all of them); ``nodes`` and
    ``seeds`` are the input and output nodes' ids (None: every node, in order)."""

    inputs: dict[str, torch.Tensor]
    blocks: list[MessageBlock]
    targets: torch.Tensor
    rows: torch.Tensor | None = None
    nodes: dict[str, torch.Tensor] | None = None
    seeds: torch.Tensor | None = None


class StepSource(ABC):
    """Where an epoch's training steps come from (a sampler's batches, the full graph, this
    rank's share of a DistGraph)."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def epoch(self, seed: int) -> Iterator[Step]:
        """One pass over the training genes; ``seed`` fixes the order and the samples."""

    def losses(self, seed: int, optimise: Callable[[Step], torch.Tensor]) -> Iterator[torch.Tensor]:
        """``optimise`` (forward, loss, backward, optimiser step: the trainer's) run on each
        step of :meth:`epoch`: the losses, as device scalars."""
        return map(optimise, self.epoch(seed))

    def close(self) -> None:
        """Let go of what the steps keep between epochs (replayed steps: their CUDA graphs and
        memory pools, which also hold the trainer through its ``optimise``)."""


class Predictor(Protocol):
    def predict(self, model: torch.nn.Module, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outputs (class probabilities, or predictions as one column) and refined
        embeddings of the gene nodes ``genes``, in that order, with ``model`` in eval mode."""


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

    @abstractmethod
    def sample(self, seeds: torch.Tensor) -> Batch:
        """The sampled minibatch of ``seeds``."""

    def epoch(self, seed: int) -> Iterator[Batch]:
        return (self.sample(chunk) for chunk in self.chunks(seed))

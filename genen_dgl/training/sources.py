"""Where a split's training steps come from, and what scores genes for validation and test.

A **step source** (:class:`StepSource`) yields an epoch's :class:`Step` s, ready on the
training device: a sampler's batches with their features and targets gathered
(:class:`SampledSteps`), the whole graph as one step (:class:`FullGraphSteps`), a rank's
share of a DistGraph (:class:`~genen_dgl.distributed.backend.DistSteps`). A source may
also choose how steps run (:meth:`StepSource.wrap`: replayed as CUDA graphs,
:class:`~genen_dgl.training.replay.ReplayedSteps`). A :class:`Predictor` gives the model's
outputs and embeddings for any genes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import numpy as np
import torch

from genen_dgl.nn.sparse import MessageBlock
from genen_dgl.sampling import Batch, SeedBatches

StepFn = Callable[["Step"], torch.Tensor]  # one optimisation step; the loss, a device scalar


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
    """An epoch's training steps over a split's training genes."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def epoch(self, seed: int) -> Iterator:
        """One pass over the training genes (``seed`` fixes the order and the samples):
        what :meth:`wrap`'s step function takes, a :class:`Step` unless it says otherwise."""

    def wrap(self, step_fn: StepFn) -> Callable[..., torch.Tensor]:
        """The step function the trainer runs on this source's items: ``step_fn`` itself."""
        return step_fn

    def close(self) -> None:
        """Let go of what the steps keep between epochs."""


class Predictor(Protocol):
    def predict(self, model: torch.nn.Module, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outputs (class probabilities, or predictions as one column) and refined
        embeddings of the gene nodes ``genes``, in that order, with ``model`` in eval mode."""


class SampledSteps(StepSource):
    """A sampler's batches as training steps: features gathered, targets looked up, on ``device``."""

    def __init__(self, sampler: SeedBatches, inputs: dict[str, torch.Tensor], targets: torch.Tensor, device):
        self.sampler, self.inputs, self.targets, self.device = sampler, inputs, targets, device

    def __len__(self) -> int:
        return len(self.sampler)

    def step(self, batch: Batch) -> Step:
        batch = batch.to(self.device)
        return Step({t: self.inputs[t][n] for t, n in batch.input_nodes.items()}, batch.blocks,
                    self.targets[batch.seeds], nodes=batch.input_nodes, seeds=batch.seeds)

    def epoch(self, seed: int) -> Iterator[Step]:
        return map(self.step, self.sampler.epoch(seed))


class FullGraphSteps(StepSource):
    """Full-graph training: one step per epoch, the loss on the training genes' rows."""

    def __init__(self, block: MessageBlock, layers: int, inputs: dict[str, torch.Tensor], targets: torch.Tensor,
                 genes: np.ndarray):
        self.block, self.layers, self.inputs = block, layers, inputs
        self.rows = torch.as_tensor(genes, device=targets.device)
        self.targets = targets[self.rows]

    def __len__(self) -> int:
        return 1

    def epoch(self, seed: int) -> Iterator[Step]:
        yield Step(self.inputs, [self.block] * self.layers, self.targets, self.rows)

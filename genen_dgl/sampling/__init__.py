"""Samplers: which neighbours of a batch of seed genes each layer of the model reads.

* :mod:`~genen_dgl.sampling.base`: the protocol (:class:`SeedBatches` -> :class:`Batch`);
* :mod:`~genen_dgl.sampling.blocks`: DGL graphs and blocks as the model's message blocks;
* :mod:`~genen_dgl.sampling.neighbor`: DGL's neighbour sampler on the CPU (``--sampler neighbor``);
* :mod:`~genen_dgl.sampling.device`: the torch-op sampler on the model's device (``--sampler device``).

``--sampler full`` is no sampler: one full-graph step per epoch (:data:`FULL_GRAPH`).
"""

from __future__ import annotations

import numpy as np
import torch

from genen_dgl.sampling.base import Batch, SeedBatches
from genen_dgl.sampling.device import DeviceBatches
from genen_dgl.sampling.neighbor import NeighborBatches

FULL_GRAPH = "full"
SAMPLERS: dict[str, type[SeedBatches]] = {"neighbor": NeighborBatches, "device": DeviceBatches}

__all__ = ["Batch", "SeedBatches", "FULL_GRAPH", "SAMPLERS", "new_sampler"]


def new_sampler(name: str, graph, seeds: np.ndarray, fanouts, batch_size: int, weights: dict,
                device: torch.device, deterministic: bool = False) -> SeedBatches:
    """The ``--sampler name`` sampler over ``graph``'s gene nodes ``seeds``."""
    return SAMPLERS[name].for_run(graph, seeds, fanouts, batch_size, weights, device, deterministic)

"""Seeds, and the process-wide settings a run asks for (applied by the command-line entry
points only: building a backend changes nothing outside it)."""

from __future__ import annotations

import random

import numpy as np
import torch

from genen_dgl.config import TrainConfig
from genen_dgl.dgl_compat import dgl
from genen_dgl.host_memory import keep_freed_memory
from genen_dgl.precision import set_matmul_precision


def seed_everything(*parts: int) -> int:
    """Seed python, numpy, torch and DGL from ``parts`` (e.g. seed, fold, epoch)."""
    seed = int(np.random.SeedSequence(list(parts)).generate_state(1)[0] % (2**31))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dgl.seed(seed)
    return seed


def apply_runtime(config: TrainConfig) -> None:
    """The process-wide settings a run asks for: torch's CPU threads, TF32 matmuls on or
    off (``precision``), and with ``deterministic`` one thread (torch and DGL) and
    deterministic kernels; and freed host memory kept for the next batch
    (:func:`~genen_dgl.host_memory.keep_freed_memory`)."""
    keep_freed_memory()
    set_matmul_precision(config.precision)
    threads = 1 if config.deterministic else config.threads
    if threads:
        torch.set_num_threads(threads)
    if config.deterministic:
        dgl.utils.set_num_threads(1)
        torch.use_deterministic_algorithms(True, warn_only=True)

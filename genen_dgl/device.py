"""Choosing the torch device from a user's ``auto``/``cpu``/``cuda[:N]``."""

from __future__ import annotations

import torch

from genen_dgl.errors import InputError


def pick_device(name: str) -> torch.device:
    """``auto`` is CUDA where torch sees a GPU, else the CPU; asking for CUDA without
    one is an input error rather than a crash deep inside torch."""
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise InputError(f"device {name!r}: expected auto, cpu or cuda")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but torch sees no GPU; use --device cpu")
    return torch.device(name)

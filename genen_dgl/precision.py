"""Numeric precision of training and prediction (``--precision``), in one place for the
trainer, the predictors and the benchmarks.

* ``fp32``: float32 throughout; TF32 explicitly off for CUDA matmuls and cuDNN.
* ``tf32``: float32 tensors; CUDA matmuls and cuDNN convolutions on TF32 tensor cores
  (10-bit mantissa products, float32 accumulation). On the CPU the same as fp32 (oneDNN's
  own reduced-precision modes are left off).
* ``bf16``: the model's forward pass under ``torch.autocast(dtype=bfloat16)`` (CPU and
  CUDA): autocast-eligible ops (matmuls, linear layers) compute in bfloat16, parameters
  and gradients stay float32. The loss (:func:`genen_dgl.training.objective.task_loss`) and the
  predictions are computed on the logits cast back to float32.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "tf32", "bf16")


def set_matmul_precision(precision: str) -> None:
    """The process-wide float32 matmul setting ``precision`` asks for: TF32 on CUDA for
    ``tf32``, off otherwise (bf16's float32 ops, e.g. outside autocast, stay exact too)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32  # CUDA only: the CPU's oneDNN setting is separate
    torch.backends.cudnn.allow_tf32 = tf32


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The context to run a forward pass in: bfloat16 autocast on ``device``'s type for
    ``bf16``, nothing for ``fp32`` and ``tf32`` (their difference is process-wide, see
    :func:`set_matmul_precision`)."""
    if precision == "bf16":  # no cast cache: a CUDA graph capture must not keep casts made outside it
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()

"""What the model's output means for a task's kind: the loss it is trained on and the
scores it reports."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def task_loss(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classes, MSE for regression (the paper's losses), binary
    cross-entropy with logits averaged over genes and classes for multilabel, on float32
    outputs (bf16 autocast: the logits are cast up first)."""
    out = out.float()
    if kind == "regression":
        return F.mse_loss(out.reshape(-1), y)
    if kind == "multilabel":
        return F.binary_cross_entropy_with_logits(out, y)
    return F.cross_entropy(out, y)


def scores(kind: str, logits: torch.Tensor) -> torch.Tensor:
    """What a predictor reports from the model's output: class probabilities (softmax; one
    sigmoid per class for multilabel), or the prediction as one column for regression;
    float32 whatever the precision."""
    logits = logits.float()
    if kind == "multilabel":
        return torch.sigmoid(logits)
    return logits.reshape(-1, 1) if kind == "regression" else torch.softmax(logits, 1)

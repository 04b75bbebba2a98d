"""What a run's folds are made of, shared by the trainer and the baselines: the splits of
the labelled genes (``folds`` folds for each of ``seeds`` seeds, plus the refit on every
labelled gene) and the masking study's zeroed features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genen_dgl.config import TrainConfig
from genen_dgl.data.labels import Labels
from genen_dgl.errors import InputError
from genen_dgl.evaluation import Fold, split_folds, split_problem

REFIT = "refit"  # the folder of the model trained on every labelled gene


@dataclass
class Split:
    """One training run of the cross-validation: fold ``k`` of the folds cut with ``seed``
    (positions into the labelled genes)."""

    seed: int
    k: int
    fold: Fold
    name: str  # its folder in the run directory


def check_splits(labels: Labels, config: TrainConfig) -> None:
    """An InputError naming the task's file unless its labels can be cut into the
    configured folds and validation share (:func:`~genen_dgl.evaluation.split_problem`)."""
    problem = split_problem(labels.values, labels.kind, labels.classes, config.folds, config.val_share)
    if problem:
        raise InputError(problem, labels.source)


def cut_splits(labels: Labels, config: TrainConfig) -> list[Split]:
    """The K folds for each of ``config.seeds`` seeds; the first seed's folds are ``fold{k}``."""
    check_splits(labels, config)
    out = []
    for seed in range(config.seed, config.seed + config.seeds):
        folds = split_folds(labels.values, labels.kind, config.folds, seed, config.val_share)
        out += [Split(seed, k, f, f"fold{k}" if seed == config.seed else f"seed{seed}-fold{k}")
                for k, f in enumerate(folds)]
    return out


def refit_split(config: TrainConfig, labelled: int, index: int) -> Split:
    """Training on every labelled gene (no validation, no test): the refit's split."""
    everyone = np.arange(labelled)
    return Split(config.seed, index, Fold(everyone, everyone[:0], everyone[:0]), REFIT)


def mask_features(feats: dict[str, torch.Tensor], rate: float, which: str, seed: int) -> dict[str, torch.Tensor]:
    """Zero the input features of a random ``rate`` share of the nodes of ``which`` types
    (at one seed, a lower rate's masked nodes are among a higher rate's)."""
    if rate <= 0:
        return feats
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for t, x in feats.items():
        if which in ("all", t):
            keep = torch.rand(x.shape[0], generator=gen) >= rate
            x = x * keep[:, None].to(x.device, x.dtype)
        out[t] = x
    return out

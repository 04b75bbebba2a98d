"""A device-sampled training step replayed as a CUDA graph trains exactly as eager steps do,
in the trainer too (GPU only)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_sync_free import training

from genen_dgl.config import TrainConfig
from genen_dgl.training.replay import GraphedStep
from genen_dgl.local import LocalBackend
from genen_dgl.training.replay import ReplayedSteps
from genen_dgl.training.fold import FoldTrainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")


def replayed_as_eager(batches: list[torch.Tensor], *args, **kwargs) -> tuple[GraphedStep, torch.Tensor]:
    """Trains ``training(*args, **kwargs)`` on ``batches`` twice, eagerly and through a
    GraphedStep (one warm-up per batch size), and checks that the losses and the final
    weights agree; returns the GraphedStep and the losses."""
    losses, weights = [], []
    for graphed in (False, True):
        net, _, gen, step = training(*args, **kwargs)
        run = GraphedStep(step, [gen], warmup=1) if graphed else step
        losses.append(torch.stack([run(seeds).clone() for seeds in batches]))
        weights.append([p.detach().clone() for p in net.parameters()])
    torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=1e-4)
    for a, b in zip(*weights):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    return run, losses[0]


@pytest.mark.parametrize("model, optimiser", [("gcn", "adam"), ("gat", "sgd")])
def test_replayed_steps_train_as_eager_steps(model, optimiser):
    """Fanouts above every degree take every neighbour, so eager and replayed steps see the
    same batches: losses and final weights agree, the last, smaller batch's too.

    GAT under SGD: its softmax sums rows with atomic adds on a GPU, so two eager runs differ
    in the last bits; Adam divides each gradient by its own running size, which turns such
    differences in near-zero gradients into full-size steps. (On the H200, under Adam, the
    GAT losses parted by 0.2 already at the second step, which both runs take eagerly; GCN's
    products are deterministic and its runs matched under Adam. This SGD form has not yet
    run on a GPU.)"""
    epoch = [torch.arange(i, i + 8, device="cuda") % 37 for i in range(0, 56, 7)] + [torch.arange(5, device="cuda")]
    batches = epoch + epoch
    run, _ = replayed_as_eager(batches, model, [100, 100], 8, "cuda", optimiser)
    # one warm-up per batch size; the small batch is captured in the second epoch
    assert run.eager_calls == 2 and run.replays == len(batches) - 2 and len(run.captured) == 2


def test_replays_sample_and_drop_out_as_eager_steps():
    """Fanouts below the degrees and dropout: a replay draws what an eager step draws, from
    the sampler's generator and from dropout's (the default), so losses and weights agree."""
    seeds = [torch.arange(i, i + 8, device="cuda") % 37 for i in range(0, 48, 6)]
    run, losses = replayed_as_eager(seeds, "gcn", [2, 2], 8, "cuda", dropout=0.5)
    assert len(set(losses.tolist())) == len(seeds) and run.replays == len(seeds) - 1


def test_replays_draw_new_neighbours():
    """With fanouts below the degrees, the sampler's generator moves on with every replay:
    the same seeds give different losses (the model is frozen by a zero learning rate)."""
    _, opt, gen, step = training("gcn", [2, 2], 8, "cuda")
    for group in opt.param_groups:
        group["lr"] = 0.0
    run = GraphedStep(step, [gen], warmup=1)
    seeds = torch.arange(8, device="cuda")
    run(seeds)
    values = torch.stack([run(seeds).clone() for _ in range(4)])
    assert run.replays == 4 and len(set(values.tolist())) > 1


def test_training_with_replayed_steps_as_with_eager_steps(sample_spec, tmp_path):
    """``--cuda-graph`` in the trainer: two folds of the sample dataset train as eager
    device-sampled steps do (the same losses epoch by epoch, the same test AUC), the steps
    did replay, and the graphs are let go once a split is done."""
    config = TrainConfig(data=str(sample_spec), sampler="device", device="cuda", hidden=32, folds=2, epochs=6,
                         batch_size=64, patience=100).resolved()
    auc, history = {}, {}
    for graphed in (False, True):
        data = LocalBackend(dataclasses.replace(config, cuda_graph=graphed))
        trainers = [FoldTrainer.of(data, split, tmp_path / str(graphed)) for split in data.splits]
        auc[graphed] = [t.fit()["auc"] for t in trainers]
        history[graphed] = torch.tensor([[h["loss"] for h in t.history] for t in trainers])
        if graphed:
            assert all(isinstance(t.source, ReplayedSteps) and t.source.graphed is None and t.source.replays > 0
                       for t in trainers)
    assert np.mean(auc[False]) > 0.8
    torch.testing.assert_close(history[True], history[False], atol=1e-4, rtol=1e-3)
    assert np.allclose(auc[True], auc[False], atol=0.01), auc

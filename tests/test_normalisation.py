"""One GCN operator in training and evaluation: a sampled block's coefficients use the whole
graph's degrees (rescaled by degree / sampled count), so the same weights give the same loss
whether the test genes are scored on sampled blocks or on the full graph. DGL's GraphConv on
a block (block-local degrees) is a different operator: the contrast shows the test can fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from genen_dgl.config import TrainConfig
from genen_dgl.data.sample import generate
from genen_dgl.sampling.neighbor import NeighborBatches
from genen_dgl.sampling.device import DeviceBatches
from genen_dgl.evaluation import score_outputs
from genen_dgl.local import LocalBackend
from genen_dgl.training.fold import FoldTrainer

# the tolerance the README states: sampled and full-graph test log-loss within 15% + 0.03
REL_TOL, ABS_TOL = 0.15, 0.03


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """The paper's node sets with 0.1x its edges (mean PPI degree ~180), 32-d features."""
    spec = generate(tmp_path_factory.mktemp("dense") / "data", scale=0.1, dim=32)
    config = TrainConfig(data=str(spec), batch_size=1024, hidden=32, edge_weight="none", threads=2).resolved()
    setup = LocalBackend(config)
    g = setup.data.graph
    assert g.num_edges(("gene", "interacts", "gene")) / g.num_nodes("gene") >= 100
    trainer = FoldTrainer.of(setup, setup.splits[0], tmp_path_factory.mktemp("run"))
    for _ in range(4):  # sampled training with whole-graph degrees
        trainer.train_epoch()
        trainer.epoch += 1
    return setup, trainer.model


def full_loss(setup, model, test) -> float:
    """Log-loss of the test genes scored on the full graph (what validation and test do)."""
    out, _ = setup.predictor(setup.splits[0]).predict(model, setup.nodes[test])
    return score_outputs(setup.labels.kind, setup.labels.values[test], out)["loss"]


def sampled_loss(setup, model, batches) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for b in batches.epoch(7):
            out = model(b.blocks, {t: setup.feats[t][n] for t, n in b.input_nodes.items()})
            total += F.cross_entropy(out, setup.targets[b.seeds], reduction="sum").item()
    return total / len(batches.seeds)


@pytest.mark.parametrize("sampler", [NeighborBatches, DeviceBatches])
def test_sampled_and_full_graph_evaluation_agree(dense, sampler):
    setup, model = dense
    test = setup.splits[0].fold.test
    full = full_loss(setup, model, test)
    assert full < 0.5  # a trained model, not chance (log 2 = 0.69)
    batches = sampler(setup.data.graph, setup.nodes[test], [10, 10, 10], 1024, setup.weights, shuffle=False)
    sampled = sampled_loss(setup, model, batches)
    assert abs(sampled - full) <= REL_TOL * full + ABS_TOL, (sampled, full)


def test_block_local_degrees_are_another_operator(dense):
    """The same weights under DGL's block normalisation score differently: the mismatch the
    whole-graph degrees remove."""
    setup, model = dense
    test = setup.splits[0].fold.test
    full = full_loss(setup, model, test)
    batches = NeighborBatches(setup.data.graph, setup.nodes[test], [10, 10, 10], 1024, setup.weights, shuffle=False)
    batches.degrees = None  # block-local degrees, as dgl.nn.GraphConv on a block
    block = sampled_loss(setup, model, batches)
    assert abs(block - full) > REL_TOL * full + ABS_TOL, (block, full)
    assert np.isfinite(block)

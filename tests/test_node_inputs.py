"""What the model gets beside the text features: learnable node embeddings (sparse
updates, checkpointed and resumed) and the residual on a gene's own GO annotations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genen_dgl.config import TrainConfig
from genen_dgl.schema import ANNOTATED
from genen_dgl.errors import InputError
from genen_dgl.local import LocalBackend
from genen_dgl.training.fold import FoldTrainer


def local(spec, **options) -> LocalBackend:
    return LocalBackend(TrainConfig(data=str(spec), hidden=16, folds=2, batch_size=options.pop("batch_size", 4),
                                 **options).resolved())


@pytest.mark.parametrize("sampler", ["device", "neighbor"])
def test_a_step_updates_only_the_batch_rows(sample_spec, tmp_path, sampler):
    data = local(sample_spec, node_embeddings="go,gene", node_embedding_dim=8, sampler=sampler, fanouts=[2, 2, 2])
    trainer = FoldTrainer.of(data, data.splits[0], tmp_path)
    tables = trainer.model.embeddings.tables
    before = {t: e.weight.clone() for t, e in tables.items()}
    assert all(not w.any() for w in before.values())  # zeros: a fresh model computes the text-only model
    step = next(iter(trainer.source.epoch(0)))
    trainer.step_fn(step)
    assert all(not table.trace for table in tables.values())  # the step's rows are not applied again
    trainer.step_fn(step)
    partly = False
    for t, table in tables.items():
        changed = torch.nonzero((table.weight != before[t]).any(1)).view(-1)
        read = step.nodes[t].unique()
        assert len(changed) > 0 and np.isin(changed.numpy(), read.numpy()).all(), t
        partly |= len(read) < table.weight.shape[0]
    assert partly  # the batch read a part of a table (the sample's small GO graph is often all read)


def test_embeddings_are_checkpointed_and_resumed(sample_spec, tmp_path):
    data = local(sample_spec, node_embeddings="go", sampler="device", epochs=2)
    trainer = FoldTrainer.of(data, data.splits[0], tmp_path)
    trainer.fit()  # two epochs: best.pt, last.pt
    table = trainer.model.embeddings.tables["go"].weight
    assert table.any() and "embeddings.go" in trainer.stopping.best_state
    assert trainer.stopping.best_state["embeddings.go"].data_ptr() != table.data_ptr()  # the best epoch's copy
    last = torch.load(tmp_path / "fold0" / "last.pt", weights_only=True)  # plain tensors and containers
    fresh = FoldTrainer.of(data, data.splits[0], tmp_path)
    assert not fresh.model.embeddings.tables["go"].weight.any()
    assert fresh.resume()
    torch.testing.assert_close(fresh.model.embeddings.tables["go"].weight, last["model"]["embeddings.go"])
    for mine, saved in zip(fresh.model.embeddings.tables["go"].optm_state, last["sparse_opt"]["go"].values()):
        torch.testing.assert_close(mine, saved)
    assert last["sparse_opt"]["go"]["step"].any()  # the rows that were read have taken Adam steps
    best = FoldTrainer.of(data, data.splits[0], tmp_path)
    best.load_best()
    torch.testing.assert_close(best.model.embeddings.tables["go"].weight, trainer.stopping.best_state["embeddings.go"])


def test_only_the_gene_table_leaves_go_inputs_zero_padded(sample_spec):
    data = local(sample_spec, node_embeddings="gene", sampler="full")
    model = data.model(data.splits[0])
    x = model.embeddings({t: f for t, f in data.feats.items()}, None)
    width = data.feats["gene"].shape[1]
    assert x["go"].shape[1] == x["gene"].shape[1] == 2 * width
    assert not x["go"][:, width:].any()


def test_the_residual_with_the_gnn_zeroed_is_the_linear_model(sample_spec):
    """With every GNN weight at zero the logits are exactly sum_j w_j over each gene's own GO
    terms: the GO-annotation baseline's linear model, on the full graph and on a sampled
    batch (its seeds' rows)."""
    data = local(sample_spec, annotation_residual=True, sampler="device")
    model = data.model(data.splits[0])
    w = torch.randn_like(model.residual.weight.weight)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.residual.weight.weight.copy_(w)
    g = data.data.graph
    hot = torch.zeros(g.num_nodes("gene"), g.num_nodes("go"))
    genes, terms = g.edges(etype=ANNOTATED)
    hot[genes, terms] = 1
    model.eval()
    full = model([data.block] * model.num_layers, data.feats)
    torch.testing.assert_close(full, hot @ w)
    batch = data.steps(data.splits[0]).sampler.sample(torch.as_tensor(data.nodes[:16]))
    sampled = model(batch.blocks, {t: data.feats[t][n] for t, n in batch.input_nodes.items()}, seeds=batch.seeds)
    torch.testing.assert_close(sampled, (hot @ w)[batch.seeds])
    assert (hot.sum(1) == 0).any() and (hot.sum(1) > 1).any()  # genes with none and with several terms


def test_the_residual_sees_no_held_out_annotations_in_the_novel_regime(sample_spec):
    """Under hide_test_annotations the residual reads the split's own graph: a held-out
    gene's (test or validation) summed term rows are zero, a training gene's are not."""
    data = local(sample_spec, annotation_residual=True, hide_test_annotations=True, sampler="full")
    split = data.splits[0]
    model = data.model(split)
    with torch.no_grad():
        model.residual.weight.weight.fill_(1.0)
    held_out = torch.as_tensor(data.nodes[np.concatenate([split.fold.val, split.fold.test])])
    train = torch.as_tensor(data.nodes[split.fold.train])
    assert not model.residual(held_out).any()
    data.config.hide_test_annotations = False  # the same split without hiding reads every annotation
    full = data.model(split)
    with torch.no_grad():
        full.residual.weight.weight.fill_(1.0)
    assert full.residual(held_out).any() and model.residual(train).any()


def test_refused_where_it_cannot_work(sample_spec):
    with pytest.raises(InputError, match="no go nodes"):
        local(sample_spec, node_embeddings="go", graph="ppi")
    with pytest.raises(InputError, match="no GO annotations"):
        data = local(sample_spec, annotation_residual=True, graph="ppi")
        data.model(data.splits[0])
    with pytest.raises(InputError, match="cuda_graph"):
        TrainConfig(node_embeddings="go", sampler="device", cuda_graph=True).resolved()

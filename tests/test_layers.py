"""Our torch-op layers against dgl.nn (HeteroGraphConv over GraphConv / GATConv) on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genen_dgl.dataloading import to_message_block
from genen_dgl.dgl_compat import dgl
from genen_dgl.nn.gat_conv import HeteroGATConv
from genen_dgl.nn.gcn_conv import HeteroGCNConv, rel_key
from genen_dgl.nn.sparse import Relation, spmm

PPI = ("gene", "interacts", "gene")
IN, OUT, HEADS = 12, 6, 3


def random_heterograph(seed: int):
    """Genes and GO terms, with some nodes of zero in-degree in every relation."""
    g = torch.Generator().manual_seed(seed)
    n_gene, n_go = 30, 20

    def edges(ns, nd, m):
        s, d = torch.randint(0, ns, (m,), generator=g), torch.randint(0, nd - 4, (m,), generator=g)
        return s, d  # the last 4 destinations of each type get no edges

    graph = dgl.heterograph({
        PPI: edges(n_gene, n_gene, 90),
        ("gene", "annotated", "go"): edges(n_gene, n_go, 50),
        ("go", "annotates", "gene"): edges(n_go, n_gene, 50),
        ("go", "is_a", "go"): edges(n_go, n_go, 25),
    }, num_nodes_dict={"gene": n_gene, "go": n_go})
    graph.edges[PPI].data["score"] = torch.rand(graph.num_edges(PPI), generator=g) + 0.1
    feats = {t: torch.randn(graph.num_nodes(t), IN, generator=g) for t in graph.ntypes}
    return graph, feats


def with_self_loops(graph):
    for e in graph.canonical_etypes:
        if e[0] == e[2]:
            graph = dgl.add_self_loop(graph, etype=e, fill_data=1.0)
    return graph


def dgl_gcn(graph):
    return dgl.nn.HeteroGraphConv({
        e[1]: dgl.nn.GraphConv(IN, OUT, norm="both", allow_zero_in_degree=True) for e in graph.canonical_etypes
    }, aggregate="sum")


def dgl_gat(graph):
    return dgl.nn.HeteroGraphConv({
        e[1]: dgl.nn.GATConv(IN, OUT, HEADS, allow_zero_in_degree=True) for e in graph.canonical_etypes
    }, aggregate="sum")


def copy_gcn(ref, ours):
    with torch.no_grad():
        for e in ours.etypes:
            ours.linear[rel_key(e)].weight.copy_(ref.mods[e[1]].weight.t())
            ours.linear[rel_key(e)].bias.copy_(torch.randn(OUT))
            ref.mods[e[1]].bias.copy_(ours.linear[rel_key(e)].bias)


def copy_gat(ref, ours):
    with torch.no_grad():
        for e in ours.etypes:
            m, k = ref.mods[e[1]], rel_key(e)
            ours.fc[k].weight.copy_(m.fc.weight)
            ours.attn_src[k].copy_(m.attn_l)
            ours.attn_dst[k].copy_(m.attn_r)
            m.bias.copy_(torch.randn(HEADS * OUT))
            ours.bias[k].copy_(m.bias)


def assert_same(ref_out, our_out, ref_params, our_params, inputs):
    """Outputs, input gradients and parameter gradients agree to 1e-5."""
    probe = {t: torch.randn_like(v) for t, v in ref_out.items()}
    loss_ref = sum((ref_out[t] * probe[t]).sum() for t in probe)
    loss_our = sum((our_out[t].reshape(ref_out[t].shape) * probe[t]).sum() for t in probe)
    for t in ref_out:
        torch.testing.assert_close(our_out[t].reshape(ref_out[t].shape), ref_out[t], atol=1e-5, rtol=1e-5)
    g_ref = torch.autograd.grad(loss_ref, ref_params + inputs[0])
    g_our = torch.autograd.grad(loss_our, our_params + inputs[1])
    for a, b in zip(g_ref, g_our):
        if b.dim() == 2 and b.shape != a.shape:  # GraphConv stores its weight as (in, out)
            b = b.t()
        torch.testing.assert_close(b.reshape(a.shape), a, atol=1e-5, rtol=1e-5)


def gcn_params(ref, ours):
    ref_p = [p for e in ours.etypes for p in (ref.mods[e[1]].weight, ref.mods[e[1]].bias)]
    our_p = [p for e in ours.etypes for p in (ours.linear[rel_key(e)].weight, ours.linear[rel_key(e)].bias)]
    return ref_p, our_p


@pytest.mark.parametrize("weighted", [False, True])
def test_gcn_full_graph_matches_dgl(weighted):
    graph, feats = random_heterograph(0)
    ref, ours = dgl_gcn(graph), HeteroGCNConv(IN, OUT, graph.canonical_etypes)
    copy_gcn(ref, ours)
    x_ref = {t: v.clone().requires_grad_() for t, v in feats.items()}
    x_our = {t: v.clone().requires_grad_() for t, v in feats.items()}
    looped = with_self_loops(graph)
    kwargs = {"interacts": {"edge_weight": looped.edges[PPI].data["score"]}} if weighted else {}
    out_ref = ref(looped, x_ref, mod_kwargs=kwargs)
    weights = {PPI: graph.edges[PPI].data["score"]} if weighted else {}
    block = to_message_block(graph, weights, self_loops=True)
    out_our = ours(block, x_our, {e: r.weight for e, r in block.relations.items() if r.weight is not None})
    ref_p, our_p = gcn_params(ref, ours)
    assert_same(out_ref, out_our, ref_p, our_p, (list(x_ref.values()), list(x_our.values())))


def test_gat_full_graph_matches_dgl():
    graph, feats = random_heterograph(1)
    ref, ours = dgl_gat(graph), HeteroGATConv(IN, OUT, HEADS, graph.canonical_etypes)
    copy_gat(ref, ours)
    x_ref = {t: v.clone().requires_grad_() for t, v in feats.items()}
    x_our = {t: v.clone().requires_grad_() for t, v in feats.items()}
    out_ref = ref(with_self_loops(graph), x_ref)
    out_our = ours(to_message_block(graph, {}, self_loops=True), x_our)
    ref_p = [p for e in ours.etypes for p in (ref.mods[e[1]].fc.weight, ref.mods[e[1]].attn_l, ref.mods[e[1]].bias)]
    k = [rel_key(e) for e in ours.etypes]
    our_p = [p for key in k for p in (ours.fc[key].weight, ours.attn_src[key], ours.bias[key])]
    assert_same(out_ref, out_our, ref_p, our_p, (list(x_ref.values()), list(x_our.values())))


@pytest.mark.parametrize("kind", ["gcn", "gat"])
def test_sampled_blocks_match_dgl(kind):
    """On a sampled block (parent edge ids, src/dst split) both agree too."""
    graph, feats = random_heterograph(2)
    looped = with_self_loops(graph)
    dgl.seed(0)
    _, _, (block,) = dgl.dataloading.NeighborSampler([4]).sample(looped, {"gene": torch.arange(10), "go": torch.arange(5)})
    x = {t: feats[t][block.srcnodes[t].data[dgl.NID]] for t in block.srctypes}
    x_ref = {t: v.clone().requires_grad_() for t, v in x.items()}
    x_our = {t: v.clone().requires_grad_() for t, v in x.items()}
    mblock = to_message_block(block, {PPI: looped.edges[PPI].data["score"]}, self_loops=False)
    if kind == "gcn":
        ref, ours = dgl_gcn(graph), HeteroGCNConv(IN, OUT, graph.canonical_etypes)
        copy_gcn(ref, ours)
        w = looped.edges[PPI].data["score"][block.edges[PPI].data[dgl.EID]]
        out_ref = ref(block, x_ref, mod_kwargs={"interacts": {"edge_weight": w}})
        out_our = ours(mblock, x_our, {PPI: mblock.relations[PPI].weight})
        ref_p, our_p = gcn_params(ref, ours)
    else:
        ref, ours = dgl_gat(graph), HeteroGATConv(IN, OUT, HEADS, graph.canonical_etypes)
        copy_gat(ref, ours)
        out_ref, out_our = ref(block, x_ref), ours(mblock, x_our)
        ref_p = [ref.mods[e[1]].fc.weight for e in ours.etypes]
        our_p = [ours.fc[rel_key(e)].weight for e in ours.etypes]
    assert_same(out_ref, out_our, ref_p, our_p, (list(x_ref.values()), list(x_our.values())))


def test_spmm_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(3)
    dst = torch.sort(torch.randint(0, 7, (30,), generator=g)).values
    src = torch.randint(0, 9, (30,), generator=g)
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.bincount(dst, minlength=7), 0)])
    rel = Relation.from_csc(9, 7, indptr, src, torch.arange(30))
    values = torch.rand(30, dtype=torch.float64, generator=g, requires_grad=True)
    x = torch.rand(9, 4, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, h: spmm(rel, v, h), (values, x))


def test_self_loops_add_one_edge_per_destination():
    graph, _ = random_heterograph(4)
    plain = to_message_block(graph, {}, self_loops=False).relations[PPI]
    looped = to_message_block(graph, {}, self_loops=True).relations[PPI]
    assert looped.num_edges == plain.num_edges + graph.num_nodes("gene")
    assert (looped.in_degrees() == plain.in_degrees() + 1).all()
    loops = looped.eid == -1
    assert (looped.col[loops] == looped.row[loops]).all()


@pytest.mark.parametrize("model", ["gcn", "gat"])
def test_a_gene_without_edges_sees_its_own_features(sample_spec, model):
    """Eq. 1's A + I: in the go variant genes have no gene-gene relation, so they get a
    self-relation; a gene with no annotation (no edge at all) is still predicted from its
    own features, not a constant."""
    from genen_dgl.config import TrainConfig
    from genen_dgl.nn.sparse import SELF
    from genen_dgl.local import FullGraphPredictor, LocalData

    setup = LocalData(TrainConfig(data=str(sample_spec), graph="go", model=model, hidden=16).resolved())
    g = setup.data.graph
    into_genes = [e for e in g.canonical_etypes if e[2] == "gene"]
    degree = sum(g.in_degrees(etype=e) for e in into_genes)
    isolated = torch.nonzero(degree == 0).flatten()
    assert len(isolated) >= 1 and ("gene", "gene") not in {(e[0], e[2]) for e in g.canonical_etypes}
    loops = setup.block.relations[("gene", SELF, "gene")]
    assert loops.num_edges == g.num_nodes("gene") and (loops.eid == -1).all() and torch.equal(loops.col, loops.row)
    assert ("go", SELF, "go") not in setup.block.relations  # GO terms have is_a loops already
    torch.manual_seed(0)
    net = setup.model()
    genes = np.arange(g.num_nodes("gene"))

    def outputs(x):
        return FullGraphPredictor(setup.block, x, setup.labels.kind).predict(net, genes)[0]

    moved = dict(setup.feats)
    moved["gene"] = setup.feats["gene"].clone()
    moved["gene"][isolated] = torch.randn(len(isolated), moved["gene"].shape[1])
    before, after = (outputs(x)[isolated.numpy()] for x in (setup.feats, moved))
    assert np.abs(before - after).max() > 1e-3
    others = np.setdiff1d(np.arange(g.num_nodes("gene")), isolated.numpy())[:50]
    assert np.allclose(outputs(setup.feats)[others], outputs(moved)[others])

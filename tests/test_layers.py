"""Our torch-op layers against dgl.nn (HeteroGraphConv over GraphConv / GATConv) on CPU,
and on a GPU against themselves on the CPU."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from genen_dgl.sampling.blocks import to_message_block
from genen_dgl.dgl_compat import dgl
from genen_dgl.nn.gat_conv import HeteroGATConv
from genen_dgl.nn.gcn_conv import HeteroGCNConv
from genen_dgl.nn.sparse import MessageBlock, Pattern, spmm

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
        for r, e in enumerate(ours.etypes):
            ours.weight[r].copy_(ref.mods[e[1]].weight)
            ours.bias[r].copy_(torch.randn(OUT))
            ref.mods[e[1]].bias.copy_(ours.bias[r])


def copy_gat(ref, ours):
    with torch.no_grad():
        for r, e in enumerate(ours.etypes):
            m = ref.mods[e[1]]
            ours.weight[r].copy_(m.fc.weight.t())
            ours.attn_src[r].copy_(m.attn_l[0])
            ours.attn_dst[r].copy_(m.attn_r[0])
            m.bias.copy_(torch.randn(HEADS * OUT))
            ours.bias[r].copy_(m.bias)


def unstack(block: MessageBlock, out: torch.Tensor) -> dict[str, torch.Tensor]:
    """A layer's stacked destinations per node type."""
    return {t: out[block.dst_off[t]: block.dst_off[t] + block.num_dst[t]] for t in block.ntypes}


def stack(block: MessageBlock, x: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([x[t] for t in block.ntypes])


def assert_same(ref_out, our_out, ref_params, our_params, inputs):
    """Outputs, input gradients and parameter gradients agree to 1e-5 (``our_params``: the
    slices of our stacked parameters that correspond to ``ref_params``)."""
    probe = {t: torch.randn_like(v) for t, v in ref_out.items()}
    loss_ref = sum((ref_out[t] * probe[t]).sum() for t in probe)
    loss_our = sum((our_out[t].reshape(ref_out[t].shape) * probe[t]).sum() for t in probe)
    for t in ref_out:
        torch.testing.assert_close(our_out[t].reshape(ref_out[t].shape), ref_out[t], atol=1e-5, rtol=1e-5)
    stacked = list({id(p): p for p, _ in our_params}.values())
    g_ref = torch.autograd.grad(loss_ref, ref_params + inputs[0])
    g_our = torch.autograd.grad(loss_our, stacked + inputs[1])
    by_id = {id(p): g for p, g in zip(stacked, g_our)}
    ours = [pick(by_id[id(p)]) for p, pick in our_params] + list(g_our[len(stacked):])
    for a, b in zip(g_ref, ours):
        torch.testing.assert_close(b.reshape(a.shape), a, atol=1e-5, rtol=1e-5)


def gcn_params(ref, ours):
    ref_p = [p for e in ours.etypes for p in (ref.mods[e[1]].weight, ref.mods[e[1]].bias)]
    our_p = [(p, lambda g, r=r, i=i: g[r]) for r in range(len(ours.etypes))
             for i, p in enumerate((ours.weight, ours.bias))]
    return ref_p, our_p


@pytest.mark.parametrize("order", ["aggregate", "project"])
@pytest.mark.parametrize("weighted", [False, True])
def test_gcn_full_graph_matches_dgl(weighted, order):
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
    values = block.norm * block.weight if weighted else block.norm
    out_our = unstack(block, ours(block, stack(block, x_our), values, order))
    ref_p, our_p = gcn_params(ref, ours)
    assert_same(out_ref, out_our, ref_p, our_p, (list(x_ref.values()), list(x_our.values())))


@pytest.mark.parametrize("order", ["aggregate", "project"])
def test_gat_full_graph_matches_dgl(order):
    graph, feats = random_heterograph(1)
    ref, ours = dgl_gat(graph), HeteroGATConv(IN, OUT, HEADS, graph.canonical_etypes)
    copy_gat(ref, ours)
    x_ref = {t: v.clone().requires_grad_() for t, v in feats.items()}
    x_our = {t: v.clone().requires_grad_() for t, v in feats.items()}
    out_ref = ref(with_self_loops(graph), x_ref)
    block = to_message_block(graph, {}, self_loops=True)
    out_our = unstack(block, ours(block, stack(block, x_our), order))
    ref_p = [p for e in ours.etypes for p in (ref.mods[e[1]].fc.weight, ref.mods[e[1]].attn_l, ref.mods[e[1]].bias)]
    our_p = [(p, pick) for r in range(len(ours.etypes)) for p, pick in (
        (ours.weight, lambda g, r=r: g[r].t()), (ours.attn_src, lambda g, r=r: g[r]), (ours.bias, lambda g, r=r: g[r]))]
    assert_same(out_ref, out_our, ref_p, our_p, (list(x_ref.values()), list(x_our.values())))


@pytest.mark.parametrize("kind", ["gcn-aggregate", "gcn-project", "gat-aggregate", "gat-project"])
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
    if kind.startswith("gcn"):
        ref, ours = dgl_gcn(graph), HeteroGCNConv(IN, OUT, graph.canonical_etypes)
        copy_gcn(ref, ours)
        w = looped.edges[PPI].data["score"][block.edges[PPI].data[dgl.EID]]
        out_ref = ref(block, x_ref, mod_kwargs={"interacts": {"edge_weight": w}})
        out_our = unstack(mblock, ours(mblock, stack(mblock, x_our), mblock.norm * mblock.weight, kind[4:]))
        ref_p, our_p = gcn_params(ref, ours)
    else:
        ref, ours = dgl_gat(graph), HeteroGATConv(IN, OUT, HEADS, graph.canonical_etypes)
        copy_gat(ref, ours)
        out_ref, out_our = ref(block, x_ref), unstack(mblock, ours(mblock, stack(mblock, x_our), kind[4:]))
        ref_p = [ref.mods[e[1]].fc.weight for e in ours.etypes]
        our_p = [(ours.weight, lambda g, r=r: g[r].t()) for r in range(len(ours.etypes))]
    assert_same(out_ref, out_our, ref_p, our_p, (list(x_ref.values()), list(x_our.values())))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@pytest.mark.parametrize("kind", ["gcn-aggregate", "gcn-project", "gat-aggregate", "gat-project"])
def test_layers_on_cuda_match_the_cpu(kind):
    """cuSPARSE's products (forward, transposed for dX, SDDMM for the gradient of learned
    edge values) give what the CPU's give: outputs, and gradients of inputs, edge values
    and parameters."""
    graph, feats = random_heterograph(5)
    block = to_message_block(graph, {PPI: graph.edges[PPI].data["score"]}, self_loops=True)
    gcn, order = kind.startswith("gcn"), kind[4:]
    layer = HeteroGCNConv(IN, OUT, graph.canonical_etypes) if gcn else HeteroGATConv(IN, OUT, HEADS, graph.canonical_etypes)
    probe = torch.randn(sum(block.num_dst.values()), OUT * (1 if gcn else HEADS), generator=torch.Generator().manual_seed(6))
    results = []
    for device in ("cpu", "cuda"):
        net, b = copy.deepcopy(layer).to(device), block.to(device)
        x = stack(b, {t: v.to(device) for t, v in feats.items()}).requires_grad_()
        values = (b.norm * b.weight).requires_grad_()
        out = net(b, x, values, order) if gcn else net(b, x, order)
        inputs = [x, values] if gcn else [x]
        grads = torch.autograd.grad((out.reshape(probe.shape) * probe.to(device)).sum(), [*net.parameters(), *inputs])
        results.append([out, *grads])
    for on_cpu, on_gpu in zip(*results):
        torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-4, rtol=1e-4)


def test_spmm_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(3)
    dst = torch.sort(torch.randint(0, 7, (30,), generator=g)).values
    src = torch.randint(0, 9, (30,), generator=g)
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.bincount(dst, minlength=7), 0)])
    pattern = Pattern(indptr, src, 7, 9)
    values = torch.rand(30, dtype=torch.float64, generator=g, requires_grad=True)
    x = torch.rand(9, 4, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, h: spmm(pattern, v, h), (values, x))


def test_self_loops_add_one_edge_per_destination():
    graph, _ = random_heterograph(4)
    n = graph.num_nodes("gene")
    plain, looped = (to_message_block(graph.edge_type_subgraph([PPI]), {}, self_loops=loops) for loops in (False, True))
    assert plain.etypes == looped.etypes == (PPI,)
    assert looped.num_entries == plain.num_entries + n
    assert torch.equal(looped.rowptr.diff(), plain.rowptr.diff() + 1)
    loops = looped.eid == -1
    assert torch.equal(looped.col[loops], torch.arange(n)) and torch.equal(looped.row[loops], torch.arange(n))
    assert torch.equal(torch.nonzero(loops).flatten(), looped.rowptr[1:] - 1)  # each after its edges
    assert torch.equal(looped.col[~loops], plain.col) and torch.equal(looped.eid[~loops], plain.eid)


@pytest.mark.parametrize("model", ["gcn", "gat"])
def test_a_gene_without_edges_sees_its_own_features(sample_spec, model):
    """Eq. 1's A + I: in the go variant genes have no gene-gene relation, so they get a
    self-relation; a gene with no annotation (no edge at all) is still predicted from its
    own features, not a constant."""
    from genen_dgl.config import TrainConfig
    from genen_dgl.nn.sparse import SELF
    from genen_dgl.local import FullGraphPredictor, LocalBackend

    setup = LocalBackend(TrainConfig(data=str(sample_spec), graph="go", model=model, hidden=16).resolved())
    g = setup.data.graph
    into_genes = [e for e in g.canonical_etypes if e[2] == "gene"]
    degree = sum(g.in_degrees(etype=e) for e in into_genes)
    isolated = torch.nonzero(degree == 0).flatten()
    assert len(isolated) >= 1 and ("gene", "gene") not in {(e[0], e[2]) for e in g.canonical_etypes}
    block = setup.block
    r = block.etypes.index(("gene", SELF, "gene"))
    loops = block.rel == r
    assert int(loops.sum()) == g.num_nodes("gene") and (block.eid[loops] == -1).all()
    assert torch.equal(block.col[loops] - block.src_off["gene"], block.row[loops] - block.row_off[r])
    assert ("go", SELF, "go") not in block.etypes  # GO terms have is_a loops already
    torch.manual_seed(0)
    net = setup.model(setup.splits[0])
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

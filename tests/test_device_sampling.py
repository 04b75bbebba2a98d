"""The torch-op neighbour sampler (genen_dgl.sampling.device) against DGL's, on the CPU."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from genen_dgl.config import TrainConfig
from genen_dgl.sampling.blocks import graph_degrees, parse_fanouts, to_message_block
from genen_dgl.sampling.device import DeviceBatches, DeviceGraph, floyd_sample
from genen_dgl.dgl_compat import dgl
from genen_dgl.local import LocalBackend
from genen_dgl.nn.model import GenenGNN
from genen_dgl.nn.sparse import Adjacency, MessageBlock
from genen_dgl.training.fold import FoldTrainer

PPI = ("gene", "interacts", "gene")
FANOUT = 4


def simple_heterograph(seed: int = 0):
    """Genes and GO terms without multi-edges; in-degrees from 0 to well above FANOUT."""
    rng = np.random.default_rng(seed)
    n = {"gene": 40, "go": 25}

    def edges(src, dst, m):
        pairs = np.unique(np.stack([rng.integers(0, n[src], m), rng.integers(0, n[dst] - 3, m)], 1), axis=0)
        pairs = pairs[rng.permutation(len(pairs))]  # edge ids not sorted by destination
        return torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])  # last 3 dst: no in-edges

    graph = dgl.heterograph({
        PPI: edges("gene", "gene", 260),
        ("gene", "annotated", "go"): edges("gene", "go", 90),
        ("go", "annotates", "gene"): edges("go", "gene", 70),
        ("go", "is_a", "go"): edges("go", "go", 30),
    }, num_nodes_dict=n)
    graph.edges[PPI].data["score"] = torch.rand(graph.num_edges(PPI), generator=torch.Generator().manual_seed(seed)) + .1
    return graph


def weights_of(graph):
    return {PPI: graph.edges[PPI].data["score"]}


def sample(graph, seeds, fanouts, seed=0):
    dg = DeviceGraph(graph, "cpu", weights_of(graph))
    gen = torch.Generator().manual_seed(seed)
    return dg.sample_blocks({"gene": torch.as_tensor(seeds)}, fanouts, generator=gen, return_edges=True)


def by_relation(block, values=None):
    """The block's real entries per relation as a dense ``(num_dst[d] x num_src[s])`` matrix
    (rows and columns in the block's own slots)."""
    dense = block.dense(values)
    out = {}
    for r, (s, _, d) in enumerate(block.etypes):
        rows, cols = block.row_off[r], block.src_off[s]
        out[(s, _, d)] = dense[rows: rows + block.num_dst[d], cols: cols + block.num_src[s]]
    return out


def in_parent_ids(graph, block, dst_ids, src_ids, values=None):
    """:func:`by_relation` re-indexed by parent node ids (``dst_ids`` / ``src_ids``: per type
    the parent id of each slot, -1 on padding): ``{etype: (N_dst x N_src)}``."""
    out = {}
    for e, m in by_relation(block, values).items():
        s, _, d = e
        full = torch.zeros(graph.num_nodes(d), graph.num_nodes(s), dtype=m.dtype)
        rd, rs = dst_ids[d] >= 0, src_ids[s] >= 0
        assert m[~rd].abs().sum() == 0 and m[:, ~rs].abs().sum() == 0  # padding holds nothing
        full[dst_ids[d][rd][:, None], src_ids[s][rs][None, :]] = m[rd][:, rs]
        out[e] = full
    return out


def test_sampled_edges_are_real_distinct_and_capped():
    """The seeds' layer, per seed and relation: at most the fanout, every sampled edge a
    real in-edge with its own id, no neighbour twice, all of them when the degree allows;
    one self-loop per real destination of a same-type relation."""
    graph = simple_heterograph()
    seeds = torch.arange(0, 40, 3)
    for rep in range(5):
        _, blocks, layers = sample(graph, seeds, [FANOUT, FANOUT, FANOUT], seed=rep)
        for e, (src, dst, eid) in layers[-1].edges.items():
            s_ref, d_ref = graph.find_edges(eid, etype=e)
            assert torch.equal(s_ref, src) and torch.equal(d_ref, dst)
            if e[2] != "gene":
                assert len(eid) == 0
                continue
            for d in seeds.tolist():
                mine = eid[dst == d]
                assert len(mine) <= FANOUT
                assert len(set(mine.tolist())) == len(mine) == len(set(src[dst == d].tolist()))
                all_in = graph.in_edges(d, form="eid", etype=e)
                if len(all_in) <= FANOUT:
                    assert sorted(mine.tolist()) == sorted(all_in.tolist())
                else:
                    assert len(mine) == FANOUT
        block = blocks[-1]
        for r, e in enumerate(block.etypes):
            loops = (block.rel == r) & (block.eid < 0) & block.mask
            if e[0] == e[2]:  # a loop per seed (the only destinations, all genes), to its own source column
                n = len(seeds) if e[2] == "gene" else 0
                assert torch.equal(block.row[loops] - block.row_off[r], torch.arange(n))
                own = torch.arange(sum(block.num_src.values()))[block.dst_columns(e[2])]
                assert torch.equal(block.col[loops], own)
            else:
                assert not loops.any()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU"))])
def test_device_batches_on(device):
    """Sampled on ``device``: batches live there, and the edges are the graph's, capped."""
    graph = simple_heterograph(4)
    batches = DeviceBatches(graph, np.arange(0, 40, 2), [FANOUT, FANOUT], 8, weights_of(graph), device=device)
    ppi = DeviceGraph.of(graph, device, weights_of(graph)).etypes.index(PPI)
    for batch in batches.epoch(0):
        assert batch.seeds.device.type == device and batch.input_nodes["go"].device.type == device
        for block in batch.blocks:
            assert block.col.device.type == device
            real = block.mask & (block.eid >= 0)
            per_row = torch.zeros(block.num_rows, dtype=torch.int64, device=device).index_add_(0, block.row, real.long())
            assert (per_row <= FANOUT).all()
            is_ppi = real & (block.rel == ppi)
            assert torch.equal(block.weight[is_ppi], graph.edges[PPI].data["score"][block.eid[is_ppi].cpu()].to(device))
            assert (block.norm[~block.mask] == 0).all()
            lo = torch.tensor([block.src_off[e[0]] for e in block.etypes], device=device)[block.rel]
            hi = lo + torch.tensor([block.num_src[e[0]] for e in block.etypes], device=device)[block.rel]
            assert ((block.col >= lo) & (block.col < hi)).all()  # padding too reads a source of its relation's type
        net = GenenGNN("gcn", 8, 8, 2, 2, graph.canonical_etypes, dropout=0.0).to(device)
        x = {t: torch.ones(graph.num_nodes(t), 8, device=device)[n] for t, n in batch.input_nodes.items()}
        assert net(batch.blocks, x).shape == (len(batch.seeds), 2)


def test_every_layer_against_dgl_sampler():
    """Per layer and relation, as many edges per destination as DGL's sampler takes
    (min(degree, fanout)); every edge real; no duplicates; a layer's sources are its
    destinations first, then the new nodes sorted by id (then padding)."""
    graph = simple_heterograph(1)
    seeds = torch.arange(0, 40, 2)
    fanouts = [3, FANOUT, 5]
    input_nodes, blocks, layers = sample(graph, seeds, fanouts, seed=3)
    dst = {"gene": seeds, "go": torch.empty(0, dtype=torch.int64)}
    slots = dict(dst)  # the destination slots (-1: padding)
    for i in reversed(range(len(blocks))):
        block, layer = blocks[i], layers[i]
        frontier = dgl.sampling.sample_neighbors(graph, {t: n for t, n in dst.items() if n.numel()}, fanouts[i])
        for e, (src, d, eid) in layer.edges.items():
            s_ref, d_ref = graph.find_edges(eid, etype=e)
            assert torch.equal(s_ref, src) and torch.equal(d_ref, d)
            ours = torch.bincount(d, minlength=graph.num_nodes(e[2]))
            theirs = torch.bincount(frontier.edges(etype=e)[1], minlength=graph.num_nodes(e[2]))
            assert torch.equal(ours, theirs), e
            assert len(set(zip(src.tolist(), d.tolist()))) == len(src)  # no duplicate neighbours
        for t in graph.ntypes:
            ids = layer.sources[t]
            real = ids[ids >= 0]
            srcs = torch.cat([layer.edges[e][0] for e in graph.canonical_etypes if e[0] == t])
            new = sorted(set(srcs.tolist()) - set(dst[t].tolist()))
            own = ids[torch.arange(sum(block.num_src.values()))[block.dst_columns(t)] - block.src_off[t]]
            if block.num_src[t] == graph.num_nodes(t) and torch.equal(ids, torch.arange(graph.num_nodes(t))):
                assert set(srcs.tolist()) | set(dst[t].tolist()) <= set(ids.tolist())  # a whole type
                assert torch.equal(own[slots[t] >= 0], slots[t][slots[t] >= 0])  # each destination at its id
            else:
                assert torch.equal(real, torch.cat([dst[t], torch.as_tensor(new, dtype=torch.int64)]))
                assert block.dst_src is not None or torch.equal(ids[: block.num_dst[t]], slots[t])
                assert torch.equal(own[slots[t] >= 0], slots[t][slots[t] >= 0])
            dst[t], slots[t] = real, ids
    for t in graph.ntypes:
        m = layers[0].sources[t]
        assert torch.equal(input_nodes[t][m >= 0], dst[t]) and (input_nodes[t][m < 0] == 0).all()


def test_uniform_marginals_chi_square():
    """A node with 20 neighbours, fanout 5: each neighbour is drawn equally often."""
    draws = 4000
    off, valid = floyd_sample(torch.full((draws,), 20), 5, generator=torch.Generator().manual_seed(0))
    assert valid.all()
    freq = torch.bincount(off.flatten(), minlength=20).numpy()
    assert freq.sum() == 5 * draws
    assert chisquare(freq).pvalue > 0.001
    # DGL's sampler on the same star, for reference: equally uniform
    star = dgl.graph((torch.arange(1, 21), torch.zeros(20, dtype=torch.int64)))
    dgl.seed(0)
    ref = Counter()
    for _ in range(400):
        ref.update(dgl.sampling.sample_neighbors(star, torch.tensor([0]), 5).edges()[0].tolist())
    assert chisquare(np.array([ref[i] for i in range(1, 21)])).pvalue > 0.001


@pytest.mark.parametrize("deg, k", [(6, 2), (7, 4), (9, 8), (12, 10)])
def test_uniform_subsets_chi_square(deg, k):
    """Every k-subset of the neighbours equally likely (Floyd's algorithm, its collisions
    resolved by pointer doubling; at fanout 10 chains are up to 10 long), not just the marginals."""
    n = 300 * len(list(itertools.combinations(range(deg), k)))
    picks, _ = floyd_sample(torch.full((n,), deg), k, generator=torch.Generator().manual_seed(deg))
    picks = picks.sort(1).values
    assert (picks[:, :-1] < picks[:, 1:]).all()
    freq = Counter(map(tuple, picks.tolist()))
    assert set(freq) == set(itertools.combinations(range(deg), k))
    assert chisquare(np.array(list(freq.values()))).pvalue > 0.001


def test_mixed_degrees_caps_and_take_all():
    """Rows with their own caps: min(degree, cap) offsets, all of them below the cap."""
    deg, cap = torch.tensor([1, 2, 0, 7, 9]), torch.tensor([3, 3, 3, 3, 0])
    off, valid = floyd_sample(deg, cap, 3, torch.Generator().manual_seed(0))
    assert valid.sum(1).tolist() == [1, 2, 0, 3, 0]
    assert off[0, :1].tolist() == [0] and sorted(off[1, :2].tolist()) == [0, 1] and set(off[3].tolist()) <= set(range(7))
    graph = simple_heterograph(5)  # fanout -1: every in-edge
    _, _, layers = sample(graph, torch.arange(40), [-1])
    for e, (src, d, eid) in layers[0].edges.items():
        if e[2] == "gene":
            assert sorted(eid.tolist()) == list(range(graph.num_edges(e)))


def frontier_block(graph, block_edges, dst):
    """DGL's block for these sampled edges, as its sampler makes it: ``to_block`` of the
    frontier (``dst`` first among the sources), parent edge ids in EID."""
    frontier = dgl.heterograph({e: (s, d) for e, (s, d, _) in block_edges.items()},
                               num_nodes_dict={t: graph.num_nodes(t) for t in graph.ntypes})
    ref = dgl.to_block(frontier, dst)
    ref.edata[dgl.EID] = {e: eid[ref.edges[e].data[dgl.EID]] for e, (_, _, eid) in block_edges.items()}
    return ref


def dgl_chain(graph, seeds, layers):
    """A DGL block list with our sampled edges and DGL's node order throughout (each
    block's destinations are the next block's sources, in DGL's order)."""
    out, dst = [], {"gene": seeds}
    for layer in reversed(layers):
        ref = frontier_block(graph, layer.edges, dst)
        out.insert(0, ref)
        dst = {t: ref.srcnodes[t].data[dgl.NID] for t in ref.srctypes}
    return out


@pytest.mark.parametrize("model", ["gcn", "gat"])
def test_structure_equals_to_message_block(model):
    """On the same sampled edges, the blocks hold what to_message_block makes of DGL's
    (compared per relation in parent ids: coefficients, weights, edge ids; the padding
    holds nothing), and the model's outputs and gradients agree."""
    graph = simple_heterograph(2)
    seeds = torch.tensor([5, 1, 33, 17, 8, 20, 2])
    weights = weights_of(graph)
    degrees = graph_degrees(graph)
    input_nodes, ours, layers = sample(graph, seeds, [FANOUT, 3], seed=7)
    chain = dgl_chain(graph, seeds, layers)
    for block in ours:  # GO is whole in the first layer, with padded destinations: they too read their type
        for t in block.ntypes:
            cols = torch.arange(sum(block.num_src.values()))[block.dst_columns(t)]
            assert ((cols >= block.src_off[t]) & (cols < block.src_off[t] + block.num_src[t])).all(), t
    our_dst = {"gene": seeds, "go": torch.empty(0, dtype=torch.int64)}  # the destination slots' ids
    for i in reversed(range(len(ours))):
        ob, rb, layer = ours[i], chain[i], layers[i]
        tb = to_message_block(rb, weights, degrees=degrees)
        their_dst = {t: rb.dstnodes[t].data[dgl.NID] for t in rb.dsttypes}
        their_src = {t: rb.srcnodes[t].data[dgl.NID] for t in rb.srctypes}
        for values in ("norm", "weight", "eid"):
            o = getattr(ob, values).to(torch.float32) + (1 if values == "eid" else 0)
            t = getattr(tb, values).to(torch.float32) + (1 if values == "eid" else 0)
            mine = in_parent_ids(graph, ob, our_dst, layer.sources, o)
            theirs = in_parent_ids(graph, tb, their_dst, their_src, t)
            for e in mine:
                torch.testing.assert_close(mine[e], theirs[e], msg=f"{values} {e}")
        our_dst = layer.sources
    feat = {t: torch.randn(graph.num_nodes(t), 8, generator=torch.Generator().manual_seed(3)) for t in graph.ntypes}
    torch.manual_seed(0)
    net = GenenGNN(model, 8, 8, 3, 2, graph.canonical_etypes, heads=2, dropout=0.0,
                   learned_weights={PPI: graph.num_edges(PPI)} if model == "gcn" else None)
    x_ours = {t: feat[t][input_nodes[t]] for t in graph.ntypes}
    x_theirs = {t: feat[t][chain[0].srcnodes[t].data[dgl.NID]] for t in graph.ntypes}
    out_o, out_t = net(ours, x_ours), net([to_message_block(b, weights, degrees=degrees) for b in chain], x_theirs)
    torch.testing.assert_close(out_o, out_t, atol=1e-5, rtol=1e-5)
    grads = [torch.autograd.grad(out.square().sum(), list(net.parameters()), allow_unused=True) for out in (out_o, out_t)]
    for a, b in zip(*grads):
        if a is not None or b is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_build_matches_a_direct_construction():
    """``MessageBlock.build`` (DGL's blocks and whole graphs go through it) against the
    plain reading, on a one-relation block: loops appended after each destination's edges,
    block-local degrees, weights by parent edge id."""
    rng = torch.Generator().manual_seed(0)
    counts = torch.tensor([3, 0, 2, 5, 1])
    col = torch.randint(0, 7, (int(counts.sum()),), generator=rng)
    eid = torch.randperm(20, generator=rng)[: col.numel()]
    w = torch.rand(20, generator=rng)
    rel = ("gene", "interacts", "gene")
    for loops in (False, True):
        row, c, e = torch.repeat_interleave(torch.arange(5), counts), col, eid
        if loops:
            row, c = torch.cat([row, torch.arange(5)]), torch.cat([c, torch.arange(5)])
            e = torch.cat([e, torch.full((5,), -1)])
            by_dst = torch.argsort(row, stable=True)
            row, c, e = row[by_dst], c[by_dst], e[by_dst]
        src_tilde = torch.bincount(c, minlength=7).float()
        dst_tilde = torch.bincount(row, minlength=5).float()
        expected = {"rowptr": torch.cat([torch.zeros(1, dtype=torch.int64), torch.bincount(row, minlength=5).cumsum(0)]),
                    "col": c, "eid": e, "row": row, "weight": torch.where(e >= 0, w[e.clamp(min=0)], torch.ones(len(e))),
                    "norm": (src_tilde[c] * dst_tilde[row]).rsqrt()}
        block = MessageBlock.build({rel: Adjacency(counts, col, eid, w[eid])}, {"gene": 7}, {"gene": 5}, loops)
        for f, want in expected.items():
            torch.testing.assert_close(getattr(block, f), want, msg=f"{f} loops={loops}")


def test_batches_interface_and_reproducibility():
    graph = simple_heterograph(3)
    fanouts = parse_fanouts([3, 3], {"interacts": [2, 5]}, graph)
    seeds = np.arange(0, 40, 1)
    batches = DeviceBatches(graph, seeds, fanouts, 16, weights_of(graph))
    ppi = batches.graph.etypes.index(PPI)
    assert len(batches) == 3
    a, b = list(batches.epoch(4)), list(batches.epoch(4))
    assert [len(x.seeds) for x in a] == [16, 16, 8]
    assert sorted(torch.cat([x.seeds for x in a]).tolist()) == seeds.tolist()
    for x, y in zip(a, b):
        assert torch.equal(x.seeds, y.seeds)
        assert all(torch.equal(x.input_nodes[t], y.input_nodes[t]) for t in graph.ntypes)
        assert torch.equal(x.blocks[0].eid, y.blocks[0].eid)
        assert x.to("cpu").seeds is x.seeds
        assert x.blocks[-1].num_dst["gene"] == len(x.seeds) and x.blocks[-1].num_dst["go"] == 0
        last = x.blocks[-1]
        assert int(((last.rel == ppi) & (last.eid >= 0)).sum()) <= 5 * len(x.seeds)  # the last layer's PPI fanout
    assert DeviceGraph.of(graph, "cpu", weights_of(graph)) is DeviceGraph.of(graph, "cpu", weights_of(graph))


@pytest.fixture
def one_thread():
    """One torch thread: on a busy 2-core host, torch's threads plus DGL's sampling thread
    oversubscribe the cores and spin (10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("model", ["gcn", "gat"])
def test_training_reaches_the_dgl_sampler_auc(sample_spec, tmp_path, model, one_thread):
    """Two folds of the sample dataset: the same AUC (within 0.02) as with DGL's sampler."""
    config = TrainConfig(data=str(sample_spec), model=model, hidden=32, folds=2, epochs=10, batch_size=64,
                         patience=100).resolved()
    auc = {}
    for sampler in ("neighbor", "device"):
        data = LocalBackend(dataclasses.replace(config, sampler=sampler))
        trainers = [FoldTrainer.of(data, split, tmp_path / sampler) for split in data.splits]
        assert all(isinstance(t.source.sampler, DeviceBatches) == (sampler == "device") for t in trainers)
        auc[sampler] = float(np.mean([t.fit()["auc"] for t in trainers]))
    assert auc["neighbor"] > 0.8
    assert abs(auc["device"] - auc["neighbor"]) < 0.02, auc

"""What both layers do with per-relation parameters stacked into one tensor ``(R, ...)``.

* :func:`project` computes ``x_u W_r`` for every source ``u`` and every relation ``r`` of
  a chosen set per node type, with one matmul per node type; :func:`projected_pattern` is
  the block's sparse pattern re-indexed so that entry ``(u -> v, r)`` reads row
  ``(u, r)`` of that projection (:func:`projected_dst`: the row of ``(v, r)``).
* :func:`relation_matmul` multiplies each relation's rows (the block keeps them
  relation-major, ``(R_t, n_t, ...)`` per destination type) by that relation's matrix;
  :func:`sum_relations` adds each destination's relation rows and the relations' biases,
  every type at once (one sparse product with a constant pattern).
"""

from __future__ import annotations

import functools

import torch

from genen_dgl.nn.sparse import ETYPE, MessageBlock, Pattern, offsets, running, spmm, starts


def check_relations(block: MessageBlock, etypes: tuple[ETYPE, ...]) -> None:
    if block.etypes != etypes:
        raise ValueError(f"block relations {list(block.etypes)} differ from the layer's {list(etypes)}")


def relation_sets(block: MessageBlock, which) -> dict[str, list[int]]:
    """Per node type, the relation indices ``which(t, etype)`` selects (in row order)."""
    return {t: [i for i, e in enumerate(block.etypes) if which(t, e)] for t in block.ntypes}


def projected_rows(block: MessageBlock, sets: dict[str, list[int]]) -> tuple[dict[str, int], int]:
    """Where each node type's rows start in :func:`project`'s output, and how many rows it has."""
    sizes = {t: block.num_src[t] * len(sets[t]) for t in block.ntypes}
    return starts(block.ntypes, sizes), sum(sizes.values())


@functools.lru_cache(maxsize=512)
def table(values: tuple, device: torch.device) -> torch.Tensor:
    """A small constant int64 tensor on ``device``, made once: a block's per-relation
    constants are the same for every batch, and a fresh host-to-device copy per batch
    would wait for the device."""
    return torch.tensor(values, dtype=torch.int64, device=device)


def project(block: MessageBlock, x: torch.Tensor, weight: torch.Tensor, sets: dict[str, list[int]]) -> torch.Tensor:
    """``(sum_t n_t |sets[t]|, d_out)``: for each node type ``t`` in order, the rows
    ``(u, j) -> x_u W_{sets[t][j]}`` of its stacked sources ``u``, one matmul per type
    (laid out as :func:`projected_rows` says)."""
    out, off = [], block.src_off
    for t in block.ntypes:
        n, rels = block.num_src[t], sets[t]
        if n == 0 or not rels:
            continue
        # (R_t, d_in, d_out); the indices a cached device tensor (a list would be copied to the device each call)
        w = weight.index_select(0, table(tuple(rels), weight.device)) if len(rels) < weight.shape[0] else weight
        w = w.permute(1, 0, 2).reshape(weight.shape[1], -1)
        out.append((x[off[t]: off[t] + n] @ w).view(n * len(rels), weight.shape[2]))
    return torch.cat(out) if len(out) > 1 else out[0]


def _remap(block: MessageBlock, sets: dict[str, list[int]], side: int) -> torch.Tensor:
    """Per entry, the row of :func:`project`'s output that its source (``side`` 0) or its
    destination (``side`` 2, at its source column) reads."""
    at, _ = projected_rows(block, sets)
    dev = block.col.device
    if side == 0:  # the entry's source column
        index, offset = block.col, [block.src_off[e[0]] for e in block.etypes]
    elif block.dst_src is None:  # destination v of a relation's rows is source column src_off + v
        index, offset = block.row, block.row_off
    else:
        index = block.dst_src[block.row + table(tuple(block.dst_off[e[2]] - block.row_off[r] for r, e in
                                                      enumerate(block.etypes)), dev)[block.rel]]
        offset = [block.src_off[e[2]] for e in block.etypes]
    mult, add = [], []
    for r, e in enumerate(block.etypes):  # (column or row) = offset + u  ->  at[t] + u k + j
        t = e[side]
        k = len(sets[t])
        mult.append(k)
        add.append(at[t] + (sets[t].index(r) if r in sets[t] else 0) - offset[r] * k)
    m, a = table((tuple(mult), tuple(add)), dev)[:, block.rel]
    return index * m + a


def _key(sets: dict[str, list[int]]) -> tuple:
    return tuple((t, tuple(s)) for t, s in sets.items())


def projected_pattern(block: MessageBlock, sets: dict[str, list[int]]) -> Pattern:
    """The block's pattern with entry ``(u -> v, r)`` reading row ``(u, r)`` of :func:`project`."""
    _, rows = projected_rows(block, sets)
    return block.derived(("pattern", _key(sets)),
                         lambda: Pattern(block.rowptr, _remap(block, sets, 0), block.num_rows, max(rows, 1),
                                         lambda: block.row))


def projected_dst(block: MessageBlock, sets: dict[str, list[int]]) -> torch.Tensor:
    """Per entry ``(u -> v, r)``, the index of row ``(v, r)`` of :func:`project`."""
    return block.derived(("dst", _key(sets)), lambda: _remap(block, sets, 2))


@functools.lru_cache(maxsize=64)
def _reduction(ntypes: tuple[str, ...], etypes: tuple[ETYPE, ...], num_dst: tuple[int, ...],
               device: torch.device) -> tuple[Pattern, torch.Tensor, torch.Tensor]:
    """The constant operators of :func:`sum_relations` for one block shape: the (destinations
    x rows) pattern with an entry ``(v, row_off[r] + v)`` for each relation ``r`` into ``v``'s
    type, its values (ones), and the (destinations x relations) incidence ``[r into v's type]``."""
    n = dict(zip(ntypes, num_dst))
    row_off = running([n[e[2]] for e in etypes])
    cols, per_dst, incidence = [], [], []
    for t in ntypes:
        rels = [r for r, e in enumerate(etypes) if e[2] == t]
        cols.append((torch.tensor([row_off[r] for r in rels], dtype=torch.int64)[None, :]
                     + torch.arange(n[t])[:, None]).reshape(-1))
        per_dst.append(torch.full((n[t],), len(rels)))
        incidence.append(torch.zeros(n[t], len(etypes)).index_fill_(1, torch.tensor(rels, dtype=torch.int64), 1.0))
    col = torch.cat(cols).to(device)
    pattern = Pattern(offsets(torch.cat(per_dst)).to(device), col, sum(num_dst), sum(n[e[2]] for e in etypes))
    return pattern, torch.ones(col.numel(), device=device), torch.cat(incidence).to(device)


def sum_relations(block: MessageBlock, y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Stacked destinations ``(sum_t n_t, ...)`` from relation rows ``y`` (``(rows, ...)``):
    :math:`out_v = \\sum_{r \\to type(v)} (y_{(r, v)} + b_r)`, one sparse product with a constant
    pattern and one ``addmm`` for the biases, whatever the number of types and relations."""
    pattern, ones, incidence = _reduction(block.ntypes, block.etypes, tuple(block.num_dst[t] for t in block.ntypes),
                                          y.device)
    out = spmm(pattern, ones, y.reshape(y.shape[0], -1))
    out = torch.addmm(out, incidence if incidence.dtype == out.dtype else incidence.to(out.dtype),
                      bias.reshape(bias.shape[0], -1))
    return out.view((out.shape[0],) + bias.shape[1:])


def relation_matmul(block: MessageBlock, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Relation rows ``y`` ``(rows, d_in)``, each times its relation's ``weight[r]``
    ``(d_in, d_out)``: one batched matmul per destination type (its relations' rows are
    contiguous, ``(R_t, n_t, d_in)``)."""
    rels = [sum(e[2] == t for e in block.etypes) for t in block.ntypes]
    out = []
    for t, part, w in zip(block.ntypes, y.split([r * block.num_dst[t] for r, t in zip(rels, block.ntypes)]),
                          weight.split(rels)):
        if part.numel():
            out.append(torch.bmm(part.view(w.shape[0], block.num_dst[t], -1), w).view(part.shape[0], -1))
    return torch.cat(out) if len(out) > 1 else out[0] if out else y.new_zeros((0, weight.shape[-1]))

"""What both layers do with per-relation parameters stacked into one tensor ``(R, ...)``.

* :func:`project` computes ``x_u W_r`` for every source ``u`` and every relation ``r`` of
  a chosen set per node type, with one matmul per node type; :func:`projected_src` and
  :func:`projected_dst` give each entry ``(u -> v, r)`` the rows ``(u, r)`` and ``(v, r)``
  of that projection, and :func:`merged_pattern` is the destinations x projection matrix
  whose one product sums every relation's messages.
* :func:`destination_rows` is the block's matrix with its ``(v, r)`` rows destination-major,
  so that :func:`type_matmul` projects and sums each destination type's relations with one
  matmul; :func:`add_bias` adds each destination's relations' biases (one ``addmm``).
"""

from __future__ import annotations

import functools

import torch

from genen_dgl.nn.sparse import ETYPE, MessageBlock, Pattern, cast, entry_rows, starts


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
    (laid out as :func:`projected_rows` says) with the type's matrices side by side."""
    types = [t for t in block.ntypes if block.num_src[t] and sets[t]]
    order = tuple(r for t in types for r in sets[t])
    # (d_in, sum_t R_t d_out); the indices a cached device tensor (a list would be copied to the device each call)
    w = weight if order == tuple(range(weight.shape[0])) else weight.index_select(0, table(order, weight.device))
    w = w.permute(1, 0, 2).reshape(weight.shape[1], -1).split([len(sets[t]) * weight.shape[2] for t in types], 1)
    xs = dict(zip(block.ntypes, x.split([block.num_src[t] for t in block.ntypes])))
    out = [(xs[t] @ w_t).view(-1, weight.shape[2]) for t, w_t in zip(types, w)]
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


def projected_src(block: MessageBlock, sets: dict[str, list[int]]) -> torch.Tensor:
    """Per entry ``(u -> v, r)``, the index of row ``(u, r)`` of :func:`project`."""
    return block.derived(("src", _key(sets)), lambda: _remap(block, sets, 0))


def projected_dst(block: MessageBlock, sets: dict[str, list[int]]) -> torch.Tensor:
    """Per entry ``(u -> v, r)``, the index of row ``(v, r)`` of :func:`project`."""
    return block.derived(("dst", _key(sets)), lambda: _remap(block, sets, 2))


def merged_pattern(block: MessageBlock, sets: dict[str, list[int]], heads: int = 1) -> Pattern:
    """Destinations x rows of :func:`project`, entries destination-major
    (:meth:`~genen_dgl.nn.sparse.MessageBlock.by_destination`): one product sums every
    relation's messages ``(u, r) -> v``. ``heads``: see :func:`_per_head` (each head its
    own copy of the projection's rows)."""
    if heads > 1:
        one = merged_pattern(block, sets)
        return block.derived(("merged", _key(sets), heads), lambda: _per_head(one, heads, one.num_cols))
    _, rows = projected_rows(block, sets)
    order = block.by_destination()
    return block.derived(("merged", _key(sets)), lambda: Pattern(
        order.rowptr_dst, projected_src(block, sets).index_select(0, order.perm), sum(block.num_dst.values()),
        max(rows, 1), lambda: order.dst))


def destination_rows(block: MessageBlock, heads: int = 1) -> Pattern:
    """The block's ``(v, r)`` rows x stacked sources, destination-major: a destination
    type's output ``(n_t R_t, d)`` views as ``(n_t, R_t d)``. ``heads``: see :func:`_per_head`
    (every head reads the same sources)."""
    if heads > 1:
        one = destination_rows(block)
        return block.derived(("destination rows", heads), lambda: _per_head(one, heads, 0))
    order = block.by_destination()
    return block.derived("destination rows", lambda: Pattern(
        order.rowptr_rows, block.col.index_select(0, order.perm), block.num_rows, sum(block.num_src.values()),
        lambda: order.row))


def _per_head(pattern: Pattern, heads: int, stride: int) -> Pattern:
    """``heads`` copies of ``pattern`` down the diagonal, copy ``h`` reading the columns from
    ``h * stride`` on (``stride`` 0: every copy reads the same ones): one product computes
    every head's, with the heads' values one after another."""
    dev, n = pattern.col.device, pattern.col.numel()
    h = table(tuple(range(heads)), dev)[:, None]
    rowptr = torch.cat([(pattern.rowptr[:-1] + h * n).view(-1), table((heads * n,), dev)])
    col = (pattern.col + h * stride).view(-1) if stride else pattern.col.repeat(heads)
    rows = pattern.rows or (lambda: entry_rows(pattern.rowptr, n))
    return Pattern(rowptr, col, heads * pattern.num_rows, heads * stride or pattern.num_cols,
                   lambda: (rows() + h * pattern.num_rows).view(-1))


def type_matmul(block: MessageBlock, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Stacked destinations :math:`\\sum_r y_{(v, r)} W_r` from the destination-major rows
    ``y`` of :func:`destination_rows` and ``weight`` ``(R, d_in, d_out)``: one matmul per
    destination type, its relations' rows side by side ``(n_t, R_t d_in)`` against their
    matrices stacked ``(R_t d_in, d_out)`` (relations are sorted by destination type). With
    heads, ``y`` ``(H, rows, d_in)`` and ``weight`` ``(R, d_in, H, d_out)``: one batched
    matmul per type, output ``(H, destinations, d_out)``."""
    rels = [sum(e[2] == t for e in block.etypes) for t in block.ntypes]
    d_out, lead = weight.shape[-1], y.shape[:-2]
    out = []
    for t, r, part, w in zip(block.ntypes, rels, y.split([r * block.num_dst[t] for r, t in zip(rels, block.ntypes)],
                                                         dim=-2), weight.split(rels)):
        n = block.num_dst[t]
        if not n:
            continue
        if not r:
            out.append(y.new_zeros(lead + (n, d_out)))
        elif lead:  # (H, n_t, R_t d_in) x (H, R_t d_in, d_out)
            out.append(torch.bmm(part.reshape(lead + (n, -1)), w.permute(2, 0, 1, 3).reshape(lead + (-1, d_out))))
        else:
            out.append(part.view(n, -1) @ w.reshape(-1, d_out))
    return torch.cat(out, dim=-2) if len(out) > 1 else out[0]


def add_bias(block: MessageBlock, out: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``out[v] + sum_{r into v's type} bias[r]`` for stacked destinations, one ``addmm``."""
    incidence = block.by_destination().incidence
    summed = torch.addmm(matrix(out), cast(incidence, out.dtype), matrix(bias))
    return summed if out.dim() == 2 else summed.view(out.shape)


def matrix(x: torch.Tensor) -> torch.Tensor:
    """``x`` as ``(rows, -1)`` (itself if it is: a reshape is an operator call, and its
    backward another)."""
    return x if x.dim() == 2 else x.reshape(x.shape[0], -1)

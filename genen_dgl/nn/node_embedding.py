"""Learnable per-node input vectors beside the text features (``--node-embeddings``).

A node ``v`` of an embedded type enters the first layer as :math:`[x_v \\Vert e_v]`: its
text feature and a free vector :math:`e_v \\in R^d` (zeros for the types without one).
**Concatenation, not a sum:** ``e_v`` gets its own first-layer weights, so it needs not
live in the text encoder's space or scale, its width ``d`` is free
(``--node-embedding-dim``), and the text weights are not shared with a per-node
correction. The vectors start at zero, so a fresh model computes what the text-only
model computes; what they learn is what the text misses (a GO term's own weight, as the
GO-annotation baseline has one per term).

Each table is a :class:`dgl.nn.NodeEmbedding` updated by :class:`dgl.optim.SparseAdam`:
a step reads and updates only the rows of the batch's input nodes, so a table can have
millions of rows. Tables live where the features do (CPU, or the GPU with
``--sampler device``). The tables are also this module's buffers: ``state_dict`` holds
them as plain tensors (checkpoints, the best epoch's state) and ``load_state_dict``
writes into them in place.
"""

from __future__ import annotations

import itertools
import os

import torch
from torch import nn

from genen_dgl.dgl_compat import dgl

_names = itertools.count()


class NodeEmbeddings(nn.Module):
    def __init__(self, counts: dict[str, int], dim: int, ntypes: list[str], device: torch.device | str = "cpu"):
        """``counts``: the embedded node types and their node counts; ``ntypes``: every node
        type the model reads (those without a table get zeros)."""
        super().__init__()
        self.dim, self.ntypes = dim, list(ntypes)
        self.tables: dict[str, dgl.nn.NodeEmbedding] = {}
        for t, n in counts.items():  # DGL names each table's shared memory: unique in the process
            table = dgl.nn.NodeEmbedding(n, dim, f"genen-{os.getpid()}-{next(_names)}-{t}",
                                         init_func=torch.nn.init.zeros_, device=torch.device(device))
            self.tables[t] = table
            self.register_buffer(t, table.weight)

    def forward(self, x: dict[str, torch.Tensor], nodes: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """``[x_v || e_v]`` for the input nodes ``nodes`` (per type; None: every node, in
        order) whose text features are ``x``."""
        out = {}
        for t in self.ntypes:
            if t in self.tables:
                if nodes is None:
                    e = self.tables[t](torch.arange(x[t].shape[0], device=x[t].device), x[t].device)
                else:  # each row once: DGL's optimiser averages a repeated row's gradients, autograd sums them
                    ids, repeat = torch.unique(nodes[t], return_inverse=True)
                    e = self.tables[t](ids, x[t].device)[repeat]
            else:
                e = x[t].new_zeros(x[t].shape[0], self.dim)
            out[t] = torch.cat([x[t], e.to(x[t].dtype)], 1)
        return out

    def _apply(self, fn, recurse=True):
        """The buffers are DGL's tables: moving them would leave DGL's behind."""
        super()._apply(fn, recurse)
        for t, table in self.tables.items():
            if self._buffers[t] is not table.weight:
                raise RuntimeError("node embedding tables stay on the device they were made on "
                                   f"({table.weight.device})")
        return self

    def optimizer(self, lr: float) -> "SparseAdam":
        return SparseAdam(self, lr)


class SparseAdam:
    """:class:`dgl.optim.SparseAdam` over a :class:`NodeEmbeddings`' tables, with a
    ``state_dict`` of plain tensors keyed by node type (DGL keys them by table name, which
    is unique to a process; a resumed run has other names)."""

    def __init__(self, embeddings: NodeEmbeddings, lr: float):
        self.tables = embeddings.tables
        self.opt = dgl.optim.SparseAdam(list(self.tables.values()), lr=lr)

    def zero_grad(self) -> None:
        """Forget the rows read before (DGL drops them at the next step)."""
        self.opt.zero_grad()

    def step(self) -> None:
        self.opt.step()

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        return {t: dict(zip(("step", "mean", "square"), table.optm_state)) for t, table in self.tables.items()}

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        for t, table in self.tables.items():
            for mine, saved in zip(table.optm_state, (state[t]["step"], state[t]["mean"], state[t]["square"])):
                mine.copy_(saved)


"""The configured model, built and sized: :func:`new_model` for a run's graph and task, and
:func:`check_memory` before anything is allocated."""

from __future__ import annotations

import dataclasses

import psutil
import torch

from genen_dgl.config import TrainConfig
from genen_dgl.errors import InputError
from genen_dgl.nn.annotation_residual import AnnotationResidual
from genen_dgl.nn.model import GenenGNN
from genen_dgl.nn.node_embedding import NodeEmbeddings
from genen_dgl.schema import ANNOTATED, PPI


def embedded_types(config: TrainConfig, graph) -> list[str]:
    """The node types ``--node-embeddings`` gives a table; an InputError for one ``graph`` lacks."""
    types = [] if config.node_embeddings == "none" else config.node_embeddings.split(",")
    missing = [t for t in types if t not in graph.ntypes]
    if missing:
        raise InputError(f"node_embeddings = {config.node_embeddings!r}: the {config.graph} graph has no "
                         f"{missing[0]} nodes")
    return types


def new_model(config: TrainConfig, graph, in_dim: int, out_dim: int, device: torch.device | str = "cpu") -> GenenGNN:
    """The configured GCN or GAT over ``graph``'s relations (learned PPI weights: one
    parameter per PPI edge of the graph), with the node embeddings (their tables made on
    ``device``, where the features are) and the annotation residual it asks for."""
    learned = {PPI: graph.num_edges(PPI)} if config.edge_weight == "learned" and PPI in graph.canonical_etypes else None
    embeddings = residual = None
    types = embedded_types(config, graph)
    if types:
        embeddings = NodeEmbeddings({t: graph.num_nodes(t) for t in types}, config.node_embedding_dim or in_dim,
                                    graph.ntypes, device)
    if config.annotation_residual:
        if ANNOTATED not in graph.canonical_etypes:
            raise InputError(f"annotation_residual: the {config.graph} graph has no GO annotations; expected graph "
                             f"go or go_ppi")
        genes, terms = graph.edges(etype=ANNOTATED)
        residual = AnnotationResidual(genes, terms, graph.num_nodes("gene"), graph.num_nodes("go"), out_dim)
    return GenenGNN(config.model, in_dim, config.hidden, out_dim, config.layers, graph.canonical_etypes,
                    config.heads, config.dropout, learned, embeddings=embeddings, residual=residual)


def check_memory(config: TrainConfig, graph, in_dim: int, out_dim: int, device: torch.device) -> None:
    r"""An InputError unless the configured model fits in the memory ``device`` has free.
    A lower bound in float32: :math:`4\,\mathrm{B} \times (4P + 3T + 2N\max(d_{in}, hidden, d_{out}))`,
    its ``P`` parameters four times (weights, gradients, Adam's two moments) and one
    full-graph pass over ``N`` nodes (input and output of the widest layer), plus the node
    embedding tables three times (rows, sparse Adam's two moments). The model is built on
    the meta device without its tables (they widen its input), so counting it allocates nothing."""
    embedded = embedded_types(config, graph)
    width = config.node_embedding_dim or in_dim if embedded else 0
    with torch.device("meta"):
        params = sum(p.numel() for p in new_model(dataclasses.replace(config, node_embeddings="none"), graph,
                                                  in_dim + width, out_dim).parameters())
    tables = 3 * width * sum(graph.num_nodes(t) for t in embedded)
    nodes = sum(graph.num_nodes(t) for t in graph.ntypes)
    need = 4 * (4 * params + tables + 2 * nodes * max(in_dim + width, config.hidden, out_dim))
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else psutil.virtual_memory().available
    if need > free:
        raise InputError(f"hidden = {config.hidden}: a {config.layers}-layer {config.model.upper()} on {nodes:,} nodes "
                         f"with {in_dim} input features needs at least {_size(need)} ({params:,} parameters with "
                         f"gradients and Adam state, and one full-graph pass); {_size(free)} is free on {device.type}: "
                         "lower hidden or layers")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024

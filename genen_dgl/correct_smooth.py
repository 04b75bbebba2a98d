"""Correct & Smooth (Huang et al. 2021, "Combining label propagation and simple models
out-performs graph neural networks") on top of any model's class probabilities.

With :math:`S = D^{-1/2} A D^{-1/2}` over the gene nodes (``A``: the PPI graph, or the
gene-GO-gene co-annotation graph :math:`M M^\\top` of the multi-hot annotations ``M``, or
the mean of both operators), ``Z`` the model's probabilities of every gene, ``Y`` one-hot
labels and ``L`` the *training* genes of the fold (never validation or test genes):

* **Correct.** :math:`E^{(0)}_L = Y_L - Z_L`, zero elsewhere;
  :math:`E^{(t+1)} = (1 - \\alpha_1) E^{(0)} + \\alpha_1 S E^{(t)}`. Autoscale: every other
  gene moves by a correction of the training residuals' mean L1 norm,
  :math:`Z^{(r)}_i = Z_i + \\sigma \\hat E_i / \\lVert \\hat E_i \\rVert_1`,
  :math:`\\sigma = \\frac{1}{|L|} \\sum_{j \\in L} \\lVert E^{(0)}_j \\rVert_1`
  (a gene the residuals do not reach keeps :math:`Z_i`).
* **Smooth.** :math:`G^{(0)}` is :math:`Z^{(r)}` with the training genes clamped to
  :math:`Y_L`; :math:`G^{(t+1)} = (1 - \\alpha_2) G^{(0)} + \\alpha_2 S G^{(t)}`.

The result is clipped at 0 and renormalised to rows that sum to 1 (metrics read
probabilities; a row of zeros becomes uniform). Classification only.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from scipy import sparse

from genen_dgl.schema import ANNOTATED, PPI
from genen_dgl.evaluation import metrics

GRAPHS = ("none", "ppi", "go", "go_ppi")
ITERATIONS = 50

Operator = Callable[[np.ndarray], np.ndarray]


def _inv_sqrt(degree: np.ndarray) -> np.ndarray:
    out = np.zeros_like(degree, dtype=np.float64)
    np.divide(1.0, np.sqrt(degree), out=out, where=degree > 0)
    return out


def ppi_operator(graph) -> Operator:
    """:math:`x \\mapsto S x` over the (symmetric) PPI edges, unweighted, without self-loops."""
    n = graph.num_nodes("gene")
    src, dst = (t.numpy() for t in graph.edges(etype=PPI))
    a = sparse.csr_matrix((np.ones(len(src)), (dst, src)), shape=(n, n))
    a.data[:] = 1.0  # a duplicate edge counts once
    d = _inv_sqrt(np.asarray(a.sum(1)).ravel())
    s = sparse.diags(d) @ a @ sparse.diags(d)
    return lambda x: s @ x


def go_operator(graph) -> Operator:
    """:math:`x \\mapsto S x` over :math:`A = M M^\\top` (two genes linked by each GO term
    they share), applied as two sparse products without forming ``A``."""
    n = graph.num_nodes("gene")
    gene, term = (t.numpy() for t in graph.edges(etype=ANNOTATED))
    m = sparse.csr_matrix((np.ones(len(gene)), (gene, term)), shape=(n, graph.num_nodes("go")))
    m.data[:] = 1.0
    mt = m.T.tocsr()
    d = _inv_sqrt(m @ np.asarray(mt.sum(1)).ravel())  # row sums of M M^T
    return lambda x: d[:, None] * (m @ (mt @ (d[:, None] * x)))


def operator(graph, which: str) -> Operator:
    """The propagation operator ``which`` (``ppi``, ``go`` or ``go_ppi``: the mean of both)
    over the gene nodes of ``graph``; a ValueError when the graph lacks its edges."""
    need = {"ppi": [PPI], "go": [ANNOTATED], "go_ppi": [PPI, ANNOTATED]}[which]
    missing = [e[1] for e in need if e not in graph.canonical_etypes or not graph.num_edges(e)]
    if missing:
        raise ValueError(f"correct_smooth = {which!r}: the graph has no {' or '.join(missing)} edges")
    if which == "ppi":
        return ppi_operator(graph)
    if which == "go":
        return go_operator(graph)
    ppi, go = ppi_operator(graph), go_operator(graph)
    return lambda x: 0.5 * (ppi(x) + go(x))


def propagate(s: Operator, x0: np.ndarray, alpha: float, iterations: int = ITERATIONS) -> np.ndarray:
    """:math:`X^{(t+1)} = (1 - \\alpha) X^{(0)} + \\alpha S X^{(t)}`, ``iterations`` times."""
    x = x0
    for _ in range(iterations):
        x = (1 - alpha) * x0 + alpha * s(x)
    return x


def correct_and_smooth(s: Operator, z: np.ndarray, train: np.ndarray, y: np.ndarray, alpha1: float,
                       alpha2: float, iterations: int = ITERATIONS) -> np.ndarray:
    """Corrected and smoothed probabilities of every gene: ``z`` ``(genes, classes)`` the
    model's, ``train`` the training genes' node ids, ``y`` their class indices."""
    z = np.asarray(z, dtype=np.float64)
    onehot = np.eye(z.shape[1])[y]
    e0 = np.zeros_like(z)
    e0[train] = onehot - z[train]
    e = propagate(s, e0, alpha1, iterations)
    sigma = np.abs(e0[train]).sum(1).mean()
    norm = np.abs(e).sum(1, keepdims=True)
    scale = np.ones_like(norm)
    np.divide(sigma, norm, out=scale, where=norm > 0)
    scale[scale > 1000] = 1.0  # as the authors' code: a residual that all but vanished is not blown up
    g0 = z + scale * e
    g0[train] = onehot
    g = np.clip(propagate(s, g0, alpha2, iterations), 0, None)
    total = g.sum(1, keepdims=True)
    return np.where(total > 0, g / np.where(total > 0, total, 1), 1.0 / z.shape[1])


def per_fold(s: Operator, outputs: list[np.ndarray], splits, nodes: np.ndarray, y: np.ndarray,
             alpha: tuple[float, float]) -> Iterator[np.ndarray]:
    """Per split, C&S on that split's model outputs of every gene with its training genes'
    labels (``y`` holds every labelled gene's; only ``y[split.fold.train]`` is read)."""
    for split, z in zip(splits, outputs):
        train = split.fold.train
        yield correct_and_smooth(s, z, nodes[train], y[train], *alpha)


def apply_per_fold(s: Operator, outputs: list[np.ndarray], splits, nodes: np.ndarray, y: np.ndarray, kind: str,
                   alpha: tuple[float, float]) -> dict:
    """:func:`per_fold`'s metrics: per split, on the test genes (``folds``) and on the
    validation genes with and without C&S (``val``, ``val_model``: what chooses between them)."""
    out: dict[str, list] = {"folds": [], "val": [], "val_model": []}
    for split, z, smoothed in zip(splits, outputs, per_fold(s, outputs, splits, nodes, y, alpha)):
        f = split.fold
        at = {"seed": split.seed, "fold": split.k}
        out["folds"].append({**at, **metrics(kind, y[f.test], smoothed[nodes[f.test]])})
        if len(f.val):
            out["val"].append({**at, **metrics(kind, y[f.val], smoothed[nodes[f.val]])})
            out["val_model"].append({**at, **metrics(kind, y[f.val], z[nodes[f.val]])})
    return out

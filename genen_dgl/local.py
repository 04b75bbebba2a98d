"""The single-machine backend: the graph in memory, the model on the CPU or one GPU.

:class:`LocalBackend` is the :class:`~genen_dgl.training.cross_validation.Backend` of a
run on one machine. Its step sources (:mod:`genen_dgl.training.sources`): a sampler's
batches (``--sampler neighbor|device``, :data:`genen_dgl.sampling.SAMPLERS`), replayed as
CUDA graphs with ``--cuda-graph``, or one full-graph step per epoch (``--sampler full``);
its predictor, :class:`FullGraphPredictor`, scores any genes with one full-graph forward
pass (the operator sampled training estimates, see :meth:`genen_dgl.nn.sparse.MessageBlock.build`).
"""

from __future__ import annotations

import dataclasses
import logging
from functools import cached_property

import numpy as np
import pandas as pd
import torch

from genen_dgl import correct_smooth
from genen_dgl.config import TrainConfig
from genen_dgl.confounds import dataset_confounds
from genen_dgl.data.graph import (GeneGraph, cut_variant, gene_info, hide_annotations, load_full_graph,
                                  relation_warnings)
from genen_dgl.data.sample import ensure_sample
from genen_dgl.data.spec import run_spec
from genen_dgl.device import pick_device
from genen_dgl.errors import InputError
from genen_dgl.nn.build import check_memory, new_model
from genen_dgl.nn.model import GenenGNN
from genen_dgl.nn.sparse import MessageBlock
from genen_dgl.precision import autocast
from genen_dgl.sampling import FULL_GRAPH, new_sampler
from genen_dgl.schema import GENE
from genen_dgl.sampling.blocks import fixed_weights, parse_fanouts, to_message_block
from genen_dgl.splits import Split, cut_splits, mask_features
from genen_dgl.training.cross_validation import RunContext
from genen_dgl.training.objective import scores
from genen_dgl.training.replay import ReplayedSteps
from genen_dgl.training.sources import FullGraphSteps, SampledSteps, StepSource

log = logging.getLogger(__name__)


class FullGraphPredictor:
    """Outputs and embeddings of any genes from one full-graph forward pass, at the
    training's ``precision`` (outputs cast to float32 before the softmax)."""

    def __init__(self, block: MessageBlock, inputs: dict[str, torch.Tensor], kind: str, precision: str = "fp32"):
        self.block, self.inputs, self.kind, self.precision = block, inputs, kind, precision

    @torch.no_grad()
    def predict(self, model: GenenGNN, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model.eval()
        with autocast(self.precision, next(model.parameters()).device):
            out, hidden = model([self.block] * model.num_layers, self.inputs, return_hidden=True)
        out = scores(self.kind, out)
        rows = torch.as_tensor(genes, device=out.device)
        return out[rows].cpu().numpy(), hidden[rows].float().cpu().numpy()


class LocalBackend:
    """A single-machine run's graph, labels, splits and inputs, prepared once (every input
    checked: an InputError before anything is written)."""

    writes = True

    def __init__(self, config: TrainConfig):
        self.spec = run_spec(config.data or ensure_sample(), config)
        self.config = config = dataclasses.replace(config, task=self.spec.task(config.task).name)
        self.full_graph, gene_ids, go_ids = load_full_graph(self.spec)  # the baselines read it whole
        self.warnings = relation_warnings(self.spec)
        self.data = GeneGraph(cut_variant(self.full_graph, config.graph), gene_ids,
                              go_ids if config.graph != "ppi" else [], config.graph, self.spec)
        log.info("%s", self.data)
        self.nodes, self.labels = self.data.labels(config.task)
        self.confounds = dataset_confounds(config.task, self.labels, self.spec,
                                           self.full_graph, self.gene_info, self.nodes)
        self.splits = cut_splits(self.labels, config)
        self.device = pick_device(config.device)
        if config.cuda_graph and self.device.type != "cuda":
            raise InputError(f"cuda_graph: CUDA graphs need a GPU; the model runs on {self.device}")
        g = self.data.graph
        self.num_genes = g.num_nodes(GENE)
        check_memory(config, g, g.nodes[GENE].data["feat"].shape[1], self.labels.width, self.device)
        self.feats = {t: g.nodes[t].data["feat"].to(self.device) for t in g.ntypes}
        self.weights = fixed_weights(g, config.edge_weight)
        self.block = to_message_block(g, self.weights).to(self.device)
        self.fanouts = parse_fanouts(config.fanouts, config.fanout_rel, g)  # unknown relations fail here
        self.smoothing = self._smoothing()
        self._masked: tuple = (None, None)
        self._fold: tuple = (None, None)

    def _smoothing(self) -> correct_smooth.Operator | None:
        """The Correct & Smooth operator the config asks for, checked against the task and graph."""
        which = self.config.correct_smooth
        if which == "none":
            return None
        if self.labels.kind in ("regression", "multilabel"):
            raise InputError(f"correct_smooth = {which!r}: for single-label classification tasks; task "
                             f"{self.config.task!r} is {self.labels.kind}")
        if which != "ppi" and self.config.hide_test_annotations:
            raise InputError(f"correct_smooth = {which!r} propagates over GO annotations, which "
                             "hide_test_annotations hides from held-out genes; use correct_smooth: ppi")
        try:
            return correct_smooth.operator(self.data.graph, which)
        except ValueError as err:
            raise InputError(f"{err} (graph variant {self.config.graph!r})") from None

    @cached_property
    def gene_info(self) -> pd.DataFrame:
        """Per gene node: GO annotation count and text source (:func:`genen_dgl.data.graph.gene_info`)."""
        return gene_info(self.spec, self.full_graph, self.data.gene_ids)

    @cached_property
    def targets(self) -> torch.Tensor:
        """Label of every gene by node id, on the device (unlabelled genes hold 0, never read)."""
        y = np.zeros((self.num_genes, *self.labels.values.shape[1:]), dtype=self.labels.values.dtype)
        y[self.nodes] = self.labels.values
        return torch.as_tensor(y).to(self.device)

    def inputs(self, seed: int) -> dict[str, torch.Tensor]:
        """The input features a split of ``seed`` sees: with ``mask_rate``, a random share
        of nodes zeroed, one mask per seed."""
        c = self.config
        if c.mask_rate <= 0:
            return self.feats
        if self._masked[0] != seed:
            self._masked = (seed, mask_features(self.feats, c.mask_rate, c.mask_nodes, seed))
        return self._masked[1]

    def model(self, split: Split) -> GenenGNN:
        """A new model over the split's graph (the annotation residual reads that graph's
        annotations: none for held-out genes under ``hide_test_annotations``)."""
        return new_model(self.config, self.fold_graph(split)[0], self.feats[GENE].shape[1], self.labels.width,
                         self.device).to(self.device)

    def fold_graph(self, split: Split) -> tuple:
        """The graph a split trains, validates and predicts on, with its edge weights and
        full-graph block: the run's graph, or with ``hide_test_annotations`` that graph
        without the gene–GO edges of the split's held-out genes, test and validation (built
        for one split at a time). Validation genes are hidden too, so that early stopping and
        the validation metric a configuration is chosen on see genes as the test genes are."""
        held_out = np.concatenate([split.fold.val, split.fold.test])
        if not self.config.hide_test_annotations or not len(held_out):  # the refit hides nothing
            return self.data.graph, self.weights, self.block
        if self._fold[0] != split.name:
            self._fold = (None, None)  # the previous split's graph is freed first
            g = hide_annotations(self.data.graph, self.nodes[held_out])
            w = fixed_weights(g, self.config.edge_weight)
            self._fold = (split.name, (g, w, to_message_block(g, w).to(self.device)))
        return self._fold[1]

    def steps(self, split: Split) -> StepSource:
        """The split's training steps: the full graph, or the configured sampler's batches
        over its training genes (replayed as CUDA graphs with ``cuda_graph``)."""
        c, genes, x = self.config, self.nodes[split.fold.train], self.inputs(split.seed)
        graph, weights, block = self.fold_graph(split)
        if c.sampler == FULL_GRAPH:
            return FullGraphSteps(block, c.layers, x, self.targets, genes)
        sampler = new_sampler(c.sampler, graph, genes, self.fanouts, c.batch_size, weights, self.device,
                              c.deterministic)
        return (ReplayedSteps if c.cuda_graph else SampledSteps)(sampler, x, self.targets, self.device)

    def predictor(self, split: Split) -> FullGraphPredictor:
        return FullGraphPredictor(self.fold_graph(split)[2], self.inputs(split.seed), self.labels.kind,
                                  self.config.precision)

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def context(self) -> RunContext:
        return RunContext(self.full_graph, self.data.gene_ids, self.gene_info, smoothing=self.smoothing, meta={
            "confounds": self.confounds, "warnings": self.warnings})

"""Training on one machine: the graph in memory, the model on the CPU or one GPU.

:class:`LocalData` is the :class:`~genen_dgl.trainer.TrainingData` of a single-machine run.
Its step sources: :class:`SampledSteps` over a sampler (DGL's
:class:`~genen_dgl.dataloading.NeighborBatches` or the torch-op
:class:`~genen_dgl.device_sampling.DeviceBatches`) and :class:`FullGraphSteps` (one
full-graph step per epoch); its predictor, :class:`FullGraphPredictor`, scores any genes
with one full-graph forward pass (the operator sampled training estimates, see
:meth:`genen_dgl.nn.sparse.MessageBlock.build`). :func:`run` is a whole run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from genen_dgl import correct_smooth
from genen_dgl.baselines import baselines_for, not_run
from genen_dgl.batches import Batch, SeedBatches, Step, StepSource
from genen_dgl.config import TrainConfig
from genen_dgl.confounds import dataset_confounds
from genen_dgl.cuda_graph import GraphedStep
from genen_dgl.data.graph import (GeneGraph, cut_variant, gene_info, hide_annotations, load_full_graph,
                                  relation_warnings)
from genen_dgl.data.sample import ensure_sample
from genen_dgl.data.spec import run_spec
from genen_dgl.dataloading import NeighborBatches, fixed_weights, parse_fanouts, to_message_block
from genen_dgl.device import pick_device
from genen_dgl.device_sampling import DeviceBatches
from genen_dgl.errors import InputError
from genen_dgl.nn.model import GenenGNN
from genen_dgl.nn.sparse import MessageBlock
from genen_dgl.outputs import run_meta, write_outputs
from genen_dgl.precision import autocast
from genen_dgl.trainer import (Split, apply_runtime, check_memory, cross_validate, cut_splits, mask_features, new_model,
                               scores)

log = logging.getLogger(__name__)


class SampledSteps(StepSource):
    """A sampler's batches as training steps: features gathered, targets looked up, on ``device``."""

    def __init__(self, sampler: SeedBatches, inputs: dict[str, torch.Tensor], targets: torch.Tensor, device):
        self.sampler, self.inputs, self.targets, self.device = sampler, inputs, targets, device

    def __len__(self) -> int:
        return len(self.sampler)

    def step(self, batch: Batch) -> Step:
        batch = batch.to(self.device)
        return Step({t: self.inputs[t][n] for t, n in batch.input_nodes.items()}, batch.blocks,
                    self.targets[batch.seeds], nodes=batch.input_nodes, seeds=batch.seeds)

    def epoch(self, seed: int) -> Iterator[Step]:
        return map(self.step, self.sampler.epoch(seed))


class ReplayedSteps(SampledSteps):
    """The device sampler's steps, each whole step (sample, gather, forward, loss, backward,
    optimiser) replayed as one CUDA graph per batch size (``--cuda-graph``,
    :mod:`genen_dgl.cuda_graph`). The epoch's seed reseeds the one generator the graphs
    draw from, so an epoch samples as :meth:`DeviceBatches.epoch` would."""

    def __init__(self, sampler: DeviceBatches, inputs: dict[str, torch.Tensor], targets: torch.Tensor, device):
        super().__init__(sampler, inputs, targets, device)
        self.generator = torch.Generator(device=device)
        self.graphed: GraphedStep | None = None
        self.replays = 0  # steps replayed by graphs already closed

    def losses(self, seed: int, optimise: Callable[[Step], torch.Tensor]) -> Iterator[torch.Tensor]:
        if self.graphed is None:  # the trainer's optimise is the same every epoch
            self.graphed = GraphedStep(lambda seeds: optimise(self.step(self.sampler.sample(seeds, self.generator))),
                                       [self.generator])
        self.generator.manual_seed(seed)
        chunks = self.sampler.chunks(seed)  # to the device at once: a copy per step would wait for the last
        for seeds in torch.cat(chunks).to(self.device).split([len(c) for c in chunks]):
            yield self.graphed(seeds)

    def close(self) -> None:
        if self.graphed is not None:
            g = self.graphed
            self.replays += g.replays
            log.info("%d steps replayed as CUDA graphs (%d batch sizes), %d eager", g.replays, len(g.captured),
                     g.eager_calls)
        self.graphed = None


class FullGraphSteps(StepSource):
    """Full-graph training: one step per epoch, the loss on the training genes' rows."""

    def __init__(self, block: MessageBlock, layers: int, inputs: dict[str, torch.Tensor], targets: torch.Tensor,
                 genes: np.ndarray):
        self.block, self.layers, self.inputs = block, layers, inputs
        self.rows = torch.as_tensor(genes, device=targets.device)
        self.targets = targets[self.rows]

    def __len__(self) -> int:
        return 1

    def epoch(self, seed: int) -> Iterator[Step]:
        yield Step(self.inputs, [self.block] * self.layers, self.targets, self.rows)


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


class LocalData:
    """A single-machine run's graph, labels, splits and inputs, prepared once."""

    writes = True

    def __init__(self, config: TrainConfig):
        self.config = config
        apply_runtime(config)
        self.spec = run_spec(config.data or ensure_sample(), config)
        self.full_graph, gene_ids, go_ids = load_full_graph(self.spec)  # the baselines read it whole
        self.warnings = relation_warnings(self.spec)
        self.data = GeneGraph(cut_variant(self.full_graph, config.graph), gene_ids,
                              go_ids if config.graph != "ppi" else [], config.graph, self.spec)
        log.info("%s", self.data)
        self.nodes, self.labels = self.data.labels(config.task)
        self.confounds = dataset_confounds(self.spec.task(config.task).name, self.labels, self.spec,
                                           self.full_graph, self.gene_info, self.nodes)
        self.splits = cut_splits(self.labels, config)
        self.device = pick_device(config.device)
        if config.cuda_graph and self.device.type != "cuda":
            raise InputError(f"cuda_graph: CUDA graphs need a GPU; the model runs on {self.device}")
        g = self.data.graph
        self.num_genes = g.num_nodes("gene")
        check_memory(config, g, g.nodes["gene"].data["feat"].shape[1], self.labels.width, self.device)
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
        return new_model(self.config, self.fold_graph(split)[0], self.feats["gene"].shape[1], self.labels.width,
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

    def sampler(self, genes: np.ndarray, graph, weights) -> SeedBatches:
        """The configured sampler over the gene nodes ``genes`` of ``graph``."""
        c = self.config
        if c.sampler == "neighbor":
            return NeighborBatches(graph, genes, self.fanouts, c.batch_size, weights,
                                   prefetch=0 if c.deterministic else 2)
        return DeviceBatches(graph, genes, self.fanouts, c.batch_size, weights, device=self.device)

    def steps(self, split: Split):
        genes = self.nodes[split.fold.train]
        x = self.inputs(split.seed)
        graph, weights, block = self.fold_graph(split)
        if self.config.sampler == "full":
            return FullGraphSteps(block, self.config.layers, x, self.targets, genes)
        steps = ReplayedSteps if self.config.cuda_graph else SampledSteps
        return steps(self.sampler(genes, graph, weights), x, self.targets, self.device)

    def predictor(self, split: Split) -> FullGraphPredictor:
        return FullGraphPredictor(self.fold_graph(split)[2], self.inputs(split.seed), self.labels.kind,
                                  self.config.precision)

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        return values


def run(config: TrainConfig, run_dir: Path, resume: bool = False, data: LocalData | None = None) -> dict:
    """Train every split (resuming finished and interrupted ones) and write the run's outputs.
    ``data``: the run's LocalData when the caller built it already (to check inputs first)."""
    run_dir = Path(run_dir)
    start = time.perf_counter()
    data = data or LocalData(config)
    cv = cross_validate(data, run_dir, resume)
    meta = run_meta(dataclasses.replace(config, task=data.spec.task(config.task).name), time.perf_counter() - start,
                    data.device, confounds=data.confounds, warnings=data.warnings,
                    baselines_not_run=not_run(data.full_graph))
    baselines = baselines_for(data.full_graph, config, data.labels, data.nodes, data.splits)
    smoothed = None
    if data.smoothing is not None:
        alpha = (config.cs_alpha1, config.cs_alpha2)
        smoothed = {"graph": config.correct_smooth, "alpha": list(alpha), **correct_smooth.apply_per_fold(
            data.smoothing, [out for out, _ in cv.outputs], data.splits, data.nodes, data.labels.values,
            data.labels.kind, alpha)}
    return write_outputs(run_dir, meta, data.labels, data.nodes, data.data.gene_ids, data.splits, cv, baselines,
                         data.gene_info, smoothed)

"""Cross-validated training, written once for every backend (one machine, a DistGraph).

The path of one epoch, top to bottom:

* :mod:`~genen_dgl.training.cross_validation`: :func:`run_cross_validation` trains every
  split of a :class:`~genen_dgl.training.cross_validation.Backend` and writes the run;
* :mod:`~genen_dgl.training.fold`: :class:`FoldTrainer`, the loop
  ``for step in source.epoch(seed): loss = step_fn(step)``, validation, stopping, checkpoints;
* :mod:`~genen_dgl.training.sources`: where steps come from (:class:`Step`, a sampler's
  batches, the full graph); :mod:`~genen_dgl.training.replay`: the step as a CUDA graph;
* :mod:`~genen_dgl.training.optimise`: the step function (forward, loss, backward, Adam);
* :mod:`~genen_dgl.training.stopping`, :mod:`~genen_dgl.training.checkpoints`: injected
  into the trainer; :mod:`~genen_dgl.training.runtime`: seeds and process-wide settings.
"""

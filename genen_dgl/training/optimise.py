"""The step function: one optimisation step on one :class:`~genen_dgl.training.sources.Step`."""

from __future__ import annotations

import torch

from genen_dgl.precision import autocast
from genen_dgl.training.objective import task_loss
from genen_dgl.training.sources import Step


def adam(params, lr: float, weight_decay: float = 0.0, capturable: bool = False) -> torch.optim.Adam:
    """Adam with its fused kernel: one operator per step for all parameters (the per-tensor
    loop costs ~12 operators per parameter tensor, a GPU kernel launch each).
    ``capturable`` (GPU only): a step of it can be captured in a CUDA graph
    (:mod:`genen_dgl.training.replay`)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True, capturable=capturable)


class OptimiserStep:
    r"""``step_fn(step)``: forward at the configured ``precision``, the task's loss on the
    step's target rows, backward, Adam (and sparse Adam on the model's node embedding
    tables, where it has some); returns the loss, detached, on the device (no host sync).

    .. math:: \theta \leftarrow \mathrm{Adam}(\theta, \nabla_\theta\,
              \mathcal{L}(f_\theta(\text{blocks}, x)[\text{rows}], y))
    """

    def __init__(self, model: torch.nn.Module, kind: str, lr: float, weight_decay: float = 0.0,
                 precision: str = "fp32", capturable: bool = False):
        self.model, self.kind, self.precision = model, kind, precision
        self.opt = adam(model.parameters(), lr, weight_decay, capturable)
        tables = getattr(model, "embeddings", None)
        self.sparse_opt = tables.optimizer(lr) if tables is not None else None

    def __call__(self, step: Step) -> torch.Tensor:
        device = next(self.model.parameters()).device
        with autocast(self.precision, device):
            out = self.model(step.blocks, step.inputs, nodes=step.nodes, seeds=step.seeds)
        loss = task_loss(self.kind, out if step.rows is None else out[step.rows], step.targets)
        self.opt.zero_grad()
        if self.sparse_opt is not None:
            self.sparse_opt.zero_grad()
        loss.backward()
        self.opt.step()
        if self.sparse_opt is not None:
            self.sparse_opt.step()
        return loss.detach()

    def state_dict(self) -> dict:
        """Both optimisers' state (a checkpoint's ``opt`` and ``sparse_opt``)."""
        state = {"opt": self.opt.state_dict()}
        if self.sparse_opt is not None:
            state["sparse_opt"] = self.sparse_opt.state_dict()
        return state

    def load_state_dict(self, state: dict, capturable: bool) -> None:
        """Restore :meth:`state_dict`; ``capturable`` as this run asks (the saving run's may differ)."""
        self.opt.load_state_dict(state["opt"])
        if self.sparse_opt is not None:
            self.sparse_opt.load_state_dict(state["sparse_opt"])
        for group in self.opt.param_groups:
            group["capturable"] = capturable

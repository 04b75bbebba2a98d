"""When a split stops training, and which epoch's weights it keeps (injected into
:class:`~genen_dgl.training.fold.FoldTrainer`)."""

from __future__ import annotations

import numpy as np
import torch


class EarlyStopping:
    """Stop after ``epochs``, or once the validation loss has not improved for ``patience``
    epochs; keep the best epoch's weights. The loss, not a ranking metric, decides: it keeps
    the predictions calibrated."""

    def __init__(self, epochs: int, patience: int):
        self.epochs, self.patience = epochs, patience
        self.best_loss, self.best_epoch = np.inf, -1
        self.best_state: dict[str, torch.Tensor] | None = None

    def done(self, epoch: int) -> bool:
        """Whether training stops before ``epoch`` (0-based: ``epoch`` epochs have run)."""
        return epoch >= self.epochs or epoch - 1 - self.best_epoch >= self.patience

    def update(self, epoch: int, val_loss: float | None, model: torch.nn.Module) -> bool:
        """After ``epoch``: keep ``model``'s weights if ``val_loss`` is the best so far."""
        if val_loss is None or not val_loss < self.best_loss:
            return False
        self.best_loss, self.best_epoch = val_loss, epoch
        self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return True

    def finish(self, model: torch.nn.Module) -> bool:
        """After the last epoch: whether the kept weights are still to be written (no: each
        improvement wrote them)."""
        return False

    def state_dict(self) -> dict:
        return {"best_state": self.best_state, "best_loss": float(self.best_loss), "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best_state, self.best_loss, self.best_epoch = state["best_state"], state["best_loss"], state["best_epoch"]


class FixedEpochs(EarlyStopping):
    """Exactly ``epochs`` epochs, no validation, the last epoch's weights kept (the refit on
    every labelled gene, for the folds' median best epoch count)."""

    def __init__(self, epochs: int):
        super().__init__(epochs, patience=epochs + 1)

    def done(self, epoch: int) -> bool:
        return epoch >= self.epochs

    def update(self, epoch: int, val_loss: float | None, model: torch.nn.Module) -> bool:
        self.best_epoch = epoch
        return False

    def finish(self, model: torch.nn.Module) -> bool:
        """The last epoch's weights (the initial ones after zero epochs), written once."""
        self.best_state = model.state_dict()
        return True

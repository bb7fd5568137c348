"""Early stopping on validation loss as a pure function of a training's history.

Keras' ``EarlyStopping(monitor="val_loss", patience, min_delta, restore_best_weights=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cnnvsmlp.config import StoppingRule


@dataclass(frozen=True)
class StopDecision:
    """Where the rule stopped (``epochs``), whose weights it keeps (0: no finite loss), and why."""

    stop: bool
    epochs: int
    best_epoch: int
    reason: Literal["patience", "cap"] | None  # converged, still improving at the cap, or running

    @property
    def capped_improving(self) -> bool:
        """Whether the training ended at the cap on epochs, not converged by the rule."""
        return self.reason == "cap"


def decide(val_losses: Sequence[float], rule: StoppingRule, max_epochs: int) -> StopDecision:
    """The decision at the first epoch where the rule stops, else after the last one given.

    An epoch improves on the best loss so far by more than ``min_delta`` (a non-finite loss
    never does); ``patience`` epochs in a row without improvement, or ``max_epochs``, stop it.
    """
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, got {max_epochs}")
    best, best_epoch, wait = math.inf, 0, 0
    for epoch, loss in enumerate(val_losses, start=1):
        if math.isfinite(loss) and loss < best - rule.min_delta:
            best, best_epoch, wait = loss, epoch, 0
        else:
            wait += 1
        if wait >= rule.patience:
            return StopDecision(True, epoch, best_epoch, "patience")
        if epoch >= max_epochs:
            return StopDecision(True, epoch, best_epoch, "cap")
    return StopDecision(False, len(val_losses), best_epoch, None)

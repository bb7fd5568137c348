"""The convergence rule: early stopping on validation loss, the best epoch's weights kept.

Keras' ``EarlyStopping(monitor="val_loss", patience, min_delta,
restore_best_weights=True)`` as a pure function of the history (the rule itself,
:class:`~cnnvsmlp.config.StoppingRule`, is ``train.early_stopping``, which
:func:`cnnvsmlp.train.train` applies after every epoch), so that the
rule is tested without training and the comparison can say, from a
record's history alone, where a training stopped and why. An epoch improves
when its validation loss is below the best so far by more than
``min_delta``; training stops once ``patience`` epochs in a row have not
improved, or at the cap on epochs (``train.epochs``). A training stopped by
the cap had improved within its last ``patience`` epochs: it may have
stopped too early, and the comparison flags it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cnnvsmlp.config import StoppingRule

__all__ = ["StopDecision", "StoppingRule", "decide"]


@dataclass(frozen=True)
class StopDecision:
    """What the rule makes of a history of validation losses.

    Attributes:
        stop: train no further epoch.
        epochs: the epochs the rule would have trained: where it stopped, or
            all of them while it has not.
        best_epoch: the epoch (1-based) whose weights are kept; 0 when no
            epoch had a finite validation loss.
        reason: ``patience`` (converged), ``cap`` (the cap on epochs was
            reached while still improving) or None (still running).
    """

    stop: bool
    epochs: int
    best_epoch: int
    reason: Literal["patience", "cap"] | None

    @property
    def capped_improving(self) -> bool:
        """Whether the training ended at the cap on epochs, not converged by the rule."""
        return self.reason == "cap"


def decide(val_losses: Sequence[float], rule: StoppingRule, max_epochs: int) -> StopDecision:
    """Apply the rule to the validation losses of the epochs trained so far.

    Args:
        val_losses: validation loss after each epoch, first epoch first.
        rule: patience and minimum improvement.
        max_epochs: the cap on epochs.

    Returns:
        The decision at the first epoch where the rule stops, or after the
        last epoch given when it has not stopped. A non-finite loss never
        improves.

    Raises:
        ValueError: ``max_epochs`` is below 1.
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

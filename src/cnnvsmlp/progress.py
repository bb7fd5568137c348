"""Progress of a training as logging records, for whoever displays it.

Every record goes to the ``cnnvsmlp.progress`` logger at INFO, with a
readable message naming the run, and ``extra={"event": {...}}``: one dict
whose keys are always all of :data:`EVENT_KEYS` (None where a key does not
apply). ``kind`` is one of :data:`KINDS`:

- ``start``: a training begins (``epoch`` is the first one it trains);
- ``step``: inside an epoch, at most about once a second (``step`` of
  ``steps``, the running ``loss`` and ``accuracy``);
- ``epoch``: an epoch ended, with its metrics and ``seconds``;
- ``done``: the training ended (``seconds``: all its epochs);
- ``reused``: a finished training with the same key was reused (``from``);
- ``resumed``: training goes on after ``epoch`` (``from``: where the state was);
- ``set_aside``: a state that failed validation was moved aside (``from``:
  the file; the message says why).

Epochs count from 1.
"""

from __future__ import annotations

import logging
from typing import Any

LOGGER = logging.getLogger("cnnvsmlp.progress")
KINDS = ("start", "step", "epoch", "done", "reused", "resumed", "set_aside")
EVENT_KEYS = (
    "kind",
    "run_id",
    "epoch",
    "epochs",
    "step",
    "steps",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "seconds",
    "from",
)


def report(kind: str, run_id: str, message: str, level: str = "info", **fields: Any) -> None:
    """Log one progress event.

    Args:
        kind: one of :data:`KINDS`.
        run_id: the training's run id, e.g. ``mlp-r0``.
        message: the line a plain log shows, without the run id.
        level: the record's level: ``info``, or ``warning`` for a state set aside.
        **fields: the event's other keys (``from_`` for ``from``).

    Raises:
        ValueError: an unknown kind or key (a programming error).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown progress kind {kind!r}")
    if "from_" in fields:
        fields["from"] = fields.pop("from_")
    unknown = set(fields) - set(EVENT_KEYS)
    if unknown:
        raise ValueError(f"unknown progress keys {sorted(unknown)}")
    event = dict.fromkeys(EVENT_KEYS)
    event.update(fields, kind=kind, run_id=run_id)
    number = logging.getLevelName(level.upper())
    LOGGER.log(number, "%s: %s", run_id, message, extra={"event": event})

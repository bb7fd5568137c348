"""A written record checked whole before anything is rendered from it, whatever its schema.

By field names: whole JSON, finite numbers, shares and probabilities in [0, 1], their
differences in [-1, 1], and every variant named present among the record's ``variants``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

from cnnvsmlp.errors import UserError

# A number under a key holding one of these words is a share: from 0 to 1.
SHARES = ("accuracy", "recall", "confidence", "alpha")
# A number under one of these keys, or a key that starts "p_", is a probability.
PROBABILITIES = {"p_value", "p_holm", "power"}
# A number under a key holding this word is a difference of shares: from -1 to 1.
DIFFERENCES = ("difference",)
# Keys whose value names a variant.
NAMING = ("variant", "a", "b")
DAMAGED = "the record is damaged: nothing was rendered; render from a whole copy"


class RecordError(UserError):
    """A record that is not whole, or holds a value it cannot hold."""


def read_record(path: Path) -> dict:
    """The JSON object in ``path``, checked whole; a RecordError names what is out of place."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise RecordError(f"{path}: cannot read it ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise RecordError(f"{path}: not UTF-8 text (byte {err.start}); not a record") from None

    def not_finite(name: str) -> float:
        raise RecordError(f"{path}: holds {name}, not a finite number; {DAMAGED}")

    try:
        record = json.loads(text, parse_constant=not_finite)
    except ValueError as err:
        raise RecordError(
            f"{path}: not whole JSON ({err}); render from a whole copy of the record"
        ) from None
    if not isinstance(record, dict):
        raise RecordError(f"{path}: holds {json.dumps(record)[:40]}, not a record (a JSON object)")
    for where, problem in _problems(record):
        raise RecordError(f"{path}: {where} {problem}; {DAMAGED}")
    return record


def _problems(record: dict) -> Iterator[tuple[str, str]]:
    variants = record.get("variants")
    rows = variants if isinstance(variants, list) else []
    names = {v.get("variant") for v in rows if isinstance(v, dict)} - {None}
    for where, key, value in _leaves(record, "", ""):
        if isinstance(value, float) and not math.isfinite(value):
            yield where, f"is {value}, not a finite number"
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = _range(key)
            if not low <= value <= high:
                yield where, f"is {value}, outside [{low:g}, {high:g}]"
        elif key in NAMING and isinstance(value, str) and names and value not in names:
            yield where, f"names variant {value!r}, which the record's variants lack"


def _range(name: str) -> tuple[float, float]:
    """The values a number named ``name`` (see :func:`_leaves`) may take."""
    own = name.rsplit("/", 1)[-1]
    if own in PROBABILITIES or own.startswith("p_"):
        return 0.0, 1.0
    if any(d in name for d in DIFFERENCES):
        return -1.0, 1.0
    if any(s in name for s in SHARES) and own not in ("low", "high"):
        return 0.0, 1.0  # an interval's bounds may pass a share's range; its estimate may not
    return -math.inf, math.inf


# Keys that say which part of their object a number is, not what: named with their object's.
PARTS = {"estimate", "low", "high"}


def _leaves(value: object, where: str, name: str) -> Iterator[tuple[str, str, object]]:
    """Every leaf with its path and name: its key, ``key/part`` for :data:`PARTS` and numbers."""
    if isinstance(value, dict):
        for k, v in value.items():
            k = str(k)
            inner = f"{name}/{k}" if k in PARTS or k.isdigit() else k
            yield from _leaves(v, f"{where}.{k}" if where else k, inner)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{where}[{i}]", name)
    else:
        yield where, name, value

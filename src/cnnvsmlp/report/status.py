"""Whether a written comparison is complete, and which runs failed: no plotting or statistics."""

from __future__ import annotations

from pathlib import Path

from cnnvsmlp.report.model import Comparison, RunsFailed


def failure_summary(comparison: Comparison) -> str:
    """One line saying which runs failed and what is compared without them; empty when none."""
    if not comparison.failures:
        return ""
    runs = "; ".join(
        f"{f.variant}-r{f.repeat} ({f.error}: {f.message})" for f in comparison.failures
    )
    count = len(comparison.failures)
    out = list(dict.fromkeys(f.variant for f in comparison.failures))
    left = f"variant{'s' if len(out) > 1 else ''} {', '.join(out)} left out"
    if comparison.variants:
        rest = ", ".join(v.variant for v in comparison.variants)
        tail = f"{left}; {rest} compared"
    else:
        tail = f"{left}; nothing left to compare"
    return f"{count} run{'s' if count > 1 else ''} failed for good: {runs}; {tail}."


def check_complete(path: str | Path) -> None:
    """Raise RunsFailed, naming the failed runs, when a written comparison is not complete."""
    comparison = Comparison.read(path)
    if comparison.status != "complete":
        raise RunsFailed(f"{comparison.status} comparison ({path}): {failure_summary(comparison)}")

"""Split the seed-to-seed spread of test accuracy into its sources.

Reads run folders (``runs/<id>``) of runs that varied one source of randomness each
(``vary_seeds``: init, order, dropout) and one that varied all three, and
writes a Markdown table: per variant and source, the standard deviation of
test accuracy over the repeats with its 95% chi-square interval, and each
source's share of the sum of the single-source variances.

    python tools/seed_sources.py OUT.md RUN [RUN ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.stats import chi2

from cnnvsmlp.config import read_config
from cnnvsmlp.report.compare import read_comparison

WORDS = {
    ("init", "order", "dropout"): "all three (one seed)",
    ("init",): "initial weights only",
    ("order",): "image order only",
    ("dropout",): "dropout only",
}


def spread(accuracies: list[float]) -> tuple[float, float, float]:
    """SD of test accuracy in points, with its 95% chi-square interval."""
    values = 100 * np.asarray(accuracies)
    df = len(values) - 1
    var = float(values.var(ddof=1))
    low = np.sqrt(df * var / chi2.ppf(0.975, df))
    high = np.sqrt(df * var / chi2.ppf(0.025, df))
    return float(np.sqrt(var)), float(low), float(high)


def table(folders: list[Path]) -> str:
    """The Markdown table of the folders' spreads."""
    rows, single = [], {}
    for folder in folders:
        c = read_comparison(folder / "report" / "comparison.json")
        varied = tuple(read_config(folder / "config.json").vary_seeds)
        for v in c.variants:
            accuracies = [r.test_accuracy for r in v.runs]
            sd, low, high = spread(accuracies)
            rows.append(
                (v.variant, WORDS.get(varied, ", ".join(varied)), len(accuracies), sd, low, high)
            )
            if len(varied) == 1:
                single.setdefault(v.variant, {})[varied[0]] = sd**2
    lines = [
        "| variant | seeds varied | repeats | SD of test accuracy, points [95% CI] | share of the "
        "single-source variances |",
        "| --- | --- | ---: | --- | ---: |",
    ]
    for variant, words, n, sd, low, high in sorted(rows):
        source = next((k for k, w in WORDS.items() if w == words and len(k) == 1), None)
        total = sum(single.get(variant, {}).values())
        share = f"{single[variant][source[0]] / total:.0%}" if source and total else ""
        lines.append(f"| {variant} | {words} | {n} | {sd:.2f} [{low:.2f}, {high:.2f}] | {share} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Write the table to ``argv[0]`` from the folders after it."""
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    Path(argv[0]).write_text(table([Path(a) for a in argv[1:]]))
    print(f"seed sources: wrote {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The verdict sentences: what a pair's tests say, the rule behind them, and what repeats do."""

from __future__ import annotations

from cnnvsmlp import stats
from cnnvsmlp.records import Hardware
from cnnvsmlp.report.model import SPREAD_LIMIT, Comparison, PairComparison, VariantSummary

VERDICT_RULE = (
    "A pair differs significantly when, in every repeat, McNemar's exact test on the two "
    "variants' per-image correctness gives a Holm-adjusted p below "
    f"{stats.ALPHA:g} (Holm over all pairs of variants, within the repeat) and the accuracy "
    "difference has the same sign in every repeat. Otherwise the verdict says in how many "
    "repeats the test was not significant, or that the sign changed. A verdict's 95% CI is "
    "its tests' own, adjusted as they are: per repeat, the exact interval of the difference "
    "that McNemar's exact test inverts, at the confidence level Holm's adjustment gives that "
    "test; the verdict prints them end to end, lowest bound to highest, around the mean "
    "difference. It excludes 0 exactly when the verdict says one variant beats the other."
)


def pct(x: float) -> str:
    """A fraction as a percentage with two decimals, without the sign: ``0.9123`` -> ``91.23``."""
    return f"{100 * x:.2f}"


def number(x: float, spec: str) -> str:
    """``x`` formatted by ``spec``, with no minus sign on a value that rounds to zero."""
    text = format(x, spec)
    return format(0.0, spec) if float(text) == 0 else text


def _p_text(p: float, relation: str = "=") -> str:
    return "p < 0.001" if p < 0.001 else f"p {relation} {p:.3f}"


def verdict(
    a: str, b: str, difference: stats.Interval, p_holm: list[float], differences: list[float]
) -> str:
    """One sentence saying whether ``a`` beats ``b``, by how much and how surely.

    Args:
        a: the variant with the higher mean accuracy.
        b: the other variant.
        difference: accuracy of ``a`` minus ``b`` (fractions) with its 95% CI.
        p_holm: per repeat, the Holm-adjusted McNemar p-value.
        differences: per repeat, the accuracy difference ``a - b``.

    Returns:
        The verdict under :data:`VERDICT_RULE`, e.g. ``"cnn beats mlp by 1.4
        points, 95% CI [1.1, 1.7], p < 0.001 in all 3 repeats."``.
    """
    points = (
        f"{number(100 * difference.estimate, '.1f')} points, 95% CI "
        f"[{number(100 * difference.low, '.1f')}, {number(100 * difference.high, '.1f')}]"
    )
    n = len(p_holm)
    if stats.significant(p_holm, differences):
        if n == 1:
            return f"{a} beats {b} by {points}, {_p_text(p_holm[0])} in its single repeat."
        return f"{a} beats {b} by {points}, {_p_text(max(p_holm), '<=')} in all {n} repeats."
    not_significant = sum(p >= stats.ALPHA for p in p_holm)
    if not_significant == 0:
        ahead_a = sum(d > 0 for d in differences)
        ahead_b = sum(d < 0 for d in differences)
        return (
            f"No consistent difference between {a} and {b}: p < {stats.ALPHA:g} in every "
            f"repeat, but {a} is ahead in {ahead_a} and {b} in {ahead_b} of {n} repeats "
            f"({a} - {b} = {points})."
        )
    where = (
        f"{_p_text(p_holm[0])} in its single repeat"
        if n == 1
        else f"p >= {stats.ALPHA:g} in {not_significant} of {n} repeats"
    )
    return f"No significant difference between {a} and {b} ({where}; {a} - {b} = {points})."


# ---------------------------------------------------------------- the headline


def _family(variant: str) -> str:
    return "MLP" if variant.startswith("mlp") else "CNN"


def _strength(pairs: list[PairComparison], repeats: int) -> str:
    worst = max(t.p_holm for p in pairs for t in p.tests)
    where = "in its single repeat" if repeats == 1 else f"in all {repeats} repeats"
    return f"{_p_text(worst, '<=')} {where}"


def _points_range(pairs: list[PairComparison]) -> str:
    points = sorted(100 * p.difference.estimate for p in pairs)
    if len(points) == 1 or f"{points[0]:.1f}" == f"{points[-1]:.1f}":
        return f"{points[0]:.1f} points"
    return f"{points[0]:.1f} to {points[-1]:.1f} points"


def _within(family: str, pairs: list[PairComparison], size: int) -> str:
    plural = f"{family}s"
    if not pairs:
        return ""
    won = [p for p in pairs if p.significant]
    if not won:
        return f"the {size} {plural} are indistinguishable from each other"
    wins = "; ".join(f"{p.a} beats {p.b} by {100 * p.difference.estimate:.1f}" for p in won)
    return f"among the {plural}, {len(won)} of {len(pairs)} pairs differ ({wins} points)"


def headline(comparison: Comparison) -> str:
    """The answer in one sentence, with its strength: what the first screen leads with.

    Args:
        comparison: the comparison to sum up.

    Returns:
        E.g. ``"Every CNN beats the MLP by 3.8 to 4.8 points (p < 0.001 in all 5
        repeats); the 4 CNNs are indistinguishable from each other."``
    """
    variants = [v.variant for v in comparison.variants]
    if not variants:
        return "No variant finished: there is nothing to compare."
    if len(variants) == 1:
        acc = comparison.variants[0].test_accuracy
        return (
            f"One variant only: {variants[0]} reaches {pct(acc.estimate)}% test accuracy, "
            f"{comparison.confidence:.0%} CI [{pct(acc.low)}, {pct(acc.high)}]."
        )
    families = {v: _family(v) for v in variants}
    cnns = [v for v in variants if families[v] == "CNN"]
    mlps = [v for v in variants if families[v] == "MLP"]
    across = [p for p in comparison.pairs if families[p.a] != families[p.b]]
    parts = []
    if across:
        mlp_word = "the MLP" if len(mlps) == 1 else "every MLP"
        cnn_word = "the CNN" if len(cnns) == 1 else "every CNN"
        cnn_wins = [p for p in across if p.significant and families[p.a] == "CNN"]
        mlp_wins = [p for p in across if p.significant and families[p.a] == "MLP"]
        if len(cnn_wins) == len(across):
            subject = "The CNN" if len(cnns) == 1 else "Every CNN"
            parts.append(
                f"{subject} beats {mlp_word} by {_points_range(across)} "
                f"({_strength(across, comparison.repeats)})"
            )
        elif len(mlp_wins) == len(across):
            subject = "The MLP" if len(mlps) == 1 else "Every MLP"
            parts.append(
                f"{subject} beats {cnn_word} by {_points_range(across)} "
                f"({_strength(across, comparison.repeats)})"
            )
        else:
            rest = len(across) - len(cnn_wins) - len(mlp_wins)
            counts = [f"{len(cnn_wins)} of {len(across)} pairs favour the CNN significantly"]
            counts.append(f"{len(mlp_wins)} the MLP")
            if rest:
                counts.append(f"{rest} do not differ")
            parts.append(f"CNN against MLP is mixed: {', '.join(counts[:-1])} and {counts[-1]}")
    for family, members in (("CNN", cnns), ("MLP", mlps)):
        within = [p for p in comparison.pairs if families[p.a] == families[p.b] == family]
        text = _within(family, within, len(members))
        if text:
            parts.append(text)
    sentence = "; ".join(parts)
    return sentence[0].upper() + sentence[1:] + "."


# ---------------------------------------------------------------- reproducibility


def flag_spread(summary: VariantSummary, limit: float = SPREAD_LIMIT) -> VariantSummary:
    """The summary with its repeats' spread of test accuracy, flagged when above ``limit``.

    Args:
        summary: one variant over its repeats.
        limit: the largest max - min of the repeats' test accuracies (a
            fraction) that is not flagged.

    Returns:
        A copy with ``test_accuracy_spread`` set and, when the spread exceeds
        ``limit``, ``spread_flag``: one sentence naming the runs, as the
        verdicts print it.
    """
    accuracies = [r.test_accuracy for r in summary.runs]
    spread = max(accuracies) - min(accuracies)
    flag = ""
    if spread > limit:
        low = min(summary.runs, key=lambda r: r.test_accuracy)
        high = max(summary.runs, key=lambda r: r.test_accuracy)
        flag = (
            f"{summary.variant} is unstable: its {len(accuracies)} repeats span "
            f"{100 * spread:.2f} points of test accuracy (repeat {low.repeat}: "
            f"{pct(low.test_accuracy)}%, repeat {high.repeat}: {pct(high.test_accuracy)}%), "
            f"more than {100 * limit:g}; a single run of it says little, and differences "
            "from it smaller than the spread are not evidence."
        )
    return summary.model_copy(update={"test_accuracy_spread": spread, "spread_flag": flag})


def _numerics_text(h: Hardware) -> str:
    if h.onednn is None:
        onednn = "oneDNN not recorded"
    else:
        setting = "unset" if h.onednn_opts is None else h.onednn_opts
        onednn = f"oneDNN {'on' if h.onednn else 'off'} (TF_ENABLE_ONEDNN_OPTS {setting})"
    threads = h.intra_op_threads or h.cpu_count
    build = f"TensorFlow {h.tensorflow}" + (f" ({h.tensorflow_git})" if h.tensorflow_git else "")
    cuda = h.build.get("cuda_version")
    if cuda:
        build += f", CUDA {cuda}, cuDNN {h.build.get('cudnn_version', '?')}"
    flags = " ".join(f for f in h.cpu_flags if f.startswith(("avx", "fma", "amx")))
    machine = h.name if h.device == "gpu" else (h.cpu or h.name)
    return f"{machine} [{flags or 'extensions not recorded'}], {build}, {onednn}, {threads} threads"


def envelope(variants: list[VariantSummary]) -> str:
    """In words, what a rerun of these runs with the same seeds gives the same numbers on.

    Args:
        variants: the variants' summaries, with the machines they trained on.

    Returns:
        A paragraph: the numerics every run trained with, and what keeps a
        rerun bit-identical.
    """
    machines = {h.numerics(): h for v in variants for h in v.hardware}
    described = "; ".join(_numerics_text(h) for h in machines.values())
    if len(machines) == 1:
        where = f"Every run trained with the same numerics: {described}."
    else:
        where = f"The runs trained with {len(machines)} different numerics: {described}."
    return (
        f"{where} A rerun with the same seed gives bit-identical histories and predictions "
        "on a machine that matches in CPU model and instruction-set extensions (or GPU "
        "model), TensorFlow build, oneDNN use and thread count. Another CPU model, another "
        "oneDNN setting (TensorFlow turns oneDNN on by default on CPUs with AVX512-VNNI, "
        "AVX512-BF16, AVX-VNNI or AMX), another thread count or a GPU rounds differently: "
        "its runs are other samples from the same distribution, to be compared through the "
        "spread over repeats, not digit by digit."
    )

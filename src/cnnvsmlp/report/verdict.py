"""The verdict sentences: what a pair's difference says, the rule behind it, the headline."""

from __future__ import annotations

from cnnvsmlp import models
from cnnvsmlp.pairwise import Difference
from cnnvsmlp.records import Hardware
from cnnvsmlp.report.blocks import pct, plural, points
from cnnvsmlp.report.model import SPREAD_LIMIT, Comparison, VariantSummary

BASELINE_FAMILY = "mlp"


VERDICT_RULE = (
    "A difference is the mean over seeds of the paired accuracy difference (each seed trains "
    "both variants). Its interval counts both the seed-to-seed spread and the sampling of the "
    "test images (seeds and images as crossed random effects, Satterthwaite's t; "
    "docs/statistics.md); with one seed it covers the test images only. The verdicts form one "
    "family: the pairs of variants on the test images as they are. Each interval is at "
    "1 - 0.05/k for a family of k (Bonferroni), so the family's intervals hold together with "
    "95% confidence. A pair is 'different' when its interval excludes 0; 'equivalent within "
    "+-m points' when the two one-sided tests (TOST) reject a difference of m or more at "
    "0.05/(2k) each, exactly when the printed interval lies inside +-m; otherwise "
    "'inconclusive': neither a difference nor an equivalence is shown. p-values are "
    "Bonferroni-adjusted over the family. "
    "McNemar's exact test per repeat is a detail about the two trained networks of that repeat."
)


def family(variant: str) -> str:
    """A variant's declared family (:class:`cnnvsmlp.models.Variant`); its own name if unknown."""
    try:
        return models.get_variant(variant).family
    except (KeyError, models.ModelError):
        return variant


def _ci(d: Difference) -> str:
    return "95% CI" if d.family == 1 else "simultaneous 95% CI"


def _stated(d: Difference) -> str:
    """``+4.07 points, 95% CI [+3.41, +4.73]``: the difference ``a - b`` and its interval."""
    return f"{points(d.estimate)} points, {_ci(d)} [{points(d.low)}, {points(d.high)}]"


def _p_adjusted(p: float, d: Difference) -> str:
    text = "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
    return text if d.family == 1 else f"adjusted {text}"


def _margin(d: Difference) -> str:
    return f"+-{100 * d.margin:g} point{'s' if d.margin != 0.01 else ''}"


def _basis(d: Difference) -> str:
    one = "one seed: the interval covers the test images, not the seed-to-seed spread"
    return one if d.seeds == 1 else f"{d.seeds} seeds"


def verdict(d: Difference) -> str:
    """One sentence: whether ``a`` beats ``b``, is equivalent to it, or neither is shown."""
    if d.verdict == "different":
        won = d if d.estimate > 0 else d.flipped()
        within = f", a difference within {_margin(d)}" if d.p_equivalence_adjusted < 0.05 else ""
        p = _p_adjusted(d.p_adjusted, d)
        return f"{won.a} beats {won.b}: {_stated(won)} ({_basis(d)}, {p}{within})."
    if d.verdict == "equivalent":
        return f"{_short(d)} ({_basis(d)}, TOST {_p_adjusted(d.p_equivalence_adjusted, d)})."
    neither = f"neither a difference nor equivalence within {_margin(d)} is shown"
    return f"{_short(d)} ({_basis(d)}); {neither}."


def _short(d: Difference, interval: bool = True) -> str:
    """A pair's verdict inside the headline: the words, the size and (``interval``) its interval."""
    if d.verdict == "different":
        won = d if d.estimate > 0 else d.flipped()
        ci = f", {_ci(d)} [{100 * won.low:.2f}, {100 * won.high:.2f}]" if interval else ""
        small = f" (within {_margin(d)})" if d.p_equivalence_adjusted < 0.05 else ""
        return f"{won.a} beats {won.b} by {100 * won.estimate:.2f} points{ci}{small}"
    if d.verdict == "equivalent":
        stated = f": {d.a} - {d.b} = {_stated(d)}" if interval else ""
        return f"{d.a} and {d.b} are equivalent within {_margin(d)}{stated}"
    return f"{d.a} against {d.b} is inconclusive: {_stated(d)}"


def _within(pairs: list[Difference]) -> str:
    """The pairs inside one family, shortly: who beats whom, who is equivalent, how many neither."""
    first = sorted(pairs, key=lambda p: p.verdict != "different")
    words = [_short(p, interval=False) for p in first if p.verdict != "inconclusive"]
    if open_pairs := sum(p.verdict == "inconclusive" for p in pairs):
        some = "the pair is" if len(pairs) == 1 else f"{open_pairs} of {len(pairs)} pairs are"
        words.append(f"{some} inconclusive")
    return ", ".join(words)


def headline(comparison: Comparison) -> str:
    """The answer in one sentence: every pair across the baseline family (else all), the rest."""
    variants = [v.variant for v in comparison.variants]
    if not variants:
        return "No variant finished: there is nothing to compare."
    budget = f"After {plural(comparison.epochs, 'epoch')}"
    if len(variants) == 1:
        acc = comparison.variants[0].test_accuracy
        return (
            f"{budget}, one variant only: {variants[0]} reaches {pct(acc.estimate)}% test "
            f"accuracy, {comparison.confidence:.0%} CI [{pct(acc.low)}, {pct(acc.high)}]."
        )
    pairs = comparison.pairs
    # Pairs across families, one side the baseline's: their families a proper superset of it.
    across = [p for p in pairs if {family(p.a), family(p.b)} > {BASELINE_FAMILY}]
    primary = across or pairs
    basis = f"{pairs[0].seeds} seeds and the test images"
    if pairs[0].seeds == 1:
        basis = "one seed: the intervals cover the test images only"
    if len(pairs) > 1:
        basis += f"; simultaneous over the {len(pairs)} pairs"
    text = f"{budget}, " + "; ".join(_short(p) for p in primary) + f" ({basis})"
    rest = [p for p in pairs if p not in primary]
    for name in dict.fromkeys(family(p.a) for p in rest):
        text += f"; among the {name.upper()}s, {_within([p for p in rest if family(p.a) == name])}"
    return text + "."


def caveats(comparison: Comparison) -> list[tuple[str, str]]:
    """What limits the verdicts, as ``(lead, sentence)``: the training budget, what seeds varied."""
    if not comparison.variants:
        return []
    late = [
        f"{v.variant} in {n} of {len(v.runs)}"
        for v in comparison.variants
        if (n := sum(r.best_epoch == r.epochs for r in v.runs))
    ]
    epochs = plural(comparison.epochs, "epoch")
    budget = f"Every network trained for {epochs}, the same for every variant."
    if late and comparison.epochs > 1:
        budget += (
            " The best validation accuracy came in the last epoch for "
            f"{', '.join(late)} runs: those were still improving, so the verdicts compare "
            f"networks after {epochs}, not converged ones."
        )
    found = [("Training budget", budget)]
    if comparison.repeats == 1:
        return found
    varied = comparison.config.vary_seeds if comparison.config else ["init", "order", "dropout"]
    words = {"init": "the initial weights", "order": "the image order", "dropout": "dropout"}
    if len(varied) == len(words):
        text = (
            "each repeat's one seed set the initial weights, the image order and dropout "
            "together: the spread over seeds is their joint effect "
            "(docs/statistics.md splits it by source)."
        )
    else:
        held = [w for k, w in words.items() if k not in varied]
        text = (
            f"the repeats varied only {' and '.join(words[k] for k in varied)}; "
            f"{' and '.join(held)} stayed at repeat 0's seed: the intervals cover that "
            "source's spread, not the whole seed-to-seed spread."
        )
    return [*found, ("Seeds", text)]


def flag_spread(summary: VariantSummary, limit: float = SPREAD_LIMIT) -> VariantSummary:
    """The summary with its repeats' spread of test accuracy, flagged above ``limit``."""
    low = min(summary.runs, key=lambda r: r.test_accuracy)
    high = max(summary.runs, key=lambda r: r.test_accuracy)
    spread = high.test_accuracy - low.test_accuracy
    flag = ""
    if spread > limit:
        flag = (
            f"{summary.variant} is unstable: its {len(summary.runs)} repeats span "
            f"{100 * spread:.2f} points of test accuracy (repeat {low.repeat}: "
            f"{pct(low.test_accuracy)}%, repeat {high.repeat}: {pct(high.test_accuracy)}%), "
            f"more than {100 * limit:g}: a single run of it says little; the intervals over "
            "seeds carry this spread."
        )
    return summary.model_copy(update={"test_accuracy_spread": spread, "spread_flag": flag})


def _numerics_text(h: Hardware) -> str:
    setting = "unset" if h.onednn_opts is None else h.onednn_opts
    onednn = f"oneDNN {'on' if h.onednn else 'off'} (TF_ENABLE_ONEDNN_OPTS {setting})"
    if h.onednn is None:
        onednn = "oneDNN not recorded"
    threads = h.intra_op_threads or h.cpu_count
    build = f"TensorFlow {h.tensorflow}" + (f" ({h.tensorflow_git})" if h.tensorflow_git else "")
    if cuda := h.build.get("cuda_version"):
        build += f", CUDA {cuda}, cuDNN {h.build.get('cudnn_version', '?')}"
    flags = " ".join(f for f in h.cpu_flags if f.startswith(("avx", "fma", "amx")))
    machine = h.name if h.device == "gpu" else (h.cpu or h.name)
    return f"{machine} [{flags or 'extensions not recorded'}], {build}, {onednn}, {threads} threads"


def envelope(variants: list[VariantSummary]) -> str:
    """A paragraph: the numerics the runs trained with, and what keeps a rerun bit-identical."""
    machines = {h.numerics(): h for v in variants for h in v.hardware}
    described = "; ".join(_numerics_text(h) for h in machines.values())
    where = f"Every run trained with the same numerics: {described}."
    if len(machines) > 1:
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

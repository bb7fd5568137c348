"""The data-efficiency comparison: each variant against the first (the baseline) per size."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from cnnvsmlp import pairwise
from cnnvsmlp.config import ExperimentConfig, StoppingRule
from cnnvsmlp.data.store import labels_digest
from cnnvsmlp.efficiency import curves as fits
from cnnvsmlp.efficiency.curves import EfficiencyAnalysis
from cnnvsmlp.errors import UserError
from cnnvsmlp.pairwise import accuracy_interval
from cnnvsmlp.provenance import Provenance
from cnnvsmlp.records import EvalResult, RunFailure
from cnnvsmlp.report.model import distinct
from cnnvsmlp.training_files import decide

Runs = dict[tuple[str, int], dict[int, EvalResult]]  # by variant and size, then repeat


class EfficiencyRunsFailed(UserError):
    """Some runs of the study failed for good: its comparison is partial, or there is none."""


def _point(result: EvalResult, rule: StoppingRule, max_epochs: int) -> fits.RunPoint:
    """A run as the comparison sees it: where its training stopped (by the rule, if not early)."""
    history, stop = result.training.history, result.training.early_stop
    d = stop or decide([e.val_loss for e in history], rule, max_epochs)
    return fits.RunPoint(
        repeat=result.run.repeat,
        seed=result.run.seed,
        test_accuracy=result.accuracy,
        epochs=len(history),
        stop_epoch=stop.stopped_epoch if stop else d.epochs,
        best_epoch=d.best_epoch,
        capped_improving=d.capped_improving,
        stopped_by=d.reason or "",
        shifted_accuracy={s.shift: s.accuracy for s in result.shifted},
    )


def _grouped(results: list[EvalResult | RunFailure], labels: np.ndarray) -> Runs:
    """The evaluations by variant and size, then repeat; a UserError if one is not the study's."""
    digest = labels_digest(labels)
    by_key: dict[tuple[str, int], dict[int, EvalResult]] = defaultdict(dict)
    for r in (r for r in results if not isinstance(r, RunFailure)):
        if r.run.n_train is None:
            raise UserError(f"{r.run.run_id}: no n_train; not a run of the data-efficiency plan")
        if r.labels_sha256 != digest:
            raise UserError(f"{r.run.run_id}: scored on other test labels than the data set's")
        by_key[(r.run.variant, r.run.n_train)][r.run.repeat] = r
    return by_key


def analyze(
    results: list[EvalResult | RunFailure],
    config: ExperimentConfig,
    efficiency: fits.EfficiencyConfig,
    test_labels: np.ndarray,
    bootstrap_samples: int | None = None,
    provenance: Provenance | None = None,
) -> EfficiencyAnalysis:
    """Compare the runs of a study: ``partial`` when some failed, ``failed`` with no gap left."""
    by_key = _grouped(results, test_labels)
    failures = [r for r in results if isinstance(r, RunFailure)]
    sizes = sorted({n for _, n in by_key})
    variants, max_epochs, rule = config.variants, config.train.epochs, efficiency.stopping
    n_test = len(test_labels)
    points = [  # each variant at each size it has runs at: its accuracy over repeats, each run
        fits.SizeSummary(
            variant=v,
            n_train=n,
            accuracy=accuracy_interval([round(r.accuracy * r.n_test) for r in ordered], n_test),
            runs=[_point(r, rule, max_epochs) for r in ordered],
        )
        for v, n in itertools.product(variants, sizes)
        for ordered in [[by_key[(v, n)][k] for k in sorted(by_key.get((v, n), {}))]]
        if ordered
    ]
    margin = config.equivalence_margin / 100
    found = _size_estimates(by_key, variants, sizes, test_labels)
    gaps = [  # a family per variant
        d for v in variants[1:] for d in pairwise.decide([e for e in found if e.a == v], margin)
    ]
    scores = {key: {k: r.accuracy for k, r in runs.items()} for key, runs in by_key.items()}
    return EfficiencyAnalysis(
        experiment=config.name,
        dataset=config.dataset,
        n_test=n_test,
        variants=list(variants),
        baseline=variants[0],
        sizes=sizes,
        repeats=config.repeats,
        stopping=rule,
        max_epochs=max_epochs,
        margin=margin,
        points=points,
        gaps=gaps,
        **_curves(scores, variants, sizes, bootstrap_samples),
        **_shift_results(by_key, variants, sizes, test_labels, margin),
        status="complete" if not failures else ("partial" if gaps else "failed"),
        failures=failures,
        provenance=provenance or Provenance(),
        hardware=distinct(r.training.hardware for runs in by_key.values() for r in runs.values()),
    )


def _correct(runs: dict[int, EvalResult], labels: np.ndarray, shift: int) -> dict[int, np.ndarray]:
    """Per repeat that has this shift, whether each (shifted) test image was right."""
    out = {}
    for k, r in runs.items():
        found = {0: r.predictions, **{s.shift: s.predictions for s in r.shifted}}
        if len(found.get(shift, [])) == len(labels):
            out[k] = np.asarray(found[shift]) == labels
    return out


def _size_estimates(
    by_key: Runs, variants: list[str], sizes: list[int], labels: np.ndarray, shifts=(0,)
) -> list[pairwise.Estimate]:
    """Each variant minus the first (the baseline) at each size (and shift), paired by repeat."""
    found, baseline = [], variants[0]
    for v, n, s in itertools.product(variants[1:], sizes, shifts):
        mine = _correct(by_key.get((v, n), {}), labels, s)
        base = _correct(by_key.get((baseline, n), {}), labels, s)
        if shared := sorted(set(mine) & set(base)):
            a, b = (np.array([c[k] for k in shared]) for c in (mine, base))
            repeats = shared if s == 0 else None
            found.append(pairwise.estimate(v, baseline, a, b, repeats, n_train=n, shift=s))
    return found


def _curves(
    scores: dict[tuple[str, int], dict[int, float]], variants: list[str], sizes: list, samples=None
) -> dict[str, list]:
    """Each family's ``curves`` and ``holdouts``, and the ``multipliers``, from accuracies."""
    finished = [set(scores.get((v, n), {})) for v in variants for n in sizes]
    repeats = sorted(set.intersection(*finished)) if finished else []
    why = "" if len(sizes) >= 3 else "fewer than three sizes"
    why = why if repeats else "no repeat finished at every size for every variant"
    accuracy = {
        v: np.array([[scores[(v, n)][k] for k in repeats] for n in sizes]) for v in variants
    }
    samples = samples or fits.BOOTSTRAP_SAMPLES
    base = accuracy[variants[0]] if variants else None
    curves, holdouts = [], []
    for v in variants if not why else ():
        error = 1 - accuracy[v]
        for family in fits.FAMILIES:
            with contextlib.suppress(ValueError, RuntimeError):
                curves.append(fits.fit(family, np.repeat(sizes, len(repeats)), error.ravel()))
            holdouts.append(fits.holdout(v, family, sizes, error))
    found = [
        fits.VariantMultipliers(
            variant=v,
            baseline=variants[0],
            multipliers=[] if why else fits.multipliers(sizes, base, accuracy[v], samples),
            error=why,
        )
        for v in variants[1:]
    ]
    return {"curves": curves, "holdouts": holdouts, "multipliers": found}


def _shift_results(
    by_key: Runs, variants: list[str], sizes: list[int], labels: np.ndarray, margin: float
) -> dict[str, list]:
    """Accuracy and gap at every shift the runs were scored on; shift 0 is the test split."""
    shifts = sorted({s.shift for runs in by_key.values() for r in runs.values() for s in r.shifted})
    points = [
        fits.ShiftPoint(
            variant=v,
            n_train=n,
            shift=s,
            accuracy=accuracy_interval([int(c.sum()) for c in correct.values()], len(labels)),
        )
        for v, n, s in itertools.product(variants, sizes, (0, *shifts) if shifts else ())
        for correct in [_correct(by_key.get((v, n), {}), labels, s)]
        if correct
    ]
    estimates = _size_estimates(by_key, variants, sizes, labels, tuple(shifts))
    return {"shift_points": points, "shift_gaps": pairwise.decide(estimates, margin)}


def read_analysis(path: str | Path, bootstrap_samples: int | None = None) -> EfficiencyAnalysis:
    """An analysis in this schema, or restated from ``efficiency/1``'s counts and accuracies."""
    text = Path(path).read_text()
    record = json.loads(text)
    if not isinstance(record, dict) or record.get("schema_version") != "efficiency/1":
        return EfficiencyAnalysis.model_validate_json(text)
    sizes = [int(n) for n in record["sizes"]]
    runs = {(p["variant"], int(p["n_train"])): p["runs"] for p in record["points"]}
    scores = {key: {r["repeat"]: r["test_accuracy"] for r in rs} for key, rs in runs.items()}
    shifted = {key: {r["repeat"]: r["shifted_accuracy"] for r in rs} for key, rs in runs.items()}
    record.update(
        _curves(scores, record["variants"], sizes, bootstrap_samples),
        schema_version=fits.SCHEMA_VERSION,
        gaps=_restated_gaps(record),
        shift_gaps=_restated_shift_gaps(record, shifted),
    )
    return EfficiencyAnalysis.model_validate(record)


def _restated_gaps(record: dict) -> list[pairwise.Difference]:
    """An ``efficiency/1`` record's gaps, bounded from McNemar counts; a family per variant."""
    names = {"only_variant_correct": "only_a_correct", "only_baseline_correct": "only_b_correct"}
    gaps = []
    for v in record["variants"][1:]:
        found = []
        for g in (g for g in record["gaps"] if g["variant"] == v):
            tests = [{names.get(k, k): x for k, x in t.items()} for t in g["tests"]]
            found.append((v, record["baseline"], tests, {"n_train": int(g["n_train"])}))
        gaps += pairwise.from_counts(found, int(record["n_test"]))
    return gaps


def _restated_shift_gaps(record: dict, shifted: dict) -> list[pairwise.Difference]:
    """The shifted gaps from each repeat's two accuracies (their sum bounds the disagreement)."""
    n_test, baseline = int(record["n_test"]), record["baseline"]
    found = []
    for v, n in itertools.product(record["variants"][1:], (int(n) for n in record["sizes"])):
        mine, base = shifted.get((v, n), {}), shifted.get((baseline, n), {})
        shared = sorted(set(mine) & set(base))
        for shift in sorted({int(s) for k in shared for s in mine[k]}):
            pairs = [(mine[k][str(shift)], base[k][str(shift)]) for k in shared]
            d = [x - y for x, y in pairs]
            q = [min(x + y, 2 - x - y) for x, y in pairs]
            found.append(pairwise.bounded(v, baseline, d, q, n_test, n_train=n, shift=shift))
    return pairwise.decide(found)


def check_complete(path: str | Path) -> None:
    """Raise EfficiencyRunsFailed, naming the failed runs, when an analysis is not complete."""
    analysis = EfficiencyAnalysis.read(path)
    if analysis.status != "complete":
        runs = "; ".join(f"{f.run.run_id} ({f.error}: {f.message})" for f in analysis.failures)
        raise EfficiencyRunsFailed(
            f"{analysis.status} data-efficiency comparison ({path}): "
            f"{len(analysis.failures)} runs failed for good: {runs}"
        )

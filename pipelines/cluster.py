"""Submit and schedule pipelines on a Kubeflow Pipelines cluster (docs/cluster.md, steps 9-11)."""

import json
import re
import tempfile
from datetime import UTC, date, datetime, timedelta

from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp.provenance import Provenance, stamp
from cnnvsmlp_pipelines import compile_pipeline, get_pipeline
from cnnvsmlp_pipelines.cluster_access import ClusterError, Target, call, connect, preflight
from cnnvsmlp_pipelines.settings import cluster_settings

# robfig/cron v1 (spec.go), as KFP parses cron: each field's bounds and names; "?" means "*".
_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_WEEKDAYS = "sun mon tue wed thu fri sat".split()
_CRON_FIELDS = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i for i, m in enumerate(_MONTHS, 1)}),
    ("day of week", 0, 6, {d: i for i, d in enumerate(_WEEKDAYS)}),
)
_CRON_DESCRIPTORS = "@yearly @annually @monthly @weekly @daily @midnight @hourly".split()
# Go's time.ParseDuration: a sign, then numbers with units, in seconds.
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1}
_GO_UNITS |= {"m": 60, "h": 3600}
_GO_NUMBER = r"(\d+\.?\d*|\.\d+)"
_GO_DURATION = re.compile(r"[-+]?(?:" + _GO_NUMBER + "(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+")


def _cron_number(cron: str, name: str, names: dict, part: str) -> int:
    if part.lower() in names:
        return names[part.lower()]
    if not re.fullmatch(r"[+-]?\d+", part):
        raise ClusterError(f"cron {cron!r}: {name} {part!r} is not a number")
    if int(part) < 0:
        raise ClusterError(f"cron {cron!r}: {name} {part!r} is negative")
    return int(part)


def _cron_range(cron: str, expr: str, name: str, low: int, high: int, names: dict) -> range:
    """The values one part of a field selects, as robfig's getRange reads it."""
    span, *steps = expr.split("/")
    bounds = span.split("-")
    star = bounds[0] in ("*", "?")

    def fail(why: str) -> ClusterError:
        return ClusterError(f"cron {cron!r}: {name} {expr!r} {why}")

    if len(steps) > 1:
        raise fail("has more than one '/'")
    if len(bounds) > 2 and not star:
        raise fail("has more than one '-'")
    start, end = low, high
    if not star:
        start, end = (_cron_number(cron, name, names, b) for b in (bounds[0], bounds[-1]))
    step = _cron_number(cron, name, names, steps[0]) if steps else 1
    if steps and len(bounds) == 1:
        end = high  # "N/step" means "N-max/step"
    if start < low or end > high:
        raise fail(f"is out of range; it takes {low}-{high}")
    if start > end:
        raise fail("begins after it ends")
    if step == 0:
        raise fail("has a step of 0")
    return range(start, end + 1, step)


def _cron_fires(dom: tuple, months: tuple, dow: tuple, today: date) -> bool:
    """Whether a day of the next five years matches; with no star in either day field, one does."""
    star = dom[1] or dow[1]
    # robfig's Next gives up after five years: a schedule with no time in them never fires.
    for day in (today + timedelta(days=offset) for offset in range(5 * 366)):
        by_dom, by_dow = day.day in dom[0], (day.weekday() + 1) % 7 in dow[0]
        if day.month in months[0] and ((by_dom and by_dow) if star else (by_dom or by_dow)):
            return True
    return False


def _cron_descriptor(cron: str, text: str) -> str:
    if text in _CRON_DESCRIPTORS:
        return text
    every = text.removeprefix("@every ").strip()
    if text.startswith("@every ") and _GO_DURATION.fullmatch(every):
        units = re.findall(_GO_NUMBER + r"(\D+)", every)
        if every.startswith("-") or sum(float(n) * _GO_UNITS[u] for n, u in units) < 1:
            raise ClusterError(f"cron {cron!r}: @every takes a duration of 1s or more")
        return f"@every {every}"
    raise ClusterError(
        f"cron {cron!r}: unknown descriptor; KFP takes {', '.join(_CRON_DESCRIPTORS)} "
        "and '@every <duration>' (e.g. '@every 1h30m')"
    )


def check_cron(cron: str, today: date | None = None) -> str:
    """``cron`` with single spaces; ClusterError unless KFP reads it as meant and it fires."""
    text = cron.strip()
    if text.startswith("@"):
        return _cron_descriptor(cron, text)
    fields = text.split()
    if len(fields) == 5:
        raise ClusterError(
            f"cron {cron!r} has 5 fields: KFP's cron has 6, seconds first "
            f"('0 {text}' runs at the time you meant); KFP would read the 5 fields "
            "shifted by one place and run at the wrong times"
        )
    if len(fields) != 6:
        raise ClusterError(
            f"cron {cron!r}: expected 6 fields, seconds first, e.g. '0 0 3 * * 1' (Mondays "
            "03:00), or a descriptor such as '@weekly'"
        )
    parsed = []  # each field's values and whether it holds a star, as robfig's getField reads it
    for field, spec in zip(fields, _CRON_FIELDS, strict=True):
        parts = [e for e in field.split(",") if e]
        values = {v for e in parts for v in _cron_range(cron, e, *spec)}
        parsed.append((values, any(e.split("/")[0].split("-")[0] in ("*", "?") for e in parts)))
    if not _cron_fires(parsed[3], parsed[4], parsed[5], today or date.today()):
        raise ClusterError(
            f"cron {cron!r}: no day of the next five years matches its day of month, month "
            "and day of week, so KFP would accept it and never run it"
        )
    return " ".join(fields)


def _name_filter(name: str) -> str:
    return json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
    )


def _find_id(client, target: Target, kind: str, name: str) -> str | None:
    """The id of the ``pipeline`` or ``experiment`` of that name in the namespace, or None."""
    listed = call(
        target,
        f"look up {kind} {name}",
        getattr(client, f"list_{kind}s"),
        filter=_name_filter(name),
        namespace=target.namespace,
    )
    found = getattr(listed, f"{kind}s") or []
    if len(found) > 1:
        raise ClusterError(
            f"{target.host}: {len(found)} {kind} {name}s of that name; "
            "delete all but one in the KFP UI"
        )
    return getattr(found[0], f"{kind}_id") if found else None


def _upload(client, target: Target, name: str, package: str) -> tuple[str, str]:
    """Upload a compiled pipeline, as a new version of the one of that name if there is one."""
    pipeline_id = _find_id(client, target, "pipeline", name)
    if pipeline_id is None:
        pipeline_id = call(
            target,
            f"upload pipeline {name}",
            client.upload_pipeline,
            package,
            pipeline_name=name,
            namespace=target.namespace,
        ).pipeline_id
    uploaded = call(
        target,
        f"upload a version of {name}",
        client.upload_pipeline_version,
        package,
        pipeline_version_name=datetime.now(UTC).strftime(f"{name}-%Y%m%d-%H%M%S"),
        pipeline_id=pipeline_id,
    )
    return pipeline_id, uploaded.pipeline_version_id


def _recurring_runs(client, target: Target, experiment_id: str, name: str) -> list[str]:
    """The ids of every recurring run of that name in the experiment, through every page."""
    found, token = [], ""
    while True:
        listed = call(
            target,
            "list recurring runs",
            client.list_recurring_runs,
            page_token=token,
            page_size=100,
            experiment_id=experiment_id,
            filter=_name_filter(name),
        )
        found += [r.recurring_run_id for r in listed.recurring_runs or [] if r.display_name == name]
        token = listed.next_page_token or ""
        if not token:
            return found


def cluster_config(config: ExperimentConfig) -> ExperimentConfig:
    """The config a cluster run gets: training state mirrored to ``gs://<BUCKET>/resume``."""
    if config.resume_uri:
        return config
    return config.model_copy(update={"resume_uri": f"gs://{cluster_settings().bucket}/resume"})


def _prepare(
    pipeline: str, config: ExperimentConfig, experiment: str, provenance: Provenance | None = None
) -> tuple[Target, object, dict]:
    """Compile, check, connect, upload, make the experiment: the arguments every run shares."""
    target = Target.from_env(cluster_settings())
    with tempfile.TemporaryDirectory() as tmp:
        package = str(compile_pipeline(pipeline, tmp))
        preflight(package, cluster_settings())
        client = connect(target)
        pipeline_id, version_id = _upload(client, target, pipeline, package)
    created = call(
        target,
        f"create experiment {experiment}",
        client.create_experiment,
        experiment,
        namespace=target.namespace,
    )
    shared = {
        "experiment_id": created.experiment_id,
        "params": get_pipeline(pipeline).arguments(cluster_config(config), provenance),
        "pipeline_id": pipeline_id,
        "version_id": version_id,
        "service_account": cluster_settings().service_account,
        "pipeline_root": target.pipeline_root,
    }
    return target, client, shared


def submit(pipeline: str, config: ExperimentConfig, experiment: str | None = None) -> str:
    """Compile, upload and start one run; print and return its id."""
    # The commit and time of this submission; the comparison takes KFP's job id as the run id.
    provenance = stamp("", "cluster")
    experiment = experiment or config.name
    target, client, shared = _prepare(pipeline, config, experiment, provenance)
    job = f"{pipeline}-{config.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    run = call(target, "start the run", client.run_pipeline, job_name=job, **shared)
    print(f"submit: run {run.run_id} in experiment {experiment}")
    print(f"submit: {target.host}/#/runs/details/{run.run_id}")
    return run.run_id


def schedule(
    pipeline: str, config: ExperimentConfig, cron: str, experiment: str | None = None
) -> str:
    """Create the recurring run (no catch-up, one at a time), then delete older ones of its name."""
    cron = check_cron(cron)
    experiment = experiment or config.name
    target, client, shared = _prepare(pipeline, config, experiment)
    name = f"{pipeline}-{config.name}-schedule"  # one per pipeline and experiment config
    # No enable_caching: kfp.Client applies it only to a package, never to a version; the
    # uploaded IR turns caching off for training, evaluation and comparison.
    new_id = call(
        target,
        "create the recurring run",
        client.create_recurring_run,
        job_name=name,
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        **shared,
    ).recurring_run_id
    found = _recurring_runs(client, target, shared["experiment_id"], name)
    for old in [run_id for run_id in found if run_id != new_id]:
        what = f"delete the replaced recurring run {old} (delete it with 'make unschedule' and "
        call(target, what + "schedule again)", client.delete_recurring_run, old)
        print(f"schedule: replaced recurring run {old} ({name})")
    print(f"schedule: recurring run {new_id} '{cron}' in experiment {experiment}")
    print(f"schedule: {target.host}/#/recurringrun/details/{new_id}")
    return new_id


def unschedule(pipeline: str, config: ExperimentConfig, experiment: str | None = None) -> int:
    """Delete the recurring runs :func:`schedule` made for this pipeline and config; count them."""
    target = Target.from_env(cluster_settings())
    client = connect(target)
    name = f"{pipeline}-{config.name}-schedule"
    experiment = experiment or config.name
    experiment_id = _find_id(client, target, "experiment", experiment)
    if experiment_id is None:
        print(f"unschedule: no experiment named {experiment}, so no recurring run {name}")
        return 0
    found = _recurring_runs(client, target, experiment_id, name)
    for run_id in found:
        call(target, f"delete recurring run {run_id}", client.delete_recurring_run, run_id)
        print(f"unschedule: deleted recurring run {run_id} ({name})")
    if not found:
        print(f"unschedule: no recurring run named {name}")
    return len(found)

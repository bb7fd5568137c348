"""Command line: the entry points behind the Makefile's verbs."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from cnnvsmlp.config import DEFAULT_PRESET, load_config, preset_names
from cnnvsmlp.errors import UserError
from cnnvsmlp_pipelines import compile_pipeline, get_pipeline
from cnnvsmlp_pipelines.runs import list_runs


def _name(value: str) -> str:
    """A path or name argument: refused when empty, blank or holding a NUL byte."""
    if not value.strip():
        raise argparse.ArgumentTypeError("is empty; give a name, or leave the option out")
    if "\0" in value:
        raise argparse.ArgumentTypeError(f"{value!r} holds a NUL byte; give a plain name")
    return value


YES, NO = ("1", "yes", "y", "true", "on"), ("0", "no", "n", "false", "off", "")

SWITCHES = {"--cache": ("", "--no-cache"), "--verbose": ("--verbose", "")}


def _switches(argv: Sequence[str]) -> list[str]:
    """``argv`` with make's ``--cache=VALUE`` and ``--verbose=VALUE``: each its flag, or none."""
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if not eq or name not in SWITCHES:
            out.append(arg)
            continue
        word = value.strip().lower()
        if word not in YES + NO:
            raise UserError(
                f"{name}={value}: neither yes nor no; give one of {', '.join(YES + NO[:-1])} "
                f"(make: {name[2:].upper()}=yes or =no)"
            )
        out += [flag for flag in [SWITCHES[name][word in NO]] if flag]
    return out


def _load_config(args: argparse.Namespace):
    """The config ``--config`` names, or else the pipeline's preset, with the overrides."""
    name = args.config
    if name is None and getattr(args, "pipeline", None):
        name = get_pipeline(args.pipeline).preset
    return load_config(name or DEFAULT_PRESET, args.overrides)


def cmd_models(args: argparse.Namespace) -> None:
    """Print every variant once per data set: the presets listing it, its layers and parameters."""
    from tabulate import tabulate

    from cnnvsmlp.data.spec import get_spec
    from cnnvsmlp.models import VARIANTS, build_model

    presets = [load_config(preset) for preset in preset_names()]
    datasets = sorted({c.dataset for c in presets})
    rows = []
    for name, variant in VARIANTS.items():
        # One row per data set, naming every preset that lists the variant on it; a variant
        # no preset lists runs with variants=..., counted on every data set.
        listed = {
            d: [c.name for c in presets if d == c.dataset and name in c.variants] for d in datasets
        }
        for dataset in [d for d in datasets if listed[d]] or datasets:
            spec = get_spec(dataset)
            params = build_model(name, spec.image_shape, len(spec.classes)).count_params()
            where = ", ".join(listed[dataset]) or "variants=" + name
            shape = "x".join(map(str, spec.image_shape))
            rows.append(
                [name, dataset, shape, where, variant.seed_writeup, variant.summary, f"{params:,}"]
            )
    headers = ["variant", "data set", "input", "presets", "seed", "layers", "parameters"]
    print(tabulate(rows, headers=headers))


def cmd_prepare(args: argparse.Namespace) -> None:
    """Read and normalise the config's data set into a folder."""
    from cnnvsmlp.data import prepare

    config = _load_config(args)
    out = args.out or f"data/{config.dataset}"
    meta = prepare(config.dataset, config.source, config.split, out, config.limit)
    counts = ", ".join(f"{k} {v:,}" for k, v in meta["counts"].items())
    print(f"prepare: {config.dataset} from {meta['source']} -> {out} ({counts})")


def cmd_ensure_data(args: argparse.Namespace) -> None:
    """Make sure Fashion-MNIST's offline files exist, installing Debian's package if root."""
    from cnnvsmlp.data import ensure_fashion_mnist

    ensure_fashion_mnist(quiet=args.quiet, require=args.require)


def cmd_synth_emnist(args: argparse.Namespace) -> None:
    """Write a synthetic EMNIST Letters stand-in in NIST's file layout."""
    from cnnvsmlp.data.spec import DATASETS
    from cnnvsmlp.synthetic import write_nist_layout

    official = DATASETS["emnist-letters"].official_counts
    if args.train < 26 or args.test < 26:
        raise UserError("synth-emnist: --train and --test must each be at least 26")
    if args.train > official["train"] or args.test > official["test"]:
        raise UserError(
            f"synth-emnist: --train and --test may be at most NIST's counts, "
            f"{official['train']:,} and {official['test']:,}"
        )
    if not 0 <= args.seed < 2**32:
        raise UserError("synth-emnist: --seed must be from 0 to 2**32 - 1")
    out = write_nist_layout(args.out, args.train, args.test, args.seed)
    print(
        f"synth-emnist: {args.train:,} train and {args.test:,} test images in NIST layout -> {out}"
    )


def cmd_run(args: argparse.Namespace) -> None:
    """Run a pipeline with kfp's local runner."""
    from cnnvsmlp_pipelines.local_runner import run_local

    if args.resume and (args.overrides or args.config is not None):
        raise UserError(
            f"--resume {args.resume}: a resumed run keeps its recorded config; "
            "leave out --config and the KEY=VALUE overrides"
        )
    if args.resume:  # a run id, or a run folder's path
        path = Path(args.resume.rstrip("/") or "/")
        if path.name in ("", ".", ".."):
            raise UserError(f"--resume {args.resume}: not a run; 'cnnvsmlp runs' lists the runs")
        if len(path.parts) > 1 and (path / "config.json").is_file():
            args.runs_dir, args.resume = str(path.parent), path.name
        elif len(path.parts) == 1:
            args.resume = path.name
    config = None if args.resume else _load_config(args)
    run_local(
        args.pipeline,
        config,
        runs_dir=args.runs_dir,
        runner=args.runner,
        verbose=args.verbose,
        resume=args.resume,
        cache=not args.no_cache,
    )


def cmd_runs(args: argparse.Namespace) -> None:
    """List the local runs: status, date, config and the best variant's accuracy."""
    from tabulate import tabulate

    rows = list_runs(args.runs_dir)
    if not rows:
        print(f"runs: no runs in {args.runs_dir}")
        return
    print(tabulate([list(r.values()) for r in rows], headers=list(rows[0])))


def cmd_compile(args: argparse.Namespace) -> None:
    """Compile a pipeline to IR YAML."""
    path = compile_pipeline(args.pipeline, args.out)
    print(f"compile: {args.pipeline} -> {path}")


def cmd_cluster(args: argparse.Namespace) -> None:
    """Submit, schedule or unschedule (``args.command``) on a KFP cluster."""
    from cnnvsmlp_pipelines import cluster

    cron = {"cron": args.cron} if args.command == "schedule" else {}
    verb = getattr(cluster, args.command)
    verb(args.pipeline, _load_config(args), experiment=args.experiment, **cron)


CLUSTER_VERBS = {
    "submit": "Compile, upload and start a run on a KFP cluster.",
    "unschedule": "Delete the recurring run of a pipeline.",
    "schedule": "Create a recurring run on a KFP cluster.",
}


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, naming the command and where its help is."""

    def error(self, message: str) -> NoReturn:  # noqa: D102
        self.exit(2, f"error: {self.prog}: {message}; see '{self.prog} --help'\n")


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``, taking KEY=VALUE overrides before, between or after the options."""
    args, rest = parser.parse_known_args(argv)
    overrides = [a for a in rest if "=" in a and not a.startswith("-")]
    unknown = [a for a in rest if a not in overrides]
    if unknown or (overrides and not hasattr(args, "overrides")):
        command = _Parser(prog=f"{parser.prog} {args.command}")
        command.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    return args


def _command(sub, func, *groups: str, name: str = "", text: str = "") -> argparse.ArgumentParser:
    """The subcommand ``func`` runs (``cmd_ensure_data``: ``ensure-data``), its groups added."""
    name = name or func.__name__[4:].replace("_", "-")
    p = sub.add_parser(name, help=text or func.__doc__)
    p.set_defaults(func=func)
    if "pipeline" in groups:
        p.add_argument("--pipeline", default="compare", help="registered pipeline name")
    if "config" in groups:
        p.add_argument(
            "--config",
            type=_name,
            help="preset name or YAML file (default: the pipeline's preset, else "
            f"{DEFAULT_PRESET})",
        )
        p.add_argument(
            "overrides",
            nargs="*",
            metavar="KEY=VALUE",
            help="config overrides, e.g. epochs=1 repeats=3 limit=3000 variants=cnn,mlp",
        )
    return p


def _runs_dir(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument(
        "--runs-dir", type=_name, default="runs", help=f"where run folders {verb} (default: runs)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="cnnvsmlp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _command(sub, cmd_models)
    p = _command(sub, cmd_prepare, "config")
    p.add_argument("--out", type=_name, help="output folder (default: data/<data set>)")
    p = _command(sub, cmd_ensure_data)
    p.add_argument("--quiet", action="store_true", help="say nothing when present")
    p.add_argument("--require", action="store_true", help="fail when absent")
    p = _command(sub, cmd_synth_emnist)
    p.add_argument(
        "--out", type=_name, default="data/emnist-synthetic", help="folder (default: %(default)s)"
    )
    for flag, count, what in (("--train", 20800, "training"), ("--test", 5200, "test")):
        p.add_argument(flag, type=int, default=count, help=f"{what} images (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p = _command(sub, cmd_run, "pipeline", "config")
    _runs_dir(p, "go")
    p.add_argument(
        "--runner",
        choices=("subprocess", "docker"),
        default="subprocess",
        help="subprocess: every task in this venv; docker: every task in the image the "
        "pipeline names for it, built by 'make images' (default: %(default)s)",
    )
    p.add_argument(
        "--resume",
        type=_name,
        metavar="RUN",
        help="continue an interrupted run (its id or folder) in its folder, with its config",
    )
    p.add_argument(
        "--no-cache", action="store_true", help="train again what an earlier run already trained"
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="stream every task's output too, as kfp prints it",
    )
    _runs_dir(_command(sub, cmd_runs), "are")
    p = _command(sub, cmd_compile, "pipeline")
    p.add_argument("--out", type=_name, default="build", help="output folder (default: build)")
    for verb, what in CLUSTER_VERBS.items():
        p = _command(sub, cmd_cluster, "pipeline", "config", name=verb, text=what)
        if verb == "schedule":
            p.add_argument("--cron", required=True, help="KFP cron: 6 fields, seconds first")
        p.add_argument(
            "--experiment", type=_name, help="KFP experiment (default: the config's name)"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors in input end with one line and exit 2."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    if closed := _closed_streams():
        print(
            f"error: {' and '.join(closed)} closed; give the command somewhere to write",
            file=sys.stderr,
        )
        return 2
    args = argparse.Namespace(command="cnnvsmlp")  # what an interrupt while parsing names
    try:
        args = _parse(build_parser(), _switches(sys.argv[1:] if argv is None else argv))
        return args.func(args) or 0
    except SystemExit as done:  # --help, or argparse's one-line error
        return done.code if isinstance(done.code, int) else 2
    except UserError as err:  # a LocalRunInterrupted has its own line and exit status
        code = getattr(err, "exit_code", None)
        print(err if code else f"error: {err}", file=sys.stderr)
        return code or 2
    except KeyboardInterrupt:
        print(f"{args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # a reader that stopped early (| head): the rest goes nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _closed_streams() -> list[str]:
    """The standard streams that are closed (``>&-``), each reopened on /dev/null."""
    closed = []
    for fd, name in ((0, "standard input"), (1, "standard output"), (2, "standard error")):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
            closed.append(name)
    return [name for name in closed if name != "standard input"]


if __name__ == "__main__":
    sys.exit(main())

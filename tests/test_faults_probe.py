"""The faults of a second probe, by class: each ends with one line, a non-zero exit, and
nothing half-written or of the user's changed.

The table rows run through ``test_bad_inputs._refuse`` (one ``error:`` line,
exit status 2, the folder as it was). The faults below it need more than a
command line: a lock held by a live process, a damaged report record, a
closed or broken standard output, a gzip bomb. A store entry damaged in each
of its files, and a runner killed by SIGKILL, are in test_resume_faults.py
and test_interrupt.py; a host that is not a KFP API, in test_cluster.py.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import pytest

from cnnvsmlp import storage
from cnnvsmlp.config import load_config
from cnnvsmlp.data.spec import DataError, get_spec
from cnnvsmlp.outputs import one_writer
from cnnvsmlp_pipelines.cli import _switches, main
from cnnvsmlp_pipelines.runs import list_runs
from test_bad_inputs import Row, _idx, _prepare, _refuse, _run, _tiny_fashion

RESULTS = Path(__file__).parents[1] / "results" / "fashion-mnist-5-variants"
RUN_ID = "20260101-000000-fashion-mnist"
CLI = [sys.executable, "-m", "cnnvsmlp_pipelines.cli"]


def _a_run(tmp: Path, status: str = "complete") -> Path:
    """A run folder as the runner leaves it: its config and its status."""
    run_dir = tmp / "runs" / RUN_ID
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(load_config("fashion-mnist").model_dump_json())
    (run_dir / "status.json").write_text(json.dumps({"status": status}))
    return run_dir


def _resume(path: callable) -> callable:
    return lambda tmp: ["run", "--runs-dir", str(tmp / "elsewhere"), "--resume", path(tmp)]


def _bad_idx(change) -> callable:
    def setup(tmp: Path) -> None:
        target = _tiny_fashion(tmp) / "t10k-images-idx3-ubyte.gz"
        target.unlink()
        change(target)

    return setup


def _bomb(path: Path, zeros: int = 64 << 20) -> None:
    """A gzip IDX file of 10 images, then ``zeros`` more bytes in the same stream."""
    header = bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = [packer.compress(header + bytes(10 * 784))]
    parts += [packer.compress(bytes(1 << 24)) for _ in range(zeros >> 24)]
    path.write_bytes(b"".join([*parts, packer.flush()]))


ROWS = [
    # 3. empty and odd names
    Row("resume-empty", _run("--resume", ""), "argument --resume: is empty"),
    Row("runs-dir-empty", lambda tmp: ["run", "--runs-dir", ""], "argument --runs-dir: is empty"),
    Row("prepare-out-empty", lambda tmp: ["prepare", "--out", ""], "argument --out: is empty"),
    Row("config-empty", lambda tmp: ["run", "--config", " "], "argument --config: is empty"),
    Row(
        "runs-dir-with-a-user-file",
        _run("epochs=1"),
        "<tmp>/runs: holds notes.txt, which is not a run",
        setup=lambda tmp: (tmp / "runs").mkdir() or (tmp / "runs" / "notes.txt").write_text("x"),
    ),
    Row(
        "resume-by-absolute-path",
        _resume(lambda tmp: str(tmp / "runs" / RUN_ID)),
        f"--resume {RUN_ID}: the run is complete",
        setup=_a_run,
    ),
    Row(
        "resume-by-relative-path",
        _resume(lambda tmp: os.path.relpath(tmp / "runs" / RUN_ID)),
        f"--resume {RUN_ID}: the run is complete",
        setup=_a_run,
    ),
    Row(
        "resume-id-with-a-slash",
        lambda tmp: ["run", "--runs-dir", str(tmp / "runs"), "--resume", f"{RUN_ID}/"],
        f"--resume {RUN_ID}: the run is complete",
        setup=_a_run,
    ),
    Row("resume-dot-dot", _run("--resume", ".."), "--resume ..: not a run"),
    # 4. untrusted files read without bounds
    Row(
        "idx-named-pipe",
        _idx(),
        "t10k-images-idx3-ubyte.gz is not a regular file",
        setup=_bad_idx(os.mkfifo),
    ),
    Row(
        "idx-link-to-dev-zero",
        _idx(),
        "t10k-images-idx3-ubyte.gz is not a regular file",
        setup=_bad_idx(lambda p: p.symlink_to("/dev/zero")),
    ),
    Row(
        "idx-gzip-bomb",
        _idx(),
        "t10k-images-idx3-ubyte.gz is longer than its header says (7,856 bytes declared)",
        setup=_bad_idx(_bomb),
    ),
    # 7. make's switches
    Row("cache-maybe", _run("--cache=maybe"), "--cache=maybe: neither yes nor no; give one of 1,"),
    Row("verbose-2", _run("--verbose=2"), "--verbose=2: neither yes nor no"),
    # 8. smaller ones
    Row("name-empty", _prepare("name="), "name: needs a value (input should be a valid string)"),
    Row("name-300-characters", _run("name=" + "a" * 300), "name: String should have at most 100"),
    Row(
        "yaml-with-a-nul-byte",
        _prepare(config="{tmp}/nul.yaml"),
        "<tmp>/nul.yaml: holds a NUL byte at character 7; not YAML text",
        setup=lambda tmp: (tmp / "nul.yaml").write_bytes(b"name: a\0b\n"),
    ),
    Row(
        "docker-without-a-daemon",
        lambda tmp: ["run", "--runs-dir", str(tmp / "runs"), "--runner", "docker"],
        "--runner docker: no Docker daemon answers (",
        env={"DOCKER_HOST": "unix://{tmp}/no-docker.sock"},
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_refused_with_one_line_and_nothing_written(row, tmp_path, monkeypatch, capsys, request):
    monkeypatch.chdir(tmp_path)
    _refuse(row, tmp_path, monkeypatch, capsys, request)
    assert sorted(os.listdir(tmp_path)) == ["work"]  # nothing in the current folder either


@pytest.mark.parametrize(
    ("value", "flags"),
    [("no", ["--no-cache"]), ("FALSE", ["--no-cache"]), ("0", ["--no-cache"]), ("On", [])],
)
def test_make_switches_take_every_usual_spelling(value, flags):
    assert _switches(["run", f"--cache={value}", f"--verbose={value}"]) == [
        "run",
        *flags,
        *(["--verbose"] if not flags else []),
    ]


# 1. The store never shares a file with a run folder.


def test_a_fetched_or_mirrored_file_is_a_copy_that_an_edit_in_place_leaves_alone(tmp_path):
    (tmp_path / "run" / "state").mkdir(parents=True)
    (tmp_path / "run" / "state" / "a.json").write_text("one")
    storage.mirror_dir(tmp_path / "run", str(tmp_path / "store"))
    assert storage.fetch_file(str(tmp_path / "store" / "state" / "a.json"), tmp_path / "b.json")
    for copy in (tmp_path / "run" / "state" / "a.json", tmp_path / "b.json"):
        with copy.open("r+") as f:
            f.write("two")
    assert (tmp_path / "store" / "state" / "a.json").read_text() == "one"


# 2. One writer at a time; a holder that dies releases its lock.


def test_a_run_being_written_by_a_live_process_is_refused_and_a_killed_one_frees_it(
    tmp_path, capsys
):
    run_dir = _a_run(tmp_path, status="interrupted")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code = main(["run", "--runs-dir", str(tmp_path / "runs"), "--resume", RUN_ID])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err
        assert err == (
            f"error: run {RUN_ID}: another process (pid {holder.pid}) is writing its folder "
            f"{run_dir}; wait for it to end, or stop it first"
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    def busy(pid):
        raise AssertionError(f"still held by {pid}")

    with one_writer(run_dir / ".lock", busy):
        assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"


HOLD = """
import fcntl, os, sys, time
f = open(sys.argv[1], "a+")
fcntl.flock(f, fcntl.LOCK_EX)
f.write(str(os.getpid())); f.flush()
print("held", flush=True)
time.sleep(120)
"""


# 4. A gzip bomb costs what its header declares, not what it inflates to.


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    from cnnvsmlp.data.idx import read_idx_dir

    folder = _tiny_fashion(tmp_path)
    _bomb(folder / "t10k-images-idx3-ubyte.gz", zeros=256 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="longer than its header says"):
            read_idx_dir(get_spec("fashion-mnist"), folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20  # the compressed file and the bounded steps, not 256 MB
    assert len(gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())) == 18


# 5. A re-render checks the record whole and never writes over it.


def _record(change):
    def damaged(path: Path) -> None:
        record = json.loads(path.read_text())
        path.write_text(change(record) if callable(change) else change)

    return damaged


def _set(path: list, value) -> callable:
    def change(record: dict) -> str:
        node = record
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return json.dumps(record)

    return change


DAMAGED = {
    "nan": (_set(["variants", 0, "test_accuracy", "estimate"], float("nan")), "holds NaN"),
    "infinity": (_set(["pairs", 0, "low"], float("-inf")), "holds -Infinity"),
    "negative-accuracy": (
        _set(["variants", 0, "test_accuracy", "estimate"], -0.5),
        "variants[0].test_accuracy.estimate is -0.5, outside [0, 1]",
    ),
    "p-value-above-1": (
        _set(["pairs", 0, "tests", 0, "p_value"], 2.0),
        "pairs[0].tests[0].p_value is 2.0, outside [0, 1]",
    ),
    "pair-of-a-missing-variant": (
        _set(["pairs", 0, "b"], "resnet"),
        "pairs[0].b names variant 'resnet', which the record's variants lack",
    ),
    "cut-short": (lambda record: json.dumps(record)[:300], "not whole JSON ("),
    "null": ("null", "holds null, not a record (a JSON object)"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED))
def test_a_damaged_record_is_refused_before_anything_is_written(damage, tmp_path, capsys):
    from cnnvsmlp.report.__main__ import main as render

    change, message = DAMAGED[damage]
    folder = tmp_path / "report"
    folder.mkdir()
    shutil.copy(RESULTS / "comparison.json", folder)
    _record(change)(folder / "comparison.json")
    before = (folder / "comparison.json").read_bytes()
    assert render([str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: {folder / 'comparison.json'}: ")
    assert message in err
    assert os.listdir(folder) == ["comparison.json"]
    assert (folder / "comparison.json").read_bytes() == before


def test_a_full_disk_during_a_render_leaves_the_folder_as_it_was(tmp_path, monkeypatch, capsys):
    import cnnvsmlp.report
    from cnnvsmlp.report.__main__ import main as render

    folder = tmp_path / "report"
    shutil.copytree(RESULTS, folder)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    def full(comparison, out: Path) -> None:
        (out / "report.md").write_text("cut mid-sen")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cnnvsmlp.report, "render_comparison", full)
    assert render([str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {folder}: cannot write the report (No space left on device); its files are "
        "as they were: free some space or render a copy elsewhere"
    )
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


# 8. Standard output closed or cut short; a run without its config.


def _runs_folder(tmp: Path) -> Path:
    _a_run(tmp)
    return tmp / "runs"


def test_a_reader_that_stops_early_ends_the_listing_quietly(tmp_path):
    child = subprocess.Popen(
        [*CLI, "runs", "--runs-dir", str(_runs_folder(tmp_path))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child.stdout.close()  # | head -0
    assert child.wait(timeout=120) == 128 + signal.SIGPIPE
    assert child.stderr.read() == b""


def test_a_closed_standard_output_is_one_line(tmp_path):
    done = subprocess.run(
        f"{' '.join(CLI)} runs --runs-dir {_runs_folder(tmp_path)} >&-",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr == "error: standard output closed; give the command somewhere to write\n"


def test_a_run_without_its_config_is_still_listed(tmp_path):
    run_dir = _a_run(tmp_path)
    (run_dir / "config.json").unlink()
    [row] = list_runs(tmp_path / "runs")
    assert row["run"] == RUN_ID and row["status"] == "complete"
    assert row["dataset"] == "(config.json missing or damaged)"

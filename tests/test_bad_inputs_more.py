"""More bad inputs and faults, by class: one line naming what is wrong, exit 2, nothing written.

The table rows run through ``test_bad_inputs._refuse``: the message fragment,
stderr one ``error:`` line (no traceback), exit status 2, and the folder
exactly as it was (nothing half-written, nothing of the user's replaced).
The faults below the table (a full disk, an interruption, a stale partial
folder) need more than a command line, and check the same four things.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from cnnvsmlp.outputs import HOST
from cnnvsmlp_pipelines.cli import main
from conftest import idx_bytes, write_gz, write_nist_letters
from test_bad_inputs import Row, _file, _idx, _prepare, _refuse, _run, _submit, _tiny_fashion

PRESET = Path(__file__).parents[1] / "src/cnnvsmlp/presets/fashion-mnist.yaml"


def _preset_plus(name: str, text: str):
    return lambda tmp: (tmp / name).write_text(PRESET.read_text() + text)


def _synth(tmp: Path, folder: str = "syn", seed: int = 0) -> Path:
    from cnnvsmlp.synthetic import write_nist_layout

    return write_nist_layout(tmp / folder, 26, 26, seed)


def _mixed(tmp: Path) -> None:
    """Two synth-emnist writes, then one file of the second copied over the first's."""
    first, second = _synth(tmp), _synth(tmp, "other", seed=5)
    name = "emnist-letters-test-images-idx3-ubyte.gz"
    shutil.copyfile(second / name, first / name)


def _synth_argv(out: str) -> callable:
    return lambda tmp: ["synth-emnist", "--out", str(tmp / out), "--train", "26", "--test", "26"]


def _letters(*overrides: str):
    return _prepare("source=idx", "idx_dir={tmp}/syn", *overrides, config="emnist-letters")


def _link(name: str, target: str):
    return lambda tmp: (tmp / name).symlink_to(tmp / target)


ROWS = [
    # ------------------------------------------------------------ synth-emnist's folder
    Row(
        "synth-over-real-emnist",
        _synth_argv("real"),
        "real: holds 'emnist-letters-test-images-idx3-ubyte.gz' but no cnnvsmlp-written.json",
        setup=lambda tmp: write_nist_letters(tmp / "real", 26, 26),
    ),
    Row(
        "synth-over-a-user-file",
        _synth_argv("syn"),
        "syn: holds 'notes.txt', which synth-emnist did not write there",
        setup=lambda tmp: (_synth(tmp) / "notes.txt").write_text("mine"),
    ),
    Row(
        "synth-over-a-file-it-did-not-write",
        _synth_argv("syn"),
        "holds 'emnist-letters-test-images-idx3-ubyte.gz', which synth-emnist did not write",
        setup=_mixed,
    ),
    Row(
        "synth-negative-seed",
        lambda tmp: ["synth-emnist", "--out", str(tmp / "s"), "--seed", "-1"],
        "synth-emnist: --seed must be from 0 to 2**32 - 1",
    ),
    Row(
        "synth-more-than-nist",
        lambda tmp: ["synth-emnist", "--out", str(tmp / "s"), "--train", "10000000"],
        "at most NIST's counts, 124,800 and 20,800",
    ),
    Row("synth-out-empty", lambda tmp: ["synth-emnist", "--out", ""], "argument --out: is empty"),
    Row(
        "synth-out-holds-nul",
        lambda tmp: ["synth-emnist", "--out", "a\0b"],
        "argument --out: 'a\\x00b' holds a NUL byte; give a plain name",
    ),
    Row("synth-out-is-a-file", _synth_argv("f"), "f: is a file", setup=_file("f", b"mine")),
    Row("prepare-a-mixed-set", _letters(), "a mix of two writes", setup=_mixed),
    # ------------------------------------------------------------ YAML that is not JSON
    Row(
        "yaml-binary",
        _submit(config="{tmp}/b.yaml"),
        "b.yaml: line 37, column 8: a !!binary value is not a config value; write base64",
        setup=_preset_plus("b.yaml", "extra: !!binary aGk=\n"),
    ),
    Row(
        "yaml-set-override",
        _submit("description=!!set {a}"),
        "line 1, column 1: a !!set value is not a config value; write a list",
    ),
    Row(
        "yaml-timestamp-tag",
        _submit("description=!!timestamp 2024-01-01"),
        "a !!timestamp value is not a config value; write the date or time in quotes",
    ),
    Row(
        "yaml-omap",
        _submit("description=!!omap [a: 1]"),
        "a !!omap value is not a config value; write a mapping",
    ),
    Row(
        "yaml-key-not-a-name",
        _submit(config="{tmp}/k.yaml"),
        "k.yaml: line 37, column 1: key '1' is not a name; write it in quotes",
        setup=_preset_plus("k.yaml", "1: x\n"),
    ),
    Row(
        "yaml-local-tag",
        _submit("description=!secret x"),
        "line 1, column 1: the tag !secret is not allowed in a config; write a plain value",
    ),
    Row(
        "yaml-python-tag",
        _submit(config="{tmp}/p.yaml"),
        "p.yaml: line 37, column 8: the tag !!python/name:os.system is not allowed in a config",
        setup=_preset_plus("p.yaml", "extra: !!python/name:os.system ''\n"),
    ),
    # ------------------------------------------------------------ YAML syntax: line and column
    Row(
        "yaml-tab",
        _submit(config="{tmp}/t.yaml"),
        "t.yaml: not valid YAML at line 2, column 1 (found character '\\t'",
        setup=_file("t.yaml", b"name: x\n\tdataset: y\n"),
    ),
    Row(
        "yaml-two-documents",
        _submit(config="{tmp}/two.yaml"),
        "two.yaml: not valid YAML at line 2, column 1",
        setup=_file("two.yaml", b"name: x\n---\nname: y\n"),
    ),
    Row(
        "yaml-override-syntax",
        _submit("description=[a"),
        "override 'description=[a': not valid YAML at line 1, column 3",
    ),
    Row(
        "yaml-nested-too-deep",
        _submit(config="{tmp}/deep.yaml"),
        "deep.yaml: nested too deeply to be a config",
        setup=_file("deep.yaml", b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n"),
    ),
    # ------------------------------------------------------------ URI schemes
    Row(
        "resume-uri-s3",
        _submit("resume_uri=s3://bucket/state"),
        "resume_uri: 's3://bucket/state': the s3: scheme is not supported; use a gs://",
    ),
    Row("idx-dir-ftp", _submit("idx_dir=ftp://host/emnist"), "source.idx_dir: 'ftp://host/emnist'"),
    Row("tfds-dir-http", _submit("tfds_data_dir=http://h/tfds"), "source.tfds_data_dir: 'http:"),
    Row(
        "resume-uri-file", _submit("resume_uri=file:///tmp/x"), "the file: scheme is not supported"
    ),
    Row("idx-dir-gs-no-bucket", _submit("idx_dir=gs:///x"), "names no bucket"),
    Row("prepare-out-uri", _prepare("limit=100", "--out", "s3://b/x"), "s3://b/x: a URI"),
    Row("synth-out-uri", lambda tmp: ["synth-emnist", "--out", "ftp://h/x"], "ftp://h/x: a URI"),
    Row(
        "runs-dir-uri",
        _run("epochs=1", "--runs-dir", "s3://b/runs"),
        "s3:/b/runs: a URI; give a local folder for the runs",
    ),
    # ------------------------------------------------------------ data sets too small
    Row(
        "no-validation-images",
        _idx("split.validation_fraction=0.01"),
        "gives 20 train, 0 validation, 10 test images; each split needs at least 1, so the "
        "official training split at least 100 at this fraction",
        setup=_tiny_fashion,
    ),
    Row(
        "no-images-at-all",
        _idx(),
        "gives 0 train, 0 validation, 0 test images; each split needs at least 1",
        setup=lambda tmp: [
            write_gz(tmp / "idx" / f"{s}-{k}", idx_bytes(np.zeros(shape)))
            for s in ("train", "t10k")
            for k, shape in (("images-idx3-ubyte.gz", (0, 28, 28)), ("labels-idx1-ubyte.gz", 0))
        ],
    ),
    Row(
        "synthetic-too-few",
        _letters("split.validation_fraction=0.02"),
        "each split needs at least 1",
        setup=lambda tmp: _synth(tmp),
    ),
    # ------------------------------------------------------------ links and folders
    Row(
        "out-dangling-link",
        _prepare("limit=100"),
        "out: a link to <tmp>/gone, which does not exist; create it or choose another folder",
        setup=_link("out", "gone"),
    ),
    Row(
        "runs-dir-dangling-link",
        _run("epochs=1"),
        "runs: a link to <tmp>/gone, which does not exist",
        setup=_link("runs", "gone"),
    ),
    Row(
        "synth-out-dangling-link",
        _synth_argv("syn"),
        "syn: a link to <tmp>/gone, which does not exist",
        setup=_link("syn", "gone"),
    ),
    Row(
        "out-link-to-a-user-folder",
        _prepare("limit=100"),
        "holds 'notes.txt', which is not the data set",
        setup=lambda tmp: (
            (tmp / "mine").mkdir(),
            (tmp / "mine" / "notes.txt").write_text("x"),
            (tmp / "out").symlink_to(tmp / "mine"),
        ),
    ),
    # ------------------------------------------------------------ messages that say enough
    Row(
        "variants-empty",
        _submit("variants=,"),
        "override 'variants=,': no name among the variants; write variants=<name>,<name>",
    ),
    Row("variants-blank", _submit("variants="), "no name among the variants"),
    Row("variants-empty-name", _submit("variants=cnn,,mlp"), "an empty name among the variants"),
    Row("variants-yaml-empty", _submit("variants=[]"), "variants: names no variant; list one"),
    Row("variant-typo", _submit("variants=cnn3conv"), "; did you mean cnn-3conv?"),
    Row("unknown-alias", _submit("epoch=1"), "epoch: unknown field; did you mean train.epochs?"),
    Row(
        "unknown-nested-field",
        _submit("train.epoch=1"),
        "train.epoch: unknown field; did you mean train.epochs?",
    ),
    Row(
        "unknown-field-in-file",
        _submit(config="{tmp}/f.yaml"),
        "f.yaml: split.validation: unknown field; did you mean split.validation_fraction?",
        setup=_file("f.yaml", PRESET.read_bytes().replace(b"validation_fraction:", b"validation:")),
    ),
    Row(
        "unknown-reference-field",
        _submit("references.cnn.acuracy=0.9"),
        "did you mean references.cnn.accuracy?",
    ),
    Row(
        "option-after-override-is-read",
        lambda tmp: ["submit", "limit=100", "--config", "fashion-mnist", "epochs=0"],
        "train.epochs: Input should be greater than or equal to 1",
    ),
    Row(
        "unknown-option",
        lambda tmp: ["submit", "epochs=1", "--epochs", "2"],
        "cnnvsmlp submit: unrecognized arguments: --epochs 2; see 'cnnvsmlp submit --help'",
    ),
    Row(
        "override-to-a-command-without-config",
        lambda tmp: ["models", "epochs=1"],
        "cnnvsmlp models: unrecognized arguments: epochs=1",
    ),
    Row("no-command", lambda tmp: [], "the following arguments are required: command"),
    # ------------------------------------------------------------ data set and references
    Row(
        "references-of-another-data-set",
        _submit("dataset=emnist-letters"),
        "references.cnn: a number measured on fashion-mnist, but dataset is emnist-letters; "
        "use --config emnist-letters for its references, or add references={}",
    ),
    Row(
        "reference-declares-another-data-set",
        _submit("references.cnn.dataset=emnist-letters"),
        "references.cnn: a number measured on emnist-letters, but dataset is fashion-mnist",
    ),
    # ------------------------------------------------------------ --config paths
    Row(
        "config-is-a-folder",
        _submit(config="{tmp}/d.yaml"),
        "d.yaml: is a folder",
        setup=lambda t: (t / "d.yaml").mkdir(),
    ),
    Row(
        "config-empty",
        _submit(config="{tmp}/e.yaml"),
        "e.yaml: holds no fields",
        _file("e.yaml", b""),
    ),
    Row(
        "config-only-comments",
        _submit(config="{tmp}/c.yaml"),
        "c.yaml: holds no fields",
        setup=_file("c.yaml", b"# nothing\n"),
    ),
    Row("config-a-device", _submit(config="/dev/null"), "/dev/null: not a regular file"),
    Row(
        "config-dangling-link",
        _submit(config="{tmp}/l.yaml"),
        "l.yaml: a link to <tmp>/gone.yaml, which does not exist",
        setup=_link("l.yaml", "gone.yaml"),
    ),
    Row("config-name-too-long", _submit(config="x" * 300 + ".yaml"), "File name too long"),
    Row(
        "config-binary",
        _submit(config="{tmp}/bin.yaml"),
        "bin.yaml: not UTF-8 text",
        setup=_file("bin.yaml", bytes(range(256))),
    ),
    Row(
        "config-a-string",
        _submit(config="{tmp}/s.yaml"),
        "s.yaml: expected a mapping at the top level",
        setup=_file("s.yaml", b"just words\n"),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_refused_with_one_line_and_nothing_written(row, tmp_path, monkeypatch, capsys, request):
    _refuse(row, tmp_path, monkeypatch, capsys, request)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["synth-emnist", "--out", ".", "--train", "26", "--test", "26"],
            ".: holds the current folder, and the synthetic EMNIST Letters replaces its folder",
        ),
        (["prepare", "limit=100", "--out", ".."], "holds 'inner', which is not the data set"),
        (["prepare", "limit=100", "--out", "../inner"], "../inner: holds the current folder"),
    ],
)
def test_a_folder_holding_the_current_one_is_not_swapped(
    argv, message, tmp_path, monkeypatch, capsys
):
    inner = tmp_path / "inner"
    inner.mkdir()
    monkeypatch.chdir(inner)
    before = _tree(tmp_path)
    assert main(argv) == 2
    assert message in _one_error_line(capsys)
    assert _tree(tmp_path) == before and Path.cwd() == inner


# ---------------------------------------------------------------- faults while writing


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(folder.rglob("*"))
    }


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _prepare_argv(tmp: Path, out: Path) -> list[str]:
    return ["prepare", "source=idx", f"idx_dir={tmp / 'idx'}", "--out", str(out)]


def test_a_full_disk_during_prepare_keeps_the_old_data_set(tmp_path, monkeypatch, capsys):
    _tiny_fashion(tmp_path)
    out = tmp_path / "out"
    assert main(_prepare_argv(tmp_path, out)) == 0
    before = _tree(tmp_path)
    real_savez = np.savez

    def savez_then_full(path, **arrays):
        real_savez(path, **arrays)
        if "validation" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(np, "savez", savez_then_full)
    capsys.readouterr()
    assert main([*_prepare_argv(tmp_path, out), "split.shuffle_seed=3"]) == 2
    line = _one_error_line(capsys)
    assert f"{out}: cannot write the data set (No space left on device)" in line
    assert "free some space or choose another folder" in line
    assert _tree(tmp_path) == before  # the old set whole, no partial folder


def test_a_full_disk_leaves_no_folder_that_was_not_there(tmp_path, monkeypatch, capsys):
    _tiny_fashion(tmp_path)
    before = _tree(tmp_path)

    def full(path, **arrays):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(np, "savez", full)
    assert main(_prepare_argv(tmp_path, tmp_path / "new" / "deeper" / "out")) == 2
    assert "No space left on device" in _one_error_line(capsys)
    assert _tree(tmp_path) == before  # not even the parents it would have made


def test_an_unreadable_source_file_is_one_line(tmp_path, monkeypatch, capsys):
    _tiny_fashion(tmp_path)
    real = os.open

    def denied(path, *args, **kwargs):
        if Path(path).name.startswith("train-images"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    assert main(_prepare_argv(tmp_path, tmp_path / "out")) == 2
    assert "train-images-idx3-ubyte.gz cannot be read (Permission denied)" in _one_error_line(
        capsys
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_an_idx_folder_without_read_permission_is_one_line(tmp_path, capsys):
    folder = _tiny_fashion(tmp_path)
    folder.chmod(0)
    try:
        assert main(_prepare_argv(tmp_path, tmp_path / "out")) == 2
    finally:
        folder.chmod(0o755)
    assert "cannot read it (Permission denied)" in _one_error_line(capsys)


def test_an_unlistable_idx_folder_is_one_line(tmp_path, monkeypatch, capsys):
    _tiny_fashion(tmp_path)
    from cnnvsmlp.data import idx

    real = os.listdir

    def denied(path="."):
        if Path(path) == tmp_path / "idx":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path)

    monkeypatch.setattr(idx.os, "listdir", denied)
    assert main(_prepare_argv(tmp_path, tmp_path / "out")) == 2
    line = _one_error_line(capsys)
    assert f"source.idx_dir {tmp_path / 'idx'}: cannot read it (Permission denied)" in line
    assert not (tmp_path / "out").exists()


def test_prepare_through_a_link_writes_into_its_target(tmp_path, capsys):
    _tiny_fashion(tmp_path)
    (tmp_path / "target").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "target")
    for _ in range(2):  # the second replaces the first, still through the link
        assert main(_prepare_argv(tmp_path, tmp_path / "out")) == 0
    assert (tmp_path / "out").is_symlink()
    assert sorted(p.name for p in (tmp_path / "target").iterdir()) == [
        "metadata.json",
        "test.npz",
        "train.npz",
        "validation.npz",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "out", "target"]


def test_stale_partial_folders_of_a_killed_prepare_are_removed(tmp_path, capsys):
    _tiny_fashion(tmp_path)
    out = tmp_path / "out"
    assert main(_prepare_argv(tmp_path, out)) == 0
    gone = max(int(Path("/proc/sys/kernel/pid_max").read_text()) - 1, 2)
    (tmp_path / f".partial-out.{gone}.abc").mkdir()
    (tmp_path / f".partial-out.{gone}.abc" / "train.npz").write_bytes(b"half")
    (tmp_path / ".partial-out.k3j4x").mkdir()  # an older release's name, without a process
    mine = tmp_path / f".partial-out.{os.getpid()}.live"  # a build still running: kept
    mine.mkdir()
    assert main(_prepare_argv(tmp_path, out)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name, "idx", "out"]


def test_a_partial_folder_of_another_host_is_kept_until_it_is_an_hour_old(tmp_path, capsys):
    # A shared folder (NFS): a process id of another host says nothing on this one.
    _tiny_fashion(tmp_path)
    out = tmp_path / "out"
    assert main(_prepare_argv(tmp_path, out)) == 0
    gone = max(int(Path("/proc/sys/kernel/pid_max").read_text()) - 1, 2)
    busy = tmp_path / f".partial-out.{gone}@other-host.abc"
    left = tmp_path / f".partial-out.{gone}@other-host.def"
    for folder in (busy, left):
        folder.mkdir()
        (folder / "train.npz").write_bytes(b"half")
    hours_ago = time.time() - 2 * 3600
    for path in (left / "train.npz", left):
        os.utime(path, (hours_ago, hours_ago))
    mine = tmp_path / f".partial-out.{gone}@{HOST}.ghi"  # this host's, its process gone
    mine.mkdir()
    assert main(_prepare_argv(tmp_path, out)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [busy.name, "idx", "out"]


def test_a_run_of_another_host_is_running_while_its_progress_moves(tmp_path):
    from cnnvsmlp_pipelines.runs import read_status

    run = tmp_path / "run"
    (run / "pipeline").mkdir(parents=True)
    gone = max(int(Path("/proc/sys/kernel/pid_max").read_text()) - 1, 2)
    record = {"status": "running", "pid": gone, "host": "other-host"}
    (run / "status.json").write_text(json.dumps(record))
    (run / "pipeline" / "progress.jsonl").write_text("{}\n")
    assert read_status(run)["status"] == "running"
    hours_ago = time.time() - 2 * 3600
    for path in (run / "status.json", run / "pipeline" / "progress.jsonl"):
        os.utime(path, (hours_ago, hours_ago))
    assert read_status(run)["status"] == "interrupted"
    (run / "status.json").write_text(json.dumps({**record, "host": HOST}))
    assert read_status(run)["status"] == "interrupted"  # this host's: its pid is gone


def test_a_swap_killed_between_its_renames_is_put_back(tmp_path, capsys):
    _tiny_fashion(tmp_path)
    out = tmp_path / "out"
    assert main(_prepare_argv(tmp_path, out)) == 0
    meta = json.loads((out / "metadata.json").read_text())
    gone = max(int(Path("/proc/sys/kernel/pid_max").read_text()) - 1, 2)
    out.rename(tmp_path / f".partial-out.{gone}.abc.old")  # killed after the first rename
    assert main([*_prepare_argv(tmp_path, out), "split.shuffle_seed=1"]) == 0
    assert json.loads((out / "metadata.json").read_text())["split"]["shuffle_seed"] == 1
    assert meta["split"]["shuffle_seed"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "out"]


def test_synth_emnist_interrupted_keeps_the_old_set_whole(tmp_path, monkeypatch, capsys):
    from cnnvsmlp import synthetic

    folder = _synth(tmp_path)
    before = _tree(tmp_path)
    real = synthetic.render_letters

    def stop_at_the_test_split(n, seed):
        if seed == 8:  # the test split of --seed 7
            raise KeyboardInterrupt
        return real(n, seed)

    monkeypatch.setattr(synthetic, "render_letters", stop_at_the_test_split)
    with pytest.raises(KeyboardInterrupt):
        synthetic.write_nist_layout(folder, 30, 26, seed=7)
    assert _tree(tmp_path) == before  # the old four files and their record, nothing beside


def test_synth_emnist_rewrites_its_own_folder_and_prepare_reads_it(tmp_path, capsys):
    _synth(tmp_path)
    argv = ["synth-emnist", "--out", str(tmp_path / "syn"), "--train", "40", "--test", "30"]
    assert main(argv) == 0
    assert main(_letters()(tmp_path)) == 0
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta["counts"] == {"train": 30, "validation": 10, "test": 30}


def test_an_empty_split_on_disk_is_refused_when_loaded(tmp_path):
    from cnnvsmlp.data.spec import DataError
    from cnnvsmlp.data.store import load_split

    np.savez(tmp_path / "validation.npz", images=np.zeros((0, 28, 28, 1)), labels=np.zeros(0))
    with pytest.raises(DataError, match="holds 0 images, fewer than the 1 a training needs"):
        load_split(tmp_path, "validation")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a checkout to another user")
def test_a_checkout_of_another_user_names_safe_directory(tmp_path):
    from cnnvsmlp_pipelines.images import ImageError, shipped_files

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    shutil.chown(repo, "nobody")
    with pytest.raises(ImageError) as err:
        shipped_files(repo)
    assert f"git config --global --add safe.directory {repo}" in str(err.value)
    assert "owned by another user" in str(err.value)

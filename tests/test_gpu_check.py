"""The GPU check's dry run (``make gpu-check DEVICE=cpu``): the same script, on a slice, here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnvsmlp.config import load_config
from tools import gpu_carry, gpu_check

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, fashion_dir) -> Path:
    """The check run as the lent machine runs it (the script by path), on the CPU."""
    out = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("KERAS_BACKEND", None)
    cmd = [sys.executable, "tools/gpu_check.py", "run", "--device", "cpu", "--limit", "120"]
    done = subprocess.run(
        [*cmd, "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (out / "stdout.txt").write_text(done.stdout)
    return out


@pytest.mark.slow
def test_the_dry_run_trains_every_run_of_the_check_on_jax(dry_run):
    result = json.loads((dry_run / "cpu.json").read_text())
    assert result["device"] == "cpu" and result["dry_run"] is True and result["limit"] == 120
    letters, fashion = load_config("emnist-letters"), load_config("fashion-mnist")
    expected = [("emnist-letters (synthetic stand-in)", v, 128) for v in letters.variants]
    expected += [("fashion-mnist", v, 32) for v in fashion.variants]
    runs = result["runs"]
    assert [(r["dataset"], r["variant"], r["batch_size"]) for r in runs] == expected
    for row in runs:
        assert row["epochs"] == 2
        assert row["n_train"] in (90, 96)  # 120 images less the preset's validation share
        assert row["images_per_s"] == pytest.approx(row["n_train"] / row["s_per_epoch"])
        assert 0.0 <= row["test_accuracy"] <= 1.0
    assert result["hardware"]["backend"] == "jax" and result["hardware"]["device"] == "cpu"
    assert result["versions"]["jax"] and result["versions"]["keras"]
    assert result["gpu"] == {}


@pytest.mark.slow
def test_the_dry_run_compares_with_the_k80_and_the_cpu(dry_run):
    result = json.loads((dry_run / "cpu.json").read_text())
    refs = result["references"]
    assert refs["emnist-letters (synthetic stand-in) mlp"] == {"k80_images_per_s": 93_600 / 144}
    assert refs["emnist-letters (synthetic stand-in) cnn-deep"] == {"k80_images_per_s": 93_600 / 14}
    assert refs["fashion-mnist cnn"]["cpu_tensorflow_images_per_s"] == pytest.approx(48_000 / 10.3)
    page = (dry_run / "cpu.md").read_text()
    assert page.startswith("# GPU check: cpu (dry run on a slice)")
    assert "| emnist-letters (synthetic stand-in) | cnn-deep" in page
    assert page.count("\n| fashion-mnist") == 4
    assert "wrote" in (dry_run / "stdout.txt").read_text()


def test_the_carry_is_pinned_by_the_lock_and_the_device_command_uses_it():
    pins = gpu_carry.locked_versions(ROOT / "requirements.lock")
    assert all(name in pins for name in gpu_carry.WHEELS)
    assert pins["keras"] == __import__("keras").__version__
    command = gpu_carry.device_command(gpu_check.CARRY)
    assert "tools/gpu_check.py run --device gpu --carry build/gpu-carry --out $OUT" in command


def test_the_check_refuses_a_device_it_does_not_know(capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["run", "--device", "tpu"])
    assert "invalid choice: 'tpu'" in capsys.readouterr().err

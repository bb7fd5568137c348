"""Same seed, same machine, same numbers for every variant; what a run records of its numerics."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import pytest

from cnnvsmlp.backend import onednn_in_use
from cnnvsmlp.config import RunSpec, TrainConfig
from cnnvsmlp.models import VARIANTS
from cnnvsmlp.records import Hardware
from cnnvsmlp.train import train

ONE_EPOCH = TrainConfig(epochs=1, batch_size=32, optimizer="adam")


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_same_seed_trains_bit_identically(variant, small_fashion, tmp_path):
    run = RunSpec(variant=variant, repeat=0, seed=3)
    first = train(small_fashion, run, ONE_EPOCH, tmp_path / "first", verbose=0)
    again = train(small_fashion, run, ONE_EPOCH, tmp_path / "again", verbose=0)
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    assert [[getattr(e, k) for k in keys] for e in first.history] == [
        [getattr(e, k) for k in keys] for e in again.history
    ]
    weights = [
        keras.saving.load_model(tmp_path / name / "model.keras").get_weights()
        for name in ("first", "again")
    ]
    for a, b in zip(*weights, strict=True):
        assert a.tobytes() == b.tobytes()  # every weight, moving statistics included


def test_hardware_records_the_numerics():
    hardware = Hardware.detect()
    assert hardware.onednn is onednn_in_use() and isinstance(hardware.onednn, bool)
    assert hardware.onednn_opts == os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    assert hardware.tensorflow_git.startswith("v") and hardware.cpu
    assert hardware.build["is_cuda_build"] in ("True", "False")
    extensions = ("sse4", "avx", "fma", "f16c", "amx", "vnni")
    assert all(f.startswith(extensions) for f in hardware.cpu_flags)
    assert hardware.intra_op_threads is not None


def test_onednn_setting_is_recorded_as_tensorflow_applied_it():
    script = (
        "from cnnvsmlp.records import Hardware\nh = Hardware.detect()\nprint(h.model_dump_json())\n"
    )
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    recorded = json.loads(done.stdout.strip().splitlines()[-1])
    assert (recorded["onednn_opts"], recorded["onednn"]) == ("1", True)


def test_records_before_the_numerics_fields_still_read():
    old = {"device": "cpu", "name": "AMD EPYC", "cpu_count": 2, "tensorflow": "2.21.0"}
    hardware = Hardware.model_validate(old)
    assert (hardware.onednn, hardware.cpu_flags, hardware.build) == (None, [], {})


def test_numerics_tell_machines_apart():
    base = Hardware(
        device="cpu",
        name="AMD EPYC",
        cpu_count=2,
        tensorflow="2.21.0",
        cpu="AMD EPYC",
        cpu_flags=["avx", "avx2", "fma"],
        onednn=False,
        intra_op_threads=0,
    )
    assert base.numerics() == base.model_copy(update={"name": "AMD EPYC"}).numerics()
    for change in (
        {"cpu": "Intel Xeon", "cpu_flags": ["avx2", "avx512f", "avx512_vnni"]},
        {"onednn": True},
        {"intra_op_threads": 8},
        {"cpu_count": 16},
    ):
        assert base.model_copy(update=change).numerics() != base.numerics(), change

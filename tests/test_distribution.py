"""One model on several devices (keras.distribution.DataParallel under JAX): the tiny trial on two
CPU devices and on two processes (jax.distributed on 127.0.0.1) against the same trial on one
device, each killed mid-epoch and resumed, and the refusals (TensorFlow, too few devices, batches
that do not split equally) before anything trains.

JAX splits the CPU into devices, or joins other processes, only when told before it starts, so
the trials run in subprocesses (tests/fault_helpers.py) with XLA_FLAGS or Keras' process
variables set.
"""

from __future__ import annotations

import shutil
import socket

import fault_helpers as fh
import keras
import numpy as np
import pytest
from fault_helpers import killed_and_resumed, subprocess_env

from convmixer import device, records
from convmixer.config import TrialConfig

TWO_CPU_DEVICES = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
# Measured on the 2-core AMD EPYC (the tiny trial, 4 epochs; docs/experiments.md, "What was
# verified"): two devices against one, every history value within 1.2e-7 and every weight within
# 3.6e-6, no test image classed differently. Two devices sum a batch in another order than one.
HISTORY_TOLERANCE = 1e-6  # relative
WEIGHT_TOLERANCE = 5e-5  # absolute (the largest weight is about 3.7)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("decoded")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    """The tiny trial on one and on two CPU devices, each run without a break."""
    tmp = tmp_path_factory.mktemp("devices")
    env = subprocess_env(cache_dir, tmp, **TWO_CPU_DEVICES)
    for count in (1, 2):
        fh.run_trial(tmp / f"x{count}", tmp / f"x{count}.log", env, "--devices", str(count))
    return tmp


def weights(run_dir):
    import convmixer.train  # noqa: F401  (registers the model's layers for loading)

    return keras.saving.load_model(run_dir / "model.keras").get_weights()


@pytest.mark.training
def test_the_record_says_how_many_devices_trained_the_model(trained):
    one, two = (records.read_record(trained / f"x{count}") for count in (1, 2))
    assert (one.devices, two.devices) == (1, 2)
    assert two.device.startswith("CPU x2: ") and two.starts[0]["device"] == two.device
    assert one.trial_id == two.trial_id  # the same trial, computed on more devices


@pytest.mark.training
def test_two_devices_train_the_one_device_trial_within_the_measured_tolerance(trained):
    one, two = (records.read_history(trained / f"x{count}" / "history.csv") for count in (1, 2))
    assert len(one) == len(two) == 4
    for mine, theirs in zip(two, one):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
            assert float(mine[key]) == pytest.approx(float(theirs[key]), rel=HISTORY_TOLERANCE), (mine["epoch"], key)
    for got, want in zip(weights(trained / "x2"), weights(trained / "x1"), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=WEIGHT_TOLERANCE)
    predicted = [records.read_predictions(trained / f"x{c}" / records.PREDICTIONS_FILE).predicted for c in (1, 2)]
    assert np.mean(predicted[0] != predicted[1]) <= 0.01  # a class may flip where two are within rounding


@pytest.mark.training
def test_a_two_device_trial_killed_mid_epoch_resumes_into_the_uninterrupted_one(tmp_path, cache_dir, trained):
    env = subprocess_env(cache_dir, tmp_path, **TWO_CPU_DEVICES)
    run_dir = killed_and_resumed(tmp_path, env, "--hang-at", "3", "2", options=("--devices", "2"))
    fh.assert_same_trial(run_dir, trained / "x2")
    assert [start["device"] for start in records.read_record(run_dir).starts] == [
        records.read_record(run_dir).device
    ] * 2


# ---- two processes, one device each, on 127.0.0.1 ----------------------------------------------
def process_envs(env: dict) -> list[dict]:
    """The environment of each of two processes training one model: Keras' process variables
    (keras.distribution.initialize) with a free port on 127.0.0.1 for the coordinator."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    joined = {"KERAS_BACKEND": "jax", "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}"}
    joined["KERAS_DISTRIBUTION_NUM_PROCESSES"] = "2"
    return [{**env, **joined, "KERAS_DISTRIBUTION_PROCESS_ID": str(index)} for index in (0, 1)]


def run_processes(run_dir, tmp, env, *options, kill_at=None):
    """The tiny trial as two processes; with `kill_at` (epoch, batch) both hang there and are killed."""
    hanging = run_dir.with_name(run_dir.name + ".hanging")
    logs = [tmp / f"process-{index}.log" for index in (0, 1)]
    how = ("--hang-at", *map(str, kill_at)) if kill_at else ()
    started = [fh.start_trial(run_dir, log, each, *options, *how) for log, each in zip(logs, process_envs(env))]
    try:
        if kill_at:
            fh.wait_for(hanging.exists, "the trial hanging where it was told", started[0], log=logs[0])
            seen = {"process-1 checkpoint": (run_dir / "process-1" / "backup").is_dir()}
            for process in started:
                fh.kill(process)
            hanging.unlink()
            return seen
        for process, log in zip(started, logs):
            assert process.wait(240) == 0, log.read_text()[-3000:]
    finally:
        for process in started:
            fh.kill(process)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, cache_dir):
    """The tiny trial trained by two processes, each with one CPU device, without a break."""
    tmp = tmp_path_factory.mktemp("processes")
    run_processes(tmp / "run", tmp, subprocess_env(cache_dir, tmp))
    return tmp / "run"


@pytest.mark.training
def test_two_processes_train_the_one_device_trial_and_process_0_alone_keeps_the_record(two_processes, trained):
    record = records.read_record(two_processes)
    assert (record.devices, record.device) == (
        2,
        "CPU x2: " + records.read_record(trained / "x1").device[5:] + ", 2 processes",
    )
    assert sorted(path.name for path in two_processes.iterdir()) == sorted(
        ["config.json", "history.csv", "metrics.json", "model.keras", "predictions.npz", "train.log"]
    )  # process 1's checkpoint and log are gone with the trial done
    one, two = (records.read_history(folder / "history.csv") for folder in (trained / "x1", two_processes))
    for mine, theirs in zip(two, one, strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert float(mine[key]) == pytest.approx(float(theirs[key]), rel=HISTORY_TOLERANCE), (mine["epoch"], key)
    for got, want in zip(weights(two_processes), weights(trained / "x1"), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=WEIGHT_TOLERANCE)


@pytest.mark.training
def test_two_processes_killed_mid_epoch_resume_into_the_uninterrupted_pair(tmp_path, cache_dir, two_processes):
    env = subprocess_env(cache_dir, tmp_path)
    run_dir = tmp_path / "run"
    seen = run_processes(run_dir, tmp_path, env, kill_at=(3, 2))
    assert seen["process-1 checkpoint"]  # each process writes its own checkpoint, process 1 in process-1/
    assert [int(row["epoch"]) for row in records.read_history(run_dir / "history.csv")] == [1, 2]
    run_processes(run_dir, tmp_path, env)
    fh.assert_same_trial(run_dir, two_processes)
    assert len(records.read_record(run_dir).starts) == 2


@pytest.mark.training
def test_convmixer_run_on_two_processes_trains_together_and_process_0_alone_records_and_reports(tmp_path, cache_dir):
    """`convmixer run quick --only baseline adamw` (tiny trials) on two processes, as on two hosts:
    the two trainings (the sweep's Adam is the baseline trial, reused) once each, on both."""
    params = tmp_path / "params"
    shutil.copytree(fh.REPO / "params", params)
    (params / "profiles" / "quick.yaml").write_text(fh.QUICK_PROFILE)
    out = tmp_path / "out"
    env = subprocess_env(cache_dir, tmp_path, CONVMIXER_PARAMS=str(params))
    command = ["run", "quick", "--only", "baseline", "adamw", "--backend", "jax", "--out", str(out)]
    envs, logs = process_envs(env), [tmp_path / f"process-{index}.log" for index in (0, 1)]
    address = envs[0]["KERAS_DISTRIBUTION_JOB_ADDRESSES"]
    for variables in envs:  # the flags say it
        for name in (
            "KERAS_DISTRIBUTION_JOB_ADDRESSES",
            "KERAS_DISTRIBUTION_NUM_PROCESSES",
            "KERAS_DISTRIBUTION_PROCESS_ID",
        ):
            variables.pop(name)
    started = [
        fh.start_cli([*command, "--coordinator", address, "--processes", "2", "--process-id", str(index)], log, each)
        for index, (log, each) in enumerate(zip(logs, envs))
    ]
    try:
        for process, log in zip(started, logs):
            assert process.wait(400) == 0, log.read_text()[-3000:]
    finally:
        for process in started:
            fh.kill(process)
    printed = [log.read_text() for log in logs]
    for text in printed:
        assert "2 trial(s) to train together" in text and "[2/2] adamw/optimizer=adamw_seed0: complete" in text
    assert f"report: {out / 'index.html'}" in printed[0] and "report:" not in printed[1]
    assert sorted(p.name for p in (out / "notebooks").iterdir()) == ["adamw.ipynb", "baseline.ipynb", "report.ipynb"]
    for run_dir in records.find_run_dirs(out / "runs"):
        assert records.read_record(run_dir).device.endswith(", 2 processes") and not (run_dir / "process-1").exists()
    assert records.read_record(out / "runs" / "adamw" / "optimizer=adam_seed0").reused_from == "baseline/baseline_seed0"


@pytest.mark.unit
def test_a_tensorflow_trial_trains_in_process_0_under_its_strategy():
    pytest.importorskip("tensorflow")
    placement = device._detect("tensorflow", "cpu", None)
    assert (placement.process, placement.processes, placement.count) == (0, 1, 1)
    assert placement._strategy is not None and not placement.scores_a_copy


@pytest.mark.unit
@pytest.mark.parametrize(
    "flags", [["--processes", "2"], ["--coordinator", "h:1", "--process-id", "1"], ["--process-id", "0"]]
)
def test_the_process_flags_go_together(flags, capsys):
    from convmixer import cli

    assert cli.main(["run", "smoke", "--only", "baseline", *flags]) == 2
    assert "--coordinator, --processes and --process-id go together" in capsys.readouterr().err


@pytest.mark.unit
def test_tensorflow_refuses_several_devices_in_one_line_naming_jax():
    pytest.importorskip("tensorflow")
    with pytest.raises(device.DeviceError, match=r"^devices: 2 needs the jax backend: .*KERAS_BACKEND=jax"):
        device._detect("tensorflow", "cpu", 2)


@pytest.mark.unit
def test_more_cpu_devices_than_jax_has_is_refused_with_the_flag_that_splits_the_cpu():
    pytest.importorskip("jax")
    with pytest.raises(device.DeviceError, match="xla_force_host_platform_device_count=64"):
        device._detect("jax", "cpu", 64)


@pytest.mark.unit
@pytest.mark.parametrize(
    "sizes, batch, count, refused",
    [
        ({"training": 500, "validation": 100, "test": 200}, 50, 2, None),
        ({"training": 45000, "validation": 5000, "test": 10000}, 128, 8, None),  # last batches of 72, 8 and 16
        ({"training": 501, "validation": 100, "test": 200}, 50, 2, "training split's batches of 1 images"),
        ({"training": 500, "validation": 30, "test": 200}, 40, 4, "validation split's batches of 30 images"),
        ({"training": 500, "validation": 0, "test": 200}, 50, 2, None),  # no validation split
    ],
)
def test_every_batch_must_split_equally_over_the_devices(sizes, batch, count, refused):
    if refused is None:
        device.check_even_shares(sizes, batch, count)
    else:
        with pytest.raises(device.DeviceError, match=refused):
            device.check_even_shares(sizes, batch, count)


@pytest.mark.unit
def test_devices_are_not_part_of_a_trial_s_identity_and_must_be_positive():
    assert TrialConfig(devices=2).trial_id() == TrialConfig().trial_id()
    with pytest.raises(ValueError, match="devices must be >= 1"):
        TrialConfig(devices=0)

"""Keras on TensorFlow and on JAX: choosing the backend, finding devices, the execution choices
recorded per trial, and trials trained on one backend checked on the other."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import pytest
from backends import BACKEND
from test_train import TINY as TRAIN_TINY

from convmixer import backend, device, records
from convmixer.config import ConfigError, TrialConfig
from convmixer.train import train

pytestmark = pytest.mark.training

ROOT = Path(__file__).resolve().parents[1]
OTHER = "jax" if BACKEND == "tensorflow" else "tensorflow"
requires_other_backend = pytest.mark.skipif(OTHER not in backend.installed(), reason=f"{OTHER} is not installed")
# test_train's tiny trial with flips (for the test-time flip), trained long enough to learn: about
# 25% on its 200 test images, where chance is 10% and one class always scores exactly 10%.
TINY = {**TRAIN_TINY, "flip": True, "epochs": 4, "learning_rate": 0.01}
CHANCE = 0.1


def test_the_running_backend_is_kept_and_another_is_refused(monkeypatch):
    assert backend.use("auto") == BACKEND == backend.use(BACKEND)
    monkeypatch.setattr(backend, "installed", lambda: list(backend.BACKENDS))  # as if both were
    with pytest.raises(ConfigError, match=f"already running on {BACKEND} .* restart"):
        backend.use(OTHER)
    with pytest.raises(ConfigError, match="unknown backend 'torch'"):
        backend.choose("torch")


def test_auto_takes_jax_where_tensorflow_is_missing(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(backend, "installed", lambda: ["jax"])
    assert backend.choose("auto") == "jax"
    # Keras writes keras.json naming TensorFlow on its first import, installed or not.
    (tmp_path / "keras.json").write_text('{"backend": "tensorflow"}')
    assert backend.choose("auto") == "jax"
    with pytest.raises(ConfigError, match=r"backend 'tensorflow' is not installed here .*convmixer\[tensorflow\]"):
        backend.choose("tensorflow")
    monkeypatch.setattr(backend, "installed", lambda: ["tensorflow", "jax"])
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')  # a user's own choice is kept
    assert backend.choose("auto") == "jax"


def test_a_missing_accelerator_is_one_line_before_anything_is_written(tmp_path):
    config = TrialConfig.from_dict({**TINY, "device": "gpu"})
    with pytest.raises(device.DeviceError, match=r"device 'gpu' asked for, but \w+ finds only the CPU") as error:
        train(config, tmp_path / "run", verbose=0)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


def _placement(backend_name, kind):
    return device.Placement(backend_name, kind, 1, f"{kind} for a test")


@pytest.mark.parametrize(
    "backend_name, kind, forced, expected",
    [
        ("tensorflow", "cpu", {}, (False, True)),
        ("tensorflow", "gpu", {}, (True, False)),
        ("jax", "cpu", {}, (True, False)),
        ("jax", "tpu", {}, (True, False)),
        ("tensorflow", "cpu", {"jit_compile": True, "fused": False}, (True, False)),
    ],
)
def test_execution_choices_per_backend_and_device(backend_name, kind, forced, expected):
    choice = device.execution_choices(TrialConfig(**forced), _placement(backend_name, kind))
    assert (choice.jit_compile, choice.fused) == expected
    assert choice.reason.startswith(f"{backend_name} on {kind}: ")
    assert ("forced by the config" in choice.reason) == bool(forced)
    # convmixer asks TensorFlow for its oneDNN CPU kernels before TensorFlow loads (conftest imports it first)
    on_tf_cpu = (backend_name, kind, BACKEND) == ("tensorflow", "cpu", "tensorflow")
    assert choice.onednn is (True if on_tf_cpu else None)
    assert ("oneDNN's kernels" in choice.reason) == on_tf_cpu


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's switch")
@pytest.mark.parametrize("setting, expected", [(None, True), ("0", False)])
def test_oneDNN_is_on_unless_the_user_turns_it_off(setting, expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    code = "import convmixer.device as d, keras; print(d.tensorflow_onednn())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split()[-1] == str(expected)


def test_execution_choices_refuse_what_cannot_run():
    with pytest.raises(ConfigError, match="fused: true needs the tensorflow backend"):
        device.execution_choices(TrialConfig(fused=True), _placement("jax", "gpu"))
    with pytest.raises(ConfigError, match="not possible on a TPU"):
        device.execution_choices(TrialConfig(jit_compile=False), _placement("tensorflow", "tpu"))


@pytest.fixture(scope="module")
def smoke_trial(tmp_path_factory):
    """A tiny trial trained on this backend. (That the same seed repeats a trial bit for bit is
    test_train's same-seed test and every exact-resume test in test_faults.)"""
    root = tmp_path_factory.mktemp("backend")
    config = TrialConfig.from_dict(TINY)
    return config, root, [train(config, root / "run1", verbose=0)]


# What each backend must choose on a CPU (device.execution_choices' docstring says why), written out
# here rather than asked of the function that chose it; the saved model shows the choice was used.
EXPECTED_CPU_EXECUTION = {
    "tensorflow": {"jit_compile": False, "fused": True, "onednn": True, "reason": "tensorflow on cpu: oneDNN's"},
    "jax": {"jit_compile": True, "fused": False, "onednn": None, "reason": "jax on cpu: XLA compiles"},
}


def test_the_record_says_which_backend_and_execution_trained_it(smoke_trial):
    _, root, _ = smoke_trial
    record = records.read_record(root / "run1")
    assert record.backend == BACKEND and record.schema_version == records.SCHEMA_VERSION
    assert record.packages["keras"] == keras.__version__
    assert record.device.startswith("CPU: ") and record.device_note.startswith("device: auto found no GPU or TPU")
    expected = EXPECTED_CPU_EXECUTION[BACKEND]
    assert {k: record.execution[k] for k in ("jit_compile", "fused", "onednn")} == {
        k: expected[k] for k in ("jit_compile", "fused", "onednn")
    }
    assert record.execution["reason"].startswith(expected["reason"])
    with zipfile.ZipFile(root / "run1" / "model.keras") as saved:
        layers = {layer["class_name"] for layer in json.loads(saved.read("config.json"))["config"]["layers"]}
    assert ("GELU" in layers) == expected["fused"], layers


def _on_other_backend(*args) -> str:
    env = {**os.environ, "KERAS_BACKEND": OTHER}
    result = subprocess.run(
        [sys.executable, "-m", "convmixer.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@requires_other_backend
def test_a_model_saved_on_one_backend_scores_the_same_on_the_other(smoke_trial):
    _, root, (metrics,) = smoke_trial
    printed = _on_other_backend("evaluate", str(root / "run1" / "model.keras"), "--backend", OTHER)
    assert f"test accuracy {metrics.test_accuracy:.4f} on 200 images" in printed
    assert f"(recorded: {metrics.test_accuracy:.4f} on 200 images)" in printed
    assert "predictions the same as the recorded ones" in printed
    assert f"with the test-time flip {metrics.test_accuracy_flip:.4f}" in printed


@requires_other_backend
def test_the_same_trial_on_the_other_backend_lands_within_tolerance(smoke_trial, tmp_path):
    """Different random streams and kernels: the same recipe, not the same numbers. Both learn
    (at least 0.2 on 200 test images, over 3 binomial standard errors above chance, and a loss
    clearly below a uniform guess's ln 10 = 2.30), and their accuracies differ by at most 0.1, about
    two standard errors of a difference of two such accuracies."""
    config, _, (here,) = smoke_trial
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    script = (
        "import json, sys; from convmixer.config import TrialConfig; from convmixer.train import train; "
        "m = train(TrialConfig.from_dict(json.load(open(sys.argv[1]))), sys.argv[2], verbose=0); "
        "print(json.dumps({'test_accuracy': m.test_accuracy, 'test_loss': m.test_loss}))"
    )
    env = {**os.environ, "KERAS_BACKEND": OTHER}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "config.json"), str(tmp_path / "run")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    there = json.loads(result.stdout.strip().splitlines()[-1])
    assert records.read_record(tmp_path / "run").backend == OTHER
    for accuracy, loss in ((here.test_accuracy, here.test_loss), (there["test_accuracy"], there["test_loss"])):
        assert accuracy >= 2 * CHANCE and loss < 2.2
    assert there["test_accuracy"] == pytest.approx(here.test_accuracy, abs=0.1)

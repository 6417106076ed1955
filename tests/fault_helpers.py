"""Helpers for tests/test_faults.py: real trials in killable subprocesses, cut-down data, the CLI.

Run as a script it trains one tiny trial, so that a test can SIGKILL it:

    python tests/fault_helpers.py RUN_DIR [--epochs N] [--hang-at EPOCH BATCH] [--die-after-backup EPOCH]
        [--epoch-image-sizes SIZE ...] [--kernel-sizes K ...] [--mixing merged|parallel] [--devices N]

`--hang-at` blocks the trial at the start of that batch (both 1-based) after writing
`RUN_DIR.hanging`, so that a kill lands mid-epoch however fast the machine is.
`--die-after-backup` SIGKILLs the trial itself right after BackupAndRestore has saved that
epoch, the worst moment for the run record: the backup is ahead of everything else.
`--epoch-image-sizes` trains the first epochs on smaller images (multiples of the patch size, 4);
`--kernel-sizes` makes the model's depthwise layers multi-kernel, computed as `--mixing` says;
`--devices` trains on that many devices (on the CPU, XLA_FLAGS must split it into as many).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import psutil

REPO = Path(__file__).resolve().parents[1]
SAMPLE_ZIP = REPO / "convmixer" / "samples" / "cifar10-sample.zip"
TINY_IMAGENET_FIXTURE = REPO / "tests" / "fixtures" / "tiny-imagenet-mini-fixture.zip"
# A trial small enough for seconds on 2 cores that still learns (test accuracy ~30%, chance 10%).
TINY_TRIAL = {
    "dataset": "cifar10",
    "data_dir": str(SAMPLE_ZIP),
    "width": 16,
    "depth": 1,
    "patch_size": 4,
    "train_subset": 600,
    "val_size": 100,
    "test_subset": 200,
    "epochs": 4,
    "batch_size": 50,
    "optimizer": "adam",
    "learning_rate": 0.01,
    "crop_scale_min": 0.8,  # with the default flip: two random layers, whose draws a resume must repeat
    "seed": 0,
}
# A profile of tiny trials for tests that run the `convmixer` command: its notebooks take seconds.
QUICK_PROFILE = (
    "trial: {dataset: cifar10, data_dir: sample, train_subset: 200, val_size: 50, test_subset: 100,"
    " width: 16, depth: 1, patch_size: 4, epochs: 2, batch_size: 50, optimizer: adam, learning_rate: 0.01}\n"
    "experiments:\n  adamw: {values: [adam, adamw], seeds: [0]}\n"
)
CONTEXT = {"experiment": "baseline", "profile": "faults", "run_name": "baseline_seed0", "vary": None, "value": None}


def start_trial(run_dir: Path, log: Path, env: dict, *options: str) -> subprocess.Popen:
    """Start `python tests/fault_helpers.py run_dir ...` with its output going to `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, __file__, str(run_dir), *options], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def run_trial(run_dir: Path, log: Path, env: dict, *options: str, timeout: float = 180) -> str:
    """Run a trial subprocess to the end and return its output; fail the test if it failed."""
    process = start_trial(run_dir, log, env, *options)
    try:
        code = process.wait(timeout)
    finally:
        kill(process)
    output = log.read_text()
    assert code == 0, f"trial exited with {code}:\n{output[-3000:]}"
    return output


def subprocess_env(cache_dir: Path, tmp: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("CONVMIXER_DATA_DIR", "CONVMIXER_PARAMS")}
    return {
        **env,
        "CONVMIXER_CACHE_DIR": str(cache_dir),
        "CONVMIXER_REPORTS": str(tmp / "reports"),
        "PYTHONPATH": str(REPO),
        **extra,
    }


def killed_and_resumed(tmp: Path, env: dict, *how: str, options=(), damage=None) -> Path:
    """The tiny trial started with `how` (its kill options) until it dies (SIGKILLed by itself, or by the
    test once it hangs), `damage(run_dir)` applied to what it left, then run to its end."""
    run_dir = tmp / "runs" / "baseline" / "baseline_seed0"
    hanging = run_dir.with_name(run_dir.name + ".hanging")
    process = start_trial(run_dir, tmp / "killed.log", env, *options, *how)
    if how[0] == "--hang-at":
        wait_for(hanging.exists, "the trial hanging where it was told", process, log=tmp / "killed.log")
        kill(process)
        hanging.unlink()
    assert process.wait(180) == -signal.SIGKILL, (tmp / "killed.log").read_text()[-3000:]
    if damage is not None:
        damage(run_dir)
    run_trial(run_dir, tmp / "resumed.log", env, *options)
    return run_dir


def kill(process: subprocess.Popen) -> None:
    """SIGKILL `process` and everything it started, by pid.

    Jupyter starts each kernel in a session of its own, so killing the process group of
    the batch runner would leave its kernel training on.
    """
    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait()
    psutil.wait_procs(family[1:], timeout=10)


def wait_for(
    condition, what: str, process: subprocess.Popen | None = None, timeout: float = 180, log: Path | None = None
) -> None:
    """Poll `condition()` every 50 ms; fail if `process` exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        output = log.read_text()[-3000:] if log and log.exists() else ""
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited ({process.returncode}) before {what}:\n{output}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout} s:\n{output}")
        time.sleep(0.05)


def start_cli(args, log: Path, env: dict) -> subprocess.Popen:
    """`python -m convmixer.cli ARGS`, as a user types `convmixer ARGS`, output to `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "convmixer.cli", *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def cli(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `convmixer ARGS` to the end."""
    return subprocess.run(
        [sys.executable, "-m", "convmixer.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_refusing(args, tmp: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `convmixer ARGS` that should refuse them; stop it as soon as it executes a notebook.

    A refusal takes a second or two; a runner that has missed the bad input would go on to
    train for a minute, so it is stopped and the test reports that it started.
    """
    out, err = tmp / "cli.out", tmp / "cli.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "convmixer.cli", *args], cwd=REPO, env=env, stdout=stdout, stderr=stderr
        )
    try:
        wait_for(
            lambda: process.poll() is not None or ": executing ->" in out.read_text(),
            "answer from the convmixer command",
            timeout=timeout,
        )
    finally:
        kill(process)
    assert ": executing ->" not in out.read_text(), (
        f"convmixer started executing notebooks instead of refusing the input:\n{out.read_text()}"
    )
    return subprocess.CompletedProcess(process.args, process.returncode, out.read_text(), err.read_text())


def user_lines(stderr: str) -> list[str]:
    """The lines of `stderr` that the suite wrote, without TensorFlow's C++ and absl log lines."""
    return [
        line
        for line in stderr.splitlines()
        if not re.match(r"[IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl", line)
    ]


def notebook_done(path: Path) -> bool:
    """True once papermill has finished `path` (False while it is missing or being written)."""
    try:
        meta = nbformat.read(path, as_version=4).metadata.get("papermill", {})
    except (OSError, ValueError):
        return False
    return meta.get("end_time") is not None


def cut_cifar10(dest: Path, per_class: int = 12) -> Path:
    """A real CIFAR-10 image folder: the first `per_class` train and test images per class of the sample."""
    with zipfile.ZipFile(SAMPLE_ZIP) as archive:
        for name in archive.namelist():
            if not name.endswith("/") and int(Path(name).stem) < per_class:
                archive.extract(name, dest)
    return dest / "cifar10-jpeg"


def cut_tiny_imagenet(dest: Path, without: str) -> Path:
    """The Tiny-ImageNet fixture unpacked into `dest`, less the file `without` (relative to its root)."""
    with zipfile.ZipFile(TINY_IMAGENET_FIXTURE) as archive:
        archive.extractall(dest)
    root = dest / "tiny-imagenet-200"
    (root / without).unlink()
    return root


def assert_same_trial(run_dir: Path, reference: Path) -> None:
    """Fail unless two finished run folders hold the same trial's same results, bit for bit:
    every history.csv value but the epoch's wall time, every final weight, the test metrics,
    and the class predicted for every test image."""
    import keras
    import numpy as np

    import convmixer.train  # noqa: F401  (registers the model's layers for loading)
    from convmixer import records

    def history(folder):
        return [
            {k: v for k, v in row.items() if k != "epoch_seconds"}
            for row in records.read_history(folder / "history.csv")
        ]

    got, want = history(run_dir), history(reference)
    assert len(got) == len(want), f"{len(got)} epochs in history.csv, the uninterrupted trial has {len(want)}"
    for mine, theirs in zip(got, want):
        differ = {k: (mine[k], theirs[k]) for k in theirs if mine.get(k) != theirs[k]}
        assert not differ, f"epoch {theirs['epoch']} (resumed, uninterrupted): {differ}"
    weights = [keras.saving.load_model(folder / "model.keras").get_weights() for folder in (run_dir, reference)]
    assert len(weights[0]) == len(weights[1])
    for got, want in zip(*weights):
        np.testing.assert_array_equal(got, want)
    measured = [records.read_metrics(folder) for folder in (run_dir, reference)]
    for field in ("status", "test_accuracy", "test_accuracy_flip", "test_loss", "best_val_accuracy", "epochs"):
        assert getattr(measured[0], field) == getattr(measured[1], field), field
    predicted = [records.read_predictions(folder / records.PREDICTIONS_FILE) for folder in (run_dir, reference)]
    np.testing.assert_array_equal(predicted[0].predicted, predicted[1].predicted)


# ---- the trial subprocess ------------------------------------------------------------------
def _hang_at(marker: Path, epoch: int, batch: int) -> None:
    from convmixer.train import HistoryWriter

    begin = HistoryWriter.on_epoch_begin

    def on_epoch_begin(self, index, logs=None):
        self.epoch_index = index
        begin(self, index, logs)

    def on_train_batch_begin(self, index, logs=None):
        if (self.epoch_index, index) == (epoch - 1, batch - 1):
            marker.write_text(f"epoch {epoch} batch {batch}\n")
            time.sleep(600)

    HistoryWriter.on_epoch_begin = on_epoch_begin
    HistoryWriter.on_train_batch_begin = on_train_batch_begin


def _die_after_backup(epoch: int) -> None:
    import keras

    save = keras.callbacks.BackupAndRestore.on_epoch_end

    def on_epoch_end(self, index, logs=None):
        save(self, index, logs)
        if index == epoch - 1:
            os.kill(os.getpid(), signal.SIGKILL)

    keras.callbacks.BackupAndRestore.on_epoch_end = on_epoch_end


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--epochs", type=int, default=TINY_TRIAL["epochs"])
    parser.add_argument("--hang-at", type=int, nargs=2, metavar=("EPOCH", "BATCH"))
    parser.add_argument("--die-after-backup", type=int, metavar="EPOCH")
    parser.add_argument("--epoch-image-sizes", type=int, nargs="+", metavar="SIZE")
    parser.add_argument("--kernel-sizes", type=int, nargs="+", metavar="K")
    parser.add_argument("--mixing", default="merged")
    parser.add_argument("--devices", type=int)
    args = parser.parse_args(argv)

    from convmixer.config import TrialConfig
    from convmixer.train import train

    if args.hang_at:
        _hang_at(args.run_dir.with_name(args.run_dir.name + ".hanging"), *args.hang_at)
    if args.die_after_backup:
        _die_after_backup(args.die_after_backup)
    config = TrialConfig.from_dict(
        {
            **TINY_TRIAL,
            "epochs": args.epochs,
            "epoch_image_sizes": args.epoch_image_sizes,
            "kernel_sizes": args.kernel_sizes,
            "mixing": args.mixing,
            "devices": args.devices,
        }
    )
    metrics = train(config, args.run_dir, context=CONTEXT, verbose=2)
    print("status:", metrics.status, "test_accuracy:", metrics.test_accuracy, flush=True)


if __name__ == "__main__":
    main()

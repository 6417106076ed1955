"""Reliability (issue 6): killed runs resume, failed trials are recorded, bad input stops early.

Every fault is real: trials and the batch runner are SIGKILLed in subprocesses, records are
read back from disk, and bad inputs are real files (images cut from the shipped CIFAR-10
sample, the Tiny-ImageNet fixture, broken params files) given to the Python API and to the
`convmixer` command. Helpers and the trial subprocess live in fault_helpers.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import fault_helpers as fh
import nbformat
import pytest
from fault_helpers import QUICK_PROFILE, killed_and_resumed, subprocess_env
from records_factory import make_run

from convmixer import records, study
from convmixer.config import ConfigError
from convmixer.report import collate
from convmixer.study import suite

pytestmark = pytest.mark.training

TINY_OVERRIDES = {
    key: fh.TINY_TRIAL[key]
    for key in ("width", "depth", "patch_size", "train_subset", "val_size", "test_subset", "batch_size")
}
# For the small broken data folders: every image is read, so the broken one cannot be left out.
ALL_IMAGES = {"train_subset": None, "val_size": 20, "test_subset": None}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One decoded-image cache for the session: the sample is decoded once, not per test."""
    return tmp_path_factory.mktemp("decoded")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, cache_dir, tmp_path):
    monkeypatch.setenv("CONVMIXER_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("CONVMIXER_REPORTS", str(tmp_path / "reports"))
    monkeypatch.delenv("CONVMIXER_DATA_DIR", raising=False)
    monkeypatch.delenv("CONVMIXER_PARAMS", raising=False)


def epochs(history: list[dict]) -> list[int]:
    return [int(row["epoch"]) for row in history]


# ---- 1. a killed trial resumes into exactly the uninterrupted trial -----------------------------
# Every kill below is compared with the same trial run without a break (`uninterrupted`), bit for
# bit: each epoch's shuffle and augmentations come from (seed, epoch), whatever the starts.
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir):
    """The tiny 4-epoch trial, run without a break."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    fh.run_trial(tmp / "run", tmp / "run.log", subprocess_env(cache_dir, tmp))
    return tmp / "run"


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, cache_dir, uninterrupted):
    """The tiny trial SIGKILLed in epoch 2 (at its third batch), what it left, then resumed."""
    tmp = tmp_path_factory.mktemp("interrupted")
    env = subprocess_env(cache_dir, tmp)
    seen = {}

    def look(run_dir):
        seen.update(
            status=records.run_status(run_dir),
            history=records.read_history(run_dir / "history.csv"),
            files=sorted(p.name for p in run_dir.iterdir()),
            runs=collate.load_runs(tmp / "runs"),
            unfinished=collate.unfinished_runs(tmp / "runs"),
            record=records.read_record(run_dir),
        )

    run_dir = killed_and_resumed(tmp, env, "--hang-at", "2", "3", damage=look)
    return SimpleNamespace(
        run_dir=run_dir,
        killed=SimpleNamespace(**seen),
        output=(tmp / "resumed.log").read_text(),
        history=records.read_history(run_dir / "history.csv"),
        metrics=records.read_json(run_dir / "metrics.json"),
        record=records.read_record(run_dir),
    )


def test_killed_trial_is_unfinished_and_collation_leaves_it_out(interrupted):
    killed = interrupted.killed
    assert epochs(killed.history) == [1]  # the kill landed in epoch 2
    assert "config.json" in killed.files and "backup" in killed.files and "metrics.json" not in killed.files
    assert killed.status == "unfinished"
    assert len(killed.runs) == 0
    assert list(killed.unfinished["run_name"]) == ["baseline_seed0"]


def test_killed_trial_resumes_from_its_last_finished_epoch(interrupted):
    assert "Epoch 2/4" in interrupted.output and "Epoch 1/4" not in interrupted.output
    assert (interrupted.run_dir / "train.log").read_text().count("epoch 1:") == 1
    assert interrupted.history[0] == interrupted.killed.history[0]  # epoch 1 kept, not rerun


def test_a_trial_killed_mid_epoch_resumes_into_the_uninterrupted_trial(interrupted, uninterrupted):
    fh.assert_same_trial(interrupted.run_dir, uninterrupted)


def test_resumed_trial_finishes_with_a_whole_record(interrupted, uninterrupted):
    assert interrupted.metrics["status"] == "complete" and interrupted.metrics["error"] is None
    assert interrupted.metrics["epochs"] == 4 and epochs(interrupted.history) == [1, 2, 3, 4]
    assert (interrupted.run_dir / "model.keras").is_file()
    assert not (interrupted.run_dir / "backup").exists()
    assert records.run_status(interrupted.run_dir) == "complete"
    assert records.read_metrics(uninterrupted).test_accuracy > 0.2  # it learns: the comparisons mean something


def test_train_log_says_the_trial_resumed(interrupted):
    assert "resuming" in (interrupted.run_dir / "train.log").read_text()


def test_the_record_of_a_resumed_trial_keeps_the_first_start_and_lists_every_start(interrupted):
    first, record = interrupted.killed.record, interrupted.record
    assert [start["epochs_done"] for start in record.starts] == [0, 1]
    assert record.starts[0] == first.starts[0] and record.created == first.created == first.starts[0]["at"]
    assert record.starts[1]["at"] >= record.created
    assert all(start["git_commit"] == record.git_commit and start["device"] == record.device for start in record.starts)
    assert [start["resume"] for start in record.starts] == [records.RESUME] * 2 and record.inexact_resumes == 0


def test_a_trial_killed_right_after_a_checkpoint_resumes_into_the_uninterrupted_trial(
    tmp_path, cache_dir, uninterrupted
):
    """Between two epochs, at the worst moment: BackupAndRestore has saved epoch 2, nothing else
    has been written since."""
    env = subprocess_env(cache_dir, tmp_path)
    run_dir = killed_and_resumed(tmp_path, env, "--die-after-backup", "2")
    fh.assert_same_trial(run_dir, uninterrupted)


def cut_in_half(path: Path) -> None:
    """`path` as a kill while it was written leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))


# A half-written first metadata file is read after the weights were loaded: the restart must put the
# fresh weights back, on each backend. Half-written weights fail before that: Keras' own path.
HALF_WRITTEN = [pytest.param("latest.weights.h5", marks=pytest.mark.backend_independent), "training_metadata.json"]


@pytest.mark.backend_independent  # the fallback to the previous checkpoint is Keras' and h5py's own code
@pytest.mark.parametrize("broken", ["latest.weights.h5", "training_metadata.json"])
def test_a_kill_while_a_checkpoint_is_written_resumes_from_the_one_before(tmp_path, cache_dir, uninterrupted, broken):
    """Epoch 2's checkpoint half written: the trial falls back to epoch 1's and trains epoch 2 again."""
    env = subprocess_env(cache_dir, tmp_path)
    run_dir = killed_and_resumed(
        tmp_path, env, "--die-after-backup", "2", damage=lambda run_dir: cut_in_half(run_dir / "backup" / broken)
    )
    fh.assert_same_trial(run_dir, uninterrupted)


@pytest.mark.parametrize("broken", HALF_WRITTEN)
def test_a_kill_while_the_first_checkpoint_is_written_restarts_into_the_uninterrupted_trial(
    tmp_path, cache_dir, uninterrupted, broken
):
    """Half a first checkpoint has no previous one to fall back on: the trial starts again."""
    env = subprocess_env(cache_dir, tmp_path)
    run_dir = killed_and_resumed(
        tmp_path, env, "--die-after-backup", "1", damage=lambda run_dir: cut_in_half(run_dir / "backup" / broken)
    )
    assert "unreadable checkpoint" in (run_dir / "train.log").read_text()
    fh.assert_same_trial(run_dir, uninterrupted)


PROGRESSIVE = ("--epochs", "3", "--epoch-image-sizes", "16", "16")  # epochs 1-2 at 16x16, 3 at 32x32


@pytest.fixture(scope="module")
def progressive_reference(tmp_path_factory, cache_dir):
    """The progressive-resizing trial run without a break."""
    tmp = tmp_path_factory.mktemp("progressive")
    fh.run_trial(tmp / "run", tmp / "run.log", subprocess_env(cache_dir, tmp), *PROGRESSIVE)
    return tmp / "run"


@pytest.mark.parametrize(
    "kill",
    [("--die-after-backup", "2"), ("--hang-at", "3", "2")],
    ids=["right-after-the-last-small-epoch", "in-the-first-full-size-epoch"],
)
def test_a_trial_killed_between_or_after_two_image_sizes_resumes_into_the_uninterrupted_trial(
    tmp_path, cache_dir, progressive_reference, kill
):
    """Progressive resizing: killed as the small-image epochs end or in the first full-size one
    (before its checkpoint), the trial goes on at the full size where it stopped."""
    env = subprocess_env(cache_dir, tmp_path)
    run_dir = killed_and_resumed(tmp_path, env, *kill, options=PROGRESSIVE)
    output = (tmp_path / "resumed.log").read_text()
    assert "Epoch 3/3" in output and "Epoch 1/" not in output and "Epoch 2/" not in output
    history = records.read_history(run_dir / "history.csv")
    assert [(int(r["epoch"]), int(r["image_size"])) for r in history] == [(1, 16), (2, 16), (3, 32)]
    fh.assert_same_trial(run_dir, progressive_reference)
    assert not (run_dir / "backup").exists()


# merged computes one plain depthwise convolution, resumed like any trial: on TensorFlow only
@pytest.mark.parametrize("mixing", [pytest.param("merged", marks=pytest.mark.backend_independent), "parallel"])
def test_a_killed_multi_kernel_trial_resumes_into_the_uninterrupted_trial(tmp_path, cache_dir, mixing):
    """The dynamic weighted kernel in both of its forms (the same maths computed two ways, so each
    has its own uninterrupted reference), killed mid-epoch."""
    options = ("--epochs", "3", "--kernel-sizes", "3", "5", "--mixing", mixing)
    env = subprocess_env(cache_dir, tmp_path)
    fh.run_trial(tmp_path / "reference", tmp_path / "reference.log", env, *options)
    run_dir = killed_and_resumed(tmp_path, env, "--hang-at", "2", "4", options=options)
    fh.assert_same_trial(run_dir, tmp_path / "reference")
    assert records.read_metrics(run_dir).mixing_weights


@pytest.mark.backend_independent
def test_a_half_written_later_checkpoint_falls_back_to_the_one_before(tmp_path):
    """h5py raises RuntimeError or KeyError, not OSError, for most half-written files; Keras
    falls back to the previous checkpoint only on OSError (a flaky CI failure before the fix)."""
    import keras
    import numpy as np

    from convmixer.train import BackupAndRestore

    def fit(epochs):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile("adam", "sparse_categorical_crossentropy")
        backup = BackupAndRestore(str(tmp_path / "backup"), double_checkpoint=True, delete_checkpoint=False)
        x, y = np.random.default_rng(0).normal(size=(32, 4)), np.arange(32) % 3
        return model, model.fit(x, y, epochs=epochs, callbacks=[backup], verbose=0).epoch

    model, _ = fit(3)  # latest: epoch 3, latest.bkp: epoch 2
    latest = tmp_path / "backup" / "latest.weights.h5"
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))  # cut off mid-write
    with pytest.raises((RuntimeError, KeyError)):  # what h5py says; Keras alone would fail the trial
        model.load_weights(latest)
    assert fit(4)[1] == [2, 3]  # resumed from the checkpoint of epoch 2


# ---- 2. the batch runner killed between notebooks ---------------------------------------------
# The batch runner's own logic on trials of seconds (test_notebooks runs the smoke profile's notebooks).
@pytest.mark.backend_independent
def test_killed_batch_runner_skips_finished_notebooks_and_trials(tmp_path, cache_dir, params):
    (params / "profiles" / "quick.yaml").write_text(QUICK_PROFILE)
    env = subprocess_env(cache_dir, tmp_path, CONVMIXER_PARAMS=str(params))
    out = tmp_path / "out"
    args = ["run", "quick", "--out", str(out), "--only", "baseline", "adamw", "--data-dir", str(fh.SAMPLE_ZIP)]
    baseline = out / "runs" / "baseline" / "baseline_seed0"
    adam, adamw = (out / "runs" / "adamw" / f"optimizer={name}_seed0" for name in ("adam", "adamw"))
    process = fh.start_cli(args, tmp_path / "first.log", env)
    try:
        fh.wait_for(
            lambda: fh.notebook_done(out / "notebooks" / "baseline.ipynb") and (adam / "metrics.json").exists(),
            "baseline notebook and first adamw trial finished",
            process,
            timeout=400,
            log=tmp_path / "first.log",
        )
    finally:
        fh.kill(process)
    assert not fh.notebook_done(out / "notebooks" / "adamw.ipynb")
    assert records.run_status(adamw) in ("new", "unfinished")
    finished = {path: path.read_bytes() for path in (baseline / "metrics.json", adam / "metrics.json")}
    # The Adam trial is the baseline trial: reused, so only the baseline has a model.
    assert records.read_record(adam).reused_from == "baseline/baseline_seed0"
    models = {path: path.stat().st_mtime_ns for path in (baseline / "model.keras",)}

    again = fh.cli(*args, env=env, timeout=400)

    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    assert "[1/2] baseline: already executed, skipping" in again.stdout
    assert "[2/2] adamw: executing" in again.stdout
    assert {path: path.read_bytes() for path in finished} == finished
    assert {path: path.stat().st_mtime_ns for path in models} == models
    assert records.run_status(adamw) == "complete"
    assert epochs(records.read_history(adamw / "history.csv")) == [1, 2]
    meta = nbformat.read(out / "notebooks" / "adamw.ipynb", as_version=4).metadata.papermill
    assert meta["end_time"] and not meta["exception"]
    assert (out / "index.html").is_file()


def test_a_half_written_executed_notebook_counts_as_not_finished(tmp_path):
    """A kill while papermill saves its output leaves half a notebook: not finished (so the batch runner
    executes it again), and not an error."""
    parameters = {"profile": "smoke", "out_dir": str(tmp_path)}
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    notebook.metadata.papermill = {"parameters": parameters, "end_time": "2025-01-01T00:00:00", "exception": None}
    path = tmp_path / "baseline.ipynb"
    nbformat.write(notebook, path)
    assert suite.notebook_finished(path, parameters)
    path.write_text(path.read_text()[:100])
    assert not suite.notebook_finished(path, parameters)


def test_a_notebook_killed_on_one_machine_resumes_on_another_from_persist_dir(tmp_path, params):
    """A Colab disconnect: the notebook, with `persist_dir` on a folder standing in for Google
    Drive, is killed mid-trial on one machine and rerun on a new one (another home, nothing
    else kept); it resumes from the checkpoint the folder kept, and the machines' own disks
    hold none of the run, its checkpoints or its caches."""
    (params / "profiles" / "longer.yaml").write_text(
        "trial: {dataset: cifar10, data_dir: sample, train_subset: 600, val_size: 100, test_subset: 200,"
        " width: 16, depth: 1, patch_size: 4, epochs: 6, batch_size: 50, optimizer: adam, learning_rate: 0.01}\n"
    )
    drive = tmp_path / "drive"
    run_dir = drive / "reports" / "longer" / "runs" / "baseline" / "baseline_seed0"

    def machine(name: str) -> tuple[list[str], dict]:
        home = tmp_path / name
        home.mkdir()
        moved = ("CONVMIXER_CACHE_DIR", "CONVMIXER_REPORTS", "KERAS_HOME", "CONVMIXER_DATA_DIR")
        env = {k: v for k, v in os.environ.items() if k not in moved}
        env.update(HOME=str(home), PYTHONPATH=str(fh.REPO), CONVMIXER_PARAMS=str(params))
        command = [
            sys.executable,
            "-m",
            "papermill",
            "--cwd",
            str(fh.REPO / "notebooks"),
            "--no-progress-bar",
            str(fh.REPO / "notebooks" / "baseline.ipynb"),
            str(home / "baseline.ipynb"),
            "-p",
            "profile",
            "longer",
            "-p",
            "persist_dir",
            str(drive),
            "-p",
            "verbose",
            "2",
        ]
        return command, env

    command, env = machine("vm1")
    with open(tmp_path / "vm1.log", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # Two rows in the history: epoch 1's checkpoint is whole (epoch 2's may be half-written,
        # and Keras then falls back to epoch 1's).
        fh.wait_for(
            lambda: len(records.read_history(run_dir / "history.csv")) >= 2,
            "two epochs on the drive",
            process,
            timeout=300,
            log=tmp_path / "vm1.log",
        )
    finally:
        fh.kill(process)
    assert records.run_status(run_dir) == "unfinished"
    first_epoch = records.read_history(run_dir / "history.csv")[0]

    command, env = machine("vm2")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert records.run_status(run_dir) == "complete"
    log = (run_dir / "train.log").read_text()
    assert "resuming" in log and "unreadable checkpoint" not in log
    history = records.read_history(run_dir / "history.csv")
    assert epochs(history) == [1, 2, 3, 4, 5, 6] and history[0] == first_epoch  # epoch 1 kept, not rerun
    assert (drive / "keras" / "keras.json").is_file() and any((drive / "cache").iterdir())
    for home in (tmp_path / "vm1", tmp_path / "vm2"):
        left = sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())
        assert all(
            path == "baseline.ipynb" or path.startswith((".ipython", ".local", ".jupyter", ".cache/matplotlib"))
            for path in left
        ), left


# ---- 3. records are never half-written ---------------------------------------------------------
@pytest.mark.parametrize("failing", ["replace", "fsync"])
@pytest.mark.parametrize("existing", [True, False])
def test_a_failed_write_keeps_the_old_metrics_and_leaves_no_temp_file(tmp_path, monkeypatch, failing, existing):
    path = tmp_path / "metrics.json"
    old = {"status": "failed", "error": "OSError: earlier"}
    if existing:
        records.write_json(path, old)

    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, crash)
    with pytest.raises(OSError, match="No space left on device"):
        records.write_json(path, {"status": "complete", "test_accuracy": 0.5})
    monkeypatch.undo()
    assert records.read_json(path) == (old if existing else None)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["metrics.json"] if existing else [])


@pytest.mark.backend_independent
def test_a_write_killed_before_the_rename_leaves_the_old_record(tmp_path, cache_dir):
    """SIGKILL between writing the temp file and renaming it: the record is the old one, whole."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    script = (
        "import os, signal, sys\n"
        "from convmixer import records\n"
        "records.write_json(sys.argv[1], {'status': 'failed', 'error': 'first'})\n"
        "os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)\n"
        "records.write_json(sys.argv[1], {'status': 'complete', 'error': None})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(run_dir / "metrics.json")],
        env=subprocess_env(cache_dir, tmp_path),
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL
    assert records.read_json(run_dir / "metrics.json") == {"status": "failed", "error": "first"}
    assert records.run_status(run_dir) == "failed"
    leftovers = [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".metrics.json.")  # hidden, never read


# ---- 4. failed trials are recorded, the sweep goes on, a rerun retries them -------------------
@pytest.fixture(scope="module")
def sweep(tmp_path_factory, cache_dir):
    """A 3-trial learning-rate sweep: lr 1e12 diverges, lr 0.03 crashes in epoch 2, lr 0.01 completes.

    Then the sweep is run again without the crash.
    """
    tmp = tmp_path_factory.mktemp("sweep")
    params = tmp / "params"
    shutil.copytree(fh.REPO / "params", params)
    (params / "experiments" / "lr_sweep.yaml").write_text(
        "title: Learning-rate sweep\norder: 9\nvary: learning_rate\nvalues: [1.0e+12, 0.03, 0.01]\n"
    )
    out = tmp / "out"
    crashing = "learning_rate=0.03_seed0"

    def run():
        return study.run_experiment(
            "lr_sweep",
            "smoke",
            out_dir=out,
            data_dir=fh.SAMPLE_ZIP,
            overrides={**TINY_OVERRIDES, "optimizer": "sgd", "epochs": 2},
            verbose=0,
        )

    with pytest.MonkeyPatch.context() as env:
        env.setenv("CONVMIXER_PARAMS", str(params))
        env.setenv("CONVMIXER_CACHE_DIR", str(cache_dir))
        env.delenv("CONVMIXER_DATA_DIR", raising=False)
        from convmixer.train import HistoryWriter

        begin = HistoryWriter.on_epoch_begin

        def on_epoch_begin(self, epoch, logs=None):
            if self.path.parent.name == crashing and epoch == 1:
                raise OSError(28, "No space left on device")
            begin(self, epoch, logs)

        with pytest.MonkeyPatch.context() as crash:
            crash.setattr(HistoryWriter, "on_epoch_begin", on_epoch_begin)
            first = run()
        runs_dir = out / "runs" / "lr_sweep"
        before = {p.parent.name: records.read_json(p) for p in runs_dir.glob("*/metrics.json")}
        complete = runs_dir / "learning_rate=0.01_seed0"
        kept = {p: p.read_bytes() for p in (complete / "metrics.json", complete / "model.keras")}
        with pytest.raises(RuntimeError) as failed:
            study.raise_if_failed(first)
        collated = collate.load_runs(out / "runs")
        again = run()
    return SimpleNamespace(
        first=first,
        before=before,
        failed=str(failed.value),
        collated=collated,
        again=again,
        runs_dir=runs_dir,
        kept=kept,
        crashing=crashing,
    )


NAN_RUN = "learning_rate=1000000000000.0_seed0"


def test_failed_trials_are_recorded_with_their_error(sweep):
    nan, crashed = sweep.before[NAN_RUN], sweep.before[sweep.crashing]
    assert nan["status"] == "failed" and nan["error"] == "TrainingDiverged: training loss became nan"
    assert crashed["status"] == "failed" and crashed["error"] == "OSError: [Errno 28] No space left on device"
    assert crashed["epochs"] == 1
    assert "No space left on device" in (sweep.runs_dir / sweep.crashing / "train.log").read_text()


def test_the_sweep_goes_on_after_a_failure_and_tabulates_every_status(sweep):
    table = sweep.first.set_index("run_name")
    assert list(table.index) == [NAN_RUN, sweep.crashing, "learning_rate=0.01_seed0"]
    assert list(table["status"]) == ["failed", "failed", "complete"]
    assert table.loc[NAN_RUN, "error"] == "TrainingDiverged: training loss became nan"
    assert table.loc["learning_rate=0.01_seed0", "test_accuracy"] > 0


def test_raise_if_failed_names_each_failed_trial(sweep):
    assert sweep.failed.startswith("2 of 3 trials failed: ")
    assert f"{NAN_RUN}: TrainingDiverged: training loss became nan" in sweep.failed
    assert f"{sweep.crashing}: OSError: [Errno 28] No space left on device" in sweep.failed
    assert "\n" not in sweep.failed


def test_collation_shows_failed_trials_as_failed(sweep):
    status = dict(zip(sweep.collated["run_name"], sweep.collated["status"]))
    assert status == {NAN_RUN: "failed", sweep.crashing: "failed", "learning_rate=0.01_seed0": "complete"}
    summary = collate.summarise(sweep.collated)
    assert summary["n_failed"].sum() == 2 and summary["n"].sum() == 1


def test_a_rerun_retries_failed_trials_and_skips_complete_ones(sweep):
    status = dict(zip(sweep.again["run_name"], sweep.again["status"]))
    assert status == {NAN_RUN: "failed", sweep.crashing: "complete", "learning_rate=0.01_seed0": "complete"}
    assert (sweep.runs_dir / NAN_RUN / "train.log").read_text().count("failed:") == 2  # tried again
    crashed = sweep.runs_dir / sweep.crashing
    assert epochs(records.read_history(crashed / "history.csv")) == [1, 2]  # resumed at epoch 2
    assert records.read_json(crashed / "metrics.json")["epochs"] == 2
    assert {p: p.read_bytes() for p in sweep.kept} == sweep.kept


# ---- 5. bad input: one clear line before any training --------------------------------------------
def _corrupt(tmp: Path) -> tuple[Path, str]:
    root = fh.cut_cifar10(tmp / "data")
    image = root / "train" / "cat" / "0003.jpg"
    image.write_bytes(image.read_bytes()[:20] + bytes(range(256)) * 4)  # a JPEG header, then garbage
    return root, f"corrupt image {image}: "


def _truncated(tmp: Path) -> tuple[Path, str]:
    root = fh.cut_cifar10(tmp / "data")
    image = root / "test" / "ship" / "0005.jpg"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    return root, f"corrupt image {image}: "


def _empty(tmp: Path) -> tuple[Path, str]:
    (tmp / "empty").mkdir()
    return tmp / "empty", f"no images in {tmp / 'empty'}: expected train/<class>/<image> and test/<class>/<image>"


def _no_wnids(tmp: Path) -> tuple[Path, str]:
    root = fh.cut_tiny_imagenet(tmp / "data", "wnids.txt")
    return root, f"wnids.txt not found in {root}: expected the tiny-imagenet-200/ layout"


def _no_annotations(tmp: Path) -> tuple[Path, str]:
    root = fh.cut_tiny_imagenet(tmp / "data", "val/val_annotations.txt")
    return root, f"{root / 'val' / 'val_annotations.txt'} not found: it holds the labels of Tiny-ImageNet's val images"


def _missing(tmp: Path) -> tuple[Path, str]:
    return tmp / "nowhere", f"data folder not found: {tmp / 'nowhere'}"


BAD_DATA = {
    "missing folder": (_missing, "cifar10"),
    "empty folder": (_empty, "cifar10"),
    "corrupt JPEG": (_corrupt, "cifar10"),
    "truncated JPEG": (_truncated, "cifar10"),
    "Tiny-ImageNet without wnids.txt": (_no_wnids, "tiny-imagenet"),
    "Tiny-ImageNet without val_annotations.txt": (_no_annotations, "tiny-imagenet"),
}


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_data_stops_an_experiment_before_any_training(tmp_path, case):
    from convmixer.data import DataError

    make, dataset = BAD_DATA[case]
    data_dir, message = make(tmp_path)
    with pytest.raises(DataError) as error:
        study.run_experiment(
            "baseline",
            "smoke",
            out_dir=tmp_path / "out",
            data_dir=data_dir,
            overrides={**TINY_OVERRIDES, **ALL_IMAGES, "dataset": dataset},
        )
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_bad_data_stops_a_trial_before_its_run_directory_exists(tmp_path):
    from convmixer.config import TrialConfig
    from convmixer.data import DataError
    from convmixer.train import train

    data_dir, message = _truncated(tmp_path)
    config = TrialConfig.from_dict({**fh.TINY_TRIAL, **ALL_IMAGES, "data_dir": str(data_dir)})
    with pytest.raises(DataError, match="^" + message):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"patch_size": 3}, "patch_size 3 does not divide the 32x32 images of cifar10"),
        ({"kernel_size": 0}, "kernel_size must be >= 1, got 0"),
        ({"kernel_sizes": []}, "kernel_sizes is empty: give at least one kernel size, or null"),
        ({"width": "16"}, "width must be int, got '16'"),
        ({"widht": 16}, "unknown key 'widht'"),
    ],
)
def test_bad_settings_stop_an_experiment_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as error:
        study.run_experiment("baseline", "smoke", out_dir=tmp_path / "out", data_dir=fh.SAMPLE_ZIP, overrides=overrides)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_an_error_in_an_experiment_that_varies_nothing_names_no_varied_value():
    with pytest.raises(ConfigError) as error:
        study.plan("baseline", "smoke", overrides={"patch_size": 3})
    assert str(error.value).startswith("experiment baseline (smoke), seed=0: patch_size 3 does not divide")


def _incompatible_run(out: Path) -> Path:
    """A finished baseline run of another configuration (width 8) where the tiny baseline goes."""
    make_run(out, "baseline", width=8, depth=1, patch_size=4)
    return out / "runs" / "baseline" / "baseline_seed0"


def test_a_trial_refuses_a_run_directory_of_another_configuration(tmp_path):
    from convmixer.config import TrialConfig
    from convmixer.records import IncompatibleRunError
    from convmixer.train import train

    run_dir = _incompatible_run(tmp_path)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(IncompatibleRunError) as error:
        train(TrialConfig.from_dict(fh.TINY_TRIAL), run_dir)
    assert str(error.value).startswith(f"{run_dir} holds a trial of another configuration")
    assert "refusing to resume it" in str(error.value) and "\n" not in str(error.value)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_an_experiment_refuses_a_run_directory_of_another_configuration(tmp_path):
    """Not a failed trial and certainly not the old run's result: a refusal before anything trains."""
    from convmixer.records import IncompatibleRunError

    run_dir = _incompatible_run(tmp_path)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(IncompatibleRunError, match=f"^{run_dir} holds a trial of another configuration"):
        study.run_experiment(
            "baseline", "smoke", out_dir=tmp_path, data_dir=fh.SAMPLE_ZIP, overrides=TINY_OVERRIDES, verbose=0
        )
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


@pytest.fixture
def params(tmp_path, monkeypatch):
    """A copy of params/ that a test may break, used by the API and by subprocesses."""
    shutil.copytree(fh.REPO / "params", tmp_path / "params")
    monkeypatch.setenv("CONVMIXER_PARAMS", str(tmp_path / "params"))
    return tmp_path / "params"


# Params files whose values have the wrong shape (the scalar-level types are in test_config).
WRONG_SHAPES = {
    "values not a list": ("experiments:\n  patch_sweep: {values: '[2, 4]'}\n", "patch_sweep", "values must be a list"),
    "seeds not a list": ("experiments:\n  baseline: {seeds: 3}\n", "baseline", "seeds must be a list"),
    "seeds 0 not a list": ("experiments:\n  baseline: {seeds: 0}\n", "baseline", "seeds must be a list"),
    "trial not a mapping": ("trial: [width, 16]\n", "baseline", "trial must be a mapping"),
    "experiments not a mapping": ("experiments: [baseline]\n", "baseline", "experiments must be a mapping"),
}


@pytest.mark.parametrize("case", WRONG_SHAPES)
def test_params_of_the_wrong_shape_are_one_clear_line(params, case):
    text, experiment, message = WRONG_SHAPES[case]
    (params / "profiles" / "shapes.yaml").write_text(text)
    with pytest.raises(ConfigError) as error:
        study.plan(experiment, "shapes")
    assert message in str(error.value) and "\n" not in str(error.value)


# The `convmixer` command: (params/profiles/bad.yaml or None, arguments, what the message says).
# DATA in arguments is replaced by the bad data folder of the BAD_DATA case of that name.
# One case of each kind of refusal through the real command line (a subprocess, one line on stderr,
# exit 2, nothing written); every message of each kind is checked in process above and in test_config.
CLI_CASES = {
    "unknown profile": (None, ["run", "smok"], "unknown profile 'smok' (choose from: "),
    "wrong type": ("trial: {width: '16'}\n", ["run", "bad", "--only", "baseline"], "width must be int, got '16'"),
    "malformed YAML": (
        "trial: {width: 3\n",
        ["run", "bad"],
        "{params}/profiles/bad.yaml: malformed YAML at line 2, column 1: expected ',' or '}'",
    ),
    "corrupt JPEG": (
        "trial: {dataset: cifar10, val_size: 20, width: 16, depth: 1, patch_size: 4}\n",
        ["run", "bad", "--only", "baseline", "--data-dir", "DATA"],
        None,
    ),
    "incompatible run directory": (
        None,
        ["run", "smoke", "--only", "baseline", "--out", "OUT", "--data-dir", str(fh.SAMPLE_ZIP)],
        "{out}/runs/baseline/baseline_seed0 holds a trial of another configuration",
    ),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_refuses_bad_input_with_one_line_before_any_training(tmp_path, params, cache_dir, case):
    profile, args, message = CLI_CASES[case]
    out = tmp_path / "out"
    if profile is not None:
        (params / "profiles" / "bad.yaml").write_text(profile)
    if "DATA" in args:
        data_dir, message = BAD_DATA[case][0](tmp_path)
        args = [str(data_dir) if a == "DATA" else a for a in args]
    if case == "incompatible run directory":
        make_run(out, "baseline", width=8)
    args = [str(out) if a == "OUT" else a for a in args]
    if "--out" not in args:
        args += ["--out", str(out)]
    message = message.replace("{params}", str(params)).replace("{out}", str(out))
    env = subprocess_env(cache_dir, tmp_path, CONVMIXER_PARAMS=str(params))

    done = fh.cli_refusing(args, tmp_path, env)

    assert done.returncode == 2, done.stdout + done.stderr
    lines = fh.user_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("convmixer: error: "), done.stderr
    assert message in lines[0]
    assert not (out / "notebooks").exists() or not list((out / "notebooks").glob("*.ipynb"))
    assert not (out / "runs").exists() or case == "incompatible run directory"


def test_cli_unknown_experiment_is_a_usage_error(tmp_path, cache_dir):
    done = fh.cli(
        "run", "smoke", "--only", "patch", "--out", str(tmp_path / "out"), env=subprocess_env(cache_dir, tmp_path)
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "convmixer: error: unknown experiment 'patch' (choose from: replication, baseline, adamw, patch_sweep, "
        "kernel_sweep, dynamic_kernel)"
    )
    assert not (tmp_path / "out").exists()


# ---- 6. params files are data, never code -----------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "trial: !!python/object/apply:os.system ['touch {marker}']\n",
        "trial: {{width: !!python/object/new:os.system ['touch {marker}']}}\n",
        "trial: !!python/name:os.system\n",
        "experiments: !!python/object/apply:subprocess.call [['touch', '{marker}']]\n",
    ],
)
def test_yaml_tags_construct_nothing(tmp_path, params, cache_dir, text):
    marker = tmp_path / "PWNED"
    (params / "profiles" / "evil.yaml").write_text(text.format(marker=marker))
    with pytest.raises(
        ConfigError,
        match=r"evil.yaml: malformed YAML at line 1, column \d+: could not "
        r"determine a constructor for the tag 'tag:yaml.org,2002:python/",
    ):
        study.plan("baseline", "evil")
    done = fh.cli(
        "run",
        "evil",
        "--out",
        str(tmp_path / "out"),
        env=subprocess_env(cache_dir, tmp_path, CONVMIXER_PARAMS=str(params)),
    )
    assert done.returncode == 2
    lines = fh.user_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("convmixer: error: "), done.stderr
    assert not marker.exists()


def test_values_that_look_like_code_stay_strings(tmp_path, params):
    marker = tmp_path / "PWNED"
    code = f"__import__('os').system('touch {marker}')"
    (params / "profiles" / "evil.yaml").write_text(
        f'trial: {{learning_rate: "{code}"}}\nexperiments:\n  patch_sweep: {{values: ["{code}"]}}\n'
    )
    with pytest.raises(ConfigError, match=r"learning_rate must be float, got \"__import__"):
        study.plan("baseline", "evil")
    (params / "profiles" / "evil.yaml").write_text(f'experiments:\n  patch_sweep: {{values: ["{code}"]}}\n')
    with pytest.raises(ConfigError, match=r"patch_size must be int, got \"__import__"):
        study.plan("patch_sweep", "evil")
    assert not marker.exists()

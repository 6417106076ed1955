"""The batch runner executes every notebook with papermill on the smoke profile.

One suite run (module fixture) feeds all checks: the notebooks ran, every planned trial
left a complete run record, and the HTML report was built from those records.
"""

import json
import shutil

import nbformat
import pytest
from backends import BACKEND

from convmixer import records, study
from convmixer.report import build, collate
from convmixer.study import suite as notebook_suite

pytestmark = pytest.mark.notebooks


# Every smoke trial is tested on all 500 test images of the shipped sample (50 per class), and
# learns: at least 25%, where chance is 10% (a one-class model scores exactly 10%, a uniform one
# 10% with loss 2.303), 11 standard errors of a chance score above it.
SMOKE_TEST_IMAGES = 500
LEARNED = 0.25
# Their test accuracy as this suite measured it, per Keras backend: the backends draw different
# random numbers (initial weights, shuffles, flips), so the same recipe lands on different numbers.
# These pins catch a change in data, seeding, model or training that moves them; tolerance 0.03
# (15 images) for floating-point differences between CPUs. A one-class model fails every pin.
SMOKE_TEST_ACCURACY = {
    "tensorflow": {
        "baseline/baseline_seed0": 0.374,
        "kernel_sweep/kernel_size=3_seed0": 0.36,
        "patch_sweep/patch_size=2_seed0": 0.344,
        "dynamic_kernel/kernel_sizes=2-3-5_seed0": 0.38,
    },
    "jax": {
        "baseline/baseline_seed0": 0.358,
        "kernel_sweep/kernel_size=3_seed0": 0.376,
        "patch_sweep/patch_size=2_seed0": 0.368,
        "dynamic_kernel/kernel_sizes=2-3-5_seed0": 0.36,
    },
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """`convmixer run smoke`: every notebook under papermill, then the report."""
    out = tmp_path_factory.mktemp("smoke")
    failures = notebook_suite.run_suite("smoke", out_dir=out)
    build.build_report("smoke", out)
    return out, failures


def test_every_notebook_executed_without_error(suite):
    out, failures = suite
    assert failures == 0
    for name in study.experiment_names():
        meta = nbformat.read(out / "notebooks" / f"{name}.ipynb", as_version=4).metadata.papermill
        assert meta["exception"] is None and meta["end_time"]
        assert meta["parameters"]["profile"] == "smoke"
        assert (out / "logs" / f"{name}.log").exists()


@pytest.mark.parametrize("experiment", study.experiment_names())
def test_notebook_left_a_complete_record_per_planned_trial(suite, experiment):
    out, _ = suite
    for trial in study.plan(experiment, "smoke"):
        run_dir = out / "runs" / experiment / trial.run_name
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["status"] == "complete"
        assert metrics["epochs"] == trial.config.epochs
        assert len(records.read_history(run_dir / "history.csv")) == trial.config.epochs
        # Every smoke trial learns: all 500 test images of the sample, and clearly above chance.
        assert metrics["test_images"] == SMOKE_TEST_IMAGES
        assert metrics["test_accuracy"] >= LEARNED, f"{run_dir.name}: {metrics['test_accuracy']}"
        saved = json.loads((run_dir / "config.json").read_text())
        assert saved["trial_id"] == trial.config.trial_id()
        assert saved["experiment"] == experiment and saved["profile"] == "smoke"
        # A trial reused from another experiment (the same identity) was not trained again: its
        # model is in the folder it was trained in.
        trained_in = run_dir.parent.parent / saved["reused_from"] if saved["reused_from"] else run_dir
        assert (trained_in / "model.keras").exists()


def test_dynamic_kernel_notebook_records_the_learned_mixing_weights(suite):
    """softmax(alpha) per multi-kernel layer: one weight per kernel size, a distribution, moved
    by training from the uniform weights it starts at."""
    out, _ = suite
    metrics = json.loads((out / "runs/dynamic_kernel/kernel_sizes=2-3-5_seed0/metrics.json").read_text())
    weights = metrics["mixing_weights"]
    assert set(weights) == {"block0_depthwise", "block1_depthwise"}
    for layer, values in weights.items():
        assert len(values) == 3 and min(values) > 0 and sum(values) == pytest.approx(1.0, abs=1e-5), layer
        assert max(abs(v - 1 / 3) for v in values) > 1e-3, f"{layer} did not learn: {values}"


def test_report_built_from_the_smoke_records(suite):
    out, _ = suite
    html = (out / "index.html").read_text()
    runs = collate.load_runs(out / "runs")
    assert len(runs) == sum(len(study.plan(e, "smoke")) for e in study.experiment_names())
    baseline = runs[runs["experiment"] == "baseline"].iloc[0]
    assert f"{100 * baseline['test_accuracy']:.2f}" in html
    assert "data:image/png;base64" in html
    assert (out / "metadata.yaml").exists()


@pytest.mark.backend_independent
def test_rerun_skips_finished_notebooks(suite, capsys):
    out, _ = suite
    assert notebook_suite.run_suite("smoke", only=["baseline"], out_dir=out) == 0
    assert "baseline: already executed, skipping" in capsys.readouterr().out


@pytest.mark.backend_independent
def test_finished_notebook_runs_again_when_a_planned_trial_is_missing(suite, capsys):
    """A profile changed after a run (or a run folder removed): the notebook trains what is missing."""
    out, _ = suite
    run_dir = out / "runs" / "baseline" / "baseline_seed0"
    shutil.rmtree(run_dir)
    assert notebook_suite.run_suite("smoke", only=["baseline"], out_dir=out) == 0
    assert "baseline: executing" in capsys.readouterr().out
    assert records.run_status(run_dir) == "complete"


@pytest.mark.parametrize("run", SMOKE_TEST_ACCURACY[BACKEND])
def test_smoke_metrics_match_their_pinned_values(suite, run):
    out, _ = suite
    metrics = json.loads((out / "runs" / run / "metrics.json").read_text())
    assert json.loads((out / "runs" / run / "config.json").read_text())["backend"] == BACKEND
    assert metrics["test_images"] == SMOKE_TEST_IMAGES
    assert metrics["test_accuracy"] == pytest.approx(SMOKE_TEST_ACCURACY[BACKEND][run], abs=0.03)


def test_identical_smoke_trials_were_trained_once(suite):
    """In the smoke profile the baseline, Adam, k=5 and [5] trials are one trial: trained once,
    and the reused records carry the trained one's metrics and per-image predictions."""
    out, _ = suite
    trained = out / "runs" / "baseline" / "baseline_seed0"
    metrics = json.loads((trained / "metrics.json").read_text())
    for run in (
        "adamw/optimizer=adam_seed0",
        "kernel_sweep/kernel_size=5_seed0",
        "dynamic_kernel/kernel_sizes=5_seed0",
    ):
        saved = json.loads((out / "runs" / run / "config.json").read_text())
        assert saved["reused_from"] == "baseline/baseline_seed0", run
        assert not (out / "runs" / run / "model.keras").exists()
        reused = json.loads((out / "runs" / run / "metrics.json").read_text())
        assert (reused["test_accuracy"], reused["test_loss"]) == (metrics["test_accuracy"], metrics["test_loss"])
        ours, theirs = (records.read_predictions(f / records.PREDICTIONS_FILE) for f in (out / "runs" / run, trained))
        assert (ours.predicted == theirs.predicted).all() and ours.split == theirs.split

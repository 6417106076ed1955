"""One trial end to end on real CIFAR-10 images: learning, the run record, skipping, seeds."""

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from backends import requires_tensorflow

from convmixer import cli, records
from convmixer import data as datasets
from convmixer.config import TrialConfig
from convmixer.pipeline import resized
from convmixer.train import BATCHNORM_BATCHES, OneCycle, recompute_batchnorm_statistics, train

pytestmark = pytest.mark.training

SAMPLE = str(datasets.SAMPLE_ZIP)
SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.zip"
COLAB_RELEASE = "release-colab-test"  # any value: the record keeps what the environment says
TINY = dict(
    dataset="cifar10",
    data_dir=SAMPLE,
    train_subset=600,
    val_size=100,
    test_subset=200,
    width=16,
    depth=1,
    patch_size=4,
    kernel_size=3,
    epochs=2,
    batch_size=50,
    learning_rate=0.003,
    flip=False,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny trial, trained as if on a Colab runtime (its environment names the release)."""
    config = TrialConfig.from_dict(TINY)
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLAB_RELEASE_TAG", COLAB_RELEASE)
        return config, run_dir, train(config, run_dir, verbose=0)


@pytest.fixture(scope="module")
def flip_run(tmp_path_factory):
    """One epoch of a small model on real CIFAR-10 images, trained with horizontal flips."""
    config = TrialConfig.from_dict(
        {
            "dataset": "cifar10",
            "data_dir": SAMPLE,
            "val_size": 200,
            "width": 64,
            "depth": 4,
            "patch_size": 4,
            "kernel_size": 5,
            "epochs": 1,
            "batch_size": 32,
            "optimizer": "adamw",
            "learning_rate": 0.003,
            "flip": True,
        }
    )
    run_dir = tmp_path_factory.mktemp("runs") / "flip"
    return config, run_dir, train(config, run_dir, verbose=0)


def test_one_epoch_on_real_cifar10_is_clearly_above_chance(flip_run):
    config, run_dir, metrics = flip_run
    assert metrics.test_accuracy > 0.25, metrics  # chance is 0.10 on 10 classes


def test_test_time_flip_averages_each_image_with_its_mirror_image(flip_run, tiny_run):
    config, run_dir, metrics = flip_run
    model = keras.saving.load_model(run_dir / "model.keras")
    data = datasets.load_dataset(config)
    images = data.x_test.astype("float32")
    averaged = model.predict(images, verbose=0) + model.predict(np.flip(images, axis=2), verbose=0)
    assert metrics.test_accuracy_flip == pytest.approx(np.mean(averaged.argmax(axis=1) == data.y_test), abs=1e-6)
    assert metrics.test_accuracy_flip != metrics.test_accuracy  # a different measurement
    assert tiny_run[2].test_accuracy_flip is None  # trained without flips: not measured


def test_run_record_contract(tiny_run, flip_run):
    config, run_dir, metrics = tiny_run
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"] == config.to_dict() and saved["trial_id"] == config.trial_id()
    assert saved["schema_version"] == records.SCHEMA_VERSION and saved["reused_from"] is None
    assert saved["dataset"]["name"] == "cifar10" and saved["dataset"]["train"] == 500
    assert {"git_commit", "packages", "device", "precision"} <= set(saved)
    assert saved["packages"]["keras"] == keras.__version__
    assert saved["starts"] == [
        {
            "at": saved["created"],
            "epochs_done": 0,
            "git_commit": saved["git_commit"],
            "device": saved["device"],
            "colab": {"COLAB_RELEASE_TAG": COLAB_RELEASE},
            "resume": records.RESUME,
        }
    ]
    assert saved["colab_runtime"] == {"COLAB_RELEASE_TAG": COLAB_RELEASE}
    assert json.loads((flip_run[1] / "config.json").read_text())["colab_runtime"] is None  # not on Colab
    assert saved["dataset"]["test_files_sha256"] == datasets.load_dataset(config).test_split["files_sha256"]
    with open(run_dir / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(records.HISTORY_COLUMNS) <= set(rows[0])
    assert metrics.status == "complete" and metrics.epochs == 2
    assert metrics.params == 16 * 48 + 16 + 2 * 16 + 9 * 16 + 16 + 2 * 16 + 16 * 16 + 16 + 2 * 16 + 16 * 10 + 10
    assert metrics.best_val_accuracy == max(float(r["val_accuracy"]) for r in rows)
    assert metrics.test_images == 200 and metrics.evaluated_epoch == 2 and metrics.last_epoch_test_accuracy is None
    assert metrics.train_seconds > 0 and metrics.images_per_second > 0
    assert json.loads((run_dir / "metrics.json").read_text()) == dataclasses.asdict(metrics)


def test_saved_model_takes_raw_pixels_and_reproduces_test_accuracy(tiny_run):
    config, run_dir, metrics = tiny_run
    model = keras.saving.load_model(run_dir / "model.keras")
    data = datasets.load_dataset(config)
    predictions = model.predict(data.x_test.astype("float32"), verbose=0).argmax(axis=1)
    assert np.mean(predictions == data.y_test) == pytest.approx(metrics.test_accuracy, abs=1e-6)
    assert getattr(model, "optimizer", None) is None  # saved without the optimizer's state: a third of the size
    stored = records.read_predictions(run_dir / records.PREDICTIONS_FILE)
    np.testing.assert_array_equal(stored.predicted, predictions)
    np.testing.assert_array_equal(stored.labels, data.y_test)
    assert stored.split == data.test_split and stored.predicted_flip is None  # TINY trains without flips
    assert stored.accuracy() == metrics.test_accuracy


def test_predictions_of_ten_thousand_images_take_about_ten_kilobytes(tmp_path):
    """Ten classes, single view and flipped, as a trained model scores them (correct 80% of the time)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 1000)
    guess = np.where(rng.random(10000) < 0.8, labels, rng.integers(0, 10, 10000))
    flipped = np.where(rng.random(10000) < 0.9, guess, rng.integers(0, 10, 10000))
    split = {"images": 10000, "files_sha256": "0" * 64}
    records.write_predictions(tmp_path / "p.npz", records.Predictions(labels, guess, flipped, split))
    assert (tmp_path / "p.npz").stat().st_size < 16_000
    back = records.read_predictions(tmp_path / "p.npz")
    np.testing.assert_array_equal(back.predicted_flip, flipped)
    assert back.split == split and back.accuracy() == pytest.approx(np.mean(guess == labels))


def test_best_val_tests_the_weights_of_the_best_validation_epoch(tmp_path):
    """The Keras example's protocol: the test split scores the epoch with the best validation
    accuracy, the last epoch's test accuracy is kept beside it, and model.keras holds the best
    epoch's weights. At a learning rate far too high, validation accuracy jumps about (here the
    best epoch is 1 under TensorFlow, 3 under JAX), so the best is not the last."""
    config = TrialConfig.from_dict({**TINY, "epochs": 4, "learning_rate": 0.2, "evaluate": "best_val"})
    metrics = train(config, tmp_path / "run", verbose=0)
    val = [float(row["val_accuracy"]) for row in records.read_history(tmp_path / "run" / "history.csv")]
    assert metrics.evaluated_epoch == int(np.argmax(val)) + 1 == metrics.best_epoch < 4
    assert metrics.last_epoch_test_accuracy is not None
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    data = datasets.load_dataset(config)
    predicted = model.predict(data.x_test.astype("float32"), verbose=0).argmax(axis=1)
    assert np.mean(predicted == data.y_test) == pytest.approx(metrics.test_accuracy, abs=1e-6)
    assert not (tmp_path / "run" / "best.weights.h5").exists()  # model.keras holds them now
    # A folder whose best.json lost its weights file (not in git) trains to the same best epoch.
    again = tmp_path / "again"
    again.mkdir()
    (again / "best.json").write_text('{"epoch": 1, "val_accuracy": 0.99}')
    assert train(config, again, verbose=0).evaluated_epoch == metrics.evaluated_epoch


def test_complete_trial_is_skipped(tiny_run):
    config, run_dir, metrics = tiny_run
    before = (run_dir / "model.keras").stat().st_mtime_ns
    assert train(config, run_dir) == metrics
    assert (run_dir / "model.keras").stat().st_mtime_ns == before


def test_same_seed_gives_the_same_metrics(tmp_path):
    config = TrialConfig.from_dict({**TINY, "epochs": 1, "flip": True, "crop_scale_min": 0.5})
    first = train(config, tmp_path / "a", verbose=0)
    second = train(config, tmp_path / "b", verbose=0)
    assert first.test_accuracy == second.test_accuracy
    assert (
        records.read_history(tmp_path / "a" / "history.csv")[0]["loss"]
        == records.read_history(tmp_path / "b" / "history.csv")[0]["loss"]
    )


def test_ema_saves_the_average_of_the_weights_and_leaves_training_as_it_was(tiny_run, tmp_path):
    """The moving average (Keras' use_ema) changes what is tested and saved, not the training:
    the same seed gives the same history, and the saved weights are those the optimizer averaged."""
    config, run_dir, plain = tiny_run
    averaged = config.replace(ema_momentum=0.9)
    metrics = train(averaged, tmp_path / "ema", verbose=0)
    history = [
        {k: v for k, v in row.items() if k != "epoch_seconds"}
        for row in records.read_history(tmp_path / "ema" / "history.csv")
    ]
    assert history == [
        {k: v for k, v in row.items() if k != "epoch_seconds"} for row in records.read_history(run_dir / "history.csv")
    ]
    ema_weights = keras.saving.load_model(tmp_path / "ema" / "model.keras").get_weights()
    raw_weights = keras.saving.load_model(run_dir / "model.keras").get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(ema_weights, raw_weights))
    assert metrics.status == "complete" and averaged.trial_id() != config.trial_id()


@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=requires_tensorflow)])  # fused: TF only
def test_batchnorm_statistics_are_recomputed_as_the_mean_over_training_batches(fused):
    """After an average of the weights, each BatchNorm layer's moving statistics become the
    mean of its batch statistics over the chosen training batches (here the layer's input is
    the images themselves), whatever the statistics were before; the layer's momentum is restored."""
    from convmixer import fused as fused_layers

    norm = (fused_layers.BatchNormalization if fused else keras.layers.BatchNormalization)(momentum=0.99)
    model = keras.Sequential([keras.Input((4, 4, 3)), norm])
    images = np.random.default_rng(1).integers(0, 256, (300, 4, 4, 3)).astype("uint8")
    norm.moving_mean.assign(np.full(3, 7.0, "float32"))
    recompute_batchnorm_statistics(model, images, batch_size=64, seed=0)
    picked = np.random.default_rng(0).permutation(300)[: BATCHNORM_BATCHES * 64]
    batches = [images[picked[i : i + 64]].astype("float32") for i in range(0, len(picked), 64)]
    mean, variance = (keras.ops.convert_to_numpy(v) for v in (norm.moving_mean, norm.moving_variance))
    np.testing.assert_allclose(mean, np.mean([b.mean((0, 1, 2)) for b in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(variance, np.mean([b.var((0, 1, 2)) for b in batches], 0), rtol=1e-4)
    assert norm.momentum == 0.99


def test_multi_kernel_trial_records_mixing_weights(tmp_path):
    config = TrialConfig.from_dict({**TINY, "epochs": 1, "kernel_sizes": [2, 3, 5]})
    metrics = train(config, tmp_path / "run", verbose=0)
    assert metrics.kernel_sizes == [2, 3, 5]
    weights = metrics.mixing_weights["block0_depthwise"]
    assert len(weights) == 3 and sum(weights) == pytest.approx(1.0, abs=1e-5)
    assert weights != pytest.approx([1 / 3] * 3, abs=1e-7)  # alpha was trained


def test_one_cycle_schedule_matches_the_official_recipe():
    schedule = OneCycle(0.05, 1000)
    lr = [float(schedule(step)) for step in (0, 200, 400, 600, 800, 900, 1000)]
    np.testing.assert_allclose(lr, [0.0, 0.025, 0.05, 0.02625, 0.0025, 0.00125, 0.0], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_schedules_are_logged_per_epoch(tmp_path, schedule):
    config = TrialConfig.from_dict({**TINY, "schedule": schedule, "warmup_epochs": 1, "optimizer": "sgd"})
    train(config, tmp_path / "run", verbose=0)
    lrs = [float(r["lr"]) for r in records.read_history(tmp_path / "run" / "history.csv")]
    assert lrs[0] > lrs[1] >= 0  # end of epoch 1 is at or past the peak; the end is near zero


def test_progressive_resizing_trains_the_first_epochs_on_smaller_images(tiny_run, tmp_path, monkeypatch):
    """epoch_image_sizes: the batches are resized, history.csv says each epoch's image size, the
    model learns through the changes of size, and the saved model takes full-size images, as the
    test split measured them."""
    from convmixer import train as training

    asked = []
    monkeypatch.setattr(training, "resized", lambda batches, size: asked.append(size) or resized(batches, size))
    config = TrialConfig.from_dict(
        {**TINY, "patch_size": 2, "epochs": 4, "learning_rate": 0.01, "epoch_image_sizes": [16, 24]}
    )
    metrics = train(config, tmp_path / "run", verbose=0)
    assert asked == [16, 24]
    history = records.read_history(tmp_path / "run" / "history.csv")
    assert [int(row["image_size"]) for row in history] == [16, 24, 32, 32]
    # Chance is 0.1; on 200 test images its standard error is 0.021, so 0.15 is learning, not luck.
    assert metrics.status == "complete" and metrics.epochs == 4 and metrics.test_accuracy > 0.15
    losses = [float(row["loss"]) for row in history]
    assert losses[2] < losses[0]
    assert not (tmp_path / "run" / "backup").exists()
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    data = datasets.load_dataset(config)
    predicted = model.predict(data.x_test.astype("float32"), verbose=0).argmax(axis=1)
    assert np.mean(predicted == data.y_test) == pytest.approx(metrics.test_accuracy, abs=1e-9)
    # A trial without it records the full size every epoch.
    assert {row["image_size"] for row in records.read_history(tiny_run[1] / "history.csv")} == {"32"}


def test_early_stopping_ends_a_trial_that_stops_improving(tmp_path):
    # A learning rate this small leaves validation accuracy flat, so patience 1 must stop it.
    config = TrialConfig.from_dict({**TINY, "epochs": 6, "learning_rate": 1e-9, "early_stopping_patience": 1})
    metrics = train(config, tmp_path / "run", verbose=0)
    assert metrics.status == "complete" and metrics.epochs < 6
    assert len(records.read_history(tmp_path / "run" / "history.csv")) == metrics.epochs


@requires_tensorflow
def test_fused_layers_train_to_the_same_accuracy(tmp_path):
    """The speed-ups in convmixer.fused change no maths: the same trial trained both ways
    follows the same loss curve (to float rounding) and ends at the same accuracy."""
    config = TrialConfig.from_dict({**TINY, "width": 32, "depth": 2, "epochs": 3})
    fast = train(config.replace(fused=True), tmp_path / "fused", verbose=0)
    plain = train(config.replace(fused=False), tmp_path / "plain", verbose=0)
    fast_losses = [float(r["loss"]) for r in records.read_history(tmp_path / "fused" / "history.csv")]
    plain_losses = [float(r["loss"]) for r in records.read_history(tmp_path / "plain" / "history.csv")]
    np.testing.assert_allclose(fast_losses, plain_losses, rtol=2e-3)
    assert fast.test_accuracy == pytest.approx(plain.test_accuracy, abs=0.02)
    assert fast_losses[-1] < fast_losses[0] - 0.2  # and it learned something


def test_evaluate_command_checks_a_saved_model_on_another_copy_of_the_data(flip_run, tmp_path, capsys):
    config, run_dir, metrics = flip_run
    copy = tmp_path / "elsewhere" / "cifar10-copy.zip"
    copy.parent.mkdir()
    shutil.copy(SAMPLE, copy)
    assert cli.main(["evaluate", str(run_dir / "model.keras"), "--data-dir", str(copy)]) == 0
    printed = capsys.readouterr().out
    test_images = json.loads((run_dir / "config.json").read_text())["dataset"]["test"]
    assert f"test accuracy {metrics.test_accuracy:.4f} on {test_images} images from {copy}" in printed
    assert f"(recorded: {metrics.test_accuracy:.4f} on {test_images} images)" in printed
    flip = metrics.test_accuracy_flip
    assert f"with the test-time flip {flip:.4f} (recorded: {flip:.4f} on {test_images} images)" in printed
    assert "predictions the same as the recorded ones" in printed  # the same split: compared, not kept
    assert not (run_dir / records.RESCORED_DIR).exists()
    assert cli.main(["evaluate", str(tmp_path / "model.keras")]) == 2
    assert "not a run's model.keras" in capsys.readouterr().err


@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason=f"no shared CIFAR-10 archive at {SHARED_CIFAR}")
def test_evaluate_on_another_split_keeps_a_rescoring_and_leaves_the_record(flip_run, capsys):
    """Scored on the full 10,000-image test split (the run was scored on the sample's), the model's
    predictions are kept as a rescoring, with their split; metrics.json stays as it was."""
    config, run_dir, metrics = flip_run
    assert cli.main(["evaluate", str(run_dir / "model.keras"), "--data-dir", str(SHARED_CIFAR)]) == 0
    assert "on 10000 images" in capsys.readouterr().out
    [(summary, predictions)] = records.read_rescorings(run_dir)
    assert summary["split"] == predictions.split and predictions.split["images"] == 10000
    assert summary["test_accuracy"] == predictions.accuracy() > 0.2 and summary["test_images"] == 10000
    assert records.read_metrics(run_dir) == metrics
    assert predictions.split != records.read_predictions(run_dir / records.PREDICTIONS_FILE).split


def test_a_trial_that_ran_in_another_experiment_is_reused_not_trained(tmp_path, capsys):
    """kernel_sweep k=9 and patch_sweep p=4 (at k=9) are one trial: trained once, reported twice."""
    from records_factory import row

    from convmixer import study
    from convmixer.report import article, collate, evidence

    overrides = {k: v for k, v in TINY.items() if k not in ("kernel_size", "patch_size")}
    study.run_experiment("kernel_sweep", "smoke", values=[9], out_dir=tmp_path, overrides=overrides, verbose=0)
    results = study.run_experiment("patch_sweep", "smoke", values=[4], out_dir=tmp_path, overrides=overrides, verbose=0)
    trained = tmp_path / "runs" / "kernel_sweep" / "kernel_size=9_seed0"
    reused = tmp_path / "runs" / "patch_sweep" / "patch_size=4_seed0"
    assert "the same trial as kernel_sweep/kernel_size=9_seed0, reused (not trained again)" in capsys.readouterr().out
    assert results["reused_from"].tolist() == ["kernel_sweep/kernel_size=9_seed0"]
    assert not (reused / "model.keras").exists() and not (reused / "train.log").exists()  # nothing trained
    assert records.read_metrics(reused) == records.read_metrics(trained)
    assert records.read_history(reused / "history.csv") == records.read_history(trained / "history.csv")
    answers = [records.read_predictions(folder / records.PREDICTIONS_FILE) for folder in (reused, trained)]
    np.testing.assert_array_equal(answers[0].predicted, answers[1].predicted)  # compared image by image too
    record = records.read_record(reused)
    assert (record.experiment, record.vary, record.value) == ("patch_sweep", "patch_size", 4)
    runs = collate.load_runs(tmp_path / "runs")
    assert row(runs, experiment="patch_sweep")["reused_from"] == "kernel_sweep/kernel_size=9_seed0"
    assert row(runs, experiment="patch_sweep")["trial_id"] == row(runs, experiment="kernel_sweep")["trial_id"]
    text = article.summary_markdown(evidence.load_study("smoke", [tmp_path / "runs"]))
    assert "1 trial(s) were the same trial (same identity) as one trained for another experiment" in text
    # A rerun skips it like any finished trial.
    again = study.run_experiment("patch_sweep", "smoke", values=[4], out_dir=tmp_path, overrides=overrides, verbose=0)
    assert again["status"].tolist() == ["complete"] and records.read_record(reused) == record


def test_a_trial_without_a_validation_split_trains_and_records_no_validation(tmp_path):
    config = TrialConfig.from_dict({**TINY, "epochs": 1, "val_size": 0})
    metrics = train(config, tmp_path / "run", verbose=0)
    assert metrics.status == "complete" and metrics.best_val_accuracy is None and metrics.best_epoch is None
    assert metrics.test_accuracy is not None
    log = (tmp_path / "run" / "train.log").read_text()
    assert "epoch 1: loss " in log and "val_accuracy" not in log  # not "val_accuracy nan"

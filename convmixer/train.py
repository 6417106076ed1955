"""One training trial: `train(config, run_dir)` builds, fits, evaluates and records a ConvMixer.

A trial whose metrics.json says complete is skipped; an interrupted one resumes from its
last finished epoch (keras.callbacks.BackupAndRestore); one that raises is recorded as
failed with the error and the error is raised again for the caller to handle.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import shutil
import time
import traceback
from pathlib import Path

import keras
import numpy as np
from keras import ops

from . import catalog, colab, device, keras_internals, records
from . import data as datasets
from .config import ConfigError, TrialConfig
from .model import build_convmixer, count_trainable_params, mixing_weights
from .pipeline import evaluation_batches, make_datasets, resized

log = logging.getLogger(__name__)


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite."""


@keras.saving.register_keras_serializable(package="convmixer")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The official CIFAR-10 recipe's one-cycle schedule, stepped per batch.

    Linear from 0 to `peak` at 2/5 of training, down to `peak / 20` at 4/5, then to 0.
    Keras has no one-cycle schedule built in, hence this small one.
    """

    def __init__(self, peak: float, total_steps: int):
        self.peak = peak
        self.total_steps = total_steps

    def __call__(self, step):
        t = ops.minimum(ops.cast(step, "float32") / float(self.total_steps), 1.0)
        low = self.peak / 20
        warm = self.peak * t / 0.4
        anneal = self.peak + (low - self.peak) * (t - 0.4) / 0.4
        finish = low * (1.0 - t) / 0.2
        return ops.where(t < 0.4, warm, ops.where(t < 0.8, anneal, finish))

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps}


def learning_rate(config: TrialConfig, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return OneCycle(config.learning_rate, total)
    if config.schedule == "cosine":
        warmup = int(config.warmup_epochs * steps_per_epoch)
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else config.learning_rate,
            decay_steps=max(total - warmup, 1),
            warmup_target=config.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    return config.learning_rate


def make_optimizer(config: TrialConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam has no weight decay (the Columbia baseline); AdamW and SGD decay decoupled.

    With `ema_momentum` the optimizer keeps a moving average of the weights, which `fit` copies
    into the model when training ends: the test split and model.keras see the average (with
    BatchNorm statistics recomputed for it: `recompute_batchnorm_statistics`), the per-epoch
    validation the raw weights.
    """
    lr = learning_rate(config, steps_per_epoch)
    options = {"global_clipnorm": config.clip_norm} if config.clip_norm else {}
    if config.ema_momentum:
        options.update(use_ema=True, ema_momentum=config.ema_momentum)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr, **options)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay, **options)
    return keras.optimizers.SGD(
        lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay or None, **options
    )


class HistoryWriter(keras.callbacks.Callback):
    """Writes history.csv after every epoch, replacing rows of epochs that are run again.

    Unlike CSVLogger it never duplicates an epoch when a killed trial resumes, and it
    records the learning rate, the epoch's wall time and the size of the images it trained on
    (`image_size`, set by whoever changes it).
    """

    def __init__(self, path: Path, image_size: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.image_size = image_size

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        lr = float(ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {
            "epoch": epoch + 1,
            **{k: float(v) for k, v in (logs or {}).items()},
            "lr": lr,
            "epoch_seconds": round(seconds, 3),
            "image_size": self.image_size,
        }
        earlier = [r for r in records.read_history(self.path) if int(r["epoch"]) < epoch + 1]
        records.write_history(self.path, earlier + [row])
        logged = " ".join(f"{name} {row[name]:.4f}" for name in ("loss", "accuracy", "val_accuracy") if name in row)
        log.info("epoch %d: %s (%.1f s)", epoch + 1, logged, seconds)  # no val_accuracy without a validation split


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore that survives a kill while any checkpoint is written.

    Keras falls back to the previous checkpoint when the last one cannot be read, but only on
    OSError, while h5py raises RuntimeError, KeyError or ValueError for most half-written files:
    `_load_model` makes them all OSError. The first checkpoint has no previous one, and Keras
    would fail the trial; then the trial starts again from epoch 1.
    """

    def _load_model(self):
        try:
            super()._load_model()
            return
        except (RuntimeError, KeyError, ValueError) as error:
            message = f"{type(error).__name__}: {error}"
        # Keras copies the previous checkpoint over the broken one and reads it again. While the
        # failed read's traceback holds the broken file open, HDF5 would hand back that open file
        # (with its stale contents) instead of reading the copy: free it first.
        gc.collect()
        raise OSError(message)

    def on_train_begin(self, logs=None):
        # A checkpoint can fail after its weights were read (its metadata is half written): the
        # trial then starts again from the state it had before, not from the checkpoint's weights.
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        state = self.model.variables + self.model.optimizer.variables
        fresh = [variable.numpy() for variable in state]
        try:
            super().on_train_begin(logs)
        except (OSError, json.JSONDecodeError) as error:
            log.warning("unreadable checkpoint (%s), killed while writing it: starting again from epoch 1", error)
            for variable, value in zip(state, fresh):
                variable.assign(value)
            shutil.rmtree(self.backup_dir)


class KeepBestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best validation accuracy so far in
    `run_dir/best.weights.h5`, and that epoch and accuracy in `best.json`, for `evaluate: best_val`.

    Keras' ModelCheckpoint(save_best_only=True) forgets its best value when a trial restarts (the
    next epoch would then overwrite a better one) and writes the file in place; this reads the
    best so far back on every start, and writes each file whole (temp file, then rename). It runs
    before BackupAndRestore: a kill before `best.json` is written leaves that epoch's checkpoint
    unwritten too, so the epoch is trained again, identically, and saved then.
    """

    def __init__(self, run_dir: Path):
        super().__init__()
        self.weights, self.record = Path(run_dir) / "best.weights.h5", Path(run_dir) / "best.json"

    def on_train_begin(self, logs=None):
        # best.json without its weights (a folder copied without the ignored .h5 files) is no best:
        # the epochs retrained from the start repeat their accuracies and save the weights again.
        found = records.read_json(self.record) if self.weights.is_file() else None
        self.best = found or {"epoch": None, "val_accuracy": -math.inf}

    def on_epoch_end(self, epoch, logs=None):
        accuracy = float((logs or {})["val_accuracy"])
        if accuracy > self.best["val_accuracy"]:
            partial = self.weights.with_name(".partial." + self.weights.name)  # h5 wants the suffix
            self.model.save_weights(partial)
            partial.replace(self.weights)
            self.best = {"epoch": epoch + 1, "val_accuracy": accuracy}
            records.write_json(self.record, self.best)

    def restore(self, model: keras.Model) -> int:
        """Load the best epoch's weights into `model`; return that epoch (1-based)."""
        best = records.read_json(self.record)
        model.load_weights(self.weights)
        return int(best["epoch"])


def single_device_copy(model: keras.Model) -> keras.Model:
    """`model`'s architecture and weights, without its optimizer, on this process's default device."""
    bare = model.__class__.from_config(model.get_config())  # not clone_model: it keeps the optimizer
    bare.set_weights(model.get_weights())
    return bare


def save_weights_and_architecture(model: keras.Model, path: Path) -> None:
    """`model` as a .keras file without the optimizer's state: a third of the size (Adam keeps
    two numbers per weight), and all that evaluation or fine-tuning from it needs."""
    single_device_copy(model).save(path)


def build_model(config: TrialConfig, num_classes: int, fused: bool = False) -> keras.Model:
    return build_convmixer(
        width=config.width,
        depth=config.depth,
        kernel_size=config.kernel_size,
        patch_size=config.patch_size,
        num_classes=num_classes,
        image_size=None if config.epoch_image_sizes else config.resolved_image_size,
        activation=config.activation,
        kernel_sizes=config.kernel_sizes,
        mixing=config.mixing,
        channel_stats=catalog.DATASETS[config.dataset].channel_stats,
        fused=fused,
    )


def compiled_model(
    config: TrialConfig, num_classes: int, steps_per_epoch: int, execution: device.Execution
) -> keras.Model:
    """The trial's model, compiled with its optimizer, loss and accuracy metric."""
    model = build_model(config, num_classes, fused=execution.fused)
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        jit_compile=execution.jit_compile,
    )
    return model


def measure_test_split(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, config: TrialConfig, split: dict
) -> tuple[dict, records.Predictions]:
    """Test accuracy and loss (the trial's own loss) of single images and, for a trial trained
    with horizontal flips, `test_accuracy_flip`: the accuracy of the softmax averaged over each
    image and its mirror image (test-time augmentation: one more forward pass, no training);
    and the predicted class of every image, for `split` (`data.split_identity`).
    """

    def predict(batch):
        return model.predict(evaluation_batches(batch, batch_size=config.batch_size), verbose=0)

    probabilities = predict(images)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    one_hot = keras.utils.to_categorical(labels, probabilities.shape[1])
    flipped = probabilities + predict(images[:, :, ::-1]) if config.flip else None  # NHWC: axis 2 is the width
    predictions = records.Predictions(
        labels=np.asarray(labels),
        predicted=probabilities.argmax(axis=1),
        predicted_flip=None if flipped is None else flipped.argmax(axis=1),
        split=split,
    )
    measured = {
        "test_accuracy": predictions.accuracy(),
        "test_loss": float(loss(one_hot, probabilities)),
        "test_accuracy_flip": predictions.accuracy(flip=True) if config.flip else None,
        "test_images": len(labels),
    }
    return measured, predictions


def evaluate_saved_model(model_path: Path, data_dir=None) -> dict:
    """Score a run's saved model on the run's test split, read afresh from `data_dir` (default:
    where it trained), next to what its metrics.json recorded; with the test-time flip too when
    the run trained with flips. The predictions are compared with the recorded ones when the
    split is the one the run was scored on, and otherwise kept as a rescoring of the run
    (`records.write_rescoring`), its recorded metrics untouched."""
    run_dir = model_path.parent
    run_record = records.read_record(run_dir)
    if not model_path.is_file() or run_record is None:
        raise ConfigError(f"{model_path}: not a run's model.keras (it needs the config.json written beside it)")
    config = run_record.trial_config()
    config = config.replace(data_dir=data_dir or config.data_dir)
    images, labels, source, split = datasets.load_test_split(config)
    model = keras.saving.load_model(model_path)
    measured, predictions = measure_test_split(model, images, labels, config, split)
    metrics = records.read_metrics(run_dir)
    recorded = records.read_predictions(run_dir / records.PREDICTIONS_FILE)
    same_split = recorded is not None and recorded.split == split
    if not same_split:
        records.write_rescoring(run_dir, predictions, {**measured, "source": source, "at": records.now()})
    return {
        **measured,
        "images": len(labels),
        "source": source,
        "split": split,
        "recorded_test_accuracy": metrics and metrics.test_accuracy,
        "recorded_test_accuracy_flip": metrics and metrics.test_accuracy_flip,
        "recorded_test_images": metrics and metrics.test_images,
        # None: no predictions were recorded for this split (then this scoring is kept as a rescoring)
        "same_predictions": bool(np.array_equal(recorded.predicted, predictions.predicted)) if same_split else None,
    }


def train(
    config: TrialConfig,
    run_dir,
    data: datasets.Dataset | None = None,
    context: dict | None = None,
    verbose: int | str = "auto",
) -> records.Metrics:
    """Run one trial into `run_dir` and return its metrics (the run record: docs/run-records.md).

    `data` may be passed in so a sweep decodes its images once; `context` (experiment,
    profile, run_name, vary, value) is stored in config.json for collation.
    """
    run_dir = Path(run_dir)
    status = records.run_status(run_dir)
    records.check_compatible(run_dir, config)
    if status == "complete":
        log.info("skipping %s: already complete", run_dir)
        return records.read_metrics(run_dir)
    # A missing GPU or TPU, or more devices than there are, stops the trial here, before anything is written.
    placement = device.detect(config.device, config.devices)
    execution = device.execution_choices(config, placement)
    data = data or datasets.load_dataset(config)
    split_sizes = {"training": len(data.y_train), "validation": len(data.y_val), "test": len(data.y_test)}
    device.check_even_shares(split_sizes, config.batch_size, placement.count)
    if status == "failed" and placement.process == 0:  # retried: resumes from its last finished epoch
        (run_dir / "metrics.json").unlink(missing_ok=True)
    state_dir = own_folder(run_dir, placement)
    state_dir.mkdir(parents=True, exist_ok=True)
    handler = _log_to(state_dir / "train.log")
    if status != "new":
        log.info("resuming %s (%s before)", run_dir, status)
    try:
        return _train(config, run_dir, data, context or {}, verbose, placement, execution)
    except Exception as error:
        log.error("trial %s failed:\n%s", run_dir, traceback.format_exc())
        if placement.process == 0:
            records.write_metrics(
                run_dir,
                records.Metrics(
                    status="failed",
                    error=f"{type(error).__name__}: {error}",
                    epochs=len(records.read_history(run_dir / "history.csv")),
                    finished=records.now(),
                ),
            )
        raise
    finally:
        logging.getLogger("convmixer").removeHandler(handler)
        handler.close()


def checkpoint_epoch(state_dir: Path) -> str:
    """Where a trial would resume, as its checkpoint says (BackupAndRestore writes the epochs done)."""
    try:
        metadata = records.read_json(state_dir / "backup" / "training_metadata.json")
    except records.RecordError:
        return "a half-written checkpoint"
    return f"after epoch {metadata['epoch']}" if metadata else "the start"


def own_folder(run_dir: Path, placement: device.Placement) -> Path:
    """Where this process keeps its checkpoint, best weights, history and log: the run folder for
    process 0, which alone writes the run record; `process-<i>` inside it for every other process
    training the model (a checkpoint file is locked while written, so two cannot share one)."""
    return run_dir if placement.process == 0 else run_dir / f"process-{placement.process}"


def _train(config, run_dir, data, context, verbose, placement, execution) -> dict:
    keras.utils.set_random_seed(config.seed)
    precision = device.resolve_precision(config.precision, placement.kind)
    device.set_precision(precision)
    context = {"run_name": run_dir.name, **context}
    start = {
        "at": records.now(),
        "epochs_done": len(records.read_history(run_dir / "history.csv")),
        "git_commit": records.git_commit(),
        "device": placement.description,
        "colab": colab.runtime(),
        "resume": records.RESUME,
    }
    earlier = records.read_record(run_dir)  # None unless this start resumes the trial
    keeps_record = placement.process == 0
    if keeps_record:
        records.write_record(
            run_dir,
            records.RunRecord(
                **context,
                seed=config.seed,
                config=config.to_dict(),
                trial_id=config.trial_id(),
                dataset=data.summary,
                git_commit=start["git_commit"],
                packages=records.package_versions(),
                backend=placement.backend,
                device=placement.description,
                devices=placement.count,
                device_note=placement.note,
                precision=precision,
                execution=dataclasses.asdict(execution),
                colab_runtime=start["colab"],
                created=earlier.created if earlier else start["at"],
                starts=[*_earlier_starts(earlier), start],
            ),
        )

    state_dir = own_folder(run_dir, placement)
    # The test split is scored from its arrays (measure_test_split), the same on every process.
    pipelines = make_datasets(data, config, placement.process, placement.processes)
    steps_per_epoch = math.ceil(len(data.x_train) / config.batch_size)
    device.wait_for_each_other(placement, f"trial {config.trial_id()} from {checkpoint_epoch(state_dir)}")
    with placement.scope():
        model = compiled_model(config, len(data.class_names), steps_per_epoch, execution)
        _fit(model, config, state_dir, pipelines, data.x_train.shape[1], verbose)
    device.wait_for_each_other(placement, f"trial {config.trial_id()} trained")  # then no process resumes alone
    shutil.rmtree(state_dir / "backup", ignore_errors=True)
    with placement.scoring_scope():
        scored = single_device_copy(model) if placement.scores_a_copy else model
        if config.ema_momentum:
            recompute_batchnorm_statistics(scored, data.x_train, config.batch_size, config.seed)
        history = records.read_history(state_dir / "history.csv")
        losses = [float(row["loss"]) for row in history]
        if not losses or not all(map(math.isfinite, losses)):
            raise TrainingDiverged(f"training loss became {losses[-1] if losses else 'undefined'}")
        test, predictions = measure_test_split(scored, data.x_test, data.y_test, config, data.test_split)
        evaluated = {"evaluated_epoch": len(history)}
        if config.evaluate == "best_val":
            best = KeepBestWeights(state_dir).restore(scored)
            evaluated = {"evaluated_epoch": best, "last_epoch_test_accuracy": test["test_accuracy"]}
            test, predictions = measure_test_split(scored, data.x_test, data.y_test, config, data.test_split)
    if keeps_record:
        save_weights_and_architecture(scored, run_dir / "model.keras")
        records.write_predictions(run_dir / records.PREDICTIONS_FILE, predictions)

    val_accuracy = [float(row["val_accuracy"]) for row in history if row.get("val_accuracy")]  # none: val_size 0
    seconds = sum(float(row["epoch_seconds"]) for row in history)
    metrics = records.Metrics(
        status="complete",
        **test,
        **evaluated,
        best_val_accuracy=max(val_accuracy, default=None),
        best_epoch=int(np.argmax(val_accuracy)) + 1 if val_accuracy else None,
        final_train_accuracy=float(history[-1]["accuracy"]),
        params=count_trainable_params(model),
        train_seconds=round(seconds, 2),
        images_per_second=round(len(data.x_train) * len(history) / seconds, 2),
        epochs=len(history),
        kernel_sizes=list(config.kernel_sizes or (config.kernel_size,)),
        mixing_weights=mixing_weights(model) or None,
        finished=records.now(),
    )
    if keeps_record:
        records.write_metrics(run_dir, metrics)
        for kept in ("best.weights.h5", "best.json"):  # model.keras holds the weights it chose
            (run_dir / kept).unlink(missing_ok=True)
    else:
        shutil.rmtree(state_dir)
    return metrics


BATCHNORM_BATCHES = 50  # training batches that recompute BatchNorm's statistics after an average


def recompute_batchnorm_statistics(model: keras.Model, images: np.ndarray, batch_size: int, seed: int) -> None:
    """Set every BatchNorm layer's moving mean and variance to their averages over
    `BATCHNORM_BATCHES` random, unaugmented training batches, in order, as
    torch.optim.swa_utils.update_bn does.

    Keras' `use_ema` averages the trainable weights only: the statistics the raw weights left
    describe other activations than the averaged weights produce, which cost the one-hour
    model 19 points of test accuracy (benchmarks/README.md, "Recipe levers"). With momentum
    (k - 1) / k at batch k, each layer's own update keeps the running mean of the batches.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    picked = np.random.default_rng(seed).permutation(len(images))[: BATCHNORM_BATCHES * batch_size]
    try:
        for k, start in enumerate(range(0, len(picked), batch_size), 1):
            for layer in norms:
                layer.momentum = (k - 1) / k
            model(images[picked[start : start + batch_size]].astype("float32"), training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def _earlier_starts(earlier: records.RunRecord | None) -> list[dict]:
    """The starts a resumed trial's record lists; one written before `starts` existed gives its
    own start, as far as it says (its epochs done then are unknown)."""
    if earlier is None:
        return []
    if earlier.starts:
        return earlier.starts
    return [{"at": earlier.created, "epochs_done": None, "git_commit": earlier.git_commit, "device": earlier.device}]


def _fit(model, config, run_dir, pipelines, full_size, verbose) -> None:
    """One `fit` per run of epochs at one image size (one in all without progressive resizing).

    The checkpoint outlives each `fit`, so a trial killed in any stage resumes there: every
    later `fit` first restores it, which also skips a finished stage (its epochs are done). The
    caller deletes it once the trial is trained.
    Keras' progress lines count each `fit`'s epochs up to its last: "Epoch 5/11".
    """
    backup = run_dir / "backup"
    history_writer = HistoryWriter(run_dir / "history.csv")
    # History first: a kill between the two writes then reruns the epoch, never skips its row.
    callbacks = [
        history_writer,
        *([KeepBestWeights(run_dir)] if config.evaluate == "best_val" else []),
        BackupAndRestore(str(backup), double_checkpoint=True, delete_checkpoint=False),
        keras.callbacks.TerminateOnNaN(),
        pipelines.draws.callback(),  # each epoch's order and augmentations from (seed, epoch): exact resume
    ]
    if config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                "val_accuracy", patience=config.early_stopping_patience, restore_best_weights=True
            )
        )
    for first, end, image_size in config.training_stages():
        history_writer.image_size = image_size or full_size
        if image_size is not None:
            log.info("epochs %d to %d on %dx%d images", first + 1, end, image_size, image_size)
        # This `fit` starts at `first` unless its own restore finds a later checkpoint, and traces
        # its step anew for this image size.
        keras_internals.restart_fit(model)
        model.fit(
            pipelines.train if image_size is None else resized(pipelines.train, image_size),
            validation_data=pipelines.val,
            initial_epoch=first,
            epochs=end,
            callbacks=callbacks,
            shuffle=False,
            verbose=verbose,
        )
        if model.stop_training:  # early stopping or a NaN loss
            break


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("convmixer")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler

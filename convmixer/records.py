"""The run record of one trial: its schema, and the only code that writes or reads it.

A run folder holds `config.json` (a `RunRecord`: what ran, where, from which code),
`history.csv` (one row per epoch, `HISTORY_COLUMNS`), `predictions.npz` (a `Predictions`: the
class predicted for every test image), `metrics.json` (a `Metrics`, written last and
atomically: a folder without it is unfinished, never a result) and `model.keras`.
docs/run-records.md describes every field. Records of older schema versions still read:
missing fields are None, and a trial's identity is always recomputed from its settings.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import importlib.metadata
import io
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .config import TrialConfig
from .paths import PROJECT_ROOT

# 1: config.json with `config_hash` (before this module owned the schema); 2: `trial_id`,
# `reused_from`, `schema_version`; 3: `backend`, `device_note`, `execution` (earlier runs all
# trained on TensorFlow); 4: each start's `resume`, `test_images`, `last_epoch_test_accuracy`,
# `evaluated_epoch`, predictions.npz; 5: `colab_runtime`, and each start's `colab`; 6: `devices`.
SCHEMA_VERSION = 6
# How this code resumes a trial: each epoch's shuffle and augmentations are drawn from (seed, epoch)
# (pipeline.EpochDraws), so a resumed trial is the uninterrupted one. Starts recorded before schema
# 4 have no `resume`: their input pipeline restarted from the seed, replaying epoch 1's draws.
RESUME = "exact"
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds", "image_size")
TRACKED_PACKAGES = ("tensorflow", "jax", "jaxlib", "keras", "numpy", "pandas", "papermill", "convmixer")
HEADLINE_METRIC = "test_accuracy"


class RecordError(ValueError):
    """An unreadable run record, reported as one readable line."""


def _metric(label: str | None = None, summary: str | None = None, percent: bool = False):
    """A metrics.json field; `summary` ("mean_std" or "mean") puts it in the collated summaries,
    `label` in the report's summary table, `percent` shows a 0..1 fraction in percent."""
    return dataclasses.field(default=None, metadata={"label": label, "summary": summary, "percent": percent})


@dataclasses.dataclass(frozen=True)
class Metrics:
    """metrics.json: the outcome of a trial. Failed trials keep status, error, epochs, finished."""

    status: str  # "complete" or "failed"
    error: str | None = None
    test_accuracy: float | None = _metric("test acc (%)", "mean_std", percent=True)
    test_accuracy_flip: float | None = _metric("with test-time flip (%)", "mean_std", percent=True)
    test_loss: float | None = _metric()
    test_images: int | None = _metric()  # the size of the test split every test_* number was measured on
    evaluated_epoch: int | None = _metric()  # whose weights the test_* numbers (and model.keras) are
    last_epoch_test_accuracy: float | None = _metric()  # `evaluate: best_val` trials: the last epoch's weights
    best_val_accuracy: float | None = _metric("best val acc (%)", "mean_std", percent=True)
    best_epoch: int | None = _metric()
    final_train_accuracy: float | None = _metric("train acc (%)", "mean_std", percent=True)
    params: int | None = _metric("params", "mean")
    train_seconds: float | None = _metric("train time (s)", "mean_std")
    images_per_second: float | None = _metric("images/s", "mean")
    epochs: int | None = _metric()  # epochs completed
    kernel_sizes: list[int] | None = _metric()
    mixing_weights: dict[str, list[float]] | None = _metric()  # softmax weights per multi-kernel layer
    finished: str | None = _metric()

    def __post_init__(self):
        if self.status not in ("complete", "failed"):
            raise RecordError(f"status must be 'complete' or 'failed', got {self.status!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunRecord:
    """config.json: what a trial is (its settings and identity), where it belongs (experiment,
    profile, run name, the varied value) and its provenance (data, code, packages, device)."""

    experiment: str | None = None
    profile: str | None = None
    run_name: str
    vary: str | None = None  # the setting the experiment varies, and its value in this trial
    value: object = None
    seed: int
    config: dict  # every TrialConfig field, as trained
    trial_id: str | None = None
    dataset: dict | None = None  # name, source, num_classes, image_size, train/val/test counts
    git_commit: str | None = None
    packages: dict | None = None
    backend: str | None = None  # the Keras backend: tensorflow or jax
    device: str | None = None
    devices: int | None = None  # how many devices trained the model together (data parallel)
    device_note: str | None = None  # why `device: auto` trained on the CPU, if it did
    precision: str | None = None  # the Keras dtype policy used
    execution: dict | None = None  # jit_compile and fused as run, and the reason (device.execution_choices)
    colab_runtime: dict | None = None  # what Colab's environment says of its runtime (colab.runtime)
    created: str | None = None  # when the trial first started
    # Every start of the trial, the first included: when, how many epochs history.csv held, with
    # which commit, on which device, on which Colab runtime (`colab`, from schema 5), and `resume`
    # (RESUME: how that code resumes; missing before schema 4). A resumed trial keeps its first
    # start here; the fields above describe its latest start.
    starts: list[dict] = dataclasses.field(default_factory=list)
    reused_from: str | None = None  # an identical trial's folder (relative to the runs folder) whose results these are
    schema_version: int = SCHEMA_VERSION

    def trial_config(self) -> TrialConfig:
        return TrialConfig.from_dict(self.config, where="config.json")

    @property
    def inexact_resumes(self) -> int:
        """How many of this trial's starts resumed it with code that replayed epoch 1's draws
        (before `RESUME`): 0 for a trial started once, or resumed only exactly."""
        return sum(1 for start in self.starts[1:] if start.get("resume") != RESUME)


@dataclasses.dataclass(frozen=True)
class Predictions:
    """predictions.npz: the class predicted for every test image, in the test split's order,
    single view and with the test-time flip (None for trials trained without flips), the true
    labels, and the split's identity (`data.split_identity`). With them two runs scored on the
    same split can be compared image by image."""

    labels: np.ndarray
    predicted: np.ndarray
    predicted_flip: np.ndarray | None
    split: dict  # {"images": n, "files_sha256": ...}

    def accuracy(self, flip: bool = False) -> float:
        predicted = self.predicted_flip if flip else self.predicted
        return float(np.mean(predicted == self.labels))


PREDICTIONS_FILE = "predictions.npz"


def write_predictions(path: Path, predictions: Predictions) -> None:
    """Compressed, in the smallest integer type that holds the classes: about 10 KB for 10,000 images."""
    largest = max(predictions.labels.max(initial=0), predictions.predicted.max(initial=0))
    dtype = np.uint8 if largest < 256 else np.uint16
    arrays = {"labels": predictions.labels.astype(dtype), "predicted": predictions.predicted.astype(dtype)}
    if predictions.predicted_flip is not None:
        arrays["predicted_flip"] = predictions.predicted_flip.astype(dtype)
    out = io.BytesIO()
    np.savez_compressed(out, **arrays, split=json.dumps(predictions.split))
    write_atomic(path, out.getvalue())


RESCORED_DIR = "rescored"


def write_rescoring(run_dir: Path, predictions: Predictions, summary: dict) -> Path:
    """A run's model scored again on another test split (`convmixer evaluate`): its predictions and
    a summary (accuracies, the split, the data source, when) in `rescored/<split hash>.npz|json`,
    beside the run's own records, which stay as they were."""
    stem = Path(run_dir) / RESCORED_DIR / predictions.split["files_sha256"][:12]
    write_predictions(stem.with_suffix(".npz"), predictions)
    write_json(stem.with_suffix(".json"), {**summary, "split": predictions.split, "git_commit": git_commit()})
    return stem


def read_rescorings(run_dir: Path) -> list[tuple[dict, Predictions]]:
    """Every rescoring of the run (`write_rescoring`), as (summary, predictions)."""
    found = sorted((Path(run_dir) / RESCORED_DIR).glob("*.json"))
    return [(read_json(path), read_predictions(path.with_suffix(".npz"))) for path in found]


def read_predictions(path: Path) -> Predictions | None:
    """The predictions in `path` (a run folder's predictions.npz, or a rescoring's); None when missing."""
    if not Path(path).is_file():
        return None
    with np.load(path) as stored:
        return Predictions(
            labels=stored["labels"].astype(np.int64),
            predicted=stored["predicted"].astype(np.int64),
            predicted_flip=stored["predicted_flip"].astype(np.int64) if "predicted_flip" in stored else None,
            split=json.loads(str(stored["split"])),
        )


def device_kind(description: str | None) -> str:
    """'tpu', 'gpu' or 'cpu' from a run's device description (device.detect writes it)."""
    text = str(description or "").lower()
    if "tpu" in text:
        return "tpu"
    if any(word in text for word in ("gpu", "cuda", "nvidia")):
        return "gpu"
    return "cpu"


def summary_metrics() -> dict[str, dict]:
    """The metrics that collation summarises over seeds, by name, with their field metadata."""
    return {f.name: dict(f.metadata) for f in dataclasses.fields(Metrics) if f.metadata.get("summary")}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write to a temp file beside `path`, then rename: readers see all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide records and reports from other readers
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> dict | None:
    """A JSON object from `path`; None when the file does not exist."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}: malformed JSON at line {error.lineno}: {error.msg}") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _from_json(cls, data: dict, path: Path):
    """A schema object from a JSON object of any schema version: unknown keys (older fields such
    as `config_hash`) are ignored, missing ones take their defaults."""
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{key: value for key, value in data.items() if key in names})
    except TypeError as error:  # a required field is missing
        raise RecordError(f"{path}: {error}") from None
    except RecordError as error:
        raise RecordError(f"{path}: {error}") from None


def read_record(run_dir: Path) -> RunRecord | None:
    data = read_json(Path(run_dir) / "config.json")
    if data is None:
        return None
    if not isinstance(data.get("config"), dict):
        raise RecordError(f"{Path(run_dir) / 'config.json'}: missing the 'config' mapping of settings")
    defaults = {"run_name": Path(run_dir).name, "seed": data["config"].get("seed"), "schema_version": 1}
    if data.get("schema_version", 1) < 3:
        defaults["backend"] = "tensorflow"  # the only backend before schema 3
    return _from_json(RunRecord, {**defaults, **data}, Path(run_dir) / "config.json")


def read_metrics(run_dir: Path) -> Metrics | None:
    data = read_json(Path(run_dir) / "metrics.json")
    return None if data is None else _from_json(Metrics, data, Path(run_dir) / "metrics.json")


def write_record(run_dir: Path, record: RunRecord) -> None:
    write_json(Path(run_dir) / "config.json", dataclasses.asdict(record))


def write_metrics(run_dir: Path, metrics: Metrics) -> None:
    write_json(Path(run_dir) / "metrics.json", dataclasses.asdict(metrics))


def read_history(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_history(path: Path, rows: list[dict]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, out.getvalue())


# What a run executes: a change here, not yet committed, makes the record's commit `+dirty`.
# Outputs (reports/, benchmarks/results/) and docs change while runs go on without changing one.
CODE_PATHS = ("convmixer", "params", "notebooks", "pyproject.toml", "constraints.txt")


def git_commit() -> str | None:
    """The commit of the code that ran (with `+dirty` when `CODE_PATHS` hold uncommitted changes)."""
    root = PROJECT_ROOT
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


class IncompatibleRunError(ValueError):
    """The run directory holds a trial of a different configuration."""


def recorded_trial_id(record: RunRecord) -> str:
    """The identity of a recorded trial, recomputed from its settings (never read from the file:
    identities of older records, and of settings spelled another way, then agree)."""
    return record.trial_config().trial_id()


def check_compatible(run_dir: Path, config: TrialConfig) -> None:
    previous = read_record(run_dir)
    if previous is not None and recorded_trial_id(previous) != config.trial_id():
        raise IncompatibleRunError(
            f"{run_dir} holds a trial of another configuration (identity {recorded_trial_id(previous)}, "
            f"this trial {config.trial_id()}); refusing to resume it: delete it or use another directory"
        )


def run_status(run_dir: Path) -> str:
    """`complete`, `failed`, `unfinished` (started, no metrics.json) or `new`."""
    metrics = read_metrics(run_dir)
    if metrics is not None:
        return metrics.status
    return "unfinished" if (Path(run_dir) / "config.json").exists() else "new"


def find_run_dirs(folder: Path) -> list[Path]:
    """Every directory under `folder` holding a config.json (not looking inside a run)."""
    found = []
    for root, dirs, files in os.walk(folder):
        if "config.json" in files:
            found.append(Path(root))
            dirs.clear()
        dirs.sort()
    return sorted(found)


def find_complete_trial(runs_dir: Path, config: TrialConfig, exclude: Path | None = None) -> Path | None:
    """A complete, trained (not itself reused) run of the same trial under `runs_dir`, if any."""
    wanted = config.trial_id()
    for run_dir in find_run_dirs(runs_dir) if Path(runs_dir).is_dir() else []:
        if exclude is not None and run_dir.resolve() == Path(exclude).resolve():
            continue
        record = read_record(run_dir)
        if record.reused_from is None and run_status(run_dir) == "complete" and recorded_trial_id(record) == wanted:
            return run_dir
    return None


def reuse_run(source: Path, run_dir: Path, record: RunRecord) -> Metrics:
    """Give `run_dir` the results of the identical trial in `source`: its history, predictions and metrics,
    with `record` (this experiment's names) saying where they came from. No training."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_history(run_dir / "history.csv", read_history(source / "history.csv"))
    predictions = read_predictions(source / PREDICTIONS_FILE)
    if predictions is not None:  # the same trial: the same answers, image by image
        write_predictions(run_dir / PREDICTIONS_FILE, predictions)
    write_record(run_dir, record)
    metrics = read_metrics(source)
    write_metrics(run_dir, metrics)  # last: the folder is complete only now
    return metrics

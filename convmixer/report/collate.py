"""Collate run records into tables: runs, histories, executed notebooks, compute, summaries.

Reads only the run records (through `records`) and the executed notebooks' papermill
metadata, so a report can be rebuilt from run folders copied from several machines.
Accuracies in summaries are in percent.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd

from .. import records
from ..flops import model_flops
from ..records import RecordError
from ..study import experiments
from .labels import kernels_label, value_label

RUN_KEY = ["experiment", "run_name", "trial_id"]
# Runs of one experiment that differ only in seed (and in what does not change the result)
# are one summary row: the setting identity decides, the other keys label the row.
GROUP_KEYS = [
    "experiment",
    "vary",
    "value_label",
    "profile",
    "dataset",
    "width",
    "depth",
    "patch_size",
    "kernels",
    "activation",
    "optimizer",
    "epochs",
    "evaluate",
    "setting_id",
    "setting_id_without_kernel",
]


class CollateError(ValueError):
    """Unreadable run records or published numbers, reported as one readable line."""


# ---- run records --------------------------------------------------------------------------
def find_run_dirs(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise CollateError(f"no such runs folder: {folder}")
    return records.find_run_dirs(folder)


def load_runs(*folders: str | Path) -> pd.DataFrame:
    """One row per finished run (complete or failed) found in `folders`.

    A run present in several folders (same experiment, run name and identity) is kept once,
    preferring a complete copy, then the earlier folder; the other copies are listed in its
    `duplicates` column. Unfinished runs (no metrics.json) are left out: see `unfinished_runs`.
    """
    rows = [
        _read_run(run_dir, folder)
        for folder in folders
        for run_dir in find_run_dirs(folder)
        if (run_dir / "metrics.json").is_file()
    ]
    return _drop_duplicates(pd.DataFrame(rows, columns=run_columns()))


def run_columns() -> list[str]:
    """The columns of `load_runs`: the record's context, every setting, every metric, provenance."""
    context = ["experiment", "run_name", "status", "error", "vary", "value", "value_label", "seed", "profile"]
    # `device` is provenance below: what trained the run, not the config's request.
    settings = [f.name for f in dataclasses.fields(records.TrialConfig) if f.name not in ("seed", "device")]
    metrics = [
        f.name
        for f in dataclasses.fields(records.Metrics)
        if f.name not in ("status", "error", "epochs", "kernel_sizes")
    ]
    derived = [
        "kernels",
        "augmentation",
        "epochs_completed",
        "images_seen",
        "train_flops",
        "steady_train_seconds",
        "train_images",
        "inexact_resumes",
        "rescored_test_accuracy",
        "rescored_test_images",
    ]
    provenance = [
        "trial_id",
        "setting_id",
        "setting_id_without_kernel",
        "reused_from",
        "git_commit",
        "backend",
        "device",
        "precision_used",
        "packages",
        "created",
        "starts",
        "schema_version",
        "dataset_source",
        "run_dir",
        "source",
    ]
    return context + settings + metrics + derived + provenance


def unfinished_runs(*folders: str | Path) -> pd.DataFrame:
    """Run directories without metrics.json: started, not finished (yet), never a result; with the
    epochs their history holds and the epochs their trial plans."""
    rows = []
    for folder in folders:
        for run_dir in find_run_dirs(folder):
            if not (run_dir / "metrics.json").is_file():
                record = _read(records.read_record, run_dir)
                rows.append(
                    {
                        "experiment": record.experiment,
                        "run_name": record.run_name,
                        "epochs_done": len(records.read_history(run_dir / "history.csv")),
                        "epochs": record.trial_config().epochs,
                        "run_dir": str(run_dir),
                        "source": str(folder),
                    }
                )
    return pd.DataFrame(rows, columns=["experiment", "run_name", "epochs_done", "epochs", "run_dir", "source"])


def _read(reader, run_dir: Path):
    try:
        return reader(run_dir)
    except RecordError as error:
        raise CollateError(str(error)) from None


def _read_run(run_dir: Path, folder) -> dict:
    record = _read(records.read_record, run_dir)
    metrics = dataclasses.asdict(_read(records.read_metrics, run_dir))
    config = record.trial_config()
    dataset = record.dataset or {}
    epochs_completed = metrics.pop("epochs")
    metrics.pop("kernel_sizes")  # the settings say it
    train_images = dataset.get("train")
    images_seen = train_images * epochs_completed if train_images and epochs_completed else None
    test_images = metrics["test_images"] or dataset.get("test")  # records before schema 4: the dataset's
    return {
        "experiment": record.experiment,
        "run_name": record.run_name,
        "vary": record.vary,
        "value": record.value,
        "value_label": value_label(record.value),
        "seed": record.seed,
        "profile": record.profile,
        **config.to_dict(),
        **metrics,
        "kernels": kernels_label(config.to_dict()),
        "augmentation": ", ".join(config.augmentation_summary()) or "none",
        "epochs_completed": epochs_completed,
        "images_seen": images_seen,
        "train_flops": train_flops(config, dataset, epochs_completed),
        "steady_train_seconds": steady_train_seconds(
            run_dir / "history.csv", epochs_completed, metrics["train_seconds"]
        ),
        "train_images": train_images,
        "test_images": test_images,
        "inexact_resumes": record.inexact_resumes,
        **rescored_on_more_images(run_dir, test_images),
        "trial_id": config.trial_id(),
        "setting_id": config.setting_id(),
        "setting_id_without_kernel": setting_id_without_kernel(config),
        "reused_from": record.reused_from,
        "git_commit": record.git_commit,
        "backend": record.backend,
        "device": record.device,  # what trained it (the config's `device` is only what was asked for)
        "precision_used": record.precision,
        "packages": ", ".join(f"{name} {version}" for name, version in (record.packages or {}).items()),
        "created": record.created,
        "starts": len(record.starts) or None,  # how many times the trial started (resumes + 1); None: not recorded
        "schema_version": record.schema_version,
        "dataset_source": dataset.get("source"),
        "run_dir": str(run_dir),
        "source": str(folder),
    }


def rescored_on_more_images(run_dir: Path, test_images: int | None) -> dict:
    """The run's saved model scored again (`convmixer evaluate`) on the largest test split larger
    than the one it was scored on when it trained (for instance all 10,000 CIFAR-10 test images
    where it was tested on 2,000); NaN when there is none. The record's own numbers stay as they are."""
    larger = [
        summary
        for summary, _ in records.read_rescorings(run_dir)
        if summary.get("test_images") and summary["test_images"] > (test_images or 0)
    ]
    best = max(larger, key=lambda summary: summary["test_images"], default=None)
    if best is None:
        return {"rescored_test_accuracy": math.nan, "rescored_test_images": math.nan}
    return {"rescored_test_accuracy": best["test_accuracy"], "rescored_test_images": best["test_images"]}


def train_flops(config: records.TrialConfig, dataset: dict, epochs_completed: int | None) -> int | None:
    """FLOPs of the run's training counted from its architecture (forward and backward pass per
    image, flops.model_flops) at each epoch's image size, times the images it trained on: a cost
    that timing noise cannot move."""
    train_images, full_size, classes = (dataset.get(key) for key in ("train", "image_size", "num_classes"))
    if not (train_images and epochs_completed and full_size and classes):
        return None
    kernels = config.kernel_sizes or (config.kernel_size,)
    sizes = [size or full_size for size in config.epoch_sizes()]
    per_image = {
        size: model_flops(config.width, config.depth, kernels, config.patch_size, size, classes, config.mixing)
        for size in set(sizes)
    }
    return sum(per_image[size]["training_flops"] for size in sizes[:epochs_completed]) * train_images


def steady_train_seconds(history_path: Path, epochs_completed: int | None, train_seconds: float | None) -> float | None:
    """The median epoch's seconds times the epochs of history.csv, per image size (progressive
    resizing): the training time without the epochs that a pause (a stopped process) or another
    job on the machine lengthened, for cost estimates. `train_seconds` where the history has no
    epoch times or the run completed none."""
    history = pd.DataFrame(records.read_history(history_path), columns=["epoch_seconds", "image_size"])
    seconds = pd.to_numeric(history["epoch_seconds"], errors="coerce")
    if seconds.isna().all() or not epochs_completed:
        return train_seconds
    size = pd.to_numeric(history["image_size"], errors="coerce").fillna(0)
    return float(seconds.groupby(size).median().mul(size.value_counts()).sum())


def setting_id_without_kernel(config: records.TrialConfig) -> str:
    """The setting's identity with its depthwise kernels left out: equal for settings that differ
    only in the kernel (a kernel sweep's rows and a multi-kernel row of the same recipe)."""
    return config.replace(kernel_size=records.TrialConfig.kernel_size, kernel_sizes=None).setting_id()


def _drop_duplicates(runs: pd.DataFrame) -> pd.DataFrame:
    order = runs.assign(_failed=runs["status"] != "complete").sort_values("_failed", kind="stable")
    copies = order[order.duplicated(RUN_KEY)].groupby(RUN_KEY, dropna=False)["run_dir"].agg("; ".join)
    kept = order.drop_duplicates(RUN_KEY).drop(columns="_failed").sort_index()
    kept["duplicates"] = [copies.get(key, "") for key in kept[RUN_KEY].itertuples(index=False, name=None)]
    return kept.reset_index(drop=True)


def load_histories(runs: pd.DataFrame) -> pd.DataFrame:
    """All history.csv rows of `runs`, tagged with experiment, run name, value, seed, status, identity."""
    tags = ["experiment", "run_name", "value_label", "seed", "status", "trial_id", "run_dir"]
    frames = []
    for run in runs[tags].to_dict("records"):
        path = Path(run["run_dir"]) / "history.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(**run))
    return (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(records.HISTORY_COLUMNS) + tags)
    )


# ---- executed notebooks -------------------------------------------------------------------
def load_notebooks(*folders: str | Path) -> pd.DataFrame:
    """Papermill metadata of the executed experiment notebooks (`<experiment>.ipynb`) in `folders`.

    `duration` is the notebook's wall time in seconds. The report notebook itself is skipped.
    """
    rows = []
    for folder in map(Path, folders):
        for path in sorted(folder.glob("*.ipynb")) if folder.is_dir() else []:
            if path.stem == "report":
                continue
            try:
                papermill = json.loads(path.read_text()).get("metadata", {}).get("papermill")
            except json.JSONDecodeError as error:
                raise CollateError(f"{path}: malformed notebook JSON at line {error.lineno}: {error.msg}") from None
            if papermill:
                rows.append(
                    {
                        "experiment": path.stem,
                        "notebook": str(path),
                        "parameters": papermill.get("parameters") or {},
                        "start_time": papermill.get("start_time"),
                        "end_time": papermill.get("end_time"),
                        "duration": papermill.get("duration"),
                        "exception": bool(papermill.get("exception")),
                    }
                )
    return pd.DataFrame(
        rows, columns=["experiment", "notebook", "parameters", "start_time", "end_time", "duration", "exception"]
    )


def compute_requirements(runs: pd.DataFrame, notebooks: pd.DataFrame) -> pd.DataFrame:
    """Per experiment: devices, runs, reused runs, training hours by device kind, notebook wall hours.

    Training hours count trained runs only: a reused run's training is counted where it ran.
    """
    runs = runs.assign(
        kind=runs["device"].map(records.device_kind),
        hours=runs["train_seconds"].astype(float).where(runs["reused_from"].isna(), 0) / 3600,
    )
    rows = []
    for experiment in dict.fromkeys([*runs["experiment"], *notebooks["experiment"]]):
        group = runs[runs["experiment"] == experiment]
        wall = notebooks.loc[notebooks["experiment"] == experiment, "duration"].astype(float)
        rows.append(
            {
                "experiment": experiment,
                "devices": "; ".join(sorted(set(group["device"].dropna().astype(str)))),
                "runs": len(group),
                "reused": int(group["reused_from"].notna().sum()),
                "failed": int((group["status"] == "failed").sum()),
                "train_hours": group["hours"].sum(),
                "cpu_hours": group.loc[group["kind"] == "cpu", "hours"].sum(),
                "accelerator_hours": group.loc[group["kind"] != "cpu", "hours"].sum(),
                "notebook_hours": wall.sum() / 3600 if len(wall) else math.nan,
            }
        )
    table = pd.DataFrame(
        rows,
        columns=[
            "experiment",
            "devices",
            "runs",
            "reused",
            "failed",
            "train_hours",
            "cpu_hours",
            "accelerator_hours",
            "notebook_hours",
        ],
    )
    return in_experiment_order(table)


# ---- summaries ----------------------------------------------------------------------------
def summary_statistics() -> dict[str, str]:
    """Each summarised metric and "mean_std" or "mean" (the schema's choice; `gap` and
    `train_flops` and `steady_train_seconds` are derived from the records)."""
    schema = {name: meta["summary"] for name, meta in records.summary_metrics().items()}
    return {**schema, "gap": "mean_std", "train_flops": "mean_std", "steady_train_seconds": "mean"}


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each setting of each experiment.

    Accuracies are in percent; `gap` is final train accuracy minus test accuracy (overfitting);
    `train_flops` is the training cost counted from the architecture (no timing noise);
    `steady_train_seconds` the training time at the median epoch's pace (no pauses);
    `mixing_weight_min` and `_max` bound the learned mixing weights of a multi-kernel row;
    `n` counts complete runs, `n_failed` failed ones and `n_reused` those reused from an
    identical trial of another experiment; `inexact_resumes` the starts of its runs that resumed
    with code older than exact resume (records.RESUME); `run_dirs`, `trial_ids` and `git_commits` give the
    provenance of every number in the row.
    """
    percent = [name for name, meta in records.summary_metrics().items() if meta["percent"]]
    runs = runs.assign(**{m: 100 * runs[m].astype(float) for m in percent})
    runs["gap"] = runs["final_train_accuracy"] - runs["test_accuracy"]
    columns = ["value", "n", "n_failed", "n_reused"] + [
        f"{m}_{s}" for m, kind in summary_statistics().items() for s in (("mean", "std") if kind == "mean_std" else ())
    ]
    columns += [m for m, kind in summary_statistics().items() if kind == "mean"]
    columns += [
        "mixing_weight_min",
        "mixing_weight_max",
        "train_images",
        "test_images",
        "rescored_test_accuracy_mean",
        "rescored_test_accuracy_std",
        "rescored_test_images",
        "inexact_resumes",
        "run_dirs",
        "trial_ids",
        "git_commits",
        "devices",
    ]
    if runs.empty:
        return pd.DataFrame(columns=GROUP_KEYS + columns)
    groups = runs.groupby(GROUP_KEYS, dropna=False, sort=False)
    summary = pd.DataFrame(
        [{**dict(zip(GROUP_KEYS, key)), **_summarise_group(group)} for key, group in groups],
        columns=GROUP_KEYS + columns,
    )
    summary["params"] = summary["params"].astype("Int64")
    return in_experiment_order(summary, by_value=True)


def _summarise_group(group: pd.DataFrame) -> dict:
    done = group[group["status"] == "complete"]
    row = {
        "value": group["value"].iloc[0],
        "n": len(done),
        "n_failed": int((group["status"] == "failed").sum()),
        "n_reused": int(done["reused_from"].notna().sum()),
    }
    for metric, kind in summary_statistics().items():
        values = done[metric].astype(float)
        if kind == "mean_std":
            row[f"{metric}_mean"], row[f"{metric}_std"] = values.mean(), values.std()
        else:
            row[metric] = values.mean()
    row["params"] = whole(row["params"])
    row["mixing_weight_min"], row["mixing_weight_max"] = mixing_weight_range(done["mixing_weights"])
    # A row's rescored accuracy (in %) only when every one of its runs was rescored on one split size.
    rescored, images = done["rescored_test_accuracy"].astype(float), done["rescored_test_images"].astype(float)
    every_run = len(done) and rescored.notna().all() and images.nunique() == 1
    row["rescored_test_accuracy_mean"] = 100 * rescored.mean() if every_run else math.nan
    row["rescored_test_accuracy_std"] = 100 * rescored.std() if every_run else math.nan
    row["rescored_test_images"] = whole(images.iloc[0]) if every_run else pd.NA
    row.update(
        {
            "train_images": whole(done["train_images"].astype(float).mean()),
            "test_images": whole(done["test_images"].astype(float).mean()),
            # starts, over the row's runs, that resumed with code replaying epoch 1's draws
            "inexact_resumes": int(done["inexact_resumes"].fillna(0).sum()),
            "run_dirs": "; ".join(group["run_dir"]),
            "trial_ids": "; ".join(group["trial_id"].dropna().astype(str)),
            "git_commits": "; ".join(sorted(set(group["git_commit"].dropna().astype(str)))),
            "devices": "; ".join(sorted(set(group["device"].dropna().astype(str)))),
        }
    )
    return row


def mixing_weight_range(weights: pd.Series) -> tuple[float, float]:
    """The smallest and largest learned mixing weight over every layer and run; NaN for none."""
    values = [w for run in weights if isinstance(run, dict) for layer in run.values() for w in layer]
    return (min(values), max(values)) if values else (math.nan, math.nan)


def whole(value):
    """An integer count, or pd.NA when unknown."""
    return pd.NA if missing(value) else int(round(float(value)))


def missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _sort_value(value):
    """Numbers by size, then lists (multi-kernel) by length and content, then text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, ())
    if isinstance(value, (list, tuple)):
        return (1, len(value), tuple(value))
    return (2, 0, (str(value),))


def in_experiment_order(table: pd.DataFrame, by_value: bool = False) -> pd.DataFrame:
    """Rows in the registry's experiment order (unknown experiments last), then by value."""
    rank = {name: i for i, name in enumerate(experiments.experiment_names())}

    def key(i):
        row = table.iloc[i]
        return (
            rank.get(row["experiment"], len(rank)),
            str(row["experiment"]),
            _sort_value(row["value"]) if by_value else (),
        )

    return table.iloc[sorted(range(len(table)), key=key)].reset_index(drop=True)

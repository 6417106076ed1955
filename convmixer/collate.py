"""Collate run records into tables: runs, histories, summaries, published comparisons, claims.

Reads only the run-record files (`config.json`, `history.csv`, `metrics.json`) and the
executed notebooks' papermill metadata, so a report can be rebuilt from run folders copied
from several machines. Accuracies in summaries and comparisons are in percent.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import pandas as pd

from convmixer.config import load_yaml
from convmixer.records import write_atomic

PUBLISHED = Path(__file__).resolve().parents[1] / "params" / "published.yaml"
EXPERIMENTS = ("baseline", "adamw", "patch_sweep", "kernel_sweep", "dynamic_kernel")
PERCENT_METRICS = ("test_accuracy", "test_accuracy_flip", "best_val_accuracy", "final_train_accuracy")
RUN_KEY = ["experiment", "run_name", "config_hash"]
# Runs that differ only in seed (and data location) are one group in a summary.
GROUP_KEYS = ["experiment", "vary", "value_label", "profile", "dataset", "width", "depth",
              "patch_size", "kernels", "activation", "optimizer", "epochs", "setting_hash"]
MATCH_KEYS = ["dataset", "width", "depth", "patch_size", "kernels", "optimizer", "activation", "epochs"]
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"


class CollateError(ValueError):
    """Unreadable run records or published numbers, reported as one readable line."""


# ---- run records --------------------------------------------------------------------------
def find_run_dirs(folder: str | Path) -> list[Path]:
    """Every directory under `folder` holding a config.json (not looking inside a run)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CollateError(f"no such runs folder: {folder}")
    found = []
    for root, dirs, files in os.walk(folder):
        if "config.json" in files:
            found.append(Path(root))
            dirs.clear()
        dirs.sort()
    return sorted(found)


def load_runs(*folders: str | Path) -> pd.DataFrame:
    """One row per finished run (complete or failed) found in `folders`.

    A run present in several folders (same experiment, run name and config hash) is kept
    once, preferring a complete copy, then the earlier folder; the other copies are listed
    in its `duplicates` column. Unfinished runs (no metrics.json) are left out: see
    `unfinished_runs`.
    """
    rows = [_read_run(run_dir, folder) for folder in folders for run_dir in find_run_dirs(folder)
            if (run_dir / "metrics.json").is_file()]
    runs = pd.DataFrame(rows)
    runs = runs.reindex(columns=_RUN_COLUMNS + [c for c in runs.columns if c not in _RUN_COLUMNS])
    return _drop_duplicates(runs)


def unfinished_runs(*folders: str | Path) -> pd.DataFrame:
    """Run directories without metrics.json: started, never finished, never a result."""
    rows = []
    for folder in folders:
        for run_dir in find_run_dirs(folder):
            if not (run_dir / "metrics.json").is_file():
                config = _read_json(run_dir / "config.json")
                rows.append({"experiment": config.get("experiment"), "run_name": config.get("run_name"),
                             "run_dir": str(run_dir), "source": str(folder)})
    return pd.DataFrame(rows, columns=["experiment", "run_name", "run_dir", "source"])


_RUN_COLUMNS = [
    "experiment", "run_name", "status", "error", "vary", "value", "value_label", "seed", "profile",
    "dataset", "width", "depth", "patch_size", "kernel_size", "kernel_sizes", "kernels", "mixing",
    "activation", "optimizer", "learning_rate", "weight_decay", "schedule", "epochs", "batch_size",
    "test_accuracy", "test_loss", "test_accuracy_flip", "best_val_accuracy", "best_epoch",
    "final_train_accuracy", "params", "train_seconds", "images_per_second", "epochs_completed", "images_seen",
    "mixing_weights", "config_hash", "setting_hash", "git_commit", "device", "precision_used",
    "packages", "created", "finished", "run_dir", "source",
]


def _read_run(run_dir: Path, folder) -> dict:
    record = _read_json(run_dir / "config.json")
    metrics = _read_json(run_dir / "metrics.json")
    settings = record.get("config")
    if not isinstance(settings, dict):
        raise CollateError(f"{run_dir / 'config.json'}: missing the 'config' mapping of settings")
    status = metrics.get("status")
    if status not in ("complete", "failed"):
        raise CollateError(f"{run_dir / 'metrics.json'}: status must be 'complete' or 'failed', "
                           f"got {status!r}")
    dataset = record.get("dataset") or {}
    row = {f"dataset_{key}": value for key, value in dataset.items()}
    row.update(settings)
    row.update({key: metrics.get(key) for key in (
        "status", "error", "test_accuracy", "test_loss", "test_accuracy_flip", "best_val_accuracy", "best_epoch",
        "final_train_accuracy", "params", "train_seconds", "images_per_second", "mixing_weights",
        "finished")})
    epochs_completed = metrics.get("epochs")
    train_images = dataset.get("train")
    row.update({
        "experiment": record.get("experiment"),
        "run_name": record.get("run_name", run_dir.name),
        "vary": record.get("vary"),
        "value": record.get("value"),
        "value_label": value_label(record.get("value")),
        "seed": record.get("seed", settings.get("seed")),
        "profile": record.get("profile"),
        "kernels": kernels_label(settings),
        "epochs_completed": epochs_completed,
        "images_seen": train_images * epochs_completed if train_images and epochs_completed else None,
        "config_hash": record.get("config_hash"),
        "setting_hash": setting_hash(settings),
        "git_commit": record.get("git_commit"),
        "device": record.get("device"),
        "precision_used": record.get("precision"),
        "packages": ", ".join(f"{name} {version}" for name, version in
                              (record.get("packages") or {}).items()),
        "created": record.get("created"),
        "run_dir": str(run_dir),
        "source": str(folder),
    })
    return row


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CollateError(f"{path}: malformed JSON at line {error.lineno}: {error.msg}") from None
    if not isinstance(data, dict):
        raise CollateError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def value_label(value) -> str:
    """The varied value as text: '' for none, '2-4-6-8-10' for a list."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    return str(value)


def kernels_label(settings: dict) -> str:
    """'9' for one depthwise kernel size, '2-4-6-8-10' for a multi-kernel model."""
    sizes = settings.get("kernel_sizes")
    return value_label(sizes) if sizes else str(settings.get("kernel_size"))


def setting_hash(settings: dict) -> str:
    """Hash of a run's settings without seed and data location: the same for all its seeds."""
    values = {k: v for k, v in settings.items() if k not in ("seed", "data_dir")}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def _drop_duplicates(runs: pd.DataFrame) -> pd.DataFrame:
    order = runs.assign(_failed=runs["status"] != "complete").sort_values("_failed", kind="stable")
    copies = order[order.duplicated(RUN_KEY)].groupby(RUN_KEY, dropna=False)["run_dir"].agg("; ".join)
    kept = order.drop_duplicates(RUN_KEY).drop(columns="_failed").sort_index()
    kept["duplicates"] = [copies.get(key, "") for key in kept[RUN_KEY].itertuples(index=False, name=None)]
    return kept.reset_index(drop=True)


def load_histories(runs: pd.DataFrame) -> pd.DataFrame:
    """All history.csv rows of `runs`, tagged with experiment, run name, value, seed, status, hash."""
    tags = ["experiment", "run_name", "value_label", "seed", "status", "config_hash", "run_dir"]
    frames = []
    for run in runs[tags].to_dict("records"):
        path = Path(run["run_dir"]) / "history.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(**run))
    columns = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns + tags)


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
                raise CollateError(f"{path}: malformed notebook JSON at line {error.lineno}: "
                                   f"{error.msg}") from None
            if papermill:
                rows.append({"experiment": path.stem, "notebook": str(path),
                             "parameters": papermill.get("parameters") or {},
                             "start_time": papermill.get("start_time"), "end_time": papermill.get("end_time"),
                             "duration": papermill.get("duration"),
                             "exception": bool(papermill.get("exception"))})
    return pd.DataFrame(rows, columns=["experiment", "notebook", "parameters", "start_time", "end_time",
                                       "duration", "exception"])


def device_kind(device) -> str:
    """'GPU', 'TPU' or 'CPU' from a run's free-text device description."""
    text = str(device or "").lower()
    if "tpu" in text:
        return "TPU"
    if any(word in text for word in ("gpu", "cuda", "nvidia")):
        return "GPU"
    return "CPU"


def compute_requirements(runs: pd.DataFrame, notebooks: pd.DataFrame) -> pd.DataFrame:
    """Per experiment: devices, runs, summed training hours by device kind, notebook wall hours."""
    runs = runs.assign(kind=runs["device"].map(device_kind), hours=runs["train_seconds"].astype(float) / 3600)
    rows = []
    for experiment in dict.fromkeys([*runs["experiment"], *notebooks["experiment"]]):
        group = runs[runs["experiment"] == experiment]
        wall = notebooks.loc[notebooks["experiment"] == experiment, "duration"].astype(float)
        rows.append({
            "experiment": experiment,
            "devices": "; ".join(sorted(set(group["device"].dropna().astype(str)))),
            "runs": len(group),
            "failed": int((group["status"] == "failed").sum()),
            "train_hours": group["hours"].sum(),
            "cpu_hours": group.loc[group["kind"] == "CPU", "hours"].sum(),
            "accelerator_hours": group.loc[group["kind"] != "CPU", "hours"].sum(),
            "notebook_hours": wall.sum() / 3600 if len(wall) else math.nan,
        })
    table = pd.DataFrame(rows, columns=["experiment", "devices", "runs", "failed", "train_hours",
                                        "cpu_hours", "accelerator_hours", "notebook_hours"])
    return _in_experiment_order(table)


# ---- summaries ----------------------------------------------------------------------------
def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each setting of each experiment.

    Accuracies are in percent; `gap` is final train accuracy minus test accuracy (overfitting);
    `n` counts complete runs and `n_failed` failed ones; `run_dirs`, `config_hashes` and
    `git_commits` give the provenance of every number in the row.
    """
    runs = runs.assign(**{m: 100 * runs[m].astype(float) for m in PERCENT_METRICS})
    runs["gap"] = runs["final_train_accuracy"] - runs["test_accuracy"]
    runs["compute"] = runs["params"].astype(float) * runs["images_seen"].astype(float)
    if runs.empty:
        return pd.DataFrame(columns=GROUP_KEYS + _SUMMARY_COLUMNS)
    groups = runs.groupby(GROUP_KEYS, dropna=False, sort=False)
    summary = pd.DataFrame([{**dict(zip(GROUP_KEYS, key)), **_summarise_group(group)}
                            for key, group in groups])
    summary["params"] = summary["params"].astype("Int64")
    return _in_experiment_order(summary, by_value=True)


_MEAN_STD = (*PERCENT_METRICS, "gap", "train_seconds")
_MEAN_ONLY = ("params", "images_per_second", "compute")
_SUMMARY_COLUMNS = (["value", "n", "n_failed"] + [f"{m}_{s}" for m in _MEAN_STD for s in ("mean", "std")]
                    + list(_MEAN_ONLY) + ["run_dirs", "config_hashes", "git_commits", "devices"])


def _summarise_group(group: pd.DataFrame) -> dict:
    done = group[group["status"] == "complete"]
    row = {"value": group["value"].iloc[0], "n": len(done),
           "n_failed": int((group["status"] == "failed").sum())}
    for metric in _MEAN_STD:
        values = done[metric].astype(float)
        row[f"{metric}_mean"], row[f"{metric}_std"] = values.mean(), values.std()
    for metric in _MEAN_ONLY:
        row[metric] = done[metric].astype(float).mean()
    row["params"] = _whole(row["params"])
    row.update({
        "run_dirs": "; ".join(group["run_dir"]),
        "config_hashes": "; ".join(group["config_hash"].dropna().astype(str)),
        "git_commits": "; ".join(sorted(set(group["git_commit"].dropna().astype(str)))),
        "devices": "; ".join(sorted(set(group["device"].dropna().astype(str)))),
    })
    return row


def _sort_value(value):
    """Numbers by size, then lists (multi-kernel) by length and content, then text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, ())
    if isinstance(value, (list, tuple)):
        return (1, len(value), tuple(value))
    return (2, 0, (str(value),))


def _in_experiment_order(table: pd.DataFrame, by_value: bool = False) -> pd.DataFrame:
    rank = {name: i for i, name in enumerate(EXPERIMENTS)}

    def key(i):
        row = table.iloc[i]
        return (rank.get(row["experiment"], len(rank)), str(row["experiment"]),
                _sort_value(row["value"]) if by_value else ())
    return table.iloc[sorted(range(len(table)), key=key)].reset_index(drop=True)


# ---- published numbers --------------------------------------------------------------------
def load_published(path: str | Path = PUBLISHED) -> pd.DataFrame:
    """The published numbers, one row per (result, experiment it belongs to).

    A result that belongs to no experiment (e.g. ImageNet) keeps one row with experiment None.
    `compared_with` names the summary metric it is compared with; `citation` its source.
    """
    data = load_yaml(path)
    sources, metrics = data.get("sources") or {}, data.get("metrics") or {}
    rows = []
    for i, result in enumerate(data.get("results") or []):
        where = f"{path}: results[{i}]"
        for key in ("source", "dataset", "width", "depth", "patch_size", "metric", "value"):
            if result.get(key) is None:
                raise CollateError(f"{where}: missing {key!r}")
        if result["source"] not in sources:
            raise CollateError(f"{where}: unknown source {result['source']!r} (known: {', '.join(sources)})")
        if result["metric"] not in metrics:
            raise CollateError(f"{where}: unknown metric {result['metric']!r} (known: {', '.join(metrics)})")
        if (result.get("kernel_size") is None) == (result.get("kernel_sizes") is None):
            raise CollateError(f"{where}: give exactly one of 'kernel_size' and 'kernel_sizes'")
        base = {key: result.get(key) for key in MATCH_KEYS if key != "kernels"}
        base.update({
            "kernel_size": result.get("kernel_size"), "source": result["source"],
            "citation": " ".join(sources[result["source"]]["citation"].split()),
            "kernels": kernels_label(result), "metric": result["metric"],
            "compared_with": metrics[result["metric"]], "value": float(result["value"]),
            "params": result.get("params"), "seconds": result.get("seconds"), "note": result.get("note"),
        })
        for experiment in result.get("experiments") or [None]:
            rows.append({"experiment": experiment, **base})
    return pd.DataFrame(rows)


def compare_with_published(summary: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Published and reproduced accuracy, parameters and time side by side, with differences.

    A published row is matched with the summary rows of its experiment that agree on dataset,
    width, depth, patch size, kernel size(s) and, where the source states them, optimizer,
    activation and epochs. Each match gives one row; a published number without a match keeps
    one row with the reproduced side empty, so a reader sees what is missing.
    """
    rows = []
    for pub in published.to_dict("records"):
        mask = summary["experiment"] == pub["experiment"]
        for key in MATCH_KEYS:
            if not _missing(pub[key]):
                mask &= summary[key] == pub[key]
        matches = summary[mask].to_dict("records") or [None]
        rows.extend(_comparison_row(pub, ours) for ours in matches)
    table = pd.DataFrame(rows, columns=_COMPARISON_COLUMNS)
    whole = ["patch_size", "epochs", "epochs_reproduced", "n", "params_published", "params_reproduced",
             "params_diff"]
    return table.astype({name: "Int64" for name in whole})


_COMPARISON_COLUMNS = [
    "experiment", "source", "dataset", "model", "patch_size", "kernels", "optimizer", "epochs",
    "epochs_reproduced", "metric", "accuracy_published", "accuracy_reproduced", "accuracy_std", "n",
    "accuracy_diff", "params_published", "params_reproduced", "params_diff", "seconds_published",
    "seconds_reproduced", "seconds_diff", "note", "run_dirs",
]


def _comparison_row(pub: dict, ours: dict | None) -> dict:
    ours = ours or {}
    field = pub["compared_with"]
    reproduced = {"accuracy": ours.get(f"{field}_mean", math.nan), "params": ours.get("params", math.nan),
                  "seconds": ours.get("train_seconds_mean", math.nan)}
    published = {"accuracy": pub["value"], "params": pub["params"], "seconds": pub["seconds"]}
    row = {key: pub[key] for key in ("experiment", "source", "dataset", "patch_size", "kernels",
                                     "optimizer", "epochs", "metric", "note")}
    row.update({"model": f"ConvMixer-{pub['width']}/{pub['depth']}",
                "epochs_reproduced": ours.get("epochs", math.nan),
                "accuracy_std": ours.get(f"{field}_std", math.nan), "n": ours.get("n", 0),
                "run_dirs": ours.get("run_dirs", "")})
    for name in ("accuracy", "params", "seconds"):
        mine, theirs = _number(reproduced[name]), _number(published[name])
        row.update({f"{name}_published": theirs, f"{name}_reproduced": mine, f"{name}_diff": mine - theirs})
    row.update({key: _whole(row[key]) for key in ("epochs", "epochs_reproduced", "params_published",
                                                   "params_reproduced", "params_diff")})
    return row


def _whole(value):
    """An integer count, or pd.NA when unknown."""
    return pd.NA if _missing(value) else int(round(float(value)))


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _number(value) -> float:
    return math.nan if _missing(value) else float(value)


# ---- claims -------------------------------------------------------------------------------
# Each claim is a list of comparisons (a, b, metric, expectation) inside one experiment.
# a and b select a summary row: a value label ('adamw', '7'), 'smallest' or 'largest' value,
# 'multi' (best multi-kernel row), 'best_single' (best single-kernel row) or 'best_other'
# (best row other than a). Expectation 'higher': a's mean exceeds b's; 'not_higher': a's mean
# does not clearly exceed b's.
CLAIMS = [
    ("trockman2022", "Larger kernels improve accuracy", "kernel_sweep",
     [("largest", "smallest", "test_accuracy", "higher")]),
    ("trockman2022", "Smaller patches improve accuracy at a higher cost", "patch_sweep",
     [("smallest", "largest", "test_accuracy", "higher"),
      ("smallest", "largest", "train_seconds", "higher")]),
    ("columbia_e4040", "AdamW improves validation accuracy over Adam", "adamw",
     [("adamw", "adam", "test_accuracy", "higher")]),
    ("columbia_e4040", "AdamW reduces overfitting (smaller train-test accuracy gap than Adam)", "adamw",
     [("adam", "adamw", "gap", "higher")]),
    ("columbia_e4040", "The dynamic (multi-kernel) depthwise layer beats the best single kernel",
     "dynamic_kernel", [("multi", "best_single", "test_accuracy", "higher")]),
    ("columbia_e4040", "k=10 is the best kernel size among {2, 6, 10, 14}", "kernel_sweep",
     [("10", "best_other", "test_accuracy", "higher")]),
    ("columbia_e4040", "p=7 is the best accuracy/cost trade-off: more accurate than p=11, "
     "p=4 not clearly better and slower", "patch_sweep",
     [("7", "11", "test_accuracy", "higher"), ("4", "7", "test_accuracy", "not_higher"),
      ("4", "7", "train_seconds", "higher")]),
    ("rescience_draft", "Increasing kernel size improves accuracy", "kernel_sweep",
     [("largest", "smallest", "test_accuracy", "higher")]),
    ("rescience_draft", "Increasing patch size decreases accuracy", "patch_sweep",
     [("smallest", "largest", "test_accuracy", "higher")]),
]
SINGLE_SEED_MARGIN = 1.0  # percentage points; for train_seconds: 10% of the larger mean
CLAIM_RULE = (
    "Each claim compares means over seeds. A difference counts when it exceeds a margin: two "
    "standard errors of the difference (sqrt(s_a^2/n_a + s_b^2/n_b)) when both sides have at least "
    "two seeds, otherwise 1 percentage point of accuracy or 10% of training time. A comparison is "
    "supported when the difference exceeds the margin in the claimed direction, not supported when "
    "it exceeds it in the other direction, inconclusive otherwise or when runs are missing. A claim "
    "is not supported if any comparison is not, supported if all are, otherwise inconclusive."
)


def claims(summary: pd.DataFrame) -> pd.DataFrame:
    """Verdicts on the studies' claims, one row per claim and (profile, dataset) with runs."""
    done = summary[summary["n"] > 0]
    rows = []
    for source, claim, experiment, comparisons in CLAIMS:
        rows_of = done[done["experiment"] == experiment]
        contexts = rows_of.groupby(["profile", "dataset"], dropna=False, sort=False)
        if rows_of.empty:
            rows.append({"source": source, "claim": claim, "experiment": experiment, "profile": None,
                         "dataset": None, "evidence": f"no complete runs of {experiment}",
                         "verdict": INCONCLUSIVE})
        for (profile, dataset), group in contexts:
            verdicts, evidence = zip(*(_compare(group, *comparison) for comparison in comparisons))
            rows.append({"source": source, "claim": claim, "experiment": experiment, "profile": profile,
                         "dataset": dataset, "evidence": "; ".join(dict.fromkeys(evidence)),
                         "verdict": combine_verdicts(verdicts)})
    return pd.DataFrame(rows, columns=["source", "claim", "experiment", "profile", "dataset",
                                       "evidence", "verdict"])


def combine_verdicts(verdicts) -> str:
    verdicts = list(verdicts)
    if NOT_SUPPORTED in verdicts:
        return NOT_SUPPORTED
    return SUPPORTED if verdicts and all(v == SUPPORTED for v in verdicts) else INCONCLUSIVE


def compare_means(a: dict, b: dict, metric: str, expect: str = "higher") -> tuple[str, float, float]:
    """Verdict, difference of means (a - b) and margin for one comparison of summary rows."""
    diff = a[f"{metric}_mean"] - b[f"{metric}_mean"]
    if a["n"] >= 2 and b["n"] >= 2:
        margin = 2 * math.sqrt(a[f"{metric}_std"] ** 2 / a["n"] + b[f"{metric}_std"] ** 2 / b["n"])
    elif metric == "train_seconds":
        margin = 0.1 * max(a[f"{metric}_mean"], b[f"{metric}_mean"])
    else:
        margin = SINGLE_SEED_MARGIN
    if expect == "not_higher":
        verdict = NOT_SUPPORTED if diff > margin else SUPPORTED
    else:
        verdict = SUPPORTED if diff > margin else NOT_SUPPORTED if diff < -margin else INCONCLUSIVE
    return verdict, diff, margin


def _compare(group: pd.DataFrame, a_name: str, b_name: str, metric: str, expect: str) -> tuple[str, str]:
    rows = group.to_dict("records")
    a = _select(rows, a_name)
    b = _select(rows, b_name, exclude=a)
    if a is None or b is None:
        missing = a_name if a is None else b_name
        return INCONCLUSIVE, f"no runs for {missing!r} among {_values(rows)}"
    verdict, diff, margin = compare_means(a, b, metric, expect)
    relation = "not clearly above" if expect == "not_higher" else "above"
    return verdict, (f"{metric} {_describe(a, metric)} vs {_describe(b, metric)}: difference {diff:+.2f} "
                     f"(margin {margin:.2f}; claim: first {relation} second) -> {verdict}")


def _select(rows: list[dict], name: str, exclude: dict | None = None) -> dict | None:
    if name in ("smallest", "largest"):
        numeric = [r for r in rows
                   if isinstance(r["value"], (int, float)) and not isinstance(r["value"], bool)]
        if len({r["value"] for r in numeric}) < 2:
            return None
        pick = min if name == "smallest" else max
        return pick(numeric, key=lambda r: r["value"])
    if name in ("multi", "best_single", "best_other"):
        multi = {"multi": True, "best_single": False}.get(name)
        pool = [r for r in rows
                if r is not exclude and (multi is None or ("-" in str(r["kernels"])) == multi)]
        return max(pool, key=lambda r: r["test_accuracy_mean"], default=None)
    return next((r for r in rows if r["value_label"] == name), None)


def _describe(row: dict, metric: str) -> str:
    spread = "" if pd.isna(row[f"{metric}_std"]) else f" ± {row[f'{metric}_std']:.2f}"
    mean = row[f"{metric}_mean"]
    return f"{row['vary'] or 'value'}={row['value_label']}: {mean:.2f}{spread} (n={row['n']})"


def _values(rows: list[dict]) -> str:
    return "{" + ", ".join(sorted({r["value_label"] for r in rows}, key=str)) + "}"


# ---- writing ------------------------------------------------------------------------------
def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Cells as text for reading: integers as they are, other numbers with two decimals
    (three significant digits from 1e7 on), missing values empty."""
    def cell(value):
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) >= 1e7 else f"{value:.2f}"
        return str(value)
    return table.map(cell)


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """Write each table as CSV (raw numbers), Markdown and LaTeX booktabs (formatted)."""
    out_dir = Path(out_dir)
    written = []
    for name, table in tables.items():
        text = format_table(table)
        latex = (text.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
                 .to_latex(hrules=True))
        markdown = text.to_markdown(index=False, disable_numparse=True) + "\n"
        written += [write_atomic(out_dir / f"{name}.csv", table.to_csv(index=False)),
                    write_atomic(out_dir / f"{name}.md", markdown),
                    write_atomic(out_dir / f"{name}.tex", latex)]
    return written

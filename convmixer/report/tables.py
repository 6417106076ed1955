"""The report's tables: built from collated DataFrames for reading, and written as CSV
(numbers rounded as shown), Markdown and LaTeX."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from .. import paths, records
from ..records import write_atomic
from .labels import model_name
from .published import findings, source_labels

# The columns a reader reads first, per table: a page shows these and folds the rest (every
# column stays in the CSV, Markdown and LaTeX files), so that each table fits a 1280-px page.
READ_FIRST = {
    "comparison": [
        "source",
        "setting",
        "metric",
        "epochs",
        "our epochs",
        "published acc (%)",
        "reproduced acc (%)",
        "n",
        "difference",
        "95% interval (bound)",
        "our test images",
        "verdict",
    ],
    "summary": ["varied", "setting", "n", "test acc (%)", "std", "train-test gap", "train time (s)"],
    "claims": ["claim", "scale", "effect (points)", "95% interval", "p (Holm)", "verdict"],
    "methods": ["experiment", "images (train / val / test)", "model", "epochs", "optimizer", "augmentation", "seeds"],
}


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


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """`format_table` without the columns that are empty on every row (what a reader sees)."""
    text = format_table(table)
    return text.loc[:, (text != "").any(axis=0)] if len(text) else text


def rounded(table: pd.DataFrame) -> pd.DataFrame:
    """Numbers rounded as `format_table` shows them: two decimals, three significant digits from 1e7."""

    def cell(value):
        if isinstance(value, float) and math.isfinite(value):
            return float(f"{value:.3g}") if abs(value) >= 1e7 else round(value, 2)
        return value

    return table.map(cell)


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """Write each table as CSV (every column, numbers rounded as shown), Markdown and LaTeX
    booktabs (formatted, without the columns that are empty on every row)."""
    out_dir = Path(out_dir)
    written = []
    for name, table in tables.items():
        text = readable(table)
        latex = (
            text.style.hide(axis="index")
            .format(escape="latex")
            .format_index(escape="latex", axis=1)
            .to_latex(hrules=True)
        )
        markdown = text.to_markdown(index=False, disable_numparse=True) + "\n"
        written += [
            write_atomic(out_dir / f"{name}.csv", rounded(table).to_csv(index=False)),
            write_atomic(out_dir / f"{name}.md", markdown),
            write_atomic(out_dir / f"{name}.tex", latex),
        ]
    return written


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per setting: mean and std over seeds (accuracies in percent)."""
    table = summary.assign(
        value=[f"{v}={label}" if label else "" for v, label in zip(summary["vary"], summary["value_label"])],
        setting=[setting_text(r) for r in summary.to_dict("records")],
    )
    columns = {
        "experiment": "experiment",
        "value": "varied",
        "setting": "setting",
        "n": "n",
        "n_failed": "failed",
        "n_reused": "reused",
    }
    for name, meta in records.summary_metrics().items():  # the metrics the schema labels, in its order
        if meta["label"]:
            columns[f"{name}_mean" if meta["summary"] == "mean_std" else name] = meta["label"]
        if name == records.HEADLINE_METRIC:
            columns[f"{name}_std"] = "std"
        if name == "final_train_accuracy":
            columns["gap_mean"] = "train-test gap"
    columns["trial_ids"] = "trial ids"
    return table[list(columns)].rename(columns=columns)


def comparison_table(comparison: pd.DataFrame, experiment: str | None = None) -> pd.DataFrame:
    """Published | reproduced pairs for accuracy, parameters and time (for one experiment if given)."""
    rows = comparison if experiment is None else comparison[comparison["experiment"] == experiment]
    labels = source_labels()
    table = rows.assign(
        source=rows["source"].map(lambda s: labels.get(s, s)),
        setting=[setting_text(r) for r in rows.to_dict("records")],
        metric=rows["metric"].str.replace("_", " "),
        interval=[interval_text(r) for r in rows.to_dict("records")],
        verdict=[verdict_text(r) for r in rows.to_dict("records")],
    )
    columns = {
        "experiment": "experiment",
        "source": "source",
        "setting": "setting",
        "metric": "metric",
        "epochs": "epochs",
        "epochs_reproduced": "our epochs",
        "accuracy_published": "published acc (%)",
        "accuracy_reproduced": "reproduced acc (%)",
        "accuracy_std": "std",
        "n": "n",
        "accuracy_diff": "difference",
        "interval": "95% interval (bound)",
        "test_images": "our test images",
        "test_images_published": "their test images",
        "scored": "our test split",
        "verdict": "verdict",
        "test": "how the interval was set",
        "params_published": "published params",
        "params_reproduced": "reproduced params",
        "seconds_published": "published time (s)",
        "seconds_reproduced": "reproduced time (s)",
        "hours_here": "not run: hours here (estimate)",
        "cost_basis": "basis of the estimate",
        "note": "note",
    }
    if experiment is not None:
        del columns["experiment"]
    return table[list(columns)].rename(columns=columns)


def interval_text(row: dict) -> str:
    """'[-0.80, +1.60] (+-2)': the difference's 95% interval and the source's equivalence bound."""
    if pd.isna(row.get("diff_low")):
        return ""
    return f"[{row['diff_low']:+.2f}, {row['diff_high']:+.2f}] (±{row['bound']:g})"


def verdict_text(row: dict) -> str:
    """The verdict, flagged where a run it rests on resumed with code that replayed epoch 1's draws."""
    flagged = row.get("inexact_resumes") or 0
    if pd.isna(flagged) or not flagged:
        return row["verdict"]
    return f"{row['verdict']} (rests on {int(flagged)} resume(s) before exact resume)"


def setting_text(row: dict) -> str:
    """'cifar10, ConvMixer-256/8, p=2, k=5, adamw' (the optimizer where known)."""
    model = row.get("model") or model_name(row["width"], row["depth"])
    optimizer = "" if pd.isna(row.get("optimizer")) else f", {row['optimizer']}"
    return f"{row['dataset']}, {model}, p={row['patch_size']}, k={row['kernels']}{optimizer}"


def claims_table(claims: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Each claim with what its sources published for its experiment and what these runs found."""
    labels = source_labels()
    table = claims.assign(
        sources=claims["sources"].map(lambda keys: ", ".join(labels.get(k, k) for k in keys)),
        published=[
            findings(keys, experiment, published) for keys, experiment in zip(claims["sources"], claims["experiment"])
        ],
    )
    table = table.assign(
        interval=[_claim_interval(r) for r in table.to_dict("records")],
        verdict=[verdict_text(r) for r in table.to_dict("records")],
    )
    columns = {
        "claim": "claim",
        "definition": "definition",
        "sources": "sources",
        "published": "the sources found",
        "profile": "profile",
        "dataset": "dataset",
        "scale": "scale",
        "effect": "effect (points)",
        "interval": "95% interval",
        "test": "test",
        "p": "p",
        "p_holm": "p (Holm)",
        "detectable": "detectable effect (80% power)",
        "verdict": "verdict",
        "evidence": "these runs found",
    }
    return table[list(columns)].rename(columns=columns)


def _claim_interval(row: dict) -> str:
    return "" if pd.isna(row.get("low")) else f"[{row['low']:+.2f}, {row['high']:+.2f}]"


def provenance_table(runs: pd.DataFrame, report_dir=None) -> pd.DataFrame:
    """Where every number comes from: one row per run, its folder relative to `report_dir` (the
    report's own folder; default: the project's)."""
    table = runs.assign(
        test_accuracy=100 * runs["test_accuracy"].astype(float),
        run_dir=[_relative(d, s) for d, s in zip(runs["run_dir"], runs["source"])],
        source=[_folder(s, report_dir) for s in runs["source"]],
    )
    columns = {
        "experiment": "experiment",
        "run_name": "run",
        "status": "status",
        "test_accuracy": "test acc (%)",
        "error": "error",
        "run_dir": "run directory",
        "source": "folder",
        "trial_id": "trial id",
        "reused_from": "reused from",
        "git_commit": "git commit",
        "backend": "backend",
        "device": "device",
        "packages": "packages",
        "duplicates": "also found in",
    }
    return table[list(columns)].rename(columns=columns)


def unfinished_table(unfinished: pd.DataFrame, report_dir=None) -> pd.DataFrame:
    """collate.unfinished_runs with its folders written as provenance_table writes them."""
    table = unfinished.assign(
        run_dir=[_relative(d, s) for d, s in zip(unfinished["run_dir"], unfinished["source"])],
        source=[_folder(s, report_dir) for s in unfinished["source"]],
    )
    columns = {
        "experiment": "experiment",
        "run_name": "run",
        "epochs_done": "epochs finished",
        "epochs": "epochs planned",
        "run_dir": "run directory",
        "source": "folder",
    }
    return table[list(columns)].rename(columns=columns)


def requirements_table(requirements: pd.DataFrame) -> pd.DataFrame:
    """collate.compute_requirements with its hours written for reading (minutes when short)."""
    hours = ["train_hours", "cpu_hours", "accelerator_hours", "notebook_hours"]
    names = {
        "train_hours": "training",
        "cpu_hours": "on CPUs",
        "accelerator_hours": "on GPUs/TPUs",
        "notebook_hours": "notebook wall time",
    }
    readable = {name: requirements[name].map(lambda h: "" if pd.isna(h) else hours_text(h)) for name in hours}
    return requirements.assign(**readable).rename(columns=names)


def notebooks_table(notebooks: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Each executed notebook's last execution: its wall time, and the training done during it.

    A rerun that only skipped finished trials has a short wall time and finished no run; a run
    resumed in it counts whole (its training time includes earlier executions).
    """
    trained = runs[runs["reused_from"].isna() & runs["train_seconds"].notna()]
    finished = pd.to_datetime(trained["finished"], utc=True, errors="coerce")

    def trained_minutes(row) -> float:
        start, end = pd.to_datetime(row["start_time"], utc=True), pd.to_datetime(row["end_time"], utc=True)
        during = (trained["experiment"] == row["experiment"]) & (finished >= start) & (finished <= end)
        return trained.loc[during, "train_seconds"].astype(float).sum() / 60

    table = notebooks.assign(
        minutes=notebooks["duration"].astype(float) / 60,
        trained=[trained_minutes(row) for row in notebooks.to_dict("records")],
        notebook=[_relative(n, paths.PROJECT_ROOT) for n in notebooks["notebook"]],
    )
    columns = {
        "experiment": "experiment",
        "start_time": "last execution started",
        "minutes": "wall time (min)",
        "trained": "training of the runs it finished (min)",
        "exception": "exception",
        "notebook": "notebook",
    }
    return table[list(columns)].rename(columns=columns)


def hours_text(hours: float) -> str:
    return f"{hours:.2f} h" if hours >= 0.1 else f"{hours * 60:.1f} min"


def _folder(folder: str, report_dir=None) -> str:
    """A runs folder as a path relative to `report_dir` (default: the project), wherever it lies."""
    return Path(os.path.relpath(Path(folder).resolve(), Path(report_dir or paths.PROJECT_ROOT).resolve())).as_posix()


def _relative(run_dir: str, source: str) -> str:
    try:
        return str(Path(run_dir).relative_to(source))
    except ValueError:
        return run_dir

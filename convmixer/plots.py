"""Figures of a study, drawn from collate's DataFrames.

Every function takes DataFrames and returns a `Figure`: a matplotlib Figure built without
pyplot (no global state, no display backend needed) that Jupyter shows as a PNG when it is
a cell's value or passed to `display()`. `save_figure` writes it as PNG and SVG.
Accuracies are in percent.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib import figure as mpl_figure
from matplotlib.ticker import MaxNLocator

from .published import source_labels
from .records import write_atomic

AXIS_LABELS = {"patch_size": "patch size p", "kernel_size": "kernel size k", "kernel_sizes": "kernel sizes"}
SHORT_NAMES = {"patch_size": "p", "kernel_size": "k", "kernel_sizes": "k"}
PUBLISHED_MARKERS = "sDv^P*X"
DPI = 110


class Figure(mpl_figure.Figure):
    """A matplotlib Figure that Jupyter displays as a PNG image."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=DPI)
        return buffer.getvalue()


def save_figure(figure: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write `figure` as <out_dir>/<name>.png and .svg (each atomically); return both paths."""
    paths = []
    for fmt in ("png", "svg"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=fmt, dpi=DPI)
        paths.append(write_atomic(Path(out_dir) / f"{name}.{fmt}", buffer.getvalue()))
    return paths


def _no_data(figure: Figure, message: str) -> Figure:
    axes = figure.subplots()
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)
    axes.set_axis_off()
    return figure


def learning_curves(histories: pd.DataFrame, title: str = "") -> Figure:
    """Train (solid) and validation (dashed) accuracy and loss per epoch, one colour per run.

    Runs of the same name from different settings (e.g. two profiles) are told apart by trial id.
    """
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    if histories.empty:
        return _no_data(figure, "no training histories")
    accuracy_axes, loss_axes = figure.subplots(1, 2)
    colours = iter(_colours(histories["run_dir"].nunique()))
    shared_names = histories.groupby("run_name")["run_dir"].nunique().gt(1)
    for _, run in histories.groupby("run_dir", sort=False):
        colour = next(colours)
        first = run.iloc[0]
        label = first["run_name"] + (f" ({first['trial_id']})" if shared_names[first["run_name"]] else "")
        label += " (failed)" if first["status"] == "failed" else ""
        for axes, metric, scale in ((accuracy_axes, "accuracy", 100), (loss_axes, "loss", 1)):
            axes.plot(run["epoch"], scale * run[metric], color=colour, label=label)
            axes.plot(run["epoch"], scale * run[f"val_{metric}"], color=colour, linestyle="--")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy (solid: train, dashed: validation)")
    for axes in (accuracy_axes, loss_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss (solid: train, dashed: validation)")
    accuracy_axes.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    return figure


def sweep(summary: pd.DataFrame, experiment: str, x: str, published: pd.DataFrame | None = None) -> Figure:
    """Test accuracy and training time against the setting `x` that `experiment` varies.

    Our runs (the experiment's summary rows): mean ± std over seeds, one line per (profile,
    dataset, epochs). Published points (published.load_published rows of the experiment)
    are drawn with hollow markers and dotted lines, labelled with source, dataset and epochs:
    they come from other datasets, training lengths and hardware, so compare trends, not levels.
    """
    figure = Figure(figsize=(11, 5.2), layout="constrained")
    ours = summary[(summary["experiment"] == experiment) & (summary["n"] > 0)]
    theirs = (
        published[published["experiment"] == experiment]
        if published is not None
        else pd.DataFrame(columns=["source", "dataset", "epochs", "metric", x, "value", "seconds"])
    )
    if ours.empty and theirs.empty:
        return _no_data(figure, f"no runs varying {x}")
    accuracy_axes, time_axes = figure.subplots(1, 2)
    ours_groups = list(ours.groupby(["profile", "dataset", "epochs"], sort=False, dropna=False))
    theirs_groups = list(theirs.groupby(["source", "dataset", "epochs", "metric"], sort=False, dropna=False))
    colours = iter(_colours(len(ours_groups) + len(theirs_groups)))
    for (profile, dataset, epochs), group in ours_groups:
        group = group.sort_values("value", key=lambda v: v.astype(float))
        style = {
            "marker": "o",
            "capsize": 3,
            "color": next(colours),
            "label": f"this suite: {profile}, {dataset}, {epochs} epochs",
        }
        for axes, metric in ((accuracy_axes, "test_accuracy"), (time_axes, "train_seconds")):
            axes.errorbar(
                group["value"].astype(float), group[f"{metric}_mean"], yerr=group[f"{metric}_std"].fillna(0), **style
            )
    labels = source_labels()
    for ((source, dataset, epochs, metric), group), marker in zip(theirs_groups, PUBLISHED_MARKERS * 4):
        group = group.sort_values(x)
        epochs = "?" if pd.isna(epochs) else int(epochs)
        style = {
            "marker": marker,
            "linestyle": ":",
            "markerfacecolor": "none",
            "color": next(colours),
            "label": f"{labels.get(source, source)} (published): {dataset}, {epochs} epochs, "
            f"{metric.replace('_', ' ')}",
        }
        accuracy_axes.plot(group[x], group["value"], **style)
        timed = group.dropna(subset=["seconds"])
        time_axes.plot(timed[x], timed["seconds"], **style)
    axis = AXIS_LABELS.get(x, x)
    accuracy_axes.set(xlabel=axis, ylabel="accuracy (%)", title=f"accuracy against {axis}")
    time_axes.set(
        xlabel=axis,
        ylabel="training time (s, log scale)",
        yscale="log",
        title=f"training time against {axis} (published: their hardware)",
    )
    figure.legend(*accuracy_axes.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="small")
    return figure


def mixing_weights(runs: pd.DataFrame) -> Figure:
    """Learned softmax mixing weights per block against kernel size, averaged over seeds."""
    figure = Figure(figsize=(11, 3.8), layout="constrained")
    mixed = runs[runs["mixing_weights"].map(lambda w: isinstance(w, dict) and bool(w))]
    if mixed.empty:
        return _no_data(figure, "no multi-kernel runs with mixing weights")
    groups = list(mixed.groupby(["experiment", "value_label"], sort=False))
    axes_list = figure.subplots(1, len(groups), squeeze=False)[0]
    for axes, ((experiment, label), group) in zip(axes_list, groups):
        kernel_sizes = list(group["kernel_sizes"].iloc[0])
        blocks = list(group["mixing_weights"].iloc[0])
        weights = np.mean([[run[block] for block in blocks] for run in group["mixing_weights"]], axis=0)
        width = 0.8 / len(blocks)
        positions = np.arange(len(kernel_sizes))
        for i, (block, colour) in enumerate(zip(blocks, _colours(len(blocks)))):
            axes.bar(
                positions + (i - (len(blocks) - 1) / 2) * width,
                weights[i],
                width,
                color=colour,
                label=block.replace("_depthwise", ""),
            )
        axes.axhline(1 / len(kernel_sizes), color="grey", linestyle=":", linewidth=1)
        axes.set_xticks(positions, [str(k) for k in kernel_sizes])
        axes.set(
            xlabel="kernel size",
            ylabel="softmax weight",
            title=f"{experiment} {label} (mean of {len(group)} run{'s' * (len(group) > 1)})",
        )
        axes.legend(fontsize="x-small", ncols=2)
    figure.suptitle("learned mixing weights per block (dotted: uniform)")
    return figure


def accuracy_vs_compute(summary: pd.DataFrame, x: str = "train_seconds_mean") -> Figure:
    """Test accuracy against training cost: `x` is 'train_seconds_mean' or 'compute' (params x images)."""
    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    done = summary[(summary["n"] > 0) & summary[x].notna()]
    if done.empty:
        return _no_data(figure, "no complete runs with a training cost")
    axes = figure.subplots()
    for (experiment, group), colour in zip(
        done.groupby("experiment", sort=False), _colours(done["experiment"].nunique())
    ):
        axes.errorbar(
            group[x],
            group["test_accuracy_mean"],
            yerr=group["test_accuracy_std"].fillna(0),
            marker="o",
            linestyle="none",
            capsize=3,
            color=colour,
            label=experiment,
        )
        for row in group.itertuples():
            if row.value_label:
                text = f"{SHORT_NAMES.get(row.vary, row.vary)}={row.value_label}"
                axes.annotate(
                    text,
                    (getattr(row, x), row.test_accuracy_mean),
                    fontsize="x-small",
                    xytext=(4, 4),
                    textcoords="offset points",
                )
    xlabel = {"train_seconds_mean": "training time (s)", "compute": "parameters x training images seen"}
    axes.set(
        xscale="log",
        xlabel=f"{xlabel.get(x, x)} (log scale)",
        ylabel="test accuracy (%)",
        title="accuracy against training cost (mean ± std over seeds)",
    )
    axes.legend(fontsize="small")
    return figure


def _colours(count: int) -> list:
    palette = colormaps["tab10" if count <= 10 else "viridis"]
    return [palette(i if count <= 10 else i / max(count - 1, 1)) for i in range(count)]

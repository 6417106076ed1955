"""Figures of a study, drawn from collate's DataFrames.

Every function takes DataFrames and returns a `Figure`: a matplotlib Figure built without
pyplot (no global state, no display backend needed) that carries a title of its own, a caption
(what is plotted, on how much data, how to read it) and alternative text. Jupyter shows it as
an HTML <figure> (`figure_html`); `save_figure` writes it as PNG and SVG, with its caption and
alternative text in a JSON file beside them that `saved_figure_html` reads back.
Accuracies are in percent, accuracies on different datasets never share an axis, and an accuracy
axis spans ACCURACY_SPAN points at least. Each source of published numbers, this suite's runs and
each experiment have one colour in every figure of every report. Error bars are ± std over seeds
where a point has two or more; a point of one seed is a hollow marker without one.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
import re
import zlib
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import colormaps, rcParams
from matplotlib import figure as mpl_figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

from .. import catalog
from ..records import write_atomic
from ..study.experiments import experiment_names
from .claims import one_row_per_setting
from .labels import AXIS_LABELS, SHORT_NAMES
from .published import source_labels

# Training costs `accuracy_vs_compute` can plot: summary column -> (name, axis label, what it measures).
COSTS = {
    "train_flops_mean": (
        "training FLOPs",
        "training FLOPs (analytic, log scale)",
        "analytic training FLOPs (FLOPs per image x training images x epochs)",
    ),
    "train_seconds_mean": (
        "measured training wall time",
        "measured training wall time (s, log scale)",
        "wall time of training as measured on each run's machine",
    ),
}
PUBLISHED_MARKERS = "sDv^P*X"
MARKERS = "osD^v<>P*X"
LABEL_OFFSETS = ((5, 3), (5, -11), (-5, 3), (-5, -11))  # a point label's first tries, in points from the marker
LABEL_TRIES = 40  # offsets tried per label: 10 rows of LABEL_OFFSETS, up to 108 points away
DPI = 110
# The colour of each source of published numbers (the keys of published.yaml's `sources`) and of
# this suite's runs ("ours"), the same in every figure of every report: chosen here and nowhere
# else. A source not listed gets a colour derived from its key alone (`source_colour`).
OURS = "ours"
SOURCE_COLOURS = {
    OURS: "#000000",
    "trockman2022": "#ff7f0e",
    "convmixer_readme": "#8c564b",
    "convmixer_cifar10": "#e377c2",
    "keras_example": "#2ca02c",
    "rescience_draft": "#1f77b4",
    "columbia_e4040": "#d62728",
}
EXPERIMENT_PALETTE = "Dark2"  # experiments' colours, in the registry's (report) order
# The least span of an accuracy axis, in points: autoscaling would zoom onto e.g. 80-82 %, where a
# one-point difference between single seeds fills the axis.
ACCURACY_SPAN = 10.0


class Figure(mpl_figure.Figure):
    """A matplotlib Figure with a caption and alternative text, shown in Jupyter as a captioned image."""

    caption = ""
    alt = ""

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=DPI)
        return buffer.getvalue()

    def _repr_html_(self) -> str:
        return figure_html(self.png(), self.alt, self.caption)


def figure_html(png: bytes, alt: str, caption: str, number: int | None = None) -> str:
    """An HTML <figure>: the PNG inline with its alternative text, then "Figure <number>. <caption>"."""
    prefix = f"<b>Figure {number}.</b> " if number else ""
    return (
        f'<figure style="margin: 0.5em 0 1.5em 0"><img src="data:image/png;base64,{base64.b64encode(png).decode()}" '
        f'alt="{html.escape(alt)}" style="max-width: 100%"><figcaption>{prefix}{html.escape(caption)}</figcaption>'
        "</figure>"
    )


def save_figure(figure: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write `figure` as <out_dir>/<name>.png and .svg, its title, caption and alternative text as
    <name>.json (each atomically); return the three paths, the PNG first."""
    paths = []
    # Byte-identical files from the same records: no date in either file, fixed SVG element ids.
    with matplotlib.rc_context({"svg.hashsalt": name}):
        for fmt in ("png", "svg"):
            buffer = io.BytesIO()
            figure.savefig(buffer, format=fmt, dpi=DPI, metadata={"Date": None} if fmt == "svg" else None)
            paths.append(write_atomic(Path(out_dir) / f"{name}.{fmt}", buffer.getvalue()))
    text = {"title": figure.get_suptitle(), "caption": figure.caption, "alt": figure.alt}
    paths.append(write_atomic(Path(out_dir) / f"{name}.json", json.dumps(text, indent=1, ensure_ascii=False)))
    return paths


def saved_figure_html(png_path: str | Path, number: int | None = None) -> str:
    """`figure_html` of a figure written by `save_figure`, from its PNG and JSON files."""
    png_path = Path(png_path)
    text = json.loads(png_path.with_suffix(".json").read_text())
    return figure_html(png_path.read_bytes(), text["alt"], text["caption"], number)


def _describe(figure: Figure, title: str, caption: str, kind: str) -> Figure:
    """Give `figure` its title and caption, and alternative text naming its panels and series."""
    figure.suptitle(title)
    figure.caption = caption
    panels = [f"{axes.get_title()}: {axes.get_ylabel()} against {axes.get_xlabel()}" for axes in figure.axes]
    series = dict.fromkeys(label for axes in figure.axes for label in axes.get_legend_handles_labels()[1])
    figure.alt = f"{kind} titled '{title}'. Panels: {'; '.join(panels)}." + (
        f" Series: {', '.join(series)}." if series else ""
    )
    return figure


def _no_data(figure: Figure, title: str, caption: str, message: str) -> Figure:
    """`figure` saying `message` instead of a chart, with `caption` (what it would show) saying so too."""
    axes = figure.subplots()
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)
    axes.set_axis_off()
    figure.suptitle(title)
    figure.caption = f"{caption} Not drawn: {message}."
    figure.alt = f"Empty chart titled '{title}', saying: {message}."
    return figure


def learning_curves(histories: pd.DataFrame, title: str = "") -> Figure:
    """Train (solid) and validation (dashed) accuracy and loss per epoch: one colour per setting
    (Adam and AdamW, each patch size...), one marker per seed.

    Runs of the same name from different settings (e.g. two profiles) are told apart by trial id.
    `dataset`, `train_images` and `test_images` columns, where present (report.figures adds them),
    give the data size in the caption.
    """
    runs_of = f"runs of {title}" if title else "runs"
    title = f"Learning curves: {title}" if title else "Learning curves"
    what = "Train and validation accuracy and loss after each epoch."
    figure = Figure(figsize=(11, 4.4), layout="constrained")
    if histories.empty:
        return _no_data(figure, title, what, "no training histories")
    accuracy_axes, loss_axes = figure.subplots(1, 2)
    histories = histories.fillna({"value_label": ""})
    settings = sorted(histories["value_label"].unique(), key=_natural_order)
    colours = dict(zip(settings, _colours(len(settings))))
    markers = dict(zip(sorted(histories["seed"].unique()), itertools.cycle(MARKERS)))
    shared_names = histories.groupby("run_name")["run_dir"].nunique().gt(1)
    for _, run in histories.groupby("run_dir", sort=False):
        first = run.iloc[0]
        label = first["run_name"] + (f" ({first['trial_id']})" if shared_names[first["run_name"]] else "")
        label += " (failed)" if first["status"] == "failed" else ""
        style = {
            "color": colours[first["value_label"]],
            "marker": markers[first["seed"]],
            "markersize": 4,
            "markevery": max(1, len(run) // 10),
        }
        for axes, metric, scale in ((accuracy_axes, "accuracy", 100), (loss_axes, "loss", 1)):
            axes.plot(run["epoch"], scale * run[metric], label=label, **style)
            axes.plot(run["epoch"], scale * run[f"val_{metric}"], linestyle="--", **style)
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy (solid: train, dashed: validation)")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss (solid: train, dashed: validation)")
    for axes in (accuracy_axes, loss_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    accuracy_axes.legend(fontsize="small")
    size_changes, resizing = _image_sizes(histories)
    for axes, epoch in itertools.product((accuracy_axes, loss_axes), size_changes):
        axes.axvline(epoch - 0.5, color="grey", linestyle=":", linewidth=1)
    caption = (
        f"Train (solid) and validation (dashed) accuracy (left) and loss (right) after each epoch of "
        f"the {histories['run_dir'].nunique()} {runs_of} ({_data_size(histories) or 'data size not recorded'}). "
        "Colour: the setting; marker: the seed, so runs of one setting differing only in seed share a colour. "
        "A validation curve that flattens while the train curve keeps rising shows overfitting." + resizing
    )
    return _describe(figure, title, caption, "Line charts")


def _image_sizes(histories: pd.DataFrame) -> tuple[list[int], str]:
    """Progressive resizing in the learning curves: the epochs where the training image size
    changes (dotted lines) and a caption sentence saying which epochs trained at which size.
    Histories without an `image_size` column (records before it), or at one size, give nothing."""
    if "image_size" not in histories or histories["image_size"].nunique() < 2:
        return [], ""
    schedules, changes = {}, set()
    for _, run in histories.dropna(subset=["image_size"]).groupby("run_dir", sort=False):
        run = run.sort_values("epoch")
        stage = run["image_size"].ne(run["image_size"].shift()).cumsum()  # consecutive epochs at one size
        stages = run.groupby(stage).agg(first=("epoch", "min"), last=("epoch", "max"), size=("image_size", "first"))
        spans = [f"{_epochs(s.first, s.last)} at {s.size:.0f}x{s.size:.0f}" for s in stages.itertuples()]
        schedules.setdefault(", ".join(spans), []).append(run.iloc[0]["run_name"])
        changes.update(int(epoch) for epoch in stages["first"].iloc[1:])
    which = "; ".join(
        text if len(schedules) == 1 else f"{', '.join(names)}: {text}" for text, names in schedules.items()
    )
    return sorted(changes), (
        f" Progressive resizing (dotted lines: the training image size changes): {which}. Validation is"
        " always at the full size, so its accuracy is low while the training images are small."
    )


def _epochs(first: int, last: int) -> str:
    return f"epoch {first}" if first == last else f"epochs {first}-{last}"


def sweep(summary: pd.DataFrame, experiment: str, x: str, published: pd.DataFrame | None = None) -> Figure:
    """Test accuracy and training time against the setting `x` that `experiment` varies, one row
    of panels per dataset; a dataset with no training time at all has its accuracy panel across
    the row, and without any training time the figure is one column of accuracy panels.

    Our runs (the experiment's summary rows): mean ± std over seeds, one line per (profile,
    epochs, training-set size). Published points (published.load_published rows of the
    experiment) are drawn with hollow markers and dotted lines, labelled with source, epochs and
    metric: they come from other training lengths, training sets and hardware, so compare
    trends, not levels.
    """
    axis = AXIS_LABELS.get(x, x)
    ours = summary[(summary["experiment"] == experiment) & (summary["n"] > 0)]
    theirs = (
        published[published["experiment"] == experiment]
        if published is not None
        else pd.DataFrame(columns=["source", "dataset", "epochs", "metric", x, "value", "seconds"])
    )
    datasets = list(dict.fromkeys([*ours["dataset"], *theirs["dataset"]]))
    timed = [
        dataset
        for dataset in datasets
        if ours.loc[ours["dataset"] == dataset, "train_seconds_mean"].notna().any()
        or theirs.loc[theirs["dataset"] == dataset, "seconds"].notna().any()
    ]
    plotted = "test accuracy and training time" if timed else "test accuracy"
    title = f"{experiment}: {plotted} against {axis}"
    figure = Figure(figsize=(11 if timed else 7.5, 1.6 + 3.8 * max(len(datasets), 1)), layout="constrained")
    if not datasets:
        what = f"Test accuracy and training time against {axis} in {experiment}."
        return _no_data(figure, title, what, f"no runs varying {x}")
    rows = _sweep_panels(figure, datasets, timed)
    ours_groups = ours.groupby(["profile", "dataset", "epochs", "train_images"], sort=False, dropna=False)
    for ((profile, dataset, epochs, train_images), group), marker in zip(ours_groups, itertools.cycle(MARKERS)):
        group = group.sort_values("value", key=lambda v: v.astype(float))
        label = f"this suite: {profile}, {epochs} epochs, {_count(train_images)} training images"
        for axes, metric in zip(rows[dataset], ("test_accuracy", "train_seconds")):
            if axes is not None:
                _seed_points(axes, group["value"], group, metric, SOURCE_COLOURS[OURS], marker, "-", label)
    labels = source_labels()
    theirs_groups = theirs.groupby(["source", "dataset", "epochs", "metric"], sort=False, dropna=False)
    for ((source, dataset, epochs, metric), group), marker in zip(theirs_groups, itertools.cycle(PUBLISHED_MARKERS)):
        group = group.sort_values(x)
        epochs = "?" if pd.isna(epochs) else int(epochs)
        style = {
            "marker": marker,
            "linestyle": ":",
            "markerfacecolor": "none",
            "color": source_colour(source),
            "label": f"{labels.get(source, source)} (published): {epochs} epochs, {metric.replace('_', ' ')}",
        }
        accuracy_axes, time_axes = rows[dataset]
        accuracy_axes.plot(group[x], group["value"], **style)
        timed_points = group.dropna(subset=["seconds"])
        if len(timed_points):
            time_axes.plot(timed_points[x], timed_points["seconds"], **style)
    for dataset, (accuracy_axes, time_axes) in rows.items():
        name = catalog.name(dataset)
        accuracy_axes.set(xlabel=axis, ylabel="accuracy (%)", title=f"{name}: accuracy against {axis}")
        _keep_accuracy_span(accuracy_axes)
        if time_axes is not None:
            time_axes.set(
                xlabel=axis,
                ylabel="training time (s, log scale)",
                yscale="log",
                title=f"{name}: training time (published: their hardware)",
            )
    figure.legend(*_legend_entries(figure), loc="outside lower center", ncols=2, fontsize="small")
    ours_text = (
        f"This suite (black, solid lines): {_spread_text(ours)}; {_data_size(ours)}."
        if len(ours)
        else "No complete run of this suite."
    )
    caption = (
        f"{_sweep_layout(datasets, timed, axis, experiment)} {ours_text} Published points (hollow markers, "
        "dotted lines, one colour per source in every figure) are other authors' numbers, from other training "
        f"lengths, training sets and hardware: compare how accuracy changes with {SHORT_NAMES.get(x, x)}, not the "
        f"levels. Accuracy axes span at least {ACCURACY_SPAN:g} points."
    )
    return _describe(figure, title, caption, "Line charts")


def _seed_points(axes, x, rows: pd.DataFrame, metric: str, colour, marker: str, linestyle: str, label: str) -> None:
    """Summary rows' mean `metric` against `x`, joined by `linestyle` ('none': not joined): error
    bars (± std over seeds) where n >= 2, a hollow marker where n = 1 (one seed has no spread)."""
    x, mean = np.asarray(x, float), rows[f"{metric}_mean"].to_numpy(float)
    several = rows["n"].to_numpy() >= 2
    axes.plot(x, mean, color=colour, marker=marker, linestyle=linestyle, label=label)
    if several.any():
        std = rows[f"{metric}_std"].to_numpy(float)
        axes.errorbar(x[several], mean[several], yerr=std[several], fmt="none", ecolor=colour, capsize=3)
    if not several.all():  # a white marker over the filled one, of its size
        axes.scatter(
            x[~several],
            mean[~several],
            s=rcParams["lines.markersize"] ** 2,
            marker=marker,
            facecolors="white",
            edgecolors=colour,
            linewidths=rcParams["lines.markeredgewidth"],
            zorder=2.5,
        )


def _keep_accuracy_span(axes) -> None:
    """Widen `axes`' accuracy (y) axis to ACCURACY_SPAN points where autoscaling left it narrower,
    centred on the data, and keep it within 0-100 %."""
    low, high = axes.get_ylim()
    half = max(high - low, ACCURACY_SPAN) / 2
    centre = min(max((low + high) / 2, half), 100 - half)  # moved inside 0-100 where the span fits
    axes.set_ylim(max(centre - half, 0), min(centre + half, 100))


def _sweep_panels(figure: Figure, datasets: list[str], timed: list[str]) -> dict:
    """Each dataset's (accuracy panel, training-time panel or None), one row per dataset: a dataset
    with no training time has its accuracy panel across the row instead of an empty time panel."""
    grid = figure.add_gridspec(len(datasets), 2 if timed else 1)
    return {
        dataset: (figure.add_subplot(grid[row, 0]), figure.add_subplot(grid[row, 1]))
        if dataset in timed
        else (figure.add_subplot(grid[row, :]), None)
        for row, dataset in enumerate(datasets)
    }


def _sweep_layout(datasets: list[str], timed: list[str], axis: str, experiment: str) -> str:
    """The caption's first sentence: what the panels plot, and which datasets have no training time."""
    names = ", ".join(catalog.name(d) for d in datasets)
    untimed = ", ".join(catalog.name(d) for d in datasets if d not in timed)
    if not timed:
        return (
            f"Test accuracy against {axis} in the {experiment} experiment, one panel per dataset ({names}); "
            "training time is not drawn: none is published and this suite has no timed run."
        )
    layout = (
        f"Test accuracy (left) and training time (right, log scale) against {axis} in the {experiment} "
        f"experiment, one row per dataset ({names})."
    )
    if untimed:
        layout += f" {untimed}: accuracy only, across the row (no training time published, no timed run)."
    return layout


def mixing_weights(runs: pd.DataFrame) -> Figure:
    """Learned softmax mixing weights per block against kernel size, averaged over seeds; the blocks'
    legend is right of the panels, where it covers no bar."""
    figure = Figure(figsize=(12, 4.2), layout="constrained")
    mixed = runs[runs["mixing_weights"].map(lambda w: isinstance(w, dict) and bool(w))]
    title = f"Learned mixing weights per block: {', '.join(dict.fromkeys(mixed['experiment'])) or 'none'}"
    what = "Learned softmax weight of each kernel size in each block's multi-kernel depthwise convolution."
    if mixed.empty:
        return _no_data(figure, title, what, "no multi-kernel runs with mixing weights")
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
    handles, labels = _legend_entries(figure)
    figure.legend(handles, labels, loc="outside right upper", fontsize="x-small", ncols=math.ceil(len(labels) / 16))
    caption = (
        f"{what[:-1]}, one bar per block, averaged over the runs of each setting "
        f"({_data_size(mixed) or 'data size not recorded'}). The dotted line is the uniform weight 1/K "
        "(K kernel sizes): a bar above it is a kernel size that block favours."
    )
    return _describe(figure, title, caption, "Bar charts")


def accuracy_vs_compute(summary: pd.DataFrame, x: str = "train_flops_mean") -> Figure:
    """Test accuracy against a training cost `x` (a key of COSTS), one panel per dataset.

    Colour tells experiments apart (the same in every report) and marker shape training-set sizes
    (the legend gives both); each point is labelled with its setting ('baseline' for the
    experiment that varies nothing) where the label overlaps no other. A setting that several
    experiments share (one trial, e.g. the baseline and AdamW's Adam arm) is one point.
    """
    name, axis, meaning = COSTS[x]
    title = f"Test accuracy against {name}"
    what = f"Test accuracy of each setting against its {meaning}."
    figure = Figure(figsize=(7.5, 5.2), layout="constrained")
    if x not in summary.columns:
        return _no_data(figure, title, what, f"this summary has no {name} (no {x} column)")
    done = summary[(summary["n"] > 0) & summary[x].notna()]
    if done.empty:
        return _no_data(figure, title, what, f"no complete runs with {name}")
    datasets = list(dict.fromkeys(done["dataset"]))
    figure.set_figwidth(1.5 + 6 * len(datasets))
    experiment_colours = _experiment_colours(done["experiment"].unique())
    size_markers = dict(zip(sorted(done["train_images"].dropna().unique()), itertools.cycle(MARKERS)))
    point_labels, points = [], []
    for axes, dataset in zip(figure.subplots(1, len(datasets), squeeze=False)[0], datasets):
        rows = each_setting_once(done[done["dataset"] == dataset])
        for (experiment, train_images), group in rows.groupby(["experiment", "train_images"], sort=False, dropna=False):
            colour, marker = experiment_colours[experiment], size_markers.get(train_images, "X")
            label = f"{experiment} ({_count(train_images)} training images)"
            _seed_points(axes, group[x], group, "test_accuracy", colour, marker, "none", label)
        point_labels += [
            (axes, row[x], row["test_accuracy_mean"], row["point_label"], experiment_colours[row["experiment"]])
            for _, row in rows.iterrows()
        ]
        points.append(rows)
        axes.set(xscale="log", xlabel=axis, ylabel="test accuracy (%)", title=catalog.name(dataset))
        _keep_accuracy_span(axes)
    figure.legend(*_legend_entries(figure), loc="outside lower center", ncols=2, fontsize="small")
    _label_points(figure, point_labels)
    caption = (
        f"Test accuracy of each setting against its {meaning}, on a log axis, one panel per dataset "
        f"({_data_size(done)}): {_spread_text(pd.concat(points))}. Accuracy axes span at least {ACCURACY_SPAN:g} "
        "points. Colour: experiment (the same in every report); marker shape: training-set size, so points "
        "trained on different numbers of images (e.g. the baseline beside the sweeps) are told apart. A setting "
        "run by several experiments is one point, with its most seeds, labelled with each name ('baseline, "
        "optimizer=adam'). Higher and further left is more accuracy for less cost."
    )
    if x == "train_seconds_mean":
        caption += f" Measured on: {_devices(done)}; times from different machines are not comparable."
    return _describe(figure, title, caption, "Scatter plots")


def _label_points(figure: Figure, labels: list[tuple]) -> None:
    """Annotate each (axes, x, y, text, colour) beside its point where the text stays inside its axes and
    overlaps no other label or marker: the first free offset of LABEL_OFFSETS, moved further up or down,
    LABEL_TRIES offsets at most (then the first, overlapping).
    Lays the figure out first: the labels take no part in the layout, so they stay where placed."""
    figure.draw_without_rendering()
    taken = [Bbox.from_bounds(*axes.transData.transform((x, y)) - 4, 8, 8) for axes, x, y, *_ in labels]
    for axes, x, y, text, colour in labels:
        for dx, dy in itertools.islice(_label_offsets(), LABEL_TRIES):
            label = _annotate(axes, (x, y), text, colour, (dx, dy))
            box = label.get_window_extent()
            inside = axes.bbox.contains(box.x0, box.y0) and axes.bbox.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(other) for other in taken):
                break
            label.remove()
        else:
            label = _annotate(axes, (x, y), text, colour, LABEL_OFFSETS[0])
            box = label.get_window_extent()
        taken.append(box)


def _annotate(axes, point: tuple, text: str, colour, offset: tuple):
    return axes.annotate(
        text,
        point,
        xytext=offset,
        textcoords="offset points",
        ha="left" if offset[0] > 0 else "right",
        fontsize="x-small",
        color=colour,
        in_layout=False,
    )


def _label_offsets():
    """LABEL_OFFSETS, then the same moved 12 points further from the marker, and so on."""
    for step in itertools.count():
        for dx, dy in LABEL_OFFSETS:
            yield dx, dy + 12 * step * np.sign(dy)


def _legend_entries(figure: Figure) -> tuple[list, list]:
    """The labelled artists of all of `figure`'s axes, each label once."""
    entries = {}
    for axes in figure.axes:
        entries.update({label: handle for handle, label in zip(*axes.get_legend_handles_labels())})
    return list(entries.values()), list(entries)


def each_setting_once(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per setting (the one with the most seeds, as the claims count it), with a
    `point_label`: its setting, or where several experiments ran it, each of their names once
    ('baseline, optimizer=adam, p=7'; 'k=10' for the kernel sweep's and the dynamic kernel's)."""
    labels = {
        setting: ", ".join(dict.fromkeys(_setting(row) for _, row in same.iterrows()))
        for setting, same in rows.groupby("setting_id", sort=False)
    }
    once = one_row_per_setting(rows).sort_index()
    return once.assign(point_label=once["setting_id"].map(labels))


def _setting(row: pd.Series) -> str:
    """A summary row's setting as a point label: 'p=2', 'optimizer=adam', a named setting, or, for an
    experiment that varies nothing, its name ('baseline')."""
    if pd.isna(row["vary"]) or not row["value_label"]:
        return row["experiment"]
    if row["vary"] == "setting":
        return row["value_label"]
    return f"{SHORT_NAMES.get(row['vary'], row['vary'])}={row['value_label']}"


def _data_size(frame: pd.DataFrame) -> str:
    """'9,000 or 49,000 training and 2,000 test images of CIFAR-10', for each dataset in `frame`."""
    if not {"dataset", "train_images", "test_images"} <= set(frame.columns):
        return ""
    return "; ".join(
        f"{_counts(rows['train_images'])} training and {_counts(rows['test_images'])} test images of "
        f"{catalog.name(dataset)}"
        for dataset, rows in frame.groupby("dataset", sort=False)
    )


def _counts(values: pd.Series) -> str:
    """The distinct counts in `values`, smallest first: '9,000 or 49,000' ('?' if none is known)."""
    return " or ".join(f"{int(v):,}" for v in sorted(values.dropna().unique())) or "?"


def _spread_text(summary: pd.DataFrame) -> str:
    """What the points of the summary rows show, as `_seed_points` draws them: 'mean ± std over 3
    seeds', naming the one-seed points ('...; hollow markers: one seed, no spread (p=2; p=8)'), or 'one
    seed per point' (never 'over 1 seed'). A point is named by its `point_label` where it has one."""
    several, single = summary[summary["n"] >= 2], summary[summary["n"] == 1]
    if single.empty:
        return f"mean ± std over {_seeds(several)}"
    if several.empty:
        return "one seed per point, so no spread: hollow markers, no error bars"
    names = "; ".join(dict.fromkeys(row.get("point_label") or _setting(row) for _, row in single.iterrows()))
    return f"mean ± std over {_seeds(several)}; hollow markers: one seed, no spread ({names})"


def _seeds(summary: pd.DataFrame) -> str:
    """How many seeds the summary rows (two or more each) average: '3 seeds', '2 to 3 seeds'."""
    low, high = int(summary["n"].min()), int(summary["n"].max())
    return f"{high} seeds" if low == high else f"{low} to {high} seeds"


def _devices(summary: pd.DataFrame) -> str:
    """The machines the summary rows' runs trained on, each once."""
    return "; ".join(sorted({device for devices in summary["devices"].dropna() for device in devices.split("; ")}))


def _count(value) -> str:
    return "?" if pd.isna(value) else f"{int(value):,}"


def source_colour(source: str):
    """A source's colour in every figure: SOURCE_COLOURS's, else one derived from its key alone."""
    return SOURCE_COLOURS.get(source) or _stable_colour(source)


def _experiment_colours(names) -> dict:
    """Each experiment's colour, the same in every report: by its place in the experiment registry
    (report order), not among the experiments one report has."""
    order = experiment_names()
    palette = colormaps[EXPERIMENT_PALETTE]
    return {name: palette(order.index(name) % palette.N) if name in order else _stable_colour(name) for name in names}


def _stable_colour(key: str):
    """A colour that depends on `key` alone (a checksum, unlike hash(), is the same in every process)."""
    palette = colormaps["tab20b"]
    return palette(zlib.crc32(key.encode()) % palette.N)


def _colours(count: int) -> list:
    palette = colormaps["tab10" if count <= 10 else "viridis"]
    return [palette(i if count <= 10 else i / max(count - 1, 1)) for i in range(count)]


def _natural_order(label: str) -> list:
    """A sort key putting 'p=2' before 'p=10': the label's digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label)]

"""The report's figures: titles, numbered captions and alternative text that reach the HTML,
costs on a real cost axis, datasets and training-set sizes kept apart, readable point labels,
one colour per source in every report, no empty panels, seed spread drawn only where there is
one, accuracy axes that do not magnify small differences."""

import html
import itertools
import json
import re

import nbformat
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba

from convmixer.report import build, display, evidence, outputs, plots
from convmixer.report.published import source_labels

pytestmark = pytest.mark.unit


def summary_row(experiment, vary, value, accuracy, **columns) -> dict:
    """One collate.summarise row with the columns the figures read."""
    return {
        "experiment": experiment,
        "vary": vary,
        "value": value,
        "value_label": "" if value is None else str(value),
        "profile": "cpu",
        "dataset": "cifar10",
        "epochs": 5,
        "n": 3,
        "test_accuracy_mean": accuracy,
        "test_accuracy_std": 0.5,
        "train_seconds_mean": 100.0,
        "train_seconds_std": 1.0,
        "train_flops_mean": 1e13,
        "train_images": 9000,
        "test_images": 2000,
        "devices": "CPU: test machine",
        "setting_id": f"{experiment}/{value}",
        **columns,
    }


@pytest.fixture
def summary():
    """A patch sweep whose params x images would rank p=2 below p=8, a 49,000-image baseline, and a
    Tiny-ImageNet run."""
    return pd.DataFrame(
        [
            summary_row("patch_sweep", "patch_size", 2, 61.0, train_flops_mean=4e13, compute=1e10),
            summary_row("patch_sweep", "patch_size", 8, 50.0, train_flops_mean=3e12, compute=2e10),
            summary_row("baseline", None, None, 85.0, train_flops_mean=1e14, train_images=49000, compute=9e10),
            summary_row("patch_sweep", "patch_size", 4, 40.0, dataset="tiny-imagenet", train_images=90000),
        ]
    )


def published_rows(sources, dataset="cifar10", seconds=np.nan) -> pd.DataFrame:
    """Published patch-sweep numbers, p=2 and p=8, of each source in `sources`."""
    return pd.DataFrame(
        [
            {
                "experiment": "patch_sweep",
                "source": source,
                "dataset": dataset,
                "epochs": 200.0,
                "metric": "test_accuracy",
                "patch_size": patch,
                "value": 90.0 + patch / 4,
                "seconds": seconds,
            }
            for source in sources
            for patch in (2, 8)
        ]
    )


def error_bar_xs(axes) -> list[float]:
    """x of every point of `axes` drawn with an error bar."""
    return sorted(float(segment[0][0]) for c in axes.containers for segment in c.lines[2][0].get_segments())


def hollow_points(axes) -> list[tuple[float, float]]:
    """(x, y) of every white-filled marker (one seed) in `axes`."""
    return sorted(
        (float(x), float(y))
        for collection in axes.collections
        if isinstance(collection, PathCollection) and tuple(collection.get_facecolor()[0]) == to_rgba("white")
        for x, y in collection.get_offsets()
    )


def colours_by_label(figure) -> dict[str, tuple]:
    """Each legend label of `figure` and the colour of its line."""
    return {
        line.get_label(): to_rgba(line.get_color())
        for axes in figure.axes
        for line in axes.lines
        if not line.get_label().startswith("_")
    }


def plotted(axes) -> tuple[list[float], list[float]]:
    """x and y of every data marker in `axes` (error bars and their caps left out)."""
    lines = [line for line in axes.lines if line.get_marker() not in ("_", "|", "None", "", None)]
    return (
        [float(v) for line in lines for v in line.get_xdata()],
        [float(v) for line in lines for v in line.get_ydata()],
    )


def test_cost_axis_is_analytic_training_flops_not_params_times_images(summary):
    figure = plots.accuracy_vs_compute(summary, "train_flops_mean")
    cifar = next(axes for axes in figure.axes if axes.get_title() == "CIFAR-10")
    assert cifar.get_xlabel() == "training FLOPs (analytic, log scale)" and cifar.get_xscale() == "log"
    x, y = plotted(cifar)
    assert sorted(zip(x, y)) == [(3e12, 50.0), (4e13, 61.0), (1e14, 85.0)]  # p=2 costs more than p=8
    time_axes = plots.accuracy_vs_compute(summary, "train_seconds_mean").axes[0]
    assert time_axes.get_xlabel() == "measured training wall time (s, log scale)"
    with pytest.raises(KeyError):
        plots.accuracy_vs_compute(summary, "compute")


def test_a_summary_without_training_flops_says_so(summary):
    figure = plots.accuracy_vs_compute(summary.drop(columns="train_flops_mean"), "train_flops_mean")
    (axes,) = figure.axes
    assert not axes.lines and not axes.axison
    assert "no training FLOPs (no train_flops_mean column)" in axes.texts[0].get_text()
    assert "Not drawn" in figure.caption and "no training FLOPs" in figure.alt


def test_datasets_never_share_an_accuracy_axis(summary):
    figure = plots.accuracy_vs_compute(summary, "train_flops_mean")
    panels = {axes.get_title(): plotted(axes)[1] for axes in figure.axes}
    assert panels == {"CIFAR-10": [61.0, 50.0, 85.0], "Tiny-ImageNet": [40.0]}
    published = pd.DataFrame(
        {
            "experiment": ["patch_sweep"] * 3,
            "source": ["trockman2022", "trockman2022", "columbia_e4040"],
            "dataset": ["cifar10", "cifar10", "tiny-imagenet"],
            "epochs": [200.0, 200.0, np.nan],
            "metric": ["test_accuracy", "test_accuracy", "val_accuracy"],
            "patch_size": [2, 8, 4],
            "value": [96.0, 92.0, 67.0],
            "seconds": [np.nan, np.nan, 900.0],
        }
    )
    sweep = plots.sweep(summary, "patch_sweep", "patch_size", published)
    accuracy = {
        axes.get_title(): sorted(plotted(axes)[1]) for axes in sweep.axes if axes.get_ylabel() == "accuracy (%)"
    }
    assert accuracy == {
        "CIFAR-10: accuracy against patch size p": [50.0, 61.0, 92.0, 96.0],
        "Tiny-ImageNet: accuracy against patch size p": [40.0, 67.0],
    }


def test_a_dataset_without_training_times_has_no_time_panel(summary):
    """Only Tiny-ImageNet has a (published) time: CIFAR-10's accuracy panel spans its row."""
    timed = published_rows(["columbia_e4040"], "tiny-imagenet", seconds=900.0)
    published = pd.concat([published_rows(["trockman2022"]), timed])
    figure = plots.sweep(summary.iloc[:0], "patch_sweep", "patch_size", published)
    panels = {axes.get_title(): axes for axes in figure.axes}
    assert sorted(panels) == [
        "CIFAR-10: accuracy against patch size p",
        "Tiny-ImageNet: accuracy against patch size p",
        "Tiny-ImageNet: training time (published: their hardware)",
    ]
    assert all(axes.axison and axes.has_data() for axes in figure.axes)
    cifar = panels["CIFAR-10: accuracy against patch size p"].get_subplotspec()
    assert (cifar.colspan.start, cifar.colspan.stop) == (0, 2)
    assert plotted(panels["Tiny-ImageNet: training time (published: their hardware)"])[1] == [900.0, 900.0]
    assert "CIFAR-10: accuracy only, across the row" in figure.caption


def test_without_any_training_time_the_sweep_is_one_column_of_accuracy_panels(summary):
    untimed = summary.assign(train_seconds_mean=np.nan)
    figure = plots.sweep(untimed, "patch_sweep", "patch_size", published_rows(["trockman2022"]))
    assert [axes.get_title() for axes in figure.axes] == [
        "CIFAR-10: accuracy against patch size p",
        "Tiny-ImageNet: accuracy against patch size p",
    ]
    assert all(axes.axison and axes.has_data() for axes in figure.axes)
    assert {axes.get_subplotspec().get_gridspec().ncols for axes in figure.axes} == {1}
    assert figure.get_suptitle() == "patch_sweep: test accuracy against patch size p"
    assert "training time is not drawn: none is published and this suite has no timed run" in figure.caption


def test_training_set_sizes_are_marked_and_named(summary):
    figure = plots.accuracy_vs_compute(summary, "train_flops_mean")
    cifar = figure.axes[0]
    markers = {line.get_label(): line.get_marker() for line in cifar.lines if not line.get_label().startswith("_")}
    assert set(markers) == {"patch_sweep (9,000 training images)", "baseline (49,000 training images)"}
    assert len(set(markers.values())) == 2
    assert "9,000 or 49,000 training and 2,000 test images of CIFAR-10" in figure.caption


def test_a_setting_several_experiments_share_is_one_point_named_by_each():
    shared = {"setting_id": "p7-k9-adam", "train_flops_mean": 2e13}
    summary = pd.DataFrame(
        [
            summary_row("baseline", None, None, 14.38, **shared),
            summary_row("adamw", "optimizer", "adam", 14.38, **shared),
            summary_row("adamw", "optimizer", "adamw", 14.53, train_flops_mean=2e13),
            summary_row("patch_sweep", "patch_size", 7, 13.95, n=2, **shared),
            summary_row("patch_sweep", "patch_size", 4, 19.70, n=2, train_flops_mean=6e13),
            summary_row("kernel_sweep", "kernel_size", 10, 14.62, n=2, setting_id="k10", train_flops_mean=2.4e13),
            summary_row("dynamic_kernel", "kernel_size", 10, 14.58, setting_id="k10", train_flops_mean=2.4e13),
        ]
    )
    figure = plots.accuracy_vs_compute(summary, "train_flops_mean")
    axes = figure.axes[0]
    assert sorted(plotted(axes)[1]) == [14.38, 14.53, 14.58, 19.70]  # each shared setting once, with its most seeds
    assert sorted(label.get_text() for label in axes.texts) == [
        "baseline, optimizer=adam, p=7",
        "k=10",
        "optimizer=adamw",
        "p=4",
    ]
    assert "one point, with its most seeds" in figure.caption


def test_point_labels_do_not_overlap():
    crowded = pd.DataFrame(
        [
            summary_row("adamw", "optimizer", name, 55.0 + 0.1 * i, train_flops_mean=1e13 * (1 + 0.02 * i))
            for i, name in enumerate(["adam", "adamw", "sgd", "lamb", "lion", "adafactor"])
        ]
        + [summary_row("kernel_sweep", "kernel_size", k, 55.0, train_flops_mean=1.01e13) for k in (3, 5, 9)]
    )
    figure = plots.accuracy_vs_compute(crowded, "train_flops_mean")
    figure.png()  # the layout runs again when the figure is drawn: the labels must stay apart
    labels = figure.axes[0].texts
    assert sorted(label.get_text() for label in labels) == sorted(
        [f"optimizer={n}" for n in ("adam", "adamw", "sgd", "lamb", "lion", "adafactor")] + ["k=3", "k=5", "k=9"]
    )
    boxes = [label.get_window_extent() for label in labels]
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    inside = figure.axes[0].bbox
    assert all(inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1) for box in boxes)


def test_the_baseline_point_is_labelled(summary):
    figure = plots.accuracy_vs_compute(summary, "train_flops_mean")
    assert sorted(label.get_text() for label in figure.axes[0].texts) == ["baseline", "p=2", "p=8"]


def test_a_source_has_one_colour_in_every_figure_of_every_report(summary):
    """Two reports with other sources, in another order: each source keeps its colour, and so do our runs."""
    one = plots.sweep(summary, "patch_sweep", "patch_size", published_rows(["trockman2022", "columbia_e4040"]))
    other = plots.sweep(
        summary.iloc[::-1].assign(profile="gpu"),
        "patch_sweep",
        "patch_size",
        published_rows(["keras_example", "columbia_e4040", "trockman2022"], "tiny-imagenet"),
    )
    sources = [
        {label.split(" (published)")[0].split(":")[0]: colour for label, colour in colours_by_label(f).items()}
        for f in (one, other)
    ]
    assert set(sources[0]) == {"this suite", "original paper", "Columbia report"}
    assert {name: sources[1][name] for name in sources[0]} == sources[0]
    assert sources[0]["original paper"] == to_rgba(plots.SOURCE_COLOURS["trockman2022"])
    assert sources[1]["Keras example"] == to_rgba(plots.SOURCE_COLOURS["keras_example"])
    assert sources[0]["this suite"] == to_rgba(plots.SOURCE_COLOURS[plots.OURS])


def test_every_published_source_has_a_colour_of_its_own():
    keys = [plots.OURS, *source_labels()]
    assert set(keys) <= set(plots.SOURCE_COLOURS)
    assert len({to_rgba(plots.source_colour(key)) for key in keys}) == len(keys)


def test_an_experiment_has_one_colour_in_every_report(summary):
    adamw = summary_row("adamw", "optimizer", "adamw", 60.0, train_flops_mean=2e13)
    one = colours_by_label(plots.accuracy_vs_compute(summary))
    other = colours_by_label(plots.accuracy_vs_compute(pd.concat([pd.DataFrame([adamw]), summary.iloc[::-1]])))
    assert one["baseline (49,000 training images)"] == other["baseline (49,000 training images)"]
    assert one["patch_sweep (9,000 training images)"] == other["patch_sweep (9,000 training images)"]
    assert len(set(other.values())) == 3


def test_one_seed_points_are_hollow_without_error_bars_and_the_caption_says_so(summary):
    seeds = summary.assign(n=[1, 3, 2, 1])  # p=2 one seed, p=8 three, the baseline two, Tiny-ImageNet's p=4 one
    sweep = plots.sweep(seeds, "patch_sweep", "patch_size")
    panels = {axes.get_title(): axes for axes in sweep.axes}
    accuracy = panels["CIFAR-10: accuracy against patch size p"]
    assert error_bar_xs(accuracy) == [8.0] and hollow_points(accuracy) == [(2.0, 61.0)]
    assert error_bar_xs(panels["CIFAR-10: training time (published: their hardware)"]) == [8.0]
    assert "mean ± std over 3 seeds; hollow markers: one seed, no spread (p=2; p=4)" in sweep.caption
    compute = plots.accuracy_vs_compute(seeds)
    assert error_bar_xs(compute.axes[0]) == [3e12, 1e14] and hollow_points(compute.axes[0]) == [(4e13, 61.0)]
    assert "mean ± std over 2 to 3 seeds; hollow markers: one seed, no spread (p=2; p=4)" in compute.caption
    single = plots.accuracy_vs_compute(summary.assign(n=1))
    assert not any(axes.containers for axes in single.axes)
    assert "one seed per point, so no spread: hollow markers, no error bars" in single.caption
    assert not any("over 1 seed" in figure.caption for figure in (sweep, compute, single))


def test_accuracy_axes_span_at_least_the_minimum(summary):
    """Single seeds half a point apart do not fill the axis; an axis near 100 % stops there."""
    close = summary.assign(test_accuracy_mean=[81.0, 81.5, 82.0, 99.5], n=1)
    sweep = plots.sweep(close, "patch_sweep", "patch_size")
    limits = {axes.get_title(): axes.get_ylim() for axes in sweep.axes if axes.get_ylabel() == "accuracy (%)"}
    assert limits["CIFAR-10: accuracy against patch size p"] == pytest.approx((76.25, 86.25))  # about 81.25
    low, high = limits["Tiny-ImageNet: accuracy against patch size p"]
    assert high == 100.0 and high - low >= plots.ACCURACY_SPAN
    for axes in plots.accuracy_vs_compute(close).axes:
        low, high = axes.get_ylim()
        assert high - low >= plots.ACCURACY_SPAN and 0 <= low and high <= 100
    wide = plots.sweep(summary, "patch_sweep", "patch_size").axes[0].get_ylim()
    assert wide[1] - wide[0] > plots.ACCURACY_SPAN and wide[0] < 50.0 and wide[1] > 61.0  # left to autoscale


def test_the_mixing_weights_legend_lies_outside_the_panels():
    weights = {"block0_depthwise": [0.3, 0.7], "block1_depthwise": [0.6, 0.4]}
    runs = pd.DataFrame(
        [
            {"experiment": "dynamic_kernel", "value_label": label, "kernel_sizes": [2, 4], "mixing_weights": weights}
            for label in ("2-4", "2-4", "4-2")
        ]
    )
    figure = plots.mixing_weights(runs)
    figure.draw_without_rendering()
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["block0", "block1"]
    assert not any(axes.get_legend() for axes in figure.axes)
    box = legend.get_window_extent()
    assert len(figure.axes) == 2 and not any(box.overlaps(axes.bbox) for axes in figure.axes)


def test_learning_curves_share_a_colour_per_optimizer_and_mark_seeds():
    histories = pd.DataFrame(
        [
            {
                "experiment": "adamw",
                "run_name": f"optimizer={optimizer}_seed{seed}",
                "value_label": optimizer,
                "seed": seed,
                "status": "complete",
                "trial_id": f"{optimizer}{seed}",
                "run_dir": f"runs/adamw/{optimizer}{seed}",
                "epoch": epoch,
                "accuracy": 0.1 * epoch,
                "val_accuracy": 0.08 * epoch,
                "loss": 2.0 / epoch,
                "val_loss": 2.2 / epoch,
            }
            for optimizer in ("adam", "adamw")
            for seed in (0, 1)
            for epoch in (1, 2, 3)
        ]
    )
    figure = plots.learning_curves(histories, "Adam vs AdamW")
    lines = {line.get_label(): line for line in figure.axes[0].lines if not line.get_label().startswith("_")}
    colour = {name: line.get_color() for name, line in lines.items()}
    marker = {name: line.get_marker() for name, line in lines.items()}
    assert colour["optimizer=adam_seed0"] == colour["optimizer=adam_seed1"] != colour["optimizer=adamw_seed0"]
    assert colour["optimizer=adamw_seed0"] == colour["optimizer=adamw_seed1"]
    assert marker["optimizer=adam_seed0"] == marker["optimizer=adamw_seed0"] != marker["optimizer=adam_seed1"]
    assert figure.get_suptitle() == "Learning curves: Adam vs AdamW"
    assert colours_by_label(plots.learning_curves(histories.iloc[::-1])) == colours_by_label(figure)


def test_learning_curves_mark_where_progressive_resizing_changes_the_image_size():
    def history(name, sizes):
        return [
            {
                "run_name": name,
                "value_label": "",
                "seed": 0,
                "status": "complete",
                "trial_id": name,
                "run_dir": f"runs/{name}",
                "epoch": epoch,
                "accuracy": 0.5,
                "val_accuracy": 0.4,
                "loss": 1.0,
                "val_loss": 1.2,
                "image_size": size,
            }
            for epoch, size in enumerate(sizes, start=1)
        ]

    progressive = pd.DataFrame(history("a", [16, 16, 24, 32, 32]) + history("b", [16, 16, 24, 32, 32]))
    figure = plots.learning_curves(progressive)
    assert "epochs 1-2 at 16x16, epoch 3 at 24x24, epochs 4-5 at 32x32." in figure.caption
    dotted = [line.get_xdata()[0] for line in figure.axes[0].lines if line.get_linestyle() == ":"]
    assert dotted == [2.5, 3.5]
    mixed = pd.DataFrame(history("a", [16, 32, 32]) + history("c", [32, 32, 32]))
    assert "a: epoch 1 at 16x16, epochs 2-3 at 32x32; c: epochs 1-3 at 32x32." in plots.learning_curves(mixed).caption
    one_size = pd.DataFrame(history("c", [32, 32, 32]))
    assert "resizing" not in plots.learning_curves(one_size).caption
    assert "resizing" not in plots.learning_curves(one_size.drop(columns="image_size")).caption


def test_every_report_figure_has_its_own_title_a_caption_and_alt_text(study):
    loaded = evidence.load_study("smoke", [study["a"], study["b"]])
    figures = outputs.figures(loaded)
    titles = [figure.get_suptitle() for figure in figures.values()]
    assert all(titles) and len(set(titles)) == len(titles), titles
    for name, figure in figures.items():
        assert len(figure.caption) > 150 and figure.alt.startswith(("Line", "Bar", "Scatter", "Empty")), name
        assert f"'{figure.get_suptitle()}'" in figure.alt, name
    assert "100 training and 40 test images of CIFAR-10" in figures["learning_curves_adamw"].caption
    assert "Series: optimizer=adam_seed0" in figures["learning_curves_adamw"].alt


def test_saved_figures_show_numbered_captions_and_alt_text(tmp_path, summary, monkeypatch):
    shown = []
    monkeypatch.setattr(display, "display", shown.append)
    cost = plots.accuracy_vs_compute(summary, "train_flops_mean")
    time = plots.accuracy_vs_compute(summary, "train_seconds_mean")
    cost_paths = plots.save_figure(cost, tmp_path / "a", "accuracy_vs_compute")
    time_paths = plots.save_figure(time, tmp_path / "a", "accuracy_vs_time")
    saved = json.loads(cost_paths[2].read_text())
    assert saved == {"title": "Test accuracy against training FLOPs", "caption": cost.caption, "alt": cost.alt}
    for paths in (time_paths, cost_paths, time_paths):
        display.show_figure(paths)
    display.show_figure(plots.save_figure(cost, tmp_path / "b", "accuracy_vs_compute"))
    pages = [item.data for item in shown]
    captions = [re.search(r"<figcaption>(.*?)</figcaption>", page).group(1) for page in pages]
    assert [caption[: caption.index("</b>")] for caption in captions] == [
        "<b>Figure 1.",
        "<b>Figure 2.",
        "<b>Figure 1.",  # shown again: the same number
        "<b>Figure 1.",  # another report's figures folder counts on its own
    ]
    assert captions[1].endswith(html.escape(cost.caption))
    assert f'alt="{html.escape(cost.alt)}"' in pages[1] and f'alt="{html.escape(time.alt)}"' in pages[0]


def test_alt_text_and_captions_reach_the_rendered_html(tmp_path, summary):
    """The report notebook's figure outputs, rendered as build.render_html renders index.html."""
    cost = plots.accuracy_vs_compute(summary, "train_flops_mean")
    saved = plots.save_figure(cost, tmp_path / "figures", "accuracy_vs_compute")
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("display.show_figure(...)")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": plots.saved_figure_html(saved[0], 7)}),
        nbformat.v4.new_output("display_data", data={"text/html": cost._repr_html_()}),
    ]
    notebook.cells.append(cell)
    nbformat.write(notebook, tmp_path / "report.ipynb")
    page = build.render_html(tmp_path / "report.ipynb")
    alts = re.findall(r'<img[^>]* alt="([^"]*)"', page)
    assert len(re.findall("<img", page)) == 2 and [html.unescape(alt) for alt in alts] == [cost.alt, cost.alt]
    assert "No description has been provided" not in page
    assert "<b>Figure 7.</b> Test accuracy of each setting" in page

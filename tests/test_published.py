"""Published numbers (params/published.yaml) matched with summaries of hand-made records."""

import math

import numpy as np
import pytest
import scipy.stats
from records_factory import make_run, row

from convmixer import flops, records
from convmixer.report import collate, published

pytestmark = pytest.mark.unit


def test_published_numbers_are_matched_by_setting(study):
    numbers = published.load_published()
    comparison = published.compare_with_published(study["summary"], numbers)
    keras = row(comparison, source="keras_example")
    assert (keras["accuracy_published"], keras["accuracy_reproduced"]) == (83.7, pytest.approx(60.0))
    assert keras["accuracy_diff"] == pytest.approx(-23.7)
    assert (keras["n"], keras["params_published"], keras["params_diff"]) == (2, 594186, 0)
    assert keras["accuracy_std"] == pytest.approx(14.1421, abs=1e-4)
    # Unmatched published numbers stay, with the reproduced side empty.
    paper = comparison[comparison["source"] == "trockman2022"]
    assert len(paper) == 6 and paper["n"].eq(0).all() and paper["accuracy_reproduced"].isna().all()
    assert comparison["experiment"].isna().sum() == 3  # the ImageNet numbers belong to no experiment


def test_unstated_epochs_match_any_but_a_stated_optimizer_must_agree(tmp_path):
    columbia = {"dataset": "tiny-imagenet", "image_size": 56, "width": 512, "depth": 8, "kernel_size": 9, "epochs": 1}
    make_run(tmp_path, "patch_sweep", "patch_size", 7, test_accuracy=0.30, optimizer="adam", **columbia)
    make_run(tmp_path, "patch_sweep", "patch_size", 14, test_accuracy=0.20, optimizer="adamw", **columbia)
    summary = collate.summarise(collate.load_runs(tmp_path))
    comparison = published.compare_with_published(summary, published.load_published())
    columbia_rows = comparison[comparison["source"].eq("columbia_e4040") & comparison["experiment"].eq("patch_sweep")]
    p7 = row(columbia_rows, patch_size=7)
    assert (p7["accuracy_reproduced"], p7["epochs_reproduced"]) == (pytest.approx(30.0), 1)
    assert row(columbia_rows, patch_size=14)["n"] == 0  # Columbia used Adam, this run AdamW


def test_bad_published_entry_is_one_clear_line(tmp_path):
    path = tmp_path / "published.yaml"
    path.write_text(
        "metrics: {test_accuracy: test_accuracy}\nsources: {x: {citation: X, equivalence_bound: 2}}\n"
        "results:\n  - {source: x, dataset: cifar10, width: 1, depth: 1, patch_size: 1,"
        " kernel_size: 3, metric: top5, value: 1}\n"
    )
    with pytest.raises(published.PublishedError, match=r"results\[0\]: unknown metric 'top5'"):
        published.load_published(path)


def test_published_settings_retrained_get_a_verdict_with_the_combined_error(tmp_path):
    """Runs of the replication experiment match every published number of their setting, once,
    and get a verdict from the seed spread and both test splits' sampling error."""
    model = {"width": 256, "depth": 8, "optimizer": "adamw"}
    rescience = {**model, "patch_size": 4, "kernel_size": 9, "epochs": 5}
    for seed, accuracy in enumerate([0.70, 0.71, 0.72]):
        make_run(
            tmp_path,
            "replication",
            "setting",
            "rescience-p4-k9",
            seed,
            test_accuracy=accuracy,
            test_images=2000,
            **rescience,
        )
    make_run(
        tmp_path,
        "replication",
        "setting",
        "keras-example",
        test_accuracy=0.80,
        test_images=2000,
        **model,
        patch_size=2,
        kernel_size=5,
        epochs=10,
        evaluate="best_val",
    )
    summary = collate.summarise(collate.load_runs(tmp_path))
    comparison = published.compare_with_published(summary, published.load_published())

    def interval(diff, parts):
        """diff +- t x se, t with the Welch-Satterthwaite df of the (variance, df) parts."""
        variance = sum(v for v, _ in parts)
        df = variance**2 / sum(v**2 / d for v, d in parts if d != float("inf"))
        half = scipy.stats.t.ppf(0.975, df) * variance**0.5
        return diff - half, diff + half

    p4 = row(comparison, source="rescience_draft", patch_size=4)
    assert (p4["experiment"], p4["n"], p4["test_images"]) == ("replication", 3, 2000)
    assert p4["accuracy_diff"] == pytest.approx(71.0 - 70.62)
    # seeds: std 1 over 3 runs, for our mean and their run: 1 x (1 + 1/3), 2 df; then both splits' binomial error
    parts = [(4 / 3, 2), (71 * 29 / 2000, float("inf")), (70.62 * 29.38 / 10000, float("inf"))]
    assert (p4["diff_low"], p4["diff_high"]) == pytest.approx(interval(71.0 - 70.62, parts))
    assert p4["bound"] == 2.0 and p4["verdict"] == "inconclusive"  # the interval reaches beyond +-2 points

    keras = row(comparison, source="keras_example")
    assert keras["experiment"] == "replication" and keras["n"] == 1
    # one run: the study's pooled seed spread (the three rescience seeds: s = 1, 2 df), counted twice
    parts = [(2.0, 2), (80 * 20 / 2000, float("inf")), (83.7 * 16.3 / 10000, float("inf"))]
    assert (keras["diff_low"], keras["diff_high"]) == pytest.approx(interval(80 - 83.7, parts))
    assert keras["verdict"] == "inconclusive" and "pooled seed spread, s = 1.00 (2 df)" in keras["test"]
    # Each retrained number has one row: its empty row under its own experiment is gone.
    assert comparison["source"].eq("keras_example").sum() == 1
    assert comparison["source"].eq("rescience_draft").sum() == 6  # 5 numbers, p=1 k=9 under two experiments
    # Published numbers of other settings keep their row, marked as not run.
    p1 = row(comparison, source="rescience_draft", patch_size=1, kernels="5")
    assert (p1["n"], p1["verdict"]) == (0, published.NOT_RUN)


def _rescore(run_dir, accuracy: float, images: int = 10_000):
    """A `convmixer evaluate` rescoring of the run on `images` test images, right on `accuracy` of them."""
    labels = np.arange(images) % 10
    predicted = np.where(np.arange(images) < round(accuracy * images), labels, (labels + 1) % 10)
    split = {"images": images, "files_sha256": f"{images:064x}"}
    predictions = records.Predictions(labels, predicted, None, split)
    records.write_rescoring(run_dir, predictions, {"test_accuracy": accuracy, "test_images": images})


def test_a_setting_whose_every_model_was_rescored_on_the_whole_split_is_compared_on_it(tmp_path):
    """Tested on 2,000 images when they trained, rescored on all 10,000 since: the comparison takes
    the rescoring (their spread and both splits' sampling error), says so, and leaves the records
    alone; while one run lacks a rescoring, the row stays on the recorded split."""
    p4 = {"width": 256, "depth": 8, "optimizer": "adamw", "patch_size": 4, "kernel_size": 9, "epochs": 5}
    run_dirs = [
        make_run(tmp_path, "replication", "setting", "rescience-p4-k9", seed, test_accuracy=a, test_images=2000, **p4)
        for seed, a in enumerate([0.70, 0.71, 0.72])
    ]
    for run_dir, accuracy in zip(run_dirs[:2], [0.705, 0.715]):
        _rescore(run_dir, accuracy)

    def p4_row():
        summary = collate.summarise(collate.load_runs(tmp_path))
        comparison = published.compare_with_published(summary, published.load_published())
        return row(comparison, source="rescience_draft", patch_size=4)

    partly = p4_row()
    assert (partly["accuracy_reproduced"], partly["test_images"], partly["scored"]) == (
        pytest.approx(71.0),
        2000,
        "as recorded",
    )
    _rescore(run_dirs[2], 0.725)
    rescored = p4_row()
    assert rescored["accuracy_reproduced"] == pytest.approx(71.5)
    assert (rescored["accuracy_std"], rescored["n"], rescored["test_images"]) == (pytest.approx(1.0), 3, 10000)
    assert rescored["scored"] == "model.keras rescored on 10,000 images; recorded on 2,000"
    parts = [(4 / 3, 2), (71.5 * 28.5 / 10000, float("inf")), (70.62 * 29.38 / 10000, float("inf"))]
    variance = sum(v for v, _ in parts)
    half = scipy.stats.t.ppf(0.975, variance**2 / ((4 / 3) ** 2 / 2)) * variance**0.5
    assert (rescored["diff_low"], rescored["diff_high"]) == pytest.approx((0.88 - half, 0.88 + half))
    assert collate.load_runs(tmp_path)["test_accuracy"].tolist() == [0.70, 0.71, 0.72]  # the records' own


def test_a_published_setting_without_a_run_gets_its_cost_here_from_the_nearest_runs_flop_rate(tmp_path):
    """Its training FLOPs (full training split x published epochs) over the FLOP rate measured by
    the nearest runs at their median epoch's pace (a paused epoch does not count): here the same
    dataset and width (no run has its patch size); unstated epochs: none."""
    settings = {"width": 256, "depth": 8, "optimizer": "adamw", "epochs": 5, "train_images": 45000}
    make_run(
        tmp_path,
        "replication",
        "setting",
        "rescience-p4-k9",
        patch_size=4,
        kernel_size=9,
        train_seconds=1800.0 + 4000,
        epoch_seconds=[360.0, 360.0, 360.0 + 4000, 360.0, 360.0],  # epoch 3 paused for 4,000 s
        **settings,
    )
    make_run(tmp_path, "baseline", width=16, depth=2, patch_size=1, kernel_size=9, train_seconds=1.0)  # another width
    summary = collate.summarise(collate.load_runs(tmp_path))
    comparison = published.compare_with_published(summary, published.load_published())

    rate = flops.model_flops(256, 8, (9,), 4, 32, 10)["training_flops"] * 45000 * 5 / 1800
    p1 = row(comparison, source="rescience_draft", patch_size=1, kernels="5")  # 5 epochs, not run
    cost = flops.model_flops(256, 8, (5,), 1, 32, 10)["training_flops"] * 50000 * 5
    assert p1["hours_here"] == pytest.approx(cost / rate / 3600)
    assert p1["cost_basis"].endswith(
        "the median-epoch pace of the runs of cifar10 ConvMixer-256/8 p=4 k=9 on CPU: test machine"
    )
    columbia = comparison[comparison["source"] == "columbia_e4040"]
    assert columbia["hours_here"].isna().all()  # Columbia gives no epochs
    # A history without epoch times (an older record) falls back on the whole training time.
    history = tmp_path / "runs/replication/setting=rescience-p4-k9_seed0/history.csv"
    history.write_text("epoch,loss,accuracy,val_loss,val_accuracy,lr,epoch_seconds\n1,1,0.5,1,0.5,0.001,\n")
    untimed = published.compare_with_published(
        collate.summarise(collate.load_runs(tmp_path)), published.load_published()
    )
    assert row(untimed, source="rescience_draft", patch_size=1, kernels="5")["hours_here"] == pytest.approx(
        cost / (rate * 1800 / 5800) / 3600
    )
    assert math.isnan(row(comparison, source="rescience_draft", patch_size=4)["hours_here"])  # it has a run


def test_findings_say_what_each_source_published_for_an_experiment():
    """Per source and dataset: what the numbers share, then each number labelled by what varies."""
    numbers = published.load_published()
    patches = published.findings(["columbia_e4040"], "patch_sweep", numbers)
    assert patches == (
        "Columbia report, tiny-imagenet, ConvMixer-512/8, k=9, adam, val accuracy: "
        "p=14 57.4% (627 s), p=11 63.4% (939 s), p=7 67.6% (3,206 s), p=4 67.2% (7,659 s)"
    )
    baseline = published.findings(["columbia_e4040"], "baseline", numbers)
    assert baseline.endswith("p=7, k=9, adam: val accuracy 67.6%, train accuracy 92.28%")
    kernels = published.findings(["trockman2022", "rescience_draft"], "kernel_sweep", numbers)
    assert kernels.startswith("original paper, cifar10, ConvMixer-256/8, p=1, 200 epochs, test accuracy: k=3 93.61%")
    assert "; ReScience draft, cifar10" in kernels
    assert published.findings(["columbia_e4040"], "replication", numbers) == ""  # nothing published for it

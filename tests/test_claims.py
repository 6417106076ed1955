"""Claim verdicts from the experiment files' claims, on summaries of hand-made records."""

import dataclasses
import math

import pandas as pd
import pytest
from records_factory import make_run, row

from convmixer import claims, collate, experiments

pytestmark = pytest.mark.unit

KERNELS_CLAIM = "Larger kernels improve accuracy"
DYNAMIC_CLAIM = "The dynamic (multi-kernel) depthwise layer beats the best single kernel"
OVERFITTING_CLAIM = (
    "ConvMixer overfits (Columbia, on Tiny-ImageNet: 92.28% training against 67.6% validation accuracy): "
    "its last epoch's training accuracy is clearly above its test accuracy"
)


def judged(*roots) -> pd.DataFrame:
    return claims.claims(collate.summarise(collate.load_runs(*roots)))


def side(mean, std, n, metric="test_accuracy"):
    return {f"{metric}_mean": mean, f"{metric}_std": std, "n": n}


def test_claim_verdicts_follow_the_documented_rule(study):
    table = claims.claims(study["summary"])
    verdict = dict(zip(table["claim"], table["verdict"]))
    adamw = "AdamW improves accuracy over Adam (Columbia measured it on validation images; we test on the test split)"
    assert verdict[adamw] == "supported"  # +10 > 2 SE = 2.83
    # Single seeds: the margin comes from the seed spread of the study's settings with two seeds,
    # s^2 = (14.14^2 + 1.41^2 + 1.41^2) / 3 (baseline, adam, adamw): 2 x 8.25 x sqrt(2) = 23.3.
    patches = row(table, claim="Smaller patches improve accuracy, at a higher training cost")
    assert patches["verdict"] == "inconclusive"  # +16 points, within 23.3
    assert (
        "margin 23.32: one seed a side; from the seed spread measured in this study: s = 8.25 pooled over 3 settings"
        in patches["evidence"]
    )
    assert "train_flops patch_size=1: 1.67e+09 (n=1) vs patch_size=4: 1.60e+08 (n=1)" in patches["evidence"]
    assert "wall time 40 s vs 10 s, for information" in patches["evidence"]  # cost in FLOPs, the clock beside
    assert verdict[KERNELS_CLAIM] == "inconclusive"  # +0.5 points
    k10 = row(table, claim="k=10 is the best kernel size among {2, 6, 10, 14}")
    assert (k10["verdict"], k10["evidence"]) == ("not tested", "not tested: no run of k=10 (ran: 3, 5, 9)")
    p7 = row(table, claim=next(c for c in verdict if c.startswith("p=7")))
    assert p7["evidence"] == "not tested: no run of p=7 (ran: 1, 2, 4)"
    registered = [c for e in experiments.registry() for c in e.claims]
    assert len(table) == len(registered) == 8
    kernels = row(table, claim=KERNELS_CLAIM)
    assert kernels["sources"] == ["trockman2022", "rescience_draft"]  # one claim, both sources


def test_every_verdict_states_its_scale(study):
    table = claims.claims(study["summary"])
    patches = row(table, claim="Smaller patches improve accuracy, at a higher training cost")
    assert patches["evidence"].startswith("at 2 epochs, 100 training images, test accuracies 50 to 66%: ")
    kernels = row(table, claim=KERNELS_CLAIM)
    assert kernels["evidence"].startswith("at 2 epochs, 100 training images, test accuracies near 50%: ")


def test_compare_means_uses_two_standard_errors_or_the_measured_spread():
    verdict, diff, margin, how = claims.compare_means(side(50, 1, 3), side(60, 1, 3), "test_accuracy")
    assert (verdict, diff, margin, how) == (
        "not supported",
        -10,
        pytest.approx(2 * math.sqrt(2 / 3)),
        "two standard errors",
    )
    assert claims.compare_means(side(61, 4, 2), side(60, 4, 2), "test_accuracy")[0] == "inconclusive"
    spread = claims.Spread(std=0.55, settings=4)
    verdict, _, margin, how = claims.compare_means(
        side(61.2, math.nan, 1), side(60, math.nan, 1), "test_accuracy", spread=spread
    )
    assert (verdict, margin) == ("inconclusive", pytest.approx(2 * 0.55 * math.sqrt(2)))  # +1.2 within 1.56
    assert how == "one seed a side; from the seed spread measured in this study: s = 0.55 pooled over 4 settings"
    margin, how = claims.margin(side(60, 1, 3), side(58, math.nan, 1), "test_accuracy", spread)
    assert margin == pytest.approx(2 * 0.55 * math.sqrt(1 / 3 + 1)) and how.startswith("one seed on one side; ")
    fixed = claims.compare_means(side(61.2, math.nan, 1), side(60, math.nan, 1), "test_accuracy")
    assert fixed[0] == "supported" and fixed[2] == 1.0  # no spread measured: the fixed 1 point
    assert fixed[3] == "one seed a side and no setting of this study with two seeds: the fixed 1 point"
    within = claims.compare_means(side(60.5, 0, 1), side(60, 0, 1), "test_accuracy", "not_higher", spread)
    assert within[0] == "supported"
    assert claims.combine_verdicts(["supported", "inconclusive"]) == "inconclusive"
    assert claims.combine_verdicts(["supported", "not supported"]) == "not supported"


def test_a_count_of_flops_gets_a_one_percent_margin_and_no_seed_margin():
    more, less = side(101.5e12, math.nan, 1, "train_flops"), side(100e12, math.nan, 1, "train_flops")
    verdict, _, margin, how = claims.compare_means(more, less, "train_flops", spread=claims.Spread(1e15, 3))
    assert (verdict, margin, how) == ("supported", pytest.approx(1e12), "1% of the second: a count, without seed noise")
    assert claims.compare_means(side(100.5e12, 0, 3, "train_flops"), less, "train_flops")[0] == "inconclusive"


def test_pooled_spread_weighs_settings_by_their_seeds_and_counts_each_setting_once():
    summary = pd.DataFrame(
        {
            "setting_id": ["a", "b", "b", "c", "d"],
            "n": [3, 2, 2, 1, 4],
            "test_accuracy_mean": [50.0, 60.0, 60.0, 70.0, 80.0],
            "test_accuracy_std": [1.0, 2.0, 2.0, math.nan, math.nan],  # d: a metric its records lack
        }
    )
    spread = claims.pooled_spread(summary, "test_accuracy")
    assert spread == claims.Spread(std=pytest.approx(math.sqrt((2 * 1 + 1 * 4) / 3)), settings=2)
    assert claims.pooled_spread(summary[summary["n"] < 2], "test_accuracy") is None


def test_single_seed_comparisons_take_the_spread_measured_in_their_own_study(tmp_path):
    """A +1.5 point kernel effect: beyond the old fixed 1 point, within 2 x 1.0 x sqrt(2) = 2.83 where
    the same study measured a seed spread of 1 point; the fixed point only where nothing was measured."""
    for profile, width in [("measured", 16), ("unmeasured", 32)]:  # other trials: a copy would count once
        for kernel, accuracy in [(3, 0.54), (5, 0.55), (9, 0.555)]:
            root = tmp_path / profile
            make_run(root, "kernel_sweep", "kernel_size", kernel, test_accuracy=accuracy, profile=profile, width=width)
    for seed, (adam, adamw) in enumerate([(0.55, 0.60), (0.56, 0.61), (0.57, 0.62)]):  # std 1 point each
        make_run(tmp_path / "measured", "adamw", "optimizer", "adam", seed, test_accuracy=adam, profile="measured")
        make_run(tmp_path / "measured", "adamw", "optimizer", "adamw", seed, test_accuracy=adamw, profile="measured")
    table = judged(tmp_path / "measured", tmp_path / "unmeasured")
    measured = row(table, claim=KERNELS_CLAIM, profile="measured")
    assert measured["verdict"] == "inconclusive"
    assert (
        "margin 2.83: one seed a side; from the seed spread measured in this study: s = 1.00 pooled over 2 settings"
        in measured["evidence"]
    )
    unmeasured = row(table, claim=KERNELS_CLAIM, profile="unmeasured")
    assert unmeasured["verdict"] == "supported"
    assert (
        "margin 1.00: one seed a side and no setting of this study with two seeds: the fixed 1 point"
        in unmeasured["evidence"]
    )


def test_cost_is_judged_on_counted_flops_with_the_wall_time_beside_it(tmp_path):
    """Patch size 2 costs 3.4x the FLOPs of patch size 4 whatever the clock said (here it said less)."""
    make_run(tmp_path, "patch_sweep", "patch_size", 2, kernel_size=9, test_accuracy=0.6, train_seconds=200.0)
    make_run(tmp_path, "patch_sweep", "patch_size", 4, kernel_size=9, test_accuracy=0.5, train_seconds=280.0)
    cost = experiments.Comparison("smallest", "largest", "train_flops", "higher")
    patch_sweep = next(e for e in experiments.registry() if e.name == "patch_sweep")
    claim = experiments.Claim("Smaller patches cost more", ("trockman2022",), "patch_sweep", (cost,))
    registry = [dataclasses.replace(patch_sweep, claims=(claim,))]
    [verdict] = claims.claims(collate.summarise(collate.load_runs(tmp_path)), registry).to_dict("records")
    assert verdict["verdict"] == "supported"
    assert "train_flops patch_size=2: 1.01e+09 (n=1) vs patch_size=4: 2.98e+08 (n=1)" in verdict["evidence"]
    assert "(margin 2.98e+06: 1% of the second: a count, without seed noise;" in verdict["evidence"]
    assert "wall time 200 s vs 280 s, for information" in verdict["evidence"]


def test_the_dynamic_layer_meets_the_best_single_kernel_of_its_setting_from_any_experiment(tmp_path):
    scale = {"epochs": 5, "train_images": 9000}
    params = {3: 154250, 5: 170634, 9: 227978}
    for kernel, accuracy in [(3, 0.540), (5, 0.558), (9, 0.539)]:
        make_run(
            tmp_path, "kernel_sweep", "kernel_size", kernel, test_accuracy=accuracy, params=params[kernel], **scale
        )
    weights = {"block0_depthwise": [0.22, 0.21, 0.20, 0.19, 0.18], "block1_depthwise": [0.2] * 5}
    for seed, (single, multi) in enumerate([(0.540, 0.571), (0.550, 0.576), (0.545, 0.581)]):
        make_run(tmp_path, "dynamic_kernel", "kernel_sizes", [9], seed, test_accuracy=single, params=params[9], **scale)
        make_run(
            tmp_path,
            "dynamic_kernel",
            "kernel_sizes",
            [2, 4, 6, 8, 10],
            seed,
            test_accuracy=multi,
            params=374450,
            mixing_weights=weights,
            **scale,
        )
    # More accurate, but at another patch size: not the multi-kernel row's setting.
    make_run(tmp_path, "patch_sweep", "patch_size", 4, kernel_size=5, test_accuracy=0.70, **scale)
    dynamic = row(judged(tmp_path), claim=DYNAMIC_CLAIM)
    assert dynamic["verdict"] == "supported"  # 57.60 - 55.80 > 2 x 0.5 x sqrt(1/3 + 1) = 1.15
    assert dynamic["evidence"].startswith("at 5 epochs, 9,000 training images, test accuracies 56 to 58%: ")
    assert (
        "vs best single kernel k=5 (from kernel_sweep, kernel_size=5): 55.80 (n=1): difference +1.80"
        in dynamic["evidence"]
    )
    assert "the multi-kernel model has 2.19x the parameters" in dynamic["evidence"]
    assert "mixing weights near uniform: 0.18..0.22 over every layer and seed (uniform: 0.20)" in dynamic["evidence"]


def test_mixing_weights_far_from_uniform_are_said_so(study):
    dynamic = row(claims.claims(study["summary"]), claim=DYNAMIC_CLAIM)
    # The adamw experiment's AdamW row is the k=5 setting of the multi-kernel row: the best single kernel.
    assert "vs best single kernel k=5 (from adamw, optimizer=adamw): 61.00 ± 1.41 (n=2)" in dynamic["evidence"]
    assert "mixing weights not uniform: 0.30..0.70 over every layer and seed (uniform: 0.50)" in dynamic["evidence"]


def test_claims_without_runs_are_not_tested(study):
    only_baseline = study["summary"][study["summary"]["experiment"] == "baseline"]
    table = claims.claims(only_baseline)
    others = table[table["experiment"] != "baseline"]
    assert len(others) == 7 and set(others["verdict"]) == {"not tested"}
    assert row(table, experiment="baseline")["verdict"] == "supported"  # the baseline's own claim
    assert others["evidence"].str.startswith("not tested: no complete run of").all()
    # Said of the study that lacks the runs (its profile and dataset), or of none when nothing ran.
    assert set(zip(others["profile"], others["dataset"])) == set(
        zip(only_baseline["profile"], only_baseline["dataset"])
    )
    assert claims.claims(only_baseline.iloc[:0])[["profile", "dataset"]].isna().all().all()


def test_overfitting_holds_the_baseline_gap_against_zero_with_the_error_of_its_own_mean(study, tmp_path):
    """The study's baseline: train 90%, test 50% and 70% (gap 40 and 20): +30 against a margin of
    2 x 14.14 / sqrt(2) = 20. A baseline whose train and test accuracies differ by a point over
    three seeds with a spread of 1.5 points is inconclusive (margin 2 x 1.5 / sqrt(3) = 1.73)."""
    overfit = row(claims.claims(study["summary"]), claim=OVERFITTING_CLAIM)
    assert overfit["verdict"] == "supported"
    assert (
        "gap baseline: 30.00 ± 14.14 (n=2) vs 0.00: difference +30.00 (margin 20.00: two standard errors; "
        "claim: first above 0.00) -> supported" in overfit["evidence"]
    )
    for seed, test in enumerate([0.145, 0.13, 0.16]):  # train 15.5%: gaps 1.0, 2.5, -0.5 (mean 1.0, std 1.5)
        make_run(tmp_path, "baseline", seed=seed, test_accuracy=test, train_accuracy=0.155, epochs=4)
    early = row(judged(tmp_path), claim=OVERFITTING_CLAIM)
    assert early["verdict"] == "inconclusive"
    assert early["evidence"].startswith(
        "at 4 epochs, 100 training images, test accuracies near 14%: gap baseline: 1.00"
    )
    assert "(margin 1.73: two standard errors; claim: first above 0.00)" in early["evidence"]


def test_only_asks_for_one_row_and_says_so_when_a_study_has_two(tmp_path):
    make_run(tmp_path / "a", "baseline", test_accuracy=0.5, train_accuracy=0.9)
    make_run(tmp_path / "b", "baseline", test_accuracy=0.5, train_accuracy=0.9, epochs=3)  # a second setting
    overfit = row(judged(tmp_path / "a", tmp_path / "b"), claim=OVERFITTING_CLAIM)
    assert overfit["verdict"] == "not tested"
    assert overfit["evidence"] == "not tested: 2 settings, where one row was expected (ran: )"


def test_a_row_not_clearly_above_a_number():
    below = claims.compare_means(side(-3.0, 1.0, 3, "gap"), 0.0, "gap", "not_higher")
    assert below[0] == "supported" and below[1] == -3.0
    above = claims.compare_means(side(3.0, 1.0, 3, "gap"), 0.0, "gap", "not_higher")
    assert above[0] == "not supported" and above[2] == pytest.approx(2 / 3**0.5)


def test_a_single_seed_row_against_a_number_takes_the_pooled_spread():
    verdict, diff, limit, how = claims.compare_means(
        side(5.0, math.nan, 1, "gap"), 0.0, "gap", "higher", claims.Spread(2.0, 3)
    )
    assert (verdict, diff, limit) == ("supported", 5.0, pytest.approx(4.0))  # 2 x 2.0 x sqrt(1/1)
    assert how == "one seed; from the seed spread measured in this study: s = 2.00 pooled over 3 settings"

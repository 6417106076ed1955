"""Claim verdicts (claims.CLAIM_RULE) on summaries of hand-made records, checked against scipy's
tests computed here from the same numbers."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from records_factory import make_run, row

from convmixer.report import claims, collate
from convmixer.study import experiments

pytestmark = pytest.mark.unit

KERNELS_CLAIM = "Larger kernels improve accuracy"
DYNAMIC_CLAIM = "The dynamic (multi-kernel) depthwise layer beats the best single kernel"
ADAMW_CLAIM = "AdamW improves accuracy over Adam (Columbia measured it on validation images; we test on the test split)"
OVERFITTING_CLAIM = (
    "ConvMixer overfits (Columbia, on Tiny-ImageNet: training accuracy far above validation accuracy): "
    "its last epoch's training accuracy is clearly above its test accuracy (by more than 5 points)"
)


def judged(*roots) -> pd.DataFrame:
    return claims.claims(collate.summarise(collate.load_runs(*roots)))


def side(mean, std, n, metric="test_accuracy"):
    return {f"{metric}_mean": mean, f"{metric}_std": std, "n": n}


def test_every_claim_has_a_definition_sources_and_a_verdict_of_the_rule(study):
    table = claims.claims(study["summary"])
    registered = [c for e in experiments.registry() for c in e.claims]
    assert len(table) == len(registered) == 9
    assert table["definition"].str.len().gt(40).all()  # what is measured, on which images, when
    assert set(table["verdict"]) <= {"supported", "contradicted", "inconclusive", "not tested"}
    tested = table[table["verdict"] != "not tested"]
    tests = tested[tested["p"].notna()]  # a count of FLOPs has no test
    assert len(tests) == 6 and (tests["p_holm"] >= tests["p"]).all()
    assert tested["scale"].str.match(r"ConvMixer-\d+/\d+ at \d+ epochs, 100 training images, test accuracies").all()
    kernels = row(table, claim=KERNELS_CLAIM)
    assert kernels["sources"] == ["trockman2022", "rescience_draft"]  # one claim, both sources
    k10 = row(table, claim="k=10 is the best kernel size among {2, 6, 10, 14}")
    assert (k10["verdict"], k10["evidence"]) == (
        "not tested",
        "not tested: no run of k=10 (ran: 3, 5, 9) -> not tested",
    )


def test_two_rows_of_several_seeds_take_welchs_t_from_their_means_and_spreads():
    estimate = claims.difference(side(61.0, 1.0, 3), side(58.0, 2.0, 4), "test_accuracy", None)
    expected = scipy.stats.ttest_ind_from_stats(61.0, 1.0, 3, 58.0, 2.0, 4, equal_var=False)
    assert estimate.effect == 3.0 and estimate.p == pytest.approx(expected.pvalue)
    assert estimate.test == "Welch's t (3 and 4 seeds)"


def test_a_single_seed_takes_the_study_spread_with_its_degrees_of_freedom():
    spread = claims.Spread(std=0.55, settings=4, df=6)
    estimate = claims.difference(side(61.2, math.nan, 1), side(60.0, math.nan, 1), "test_accuracy", spread)
    se = 0.55 * math.sqrt(2)
    assert estimate.p == pytest.approx(2 * scipy.stats.t.sf(1.2 / se, 6))
    assert estimate.high - estimate.effect == pytest.approx(scipy.stats.t.ppf(0.975, 6) * se)
    assert "pooled seed spread, s = 0.55 (6 df)" in estimate.test
    assert claims.difference(side(61.2, math.nan, 1), side(60, math.nan, 1), "test_accuracy", None) is None


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
    assert spread == claims.Spread(std=pytest.approx(math.sqrt((2 * 1 + 1 * 4) / 3)), settings=2, df=3)
    assert claims.pooled_spread(summary[summary["n"] < 2], "test_accuracy") is None


def test_runs_scored_on_the_same_images_are_compared_image_by_image(tmp_path):
    """One seed a side, 2,000 images: a 1.5-point gain that no seed spread could show (no setting
    of this study has two seeds) is found by McNemar's exact test on the discordant images."""
    rng = np.random.default_rng(0)
    small = rng.random(2000) < 0.55
    large = small.copy()
    large[np.flatnonzero(~small)[:30]] = True  # right on 30 more images, wrong on none it had right
    make_run(tmp_path, "kernel_sweep", "kernel_size", 3, correct=small)
    make_run(tmp_path, "kernel_sweep", "kernel_size", 9, correct=large)
    kernels = row(judged(tmp_path), claim=KERNELS_CLAIM)
    assert kernels["test"] == "exact McNemar (30 vs 0 of 2,000 images right on one side only)"
    assert kernels["p"] == pytest.approx(2 * 0.5**30) and kernels["effect"] == pytest.approx(1.5)
    assert kernels["verdict"] == "supported"


def test_several_seeds_on_the_same_images_take_the_paired_bootstrap(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.random(2000) < 0.6
    for seed in range(2):
        adam = base ^ (rng.random(2000) < 0.02)
        adamw = adam.copy()
        adamw[np.flatnonzero(~adam)[:40]] = True
        make_run(tmp_path, "adamw", "optimizer", "adam", seed, correct=adam)
        make_run(tmp_path, "adamw", "optimizer", "adamw", seed, correct=adamw)
    adamw = row(judged(tmp_path), claim=ADAMW_CLAIM)
    assert adamw["test"].startswith("paired bootstrap over 2,000 images and 2 and 2 seeds")
    assert adamw["low"] > 0 and adamw["verdict"] == "supported"


def test_holm_corrects_across_every_comparison_of_a_report(tmp_path):
    """Two claims tested in one study: each p is multiplied by up to the number of comparisons."""
    for seed, (adam, adamw) in enumerate([(0.55, 0.60), (0.56, 0.61), (0.57, 0.62)]):
        make_run(tmp_path, "adamw", "optimizer", "adam", seed, test_accuracy=adam, train_accuracy=0.9)
        make_run(tmp_path, "adamw", "optimizer", "adamw", seed, test_accuracy=adamw, train_accuracy=0.9)
    table = judged(tmp_path)
    accuracy = row(table, claim=ADAMW_CLAIM)
    expected = scipy.stats.ttest_ind_from_stats(61, 1, 3, 56, 1, 3, equal_var=False).pvalue
    assert accuracy["p"] == pytest.approx(expected)
    gap = row(table, experiment="adamw", claim=next(c for c in table["claim"] if "overfitting" in c))
    ranked = sorted([accuracy["p"], gap["p"]])
    assert max(accuracy["p_holm"], gap["p_holm"]) >= ranked[1] and min(accuracy["p_holm"], gap["p_holm"]) == (
        pytest.approx(2 * ranked[0])
    )


def test_an_inconclusive_comparison_says_what_it_could_have_detected(tmp_path):
    for seed, (adam, adamw) in enumerate([(0.55, 0.57), (0.58, 0.56)]):
        make_run(tmp_path, "adamw", "optimizer", "adam", seed, test_accuracy=adam)
        make_run(tmp_path, "adamw", "optimizer", "adamw", seed, test_accuracy=adamw)
    accuracy = row(judged(tmp_path), claim=ADAMW_CLAIM)
    assert accuracy["verdict"] == "inconclusive"
    se = math.sqrt((2.12132**2 + 0.707107**2) / 2)  # adam 55 and 58, adamw 57 and 56
    df = (se**2) ** 2 / ((2.12132**2 / 2) ** 2 + (0.707107**2 / 2) ** 2)
    expected = (scipy.stats.t.ppf(0.975, df) + scipy.stats.t.ppf(0.8, df)) * se
    assert accuracy["detectable"] == pytest.approx(expected, rel=1e-3)
    assert f"detect an effect of {expected:.2f} at 80% power" in accuracy["evidence"]


def test_a_count_of_flops_needs_one_percent_and_no_test(tmp_path):
    """Patch size 2 costs 3.4x the FLOPs of patch size 4 whatever the clock said (here it said less)."""
    make_run(tmp_path, "patch_sweep", "patch_size", 2, kernel_size=9, test_accuracy=0.6, train_seconds=200.0)
    make_run(tmp_path, "patch_sweep", "patch_size", 4, kernel_size=9, test_accuracy=0.5, train_seconds=280.0)
    cost = experiments.Comparison("smallest", "largest", "train_flops", "higher")
    patch_sweep = next(e for e in experiments.registry() if e.name == "patch_sweep")
    claim = experiments.Claim("Smaller patches cost more", "FLOPs", ("trockman2022",), "patch_sweep", (cost,))
    registry = [dataclasses.replace(patch_sweep, claims=(claim,))]
    [verdict] = claims.claims(collate.summarise(collate.load_runs(tmp_path)), registry).to_dict("records")
    assert verdict["verdict"] == "supported" and pd.isna(verdict["p"])
    assert "train_flops patch_size=2: 1.01e+09 (n=1) vs patch_size=4: 2.98e+08 (n=1)" in verdict["evidence"]
    assert "wall time 200 s vs 280 s, for information" in verdict["evidence"]


def test_not_clearly_above_holds_when_the_interval_stays_below_its_bound(tmp_path):
    """p=4 against p=7 over 3 seeds each: within a point, and then not within it."""
    comparison = experiments.Comparison("4", "7", "test_accuracy", "not_higher", bound=1.0)
    patch_sweep = next(e for e in experiments.registry() if e.name == "patch_sweep")
    claim = experiments.Claim(
        "p=4 is not clearly better than p=7", "accuracy", ("columbia_e4040",), "patch_sweep", (comparison,)
    )
    registry = [dataclasses.replace(patch_sweep, claims=(claim,))]
    cases = [
        (0.001, [0.0, 0.002, 0.004], "supported"),  # +0.1 [-0.35, +0.55]
        (0.04, [0.0, 0.002, 0.004], "contradicted"),  # +4 points, p < 0.001
        (0.006, [0.0, 0.01, 0.02], "inconclusive"),  # +0.6 [-1.7, +2.9]
    ]
    for gain, noises, verdict in cases:
        root = tmp_path / str(gain)
        for seed, noise in enumerate(noises):
            make_run(root, "patch_sweep", "patch_size", 7, seed, test_accuracy=0.60 + noise, image_size=28)
            make_run(root, "patch_sweep", "patch_size", 4, seed, test_accuracy=0.60 + gain + noise, image_size=28)
        found = claims.claims(collate.summarise(collate.load_runs(root)), registry).iloc[0]
        assert found["verdict"] == verdict, (gain, found["evidence"])


def test_overfitting_is_a_gap_clearly_above_five_points(study, tmp_path):
    """The study's baseline: train 90%, test 50% and 70% (gaps 40 and 20, two seeds): the one-sample
    t interval of the mean gap with 1 df reaches far below 5: inconclusive, not supported."""
    overfit = row(claims.claims(study["summary"]), claim=OVERFITTING_CLAIM)
    assert overfit["verdict"] == "inconclusive" and overfit["test"] == "one-sample t (2 seeds)"
    assert overfit["effect"] == pytest.approx(30 - 5)
    for seed, test in enumerate([0.60, 0.61, 0.62]):  # train 90%: gaps 30, 29, 28
        make_run(tmp_path, "baseline", seed=seed, test_accuracy=test, train_accuracy=0.9, epochs=4)
    clear = row(judged(tmp_path), claim=OVERFITTING_CLAIM)
    assert clear["verdict"] == "supported"
    assert clear["scale"] == "ConvMixer-16/2 at 4 epochs, 100 training images, test accuracies near 61%"


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
    # +1.80 points, k=5 with one seed: the study's pooled spread (0.5 over 2 settings, 4 df)
    assert dynamic["test"] == "t with the study's pooled seed spread, s = 0.50 (4 df)"
    se = 0.5 * math.sqrt(1 / 3 + 1)
    assert dynamic["p"] == pytest.approx(2 * scipy.stats.t.sf(1.8 / se, 4))
    assert "vs best single kernel k=5 (from kernel_sweep, kernel_size=5): 55.80 (n=1)" in dynamic["evidence"]
    assert "the multi-kernel model has 2.19x the parameters" in dynamic["evidence"]
    assert "mixing weights near uniform: 0.18..0.22 over every layer and seed (uniform: 0.20)" in dynamic["evidence"]


def test_mixing_weights_far_from_uniform_are_said_so(study):
    dynamic = row(claims.claims(study["summary"]), claim=DYNAMIC_CLAIM)
    # The adamw experiment's AdamW row is the k=5 setting of the multi-kernel row: the best single kernel.
    assert "vs best single kernel k=5 (from adamw, optimizer=adamw): 61.00 ± 1.41 (n=2)" in dynamic["evidence"]
    assert "mixing weights not uniform: 0.30..0.70 over every layer and seed (uniform: 0.50)" in dynamic["evidence"]


def test_a_verdict_says_when_its_runs_were_resumed_before_resumes_were_exact(tmp_path):
    old = [{"at": "2025-01-01", "epochs_done": 0}, {"at": "2025-01-02", "epochs_done": 3}]  # no `resume`
    exact = [{"at": "2026-12-04", "epochs_done": 0, "resume": "exact"}, {"epochs_done": 2, "resume": "exact"}]
    make_run(tmp_path, "kernel_sweep", "kernel_size", 3, test_accuracy=0.50, starts=old)
    make_run(tmp_path, "kernel_sweep", "kernel_size", 9, test_accuracy=0.52, starts=exact)
    kernels = row(judged(tmp_path), claim=KERNELS_CLAIM)
    assert kernels["inexact_resumes"] == 1
    assert "its runs were resumed 1 time(s) before resumes were exact" in kernels["evidence"]
    from convmixer.report import published, tables

    table = tables.claims_table(judged(tmp_path), published.load_published())
    assert row(table, claim=KERNELS_CLAIM)["verdict"].endswith("(rests on 1 resume(s) before exact resume)")


def test_claims_without_runs_are_not_tested(study):
    only_baseline = study["summary"][study["summary"]["experiment"] == "baseline"]
    table = claims.claims(only_baseline)
    others = table[table["experiment"] != "baseline"]
    assert len(others) == 8 and set(others["verdict"]) == {"not tested"}
    assert others["evidence"].str.startswith("not tested: no complete run of").all()
    # Said of the study that lacks the runs (its profile and dataset), or of none when nothing ran.
    assert set(zip(others["profile"], others["dataset"])) == set(
        zip(only_baseline["profile"], only_baseline["dataset"])
    )
    assert claims.claims(only_baseline.iloc[:0])[["profile", "dataset"]].isna().all().all()


def test_only_asks_for_one_row_and_says_so_when_a_study_has_two(tmp_path):
    make_run(tmp_path / "a", "baseline", test_accuracy=0.5, train_accuracy=0.9)
    make_run(tmp_path / "b", "baseline", test_accuracy=0.5, train_accuracy=0.9, epochs=3)  # a second setting
    overfit = row(judged(tmp_path / "a", tmp_path / "b"), claim=OVERFITTING_CLAIM)
    assert overfit["verdict"] == "not tested"
    assert overfit["evidence"] == "not tested: 2 settings, where one row was expected (ran: ) -> not tested"


def test_combine_verdicts():
    assert claims.combine_verdicts(["supported", "inconclusive"]) == "inconclusive"
    assert claims.combine_verdicts(["supported", "contradicted"]) == "contradicted"
    assert claims.combine_verdicts(["supported", "not tested"]) == "not tested"
    assert claims.combine_verdicts(["supported", "supported"]) == "supported"

"""Claim verdicts from the experiment files' claims, on summaries of hand-made records."""

import math

import pytest
from records_factory import row

from convmixer import claims, experiments

pytestmark = pytest.mark.unit


def test_claim_verdicts_follow_the_documented_rule(study):
    table = claims.claims(study["summary"])
    verdict = dict(zip(table["claim"], table["verdict"]))
    assert (
        verdict[
            "AdamW improves accuracy over Adam (Columbia measured it on validation images; we test on the test split)"
        ]
        == "supported"
    )  # +10 > 2 SE = 2.83
    assert verdict["Smaller patches improve accuracy, at a higher training cost"] == "supported"  # +16 pp, 4x time
    assert verdict["Larger kernels improve accuracy"] == "inconclusive"  # +0.5 pp with single seeds
    assert verdict["The dynamic (multi-kernel) depthwise layer beats the best single kernel"] == "supported"
    k10 = row(table, claim="k=10 is the best kernel size among {2, 6, 10, 14}")
    assert k10["verdict"] == "not tested" and "no runs for '10'" in k10["evidence"]
    registered = [c for e in experiments.registry() for c in e.claims]
    assert len(table) == len(registered) == 7
    kernels = row(table, claim="Larger kernels improve accuracy")
    assert kernels["sources"] == ["trockman2022", "rescience_draft"]  # one claim, both sources


def test_compare_means_uses_two_standard_errors_or_a_single_seed_margin():
    def side(mean, std, n):
        return {"test_accuracy_mean": mean, "test_accuracy_std": std, "n": n}

    verdict, diff, margin = claims.compare_means(side(50, 1, 3), side(60, 1, 3), "test_accuracy")
    assert (verdict, diff, margin) == ("not supported", -10, pytest.approx(2 * math.sqrt(2 / 3)))
    assert claims.compare_means(side(61, 4, 2), side(60, 4, 2), "test_accuracy")[0] == "inconclusive"
    single_seed = claims.compare_means(side(62, math.nan, 1), side(60, math.nan, 1), "test_accuracy")
    assert single_seed[0] == "supported"  # +2 > 1 percentage point
    within = claims.compare_means(side(60.5, 0, 1), side(60, 0, 1), "test_accuracy", "not_higher")
    assert within[0] == "supported"
    assert claims.combine_verdicts(["supported", "inconclusive"]) == "inconclusive"
    assert claims.combine_verdicts(["supported", "not supported"]) == "not supported"


def test_claims_without_runs_are_not_tested(study):
    only_baseline = study["summary"][study["summary"]["experiment"] == "baseline"]
    table = claims.claims(only_baseline)
    assert set(table["verdict"]) == {"not tested"}
    assert table["evidence"].str.startswith("no complete runs of").all()

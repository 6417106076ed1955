"""Verdicts on the studies' claims, from collated summaries.

The claims live in the experiment files (params/experiments/*.yaml, `claims`): each is a list
of comparisons of two summary rows of one study (profile and dataset). A row is selected by its
value label ('adamw', '7'), by 'smallest' or 'largest' value, as 'multi' (best multi-kernel
row), 'best_other' (best row other than the first) or 'only' (the row of an experiment that varies
nothing), all among the rows of the claim's experiment; or as 'best_single': the best single-kernel
row of the study, from any experiment, at the first row's setting but for the kernel. A comparison
may instead hold one row against a fixed number (`than`), as "the train-test gap is above 0".
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from . import experiments

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_TESTED = "supported", "not supported", "inconclusive", "not tested"
STUDY = ["profile", "dataset"]
SINGLE_SEED_MARGIN = 1.0  # percentage points, when no setting of the study has two seeds; train_seconds: 10%
COUNTED_METRICS = ("train_flops",)  # computed from the settings, without seed noise
COUNTED_MARGIN = 0.01  # of the second row's value
NEAR_UNIFORM = 1.25  # mixing weights all within this factor of 1/(number of kernels)
SHORT_NAMES = {"patch_size": "p", "kernel_size": "k", "kernel_sizes": "k"}
CLAIM_RULE = (
    "Each claim compares means over seeds of two summary rows of one study (profile and dataset). "
    "A difference counts when it exceeds a margin. When both rows have at least two seeds, the margin "
    "is two standard errors of the difference, 2 sqrt(s_a^2/n_a + s_b^2/n_b). When a row has a single "
    "seed, it is 2 s sqrt(1/n_a + 1/n_b), with s the seed standard deviation of the same metric "
    "measured in the same study, pooled over its settings with at least two seeds (each setting once): "
    "s^2 = sum((n_i - 1) s_i^2) / sum(n_i - 1). Only when no setting of the study has two seeds is the "
    f"margin fixed: {SINGLE_SEED_MARGIN:g} percentage point (10% of the larger mean for training "
    "seconds). Training cost is compared on training FLOPs, counted from the architecture (forward and "
    "backward pass, 3 times the forward one) times training images times epochs: a count without seed "
    f"noise, whose margin is {COUNTED_MARGIN:.0%} of the second row's value; the wall time is shown "
    "beside it for information. 'The best single kernel' is the most accurate single-kernel row of the "
    "study, from any experiment, whose settings equal the multi-kernel row's but for the kernel (each "
    "setting once: the row with the most seeds). A comparison is supported when the difference exceeds "
    "the margin in the claimed direction, not supported when it exceeds it in the other direction, "
    "inconclusive otherwise; a claim that the first is not clearly above the second is supported unless "
    "the first exceeds the second by more than the margin. A row held against a fixed number has the margin "
    "of its mean alone: 2 s / sqrt(n), with s its own seed spread, or the study's pooled one when it has a "
    "single seed (else the fixed margin above). A comparison is not tested when a side has no "
    "run. A claim is not supported if any comparison is not, supported if all are, not tested if any "
    "side is missing, otherwise inconclusive. Each verdict states its scale: the epochs, training images "
    "and test accuracies of the rows compared. A multi-kernel model's learned mixing weights are called "
    f"near uniform when every weight is within a factor {NEAR_UNIFORM:g} of 1/(number of kernels)."
)
COLUMNS = ["claim", "sources", "experiment", "profile", "dataset", "evidence", "verdict"]


@dataclasses.dataclass(frozen=True)
class Spread:
    """A metric's seed standard deviation pooled over the settings of a study with two seeds or more."""

    std: float
    settings: int
    df: int  # sum over the settings of (seeds - 1)


def claims(summary: pd.DataFrame, registry: list[experiments.Experiment] | None = None) -> pd.DataFrame:
    """Verdicts on every claim of the registry, one row per claim and study with runs of its experiment."""
    done = summary[summary["n"] > 0]
    studies = list(done.groupby(STUDY, dropna=False, sort=False))
    rows = []
    for experiment in registry if registry is not None else experiments.registry():
        for claim in experiment.claims:
            base = {"claim": claim.text, "sources": list(claim.sources), "experiment": claim.experiment}
            judged = [
                {**base, "profile": profile, "dataset": dataset, **_judge(claim, study)}
                for (profile, dataset), study in studies
                if (study["experiment"] == experiment.name).any()
            ]
            untested = {"evidence": f"not tested: no complete run of {experiment.name}", "verdict": NOT_TESTED}
            in_each_study = [
                {**base, "profile": profile, "dataset": dataset, **untested} for (profile, dataset), _ in studies
            ]
            rows += judged or in_each_study or [{**base, "profile": None, "dataset": None, **untested}]
    return pd.DataFrame(rows, columns=COLUMNS)


def combine_verdicts(verdicts) -> str:
    verdicts = list(verdicts)
    if NOT_SUPPORTED in verdicts:
        return NOT_SUPPORTED
    if NOT_TESTED in verdicts:
        return NOT_TESTED
    return SUPPORTED if verdicts and all(v == SUPPORTED for v in verdicts) else INCONCLUSIVE


def pooled_spread(study: pd.DataFrame, metric: str) -> Spread | None:
    """The seed spread of `metric` in `study`, or None when no setting has two seeds."""
    rows = one_row_per_setting(study[(study["n"] >= 2) & study[f"{metric}_std"].notna()])
    if rows.empty:
        return None
    freedom = rows["n"] - 1
    return Spread(
        math.sqrt((freedom * rows[f"{metric}_std"] ** 2).sum() / freedom.sum()), len(rows), int(freedom.sum())
    )


def one_row_per_setting(rows: pd.DataFrame) -> pd.DataFrame:
    """Each setting once (a trial run by several experiments counts once): the row with the most
    seeds, the most accurate among equals."""
    order = rows.sort_values(["n", "test_accuracy_mean"], ascending=False, kind="stable")
    return order.drop_duplicates("setting_id")


def margin(a: dict, b: dict | float, metric: str, spread: Spread | None) -> tuple[float, str]:
    """The margin a difference of means must exceed, and how it was set, in words; `b` is a row or
    a fixed number (which has no error of its own)."""
    rows = [a] if isinstance(b, (int, float)) else [a, b]
    if metric in COUNTED_METRICS:
        return COUNTED_MARGIN * abs(_mean(b, metric)), "1% of the second: a count, without seed noise"
    if all(row["n"] >= 2 for row in rows):
        return 2 * math.sqrt(sum(row[f"{metric}_std"] ** 2 / row["n"] for row in rows)), "two standard errors"
    ones = sum(row["n"] == 1 for row in rows)
    seeds = "one seed" if len(rows) == 1 else "one seed a side" if ones == 2 else "one seed on one side"
    if spread is not None:
        return 2 * spread.std * math.sqrt(sum(1 / row["n"] for row in rows)), (
            f"{seeds}; from the seed spread measured in this study: s = {spread.std:.2f} pooled over "
            f"{spread.settings} setting{'s' if spread.settings > 1 else ''}"
        )
    if metric == "train_seconds":
        return 0.1 * max(
            a[f"{metric}_mean"], _mean(b, metric)
        ), f"{seeds} and no setting of this study with two seeds: 10%"
    return SINGLE_SEED_MARGIN, f"{seeds} and no setting of this study with two seeds: the fixed 1 point"


def compare_means(
    a: dict, b: dict | float, metric: str, expect: str = "higher", spread: Spread | None = None
) -> tuple[str, float, float, str]:
    """Verdict, difference of means (a - b), margin and how the margin was set, for two summary rows
    or a row and a fixed number."""
    diff = a[f"{metric}_mean"] - _mean(b, metric)
    limit, how = margin(a, b, metric, spread)
    if expect == "not_higher":
        verdict = NOT_SUPPORTED if diff > limit else SUPPORTED
    else:
        verdict = SUPPORTED if diff > limit else NOT_SUPPORTED if diff < -limit else INCONCLUSIVE
    return verdict, diff, limit, how


def _mean(side: dict | float, metric: str) -> float:
    return float(side) if isinstance(side, (int, float)) else side[f"{metric}_mean"]


def _judge(claim: experiments.Claim, study: pd.DataFrame) -> dict:
    """Evidence and verdict of one claim in one study (the summary rows of a profile and dataset)."""
    own = study[study["experiment"] == claim.experiment].to_dict("records")
    verdicts, evidence, compared = zip(*(_compare(own, study, c) for c in claim.comparisons))
    rows = [row for pair in compared for row in pair]
    scale = f"{_scale(rows)}: " if rows else ""
    return {"evidence": scale + "; ".join(dict.fromkeys(evidence)), "verdict": combine_verdicts(verdicts)}


def _compare(own: list[dict], study: pd.DataFrame, comparison: experiments.Comparison) -> tuple[str, str, list]:
    """Verdict, evidence and the rows compared (none when a side is missing)."""
    a = _select(own, comparison.first)
    fixed = comparison.than is not None
    b = None if a is None else comparison.than if fixed else _select(own, comparison.second, first=a, study=study)
    if b is None:
        missing = comparison.first if a is None else comparison.second
        return NOT_TESTED, f"not tested: {_missing(own, missing)}", []
    metric = comparison.metric
    verdict, diff, limit, how = compare_means(a, b, metric, comparison.expect, pooled_spread(study, metric))
    relation = "not clearly above" if comparison.expect == "not_higher" else "above"
    single = comparison.second == "best_single"
    b_label = f"best single kernel k={b['kernels']} (from {b['experiment']}, {_label(b)})" if single else None
    b_text = _number(b, metric) if fixed else _describe(b, metric, b_label)
    claimed = f"first {relation} {b_text if fixed else 'second'}"
    evidence = (
        f"{metric} {_describe(a, metric)} vs {b_text}: difference {_number(diff, metric, '+')} "
        f"(margin {_number(limit, metric)}: {how}; claim: {claimed}) -> {verdict}"
    )
    if metric in COUNTED_METRICS and not fixed:
        evidence += f"; wall time {a['train_seconds_mean']:.0f} s vs {b['train_seconds_mean']:.0f} s, for information"
    if single:
        evidence += _multi_kernel_note(a, b)
    return verdict, evidence, [a] if fixed else [a, b]


def _select(rows: list[dict], name: str, first: dict | None = None, study: pd.DataFrame | None = None) -> dict | None:
    if name in ("smallest", "largest"):
        numeric = [r for r in rows if isinstance(r["value"], (int, float)) and not isinstance(r["value"], bool)]
        if len({r["value"] for r in numeric}) < 2:
            return None
        pick = min if name == "smallest" else max
        return pick(numeric, key=lambda r: r["value"])
    if name == "best_single":
        return _most_accurate([r for r in _same_but_kernel(study, first) if not _is_multi(r)])
    if name == "multi":
        return _most_accurate([r for r in rows if _is_multi(r)])
    if name == "best_other":
        return _most_accurate([r for r in rows if r is not first])
    if name == "only":
        return rows[0] if len(rows) == 1 else None
    return next((r for r in rows if r["value_label"] == name), None)


def _same_but_kernel(study: pd.DataFrame, row: dict) -> list[dict]:
    """The study's rows whose settings equal `row`'s but for the kernel, each setting once."""
    same = study[study["setting_id_without_kernel"] == row["setting_id_without_kernel"]]
    return one_row_per_setting(same[same["setting_id"] != row["setting_id"]]).to_dict("records")


def _is_multi(row: dict) -> bool:
    return "-" in str(row["kernels"])


def _most_accurate(rows: list[dict]) -> dict | None:
    return max(rows, key=lambda r: r["test_accuracy_mean"], default=None)


def _multi_kernel_note(multi: dict, single: dict) -> str:
    """What the multi-kernel model costs against the single kernel, and how it mixes its kernels."""
    note = ""
    if not (pd.isna(multi["params"]) or pd.isna(single["params"])):
        note += f"; the multi-kernel model has {multi['params'] / single['params']:.2f}x the parameters"
    low, high = multi["mixing_weight_min"], multi["mixing_weight_max"]
    if not pd.isna(low):
        uniform = 1 / len(str(multi["kernels"]).split("-"))
        shape = "near uniform" if max(high / uniform, uniform / low) < NEAR_UNIFORM else "not uniform"
        note += f"; mixing weights {shape}: {low:.2f}..{high:.2f} over every layer and seed (uniform: {uniform:.2f})"
    return note


def _scale(rows: list[dict]) -> str:
    """At which scale a verdict holds: the epochs, training images and test accuracies compared."""
    epochs = " and ".join(dict.fromkeys(str(r["epochs"]) for r in rows))
    images = " and ".join(
        dict.fromkeys("unknown" if pd.isna(r["train_images"]) else f"{r['train_images']:,}" for r in rows)
    )
    low, high = (f(r["test_accuracy_mean"] for r in rows) for f in (min, max))
    accuracy = f"near {low:.0f}%" if round(low) == round(high) else f"{low:.0f} to {high:.0f}%"
    return f"at {epochs} epoch{'' if epochs == '1' else 's'}, {images} training images, test accuracies {accuracy}"


def _missing(rows: list[dict], name: str) -> str:
    vary = next((r["vary"] for r in rows if isinstance(r["vary"], str)), "value")
    short = SHORT_NAMES.get(vary, vary)
    ran = ", ".join(dict.fromkeys(r["value_label"] for r in rows))
    what = {
        "smallest": f"fewer than two values of {short}",
        "largest": f"fewer than two values of {short}",
        "multi": "no multi-kernel run",
        "best_single": "no single-kernel run at the multi-kernel run's setting",
        "best_other": "no other run",
        "only": f"{len(rows)} settings, where one row was expected",
    }.get(name, f"no run of {short}={name}")
    return f"{what} (ran: {ran})"


def _describe(row: dict, metric: str, label: str | None = None) -> str:
    spread = "" if pd.isna(row[f"{metric}_std"]) or metric in COUNTED_METRICS else f" ± {row[f'{metric}_std']:.2f}"
    return f"{label or _label(row)}: {_number(row[f'{metric}_mean'], metric)}{spread} (n={row['n']})"


def _label(row: dict) -> str:
    return f"{row['vary']}={row['value_label']}" if isinstance(row["vary"], str) else row["experiment"]


def _number(value: float, metric: str, sign: str = "") -> str:
    """Accuracies and seconds with two decimals; FLOPs in three significant digits."""
    return f"{value:{sign}#.3g}" if metric in COUNTED_METRICS else f"{value:{sign}.2f}"

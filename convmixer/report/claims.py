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
from pathlib import Path

import numpy as np
import pandas as pd

from .. import records
from ..study import experiments
from . import stats
from .labels import SHORT_NAMES, model_name

SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTED = "supported", "contradicted", "inconclusive", "not tested"
STUDY = ["profile", "dataset"]
NOT_HIGHER_BOUND = 1.0  # points: "not clearly above" when the interval's upper end stays below it
COUNTED_METRICS = ("train_flops",)  # computed from the settings, without seed noise
COUNTED_MARGIN = 0.01  # of the second row's value
NEAR_UNIFORM = 1.25  # mixing weights all within this factor of 1/(number of kernels)
CLAIM_RULE = (
    "Each claim compares two summary rows of one study (profile and dataset), or one row with a fixed "
    "number, on the metric its definition names. The effect is the difference of means with its 95% "
    "interval and a two-sided p-value. Where every run of both rows was scored on the same test images "
    "(their per-image predictions share one split), the comparison is paired: the exact McNemar test "
    "for one run a side, else a paired bootstrap over test images and seeds. Otherwise Welch's t-test "
    "on the seeds' accuracies; a side with one seed takes the study's seed spread pooled over its "
    "settings with two seeds or more, s^2 = sum((n_i - 1) s_i^2) / sum(n_i - 1), with its degrees of "
    "freedom; with no such setting the comparison is inconclusive. Holm's correction runs across every "
    "comparison of the report's claims, and the adjusted p is read at 5% (the intervals are each "
    "comparison's own, not adjusted). A comparison is supported "
    "when the effect lies in the claimed direction with adjusted p < 0.05, contradicted when it lies "
    "in the other with adjusted p < 0.05, inconclusive otherwise, and then shown with the smallest "
    "effect these seeds and images could have detected (80% power). A claim that the first is not "
    "clearly above the second is supported when the interval's upper end stays within its bound "
    "(1 point unless the claim says), contradicted when the first is significantly above. Training "
    "cost is compared on training FLOPs counted from the architecture (a count without seed noise: "
    f"a difference beyond {COUNTED_MARGIN:.0%} of the second row's value counts). A claim is "
    "contradicted if any comparison is, not tested if a side has no run, supported if all are, "
    "inconclusive otherwise; its effect, interval and p are those of the comparison that decides it. "
    "Each verdict states its scale: epochs, width, training images and test accuracies of the rows "
    "compared. A multi-kernel model's learned mixing weights are called near uniform when every weight "
    f"is within a factor {NEAR_UNIFORM:g} of 1/(number of kernels)."
)
COLUMNS = [
    "claim",
    "definition",
    "sources",
    "experiment",
    "profile",
    "dataset",
    "scale",
    "effect",
    "low",
    "high",
    "test",
    "p",
    "p_holm",
    "detectable",
    "evidence",
    "verdict",
    "inexact_resumes",
]


@dataclasses.dataclass(frozen=True)
class Spread:
    """A metric's seed standard deviation pooled over the settings of a study with two seeds or more."""

    std: float
    settings: int
    df: int  # sum over the settings of (seeds - 1)


def claims(summary: pd.DataFrame, registry: list[experiments.Experiment] | None = None) -> pd.DataFrame:
    """Verdicts on every claim of the registry, one row per claim and study with runs of its experiment
    (CLAIM_RULE), Holm's correction across the comparisons of each study."""
    done = summary[summary["n"] > 0]
    studies = list(done.groupby(STUDY, dropna=False, sort=False))
    rows = []
    for (profile, dataset), study in studies:
        judged = []
        for experiment in registry if registry is not None else experiments.registry():
            if not (study["experiment"] == experiment.name).any():
                continue
            for claim in experiment.claims:
                judged.append((claim, [_compare(study, claim, c) for c in claim.comparisons]))
        adjusted = iter(stats.holm([c.estimate.p if c.estimate else math.nan for _, found in judged for c in found]))
        for claim, found in judged:
            found = [dataclasses.replace(c, p_holm=next(adjusted)) for c in found]
            rows.append({**_base(claim), "profile": profile, "dataset": dataset, **_verdict(found)})
    tested = {(row["claim"], row["experiment"]) for row in rows}
    for experiment in registry if registry is not None else experiments.registry():
        for claim in experiment.claims:
            if (claim.text, claim.experiment) in tested:
                continue
            untested = {"evidence": f"not tested: no complete run of {experiment.name}", "verdict": NOT_TESTED}
            in_each_study = [
                {**_base(claim), "profile": profile, "dataset": dataset, **untested}
                for (profile, dataset), _ in studies
            ]
            rows += in_each_study or [{**_base(claim), "profile": None, "dataset": None, **untested}]
    return pd.DataFrame(rows, columns=COLUMNS)


def _base(claim: experiments.Claim) -> dict:
    return {
        "claim": claim.text,
        "definition": claim.definition,
        "sources": list(claim.sources),
        "experiment": claim.experiment,
    }


@dataclasses.dataclass(frozen=True)
class Compared:
    """One comparison of a claim in one study: what it found, before and after Holm's correction."""

    comparison: experiments.Comparison
    rows: list  # the summary rows compared (none when a side is missing)
    estimate: stats.Estimate | None  # None: not tested, a count, or no seed spread to test with
    evidence: str
    verdict: str | None = None  # set here for counts and untested comparisons, else from p_holm
    p_holm: float = math.nan

    def judged(self) -> str:
        if self.verdict is not None:
            return self.verdict
        e, expect = self.estimate, self.comparison.expect
        significant = self.p_holm < stats.ALPHA
        if expect == "not_higher":
            if significant and e.effect > 0:
                return CONTRADICTED
            return SUPPORTED if e.high <= self.comparison.bound else INCONCLUSIVE
        if significant:
            return SUPPORTED if e.effect > 0 else CONTRADICTED
        return INCONCLUSIVE


def _verdict(found: list[Compared]) -> dict:
    """The claim's verdict from its comparisons', and the numbers of the comparison that decides it."""
    verdicts = [c.judged() for c in found]
    verdict = combine_verdicts(verdicts)
    deciding = [c for c, v in zip(found, verdicts) if v == verdict and c.estimate is not None]
    decisive = max(deciding, key=lambda c: c.p_holm if verdict == SUPPORTED else -c.p_holm, default=None)
    rows = [row for c in found for row in c.rows]
    evidence = "; ".join(
        dict.fromkeys(
            f"{c.evidence} -> {v}{_detectable(c) if v == INCONCLUSIVE else ''}" for c, v in zip(found, verdicts)
        )
    )
    numbers = {}
    if decisive is not None:
        e = decisive.estimate
        numbers = {
            "effect": e.effect,
            "low": e.low,
            "high": e.high,
            "test": e.test,
            "p": e.p,
            "p_holm": decisive.p_holm,
            "detectable": e.detectable() if verdict == INCONCLUSIVE else math.nan,
        }
    resumed = sum(int(row.get("inexact_resumes") or 0) for row in {id(r): r for r in rows}.values())
    if resumed:
        evidence += (
            f"; its runs were resumed {resumed} time(s) before resumes were exact (each such resume "
            "replayed epoch 1's shuffle and augmentations)"
        )
    return {
        "scale": _scale(rows) if rows else None,
        "evidence": evidence,
        "verdict": verdict,
        "inexact_resumes": resumed,
        **numbers,
    }


def _detectable(compared: Compared) -> str:
    if compared.estimate is None or not math.isfinite(compared.estimate.se):
        return ""
    return f" (these seeds and images detect an effect of {compared.estimate.detectable():.2f} at 80% power)"


def combine_verdicts(verdicts) -> str:
    verdicts = list(verdicts)
    if CONTRADICTED in verdicts:
        return CONTRADICTED
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


def difference(a: dict, b: dict | float, metric: str, spread: Spread | None) -> stats.Estimate | None:
    """mean(a) - mean(b) (or - the number b) with its interval and p (CLAIM_RULE); None without a seed spread."""
    if not isinstance(b, (int, float)) and metric == "test_accuracy":
        paired = _paired(a, b)
        if paired is not None:
            return paired
    fixed = isinstance(b, (int, float))
    effect = a[f"{metric}_mean"] - _mean(b, metric)
    rows = [a] if fixed else [a, b]
    if all(row["n"] >= 2 for row in rows):
        parts = [(row[f"{metric}_std"] ** 2 / row["n"], row["n"] - 1) for row in rows]
        test = "one-sample t" if fixed else "Welch's t"
        return stats.t_estimate(effect, parts, f"{test} ({' and '.join(str(r['n']) for r in rows)} seeds)")
    if spread is None:
        return None
    variance = spread.std**2 * sum(1 / row["n"] for row in rows)
    how = f"t with the study's pooled seed spread, s = {spread.std:.2f} ({spread.df} df)"
    return stats.t_estimate(effect, [(variance, spread.df)], how)


def _paired(a: dict, b: dict) -> stats.Estimate | None:
    """The paired comparison of two rows whose every run was scored on one test split, else None."""
    found = [_correct_answers(row) for row in (a, b)]
    if any(f is None for f in found):
        return None
    shared = set(found[0]) & set(found[1])
    if not shared:
        return None
    split = max(shared, key=lambda key: len(found[0][key][0]))
    first, second = (np.stack(f[split]) for f in found)
    if len(first) == 1 and len(second) == 1:
        return stats.mcnemar(first[0], second[0])
    return stats.paired_bootstrap(first, second)


def _correct_answers(row: dict) -> dict | None:
    """{split hash: [which test images each run got right]} over the splits every run of `row` was
    scored on (its own predictions.npz or a rescoring); None when a run has none."""
    dirs = [Path(d) for d in str(row.get("run_dirs") or "").split("; ") if d]
    if not dirs:
        return None
    per_run = []
    for run_dir in dirs:
        scored = [records.read_predictions(run_dir / records.PREDICTIONS_FILE)]
        scored += [predictions for _, predictions in records.read_rescorings(run_dir)]
        per_run.append({p.split["files_sha256"]: p.predicted == p.labels for p in scored if p is not None})
    shared = set.intersection(*(set(run) for run in per_run))
    return {key: [run[key] for run in per_run] for key in shared} or None


def _mean(side: dict | float, metric: str) -> float:
    return float(side) if isinstance(side, (int, float)) else side[f"{metric}_mean"]


def _compare(study: pd.DataFrame, claim: experiments.Claim, comparison: experiments.Comparison) -> Compared:
    own = study[study["experiment"] == claim.experiment].to_dict("records")
    a = _select(own, comparison.first)
    fixed = comparison.than is not None
    b = None if a is None else comparison.than if fixed else _select(own, comparison.second, first=a, study=study)
    if b is None:
        missing = comparison.first if a is None else comparison.second
        return Compared(comparison, [], None, f"not tested: {_missing(own, missing)}", NOT_TESTED)
    metric = comparison.metric
    rows = [a] if fixed else [a, b]
    single = comparison.second == "best_single"
    b_label = f"best single kernel k={b['kernels']} (from {b['experiment']}, {_label(b)})" if single else None
    b_text = _number(b, metric) if fixed else _describe(b, metric, b_label)
    relation = "not clearly above" if comparison.expect == "not_higher" else "above"
    claimed = f"first {relation} {b_text if fixed else 'second'}"
    head = f"{metric} {_describe(a, metric)} vs {b_text}"
    extra = _multi_kernel_note(a, b) if single else ""
    if metric in COUNTED_METRICS:
        diff, limit = a[f"{metric}_mean"] - b[f"{metric}_mean"], COUNTED_MARGIN * abs(b[f"{metric}_mean"])
        verdict = SUPPORTED if diff > limit else CONTRADICTED if diff < -limit else INCONCLUSIVE
        if comparison.expect == "not_higher":
            verdict = CONTRADICTED if diff > limit else SUPPORTED
        wall = f"; wall time {a['train_seconds_mean']:.0f} s vs {b['train_seconds_mean']:.0f} s, for information"
        evidence = (
            f"{head}: difference {_number(diff, metric, '+')} (a count: 1% of the second is "
            f"{_number(limit, metric)}; claim: {claimed}){wall}"
        )
        return Compared(comparison, rows, None, evidence + extra, verdict)
    estimate = difference(a, b, metric, pooled_spread(study, metric))
    if estimate is None:
        evidence = f"{head}: one seed and no setting of this study with two seeds, so no seed spread to test with"
        return Compared(comparison, rows, None, evidence + extra, INCONCLUSIVE)
    evidence = (
        f"{head}: difference {estimate.effect:+.2f} [{estimate.low:+.2f}, {estimate.high:+.2f}] "
        f"({estimate.test}, p = {estimate.p:.3g}; claim: {claimed})"
    )
    return Compared(comparison, rows, estimate, evidence + extra)


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
    """At which scale a verdict holds: the epochs, width, training images and test accuracies compared."""
    widths = " and ".join(dict.fromkeys(model_name(r["width"], r["depth"]) for r in rows))
    epochs = " and ".join(dict.fromkeys(str(r["epochs"]) for r in rows))
    images = " and ".join(
        dict.fromkeys("unknown" if pd.isna(r["train_images"]) else f"{r['train_images']:,}" for r in rows)
    )
    low, high = (f(r["test_accuracy_mean"] for r in rows) for f in (min, max))
    accuracy = f"near {low:.0f}%" if round(low) == round(high) else f"{low:.0f} to {high:.0f}%"
    return (
        f"{widths} at {epochs} epoch{'' if epochs == '1' else 's'}, {images} training images, "
        f"test accuracies {accuracy}"
    )


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

"""Verdicts on the studies' claims, from collated summaries.

The claims live in the experiment files (params/experiments/*.yaml, `claims`): each is a list
of comparisons of two summary rows of its experiment. A row is selected by its value label
('adamw', '7'), by 'smallest' or 'largest' value, or as 'multi' (best multi-kernel row),
'best_single' (best single-kernel row) or 'best_other' (best row other than the first).
"""

from __future__ import annotations

import math

import pandas as pd

from . import experiments

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_TESTED = "supported", "not supported", "inconclusive", "not tested"
SINGLE_SEED_MARGIN = 1.0  # percentage points; for train_seconds: 10% of the larger mean
CLAIM_RULE = (
    "Each claim compares means over seeds. A difference counts when it exceeds a margin: two "
    "standard errors of the difference (sqrt(s_a^2/n_a + s_b^2/n_b)) when both sides have at least "
    "two seeds, otherwise 1 percentage point of accuracy or 10% of training time. A comparison is "
    "supported when the difference exceeds the margin in the claimed direction, not supported when "
    "it exceeds it in the other direction, inconclusive otherwise; not tested when a side has no run. "
    "A claim is not supported if any comparison is not, supported if all are, not tested if any side "
    "is missing, otherwise inconclusive."
)
COLUMNS = ["claim", "sources", "experiment", "profile", "dataset", "evidence", "verdict"]


def claims(summary: pd.DataFrame, registry: list[experiments.Experiment] | None = None) -> pd.DataFrame:
    """Verdicts on every claim of the registry, one row per claim and (profile, dataset) with runs."""
    done = summary[summary["n"] > 0]
    rows = []
    for experiment in registry if registry is not None else experiments.registry():
        runs_of = done[done["experiment"] == experiment.name]
        for claim in experiment.claims:
            base = {"claim": claim.text, "sources": list(claim.sources), "experiment": claim.experiment}
            if runs_of.empty:
                rows.append(
                    {
                        **base,
                        "profile": None,
                        "dataset": None,
                        "evidence": f"no complete runs of {experiment.name}",
                        "verdict": NOT_TESTED,
                    }
                )
            for (profile, dataset), group in runs_of.groupby(["profile", "dataset"], dropna=False, sort=False):
                verdicts, evidence = zip(*(_compare(group, c) for c in claim.comparisons))
                rows.append(
                    {
                        **base,
                        "profile": profile,
                        "dataset": dataset,
                        "evidence": "; ".join(dict.fromkeys(evidence)),
                        "verdict": combine_verdicts(verdicts),
                    }
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def combine_verdicts(verdicts) -> str:
    verdicts = list(verdicts)
    if NOT_SUPPORTED in verdicts:
        return NOT_SUPPORTED
    if NOT_TESTED in verdicts:
        return NOT_TESTED
    return SUPPORTED if verdicts and all(v == SUPPORTED for v in verdicts) else INCONCLUSIVE


def compare_means(a: dict, b: dict, metric: str, expect: str = "higher") -> tuple[str, float, float]:
    """Verdict, difference of means (a - b) and margin for one comparison of summary rows."""
    diff = a[f"{metric}_mean"] - b[f"{metric}_mean"]
    if a["n"] >= 2 and b["n"] >= 2:
        margin = 2 * math.sqrt(a[f"{metric}_std"] ** 2 / a["n"] + b[f"{metric}_std"] ** 2 / b["n"])
    elif metric == "train_seconds":
        margin = 0.1 * max(a[f"{metric}_mean"], b[f"{metric}_mean"])
    else:
        margin = SINGLE_SEED_MARGIN
    if expect == "not_higher":
        verdict = NOT_SUPPORTED if diff > margin else SUPPORTED
    else:
        verdict = SUPPORTED if diff > margin else NOT_SUPPORTED if diff < -margin else INCONCLUSIVE
    return verdict, diff, margin


def _compare(group: pd.DataFrame, comparison: experiments.Comparison) -> tuple[str, str]:
    rows = group.to_dict("records")
    a = _select(rows, comparison.first)
    b = _select(rows, comparison.second, exclude=a)
    if a is None or b is None:
        missing = comparison.first if a is None else comparison.second
        return NOT_TESTED, f"no runs for {missing!r} among {_values(rows)}"
    verdict, diff, margin = compare_means(a, b, comparison.metric, comparison.expect)
    relation = "not clearly above" if comparison.expect == "not_higher" else "above"
    metric = comparison.metric
    return verdict, (
        f"{metric} {_describe(a, metric)} vs {_describe(b, metric)}: difference {diff:+.2f} "
        f"(margin {margin:.2f}; claim: first {relation} second) -> {verdict}"
    )


def _select(rows: list[dict], name: str, exclude: dict | None = None) -> dict | None:
    if name in ("smallest", "largest"):
        numeric = [r for r in rows if isinstance(r["value"], (int, float)) and not isinstance(r["value"], bool)]
        if len({r["value"] for r in numeric}) < 2:
            return None
        pick = min if name == "smallest" else max
        return pick(numeric, key=lambda r: r["value"])
    if name in ("multi", "best_single", "best_other"):
        multi = {"multi": True, "best_single": False}.get(name)
        pool = [r for r in rows if r is not exclude and (multi is None or ("-" in str(r["kernels"])) == multi)]
        return max(pool, key=lambda r: r["test_accuracy_mean"], default=None)
    return next((r for r in rows if r["value_label"] == name), None)


def _describe(row: dict, metric: str) -> str:
    spread = "" if pd.isna(row[f"{metric}_std"]) else f" ± {row[f'{metric}_std']:.2f}"
    mean = row[f"{metric}_mean"]
    return f"{row['vary'] or 'value'}={row['value_label']}: {mean:.2f}{spread} (n={row['n']})"


def _values(rows: list[dict]) -> str:
    return "{" + ", ".join(sorted({r["value_label"] for r in rows}, key=str)) + "}"

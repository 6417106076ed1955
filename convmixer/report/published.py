"""The published numbers (params/published.yaml) and their match with our summaries."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .. import catalog, paths
from ..config import load_yaml
from ..flops import model_flops
from . import stats
from .claims import pooled_spread
from .collate import missing, whole
from .labels import kernels_label, model_name

MATCH_KEYS = ["dataset", "width", "depth", "patch_size", "kernels", "optimizer", "activation", "epochs", "evaluate"]
# The experiment whose trials are published settings: they are matched with every published
# number of their setting, whichever experiment the number belongs to.
REPLICATION = "replication"
NOT_RUN = "not run"
VERDICT_RULE = (
    "The difference d = our mean - the published number, in points, with its 95% interval. Its variance "
    "sums the seed spread s of our runs, counted for our mean of n runs and for the published single run "
    "(s^2 (1 + 1/n), with n - 1 degrees of freedom), and the binomial sampling error of both test splits, "
    "a (100 - a) / images; the t quantile takes the Welch-Satterthwaite degrees of freedom of that sum. "
    "With one run of ours, s is the seed spread of the same study pooled over its settings with two seeds "
    "or more (with their degrees of freedom), and the verdict says so; with no such setting it is "
    "inconclusive. Reproduced when the whole interval lies within the source's equivalence bound "
    "(params/published.yaml, +-B points), differs when it lies wholly beyond it, inconclusive otherwise."
)


class PublishedError(ValueError):
    """A malformed published.yaml, reported as one readable line."""


def source_labels(path: str | Path | None = None) -> dict[str, str]:
    """The short name of each source (its `label`), by key."""
    sources = load_yaml(path or paths.published_path()).get("sources") or {}
    return {key: source.get("label") or key for key, source in sources.items()}


def source_details(source: str, path: str | Path | None = None) -> dict:
    """Everything published.yaml says of one source."""
    return (load_yaml(path or paths.published_path()).get("sources") or {}).get(source) or {}


def sources_table(path: str | Path | None = None) -> pd.DataFrame:
    """The sources of the published numbers, with full citations."""
    sources = load_yaml(path or paths.published_path())["sources"]
    return pd.DataFrame(
        [
            {
                "key": key,
                "source": s.get("label") or key,
                "citation": " ".join(s["citation"].split()),
                "url": s.get("url"),
                "note": " ".join(str(s.get("note") or "").split()),
            }
            for key, s in sources.items()
        ]
    )


def claims_not_tested(path: str | Path | None = None) -> list[dict]:
    """The original paper's central claims that no experiment tests, each with its reason."""
    return list(load_yaml(path or paths.published_path()).get("claims_not_tested") or [])


# What labels a published number in `findings`: the fields that vary among a source's numbers.
FINDING_FIELDS = {
    "model": "{}",
    "patch_size": "p={}",
    "kernels": "k={}",
    "optimizer": "{}",
    "epochs": "{} epochs",
    "metric": "{}",
}


def findings(sources, experiment: str, published: pd.DataFrame) -> str:
    """What `sources` published for `experiment`, in words: per source and dataset, what their
    numbers share, then each number labelled by what varies ('Columbia report, tiny-imagenet,
    ConvMixer-512/8, k=9, adam, val accuracy: p=14 A% (T s), p=11 B% (U s), ...')."""
    rows = published[published["source"].isin(list(sources)) & (published["experiment"] == experiment)]
    rows = rows.assign(
        model=[model_name(w, d) for w, d in zip(rows["width"], rows["depth"])],
        metric=rows["metric"].str.replace("_", " "),
    )
    labels = source_labels()
    parts = []
    for (source, dataset), group in rows.groupby(["source", "dataset"], sort=False):
        known = [f for f in FINDING_FIELDS if group[f].notna().any()]
        varying = [f for f in known if group[f].astype(str).nunique() > 1]
        shared = [FINDING_FIELDS[f].format(_plain(group[f].iloc[0])) for f in known if f not in varying]
        numbers = [
            " ".join(FINDING_FIELDS[f].format(_plain(r[f])) for f in varying if not missing(r[f]))
            + f" {r['value']:g}%"
            + ("" if missing(r["seconds"]) else f" ({r['seconds']:,.0f} s)")
            for r in group.to_dict("records")
        ]
        parts.append(
            f"{', '.join([labels.get(source, source), dataset, *shared])}: {', '.join(n.strip() for n in numbers)}"
        )
    return "; ".join(parts)


def _plain(value) -> str:
    """7.0 (a whole number that pandas made a float) as '7'; anything else as it is."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def load_published(path: str | Path | None = None) -> pd.DataFrame:
    """The published numbers, one row per (result, experiment it belongs to).

    A result that belongs to no experiment (e.g. ImageNet) keeps one row with experiment None.
    `compared_with` names the summary metric it is compared with; `citation` its source.
    """
    path = path or paths.published_path()
    data = load_yaml(path)
    sources, metrics = data.get("sources") or {}, data.get("metrics") or {}
    rows = []
    for i, result in enumerate(data.get("results") or []):
        where = f"{path}: results[{i}]"
        for key in ("source", "dataset", "width", "depth", "patch_size", "metric", "value"):
            if result.get(key) is None:
                raise PublishedError(f"{where}: missing {key!r}")
        if result["source"] not in sources:
            raise PublishedError(f"{where}: unknown source {result['source']!r} (known: {', '.join(sources)})")
        if sources[result["source"]].get("equivalence_bound") is None:
            raise PublishedError(f"{path}: source {result['source']!r} has no equivalence_bound")
        if result["metric"] not in metrics:
            raise PublishedError(f"{where}: unknown metric {result['metric']!r} (known: {', '.join(metrics)})")
        if (result.get("kernel_size") is None) == (result.get("kernel_sizes") is None):
            raise PublishedError(f"{where}: give exactly one of 'kernel_size' and 'kernel_sizes'")
        base = {key: result.get(key) for key in MATCH_KEYS if key != "kernels"}
        dataset = result["dataset"]
        base.update(
            {
                "result": i,
                "test_images_published": catalog.DATASETS[dataset].test_images if dataset in catalog.DATASETS else None,
                "train_flops_published": _train_flops(result),
                "kernel_size": result.get("kernel_size"),
                "source": result["source"],
                "citation": " ".join(sources[result["source"]]["citation"].split()),
                "kernels": kernels_label(result),
                "metric": result["metric"],
                "compared_with": metrics[result["metric"]],
                "value": float(result["value"]),
                "params": result.get("params"),
                "seconds": result.get("seconds"),
                "note": result.get("note"),
                "equivalence_bound": float(sources[result["source"]]["equivalence_bound"]),
            }
        )
        for experiment in result.get("experiments") or [None]:
            rows.append({"experiment": experiment, **base})
    return pd.DataFrame(rows)


def _train_flops(result: dict) -> float:
    """What training the published setting costs, counted (convmixer.flops): the dataset's full
    training split (convmixer.catalog) for the published epochs. NaN where the epochs or the
    dataset's sizes are unknown."""
    dataset = catalog.DATASETS.get(result["dataset"])
    sizes = [getattr(dataset, key, None) for key in ("train_images", "image_size", "num_classes")]
    if result.get("epochs") is None or None in sizes:
        return math.nan
    images, size, classes = sizes
    kernels = tuple(result.get("kernel_sizes") or [result["kernel_size"]])
    per_image = model_flops(result["width"], result["depth"], kernels, result["patch_size"], size, classes)
    return per_image["training_flops"] * images * result["epochs"]


def compare_with_published(summary: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Published and reproduced accuracy, parameters and time side by side, with differences.

    A published row is matched with the summary rows of its experiment that agree on dataset,
    width, depth, patch size, kernel size(s) and, where the source states them, optimizer,
    activation and epochs; rows of the `replication` experiment (published settings retrained
    exactly) are matched with every published number of their setting. Each match gives one
    row with a verdict (VERDICT_RULE); a published number without a match keeps one row with
    the reproduced side empty, so a reader sees what is missing.
    """
    rows = []
    replicated = set()
    for pub in published.drop_duplicates("result").to_dict("records"):
        for ours in _matches(summary, pub, REPLICATION):
            rows.append(_comparison_row({**pub, "experiment": REPLICATION}, ours, summary))
            replicated.add(pub["result"])
    for pub in published.to_dict("records"):
        matches = _matches(summary, pub, pub["experiment"])
        if matches or pub["result"] not in replicated:  # a number retrained exactly has its row
            rows.extend(_comparison_row(pub, ours, summary) for ours in matches)
            if not matches:
                rows.append({**_comparison_row(pub, None), **cost_here(pub, summary)})
    table = pd.DataFrame(rows, columns=_COMPARISON_COLUMNS)
    whole = ["patch_size", "epochs", "epochs_reproduced", "n", "params_published", "params_reproduced", "params_diff"]
    return table.astype({name: "Int64" for name in whole + ["test_images"]})


def cost_here(pub: dict, summary: pd.DataFrame) -> dict:
    """The hours a published setting without a run would train for where these runs trained: its
    training FLOPs (`_train_flops`) at the FLOP rate of the trained (not reused) runs nearest to it,
    timed at their median epoch's pace (`collate.steady_train_seconds`: a paused epoch does not count;
    their whole training time where the history has no epoch times):
    the same dataset, width, patch size and kernels; else dataset, width and patch size; else
    dataset and width; else the dataset; else all runs. An estimate: the rate a shape reaches
    varies (the depthwise convolution most), so the basis names the runs and their devices."""
    trained = summary["n"] - summary["n_reused"]
    rated = summary[(trained > 0) & (summary["steady_train_seconds"] > 0) & (summary["train_flops_mean"] > 0)]
    if missing(pub["train_flops_published"]) or rated.empty:
        return {}
    architecture = (("width", "patch_size", "kernels"), ("width", "patch_size"), ("width",), ())
    scopes = [scope for keys in architecture for scope in (("dataset", *keys), keys)]

    def sharing(scope: tuple) -> pd.DataFrame:  # the rated runs equal to `pub` on every key of `scope`
        return rated[(rated[list(scope)] == [pub[key] for key in scope]).all(axis=1)]

    nearest = next(runs for runs in map(sharing, scopes) if len(runs))  # the last scope, (), keeps them all
    weight = nearest["n"] - nearest["n_reused"]
    rate = (nearest["train_flops_mean"] * weight).sum() / (nearest["steady_train_seconds"] * weight).sum()
    models = [  # one entry per dataset and model size, listing the patch and kernel sizes its runs had
        f"{dataset} {model_name(width, depth)} p={_listed(runs['patch_size'])} k={_listed(runs['kernels'])}"
        for (dataset, width, depth), runs in nearest.groupby(["dataset", "width", "depth"])
    ]
    devices = sorted({device for text in nearest["devices"] for device in str(text).split("; ") if device})
    where = "; ".join(devices) or "an unrecorded device"
    return {
        "hours_here": pub["train_flops_published"] / rate / 3600,
        "cost_basis": f"{pub['train_flops_published'] / 1e12:,.0f} TFLOP at {rate / 1e9:,.0f} GFLOP/s, "
        f"the median-epoch pace of the runs of {', '.join(models)} on {where}",
    }


def _listed(values: pd.Series) -> str:
    """Distinct values in numeric order, '/' between them: '7/11/14', or '9/2-4-6-8-10' for kernels."""
    numbers = {str(v): [int(n) for n in str(v).split("-")] for v in values}
    return "/".join(sorted(numbers, key=numbers.get))


def _matches(summary: pd.DataFrame, pub: dict, experiment) -> list[dict]:
    mask = summary["experiment"] == experiment
    for key in MATCH_KEYS:
        if not missing(pub[key]):
            mask &= summary[key] == pub[key]
    return summary[mask].to_dict("records")


def difference(row: dict, spread: stats.Estimate | None) -> tuple[stats.Estimate | None, str]:
    """The reproduced-minus-published difference of a comparison row with its interval (VERDICT_RULE),
    and where its seed spread came from; None when no seed spread is known."""
    n, std = row["n"], row["accuracy_std"]
    if n >= 2 and not missing(std):
        seeds, how = (std**2 * (1 + 1 / n), n - 1), f"seed spread of its {n} runs"
    elif spread is not None:
        seeds = (spread.std**2 * (1 + 1 / n), spread.df)
        how = f"one run: the study's pooled seed spread, s = {spread.std:.2f} ({spread.df} df)"
    else:
        return None, "one run and no setting of the study with two seeds: seed spread unknown"
    parts = [seeds]
    parts += [
        (stats.binomial_variance(a, images), math.inf)
        for a, images in (
            (row["accuracy_reproduced"], row["test_images"]),
            (row["accuracy_published"], row["test_images_published"]),
        )
        if not missing(images)
    ]
    return stats.t_estimate(row["accuracy_diff"], parts, f"t interval, {how}"), how


def verdict(row: dict, spread, bound: float) -> dict:
    """The verdict columns of a comparison row (VERDICT_RULE)."""
    if not row["n"]:
        return {"verdict": NOT_RUN}
    estimate, how = difference(row, spread)
    if estimate is None:
        return {"verdict": stats.INCONCLUSIVE, "test": how, "bound": bound}
    return {
        "verdict": stats.equivalence(estimate, bound),
        "diff_low": estimate.low,
        "diff_high": estimate.high,
        "test": estimate.test,
        "bound": bound,
    }


_COMPARISON_COLUMNS = [
    "experiment",
    "source",
    "dataset",
    "model",
    "patch_size",
    "kernels",
    "optimizer",
    "epochs",
    "epochs_reproduced",
    "metric",
    "accuracy_published",
    "accuracy_reproduced",
    "accuracy_std",
    "n",
    "accuracy_diff",
    "test_images",
    "test_images_published",
    "scored",
    "diff_low",
    "diff_high",
    "bound",
    "test",
    "verdict",
    "inexact_resumes",
    "params_published",
    "params_reproduced",
    "params_diff",
    "seconds_published",
    "seconds_reproduced",
    "seconds_diff",
    "hours_here",
    "cost_basis",
    "note",
    "run_dirs",
]


def _comparison_row(pub: dict, ours: dict | None, summary: pd.DataFrame | None = None) -> dict:
    ours = ours or {}
    field = pub["compared_with"]
    # Scored on part of the test split, and every run's model rescored on the whole of it: that one.
    rescored = field == "test_accuracy" and not missing(ours.get("rescored_test_accuracy_mean", math.nan))
    if rescored:
        field = "rescored_test_accuracy"
    reproduced = {
        "accuracy": ours.get(f"{field}_mean", math.nan),
        "params": ours.get("params", math.nan),
        "seconds": ours.get("train_seconds_mean", math.nan),
    }
    published = {"accuracy": pub["value"], "params": pub["params"], "seconds": pub["seconds"]}
    row = {
        key: pub[key]
        for key in ("experiment", "source", "dataset", "patch_size", "kernels", "optimizer", "epochs", "metric", "note")
    }
    row.update(
        {
            "model": model_name(pub["width"], pub["depth"]),
            "epochs_reproduced": ours.get("epochs", math.nan),
            "accuracy_std": ours.get(f"{field}_std", math.nan),
            "n": ours.get("n", 0),
            "run_dirs": ours.get("run_dirs", ""),
        }
    )
    for name in ("accuracy", "params", "seconds"):
        mine, theirs = _number(reproduced[name]), _number(published[name])
        row.update({f"{name}_published": theirs, f"{name}_reproduced": mine, f"{name}_diff": mine - theirs})
    row["test_images"] = _number(ours.get("rescored_test_images" if rescored else "test_images", math.nan))
    row["scored"] = (
        f"model.keras rescored on {row['test_images']:,.0f} images; recorded on {ours['test_images']:,}"
        if rescored
        else "as recorded"
        if ours
        else ""
    )
    row["test_images_published"] = pub.get("test_images_published")
    row["inexact_resumes"] = ours.get("inexact_resumes", 0)
    spread = None
    if ours:  # the seed spread of the study the run belongs to
        study = summary[(summary["profile"] == ours["profile"]) & (summary["dataset"] == ours["dataset"])]
        spread = pooled_spread(study, pub["compared_with"])  # the seed spread as recorded
    row.update(verdict(row, spread, pub["equivalence_bound"]))
    row.update(
        {
            key: whole(row[key])
            for key in ("epochs", "epochs_reproduced", "params_published", "params_reproduced", "params_diff")
        }
    )
    return row


def _number(value) -> float:
    return math.nan if missing(value) else float(value)


def own_datasets(published_rows: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The published numbers on the datasets these runs trained on (a CIFAR-10 figure shows no
    Tiny-ImageNet numbers)."""
    return published_rows[published_rows["dataset"].isin(set(runs["dataset"].dropna()))]

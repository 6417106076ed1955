"""The experiment registry (params/experiments/*.yaml) and the profiles (params/profiles/*.yaml).

An experiment file says what an experiment *is*: its title, its place in the report, the
setting it varies and the values and seeds by default, its figures and the published claims
it tests. A profile (params/profiles/*.yaml) says *how big*: the trial settings of every
experiment, and per experiment other values, seeds or settings. Settings are applied in this
order, each layer winning over the ones before it:

    experiment file `trial`  <  profile `trial`  <  profile `experiments.<name>.trial`
    <  overrides (notebook or command line)  <  the varied value and the seed

Every trial is planned and validated before the first one trains. Adding an experiment is one
YAML file here and one notebook (docs/experiments.md, "Adding an experiment").
"""

from __future__ import annotations

import dataclasses
import math

from .. import paths, records
from ..config import ConfigError, check_keys, load_yaml

EXPERIMENT_KEYS = {"title", "order", "description", "vary", "values", "seeds", "trial", "figures", "claims"}
PROFILE_KEYS = {"description", "trial", "experiments"}
PROFILE_EXPERIMENT_KEYS = {"values", "seeds", "trial"}
FIGURES = ("sweep", "mixing_weights")  # what plots.py draws for an experiment besides learning curves
CLAIM_KEYS = {"claim", "definition", "sources", "compare"}
COMPARISON_KEYS = {"first", "second", "than", "metric", "expect", "bound"}  # `second` or `than`; `bound`: not_higher
EXPECTATIONS = ("higher", "not_higher")
# The settings that decide which images a trial sees: trials sharing them share one load.
DATA_FIELDS = ("dataset", "data_dir", "image_size", "train_subset", "val_size", "test_subset")
# `vary: setting`: each value is a named mapping of settings (a published setting), not one field.
NAMED_SETTING = "setting"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One comparison of two summary rows of an experiment (see claims.py for the selectors), or of
    one row with a fixed number `than` (then `second` is None)."""

    first: str
    second: str | None
    metric: str
    expect: str  # "higher": first's mean clearly above second's; "not_higher": not clearly above
    than: float | None = None
    bound: float = 1.0  # points; "not_higher" holds when the difference's interval stays below it


@dataclasses.dataclass(frozen=True)
class Claim:
    text: str
    definition: str  # what is measured, on which images, at which point of training, and what size the source meant
    sources: tuple[str, ...]  # keys of params/published.yaml `sources`
    experiment: str
    comparisons: tuple[Comparison, ...]


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    order: int
    description: str
    vary: str | None
    values: list
    seeds: list
    trial: dict
    figures: tuple[str, ...]
    claims: tuple[Claim, ...]


def available(kind: str) -> list[str]:
    return sorted(p.stem for p in (paths.params_dir() / kind).glob("*.yaml"))


def load_named(kind: str, name: str, allowed: set[str]) -> dict:
    """Load params/<kind>/<name>.yaml, refusing unknown names and keys."""
    names = available(kind)
    if name not in names:
        raise ConfigError(f"unknown {kind[:-1]} {name!r} (choose from: {', '.join(names)})")
    path = paths.params_dir() / kind / f"{name}.yaml"
    values = load_yaml(path)
    check_keys(values, allowed, path)
    return values


def profile_description(profile: str) -> str:
    """What a profile runs and why at its scale, in one paragraph ('' for a profile that is gone)."""
    if profile not in available("profiles"):
        return ""
    return " ".join(str(load_named("profiles", profile, PROFILE_KEYS).get("description") or "").split())


def _mapping(value, where) -> dict:
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(value).__name__} {value!r}")
    return value or {}


def _list(value, where) -> list:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list, got {type(value).__name__} {value!r}")
    return value


# ---- the registry -------------------------------------------------------------------------
def load_experiment(name: str) -> Experiment:
    spec = load_named("experiments", name, EXPERIMENT_KEYS)
    where = f"experiment {name}"
    for key in ("title", "order"):
        if spec.get(key) is None:
            raise ConfigError(f"{where}: missing {key!r}")
    if not isinstance(spec["order"], int):
        raise ConfigError(f"{where}: order must be an integer, got {spec['order']!r}")
    figures = tuple(_list(spec.get("figures", []), f"{where}: figures"))
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        raise ConfigError(f"{where}: unknown figure {unknown[0]!r} (choose from: {', '.join(FIGURES)})")
    if "sweep" in figures and not spec.get("vary"):
        raise ConfigError(f"{where}: a sweep figure needs a varied setting ('vary')")
    claims = tuple(
        _claim(raw, name, f"{where}: claims[{i}]")
        for i, raw in enumerate(_list(spec.get("claims", []), f"{where}: claims"))
    )
    return Experiment(
        name=name,
        title=str(spec["title"]),
        order=spec["order"],
        description=" ".join(str(spec.get("description") or "").split()),
        vary=spec.get("vary"),
        values=_list(spec.get("values", [None]), f"{where}: values"),
        seeds=_list(spec.get("seeds", [0]), f"{where}: seeds"),
        trial=_mapping(spec.get("trial"), f"{where}: trial"),
        figures=figures,
        claims=claims,
    )


def _claim(raw, experiment: str, where: str) -> Claim:
    raw = _mapping(raw, where)
    check_keys(raw, CLAIM_KEYS, where)
    sources = _list(raw.get("sources"), f"{where}: sources")
    comparisons = []
    for i, comparison in enumerate(_list(raw.get("compare"), f"{where}: compare")):
        here = f"{where}: compare[{i}]"
        comparison = _mapping(comparison, here)
        check_keys(comparison, COMPARISON_KEYS, here)
        missing = sorted(COMPARISON_KEYS - set(comparison) - {"second", "than", "bound"})
        if missing:
            raise ConfigError(f"{here}: missing {missing[0]!r}")
        if ("second" in comparison) == ("than" in comparison):
            raise ConfigError(f"{here}: give either 'second' (a row) or 'than' (a number)")
        than = comparison.get("than")
        if "than" in comparison and (
            isinstance(than, bool) or not isinstance(than, (int, float)) or not math.isfinite(than)
        ):
            raise ConfigError(f"{here}: 'than' must be a finite number, got {than!r}")
        if "than" in comparison and comparison.get("metric") == "train_flops":
            raise ConfigError(f"{here}: 'than' needs a measured metric: train_flops is a count, compare two rows")
        metrics = [*records.summary_metrics(), "gap", "train_flops"]  # the metrics claims compare
        if comparison["metric"] not in metrics:
            raise ConfigError(f"{here}: unknown metric {comparison['metric']!r} (choose from: {', '.join(metrics)})")
        if comparison["expect"] not in EXPECTATIONS:
            raise ConfigError(f"{here}: expect must be one of {', '.join(EXPECTATIONS)}, got {comparison['expect']!r}")
        second = str(comparison["second"]) if "second" in comparison else None
        bound = comparison.get("bound", 1.0)
        if comparison["expect"] != "not_higher" and "bound" in comparison:
            raise ConfigError(f"{here}: 'bound' belongs to expect: not_higher only")
        comparisons.append(
            Comparison(
                str(comparison["first"]),
                second,
                comparison["metric"],
                comparison["expect"],
                None if than is None else float(than),
                float(bound),
            )
        )
    if not raw.get("claim") or not raw.get("definition") or not sources or not comparisons:
        raise ConfigError(f"{where}: a claim needs 'claim' (its text), 'definition', 'sources' and 'compare'")
    text, definition = (" ".join(str(raw[key]).split()) for key in ("claim", "definition"))
    return Claim(text, definition, tuple(sources), experiment, tuple(comparisons))


def registry() -> list[Experiment]:
    """Every experiment of params/experiments/, in report order."""
    return sorted((load_experiment(name) for name in available("experiments")), key=lambda e: (e.order, e.name))


def experiment_names() -> list[str]:
    return [experiment.name for experiment in registry()]

"""The experiment registry (params/experiments/*.yaml), profiles, and the trials they make.

An experiment file says what an experiment *is*: its title, its place in the report, the
setting it varies and the values and seeds by default, its figures and the published claims
it tests. A profile (params/profiles/*.yaml) says *how big*: the trial settings of every
experiment, and per experiment other values, seeds or settings. Settings are applied in this
order, each layer winning over the ones before it:

    experiment file `trial`  <  profile `trial`  <  profile `experiments.<name>.trial`
    <  overrides (notebook or command line)  <  the varied value and the seed

Every trial is planned and validated before the first one trains. Adding an experiment is one
YAML file here and one notebook (README, "Adding an experiment").
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import pandas as pd

from . import paths, records
from .config import ConfigError, TrialConfig, check_keys, load_yaml

log = logging.getLogger(__name__)

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


# ---- trials -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Trial:
    experiment: str
    profile: str
    run_name: str
    vary: str | None
    value: object
    seed: int
    config: TrialConfig

    def run_dir(self, out_dir) -> Path:
        return Path(out_dir) / "runs" / self.experiment / self.run_name

    def context(self) -> dict:
        return {
            "experiment": self.experiment,
            "profile": self.profile,
            "run_name": self.run_name,
            "vary": self.vary,
            "value": self.value,
        }


def run_name(vary: str | None, value, seed: int) -> str:
    if vary is None:
        return f"baseline_seed{seed}"
    text = "-".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return f"{vary}={text}_seed{seed}"


def plan(
    experiment: str,
    profile: str = "smoke",
    values=None,
    seeds=None,
    overrides: dict | None = None,
    allow_empty: bool = False,
) -> list[Trial]:
    """The trials of `experiment` under `profile`: one per value and seed, all validated.

    `overrides` replace the profile's settings; an override of None leaves the profile's (as a
    notebook parameter of None does). A profile whose list of values for the experiment is
    empty runs none of its trials: that is an error unless `allow_empty`.
    """
    for name, given in (("values", values), ("seeds", seeds)):
        if isinstance(given, str):  # papermill's -p passes text; -y parses YAML
            raise ConfigError(f"{name} must be a list, got the text {given!r}: pass it as YAML, -y {name} '{given}'")
    spec = load_experiment(experiment)
    prof = load_named("profiles", profile, PROFILE_KEYS)
    per_experiment = _mapping(prof.get("experiments"), f"profile {profile}: experiments")
    check_keys(per_experiment, set(available("experiments")), f"profile {profile}: experiments")
    local = _mapping(per_experiment.get(experiment), f"profile {profile}: experiments.{experiment}")
    check_keys(local, PROFILE_EXPERIMENT_KEYS, f"profile {profile}: experiments.{experiment}")

    settings = {
        **spec.trial,
        **_mapping(prof.get("trial"), f"profile {profile}: trial"),
        **_mapping(local.get("trial"), f"profile {profile}: experiments.{experiment}.trial"),
        **{key: value for key, value in (overrides or {}).items() if value is not None},
    }
    vary = spec.vary
    where_listed = f"profile {profile}: experiments.{experiment}"
    listed = _list(local.get("values", spec.values), f"{where_listed}: values")
    if values is None:
        values = listed
    elif vary == NAMED_SETTING:
        values = _named_values(values, listed, where_listed)
    seeds_given = seeds is not None
    seeds = seeds if seeds_given else _list(local.get("seeds", spec.seeds), f"{where_listed}: seeds")
    if vary is not None and not values:
        if allow_empty:
            return []
        raise ConfigError(f"{where_listed}: the profile lists no {vary} values, so it runs no trial of {experiment}")
    if not seeds:
        raise ConfigError(f"experiment {experiment}: the list of seeds is empty")
    trials = []
    for value in values if vary else [None]:
        # A value may be a mapping of settings that change together, e.g. a patch size
        # with the image size it divides: {patch_size: 7, image_size: 63}, with its own
        # `seeds` if it needs other seeds than the rest. `vary: setting` names each mapping
        # instead: {setting: keras-example, patch_size: 2, ...} (the published settings).
        changes = dict(value) if isinstance(value, dict) else ({vary: value} if vary else {})
        own_seeds = changes.pop("seeds", None)
        if own_seeds is not None and not seeds_given:
            value_seeds = _list(own_seeds, f"{where_listed}: seeds of {value}")
        else:
            value_seeds = seeds
        if vary == NAMED_SETTING:
            label = changes.pop(NAMED_SETTING, None)  # a name, not a setting of the trial
        else:
            label = changes.get(vary) if vary else None
        if vary and label is None:
            raise ConfigError(f"experiment {experiment} ({profile}): the value {value} does not set {vary}")
        for seed in value_seeds:
            where = f"experiment {experiment} ({profile}), {f'{vary}={label} ' if vary else ''}seed={seed}"
            try:
                config = TrialConfig.from_dict({**settings, **changes, "seed": seed}, where=where)
            except ConfigError as error:
                raise ConfigError(str(error) if str(error).startswith(where) else f"{where}: {error}") from None
            trials.append(Trial(experiment, profile, run_name(vary, label, seed), vary, label, seed, config))
    return trials


def _named_values(names, listed: list, where: str) -> list:
    """The profile's settings named in `names` (a notebook or command line picks some by name)."""
    by_name = {value.get(NAMED_SETTING): value for value in listed if isinstance(value, dict)}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ConfigError(f"{where}: no setting named {unknown[0]!r} (choose from: {', '.join(by_name) or 'none'})")
    return [by_name[name] for name in names]


def plan_profile(profile: str) -> list[Trial]:
    """Every trial of every experiment of `profile`, in report order."""
    return [trial for name in experiment_names() for trial in plan(name, profile, allow_empty=True)]


def plan_table(trials: list[Trial]) -> pd.DataFrame:
    """One row per planned trial with the settings a reader checks first and its identity."""
    fields = (
        "dataset",
        "width",
        "depth",
        "patch_size",
        "kernel_size",
        "kernel_sizes",
        "image_size",
        "optimizer",
        "epochs",
        "batch_size",
        "train_subset",
    )
    return pd.DataFrame(
        [
            {"run_name": t.run_name, **{f: getattr(t.config, f) for f in fields}, "trial_id": t.config.trial_id()}
            for t in trials
        ]
    )


def resolved_settings(profile: str) -> tuple[dict, dict[str, pd.DataFrame]]:
    """What every trial of `profile` trains with: the settings all its trials share, and per
    experiment a table of each trial's other settings (and its identity)."""
    trials = plan_profile(profile)
    settings = [t.config.to_dict() for t in trials]
    common = {key: value for key, value in settings[0].items() if all(s[key] == value for s in settings)}
    tables = {}
    for name in dict.fromkeys(t.experiment for t in trials):
        rows = [
            {"run_name": t.run_name, **{k: v for k, v in s.items() if k not in common}, "trial_id": t.config.trial_id()}
            for t, s in zip(trials, settings)
            if t.experiment == name
        ]
        tables[name] = pd.DataFrame(rows)
    return common, tables


# ---- running ------------------------------------------------------------------------------
def result_columns() -> list[str]:
    """The columns of run_experiment's table, from the run-record schema."""
    return ["run_name", "value", "seed", "status", "reused_from", *records.summary_metrics(), "epochs", "error"]


def run_experiment(
    experiment: str,
    profile: str = "smoke",
    values=None,
    seeds=None,
    out_dir=None,
    data_dir=None,
    overrides: dict | None = None,
    verbose: int | str = "auto",
) -> pd.DataFrame:
    """Run every trial of an experiment into `out_dir/runs/<experiment>/` and tabulate them.

    Finished trials are skipped, interrupted ones resume, and a trial that already ran in
    another experiment of `out_dir` (the same identity) is reused instead of trained again.
    A trial that fails is recorded as failed and the next one runs; `raise_if_failed` reports
    failures at the end.
    """
    from .train import train  # TensorFlow loads only when something trains

    overrides = {**(overrides or {}), **({"data_dir": str(data_dir)} if data_dir else {})}
    trials = plan(experiment, profile, values, seeds, overrides)
    out_dir = paths.output_dir(profile, out_dir)
    loaded = check_before_training(experiment, trials, out_dir)
    rows = []
    for number, trial in enumerate(trials, 1):
        run_dir = trial.run_dir(out_dir)
        reused = reuse_identical_trial(trial, out_dir)
        if reused is not None:
            print(
                f"[{number}/{len(trials)}] {experiment}: {trial.run_name} -> {run_dir}: the same trial "
                f"as {reused}, reused (not trained again)",
                flush=True,
            )
        else:
            print(f"[{number}/{len(trials)}] {experiment}: {trial.run_name} -> {run_dir}", flush=True)
        try:
            metrics = train(
                trial.config, run_dir, data=loaded.get(data_key(trial.config)), context=trial.context(), verbose=verbose
            )
        except Exception as error:  # recorded as failed by train(); go on with the next trial
            print(f"    FAILED: {type(error).__name__}: {error}", flush=True)
            metrics = records.read_metrics(run_dir) or records.Metrics(
                status="failed", error=f"{type(error).__name__}: {error}"
            )
        record = records.read_record(run_dir)
        rows.append(
            {
                "run_name": trial.run_name,
                "value": trial.value,
                "seed": trial.seed,
                "reused_from": record and record.reused_from,
                **dataclasses.asdict(metrics),
            }
        )
    return pd.DataFrame(rows).reindex(columns=result_columns())


def reuse_identical_trial(trial: Trial, out_dir) -> str | None:
    """If `trial` has not started and the same trial ran to completion elsewhere under
    `out_dir/runs`, give its folder that run's results; return the source (relative to runs/)."""
    runs_dir = Path(out_dir) / "runs"
    run_dir = trial.run_dir(out_dir)
    if records.run_status(run_dir) != "new":
        return None
    source = records.find_complete_trial(runs_dir, trial.config, exclude=run_dir)
    if source is None:
        return None
    reused_from = source.relative_to(runs_dir).as_posix()
    record = dataclasses.replace(records.read_record(source), **trial.context(), reused_from=reused_from)
    records.reuse_run(source, run_dir, record)
    return reused_from


def check_before_training(experiment: str, trials: list[Trial], out_dir) -> dict:
    """Refuse another trial's run directories and unreadable data; return the data that the
    trials still to train need (finished and reusable trials need none)."""
    from . import data as datasets

    for trial in trials:
        records.check_compatible(trial.run_dir(out_dir), trial.config)
    loaded = {}
    for trial in trials:
        done = records.run_status(trial.run_dir(out_dir)) == "complete" or records.find_complete_trial(
            Path(out_dir) / "runs", trial.config, exclude=trial.run_dir(out_dir)
        )
        if not done and data_key(trial.config) not in loaded:
            loaded[data_key(trial.config)] = datasets.load_dataset(trial.config)
    return loaded


def data_key(config: TrialConfig) -> tuple:
    return tuple(getattr(config, field) for field in DATA_FIELDS)


def raise_if_failed(results: pd.DataFrame) -> None:
    """Fail the notebook (so papermill and the batch runner report it) if any trial failed."""
    failed = results[results["status"] != "complete"]
    if len(failed):
        lines = "; ".join(f"{r.run_name}: {r.error}" for r in failed.itertuples())
        raise RuntimeError(f"{len(failed)} of {len(results)} trials failed: {lines}")

"""Profiles (how big) and experiments (what varies), turned into trials and run.

`params/experiments/<name>.yaml` says what an experiment varies; `params/profiles/<name>.yaml`
sets the trial settings for every experiment and may override values and seeds per
experiment. Every trial is planned and validated before the first one trains.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pandas as pd

from . import records
from .config import ConfigError, TrialConfig, load_yaml

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT_KEYS = {"title", "description", "vary", "values", "seeds", "trial"}
PROFILE_KEYS = {"description", "trial", "experiments"}
PROFILE_EXPERIMENT_KEYS = {"values", "seeds", "trial"}
# The settings that decide which images a trial sees: trials sharing them share one load.
DATA_FIELDS = ("dataset", "data_dir", "image_size", "train_subset", "val_size", "test_subset")
RESULT_COLUMNS = ["run_name", "value", "seed", "status", "test_accuracy", "test_accuracy_flip", "best_val_accuracy",
                  "params", "train_seconds", "images_per_second", "epochs", "error"]


def params_dir() -> Path:
    return Path(os.environ.get("CONVMIXER_PARAMS", PROJECT_ROOT / "params"))


def available(kind: str) -> list[str]:
    return sorted(p.stem for p in (params_dir() / kind).glob("*.yaml"))


def load_named(kind: str, name: str, allowed: set[str]) -> dict:
    """Load params/<kind>/<name>.yaml, refusing unknown names and keys."""
    names = available(kind)
    if name not in names:
        raise ConfigError(f"unknown {kind[:-1]} {name!r} (choose from: {', '.join(names)})")
    path = params_dir() / kind / f"{name}.yaml"
    values = load_yaml(path)
    _check_keys(values, allowed, path)
    return values


def _check_keys(values: dict, allowed: set[str], where) -> None:
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(allowed))})")


def _mapping(value, where) -> dict:
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(value).__name__} {value!r}")
    return value or {}


def _list(value, where) -> list:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list, got {type(value).__name__} {value!r}")
    return value


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
        return {"experiment": self.experiment, "profile": self.profile, "run_name": self.run_name,
                "vary": self.vary, "value": self.value}


def output_dir(profile: str, out_dir=None) -> Path:
    """Where a profile's runs, notebooks and report go: reports/<profile> unless told.

    $CONVMIXER_REPORTS moves the default reports/ folder (the tests use it).
    """
    if out_dir:
        return Path(out_dir)
    return Path(os.environ.get("CONVMIXER_REPORTS", PROJECT_ROOT / "reports")) / profile


def plan_table(trials: list[Trial]) -> pd.DataFrame:
    """One row per planned trial with the settings a reader checks first."""
    fields = ("dataset", "width", "depth", "patch_size", "kernel_size", "kernel_sizes", "image_size",
              "optimizer", "epochs", "batch_size", "train_subset")
    return pd.DataFrame([{"run_name": t.run_name, **{f: getattr(t.config, f) for f in fields}}
                         for t in trials])


def run_name(vary: str | None, value, seed: int) -> str:
    if vary is None:
        return f"baseline_seed{seed}"
    text = "-".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return f"{vary}={text}_seed{seed}"


def plan(experiment: str, profile: str = "smoke", values=None, seeds=None,
         overrides: dict | None = None) -> list[Trial]:
    """The trials of `experiment` under `profile`: one per value and seed, all validated."""
    spec = load_named("experiments", experiment, EXPERIMENT_KEYS)
    prof = load_named("profiles", profile, PROFILE_KEYS)
    per_experiment = _mapping(prof.get("experiments"), f"profile {profile}: experiments")
    _check_keys(per_experiment, set(available("experiments")), f"profile {profile}: experiments")
    local = _mapping(per_experiment.get(experiment), f"profile {profile}: experiments.{experiment}")
    _check_keys(local, PROFILE_EXPERIMENT_KEYS, f"profile {profile}: experiments.{experiment}")

    settings = {**_mapping(prof.get("trial"), f"profile {profile}: trial"),
                **_mapping(spec.get("trial"), f"experiment {experiment}: trial"),
                **_mapping(local.get("trial"), f"profile {profile}: experiments.{experiment}.trial"),
                **(overrides or {})}
    vary = spec.get("vary")

    def listed(name, default):  # the profile's list beats the experiment's
        where = f"profile {profile}: experiments.{experiment}" if name in local else f"experiment {experiment}"
        return _list(local.get(name, spec.get(name, default)), f"{where}: {name}")

    values = values if values is not None else listed("values", [None])
    seeds = seeds if seeds is not None else listed("seeds", [0])
    if vary is not None and not values:
        raise ConfigError(f"experiment {experiment}: the list of {vary} values is empty")
    if not seeds:
        raise ConfigError(f"experiment {experiment}: the list of seeds is empty")
    trials = []
    for value in values if vary else [None]:
        for seed in seeds:
            # A value may be a mapping of settings that change together, e.g. a patch size
            # with the image size it divides: {patch_size: 7, image_size: 63}.
            changes = dict(value) if isinstance(value, dict) else ({vary: value} if vary else {})
            label = changes.get(vary) if vary else None
            where = f"experiment {experiment} ({profile}), {f'{vary}={label} ' if vary else ''}seed={seed}"
            if vary and vary not in changes:
                raise ConfigError(f"{where}: the value {value} does not set {vary}")
            changes["seed"] = seed
            try:
                config = TrialConfig.from_dict({**settings, **changes}, where=where)
            except ConfigError as error:
                raise ConfigError(str(error) if str(error).startswith(where) else f"{where}: {error}") from None
            trials.append(Trial(experiment, profile, run_name(vary, label, seed), vary, label, seed, config))
    return trials


def run_experiment(experiment: str, profile: str = "smoke", values=None, seeds=None,
                   out_dir=None, data_dir=None, overrides: dict | None = None,
                   verbose: int | str = "auto") -> pd.DataFrame:
    """Run every trial of an experiment into `out_dir/runs/<experiment>/` and tabulate them.

    Finished trials are skipped, interrupted ones resume. A trial that fails is recorded
    as failed and the next one runs; `raise_if_failed` reports failures at the end.
    """
    from .train import train  # TensorFlow loads only when something trains

    overrides = {**(overrides or {}), **({"data_dir": str(data_dir)} if data_dir else {})}
    trials = plan(experiment, profile, values, seeds, overrides)
    out_dir = output_dir(profile, out_dir)
    loaded = check_before_training(experiment, trials, out_dir)
    rows = []
    for number, trial in enumerate(trials, 1):
        run_dir = trial.run_dir(out_dir)
        print(f"[{number}/{len(trials)}] {experiment}: {trial.run_name} -> {run_dir}", flush=True)
        try:
            metrics = train(trial.config, run_dir, data=loaded[data_key(trial.config)],
                            context=trial.context(), verbose=verbose)
        except Exception as error:  # recorded as failed by train(); go on with the next trial
            print(f"    FAILED: {type(error).__name__}: {error}", flush=True)
            metrics = records.read_json(run_dir / "metrics.json") or {
                "status": "failed", "error": f"{type(error).__name__}: {error}"}
        rows.append({"run_name": trial.run_name, "value": trial.value, "seed": trial.seed, **metrics})
    return pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)


def check_before_training(experiment: str, trials: list[Trial], out_dir) -> dict:
    """Refuse another configuration's run directories and unreadable data; return the loaded data."""
    from . import data as datasets

    for trial in trials:
        records.check_compatible(trial.run_dir(out_dir), trial.config)
    loaded = {}
    for trial in trials:
        if data_key(trial.config) not in loaded:
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

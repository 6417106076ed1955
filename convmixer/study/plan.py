"""The trials an experiment makes under a profile: one per value and seed, validated before any trains."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from ..config import ConfigError, TrialConfig, check_keys
from .experiments import (
    NAMED_SETTING,
    PROFILE_EXPERIMENT_KEYS,
    PROFILE_KEYS,
    _list,
    _mapping,
    available,
    experiment_names,
    load_experiment,
    load_named,
)


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


def value_text(value) -> str:
    """A varied value as run names and tables write it: '7', or '2-4-6-8-10' for a list."""
    return "-".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def run_name(vary: str | None, value, seed: int) -> str:
    return f"baseline_seed{seed}" if vary is None else f"{vary}={value_text(value)}_seed{seed}"


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

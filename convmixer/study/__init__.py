"""Running a study: the experiment registry and profiles (experiments), the trials they make
(plan), training them in turn (runner), a notebook's first steps (notebook), a profile's
notebooks under papermill (suite), and its trials as tasks on a Ray cluster (distributed).

The names below are what notebooks and users call: `study.start(...)`, `study.run_experiment(...)`."""

from .experiments import (
    Claim,
    Comparison,
    Experiment,
    available,
    experiment_names,
    load_experiment,
    profile_description,
    registry,
)
from .notebook import start
from .plan import Trial, plan, plan_profile, plan_table, resolved_settings
from .runner import check_before_training, data_key, raise_if_failed, reuse_identical_trial, run_experiment

__all__ = [
    "Claim",
    "Comparison",
    "Experiment",
    "Trial",
    "available",
    "check_before_training",
    "data_key",
    "experiment_names",
    "load_experiment",
    "plan",
    "plan_profile",
    "plan_table",
    "profile_description",
    "raise_if_failed",
    "registry",
    "resolved_settings",
    "reuse_identical_trial",
    "run_experiment",
    "start",
]

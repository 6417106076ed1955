"""Training an experiment's trials one after another: skip the finished, resume the interrupted,
reuse a trial that already ran elsewhere, record failures and go on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from .. import paths, records
from ..config import TrialConfig
from .experiments import DATA_FIELDS
from .plan import Trial, plan


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
    from ..train import train  # TensorFlow loads only when something trains

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
    from .. import data as datasets

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

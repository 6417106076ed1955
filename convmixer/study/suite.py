"""A profile's experiment notebooks executed in order with papermill, as `convmixer run` does."""

from __future__ import annotations

from pathlib import Path

import nbformat

from .. import backend as keras_backend
from .. import paths, records
from ..config import ConfigError
from .experiments import experiment_names
from .plan import Trial, plan
from .runner import check_before_training


def notebook_finished(path: Path, parameters: dict) -> bool:
    """True when `path` is a papermill output that ran to the end with these parameters."""
    try:
        meta = nbformat.read(path, as_version=4).metadata.get("papermill", {})
    except (OSError, ValueError):  # missing, or half-written when a kill interrupted papermill
        return False
    return meta.get("parameters") == parameters and meta.get("end_time") is not None and not meta.get("exception")


def run_suite(profile: str, only=None, out_dir=None, data_dir=None, backend="auto", device=None) -> int:
    """Execute the experiment notebooks in order (into `out_dir`/notebooks); return the failed ones' count.

    The notebooks' kernels train on `backend` and `device` (None: the profile's device).
    """
    import papermill

    backend = keras_backend.use(backend)  # the kernels inherit KERAS_BACKEND
    out = paths.output_dir(profile, out_dir).resolve()
    plans = plan_suite(profile, only, out, data_dir, device)
    parameters = notebook_parameters(profile, out, data_dir, backend, device)
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    failed = []
    for number, (name, trials) in enumerate(plans.items(), 1):
        output = out / "notebooks" / f"{name}.ipynb"
        runs_complete = all(records.run_status(trial.run_dir(out)) == "complete" for trial in trials)
        if runs_complete and notebook_finished(output, parameters):
            print(f"[{number}/{len(plans)}] {name}: already executed, skipping", flush=True)
            continue
        print(f"[{number}/{len(plans)}] {name}: executing -> {output} (log: logs/{name}.log)", flush=True)
        with open(out / "logs" / f"{name}.log", "w") as log:
            try:
                papermill.execute_notebook(
                    paths.NOTEBOOKS / f"{name}.ipynb",
                    output,
                    parameters=parameters,
                    cwd=paths.NOTEBOOKS,
                    progress_bar=True,
                    stdout_file=log,
                    stderr_file=log,
                )
            except Exception as error:  # a failed notebook must not stop the others
                failed.append(name)
                print(f"    FAILED: {name}: {str(error).strip().splitlines()[-1]}", flush=True)
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)} (see {out / 'logs'})")
    return len(failed)


def trials_to_train(plans: dict[str, list[Trial]], out: Path) -> list[Trial]:
    """Each trial not complete, once per identity: a new trial identical to one trained before, or
    to a complete one in another run folder, is left to its notebook, which reuses that one's run,
    as in a local run."""
    sent, identities = [], set()
    for trial in (trial for trials in plans.values() for trial in trials):
        status = records.run_status(trial.run_dir(out))
        if status == "complete" or (
            status == "new"
            and (
                trial.config.trial_id() in identities
                or records.find_complete_trial(out / "runs", trial.config, exclude=trial.run_dir(out))
            )
        ):
            continue
        identities.add(trial.config.trial_id())
        sent.append(trial)
    return sent


def error_line(error: BaseException) -> str:
    """An error as one line for a sweep's progress and metrics.json: its type and first line."""
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"


def execute_trained_notebooks(profile: str, plans: dict, failed: set[str], out: Path, data_dir, backend, device) -> int:
    """After the trials were trained elsewhere (on Ray, or by several processes), execute the
    notebooks here: their trials are complete, so they skip and display them. An experiment with a
    trial in `failed` (identities) keeps its notebook unexecuted, which would train the trial here,
    and counts as failed: a rerun retries it. Return how many notebooks failed or were left."""
    unexecuted = [name for name, planned in plans.items() if failed & {t.config.trial_id() for t in planned}]
    if unexecuted:
        print(f"notebooks not executed, a trial failed (rerun to retry it): {', '.join(unexecuted)}")
    executable = [name for name in plans if name not in unexecuted]
    failures = run_suite(profile, executable, out, data_dir, backend, device) if executable else 0
    return failures + len(unexecuted)


def plan_suite(profile: str, only, out: Path, data_dir, device, check_data: bool = True) -> dict[str, list[Trial]]:
    """The trials of each experiment to run, in order (experiments the profile runs no trial of
    left out), all checked before the first trains: notebooks, run folders and, if `check_data`,
    the data the trials still to train need."""
    names = list(only or experiment_names())
    if data_dir and data_dir != "sample" and not Path(data_dir).exists():
        raise ConfigError(f"data folder not found: {data_dir}")
    missing = [name for name in names if not (paths.NOTEBOOKS / f"{name}.ipynb").is_file()]
    if missing:
        raise ConfigError(
            f"experiment {missing[0]!r} has no notebook: add notebooks/{missing[0]}.ipynb "
            "(copy an experiment notebook and set its EXPERIMENT)"
        )
    overrides = {"data_dir": notebook_data_dir(data_dir), "device": device}  # as the notebooks plan them
    plans = {}
    for name in names:
        trials = plan(name, profile, overrides=overrides, allow_empty=not only)
        if check_data:  # decodes the images once, here: the notebooks then read them from the decoded cache
            check_before_training(name, trials, out)
        else:
            for trial in trials:
                records.check_compatible(trial.run_dir(out), trial.config)
        if trials:
            plans[name] = trials
    return plans


def notebook_data_dir(data_dir) -> str | None:
    """The data folder as the notebooks get it: absolute, since they run in notebooks/."""
    return str(Path(data_dir).resolve()) if data_dir and data_dir != "sample" else data_dir


def notebook_parameters(profile: str, out: Path, data_dir, backend: str, device) -> dict:
    """The papermill parameters of every experiment notebook of a run."""
    return {
        "profile": profile,
        "out_dir": str(out),
        "verbose": 2,
        "data_dir": notebook_data_dir(data_dir),
        "backend": backend,
        "device_type": device,
    }

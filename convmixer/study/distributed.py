"""`convmixer run PROFILE --executor ray`: a profile's trials trained as tasks on a Ray cluster.

The unit of work is the trial. Every planned trial that is not complete becomes one Ray task
(one GPU where the cluster has GPUs, else the CPUs of its smallest node: one trial per node, as
a trial's Keras uses every core), retried `retries` times, exceptions included. A task trains
its trial exactly as a notebook does (`train.train` into `<out>/runs/<experiment>/<run_name>`),
so a complete trial is skipped, an interrupted or failed one resumes from its checkpoint, and
one identical to a finished trial is reused. After the last retry a trial's metrics.json says
failed (train() writes it; for a worker that died the driver does) and the sweep goes on.
Then the driver executes the experiment notebooks here with papermill, as `convmixer run`
does: their trials are complete, so they only skip and display, and the executed notebooks and
the report are those of a local run. An experiment with a failed trial keeps its notebook
unexecuted (it would train the trial here) and counts as failed; a rerun retries the trial.

Every node needs the suite installed and `--out` (and the data) at the same path: a shared
folder. Ray is an optional extra, imported only here: pip install -e ".[ray]".
"""

from __future__ import annotations

from pathlib import Path

from .. import backend as keras_backend
from .. import paths, records
from ..config import ConfigError
from .plan import Trial
from .runner import reuse_identical_trial
from .suite import error_line, execute_trained_notebooks, plan_suite, trials_to_train

RETRIES = 2  # tries after the first, for an exception as for a worker or node lost


def import_ray():
    """Ray, or a one-line error that names the extra."""
    try:
        import ray
    except ImportError:
        raise ConfigError('--executor ray needs Ray: pip install -e ".[ray]"') from None
    return ray


def run_suite_on_ray(
    profile: str, only=None, out_dir=None, data_dir=None, backend="auto", device=None, address=None, retries=RETRIES
) -> int:
    """Train the profile's trials on the Ray cluster at `address`, then execute its notebooks here;
    return how many notebooks failed or were left unexecuted."""
    ray = import_ray()
    backend = keras_backend.use(backend)
    out = paths.output_dir(profile, out_dir).resolve()
    plans = plan_suite(profile, only, out, data_dir, device, check_data=False)  # the workers load the data
    trials = trials_to_train(plans, out)
    failed = train_on_cluster(ray, address, trials, out, backend, retries) if trials else set()
    return execute_trained_notebooks(profile, plans, failed, out, data_dir, backend, device)


def train_on_cluster(ray, address, trials: list[Trial], out: Path, backend: str, retries: int) -> set[str]:
    """Join the cluster at `address` (None: $RAY_ADDRESS, else a new Ray on this machine) unless
    this process already has, and train `trials` there; return the identities of the failed."""
    started = not ray.is_initialized()
    if started:
        ray.init(address=address)
    try:
        return train_on_ray(ray, trials, out, backend, retries)
    finally:
        if started:
            ray.shutdown()


def task_options(nodes: list[dict], device: str, retries: int = RETRIES) -> dict:
    """Ray task options for a trial on `device` (auto, cpu, gpu) on the cluster `nodes` (ray.nodes())."""
    alive = [node["Resources"] for node in nodes if node.get("Alive")]
    has_gpus = any(resources.get("GPU", 0) >= 1 for resources in alive)
    if device == "tpu":
        raise ConfigError("--executor ray places trials on GPUs or CPUs: use --device auto, gpu or cpu")
    if device == "gpu" and not has_gpus:
        raise ConfigError("device gpu: the Ray cluster has no GPU")
    retry = {"max_retries": retries, "retry_exceptions": True}
    if has_gpus and device != "cpu":
        return {**retry, "num_gpus": 1}
    cpus = [resources["CPU"] for resources in alive if resources.get("CPU", 0) >= 1]
    if not cpus:
        raise ConfigError("the Ray cluster has no CPU to train on")
    return {**retry, "num_cpus": min(cpus)}


def train_on_ray(ray, trials: list[Trial], out: Path, backend: str, retries: int) -> set[str]:
    """Train `trials` as Ray tasks, reporting each as it ends; return the identities of the failed."""
    nodes = ray.nodes()
    options = [task_options(nodes, trial.config.device, retries) for trial in trials]  # refused before any starts
    task = ray.remote(max_calls=1)(train_trial)  # a fresh worker per trial: TensorFlow keeps memory and its GPU
    pending = {
        task.options(**each, name=trial_name(trial)).remote(trial, out, backend): trial
        for trial, each in zip(trials, options)
    }
    print(f"ray: {len(trials)} trial(s) to train on {sum(node.get('Alive', False) for node in nodes)} node(s)")
    failed = set()
    for number in range(1, len(trials) + 1):
        [ref], _ = ray.wait(list(pending))
        trial = pending.pop(ref)
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayError as error:
            outcome = f"FAILED: {record_failure(trial.run_dir(out), error)}"
            failed.add(trial.config.trial_id())
        print(f"[{number}/{len(trials)}] {trial_name(trial)}: {outcome}", flush=True)
    return failed


def trial_name(trial: Trial) -> str:
    return f"{trial.experiment}/{trial.run_name}"


def train_trial(trial: Trial, out: Path, backend: str) -> str:
    """The Ray task: train `trial` into its run folder as its notebook would; return its status."""
    keras_backend.use(backend)
    from ..train import train  # Keras loads on the backend just chosen

    reuse_identical_trial(trial, out)
    return train(trial.config, trial.run_dir(out), context=trial.context(), verbose=2).status


def record_failure(run_dir: Path, error: Exception) -> str:
    """Make metrics.json say failed after the last retry and return the error. train() wrote it
    already unless the worker died (or the trial failed before its run folder existed)."""
    recorded = records.read_metrics(run_dir)
    if recorded is not None and recorded.status == "failed":
        return recorded.error
    cause = getattr(error, "cause", None) or error  # a RayTaskError carries the trial's exception
    text = error_line(cause)
    epochs = len(records.read_history(run_dir / "history.csv"))
    records.write_metrics(run_dir, records.Metrics(status="failed", error=text, epochs=epochs, finished=records.now()))
    return text

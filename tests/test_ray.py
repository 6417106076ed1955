"""`convmixer run --executor ray`: the one-line error without Ray, the task options a cluster gets,
which trials become tasks, failures recorded after the last retry, and one sweep on a two-node Ray
cluster bound to 127.0.0.1 (a worker killed mid-trial, a trial failing on every try) that records
what a local run records."""

from __future__ import annotations

import dataclasses
import shutil
import sys
import threading
import time
from types import SimpleNamespace

import nbformat
import numpy as np
import psutil
import pytest
from fault_helpers import REPO

from convmixer import backend as keras_backend
from convmixer import cli, records, study
from convmixer.config import ConfigError
from convmixer.study import distributed, suite
from convmixer.study.suite import plan_suite


def node(alive=True, **resources):
    """One entry of ray.nodes()."""
    return {"Alive": alive, "Resources": resources}


# ---- without a cluster ---------------------------------------------------------------------
@pytest.mark.unit
def test_without_ray_the_executor_is_one_line_naming_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "out"
    code = cli.main(["run", "smoke", "--only", "kernel_sweep", "--executor", "ray", "--out", str(out)])
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert error == 'convmixer: error: --executor ray needs Ray: pip install -e ".[ray]"'
    assert not out.exists()  # nothing ran


@pytest.mark.unit
def test_an_address_without_the_ray_executor_is_refused(capsys):
    assert cli.main(["run", "smoke", "--only", "kernel_sweep", "--address", "head:6379"]) == 2
    assert "--executor ray" in capsys.readouterr().err


RETRY = {"max_retries": 2, "retry_exceptions": True}


@pytest.mark.unit
@pytest.mark.parametrize(
    "nodes, device, resources",
    [
        ([node(CPU=8), node(CPU=8, GPU=4)], "auto", {"num_gpus": 1}),  # GPU nodes: one GPU per trial
        ([node(CPU=8, GPU=4)], "gpu", {"num_gpus": 1}),
        ([node(CPU=8, GPU=4)], "cpu", {"num_cpus": 8}),  # CPU trials asked for: CPUs even beside GPUs
        ([node(CPU=0), node(CPU=16), node(CPU=8)], "auto", {"num_cpus": 8}),  # one trial per node at a time
        ([node(CPU=4), node(alive=False, CPU=2, GPU=1)], "auto", {"num_cpus": 4}),  # a dead node counts not
    ],
)
def test_task_options_follow_the_cluster(nodes, device, resources):
    assert distributed.task_options(nodes, device) == {**RETRY, **resources}


@pytest.mark.unit
def test_task_options_take_the_retries():
    assert distributed.task_options([node(CPU=2)], "auto", retries=0)["max_retries"] == 0


@pytest.mark.unit
@pytest.mark.parametrize(
    "nodes, device, message",
    [
        ([node(CPU=8)], "gpu", "no GPU"),
        ([node(CPU=8, GPU=1)], "tpu", "GPUs or CPUs"),
        ([node(CPU=0, GPU=0)], "auto", "no CPU"),
    ],
)
def test_task_options_refuse_what_the_cluster_cannot_run(nodes, device, message):
    with pytest.raises(ConfigError, match=message):
        distributed.task_options(nodes, device)


@pytest.mark.unit
def test_each_identity_is_trained_once_and_complete_trials_not_at_all(tmp_path):
    plans = plan_suite("smoke", None, tmp_path, None, None, check_data=False)
    planned = [trial for trials in plans.values() for trial in trials]
    sent = suite.trials_to_train(plans, tmp_path)
    identities = [trial.config.trial_id() for trial in sent]
    assert len(identities) == len(set(identities)) == len({t.config.trial_id() for t in planned}) < len(planned)
    assert sent[1].run_dir(tmp_path).parts[-2:] == ("baseline", "baseline_seed0")  # the first of its identity
    records.write_metrics(sent[0].run_dir(tmp_path), records.Metrics(status="complete"))
    assert suite.trials_to_train(plans, tmp_path) == sent[1:]


@pytest.mark.unit
def test_a_trial_identical_to_a_complete_one_elsewhere_is_left_to_its_notebook_to_reuse(tmp_path):
    """`--only kernel_sweep` after the baseline ran: the sweep's k=5 is the baseline trial."""
    baseline = plan_suite("smoke", ["baseline"], tmp_path, None, None, check_data=False)["baseline"][0]
    plans = plan_suite("smoke", ["kernel_sweep"], tmp_path, None, None, check_data=False)
    assert [t.run_name for t in suite.trials_to_train(plans, tmp_path)] == [
        "kernel_size=3_seed0",
        "kernel_size=5_seed0",
    ]
    run_dir = baseline.run_dir(tmp_path)
    record = records.RunRecord(run_name=run_dir.name, seed=0, config=baseline.config.to_dict())
    records.write_record(run_dir, record)
    records.write_metrics(run_dir, records.Metrics(status="complete"))
    assert [t.run_name for t in suite.trials_to_train(plans, tmp_path)] == ["kernel_size=3_seed0"]


@pytest.mark.unit
def test_a_trial_recorded_failed_by_train_keeps_its_error(tmp_path):
    records.write_metrics(tmp_path, records.Metrics(status="failed", error="ValueError: bad", epochs=1))
    assert distributed.record_failure(tmp_path, RuntimeError("what Ray said")) == "ValueError: bad"
    assert records.read_metrics(tmp_path).error == "ValueError: bad"


@pytest.mark.unit
def test_a_trial_whose_worker_died_is_recorded_failed_with_ray_s_error(tmp_path):
    records.write_history(tmp_path / "history.csv", [{"epoch": 1}])

    class WorkerCrashedError(Exception):
        pass

    text = distributed.record_failure(tmp_path, WorkerCrashedError("The worker died unexpectedly.\nmore"))
    metrics = records.read_metrics(tmp_path)
    assert text == metrics.error == "WorkerCrashedError: The worker died unexpectedly."
    assert (metrics.status, metrics.epochs) == ("failed", 1)


class FakeTask:
    """A remote function as the executor uses it: the reference to a call is its trial."""

    def __init__(self):
        self.submitted = []

    def options(self, **options):
        self.submitted.append(options)
        return self

    def remote(self, trial, out, backend):
        return trial


class FakeRay:
    """What the executor calls of Ray, in this process: no task runs; one ends as `fails` says."""

    exceptions = SimpleNamespace(RayError=RuntimeError)

    def __init__(self, fails):
        self.fails, self.task = fails, FakeTask()

    def is_initialized(self):
        return True

    def nodes(self):
        return [node(CPU=2)]

    def remote(self, **options):
        return lambda function: self.task

    def wait(self, refs):
        return refs[:1], refs[1:]

    def get(self, trial):
        if self.fails(trial):
            raise RuntimeError("worker lost\nits log")
        return "complete"


@pytest.mark.unit
def test_a_trial_failed_after_its_retries_is_recorded_and_its_notebooks_not_executed(tmp_path, monkeypatch, capsys):
    """The baseline trial fails on its last try; the sweep's k=3 still trains. The sweep's k=5 is the
    baseline trial, so neither notebook is executed: each would train that trial here."""
    ray = FakeRay(fails=lambda trial: trial.experiment == "baseline")
    monkeypatch.setattr(distributed, "import_ray", lambda: ray)
    monkeypatch.setenv("KERAS_BACKEND", keras_backend.choose("auto"))

    failures = distributed.run_suite_on_ray("smoke", ["baseline", "kernel_sweep"], tmp_path, retries=1)

    printed = capsys.readouterr().out
    assert failures == 2
    assert "[1/2] baseline/baseline_seed0: FAILED: RuntimeError: worker lost\n" in printed
    assert "[2/2] kernel_sweep/kernel_size=3_seed0: complete" in printed
    assert "notebooks not executed, a trial failed (rerun to retry it): baseline, kernel_sweep" in printed
    metrics = records.read_metrics(tmp_path / "runs" / "baseline" / "baseline_seed0")
    assert (metrics.status, metrics.error) == ("failed", "RuntimeError: worker lost")
    assert not (tmp_path / "notebooks").exists()
    assert [options["max_retries"] for options in ray.task.submitted] == [1, 1]


# ---- on a two-node Ray cluster on this machine -----------------------------------------------
# The smoke profile with 3 epochs (a worker can be killed after a checkpoint, with two epochs to
# go), and its replication trial diverging on every try (learning rate 1e12).
DIVERGING = "learning_rate: 1.0e+12}]}"
KILLED = "kernel_sweep/kernel_size=3_seed0"


@pytest.fixture
def params(tmp_path):
    params = tmp_path / "params"
    shutil.copytree(REPO / "params", params)
    smoke = params / "profiles" / "smoke.yaml"
    text = smoke.read_text().replace("  epochs: 2\n", "  epochs: 3\n").replace("optimizer: adamw}]}", DIVERGING)
    assert DIVERGING in text
    smoke.write_text(text)
    return params


@pytest.fixture
def two_node_ray(monkeypatch, params):
    """A Ray head and a second Ray node, one CPU each, both bound to 127.0.0.1 (ray.cluster_utils,
    Ray's own multi-node test cluster), no dashboard; their workers inherit this environment."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # Ray 2.60 turns 127.0.0.1 into the interface address unless multi-node clusters are off
    # (ray._private.services.resolve_ip_for_localhost); it reads this when imported.
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("CONVMIXER_PARAMS", str(params))
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 100 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    cluster.add_node(**node)
    ray.init(address=cluster.address)
    assert [(n["NodeManagerAddress"], n["Alive"]) for n in ray.nodes()] == [("127.0.0.1", True)] * 2
    yield ray
    ray.shutdown()
    cluster.shutdown()


TIMING = ("train_seconds", "images_per_second", "finished")  # what two runs of one trial may differ in


def outcome(run_dir) -> dict:
    """metrics.json less how long the trial took, and when."""
    return {key: value for key, value in dataclasses.asdict(records.read_metrics(run_dir)).items() if key not in TIMING}


def kill_worker_after_first_checkpoint(run_dir, task_name, killed: dict, done: threading.Event) -> None:
    """SIGKILL the Ray worker training `task_name` (its process title is `ray::<task name>`) as soon
    as an epoch is checkpointed: the first, two epochs before the trial ends."""
    while not done.is_set():
        if (run_dir / "backup").is_dir() and records.read_history(run_dir / "history.csv"):
            for process in psutil.process_iter(["cmdline"]):
                if (process.info["cmdline"] or [""])[0].startswith(f"ray::{task_name}"):
                    process.kill()
                    killed.update(pid=process.pid, epochs=len(records.read_history(run_dir / "history.csv")))
                    return
        time.sleep(0.02)


@pytest.mark.training
def test_a_sweep_on_two_ray_nodes_survives_a_killed_worker_and_records_what_a_local_run_records(
    two_node_ray, tmp_path, capsys
):
    """The smoke baseline and kernel sweep (two trainings as Ray tasks: the sweep's k=5 is the
    baseline trial, left to its notebook to reuse) and a trial that diverges on every try. The
    worker training k=3 is killed after its first epoch: Ray retries the task, which resumes."""
    experiments = ["baseline", "kernel_sweep"]
    out = tmp_path / "ray"
    killed, done = {}, threading.Event()
    killer = threading.Thread(
        target=kill_worker_after_first_checkpoint, args=(out / "runs" / KILLED, KILLED, killed, done)
    )
    killer.start()
    start = time.monotonic()
    try:
        code = cli.main(["run", "smoke", "--only", *experiments, "replication", "--executor", "ray", "--out", str(out)])
    finally:
        done.set()
        killer.join()
    printed, errors = capsys.readouterr()
    print(f"convmixer run --executor ray on two nodes: {time.monotonic() - start:.0f} s")

    # The sweep finished: the diverging trial failed on its every try and is recorded failed.
    assert code == 1, printed + errors[-3000:]
    assert "ray: 3 trial(s) to train on 2 node(s)" in printed
    diverged = out / "runs" / "replication" / "setting=keras-example-mini_seed0"
    assert f"replication/{diverged.name}: FAILED: TrainingDiverged" in printed
    assert records.read_metrics(diverged).status == "failed"
    assert (diverged / "train.log").read_text().count("failed:") == 1 + distributed.RETRIES
    assert "notebooks not executed, a trial failed (rerun to retry it): replication" in printed
    for name in experiments:
        assert not nbformat.read(out / "notebooks" / f"{name}.ipynb", as_version=4).metadata.papermill.exception
    assert (out / "index.html").is_file()

    # The killed worker's trial was retried and resumed after its checkpoint (the first, unless the
    # machine was too slow to catch it before the second).
    assert killed.get("epochs") in (1, 2), killed
    resumed = records.read_record(out / "runs" / KILLED)
    assert [start["epochs_done"] for start in resumed.starts] == [0, killed["epochs"]]
    assert f"[2/3] {KILLED}: complete" in printed or f"[1/3] {KILLED}: complete" in printed

    # Every record is the local run's.
    local = tmp_path / "local"
    for name in experiments:
        study.run_experiment(name, "smoke", out_dir=local, verbose=0)
    run_dirs = sorted(path.relative_to(local) for path in records.find_run_dirs(local / "runs"))
    ray_dirs = sorted(path.relative_to(out) for path in records.find_run_dirs(out / "runs"))
    assert run_dirs == [d for d in ray_dirs if d.parts[1] != "replication"]
    for run_dir in run_dirs:
        ours, theirs = out / run_dir, local / run_dir
        assert outcome(ours) == outcome(theirs)
        assert records.read_record(ours).reused_from == records.read_record(theirs).reused_from
        predicted = [records.read_predictions(d / records.PREDICTIONS_FILE).predicted for d in (ours, theirs)]
        np.testing.assert_array_equal(*predicted)
    assert records.read_record(out / "runs" / "kernel_sweep" / "kernel_size=5_seed0").reused_from

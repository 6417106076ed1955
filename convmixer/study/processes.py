"""`convmixer run PROFILE` on each of several processes that train every model together
(jax.distributed: the tasks of a SLURM job, say, one per host).

The processes are named by Keras' variables (`backend.PROCESS_VARIABLES`, or `--coordinator`,
`--processes` and `--process-id`). Every process trains the profile's trials here, in one
session of jax.distributed, in the same order: each trial not complete, once per identity
(`suite.trials_to_train`). Process 0 alone writes the run records (train.train), then executes
the notebooks, whose trials are complete: they skip and display them, as after a Ray run. The
notebooks are not what trains, because each runs in a kernel of its own, and the processes must
stay in one session from the first trial to the last.
"""

from __future__ import annotations

import os

from .. import backend as keras_backend
from .. import paths
from .suite import error_line, execute_trained_notebooks, plan_suite, trials_to_train


def run_suite_on_processes(profile: str, only=None, out_dir=None, data_dir=None, backend="auto", device=None) -> int:
    """Train the profile's trials together with the other processes; on process 0, then execute
    the notebooks. Return how many notebooks failed or were left unexecuted (0 on other processes)."""
    backend = keras_backend.use(backend)
    from .. import device as devices  # imports Keras, on the backend just chosen

    devices.join_processes(backend)  # TensorFlow refused in one line, before anything is planned
    index, count = keras_backend.launched_process()
    out = paths.output_dir(profile, out_dir).resolve()
    plans = plan_suite(profile, only, out, data_dir, device, check_data=index == 0)
    trials = trials_to_train(plans, out)
    from ..train import train

    failed = set()
    print(f"process {index} of {count}: {len(trials)} trial(s) to train together", flush=True)
    for number, trial in enumerate(trials, 1):
        try:
            metrics = train(trial.config, trial.run_dir(out), context=trial.context(), verbose=2 if index == 0 else 0)
            outcome = metrics.status
        except Exception as error:  # recorded failed by train() on process 0; the others go on with it
            failed.add(trial.config.trial_id())
            outcome = f"FAILED: {error_line(error)}"
        print(f"[{number}/{len(trials)}] {trial.experiment}/{trial.run_name}: {outcome}", flush=True)
    import jax

    jax.distributed.shutdown()  # every process together, before process 0 turns to the notebooks
    if index:
        return 0
    for name in keras_backend.PROCESS_VARIABLES:  # the notebooks' kernels display, each on its own
        os.environ.pop(name, None)
    return execute_trained_notebooks(profile, plans, failed, out, data_dir, backend, device)

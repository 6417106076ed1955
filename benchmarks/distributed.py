"""What distributing costs and changes on this machine (issue 37), into one JSON file:

* the smoke profile's wall time, `convmixer run smoke` here and with `--executor ray` on a
  two-node Ray cluster bound to 127.0.0.1 (ray.cluster_utils: a head and a second node, one CPU
  each), both on JAX, each into a fresh folder, notebooks and report included;
* the tiny trial of tests/fault_helpers.py on one CPU device, on two (XLA_FLAGS), and on two
  processes of one device each (jax.distributed on 127.0.0.1): the largest difference of any
  history value and of any weight from the one-device trial, and the test images classed
  differently;
* why TensorFlow refuses several devices: the tiny trial's model and data (no augmentation,
  Keras' own fit on arrays) trained under tf.distribute.MirroredStrategy over two logical CPU
  devices against the default strategy, and the default strategy against itself.

    python benchmarks/distributed.py --out benchmarks/results/distributed-<machine>-<date>.json

Nothing else should run on the machine meanwhile (two cores: every wall time here is theirs).
Needs .[jax,ray].
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
JAX = {"KERAS_BACKEND": "jax", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
SMOKE_ON_RAY = """
import sys
import ray
from ray.cluster_utils import Cluster
from convmixer import cli
node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 100 * 2**20}
cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
cluster.add_node(**node)
ray.init(address=cluster.address)
code = cli.main(["run", "smoke", "--executor", "ray", "--out", sys.argv[1]])
ray.shutdown()
cluster.shutdown()
sys.exit(code)
"""


def timed(command: list[str], env: dict, log: Path) -> float:
    start = time.monotonic()
    with open(log, "w") as out:
        subprocess.run(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    return round(time.monotonic() - start, 1)


def smoke_wall_times(tmp: Path, env: dict) -> dict:
    local = timed(
        [sys.executable, "-m", "convmixer.cli", "run", "smoke", "--out", str(tmp / "local")], env, tmp / "local.log"
    )
    ray = timed([sys.executable, "-c", SMOKE_ON_RAY, str(tmp / "ray")], env, tmp / "ray.log")
    return {"local_seconds": local, "two_node_ray_seconds": ray}


def tiny_trials(tmp: Path, env: dict) -> dict:
    """The tiny trial on 1 and 2 devices and on 2 processes; each one's difference from 1 device."""
    import fault_helpers as fh

    devices = {**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    for count in (1, 2):
        fh.run_trial(tmp / f"x{count}", tmp / f"x{count}.log", devices, "--devices", str(count))
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    joined = {**env, "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}
    started = [
        fh.start_trial(tmp / "p2", tmp / f"p2-{i}.log", {**joined, "KERAS_DISTRIBUTION_PROCESS_ID": str(i)})
        for i in (0, 1)
    ]
    try:
        for index, process in enumerate(started):
            assert process.wait(600) == 0, (tmp / f"p2-{index}.log").read_text()[-3000:]
    finally:
        for process in started:
            fh.kill(process)
    return {name: difference(tmp / "x1", tmp / name) for name in ("x2", "p2")}


def difference(reference: Path, run_dir: Path) -> dict:
    import keras
    import numpy as np

    import convmixer.train  # noqa: F401  (registers the model's layers)
    from convmixer import records

    ours, theirs = (records.read_history(d / "history.csv") for d in (run_dir, reference))
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    history = max(abs(float(a[k]) - float(b[k])) for a, b in zip(ours, theirs, strict=True) for k in keys)
    weights = [keras.saving.load_model(d / "model.keras").get_weights() for d in (run_dir, reference)]
    predicted = [records.read_predictions(d / records.PREDICTIONS_FILE).predicted for d in (run_dir, reference)]
    return {
        "device": records.read_record(run_dir).device,
        "epochs": len(ours),
        "max_abs_history_difference": history,
        "max_abs_weight_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(*weights, strict=True)),
        "largest_abs_weight": max(float(np.max(np.abs(w))) for w in weights[1]),
        "test_images_classed_differently": int(np.sum(predicted[0] != predicted[1])),
        "test_images": len(predicted[0]),
    }


def tensorflow_mirrored() -> dict:
    """Run in a process of its own: TensorFlow splits the CPU only before it starts."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from fault_helpers import TINY_TRIAL

    from convmixer import data as datasets
    from convmixer.config import TrialConfig
    from convmixer.train import build_model

    config = TrialConfig.from_dict({**TINY_TRIAL, "flip": False, "crop_scale_min": 1.0, "fused": False})
    data = datasets.load_dataset(config)
    images, labels = data.x_train.astype("float32"), keras.utils.to_categorical(data.y_train, data.num_classes)

    def fit(strategy):
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            model = build_model(config, data.num_classes)
            optimizer = keras.optimizers.Adam(config.learning_rate)
            model.compile(optimizer, "categorical_crossentropy", jit_compile=False)
            history = model.fit(
                images, labels, batch_size=config.batch_size, epochs=config.epochs, shuffle=False, verbose=0
            )
        return history.history["loss"], model.get_weights()

    def compare(a, b):
        return {
            "max_abs_loss_difference": max(abs(x - y) for x, y in zip(a[0], b[0], strict=True)),
            "max_abs_weight_difference": max(float(np.max(np.abs(x - y))) for x, y in zip(a[1], b[1], strict=True)),
        }

    one = fit(tf.distribute.get_strategy())
    return {
        "default_strategy_twice": compare(one, fit(tf.distribute.get_strategy())),
        "mirrored_two_cpu_devices": compare(fit(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])), one),
        "epochs": config.epochs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--tensorflow-mirrored", action="store_true", help="(the child process measuring TensorFlow)")
    args = parser.parse_args()
    if args.tensorflow_mirrored:
        print(json.dumps(tensorflow_mirrored()))
        return
    if args.out is None:
        parser.error("--out is required")
    os.environ.update(JAX)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        env["CONVMIXER_CACHE_DIR"] = str(tmp / "cache")
        result = {
            "machine": subprocess.run(["lscpu"], capture_output=True, text=True)
            .stdout.split("Model name:")[1]
            .splitlines()[0]
            .strip(),
            "cores": os.cpu_count(),
            "git_commit": subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
            ).stdout.strip(),
            "smoke_profile": smoke_wall_times(tmp, env),
            "tiny_trial_against_one_device": tiny_trials(tmp, env),
            "tensorflow": json.loads(
                subprocess.run(
                    [sys.executable, __file__, "--tensorflow-mirrored"],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.splitlines()[-1]
            ),
        }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Pick the distribution strategy and precision for the hardware at hand (TPU, GPUs, CPU)."""

from __future__ import annotations

import functools
import logging
import os
import platform

import keras
import tensorflow as tf

log = logging.getLogger(__name__)


@functools.cache
def detect_strategy() -> tf.distribute.Strategy:
    """TPU (Colab TPU VMs: `TPUClusterResolver(tpu="local")`), else all GPUs, else the CPU.

    Cached: a TPU system may be initialised only once per process.
    """
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.NotFoundError, tf.errors.UnimplementedError):
        log.debug("no TPU found")
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()  # the default strategy: one GPU or the CPU


def _kind(strategy: tf.distribute.Strategy) -> str:
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"


def resolve_precision(precision: str, kind: str) -> str:
    """`auto` means bf16 on TPU, fp16 on GPU and float32 on the CPU."""
    if precision != "auto":
        return precision
    return {"tpu": "mixed_bfloat16", "gpu": "mixed_float16"}.get(kind, "float32")


def set_precision(policy: str) -> None:
    keras.mixed_precision.set_global_policy(policy)


def describe(strategy: tf.distribute.Strategy) -> str:
    """One line saying what this trial ran on, for the run record."""
    kind = _kind(strategy)
    if kind == "gpu":
        names = [
            tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")
        ]
        return f"GPU x{len(names)}: {', '.join(names)}"
    if kind == "tpu":
        return f"TPU x{strategy.num_replicas_in_sync}"
    return f"CPU: {_cpu_name()} ({os.cpu_count()} cores)"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

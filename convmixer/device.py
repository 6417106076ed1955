"""What trains a trial: the backend's devices (TPU, GPUs, CPU), how they are used together,
the precision, and the execution choices (XLA, fused layers) that suit them.

Under TensorFlow, several devices train through `tf.distribute` (TPUStrategy, MirroredStrategy);
under JAX through `keras.distribution.DataParallel`. `device: auto` takes an accelerator when
there is one and otherwise the CPU, saying so; a TPU or GPU asked for and not found is an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import platform

import keras

from .config import ConfigError, TrialConfig
from .keras_internals import tensorflow_onednn

log = logging.getLogger(__name__)


class DeviceError(ConfigError):
    """A device asked for is not there (one line, before anything trains)."""


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where trials of this process train."""

    backend: str  # keras.backend.backend()
    kind: str  # cpu, gpu or tpu
    count: int  # devices used together (data parallel)
    description: str  # one line for the run record, e.g. "GPU x1: NVIDIA H100 80GB HBM3"
    note: str | None = None  # why `device: auto` ended on the CPU, if it did
    _strategy: object = dataclasses.field(default=None, repr=False, compare=False)  # TensorFlow only

    def scope(self):
        """The context that models must be built and trained in to use every device."""
        if self._strategy is not None:
            return self._strategy.scope()
        if self.backend == "jax" and self.count > 1:
            return keras.distribution.DataParallel(devices=keras.distribution.list_devices(self.kind)).scope()
        return contextlib.nullcontext()


@functools.cache  # the devices do not change within a process; every depthwise layer asks
def computes_on_cpu() -> bool:
    """Whether the running backend places its operations on the CPU: no GPU or TPU that it would
    take by default. The model's depthwise convolution and the JAX input pipeline follow it."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.default_backend() == "cpu"
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return not (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    return False


def detect(requested: str = "auto") -> Placement:
    """The devices for `requested` (auto, cpu, gpu or tpu) on the running Keras backend."""
    return _detect(keras.backend.backend(), requested)


@functools.cache  # a TPU system may be initialised only once per process
def _detect(backend: str, requested: str) -> Placement:
    if backend == "jax":
        placement = _detect_jax(requested)
    elif backend == "tensorflow":
        placement = _detect_tensorflow(requested)
    else:
        raise DeviceError(f"the suite runs on the tensorflow and jax backends, not {backend}")
    if placement.note:
        log.warning("%s", placement.note)
    return placement


def summary(requested: str = "auto") -> str:
    """What `detect` finds, as the line a notebook prints before it trains."""
    placement = detect(requested)
    line = f"Keras {keras.__version__} on {placement.backend}; training on {placement.description}"
    return f"{line} ({placement.note})" if placement.note else line


def _detect_jax(requested: str) -> Placement:
    import jax

    found = {}
    for kind in ("tpu", "gpu", "cpu"):
        try:
            found[kind] = jax.devices(kind)
        except RuntimeError:  # no such platform in this jaxlib
            pass
    kind = _pick(requested, [k for k in ("tpu", "gpu") if found.get(k)], "jax")
    devices = found[kind]
    if kind == "cpu":
        description = _cpu_description()
    else:
        names = sorted({d.device_kind for d in devices})
        description = f"{kind.upper()} x{len(devices)}: {', '.join(names)}"
    return Placement("jax", kind, len(devices) if kind != "cpu" else 1, description, _fallback_note(requested, kind))


def _detect_tensorflow(requested: str) -> Placement:
    import tensorflow as tf

    if requested in ("auto", "tpu"):
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            strategy = tf.distribute.TPUStrategy(resolver)
            count = strategy.num_replicas_in_sync
            return Placement("tensorflow", "tpu", count, f"TPU x{count}", None, strategy)
        except (ValueError, RuntimeError, tf.errors.NotFoundError, tf.errors.UnimplementedError):
            log.debug("no TPU found")
    gpus = tf.config.list_physical_devices("GPU")
    kind = _pick(requested, ["gpu"] if gpus else [], "tensorflow")
    if kind == "gpu":
        names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
        strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
        description = f"GPU x{len(names)}: {', '.join(names)}"
        return Placement("tensorflow", "gpu", len(gpus), description, None, strategy)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0") if gpus else tf.distribute.get_strategy()
    return Placement("tensorflow", "cpu", 1, _cpu_description(), _fallback_note(requested, kind), strategy)


def _pick(requested: str, accelerators: list[str], backend: str) -> str:
    if requested == "auto":
        return accelerators[0] if accelerators else "cpu"
    if requested != "cpu" and requested not in accelerators:
        found = ", ".join(accelerators) or "only the CPU"
        raise DeviceError(f"device {requested!r} asked for, but {backend} finds {found} here (device: auto falls back)")
    return requested


def _fallback_note(requested: str, kind: str) -> str | None:
    if requested == "auto" and kind == "cpu":
        return "device: auto found no GPU or TPU, so this trains on the CPU"
    return None


def _cpu_description() -> str:
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


# ---- precision and execution choices -----------------------------------------------------
def resolve_precision(precision: str, kind: str) -> str:
    """`auto` means bf16 on TPU, fp16 on GPU and float32 on the CPU."""
    if precision != "auto":
        return precision
    return {"tpu": "mixed_bfloat16", "gpu": "mixed_float16"}.get(kind, "float32")


def set_precision(policy: str) -> None:
    keras.mixed_precision.set_global_policy(policy)


@dataclasses.dataclass(frozen=True)
class Execution:
    """How the same maths is computed for a trial, and why (stored in the run record)."""

    jit_compile: bool
    fused: bool
    reason: str
    onednn: bool | None = None  # TensorFlow's oneDNN CPU kernels on; None off TensorFlow's CPU


def execution_choices(config: TrialConfig, placement: Placement) -> Execution:
    """XLA and the fused layers for this backend and device, unless the config forces them.

    Measured on the 2-core CPU (benchmarks/README.md): under TensorFlow, XLA's CPU depthwise
    convolution is an order of magnitude slower than TensorFlow's own, so the CPU runs without
    XLA, with convmixer.fused's GELU and BatchNorm, and with oneDNN's kernels (1.3 to 2.5x
    faster than TensorFlow's Eigen kernels; a warning says when they are off). On a GPU or TPU
    XLA compiles the whole step (as Keras does by default there) and fuses those layers itself.
    JAX always compiles with XLA, and convmixer.fused is TensorFlow code.
    """
    on_tf_cpu = placement.backend == "tensorflow" and placement.kind == "cpu"
    if placement.backend == "jax":
        if config.fused:
            raise ConfigError("fused: true needs the tensorflow backend (convmixer.fused is TensorFlow code)")
        if config.jit_compile is False:
            log.warning("jit_compile: false under JAX runs every operation eagerly: expect a very slow trial")
    jit = config.jit_compile if config.jit_compile is not None else not on_tf_cpu
    fused = config.fused if config.fused is not None else on_tf_cpu
    if placement.kind == "tpu" and not jit:
        raise ConfigError("jit_compile: false is not possible on a TPU (XLA compiles every TPU program)")
    forced = [name for name in ("jit_compile", "fused") if getattr(config, name) is not None]
    where = f"{placement.backend} on {placement.kind}"
    onednn = tensorflow_onednn() if on_tf_cpu else None
    if on_tf_cpu:
        kernels = "oneDNN's kernels" if onednn else "TensorFlow's Eigen kernels (oneDNN off)"
        reason = f"{where}: {kernels} without XLA, GELU and BatchNorm from convmixer.fused"
        if not onednn:
            log.warning(
                "TensorFlow's oneDNN CPU kernels are off (TF_ENABLE_ONEDNN_OPTS=0, or TensorFlow was imported "
                "before convmixer): training on this CPU is 1.3 to 2.5x slower"
            )
    else:
        reason = f"{where}: XLA compiles the train step and fuses GELU and BatchNorm itself"
    if forced:
        reason += f" (forced by the config: {', '.join(f'{n}={getattr(config, n)}' for n in forced)})"
    return Execution(jit_compile=jit, fused=fused, reason=reason, onednn=onednn)

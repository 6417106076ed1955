"""What trains a trial: the backend's devices (TPU, GPUs, CPU), how they are used together,
the precision, and the execution choices (XLA, fused layers) that suit them.

Several devices train one model under JAX, through `keras.distribution.DataParallel`: every
batch is split into equal shares, one per device, and the whole batch is one program (GSPMD), so
BatchNorm normalises over the whole batch, as on one device. Under TensorFlow a trial trains on
one GPU or the CPU (`devices_refused_by_tensorflow` says why), or on a TPU's cores through
TPUStrategy, the only way TensorFlow trains on a TPU. `device: auto` takes an accelerator when
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

from .backend import PROCESS_VARIABLES, launched_process
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
    count: int  # devices used together (data parallel), over every process
    description: str  # one line for the run record, e.g. "GPU x1: NVIDIA H100 80GB HBM3"
    note: str | None = None  # why `device: auto` ended on the CPU, if it did
    process: int = 0  # this process's index among those training one model together (jax.distributed)
    processes: int = 1
    _strategy: object = dataclasses.field(default=None, repr=False, compare=False)  # TensorFlow only

    @property
    def scores_a_copy(self) -> bool:
        """Whether a trained model is scored as a copy on this process's default device
        (`train.single_device_copy`), outside the training scope: with several processes, its
        predictions would be one array spread over them, which Keras' predict cannot read back."""
        return self.processes > 1

    def scoring_scope(self):
        """The context a trained model is scored in (`scores_a_copy`)."""
        return contextlib.nullcontext() if self.scores_a_copy else self.scope()

    def scope(self):
        """The context that models must be built and trained in to use every device."""
        if self._strategy is not None:
            return self._strategy.scope()
        if self.backend == "jax" and self.count > 1:
            used = keras.distribution.list_devices(self.kind)[: self.count]
            # Each process's batches are its share already (pipeline.ProcessShare).
            return keras.distribution.DataParallel(devices=used, auto_shard_dataset=False).scope()
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


def detect(requested: str = "auto", devices: int | None = None) -> Placement:
    """The devices for `requested` (auto, cpu, gpu or tpu) on the running Keras backend, `devices`
    of them (None: every GPU or TPU, and one CPU, or every process's CPU devices)."""
    return _detect(keras.backend.backend(), requested, devices)


def join_processes(backend: str) -> None:
    """Join the other processes training one model together, when the environment names them
    (`backend.PROCESS_VARIABLES`), before JAX computes anything. Under TensorFlow, one line:
    MultiWorkerMirroredStrategy does not train Keras 3 models (keras-team/keras#20585,
    `model.fit` raises on its PerReplica values)."""
    if launched_process()[1] <= 1:
        return
    if backend != "jax":
        raise DeviceError(
            "several processes train one model only under JAX (KERAS_BACKEND=jax): TensorFlow's "
            "MultiWorkerMirroredStrategy does not train Keras 3 models (keras-team/keras#20585)"
        )
    missing = [name for name in PROCESS_VARIABLES if not os.environ.get(name)]
    if missing:
        raise DeviceError(f"{PROCESS_VARIABLES[1]} is set, {' and '.join(missing)} not: set all three")
    import jax

    if not jax.distributed.is_initialized():
        log.info(
            "joining %s processes (coordinator %s)", os.environ[PROCESS_VARIABLES[1]], os.environ[PROCESS_VARIABLES[0]]
        )
        keras.distribution.initialize()


@functools.cache  # a TPU system may be initialised only once per process
def _detect(backend: str, requested: str, devices: int | None) -> Placement:
    join_processes(backend)
    if backend == "jax":
        placement = _detect_jax(requested, devices)
    elif backend == "tensorflow":
        placement = _detect_tensorflow(requested, devices)
    else:
        raise DeviceError(f"the suite runs on the tensorflow and jax backends, not {backend}")
    if placement.note:
        log.warning("%s", placement.note)
    return placement


def summary(requested: str = "auto", devices: int | None = None) -> str:
    """What `detect` finds, as the line a notebook prints before it trains."""
    placement = detect(requested, devices)
    line = f"Keras {keras.__version__} on {placement.backend}; training on {placement.description}"
    return f"{line} ({placement.note})" if placement.note else line


def _detect_jax(requested: str, wanted: int | None) -> Placement:
    import jax

    found = {}
    for kind in ("tpu", "gpu", "cpu"):
        try:
            found[kind] = jax.devices(kind)  # over every process (jax.distributed)
        except RuntimeError:  # no such platform in this jaxlib
            pass
    kind = _pick(requested, [k for k in ("tpu", "gpu") if found.get(k)], "jax")
    available = found[kind]
    count = wanted or (1 if kind == "cpu" and jax.process_count() == 1 else len(available))
    if count > len(available):
        hint = (
            f": split it with XLA_FLAGS=--xla_force_host_platform_device_count={count}, set before JAX starts"
            if kind == "cpu" and jax.process_count() == 1
            else ""
        )
        raise DeviceError(f"devices: {count} asked for, but JAX finds {len(available)} {kind.upper()} device(s){hint}")
    if jax.process_count() > 1 and count != len(available):
        raise DeviceError(f"devices: {count} of {len(available)}: several processes train on every device they have")
    if kind == "cpu":
        description = _cpu_description(count)
    else:
        names = sorted({d.device_kind for d in available[:count]})
        description = f"{kind.upper()} x{count}: {', '.join(names)}"
    if jax.process_count() > 1:
        description += f", {jax.process_count()} processes"
    note = _fallback_note(requested, kind)
    return Placement("jax", kind, count, description, note, jax.process_index(), jax.process_count())


def wait_for_each_other(placement: Placement, name: str) -> None:
    """With several processes, wait until every one has come here under the same `name` (JAX's
    barrier fails when the names differ): processes that disagree on which trial they train, or
    from which checkpoint, stop here rather than pair up unlike steps."""
    if placement.processes > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def check_even_shares(split_sizes: dict[str, int], batch_size: int, count: int) -> None:
    """Refuse a batch that `count` devices cannot share equally (JAX shards a batch in equal
    parts): every batch of every split, the last one included."""
    for split, size in split_sizes.items():
        for batch in sorted({min(batch_size, size), size % batch_size} - {0}):
            if batch % count:
                raise DeviceError(
                    f"devices: {count} cannot share the {split} split's batches of {batch} images equally: "
                    f"choose a batch size and split sizes that {count} divides"
                )


def devices_refused_by_tensorflow(count: int) -> str:
    """Why a trial does not train on several devices under TensorFlow.

    tf.distribute's MirroredStrategy normalises each device's share of a batch on its own (Keras'
    BatchNormalization synchronises replicas only when built with `synchronized=True`, and
    convmixer.fused's never does), so N devices would train another model than one device. Across
    hosts, MultiWorkerMirroredStrategy does not train Keras 3 models (keras-team/keras#20585).
    """
    return (
        f"devices: {count} needs the jax backend: under TensorFlow a trial trains on one device "
        "(MirroredStrategy normalises each device's share of a batch on its own, another model than one "
        "device trains); run with KERAS_BACKEND=jax, whose keras.distribution.DataParallel normalises the whole batch"
    )


def _detect_tensorflow(requested: str, wanted: int | None) -> Placement:
    import tensorflow as tf

    if wanted and wanted > 1:
        raise DeviceError(devices_refused_by_tensorflow(wanted))
    if requested in ("auto", "tpu"):
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            strategy = tf.distribute.TPUStrategy(resolver)
            count = strategy.num_replicas_in_sync
            return Placement("tensorflow", "tpu", count, f"TPU x{count}", _strategy=strategy)
        except (ValueError, RuntimeError, tf.errors.NotFoundError, tf.errors.UnimplementedError):
            log.debug("no TPU found")
    gpus = tf.config.list_physical_devices("GPU")
    kind = _pick(requested, ["gpu"] if gpus else [], "tensorflow")
    if kind == "gpu":
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
        note = None
        if len(gpus) > 1:
            note = f"TensorFlow trains on 1 of the {len(gpus)} GPUs here; under JAX a trial trains on all of them"
        strategy = tf.distribute.get_strategy()  # places every operation on the first GPU
        return Placement("tensorflow", "gpu", 1, f"GPU x1: {name}", note, _strategy=strategy)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0") if gpus else tf.distribute.get_strategy()
    note = _fallback_note(requested, kind)
    return Placement("tensorflow", "cpu", 1, _cpu_description(), note, _strategy=strategy)


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


def _cpu_description(count: int = 1) -> str:
    return f"CPU{f' x{count}' if count > 1 else ''}: {_cpu_name()} ({os.cpu_count()} cores)"


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

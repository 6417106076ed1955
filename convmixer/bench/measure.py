"""Training-speed benchmark: the package's ConvMixer against the official PyTorch code.

For each configuration, on one machine in one run, it measures
* the package's training step on each Keras backend installed (TensorFlow, JAX; each in a
  process of its own, since Keras picks its backend once per process): the Keras model of
  convmixer.model, compiled as convmixer.train compiles it for the device, fed the same
  synthetic batch with `train_on_batch`;
* the reference: convmixer.bench.torch_reference at its fastest precision on the device;
* the input pipeline alone: convmixer.pipeline with every augmentation on;
* the analytic model FLOPs and the FLOP utilisation against a measured matmul peak.

Steps are timed by wall clock after warm-up steps; speeds use the median step. The
results are a list of dicts (`ENTRY_KEYS` and more) written as JSON, and a markdown table.

`convmixer bench` (bench.cli) runs it.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from keras import ops

from .. import backend, device, paths, records
from ..config import TrialConfig
from ..data import Dataset, split_identity
from ..flops import model_flops as architecture_flops
from ..pipeline import make_datasets
from ..train import compiled_model
from .spec import BenchError, Settings, Spec

RESULTS_DIR = paths.BENCHMARK_RESULTS


def set_threads(intra_op: int | None = None, inter_op: int | None = None) -> None:
    """TensorFlow's thread pools; only possible before TensorFlow runs its first operation."""
    if intra_op is None and inter_op is None:
        return
    if keras.backend.backend() != "tensorflow":
        raise BenchError("--intra-op-threads and --inter-op-threads set TensorFlow's thread pools")
    import tensorflow as tf

    try:
        if intra_op is not None:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op is not None:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError as error:
        raise BenchError(f"cannot set TensorFlow threads now ({error}): set them before anything runs") from None


# ---- FLOPs ---------------------------------------------------------------------------------
def model_flops(spec: Spec) -> dict:
    """The analytic FLOP count of `spec` per image (convmixer.flops.model_flops)."""
    return architecture_flops(**dataclasses.asdict(spec))


def depthwise_paths(spec: Spec) -> list[str]:
    """How each depthwise convolution of the model is computed here (model.depthwise_path):
    one entry for a single or merged kernel, one per kernel size in the parallel form."""
    from ..model import depthwise_path

    side = spec.image_size // spec.patch_size
    kernels = spec.kernel_sizes if spec.mixing == "parallel" else (max(spec.kernel_sizes),)
    return [depthwise_path(side, side, k) for k in kernels]


def matmul_peak_flops(kind: str, size: int | None = None, dtype: str = "float32", repeats: int = 3) -> float:
    """FLOP/s of the fastest of `repeats` size x size matrix products (after one untimed) on
    the backend's default device of `kind`."""
    size = size or (2048 if kind == "cpu" else 8192)
    a = keras.random.normal((size, size), seed=1, dtype=dtype)
    b = keras.random.normal((size, size), seed=2, dtype=dtype)
    product = ops.matmul
    if keras.backend.backend() == "jax":
        import jax

        product = jax.jit(ops.matmul)  # eager JAX would time the dispatch as well
    best = math.inf
    for attempt in range(repeats + 1):
        start = time.perf_counter()
        float(ops.convert_to_numpy(product(a, b)[0, 0]))  # reading one value waits for the product
        if attempt:
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


# ---- measurements --------------------------------------------------------------------------
def time_package(spec: Spec, settings: Settings, placement: device.Placement) -> list[float]:
    """Seconds of each timed training step of the package's model (after the warm-up steps)."""
    previous = keras.mixed_precision.global_policy().name
    device.set_precision(settings.precision)
    try:
        keras.utils.set_random_seed(0)
        config = spec.trial_config(settings.batch_size).replace(jit_compile=settings.jit_compile, fused=settings.fused)
        execution = device.execution_choices(config, placement)
        model = compiled_model(config, spec.num_classes, steps_per_epoch=1, execution=execution)
        x, y = synthetic_batch(spec, settings.batch_size)
        for _ in range(settings.warmup):
            model.train_on_batch(x, y)
        seconds = []
        for _ in range(settings.steps):
            start = time.perf_counter()
            model.train_on_batch(x, y)  # returns the loss as a number: the step has finished
            seconds.append(time.perf_counter() - start)
        return seconds
    finally:
        device.set_precision(previous)


def synthetic_batch(spec: Spec, batch_size: int):
    """Random 0..255 float images and one-hot labels, already on the device as tensors."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, spec.image_size, spec.image_size, 3)).astype("float32")
    labels = np.eye(spec.num_classes, dtype="float32")[rng.integers(0, spec.num_classes, batch_size)]
    return ops.convert_to_tensor(images), ops.convert_to_tensor(labels)


def pipeline_images_per_second(spec: Spec, batch_size: int, batches: int, warmup: int = 1) -> float:
    """Images per second drawn from the augmented training pipeline, with no model attached."""
    size = batch_size * (batches + warmup)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (size, spec.image_size, spec.image_size, 3), dtype=np.uint8)
    empty = np.empty((0, spec.image_size, spec.image_size, 3), np.uint8)
    no_labels = np.empty(0, np.int32)
    data = Dataset(
        x_train=images,
        y_train=rng.integers(0, spec.num_classes, size).astype(np.int32),
        x_val=empty,
        y_val=no_labels,
        x_test=empty,
        y_test=no_labels,
        class_names=[str(c) for c in range(spec.num_classes)],
        name="synthetic",
        source="random pixels",
        image_size=spec.image_size,
        test_split=split_identity([]),
    )
    train = make_datasets(data, spec.trial_config(batch_size)).train
    if hasattr(train, "__getitem__"):  # a PyDataset (JAX): batches by index, augmented on the device
        batches_left = (train[i] for i in range(len(train)))
    else:
        batches_left = iter(train)
    for _ in range(warmup):  # fills the shuffle buffer and traces the augmentations
        next(batches_left)
    start = time.perf_counter()
    last, drawn = None, 0
    for images, _ in batches_left:
        last, drawn = images, drawn + len(images)
    ops.convert_to_numpy(last[0, 0, 0])  # wait for work still queued on an accelerator
    return drawn / (time.perf_counter() - start)


def reference_speed(spec: Spec, settings: Settings) -> dict:
    """The PyTorch reference's speed at its best precision (see convmixer.bench.torch_reference)."""
    try:
        from . import torch_reference
    except ImportError:
        raise BenchError("the PyTorch reference needs torch: pip install '.[bench]' (or pass --no-reference)") from None
    return torch_reference.best_training_speed(
        spec.width,
        spec.depth,
        spec.kernel_sizes,
        spec.patch_size,
        spec.image_size,
        spec.num_classes,
        settings.batch_size,
        settings.steps,
        settings.warmup,
        mixing=spec.mixing,
        precisions=settings.reference_precisions,
    )


# ---- the run -------------------------------------------------------------------------------
def run(specs: list[Spec], settings: Settings, log=print) -> list[dict]:
    """Measure every spec on every backend of `settings` and return one entry per spec and
    backend (see ENTRY_KEYS). One configuration at a time: the package on each backend, then the
    reference, back to back, so that the machine's drift during a long run (a shared VM's speed
    wanders by tens of percent) touches both sides of a ratio alike."""
    entries = []
    for spec in specs:
        measured = []
        for name in settings.backends or backend.installed():
            log(f"{spec.name}: keras on {name} ...")
            measured += _package_in_subprocess(name, [spec], settings, log)
        if settings.reference:
            log(f"{spec.name}: reference ...")
            reference = reference_speed(spec, settings)
            for entry in measured:
                entry.update(
                    reference_images_per_second=reference["images_per_second"],
                    ratio=entry["package_images_per_second"] / reference["images_per_second"],
                    reference_precision=reference["precision"],
                    reference_device=reference["device"],
                    reference_by_precision=reference["by_precision"],
                )
        entries += measured
    _compare_with_single_kernel(entries)
    return entries


def _package_in_subprocess(name: str, specs: list[Spec], settings: Settings, log) -> list[dict]:
    """measure_package() in a fresh process on backend `name` (Keras picks it once per process)."""
    request = {"specs": [dataclasses.asdict(spec) for spec in specs], "settings": dataclasses.asdict(settings)}
    with tempfile.TemporaryDirectory() as folder:
        request_path, result_path = Path(folder) / "request.json", Path(folder) / "result.json"
        request_path.write_text(json.dumps(request))
        command = [sys.executable, "-m", "convmixer.bench.measure", str(request_path), str(result_path)]
        done = subprocess.run(command, env={**os.environ, "KERAS_BACKEND": name}, text=True, capture_output=True)
        for line in done.stdout.splitlines():
            log(f"  {line}")
        if done.returncode != 0:
            raise BenchError(f"the {name} measurement failed: {done.stderr.strip().splitlines()[-1]}")
        return json.loads(result_path.read_text())


def measure_package(specs: list[Spec], settings: Settings, log=print) -> list[dict]:
    """The package's side of every spec on this process's backend: step, pipeline, FLOPs."""
    placement = device.detect()
    compute_dtype = keras.mixed_precision.Policy(settings.precision).compute_dtype
    log(f"{placement.description}: matmul peak ({compute_dtype}) ...")
    peak = matmul_peak_flops(placement.kind, settings.peak_size, compute_dtype)
    threads = {}
    if placement.backend == "tensorflow":
        import tensorflow as tf

        threads = {
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        }
    execution = device.execution_choices(TrialConfig(jit_compile=settings.jit_compile, fused=settings.fused), placement)
    common = {
        "backend": placement.backend,
        "device": placement.description,
        "batch_size": settings.batch_size,
        "steps": settings.steps,
        "warmup": settings.warmup,
        "precision": settings.precision,
        "jit_compile": execution.jit_compile,
        "fused": execution.fused,
        "onednn": execution.onednn,
        **threads,
        "peak_gflops": peak / 1e9,
        "peak_dtype": compute_dtype,
        "packages": _versions(),
        "git_commit": records.git_commit(),
        "created": records.now(),
    }
    with placement.scope():
        return [{**_measure(spec, settings, placement, peak, log), **common} for spec in specs]


def _measure(spec: Spec, settings: Settings, placement, peak: float, log) -> dict:
    log(f"{spec.name}: package ...")
    seconds = statistics.median(time_package(spec, settings, placement))
    package = settings.batch_size / seconds
    flops = model_flops(spec)
    entry = {
        "config": spec.name,
        "package_images_per_second": package,
        "package_step_seconds": seconds,
        "reference_images_per_second": None,
        "ratio": None,
        "reference_precision": None,
        "reference_device": None,
        "reference_by_precision": None,
        "pipeline_images_per_second": None,
        "pipeline_ratio": None,
        "augmentation": None,
        "flop_utilisation": package * flops["training_flops"] / peak,
        "model_gflops_per_image": flops["training_flops"] / 1e9,
        "width": spec.width,
        "depth": spec.depth,
        "kernel_sizes": list(spec.kernel_sizes),
        "patch_size": spec.patch_size,
        "image_size": spec.image_size,
        "num_classes": spec.num_classes,
        "mixing": spec.mixing,
        "depthwise_paths": depthwise_paths(spec),
    }
    if settings.pipeline:  # measured beside each configuration, as run() measures one at a time
        log(f"{spec.name}: pipeline ...")
        pipeline = pipeline_images_per_second(spec, settings.batch_size, settings.steps, settings.warmup)
        entry.update(
            pipeline_images_per_second=pipeline,
            pipeline_ratio=pipeline / package,
            augmentation=spec.trial_config(settings.batch_size).augmentation_summary(),
        )
    return entry


def _compare_with_single_kernel(entries: list[dict]) -> None:
    """`cost_vs_single_kernel`: a multi-kernel model's step time over that of the same model
    with only its largest kernel, when both were measured (the merged form should be ~1x)."""

    def shape(entry):
        return tuple(entry[key] for key in ("backend", "width", "depth", "patch_size", "image_size", "num_classes"))

    singles = {(*shape(e), e["kernel_sizes"][0]): e for e in entries if len(e["kernel_sizes"]) == 1}
    for entry in entries:
        single = singles.get((*shape(entry), max(entry["kernel_sizes"])))
        if len(entry["kernel_sizes"]) > 1 and single:
            cost = single["package_images_per_second"] / entry["package_images_per_second"]
            entry["cost_vs_single_kernel"] = cost


def _versions() -> dict:
    versions = {**records.package_versions(), "python": platform.python_version()}
    try:
        versions["torch"] = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        pass
    return versions


# ---- output --------------------------------------------------------------------------------
def table(entries: list[dict]) -> str:
    """The results as a markdown table."""
    columns = {
        "config": "config",
        "backend": "backend",
        "package_images_per_second": "package img/s",
        "reference_images_per_second": "reference img/s",
        "reference_precision": "reference precision",
        "ratio": "package/reference",
        "pipeline_images_per_second": "pipeline img/s",
        "pipeline_ratio": "pipeline/package",
        "model_gflops_per_image": "GFLOP/img (train)",
        "flop_utilisation": "FLOP utilisation",
        "cost_vs_single_kernel": "cost vs single k",
    }
    frame = pd.DataFrame(entries).reindex(columns=list(columns)).rename(columns=columns)
    frame = frame.astype(object).where(frame.notna(), None)  # None prints as "-", NaN as "nan"
    return frame.to_markdown(index=False, floatfmt=".3g", missingval="-")


def default_output(where: str) -> Path:
    """benchmarks/results/<device>-<date>.json, the device as a file-name slug."""
    slug = re.sub(r"[^a-z0-9]+", "-", where.lower()).strip("-")
    return RESULTS_DIR / f"{slug}-{datetime.date.today().isoformat()}.json"


def write(entries: list[dict], path: Path) -> Path:
    records.write_atomic(path, json.dumps(entries, indent=2) + "\n")
    return path


def _measure_package_command(request_path: str, result_path: str) -> int:
    request = json.loads(Path(request_path).read_text())
    specs = [Spec(**{**spec, "kernel_sizes": tuple(spec["kernel_sizes"])}) for spec in request["specs"]]
    values = request["settings"]
    settings = Settings(**{**values, "backends": None, "reference_precisions": None})
    set_threads(settings.intra_op_threads, settings.inter_op_threads)
    entries = measure_package(specs, settings, log=lambda line: print(line, flush=True))
    write(entries, Path(result_path))
    return 0


if __name__ == "__main__":  # the child process of _package_in_subprocess: REQUEST.json RESULT.json
    sys.exit(_measure_package_command(*sys.argv[1:]))

"""XLA's CPU depthwise convolution against the sum of shifted products (convmixer.model.depthwise_by_taps).

Why the model computes depthwise convolutions as shifted products under JAX on a CPU. Times
the forward pass and the forward+backward (gradients for input and kernel) of one layer, jitted,
median of five after a warm-up, and writes benchmarks/results/depthwise-xla-cpu-<date>.json.

    python benchmarks/depthwise_xla_cpu.py
"""

import datetime
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from convmixer import backend

backend.use("jax")  # before anything imports Keras
from convmixer import device, records  # noqa: E402
from convmixer.model import depthwise_by_taps  # noqa: E402

SHAPES = [(128, 16, 128, 5), (128, 16, 128, 9), (128, 9, 512, 9)]  # batch, side, channels, kernel


def grouped(x, kernel):
    channels = x.shape[-1]
    return jax.lax.conv_general_dilated(
        x, kernel.reshape(*kernel.shape[:2], 1, channels), (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels,
    )  # fmt: skip


def median_seconds(function, *args, repeats=5):
    jax.block_until_ready(function(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    rng = np.random.default_rng(0)
    results = []
    for batch, side, channels, k in SHAPES:
        x = jnp.asarray(rng.normal(size=(batch, side, side, channels)).astype("float32"))
        kernel = jnp.asarray(rng.normal(size=(k, k, channels, 1)).astype("float32"))
        np.testing.assert_allclose(grouped(x, kernel), depthwise_by_taps(x, kernel), rtol=1e-3, atol=1e-3)
        row = {"shape": f"{batch}x{side}x{side}x{channels}", "kernel": k}
        for name, op in (("grouped", grouped), ("taps", depthwise_by_taps)):
            forward = jax.jit(op)
            both = jax.jit(jax.grad(lambda x, w, op=op: jnp.sum(op(x, w) ** 2), argnums=(0, 1)))
            row[f"{name}_forward_ms"] = 1e3 * median_seconds(forward, x, kernel)
            row[f"{name}_forward_backward_ms"] = 1e3 * median_seconds(both, x, kernel)
        row["forward_speedup"] = row["grouped_forward_ms"] / row["taps_forward_ms"]
        row["forward_backward_speedup"] = row["grouped_forward_backward_ms"] / row["taps_forward_backward_ms"]
        print(json.dumps(row), flush=True)
        results.append(row)
    out = {
        "device": device.detect().description,
        "packages": records.package_versions(),
        "created": records.now(),
        "results": results,
    }
    path = Path(__file__).parent / "results" / f"depthwise-xla-cpu-{datetime.date.today().isoformat()}.json"
    records.write_atomic(path, json.dumps(out, indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()

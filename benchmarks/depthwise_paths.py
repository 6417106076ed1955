"""The depthwise convolution three ways on this machine: Keras' op, shifted products, matrices.

Why `convmixer.model.depthwise_conv` picks the path it does per shape. Times one layer's
forward and forward+backward (gradients for input and kernel) under the running Keras backend
(compiled: tf.function without XLA on TensorFlow, as the trainer runs it on a CPU; jax.jit on
JAX), median of five after a warm-up, checks every path against Keras' op, and writes
benchmarks/results/depthwise-paths-<backend>-<date>.json.

    python benchmarks/depthwise_paths.py tensorflow   # or jax [--all-paths]
"""

import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from convmixer import backend

NAME = backend.use(sys.argv[1] if len(sys.argv) > 1 else "auto")
# XLA's CPU grouped convolution (Keras' op under JAX) was 4 to 26x slower than the shifted
# products (results/depthwise-xla-cpu-2026-11-22.json) and takes minutes per shape here: JAX
# times it only with --all-paths.
TIMED = ("taps", "matrix") if NAME == "jax" and "--all-paths" not in sys.argv else ("keras", "taps", "matrix")
import keras  # noqa: E402
from keras import ops  # noqa: E402

from convmixer import device, records  # noqa: E402
from convmixer.model import depthwise_by_matrix, depthwise_by_taps  # noqa: E402

# batch, token-grid side, channels, kernel: the bench's and the studies' layers.
SHAPES = [
    (128, 16, 256, 5),  # CIFAR-10 p=2 (Keras example, official recipe)
    (128, 8, 256, 9),  # CIFAR-10 p=4, k=9 (ReScience figure 4)
    (128, 8, 128, 5),  # the cpu profile's comparisons
    (128, 16, 256, 9),  # CIFAR-10 p=2, k=9
    (128, 9, 512, 9),  # Tiny-ImageNet p=7 (Columbia)
    (128, 9, 512, 2),
    (128, 9, 512, 6),  # 81 pixels against 36 taps: the crossover
    (128, 9, 512, 10),
    (128, 9, 512, 14),
    (128, 16, 512, 9),  # Tiny-ImageNet p=4
    (128, 5, 512, 9),  # Tiny-ImageNet p=11
    (128, 9, 128, 9),  # Tiny-ImageNet p=7 at width 128
    (128, 16, 128, 9),
]
PATHS = {
    "keras": lambda x, w: ops.depthwise_conv(x, w, strides=1, padding="same"),
    "taps": depthwise_by_taps,
    "matrix": depthwise_by_matrix,
}


def compiled(op):
    """(forward, forward+backward) of `op`, compiled as the backend's trainer would."""
    if NAME == "jax":
        import jax

        loss = lambda x, w: (op(x, w) ** 2).sum()  # noqa: E731
        return jax.jit(op), jax.jit(jax.grad(loss, argnums=(0, 1)))
    import tensorflow as tf

    def both(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            loss = tf.reduce_sum(op(x, w) ** 2)
        return tape.gradient(loss, [x, w])

    return tf.function(op, jit_compile=False), tf.function(both, jit_compile=False)


def median_ms(function, *args, repeats=5):
    ops.convert_to_numpy(keras.tree.flatten(function(*args))[0])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ops.convert_to_numpy(keras.tree.flatten(function(*args))[0])
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main():
    rng = np.random.default_rng(0)
    results = []
    for batch, side, channels, k in SHAPES:
        x = ops.convert_to_tensor(rng.normal(size=(batch, side, side, channels)).astype("float32"))
        kernel = ops.convert_to_tensor(rng.normal(size=(k, k, channels, 1)).astype("float32"))
        reference = ops.convert_to_numpy(PATHS["keras"](x, kernel))
        row = {"shape": f"{batch}x{side}x{side}x{channels}", "kernel": k}
        for name in TIMED:
            op = PATHS[name]
            np.testing.assert_allclose(ops.convert_to_numpy(op(x, kernel)), reference, rtol=1e-3, atol=1e-3)
            forward, both = compiled(op)
            row[f"{name}_forward_ms"] = median_ms(forward, x, kernel)
            row[f"{name}_forward_backward_ms"] = median_ms(both, x, kernel)
        row["fastest"] = min(TIMED, key=lambda name: row[f"{name}_forward_backward_ms"])
        print(json.dumps(row), flush=True)
        results.append(row)
    out = {
        "backend": NAME,
        "device": device.detect().description,
        "packages": records.package_versions(),
        "created": records.now(),
        "results": results,
    }
    day = datetime.date.today().isoformat()
    path = Path(__file__).parent / "results" / f"depthwise-paths-{NAME}-{day}.json"
    records.write_atomic(path, json.dumps(out, indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()

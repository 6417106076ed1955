"""The depthwise convolution four ways on this machine: Keras' op, shifted products, matrices
whole or per tile (the last measured and dropped: it is defined here, not in the package).

Why `convmixer.model.depthwise_conv` picks the path it does per shape. Times one layer's
forward and forward+backward (gradients for input and kernel) under the running Keras backend
(compiled: tf.function without XLA on TensorFlow, as the trainer runs it on a CPU; jax.jit on
JAX), median of five after a warm-up, checks every path against Keras' op, and writes
benchmarks/results/depthwise-paths-<backend>-<date>.json.

    python benchmarks/depthwise_paths.py tensorflow   # or jax [--all-paths] [--out FILE.json]

Whole matrices are timed up to `MATRIX_MAX_PIXELS` (larger ones would take gigabytes).
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
# Timed only with --all-paths: XLA's CPU grouped convolution (Keras' op under JAX), 4 to 26x
# slower than the shifted products (results/depthwise-xla-cpu-2026-11-22.json) and minutes per
# shape here; on TensorFlow the shifted products, 14 to 29x slower than its op; and the tiles,
# 4 to 46x slower than the fastest path on TensorFlow at every shape, with both gradients
# (results/depthwise-paths-tensorflow-2026-11-23.json).
if "--all-paths" in sys.argv:
    TIMED = ("keras", "taps", "matrix", "tiles")
else:
    TIMED = ("taps", "matrix") if NAME == "jax" else ("keras", "matrix")
import keras  # noqa: E402
from keras import ops  # noqa: E402

from convmixer import device, records  # noqa: E402
from convmixer.model import MATRIX_MAX_PIXELS, depthwise_by_matrix, depthwise_by_taps  # noqa: E402

# batch, token-grid side, channels, kernel: the bench's and the studies' layers.
SHAPES = [
    (128, 32, 256, 9),  # CIFAR-10 p=1, k=9 (the paper's best)
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


def depthwise_by_tiles(x, kernel):
    """The depthwise convolution as matrix products over tiles, for maps too large for
    `depthwise_by_matrix`'s one matrix per channel (p=1): the map is cut into T x T output
    tiles, T = k - 1, and each tile is its 2T x 2T input window times channel c's (T^2, 4T^2)
    matrix of kernel taps, the same for every tile: about 3x the multiply-adds, at GEMM speed.
    On TensorFlow the einsum's transposes of the 4x larger windows cost more than it saves.
    """
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    size_h, size_w = kernel.shape[:2]
    tile = max(size_h, size_w, 2) - 1
    rows, cols = -(-height // tile), -(-width // tile)  # tiles down and across
    top, left = (size_h - 1) // 2, (size_w - 1) // 2
    padding = [(0, 0), (top, (rows + 1) * tile - height - top), (left, (cols + 1) * tile - width - left), (0, 0)]
    blocks = ops.reshape(ops.pad(x, padding), (-1, rows + 1, tile, cols + 1, tile, channels))
    # Window (r, c) is blocks (r..r+1, c..c+1): (batch, rows, 2T, cols, 2T, channels).
    windows = ops.concatenate([blocks[:, :rows], blocks[:, 1:]], axis=2)
    windows = ops.concatenate([windows[:, :, :, :cols], windows[:, :, :, 1:]], axis=4)
    taps = ops.concatenate([ops.reshape(kernel, (size_h * size_w, channels)), ops.zeros((1, channels), kernel.dtype)])
    i, j, tap_i, tap_j = np.meshgrid(*(np.arange(n) for n in (tile, tile, size_h, size_w)), indexing="ij")
    index = np.full((tile, tile, 2 * tile, 2 * tile), size_h * size_w, dtype="int32")
    index[i, j, i + tap_i, j + tap_j] = tap_i * size_w + tap_j  # (output pixel, window pixel) -> tap
    out = ops.einsum("brucvk,ijuvk->bricjk", windows, ops.take(taps, index, axis=0))
    return ops.reshape(out, (-1, rows * tile, cols * tile, channels))[:, :height, :width, :]


PATHS = {
    "keras": lambda x, w: ops.depthwise_conv(x, w, strides=1, padding="same"),
    "taps": depthwise_by_taps,
    "matrix": depthwise_by_matrix,
    "tiles": depthwise_by_tiles,
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
        timed = [name for name in TIMED if name != "matrix" or side * side <= MATRIX_MAX_PIXELS]
        for name in timed:
            op = PATHS[name]
            np.testing.assert_allclose(ops.convert_to_numpy(op(x, kernel)), reference, rtol=1e-3, atol=1e-3)
            forward, both = compiled(op)
            row[f"{name}_forward_ms"] = median_ms(forward, x, kernel)
            row[f"{name}_forward_backward_ms"] = median_ms(both, x, kernel)
        row["fastest"] = min(timed, key=lambda name: row[f"{name}_forward_backward_ms"])
        print(json.dumps(row), flush=True)
        results.append(row)
    out = {
        "backend": NAME,
        "device": device.detect().description,
        "onednn": device.tensorflow_onednn(),  # TensorFlow's oneDNN CPU kernels (null under JAX)
        "packages": records.package_versions(),
        "created": records.now(),
        "results": results,
    }
    day = datetime.date.today().isoformat()
    default = Path(__file__).parent / "results" / f"depthwise-paths-{NAME}-{day}.json"
    path = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else default
    records.write_atomic(path, json.dumps(out, indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()

"""TensorFlow's grouped convolution as a depthwise path on a CPU, measured against its depthwise op.

A lever tried for the p=1 shapes and dropped (benchmarks/README.md, "The depthwise convolution's
three paths"). `tf.nn.conv2d` with a (k, k, 1, C) filter is a grouped convolution, one input
channel per group; TensorFlow has no CPU gradient for it, so both gradients are written as grouped
convolutions too: the input's is the output gradient against the kernel turned 180 degrees, the
kernel's the padded input (batch as each group's channels) against the output gradient. Checks
each part against TensorFlow's depthwise op, then prints forward, input gradient and kernel
gradient in ms (median of 5 after a warm-up, tf.function without XLA, as the trainer runs on a CPU).

    python benchmarks/depthwise_grouped_tf.py                 # the shapes below
    python benchmarks/depthwise_grouped_tf.py 128,32,256,9    # batch,side,channels,kernel
"""

import statistics
import sys
import time

import tensorflow as tf

SHAPES = [(128, 32, 256, 9), (128, 16, 256, 5), (128, 16, 128, 9), (128, 9, 128, 9), (128, 9, 512, 9)]
STRIDES = [1, 1, 1, 1]


def median_ms(function, *args, repeats=5):
    function(*args)  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _ = [tensor.numpy() for tensor in tf.nest.flatten(function(*args))]
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def parts(batch, side, channels, k):
    """(name, function, arguments) of each part, TensorFlow's depthwise op and the grouped form."""
    x = tf.random.normal((batch, side, side, channels))
    kernel = 0.1 * tf.random.normal((k, k, channels, 1))
    dy = tf.random.normal((batch, side, side, channels))
    pad = (k - 1) // 2  # odd k: "same" pads alike before and after
    filters = lambda kernel: tf.reshape(kernel, (k, k, 1, channels))  # noqa: E731

    def kernel_gradient(x, dy):
        padded = tf.pad(x, [[0, 0], [pad, k - 1 - pad], [pad, k - 1 - pad], [0, 0]])
        grouped = tf.reshape(tf.transpose(padded, (1, 2, 3, 0)), (1, side + k - 1, side + k - 1, channels * batch))
        return tf.reshape(tf.nn.conv2d(grouped, tf.transpose(dy, (1, 2, 0, 3)), 1, "VALID"), (k, k, channels, 1))

    shape = tf.constant([k, k, channels, 1])
    op = {
        "forward": lambda x, kernel: tf.nn.depthwise_conv2d(x, kernel, STRIDES, "SAME"),
        "input gradient": lambda kernel, dy: tf.compat.v1.nn.depthwise_conv2d_native_backprop_input(
            tf.shape(x), kernel, dy, STRIDES, "SAME"
        ),
        "kernel gradient": lambda x, dy: tf.compat.v1.nn.depthwise_conv2d_native_backprop_filter(
            x, shape, dy, STRIDES, "SAME"
        ),
    }
    grouped = {
        "forward": lambda x, kernel: tf.nn.conv2d(x, filters(kernel), 1, "SAME"),
        "input gradient": lambda kernel, dy: tf.nn.conv2d(dy, filters(kernel[::-1, ::-1]), 1, "SAME"),
        "kernel gradient": kernel_gradient,
    }
    arguments = {"forward": (x, kernel), "input gradient": (kernel, dy), "kernel gradient": (x, dy)}
    return [(name, tf.function(op[name]), tf.function(grouped[name]), arguments[name]) for name in op]


def main():
    shapes = [tuple(map(int, arg.split(","))) for arg in sys.argv[1:]] or SHAPES
    for batch, side, channels, k in shapes:
        print(f"{batch}x{side}x{side}x{channels}, k={k}")
        for name, op, grouped, args in parts(batch, side, channels, k):
            want, got = op(*args), grouped(*args)
            error = float(tf.reduce_max(tf.abs(got - want)) / tf.reduce_max(tf.abs(want)))
            ms = {"TensorFlow's op": median_ms(op, *args), "grouped": median_ms(grouped, *args)}
            timings = "   ".join(f"{path} {value:8.1f} ms" for path, value in ms.items())
            print(f"  {name:15s} {timings}   (relative difference {error:.1e})", flush=True)


if __name__ == "__main__":
    main()

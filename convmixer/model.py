"""ConvMixer ("Patches Are All You Need?") and the multi-kernel depthwise layer, in Keras 3.

The model takes raw RGB images with values 0..255 and normalises them itself, so a saved
`model.keras` can be evaluated on any copy of the dataset.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import layers, ops

from . import device
from . import fused as fused_ops
from .config import MIXING_MODES

# Per-channel statistics of the datasets' training images, on the 0..255 scale.
CHANNEL_STATS = {
    "cifar10": ((125.31, 122.95, 113.87), (62.99, 62.09, 66.70)),
    "imagenet": ((123.68, 116.78, 103.94), (58.39, 57.12, 57.38)),
}


def same_padding_offset(kernel_size: int, target_size: int) -> int:
    """Where a k-kernel starts inside a larger zero-padded kernel so "same" outputs agree.

    TensorFlow's "same" padding puts (k - 1) // 2 zeros before the input and the rest after,
    so an even kernel is centred one step to the left of the odd convention.
    """
    return (target_size - 1) // 2 - (kernel_size - 1) // 2


# On a CPU, token grids with at most this many pixels per kernel tap take the matrix path, up to
# MATRIX_MAX_PIXELS: the measured crossovers (benchmarks/results/depthwise-paths-*.json).
MATRIX_PIXELS_PER_TAP = {"tensorflow": 2.25, "jax": 16}
MATRIX_MAX_PIXELS = 256  # 16x16: each channel's matrix has pixels^2 entries (134 MB at 512 channels)


def depthwise_path(height: int, width: int, kernel_size: int) -> str:
    """How `depthwise_conv` computes a stride-1 "same" depthwise convolution on this device.

    On a CPU, "matrix" (`depthwise_by_matrix`) where the grid is small against the kernel. With
    both gradients, on TensorFlow it was 1.1 to 7.5x faster than TensorFlow's own op on 5x5 to
    9x9 grids for k >= 6 (and 8x8 at k=9), 2 to 10x slower on 16x16 grids at k=5 or 9x9 at
    k=2; under JAX 1.6 to 46x faster than the shifted products everywhere but 9x9 at k=2.
    Otherwise JAX on a CPU takes "taps" (XLA's CPU grouped convolution was 4 to 26x slower:
    benchmarks/results/depthwise-xla-cpu-2026-11-22.json) and everything else "keras", Keras'
    own op (oneDNN, cuDNN, the TPU's).
    """
    if not device.computes_on_cpu() or height is None or width is None:  # unknown sizes: a shape-only pass
        return "keras"
    pixels = height * width
    if pixels <= MATRIX_MAX_PIXELS and pixels <= MATRIX_PIXELS_PER_TAP[keras.backend.backend()] * kernel_size**2:
        return "matrix"
    return "taps" if keras.backend.backend() == "jax" else "keras"


def depthwise_conv(x, kernel):
    """Depthwise convolution, stride 1, "same" padding, of NHWC `x` with a (k, k, C, 1) kernel,
    by the path `depthwise_path` picks for its shape."""
    path = depthwise_path(x.shape[1], x.shape[2], max(kernel.shape[:2]))
    if path == "matrix":
        return depthwise_by_matrix(x, kernel)
    if path == "taps":
        return depthwise_by_taps(x, kernel)
    return ops.depthwise_conv(x, kernel, strides=1, padding="same")


def depthwise_by_taps(x, kernel):
    """`depthwise_conv` as the sum over the kernel's taps of the shifted input times the tap."""
    size_h, size_w = kernel.shape[:2]
    top, left = (size_h - 1) // 2, (size_w - 1) // 2  # "same" pads the extra row after, as TensorFlow
    padded = ops.pad(x, [(0, 0), (top, size_h - 1 - top), (left, size_w - 1 - left), (0, 0)])
    height, width = x.shape[1], x.shape[2]
    out = 0.0
    for i in range(size_h):
        for j in range(size_w):
            out = out + padded[:, i : i + height, j : j + width, :] * kernel[i, j, :, 0]
    return out


def depthwise_by_matrix(x, kernel):
    """`depthwise_conv` as one matrix product per channel: out[c, :, q] = sum_p x[c, :, p] M_c[p, q].

    M_c holds channel c's kernel taps at the (input pixel, output pixel) pairs the kernel links,
    zeros elsewhere. On a small token grid (ConvMixer's 8x8 or 9x9 at k=9) M_c is nearly dense,
    and a matrix product costs the same multiply-adds as the convolution at the speed of GEMM.
    The product runs channel-major, (C, batch, pixels) @ (C, pixels, pixels), written as two
    explicit transposes around a batched matmul: TensorFlow's gradient of that is two matmuls
    and two transposes, where an einsum's gradient transposes every operand again (the layer
    with both gradients: 1.1 to 2x faster than the einsum on TensorFlow, benchmarks/README.md;
    under JAX, XLA picks the layout itself).
    """
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    size_h, size_w = kernel.shape[:2]
    taps = ops.concatenate([ops.reshape(kernel, (size_h * size_w, channels)), ops.zeros((1, channels), kernel.dtype)])
    matrix = ops.take(ops.transpose(taps), _tap_index(height, width, size_h, size_w), axis=1)  # (C, in, out)
    pixels_first = ops.transpose(ops.reshape(x, (-1, height * width, channels)), (2, 0, 1))  # (C, batch, in)
    out = ops.transpose(ops.matmul(pixels_first, matrix), (1, 2, 0))  # (batch, out, C)
    return ops.reshape(out, (-1, height, width, channels))


@functools.cache
def _tap_index(height: int, width: int, size_h: int, size_w: int) -> np.ndarray:
    """For each (input, output) pixel pair, the kernel tap linking them ("same" padding, as
    TensorFlow), or size_h * size_w (a zero) where none does."""
    top, left = (size_h - 1) // 2, (size_w - 1) // 2
    out_y, out_x, tap_i, tap_j = np.meshgrid(
        np.arange(height), np.arange(width), np.arange(size_h), np.arange(size_w), indexing="ij"
    )
    in_y, in_x = out_y + tap_i - top, out_x + tap_j - left
    inside = (in_y >= 0) & (in_y < height) & (in_x >= 0) & (in_x < width)
    index = np.full((height * width, height * width), size_h * size_w, dtype="int32")
    index[(in_y * width + in_x)[inside], (out_y * width + out_x)[inside]] = (tap_i * size_w + tap_j)[inside]
    return index


@keras.saving.register_keras_serializable(package="convmixer")
class DepthwiseConv2D(layers.DepthwiseConv2D):
    """Keras' DepthwiseConv2D, computed by `depthwise_conv` when it is stride 1 and "same"."""

    def call(self, inputs):
        plain = self.strides != (1, 1) or self.padding != "same" or self.dilation_rate != (1, 1)
        if plain or depthwise_path(inputs.shape[1], inputs.shape[2], max(self.kernel_size)) == "keras":
            return super().call(inputs)
        outputs = depthwise_conv(inputs, self.kernel)
        if self.use_bias:
            outputs = outputs + self.bias
        return outputs if self.activation is None else self.activation(outputs)


@keras.saving.register_keras_serializable(package="convmixer")
class MixedDepthwiseConv2D(layers.Layer):
    """Depthwise convolutions of several kernel sizes mixed by softmax(alpha) weights.

    This is the "dynamic weighted kernel" of the Columbia study (its appendix 9.3):
    `sum_i softmax(alpha)_i * DepthwiseConv2D_{k_i}(x)`, each convolution with its own bias.
    `mode="parallel"` computes it literally. `mode="merged"` (the default) uses linearity:
    the mix equals one depthwise convolution whose kernel is the alpha-weighted sum of the
    kernels zero-padded to the largest size, and whose bias is the weighted sum of biases.
    Both hold the same weights, so a model can be switched between modes.
    """

    def __init__(self, kernel_sizes, mode="merged", **kwargs):
        super().__init__(**kwargs)
        if mode not in MIXING_MODES:
            raise ValueError(f"unknown mode {mode!r} (choose from: {', '.join(MIXING_MODES)})")
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if not self.kernel_sizes or min(self.kernel_sizes) < 1:
            raise ValueError(f"kernel_sizes must be a non-empty list of sizes >= 1, got {kernel_sizes}")
        self.mode = mode

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernels = [
            self.add_weight(name=f"kernel_{k}", shape=(k, k, channels, 1), initializer="glorot_uniform")
            for k in self.kernel_sizes
        ]
        self.biases = [
            self.add_weight(name=f"bias_{k}", shape=(channels,), initializer="zeros") for k in self.kernel_sizes
        ]
        # Columbia initialises the mixing logits to ones: equal weights at the start.
        self.alpha = self.add_weight(name="alpha", shape=(len(self.kernel_sizes),), initializer="ones")

    def call(self, x):
        weights = ops.softmax(self.alpha)
        if self.mode == "parallel":
            outputs = [depthwise_conv(x, kernel) + bias for kernel, bias in zip(self.kernels, self.biases)]
            return sum(weights[i] * out for i, out in enumerate(outputs))
        kernel, bias = self.merged_kernel_and_bias(weights)
        return depthwise_conv(x, kernel) + bias

    def merged_kernel_and_bias(self, weights=None):
        """The single depthwise kernel (and bias) equal to the weighted mix."""
        if weights is None:
            weights = ops.softmax(self.alpha)
        size = max(self.kernel_sizes)
        kernel = 0.0
        for i, (k, w) in enumerate(zip(self.kernel_sizes, self.kernels)):
            start = same_padding_offset(k, size)
            pad = [(start, size - k - start), (start, size - k - start), (0, 0), (0, 0)]
            kernel = kernel + weights[i] * ops.pad(w, pad)
        bias = sum(weights[i] * b for i, b in enumerate(self.biases))
        return kernel, bias

    def mixing_weights(self) -> list[float]:
        """The learned softmax(alpha) weights, one per kernel size, as Python floats."""
        return [float(w) for w in ops.convert_to_numpy(ops.softmax(ops.cast(self.alpha, "float32")))]

    def get_config(self):
        return {**super().get_config(), "kernel_sizes": list(self.kernel_sizes), "mode": self.mode}


def batch_norm(name: str, fused: bool = False) -> layers.Layer:
    """BatchNorm with PyTorch's defaults, as in the official code (Keras' momentum 0.99
    leaves the moving statistics far from the data after a short training)."""
    norm = fused_ops.BatchNormalization if fused else layers.BatchNormalization
    return norm(momentum=0.9, epsilon=1e-5, name=name)


def activation_layer(activation: str, fused: bool = False) -> layers.Layer:
    """The activation; GELU through convmixer.fused when `fused` is on."""
    if activation == "gelu" and fused:
        return fused_ops.GELU()
    return layers.Activation(activation)


def spatial_mixer(kernel_sizes, mixing: str, name: str) -> layers.Layer:
    """Depthwise spatial mixing: a plain DepthwiseConv2D for one size, else the mixed layer."""
    if len(kernel_sizes) == 1:
        return DepthwiseConv2D(kernel_sizes[0], padding="same", name=name)
    return MixedDepthwiseConv2D(kernel_sizes, mode=mixing, name=name)


def build_convmixer(
    width: int = 256,
    depth: int = 8,
    kernel_size: int = 5,
    patch_size: int = 2,
    num_classes: int = 10,
    image_size: int | None = 32,
    activation: str = "gelu",
    kernel_sizes=None,
    mixing: str = "merged",
    channel_stats: str = "cifar10",
    fused: bool = False,
    name: str | None = None,
) -> keras.Model:
    """ConvMixer-width/depth as in the paper's Figure 2, with a normalising stem.

    `kernel_sizes` (a list) replaces `kernel_size` by the dynamic weighted kernel. The 1x1
    convolutions are Dense layers over the channel axis (the same maths, faster on the CPU).
    `fused=True` uses convmixer.fused's GELU and BatchNorm (faster under TensorFlow on a CPU).
    `image_size=None` takes images of any size (progressive resizing trains on several).
    """
    sizes = tuple(kernel_sizes) if kernel_sizes else (kernel_size,)
    mean, std = CHANNEL_STATS[channel_stats]
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Normalization(mean=mean, variance=[s * s for s in std], name="normalize")(inputs)
    x = layers.Conv2D(width, patch_size, strides=patch_size, name="patch_embed")(x)
    x = activation_layer(activation, fused)(x)
    x = batch_norm("patch_bn", fused)(x)
    for i in range(depth):
        shortcut = x
        x = spatial_mixer(sizes, mixing, name=f"block{i}_depthwise")(x)
        x = activation_layer(activation, fused)(x)
        x = batch_norm(f"block{i}_depthwise_bn", fused)(x)
        x = layers.Add(name=f"block{i}_residual")([x, shortcut])
        x = layers.Dense(width, name=f"block{i}_pointwise")(x)
        x = activation_layer(activation, fused)(x)
        x = batch_norm(f"block{i}_pointwise_bn", fused)(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="head")(x)
    sizes_name = "-".join(map(str, sizes))
    return keras.Model(inputs, outputs, name=name or f"convmixer_{width}_{depth}_k{sizes_name}_p{patch_size}")


def mixing_weights(model: keras.Model) -> dict[str, list[float]]:
    """Learned softmax(alpha) weights of every multi-kernel layer, by layer name."""
    return {layer.name: layer.mixing_weights() for layer in model.layers if isinstance(layer, MixedDepthwiseConv2D)}


def count_trainable_params(model: keras.Model) -> int:
    return int(sum(ops.size(w) for w in model.trainable_weights))

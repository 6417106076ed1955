"""Model shapes, parameter counts, the multi-kernel layer's two forms, the depthwise convolution
as shifted products, the fused layers against Keras' own, saving, strategies."""

import contextlib

import keras
import numpy as np
import pytest
from backends import numpy, outputs_and_gradients, requires_tensorflow

from convmixer import fused
from convmixer.config import TrialConfig
from convmixer.data import load_dataset
from convmixer.model import (
    CHANNEL_STATS,
    MixedDepthwiseConv2D,
    build_convmixer,
    count_trainable_params,
    depthwise_by_matrix,
    depthwise_by_taps,
    depthwise_path,
    mixing_weights,
    same_padding_offset,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "width, depth, k, p, classes, size, expected",
    [
        (256, 8, 5, 2, 10, 32, 594_186),  # ConvMixer-256/8, k=5, p=2 on CIFAR-10 (params/published.yaml: 594,186)
        # ReScience draft tables (in thousands): 559, 709, 592, 707, 718.
        (256, 8, 3, 1, 10, 32, 559_114),
        (256, 8, 9, 2, 10, 32, 708_874),
        (256, 8, 5, 1, 10, 32, 591_882),
        (256, 8, 9, 1, 10, 32, 706_570),
        (256, 8, 9, 4, 10, 32, 718_090),
        # Columbia baseline ConvMixer-512/8, k=9, p=7 on 200 classes (the report says 2.55M).
        (512, 8, 9, 7, 200, 63, 2_632_904),
    ],
)
def test_parameter_counts(width, depth, k, p, classes, size, expected):
    model = build_convmixer(width, depth, k, p, classes, size)
    assert count_trainable_params(model) == expected


def test_output_is_a_distribution_over_the_classes():
    model = build_convmixer(16, 2, 3, 4, num_classes=7, image_size=32)
    out = numpy(model(np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")))
    assert out.shape == (3, 7) and (out > 0).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_the_model_takes_raw_pixels_and_standardises_them_with_the_datasets_channel_statistics():
    """Raw 0..255 pixels in: the stem maps CIFAR-10's channel mean to 0 and mean + std to 1, and
    those statistics are the real images' (the shipped sample's 3,000 training images, JPEG)."""
    model = build_convmixer(16, 2, 3, 4, num_classes=10, image_size=32)
    stem = keras.Model(model.input, model.get_layer("normalize").output)
    mean, std = (np.array(v, "float32") for v in CHANNEL_STATS["cifar10"])
    at_mean, one_std_up = (np.broadcast_to(v, (1, 32, 32, 3)).astype("float32") for v in (mean, mean + std))
    np.testing.assert_allclose(numpy(stem(at_mean)), 0.0, atol=1e-5)
    np.testing.assert_allclose(numpy(stem(one_std_up)), 1.0, atol=1e-5)
    images = load_dataset(TrialConfig(data_dir="sample", val_size=0)).x_train.astype("float64")
    np.testing.assert_allclose(images.mean(axis=(0, 1, 2)), mean, atol=2.0)
    np.testing.assert_allclose(images.std(axis=(0, 1, 2)), std, atol=2.0)


def test_padding_offset_matches_tensorflow_same_padding():
    # TF pads (k - 1) // 2 before: an even kernel sits one step left of centre.
    assert [same_padding_offset(k, 10) for k in (2, 4, 6, 8, 10)] == [4, 3, 2, 1, 0]
    assert [same_padding_offset(k, 9) for k in (3, 5, 9)] == [3, 2, 0]


def _twin_layers(sizes, channels):
    x = np.random.default_rng(1).normal(size=(2, 11, 13, channels)).astype("float32")
    parallel = MixedDepthwiseConv2D(sizes, mode="parallel")
    merged = MixedDepthwiseConv2D(sizes, mode="merged")
    parallel.build(x.shape)
    merged.build(x.shape)
    rng = np.random.default_rng(0)
    values = [rng.normal(size=w.shape).astype("float32") for w in parallel.weights]
    parallel.set_weights(values)
    merged.set_weights(values)
    return x, parallel, merged


@pytest.mark.parametrize("sizes", [(2, 4, 6, 8, 10), (3, 5, 9), (2, 3), (1, 4)])
def test_merged_equals_parallel_outputs_and_gradients(sizes):
    x, parallel, merged = _twin_layers(sizes, channels=4)
    (y_p, g_p), (y_m, g_m) = (outputs_and_gradients(layer, x) for layer in (parallel, merged))
    np.testing.assert_allclose(y_p, y_m, rtol=1e-4, atol=1e-4)
    for a, b in zip(g_p, g_m):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_even_kernel_alignment_against_plain_depthwise():
    """With all weight on one even kernel, the mix equals keras' own DepthwiseConv2D."""
    x, _, merged = _twin_layers((2, 4, 6), channels=3)
    plain = keras.layers.DepthwiseConv2D(4, padding="same")
    plain.build(x.shape)
    plain.set_weights([numpy(merged.kernels[1]), numpy(merged.biases[1])])
    merged.alpha.assign([-1e4, 0.0, -1e4])
    np.testing.assert_allclose(merged(x), plain(x), rtol=1e-5, atol=1e-5)


class _DepthwiseBy(keras.layers.Layer):
    """A bias-free depthwise convolution computed by `op`, to compare gradients."""

    def __init__(self, size, op):
        super().__init__()
        self.size, self.op = size, op

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(self.size, self.size, input_shape[-1], 1))

    def call(self, x):
        return self.op(x, self.kernel)


@pytest.mark.parametrize("op", [depthwise_by_taps, depthwise_by_matrix])
@pytest.mark.parametrize("size", [1, 2, 3, 5, 9, 10])
def test_the_depthwise_paths_equal_the_depthwise_convolution(size, op):
    """The sum of shifted products and the per-channel matrix products are Keras' "same"
    depthwise convolution, forward and both gradients, even kernels and non-square maps included."""
    rng = np.random.default_rng(size)
    x = rng.normal(size=(2, 9, 11, 6)).astype("float32")
    plain = keras.layers.DepthwiseConv2D(size, padding="same", use_bias=False)
    other = _DepthwiseBy(size, op)
    kernel = rng.normal(size=(size, size, 6, 1)).astype("float32")
    for layer in (plain, other):
        layer.build(x.shape)
        layer.set_weights([kernel])
    (y_plain, grads_plain), (y_other, grads_other) = (outputs_and_gradients(layer, x) for layer in (plain, other))
    np.testing.assert_allclose(y_other, y_plain, rtol=1e-4, atol=1e-4)
    for a, b in zip(grads_other, grads_plain):  # input, kernel
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_the_depthwise_path_follows_the_measured_crossover():
    """On a CPU, matrices where they were measured faster (benchmarks/depthwise_paths.py): on
    TensorFlow the 8x8 and 9x9 grids at k >= 6, under JAX everything up to 16x16 but 9x9 at k=2."""
    jax = keras.backend.backend() == "jax"
    matrix = [(8, 9), (9, 9), (9, 14), (5, 9), (9, 6)] + ([(16, 5), (16, 9), (8, 5)] if jax else [])
    other = [(9, 2), (32, 9)] + ([] if jax else [(16, 5), (16, 9), (8, 5)])
    assert {depthwise_path(side, side, k) for side, k in matrix} == {"matrix"}
    assert {depthwise_path(side, side, k) for side, k in other} == {"taps" if jax else "keras"}


def test_mixing_weights_readable_and_model_saves(tmp_path):
    model = build_convmixer(8, 2, patch_size=4, kernel_sizes=[2, 4, 6], num_classes=3)
    weights = mixing_weights(model)
    assert list(weights) == ["block0_depthwise", "block1_depthwise"]
    np.testing.assert_allclose(weights["block0_depthwise"], [1 / 3] * 3, rtol=1e-6)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
    assert loaded.get_layer("block0_depthwise").kernel_sizes == (2, 4, 6)


def test_multi_kernel_param_count_is_the_sum_of_its_kernels():
    single = count_trainable_params(build_convmixer(16, 1, kernel_size=3, patch_size=4))
    mixed = count_trainable_params(build_convmixer(16, 1, kernel_sizes=[3, 5], patch_size=4))
    assert mixed - single == 5 * 5 * 16 + 16 + 2  # second kernel and bias, and two alphas


def _train_one_step(scope):
    with scope:
        model = build_convmixer(8, 1, 3, 4, num_classes=4, kernel_sizes=[2, 3])
        model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(2).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    y = np.arange(8) % 4
    return model.fit(x, y, batch_size=4, epochs=1, verbose=0).history["loss"][0]


@requires_tensorflow
def test_trains_under_mirrored_strategy():
    import tensorflow as tf

    assert np.isfinite(_train_one_step(tf.distribute.MirroredStrategy(["/cpu:0"]).scope()))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_convmixer(8, 1, patch_size=4, kernel_sizes=[2, 3], num_classes=4)
        out = model(np.zeros((2, 32, 32, 3), "float32"))
        assert out.dtype == "float32"  # the softmax head stays in float32
        assert model.get_layer("block0_depthwise").compute_dtype == policy.split("_")[1]
        assert np.isfinite(_train_one_step(contextlib.nullcontext()))
    finally:
        keras.mixed_precision.set_global_policy("float32")


# The fused layers exist under TensorFlow only: elsewhere fused.GELU is keras' gelu and
# fused.BatchNormalization Keras' own code, so there is nothing to compare.
@requires_tensorflow
def test_fused_gelu_equals_keras_gelu_with_gradients():
    x = np.random.default_rng(1).normal(size=(4, 6, 6, 8)).astype("float32") * 3
    fused_y, fused_grads = outputs_and_gradients(fused.GELU(), x, training=True)
    plain_y, plain_grads = outputs_and_gradients(keras.layers.Activation("gelu"), x, training=True)
    np.testing.assert_allclose(fused_y, plain_y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused_grads[0], plain_grads[0], rtol=1e-4, atol=1e-6)


def _batch_norm_pair(x):
    fused_bn = fused.BatchNormalization(momentum=0.9, epsilon=1e-5)
    plain_bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    for bn in (fused_bn, plain_bn):
        bn.build(x.shape)
        bn.gamma.assign(np.linspace(0.5, 2.0, 16))
        bn.beta.assign(np.linspace(-1.0, 1.0, 16))
    return fused_bn, plain_bn


@requires_tensorflow
def test_fused_batch_norm_equals_keras_batch_norm():
    """TensorFlow's fused kernel against Keras' BatchNormalization, outputs, gradients and statistics."""
    x = np.random.default_rng(3).normal(size=(8, 5, 5, 16)).astype("float32") * 2 + 1
    fused_bn, plain_bn = _batch_norm_pair(x)
    fused_y, fused_grads = outputs_and_gradients(fused_bn, x, training=True)
    plain_y, plain_grads = outputs_and_gradients(plain_bn, x, training=True)
    np.testing.assert_allclose(fused_y, plain_y, rtol=1e-4, atol=1e-5)
    for fused_grad, plain_grad in zip(fused_grads, plain_grads):  # input, gamma, beta
        np.testing.assert_allclose(fused_grad, plain_grad, rtol=1e-3, atol=1e-4)
    for bn in (fused_bn, plain_bn):  # the gradient pass under JAX is stateless: update the statistics
        bn(x, training=True)
    np.testing.assert_allclose(numpy(fused_bn.moving_mean), numpy(plain_bn.moving_mean), rtol=1e-5)
    np.testing.assert_allclose(numpy(fused_bn.moving_variance), numpy(plain_bn.moving_variance), rtol=1e-5)
    np.testing.assert_allclose(
        numpy(fused_bn(x, training=False)), numpy(plain_bn(x, training=False)), rtol=1e-5, atol=1e-5
    )


@requires_tensorflow
def test_fused_batch_norm_runs_the_fused_kernel():
    import tensorflow as tf

    x = tf.random.stateless_normal((8, 5, 5, 16), seed=(3, 4))
    fused_bn, _ = _batch_norm_pair(x)
    graph = tf.function(lambda x: fused_bn(x, training=True)).get_concrete_function(x).graph
    assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}


@requires_tensorflow
def test_fused_model_equals_plain_keras_model():
    fast = build_convmixer(width=32, depth=2, kernel_size=5, patch_size=4, fused=True)
    plain = build_convmixer(width=32, depth=2, kernel_size=5, patch_size=4)
    assert any(isinstance(layer, fused.GELU) for layer in fast.layers)
    assert not any(isinstance(layer, (fused.GELU, fused.BatchNormalization)) for layer in plain.layers)
    plain.set_weights(fast.get_weights())
    x = np.random.default_rng(5).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(numpy(fast(x, training=True)), numpy(plain(x, training=True)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(numpy(fast(x)), numpy(plain(x)), rtol=1e-4, atol=1e-5)

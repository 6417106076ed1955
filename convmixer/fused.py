"""Faster GELU and BatchNorm for the TensorFlow backend: same maths, fewer kernels.

On the CPU, TensorFlow runs Keras' GELU and BatchNorm as chains of small elementwise
kernels, each a full pass over memory, and together they cost more than the convolutions
of a ConvMixer step (measured: docs/performance.md). Here
* `GELU` computes the exact (erf) GELU and its hand-written gradient, each compiled by XLA
  into one loop. Compiling the whole model instead is slower: XLA's CPU depthwise
  convolution is an order of magnitude slower than oneDNN's.
* `BatchNormalization` trains with TensorFlow's fused kernel (one op forward, one backward)
  and updates the moving statistics exactly as Keras does (biased batch variance).
BatchNorm falls back to Keras' own code in inference and for inputs the fused kernel does
not take. On another backend both layers compute Keras' own maths, so a model saved with
them loads and scores the same under JAX. `tests/test_model.py` checks outputs and gradients against the plain Keras
layers, and `tests/test_train.py` trains a model both ways.
"""

from __future__ import annotations

import functools

import keras
from keras import layers

_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


def _on_tensorflow() -> bool:
    return keras.backend.backend() == "tensorflow"


@functools.cache
def _tf_gelu():
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def forward(x):
        return 0.5 * x * (1.0 + tf.math.erf(x * _SQRT_HALF))

    @tf.function(jit_compile=True)
    def backward(dy, x):
        # Recomputes erf rather than keeping the forward's Phi(x): one fused loop either way, and
        # no extra activation-sized tensor held until the backward pass.
        cdf = 0.5 * (1.0 + tf.math.erf(x * _SQRT_HALF))
        return dy * (cdf + x * _INV_SQRT_2PI * tf.exp(-0.5 * x * x))

    @tf.custom_gradient
    def gelu(x):
        return forward(x), lambda dy: backward(dy, x)

    return gelu


@keras.saving.register_keras_serializable(package="convmixer")
class GELU(layers.Layer):
    """The exact GELU, x * Phi(x), as `keras.activations.gelu(x, approximate=False)`."""

    def call(self, x):
        if not _on_tensorflow():
            return keras.activations.gelu(x, approximate=False)
        return _tf_gelu()(x)


@keras.saving.register_keras_serializable(package="convmixer")
class BatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization, training channels-last 4-D inputs with one fused kernel."""

    def call(self, inputs, training=None, mask=None):
        fusable = (
            _on_tensorflow()
            and training
            and self.trainable
            and mask is None
            and not getattr(self, "renorm", False)  # Keras >= 3.14; older Keras has no renorm
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and self.scale
            and self.center
        )
        if not fusable:
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, "float32")  # as Keras: statistics in float32 under mixed precision
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, self.gamma, self.beta, epsilon=self.epsilon, is_training=True
        )
        # The fused kernel returns the unbiased (n - 1) variance; Keras averages the biased one.
        n = tf.cast(tf.size(x) // tf.shape(x)[-1], "float32")
        variance = variance * (n - 1.0) / n
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(y, self.compute_dtype)

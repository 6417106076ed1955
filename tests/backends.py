"""What tests need to run on either Keras backend: a marker for TensorFlow-only code, and
gradients computed the backend's own way."""

import inspect

import keras
import numpy as np
import pytest
from keras import ops

BACKEND = keras.backend.backend()
requires_tensorflow = pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow code (tf.distribute, fused ops)")
requires_jax = pytest.mark.skipif(BACKEND != "jax", reason="JAX code (jax.jit)")


def numpy(x) -> np.ndarray:
    return ops.convert_to_numpy(x)


def outputs_and_gradients(layer, x, training=False):
    """layer(x) and the gradients of sum(y * sin(y)) (a non-trivial upstream gradient) with
    respect to x and each of the layer's trainable weights, as numpy arrays."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * tf.sin(y))
        return numpy(y), [numpy(g) for g in tape.gradient(loss, [x, *layer.trainable_weights])]
    import jax
    import jax.numpy as jnp

    if not layer.built:
        layer.build(np.shape(x))
    trainable = [v.value for v in layer.trainable_variables]
    frozen = [v.value for v in layer.non_trainable_variables]

    # stateless_call hands `training` to call() whether or not it takes it
    kwargs = {"training": training} if "training" in inspect.signature(layer.call).parameters else {}

    def loss(x, trainable):
        y, _ = layer.stateless_call(trainable, frozen, x, **kwargs)
        return jnp.sum(y * jnp.sin(y)), y

    (_, y), (dx, dweights) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(jnp.asarray(x), trainable)
    return numpy(y), [numpy(dx), *map(numpy, dweights)]

"""Every use the suite makes of Keras' and TensorFlow's non-public behaviour, one function each,
so that a release that changes one breaks here, where tests/test_keras_internals.py looks.

Elsewhere: `train.BackupAndRestore` overrides `keras.callbacks.BackupAndRestore._load_model`, the
method Keras' own on_train_begin calls to read a checkpoint (the test checks it still does).
"""

from __future__ import annotations

import sys

import keras


def restart_fit(model: keras.Model) -> None:
    """Let `model.fit` start again at its `initial_epoch` with a freshly traced step: Keras keeps the
    epoch of the last checkpoint BackupAndRestore restored (`_initial_epoch`) and the step traced for
    the last input shape (`train_function`) across calls to fit; a progressive-resizing stage needs
    neither."""
    model._initial_epoch = None
    model.train_function = None


def seed_states(layer: keras.layers.Layer) -> list:
    """The state variables of a random preprocessing layer's seed generators: all its variables
    (Keras' random layers hold no others)."""
    return list(layer.variables)


def tensorflow_onednn() -> bool | None:
    """Whether TensorFlow runs its oneDNN CPU kernels in this process (convmixer/__init__.py asks
    for them; TensorFlow fixes the choice when it is imported). None: TensorFlow is not loaded.
    No public API reports the switch."""
    if "tensorflow" not in sys.modules:
        return None
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())

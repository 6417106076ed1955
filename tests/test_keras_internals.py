"""The non-public Keras and TensorFlow behaviour the suite relies on (convmixer.keras_internals):
each test fails, naming what changed, when a release changes it."""

import inspect

import keras
import numpy as np
import pytest
from backends import requires_tensorflow

from convmixer import keras_internals
from convmixer.config import TrialConfig
from convmixer.pipeline import make_augmenter

pytestmark = pytest.mark.unit


def _tiny_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    return model


def test_restart_fit_lets_a_second_fit_start_at_its_own_initial_epoch_with_a_new_step():
    model = _tiny_model()
    x, y = np.zeros((8, 4), "float32"), np.eye(2, dtype="float32")[[0, 1] * 4]
    model.fit(x, y, epochs=1, verbose=0)
    for name in ("_initial_epoch", "train_function"):
        assert hasattr(model, name), f"keras.Model no longer has {name}: update keras_internals.restart_fit"
    traced = model.train_function
    keras_internals.restart_fit(model)
    assert model._initial_epoch is None and model.train_function is None
    history = model.fit(x, y, initial_epoch=1, epochs=3, verbose=0)
    assert history.epoch == [1, 2] and model.train_function is not traced


def test_backup_and_restore_still_reads_its_checkpoint_through_load_model():
    """train.BackupAndRestore makes every unreadable checkpoint an OSError by overriding this method."""
    callback = keras.callbacks.BackupAndRestore
    assert callable(getattr(callback, "_load_model", None)), "BackupAndRestore._load_model is gone"
    assert "self._load_model()" in inspect.getsource(callback.on_train_begin)


def test_random_preprocessing_layers_hold_only_their_seed_generators_states():
    """pipeline.Augmenter maps exactly these variables to each batch's seeds (exact resume)."""
    config = TrialConfig(
        crop_scale_min=0.75,
        randaugment_n=2,
        randaugment_m=12,
        color_jitter=0.4,
        erasing_prob=0.25,
        mixup_alpha=0.5,
        cutmix_alpha=0.5,
    )
    augmenter = make_augmenter(config)
    for layer in augmenter.image_layers + augmenter.mixers:
        states = keras_internals.seed_states(layer)
        names = {state.path.rsplit("/", 1)[-1] for state in states}
        assert states and names == {"seed_generator_state"}, f"{type(layer).__name__} holds {names}"
        assert all(tuple(state.shape) == (2,) for state in states)  # a seed pair each


@requires_tensorflow
def test_tensorflow_still_reports_whether_onednn_is_on():
    import tensorflow  # noqa: F401  (loaded, as in a trial)

    assert keras_internals.tensorflow_onednn() in (True, False)

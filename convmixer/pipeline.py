"""tf.data input pipelines and the training augmentations of the ConvMixer recipes.

Batches are float32 images on the 0..255 scale (the model normalises them itself) and
one-hot float32 labels, so that MixUp and CutMix can mix labels. Label smoothing belongs
to the loss, not here. Only the training split is augmented, each augmentation switched
on by its config value, and every random layer is seeded from `config.seed`.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from convmixer.config import TrialConfig
from convmixer.data import Dataset

AUTOTUNE = tf.data.AUTOTUNE


def make_datasets(data: Dataset, config: TrialConfig):
    """(train, val, test) tf.data pipelines; val is None when the validation split is empty."""
    prepare = _prepare(data.num_classes)
    train = (
        tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
        .shuffle(len(data.y_train), seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .map(prepare, num_parallel_calls=AUTOTUNE)
    )
    augment = make_augmenter(config)
    if augment is not None:
        # One call at a time: the random layers draw from seed generators whose state
        # parallel calls would race for, and then the same seed would not repeat a run.
        train = train.map(augment)
    val = _evaluation(data.x_val, data.y_val, prepare, config.batch_size) if len(data.y_val) else None
    test = _evaluation(data.x_test, data.y_test, prepare, config.batch_size)
    return train.prefetch(AUTOTUNE), val, test


def _evaluation(images, labels, prepare, batch_size):
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size).map(prepare).prefetch(AUTOTUNE)


def _prepare(num_classes: int):
    def prepare(images, labels):
        return tf.cast(images, tf.float32), tf.one_hot(labels, num_classes)

    return prepare


# ---- augmentation ---------------------------------------------------------------------------
def augmentation_summary(config: TrialConfig) -> list[str]:
    """The active training augmentations in words, in the order they are applied."""
    return [name for name, _ in _image_augmentations(config) + _batch_mixers(config)]


def make_augmenter(config: TrialConfig):
    """A function (images, one-hot labels) -> (images, labels) for batches, or None if nothing is on."""
    image_layers = [make() for _, make in _image_augmentations(config)]
    mixers = [make() for _, make in _batch_mixers(config)]
    if not image_layers and not mixers:
        return None
    switch = keras.random.SeedGenerator(_seed(config.seed, "mixer switch"))

    def augment(images, labels):
        for layer in image_layers:
            images = layer(images, training=True)
        if mixers:
            # With both MixUp and CutMix on, each batch gets one of them at random, as in timm.
            pick = tf.cast(keras.random.uniform((), 0, len(mixers), seed=switch), tf.int32)
            branches = [lambda mixer=mixer: _mix(mixer, images, labels) for mixer in mixers]
            images, labels = tf.switch_case(pick, branches)
        return tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 255.0), labels

    return augment


def _mix(mixer, images, labels):
    mixed = mixer({"images": images, "labels": labels}, training=True)
    return tf.cast(mixed["images"], tf.float32), tf.cast(mixed["labels"], tf.float32)


def _image_augmentations(config: TrialConfig) -> list:
    """(description, factory) of each per-image augmentation the config switches on, in timm's order."""
    options = _layer_options(config.seed)
    found = []
    if config.crop_scale_min < 1:
        found.append(
            (
                f"random resized crop (scale {config.crop_scale_min:g}..1)",
                lambda: RandomResizedCrop(scale=(config.crop_scale_min, 1.0), **options("crop")),
            )
        )
    if config.flip:
        found.append(("horizontal flip", lambda: keras.layers.RandomFlip("horizontal", **options("flip"))))
    if config.randaugment_n > 0:
        found.append(
            (
                f"RandAugment (N={config.randaugment_n}, M={config.randaugment_m})",
                # M is on the 0..30 scale of torchvision's RandAugment (the official CIFAR-10
                # recipe); keras' factor is the same fraction of each operation's maximum.
                lambda: keras.layers.RandAugment(
                    value_range=(0, 255),
                    num_ops=config.randaugment_n,
                    factor=config.randaugment_m / 30,
                    **options("randaugment"),
                ),
            )
        )
    if config.color_jitter > 0:
        found.append(
            (
                f"colour jitter ({config.color_jitter:g})",
                lambda: _color_jitter(config.color_jitter, **options("colour jitter")),
            )
        )
    if config.erasing_prob > 0:
        p = config.erasing_prob
        found.append(
            (
                f"random erasing (p={p:g})",
                # A (p, p) factor erases with probability p; a single float would draw p from U(0, p).
                lambda: keras.layers.RandomErasing(factor=(p, p), value_range=(0, 255), **options("erasing")),
            )
        )
    return found


def _batch_mixers(config: TrialConfig) -> list:
    """(description, factory) of MixUp and CutMix, which mix images and labels across a batch."""
    options = _layer_options(config.seed)
    found = []
    if config.mixup_alpha > 0:
        found.append(
            (
                f"MixUp (alpha={config.mixup_alpha:g})",
                lambda: keras.layers.MixUp(alpha=config.mixup_alpha, **options("mixup")),
            )
        )
    if config.cutmix_alpha > 0:
        alpha = config.cutmix_alpha
        found.append(
            (
                f"CutMix (alpha={alpha:g})",
                # (a, a): keras would otherwise draw alpha itself from U(0, a) for every batch.
                lambda: keras.layers.CutMix(factor=(alpha, alpha), **options("cutmix")),
            )
        )
    return found


def _layer_options(seed: int):
    """Keyword arguments for a named random layer: its own seed, and float32 even under a
    mixed-precision policy (the layers run in the input pipeline, not in the model)."""
    return lambda layer: {"seed": _seed(seed, layer), "dtype": "float32"}


def _color_jitter(strength: float, **options):
    """torchvision-style ColorJitter(b, c, s) with b = c = s = `strength`, no hue.

    Contrast and saturation scale by a factor in [1 - s, 1 + s] as in torchvision; keras'
    brightness shifts by up to `strength` of the value range instead of scaling.
    """
    low, high = max(0.0, 1 - strength), 1 + strength
    return keras.layers.RandomColorJitter(
        value_range=(0, 255),
        brightness_factor=strength,
        contrast_factor=strength,
        # keras multiplies saturation by f / (1 - f) for a drawn f: invert that mapping.
        saturation_factor=(low / (1 + low), high / (1 + high)),
        **options,
    )


def _seed(seed: int, layer: str) -> int:
    """A seed of its own for each random layer, so that no two layers draw the same numbers."""
    return int(np.random.SeedSequence([seed, *layer.encode()]).generate_state(1)[0] & 0x7FFFFFFF)


class RandomResizedCrop(keras.layers.Layer):
    """Crop a random box and resize it back to the input size (torchvision's RandomResizedCrop).

    The box covers a fraction of the image area drawn from `scale` and has an aspect ratio
    log-uniform in `ratio`. Keras has no such layer (RandomCrop keeps the scale, RandomZoom
    keeps the centre), so this draws boxes per image and uses `tf.image.crop_and_resize`.
    Boxes that would not fit are clipped to the image instead of redrawn.
    """

    def __init__(self, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.ratio = scale, ratio
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images):
        n = tf.shape(images)[0]
        area = keras.random.uniform((n,), *self.scale, seed=self.generator)
        log_ratio = [math.log(r) for r in self.ratio]
        aspect = tf.exp(keras.random.uniform((n,), *log_ratio, seed=self.generator))
        height = tf.minimum(tf.sqrt(area / aspect), 1.0)  # fractions of the image side
        width = tf.minimum(tf.sqrt(area * aspect), 1.0)
        top = keras.random.uniform((n,), seed=self.generator) * (1.0 - height)
        left = keras.random.uniform((n,), seed=self.generator) * (1.0 - width)
        boxes = tf.stack([top, left, top + height, left + width], axis=1)
        return tf.image.crop_and_resize(images, boxes, tf.range(n), images.shape[1:3])

"""Input pipelines and the training augmentations of the ConvMixer recipes.

Batches are float32 images on the 0..255 scale (the model normalises them itself) and
one-hot float32 labels, so that MixUp and CutMix can mix labels. Label smoothing belongs
to the loss, not here. Only the training split is augmented, each augmentation switched
on by its config value. Every random draw of training (the order of the images, every
augmentation) is a function of (seed, epoch): `EpochDraws`, which makes a resumed trial exact.

The augmentations are Keras layers and `keras.ops`, so they run on any backend. Under
TensorFlow the batches come from tf.data, which runs them on the CPU beside the training
step. Under JAX (no tf.data) a `keras.utils.PyDataset` slices the uint8 arrays; on an
accelerator the augmentations run there as one XLA-compiled function (`Augmenter.compiled`),
on a CPU eagerly.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from convmixer import device, keras_internals
from convmixer.config import TrialConfig
from convmixer.data import Dataset


class Pipelines(NamedTuple):
    """The batches `model.fit` and evaluation read, and the draws behind the training batches
    (`draws.callback()` goes into fit's callbacks: it tells them which epoch is starting)."""

    train: object
    val: object | None  # None when the validation split is empty
    test: object
    draws: EpochDraws


def make_datasets(data: Dataset, config: TrialConfig, process: int = 0, processes: int = 1) -> Pipelines:
    """The trial's batches; with several `processes` training one model (under JAX), the training
    and validation batches that `fit` reads are this `process`'s share of each (`ProcessShare`)."""
    augment = make_augmenter(config)
    draws = EpochDraws(len(data.y_train), config.batch_size, len(augment.seed_states) if augment else 0, config.seed)
    if keras.backend.backend() == "tensorflow":
        train = _tf_training(data, augment, draws)
    else:
        train = Batches(data.x_train, data.y_train, config.batch_size, data.num_classes, augment, draws)
    val = evaluation_batches(data.x_val, data.y_val, config.batch_size, data.num_classes) if len(data.y_val) else None
    test = evaluation_batches(data.x_test, data.y_test, config.batch_size, data.num_classes)
    if processes > 1:
        train, val = (
            None if batches is None else ProcessShare(batches, process, processes) for batches in (train, val)
        )
    return Pipelines(train, val, test, draws)


class EpochDraws:
    """Every random draw of a training epoch, as a function of (seed, epoch) alone: the order of
    the images, and for each batch one seed per random augmentation state.

    Derived rather than saved with the checkpoint: Keras' BackupAndRestore saves the model and
    the optimizer at the end of an epoch, not tf.data's iterator or the layers' seed generators,
    and a trial killed mid-epoch reruns that epoch from its start anyway. So the epoch number is
    the whole state of the input pipeline, which a restored `fit` already has; nothing more is
    stored, and a trial started any number of times draws what the uninterrupted one drew. Each
    batch's augmentation is then a pure function of its images and seeds, so batches can be
    augmented in parallel and in any order.
    """

    def __init__(self, num_images: int, batch_size: int, num_states: int, seed: int):
        self.num_images, self.batch_size, self.num_states, self.seed = num_images, batch_size, num_states, seed
        self.set_epoch(0)

    def __len__(self):
        return math.ceil(self.num_images / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch `epoch`'s order and batch seeds (epochs counted from 0, as Keras does)."""
        rng = np.random.default_rng([self.seed, epoch])
        self.epoch = epoch
        self.order = rng.permutation(self.num_images)
        self.seeds = rng.integers(0, 2**31, size=(len(self), self.num_states, 2))  # int64: TensorFlow's seed dtype

    def batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(image indices, augmentation seeds) of batch `index` of the current epoch."""
        return self.order[index * self.batch_size : (index + 1) * self.batch_size], self.seeds[index]

    def batches(self):
        """Every batch of the current epoch, as read when the iteration starts."""
        order, seeds, size = self.order, self.seeds, self.batch_size
        for index in range(len(self)):
            yield order[index * size : (index + 1) * size], seeds[index]

    def callback(self) -> keras.callbacks.Callback:
        """Sets the epoch as `fit` starts it, before it reads that epoch's first batch."""
        return keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: self.set_epoch(epoch))


def resized(train, image_size: int):
    """`train`'s batches (from `make_datasets`) with their images resized to image_size x
    image_size, for the epochs of progressive resizing. They draw from the same stream: the
    shuffling and the augmentations' random draws go on where the last epoch left them."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def resize(images, labels):
            return resize_images(images, image_size), labels

        return train.map(resize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return ResizedBatches(train, image_size)


def resize_images(images, image_size: int):
    """NHWC `images` at image_size x image_size: bilinear with antialiasing, so a downscale
    averages the pixels it drops instead of sampling some of them."""
    return ops.image.resize(images, (image_size, image_size), interpolation="bilinear", antialias=True)


def evaluation_batches(images, labels=None, batch_size=128, num_classes=None):
    """Unshuffled, unaugmented batches (images only when `labels` is None) for evaluate/predict."""
    if keras.backend.backend() != "tensorflow":
        return Batches(images, labels, batch_size, num_classes)
    import tensorflow as tf

    if labels is None:
        return tf.data.Dataset.from_tensor_slices(images).batch(batch_size).map(lambda x: tf.cast(x, "float32"))
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
    return batches.map(_tf_prepare(num_classes)).prefetch(tf.data.AUTOTUNE)


def _tf_training(data: Dataset, augment, draws: EpochDraws):
    """tf.data reads each epoch's (indices, seeds) afresh from `draws` when `fit` starts the
    epoch's iterator; every batch is a pure function of them, so batches are built in parallel
    (in order: tf.data's maps are deterministic unless told otherwise)."""
    import tensorflow as tf

    images, labels = tf.constant(data.x_train), tf.constant(data.y_train)
    prepare = _tf_prepare(data.num_classes)
    signature = (tf.TensorSpec([None], tf.int64), tf.TensorSpec([draws.num_states, 2], tf.int64))

    def load(indices, seeds):
        batch = prepare(tf.gather(images, indices), tf.gather(labels, indices))
        return batch if augment is None else augment(*batch, seeds)

    train = tf.data.Dataset.from_generator(draws.batches, output_signature=signature)
    return train.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _tf_prepare(num_classes: int):
    import tensorflow as tf

    def prepare(images, labels):
        return tf.cast(images, tf.float32), tf.one_hot(labels, num_classes)

    return prepare


class Batches(keras.utils.PyDataset):
    """Batches of uint8 arrays as float32 images and one-hot labels, for backends without tf.data.

    With `draws` (training), each epoch's order and augmentation seeds come from them; without,
    the batches are in order and unaugmented (evaluation).
    """

    def __init__(self, images, labels=None, batch_size=128, num_classes=None, augment=None, draws=None):
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        # Compiled on a GPU or TPU, where eager augmentation starved the step; eager on a CPU,
        # where XLA takes about a minute to compile RandAugment's branches for little gain.
        self.augment = augment.compiled() if augment is not None and not device.computes_on_cpu() else augment
        self.one_hot = np.eye(num_classes, dtype="float32") if labels is not None else None
        self.draws = draws

    def __len__(self):
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index):
        if self.draws is None:
            picked, seeds = slice(index * self.batch_size, (index + 1) * self.batch_size), None
        else:
            picked, seeds = self.draws.batch(index)
        images = self.images[picked]
        labels = self.one_hot[self.labels[picked]] if self.labels is not None else None
        if self.augment is not None:
            return self.augment(images, labels, seeds)  # uint8 to the device, a quarter of float32's bytes
        images = images.astype("float32")
        return (images,) if labels is None else (images, labels)


class ResizedBatches(keras.utils.PyDataset):
    """`Batches` with their images resized (`resized`), for backends without tf.data."""

    def __init__(self, batches: Batches, image_size: int):
        super().__init__(workers=1, use_multiprocessing=False)
        self.batches, self.image_size = batches, image_size

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        images, *labels = self.batches[index]
        return (resize_images(images, self.image_size), *labels)


class ProcessShare(keras.utils.PyDataset):
    """This process's rows of every batch of `batches`, when `processes` processes train one
    model: Keras makes the whole batch of each process's share, in process order
    (`jax.make_array_from_process_local_data`). Every process builds the whole batch, its
    augmentations included, and keeps its rows, so the whole batch is the one that a single
    process would train on; only the augmentation work is repeated, not the model's."""

    def __init__(self, batches, process: int, processes: int):
        super().__init__(workers=1, use_multiprocessing=False)
        self.batches, self.process, self.processes = batches, process, processes

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        arrays = self.batches[index]
        rows = len(arrays[0]) // self.processes
        return tuple(array[self.process * rows : (self.process + 1) * rows] for array in arrays)


# ---- augmentation ---------------------------------------------------------------------------
def make_augmenter(config: TrialConfig):
    """The `Augmenter` of the config's augmentations, or None if nothing is on."""
    on = [kind for kind, _ in config.augmentations()]
    image_layers = [AUGMENTATION_LAYERS[kind](config) for kind in on if kind not in BATCH_MIXERS]
    mixers = [AUGMENTATION_LAYERS[kind](config) for kind in on if kind in BATCH_MIXERS]
    if not image_layers and not mixers:
        return None
    return Augmenter(image_layers, mixers)


class Augmenter:
    """A pure function (images, one-hot labels, seeds) -> (float32 images, labels) of a training
    batch: `seeds` (one pair of integers per entry of `seed_states`, from `EpochDraws`) stand in for
    the random layers' seed generators, which are never advanced."""

    def __init__(self, image_layers, mixers):
        self.image_layers, self.mixers = image_layers, mixers
        self.switch = keras.random.SeedGenerator(0)

    def __call__(self, images, labels, seeds):
        states = self.seed_states
        with keras.StatelessScope(state_mapping=[(state, seeds[i]) for i, state in enumerate(states)]):
            return self._augment(images, labels)

    def _augment(self, images, labels):
        images = ops.cast(images, "float32")
        for layer in self.image_layers:
            images = layer(images, training=True)
        if self.mixers:
            # With both MixUp and CutMix on, each batch gets one of them at random, as in timm.
            # Both are computed and one is kept: a data-dependent branch would not trace on
            # every backend, and mixing costs little beside a training step.
            mixed = [_mix(mixer, images, labels) for mixer in self.mixers]
            images, labels = mixed[0]
            if len(mixed) > 1:
                use_second = keras.random.uniform((), seed=self.switch) < 0.5
                images = ops.where(use_second, mixed[1][0], images)
                labels = ops.where(use_second, mixed[1][1], labels)
        return ops.clip(ops.cast(images, "float32"), 0.0, 255.0), labels

    @property
    def seed_states(self) -> list:
        """The state variables of every random draw: each layer's seed generators and the switch."""
        layers = self.image_layers + self.mixers
        return [state for layer in layers for state in keras_internals.seed_states(layer)] + [self.switch.state]

    def compiled(self):
        """This augmenter as one jitted JAX function: the same draws and results as calling it.

        Run eagerly, the random layers dispatch dozens of small operations per batch, too slow
        to feed a GPU (benchmarks/README.md). Keras compiles preprocessing layers only inside a
        model's train step, and MixUp and CutMix need the labels; the augmenter is pure, so
        jax.jit compiles it whole.
        """
        import jax

        return jax.jit(self.__call__)


def _mix(mixer, images, labels):
    mixed = mixer({"images": images, "labels": labels}, training=True)
    return ops.cast(mixed["images"], "float32"), ops.cast(mixed["labels"], "float32")


BATCH_MIXERS = ("mixup", "cutmix")  # they mix images and labels across a batch, after the per-image ones
# How each augmentation a trial switches on (TrialConfig.augmentations, which says which and in
# what order) is built, from the trial's settings.
AUGMENTATION_LAYERS = {
    "crop": lambda c: RandomResizedCrop(scale=(c.crop_scale_min, 1.0), **LAYER_OPTIONS),
    "flip": lambda c: keras.layers.RandomFlip("horizontal", **LAYER_OPTIONS),
    # M is on the 0..30 scale of torchvision's RandAugment (the official CIFAR-10 recipe); keras'
    # factor is the same fraction of each operation's maximum.
    "randaugment": lambda c: keras.layers.RandAugment(
        value_range=(0, 255), num_ops=c.randaugment_n, factor=c.randaugment_m / 30, **LAYER_OPTIONS
    ),
    "color_jitter": lambda c: _color_jitter(c.color_jitter, **LAYER_OPTIONS),
    # A (p, p) factor erases with probability p; a single float would draw p from U(0, p).
    "erasing": lambda c: keras.layers.RandomErasing(
        factor=(c.erasing_prob, c.erasing_prob), value_range=(0, 255), **LAYER_OPTIONS
    ),
    "mixup": lambda c: keras.layers.MixUp(alpha=c.mixup_alpha, **LAYER_OPTIONS),
    # (a, a): keras would otherwise draw alpha itself from U(0, a) for every batch.
    "cutmix": lambda c: keras.layers.CutMix(factor=(c.cutmix_alpha, c.cutmix_alpha), **LAYER_OPTIONS),
}


# Every random layer: float32 even under a mixed-precision policy (the layers run in the input
# pipeline, not in the model); its seed is a placeholder, since `EpochDraws` seeds every batch.
LAYER_OPTIONS = {"seed": 0, "dtype": "float32"}


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


class RandomResizedCrop(keras.layers.Layer):
    """Crop a random box and resize it back to the input size (torchvision's RandomResizedCrop).

    The box covers a fraction of the image area drawn from `scale` and has an aspect ratio
    log-uniform in `ratio`. Keras has no such layer (RandomCrop keeps the scale, RandomZoom
    keeps the centre), so this draws boxes per image and samples them bilinearly with
    `keras.ops.image.affine_transform`, as `tf.image.crop_and_resize` does (box corners on
    the corner pixels). Boxes that would not fit are clipped to the image instead of redrawn.
    """

    def __init__(self, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.ratio = scale, ratio
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images):
        n = ops.shape(images)[0]
        area = keras.random.uniform((n,), *self.scale, seed=self.generator)
        log_ratio = [math.log(r) for r in self.ratio]
        aspect = ops.exp(keras.random.uniform((n,), *log_ratio, seed=self.generator))
        height = ops.minimum(ops.sqrt(area / aspect), 1.0)  # fractions of the image side
        width = ops.minimum(ops.sqrt(area * aspect), 1.0)
        top = keras.random.uniform((n,), seed=self.generator) * (1.0 - height)
        left = keras.random.uniform((n,), seed=self.generator) * (1.0 - width)
        return crop_and_resize(images, ops.stack([top, left, top + height, left + width], axis=1))


def crop_and_resize(images, boxes):
    """`tf.image.crop_and_resize(images, boxes, range(n), (h, w))` with bilinear sampling, as
    one affine map per image: output pixel (x, y) reads input (x0 + x * sx, y0 + y * sy)."""
    h, w = images.shape[1], images.shape[2]
    top, left, bottom, right = (boxes[:, i] for i in range(4))
    zero = ops.zeros_like(top)
    # keras' transform rows: [a0, a1, a2, b0, b1, b2, c0, c1], x_in = a0 x + a1 y + a2, y_in = b0 x + b1 y + b2;
    # the output has the input's size, so a step of one output pixel is (box side) input pixels.
    transform = ops.stack([right - left, zero, left * (w - 1), zero, bottom - top, top * (h - 1), zero, zero], axis=1)
    return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="constant")

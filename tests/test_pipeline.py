"""Input pipelines (tf.data under TensorFlow, PyDataset otherwise) and augmentations on real
CIFAR-10 images from the shipped sample."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from backends import numpy, requires_jax, requires_tensorflow

from convmixer import data
from convmixer.config import TrialConfig
from convmixer.data import load_dataset
from convmixer.pipeline import (
    RandomResizedCrop,
    crop_and_resize,
    make_augmenter,
    make_datasets,
    resize_images,
    resized,
)

pytestmark = pytest.mark.unit

SAMPLE = Path(__file__).resolve().parents[1] / "convmixer" / "samples" / "cifar10-sample.zip"
NO_AUGMENTATION = {"flip": False}
OFFICIAL_CIFAR10 = {"flip": True, "randaugment_n": 2, "randaugment_m": 12}  # locuslab train.py
EVERYTHING = {
    "crop_scale_min": 0.35,
    "flip": True,
    "randaugment_n": 2,
    "randaugment_m": 12,
    "color_jitter": 0.4,
    "erasing_prob": 0.25,
    "mixup_alpha": 0.8,
    "cutmix_alpha": 1.0,
}


def config(**values):
    settings = {"data_dir": str(SAMPLE), "train_subset": 210, "val_size": 40, "test_subset": 50, "batch_size": 32}
    return TrialConfig.from_dict({**settings, **NO_AUGMENTATION, **values})


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(data.CACHE_DIR_ENV, str(tmp_path_factory.mktemp("cache")))
        return load_dataset(config())


@pytest.fixture(scope="module")
def batch(sample):
    """32 real training images as float32 0..255 and their one-hot labels."""
    return sample.x_train[:32].astype(np.float32), np.eye(10, dtype=np.float32)[sample.y_train[:32]]


def batches(dataset):
    """Every (images, labels) batch of a tf.data pipeline or a PyDataset, as numpy arrays."""
    found = (dataset[i] for i in range(len(dataset))) if hasattr(dataset, "__getitem__") else dataset
    return [(numpy(images), numpy(labels)) for images, labels in found]


def first_batches(dataset, n=2):
    """The first `n` (images, labels) batches of a tf.data pipeline or a PyDataset, as numpy arrays
    (only those are made: under JAX on a CPU every augmentation of a batch runs eagerly)."""
    found = [dataset[i] for i in range(n)] if hasattr(dataset, "__getitem__") else list(dataset.take(n))
    return [(numpy(images), numpy(labels)) for images, labels in found]


def first_batch(dataset):
    return first_batches(dataset, 1)[0]


def augmented(augment, images, labels, draw=0):
    """`augment` applied to one batch with the seeds `EpochDraws` might give it (draw number `draw`)."""
    seeds = np.random.default_rng(draw).integers(0, 2**31, (len(augment.seed_states), 2))
    return augment(images, labels, seeds)


def test_batches_are_float_images_and_one_hot_labels(sample):
    train, val, test, _ = make_datasets(sample, config())
    images, labels = first_batch(train)
    assert images.shape == (32, 32, 32, 3) and images.dtype == np.float32
    assert labels.shape == (32, 10) and labels.dtype == np.float32
    np.testing.assert_array_equal(labels.sum(axis=1), 1)
    for split, dataset, size in (("train", train, 170), ("val", val, 40), ("test", test, 50)):
        sizes = [len(y) for _, y in batches(dataset)]
        assert sum(sizes) == size and max(sizes) == 32, split  # the last, smaller batch is kept


def test_resized_batches_are_smaller_and_reshuffled_every_epoch(sample):
    """Progressive resizing: the training batches at a smaller size, each epoch in a new order."""
    pipelines = make_datasets(sample, config())
    full = batches(pipelines.train)
    small = resized(pipelines.train, 16)
    epochs = [batches(small)]
    pipelines.draws.set_epoch(1)  # what fit's callback does as epoch 2 begins
    epochs.append(batches(small))
    assert [images.shape for images, _ in epochs[0]] == [(len(labels), 16, 16, 3) for _, labels in full]
    labels = [np.concatenate([y for _, y in epoch]) for epoch in epochs]
    assert not np.array_equal(*labels)
    # A fresh pipeline's first batch, resized: each pixel stands for its 2x2 block (an antialiased
    # downscale mixes in a little of the neighbours; another image would be ~50 levels off).
    images, _ = first_batch(resized(make_datasets(sample, config()).train, 16))
    blocks = full[0][0].reshape(-1, 16, 2, 16, 2, 3).mean(axis=(2, 4))
    assert np.abs(images - blocks).mean() < 5 and images.min() >= 0 and images.max() <= 255 + 1e-3


def test_each_epochs_batches_are_a_function_of_seed_and_epoch_alone(sample):
    """Exact resume rests on this: epoch e's batches (order and every augmentation) are the same
    whatever the pipeline drew before, so a pipeline rebuilt on resume at epoch e repeats them.
    (The first two batches of each epoch.)"""
    settings = config(**EVERYTHING, seed=3)
    ran_through = make_datasets(sample, settings)
    for epoch in range(2):  # an uninterrupted trial: epochs 0 and 1 in turn
        ran_through.draws.set_epoch(epoch)
        seen = first_batches(ran_through.train)
    resumed = make_datasets(sample, settings)  # a new process, resuming at epoch 1
    resumed.draws.set_epoch(1)
    for (want_images, want_labels), (got_images, got_labels) in zip(seen, first_batches(resumed.train)):
        np.testing.assert_array_equal(got_images, want_images)
        np.testing.assert_array_equal(got_labels, want_labels)
    resumed.draws.set_epoch(0)
    assert not np.array_equal(first_batch(resumed.train)[0], seen[0][0])


def test_downscaling_is_antialiased():
    """Halving the side, a pixel reaches the output pixels beside its own: sampling alone
    (bilinear without antialiasing takes exactly the 2x2 mean) would leave them at zero."""
    images = np.zeros((1, 32, 32, 3), "float32")
    images[0, 2, 2] = 255.0
    small = numpy(resize_images(images, 16))
    assert small[0, 0, 0, 0] > 1 and small[0, 1, 1, 0] > small[0, 0, 0, 0]
    assert small.sum() == pytest.approx(images.sum() / 4, rel=0.15)  # about as bright: a quarter of the pixels


def test_no_validation_dataset_without_a_validation_split(sample):
    empty = dataclasses.replace(sample, x_val=sample.x_val[:0], y_val=sample.y_val[:0])
    val = make_datasets(empty, config()).val
    assert val is None


def test_without_augmentation_the_training_images_pass_unchanged(sample):
    assert make_augmenter(config()) is None and config().augmentation_summary() == []
    train = make_datasets(sample, config()).train
    seen = np.concatenate([images for images, _ in batches(train)])
    order = lambda x: np.lexsort(x.reshape(len(x), -1).T)  # noqa: E731
    np.testing.assert_array_equal(seen[order(seen)], sample.x_train[order(sample.x_train)].astype(np.float32))


@pytest.mark.parametrize(
    "setting",
    [
        {"crop_scale_min": 0.35},
        {"flip": True},
        {"randaugment_n": 2, "randaugment_m": 12},
        {"color_jitter": 0.4},
        {"erasing_prob": 0.5},
        {"mixup_alpha": 0.8},
        {"cutmix_alpha": 1.0},
    ],
)
def test_each_augmentation_changes_images_and_keeps_the_value_range(batch, setting):
    images, labels = batch
    augment = make_augmenter(config(**setting))
    out, out_labels = map(numpy, augmented(augment, images, labels))
    assert out.shape == images.shape and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 255
    changed = np.abs(out - images).reshape(32, -1).max(axis=1) > 1
    assert changed.sum() >= 4, f"{setting} changed only {changed.sum()} of 32 images"
    np.testing.assert_allclose(out_labels.sum(axis=1), 1, atol=1e-5)


def test_flip_mirrors_whole_images(batch):
    images, labels = batch
    out = numpy(augmented(make_augmenter(config(flip=True)), images, labels)[0])
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
    kept = [np.array_equal(o, i) for o, i in zip(out, images)]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)


def test_mixup_gives_soft_labels_that_sum_to_one(batch):
    images, labels = batch
    mixed = numpy(augmented(make_augmenter(config(mixup_alpha=0.8)), images, labels)[1])
    np.testing.assert_allclose(mixed.sum(axis=1), 1, atol=1e-5)
    assert (mixed.max(axis=1) < 0.99).sum() >= 4  # many labels are now a blend of two classes
    assert (mixed >= 0).all()


def test_same_seed_same_first_batch_with_every_augmentation(sample):
    first = first_batch(make_datasets(sample, config(**EVERYTHING, seed=5)).train)
    again = first_batch(make_datasets(sample, config(**EVERYTHING, seed=5)).train)
    other = first_batch(make_datasets(sample, config(flip=True, mixup_alpha=0.8, seed=6)).train)  # cheaper to trace
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    assert 0 <= first[0].min() and first[0].max() <= 255
    np.testing.assert_allclose(first[1].sum(axis=1), 1, atol=1e-5)


def test_random_resized_crop_of_the_whole_image_is_the_identity(batch):
    images, _ = batch
    crop = RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0), seed=0)
    np.testing.assert_allclose(numpy(crop(images)), images, atol=1e-3)


@requires_tensorflow
def test_crop_and_resize_equals_tensorflows(batch):
    """The backend-neutral crop samples exactly where tf.image.crop_and_resize does."""
    import tensorflow as tf

    images, _ = batch
    rng = np.random.default_rng(0)
    top, left = rng.uniform(0, 0.3, (2, 32))
    boxes = np.stack([top, left, top + rng.uniform(0.4, 0.7, 32), left + rng.uniform(0.4, 0.7, 32)], 1)
    boxes = boxes.astype(np.float32)
    expected = tf.image.crop_and_resize(images, boxes, tf.range(32), (32, 32)).numpy()
    np.testing.assert_allclose(numpy(crop_and_resize(images, boxes)), expected, atol=1e-3)


def test_augmentation_summary():
    assert config(**OFFICIAL_CIFAR10).augmentation_summary() == ["horizontal flip", "RandAugment (N=2, M=12)"]
    assert config(**EVERYTHING).augmentation_summary() == [
        "random resized crop (scale 0.35..1)",
        "horizontal flip",
        "RandAugment (N=2, M=12)",
        "colour jitter (0.4)",
        "random erasing (p=0.25)",
        "MixUp (alpha=0.8)",
        "CutMix (alpha=1)",
    ]


@requires_jax
def test_the_compiled_augmenter_draws_what_the_eager_one_draws(batch):
    """Under JAX the PyDataset runs the augmentations as one jitted function (Augmenter.compiled):
    given the same seeds, two batches come out as they do eagerly, labels exactly, pixels to
    float32 rounding (RandAugment's posterize may round a rare pixel the other way)."""
    images, labels = batch
    eager = make_augmenter(config(**EVERYTHING))
    compiled = eager.compiled()
    for draw in range(2):
        seeds = np.random.default_rng(draw).integers(0, 2**31, (len(eager.seed_states), 2))
        (want_images, want_labels), (got_images, got_labels) = (
            eager(images, labels, seeds),
            compiled(images, labels, seeds),
        )
        np.testing.assert_array_equal(numpy(got_labels), numpy(want_labels))
        differ = np.abs(numpy(got_images) - numpy(want_images)) > 1e-3
        assert differ.mean() < 1e-3, f"{differ.sum()} of {differ.size} pixels differ"

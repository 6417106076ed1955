"""The datasets the suite knows, one entry each: the only place their facts are written.

`config` validates a trial's `dataset` against it, `data` downloads and checks what it names,
the model normalises its input with the channel statistics it points to, and the report takes
each dataset's name, home page and official split sizes (for a published number's sampling
error and for what a published setting costs to train) from here.
"""

from __future__ import annotations

import dataclasses

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str  # as a reader writes it
    channel_stats: str  # the input normalisation (model.CHANNEL_STATS) a model trained on it uses
    image_size: int | None = None  # native side in pixels; None: read from the images
    num_classes: int | None = None
    train_images: int | None = None  # the official training split
    test_images: int | None = None  # the split published numbers are measured on
    classes: tuple[str, ...] | None = None  # the class names, where they are fixed
    homepage: str | None = None
    download: str | None = None  # the archive fetched when no data folder is given
    md5: str | None = None  # of that archive: a changed file is refused
    trainable: bool = True  # False: known only for its published numbers


DATASETS = {
    "cifar10": Dataset(
        "CIFAR-10",
        "cifar10",
        image_size=32,
        num_classes=10,
        train_images=50_000,
        test_images=10_000,
        classes=CIFAR10_CLASSES,
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",  # downloaded by keras.datasets.cifar10
    ),
    "tiny-imagenet": Dataset(
        "Tiny-ImageNet",
        "imagenet",
        image_size=64,
        num_classes=200,
        train_images=100_000,
        test_images=10_000,  # its labelled validation split, on which the studies report
        homepage="https://cs231n.stanford.edu/tiny-imagenet-200.zip",  # the CS231n course's own
        download="https://cs231n.stanford.edu/tiny-imagenet-200.zip",
        md5="90528d7ca1a48142e341f4ef8d21d0de",
    ),
    "folder": Dataset("an image folder", "imagenet"),
    "imagenet": Dataset(
        "ImageNet",
        "imagenet",
        image_size=224,
        num_classes=1000,
        train_images=1_281_167,
        test_images=50_000,
        trainable=False,
    ),
}
TRAINABLE = tuple(key for key, dataset in DATASETS.items() if dataset.trainable)


def native_image_size(key: str) -> int | None:
    """The dataset's own image side in pixels; None where the images say (a folder) or unknown."""
    return DATASETS[key].image_size if key in DATASETS else None


def name(key: str) -> str:
    """The dataset as a reader writes it ("CIFAR-10"); an unknown key as it is."""
    return DATASETS[key].name if key in DATASETS else key

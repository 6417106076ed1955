"""Datasets as uint8 arrays: CIFAR-10, Tiny-ImageNet and plain image folders.

`load_dataset(config)` finds the images (`config.data_dir`, else the folder named by
$CONVMIXER_DATA_DIR, else a download; `data_dir: sample` is the small CIFAR-10 sample shipped
with the package, which the smoke profile uses), keeps a stratified `train_subset` of the training
images, carves the validation split out of them and decodes only the images it keeps,
at `config.image_size`. The test split is only ever used for the final evaluation.
Tiny-ImageNet has no labelled test set, so its official validation images are our test
split.

Files are read from a folder or straight from a zip archive. Both look the same to the
readers (`_Files`): a list of relative POSIX names and a way to read their bytes. Labels
come from the names, so subsets are chosen before decoding, and decoded images are kept
in an .npz cache ($CONVMIXER_CACHE_DIR, default ~/.cache/convmixer; safe to delete).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import keras
import numpy as np
from PIL import Image, UnidentifiedImageError

from convmixer import catalog
from convmixer.config import TrialConfig
from convmixer.records import write_atomic

log = logging.getLogger(__name__)

DATA_DIR_ENV = "CONVMIXER_DATA_DIR"
CACHE_DIR_ENV = "CONVMIXER_CACHE_DIR"
SAMPLE_ZIP = Path(__file__).parent / "samples" / "cifar10-sample.zip"
SAMPLE = "sample"  # data_dir naming SAMPLE_ZIP
# What a dataset's folder or zip is called inside $CONVMIXER_DATA_DIR.
STANDARD_NAMES = {"cifar10": "cifar10-jpeg", "tiny-imagenet": "tiny-imagenet-200"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
# The training subset, the validation split and the test subset use this seed, not the
# trial's, so that trials with different seeds train and are scored on the same images.
SPLIT_SEED = 0
CACHE_FORMAT = 1  # bump when the cached arrays change meaning


class DataError(ValueError):
    """Missing, malformed or unreadable data, reported as one line naming the file."""


@dataclasses.dataclass
class Dataset:
    """Images as uint8 NHWC arrays and int32 labels, split three ways."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    name: str
    source: str  # where the images came from, for the run record
    image_size: int
    test_split: dict  # `split_identity` of the test images, in their order

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def summary(self) -> dict:
        """The `dataset` entry of a run's config.json."""
        return {
            "name": self.name,
            "source": self.source,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "train": len(self.y_train),
            "val": len(self.y_val),
            "test": len(self.y_test),
            "test_files_sha256": self.test_split["files_sha256"],
        }


def load_dataset(config: TrialConfig) -> Dataset:
    """Read `config.dataset` and split it as the config says (see the module docstring)."""
    source = _open_source(config)
    train, val, test = _choose(source, config)
    size = config.image_size or source.image_size
    return Dataset(
        x_train=source.read("train", train, size),
        y_train=source.y_train[train],
        x_val=source.read("train", val, size),
        y_val=source.y_train[val],
        x_test=source.read("test", test, size),
        y_test=source.y_test[test],
        class_names=list(source.class_names),
        name=source.name,
        source=source.description,
        image_size=size,
        test_split=split_identity([source.test_names[i] for i in test]),
    )


def load_test_split(config: TrialConfig) -> tuple[np.ndarray, np.ndarray, str, dict]:
    """(images, labels, source description, split identity) of the test split `load_dataset`
    would choose, reading nothing else: for scoring a saved model on another copy of the dataset."""
    source = _open_source(config)
    test = _test_indices(source, config)
    images = source.read("test", test, config.image_size or source.image_size)
    return images, source.y_test[test], source.description, split_identity([source.test_names[i] for i in test])


def split_identity(names: list[str]) -> dict:
    """What makes two test splits the same: the number of images and a hash of their file names
    in order (the last three parts, `test/<class>/<file>`, so that a folder and a zip of the same
    files agree). Runs with equal identities were scored on the same images, image by image."""
    relative = ["/".join(name.split("/")[-3:]) for name in names]
    return {"images": len(names), "files_sha256": hashlib.sha256("\n".join(relative).encode()).hexdigest()}


@dataclasses.dataclass
class _Source:
    """A dataset before splitting: every label, and images read only when asked for.

    Labels come from file names, so a subset is chosen before anything is decoded.
    """

    name: str
    description: str
    class_names: list[str]
    y_train: np.ndarray
    y_test: np.ndarray
    image_size: int  # native, or the first image's for a folder
    read: Callable[[str, np.ndarray, int], np.ndarray]  # (split, indices, size) -> uint8 images
    test_names: list[str]  # a name per test image (its file; its place in the downloaded batch)


# ---- finding the data ------------------------------------------------------------------
def _open_source(config: TrialConfig) -> _Source:
    location = _locate(config)
    if location is not None:
        return _file_source(location, config.dataset)
    if config.dataset == "cifar10":
        return _download_cifar10()
    return _download_tiny_imagenet()


def _locate(config: TrialConfig) -> Path | None:
    """The folder or zip to read, or None to download."""
    if config.data_dir == SAMPLE:
        if config.dataset != "cifar10":
            raise DataError(f"data_dir: {SAMPLE} is the shipped CIFAR-10 sample, not {config.dataset}")
        return SAMPLE_ZIP
    if config.data_dir:
        return Path(config.data_dir).expanduser()
    if config.dataset == "folder":
        raise DataError("dataset 'folder' needs data_dir: a folder or zip of train/<class>/ and test/<class>/")
    root = os.environ.get(DATA_DIR_ENV)
    if not root:
        return None
    stem = STANDARD_NAMES[config.dataset]
    root = Path(root).expanduser()
    candidates = [root / stem, root / f"{stem}.zip", *sorted(root.glob(f"{stem}*.zip"))]
    found = next((path for path in candidates if path.exists()), None)
    if found is None:
        raise DataError(f"${DATA_DIR_ENV}={root} has no {stem}/ folder or {stem}*.zip archive")
    return found


def _download_cifar10() -> _Source:
    """CIFAR-10 from keras' download (170 MB, once, into ~/.keras/datasets)."""
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as error:  # keras' get_file raises a bare Exception when the fetch fails
        raise DataError(
            f"could not download CIFAR-10 ({_first_line(error)}); pass --data-dir (data_dir=) a cifar10-jpeg "
            f"folder or zip, set ${DATA_DIR_ENV}, or use data_dir: {SAMPLE} for the small shipped sample"
        ) from None
    images = {"train": x_train, "test": x_test}
    return _Source(
        name="cifar10",
        description="keras.datasets.cifar10 (cifar-10-python.tar.gz from www.cs.toronto.edu)",
        class_names=list(catalog.CIFAR10_CLASSES),
        y_train=y_train.reshape(-1).astype(np.int32),
        y_test=y_test.reshape(-1).astype(np.int32),
        image_size=x_train.shape[1],
        read=lambda split, indices, size: _resize(images[split][indices], size),
        test_names=[f"cifar-10-batches-py/test_batch/{i:05d}" for i in range(len(y_test))],
    )


def _download_tiny_imagenet() -> _Source:
    """The official CS231n Tiny-ImageNet zip, downloaded once into the cache and read in place."""
    archive = catalog.DATASETS["tiny-imagenet"]
    try:
        path = keras.utils.get_file(
            "tiny-imagenet-200.zip",
            origin=archive.download,
            file_hash=archive.md5,
            hash_algorithm="md5",
            cache_dir=str(_cache_dir()),
            cache_subdir="downloads",
        )
    except Exception as error:  # keras' get_file raises a bare Exception when the fetch fails
        raise DataError(
            f"could not download Tiny-ImageNet from {archive.download} ({_first_line(error)}); "
            f"pass --data-dir (data_dir=) a tiny-imagenet-200 folder or zip, or set ${DATA_DIR_ENV}"
        ) from None
    source = _file_source(Path(path), "tiny-imagenet")
    return dataclasses.replace(source, description=f"{archive.download} (downloaded to {path})")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


# ---- reading folders and zips ---------------------------------------------------------
class _Files:
    """A folder or a zip archive seen the same way: relative POSIX names and their bytes."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_dir():
            self.zip = None
            names = (p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        elif not path.exists():
            kind = "archive" if path.suffix == ".zip" else "folder"
            raise DataError(f"data {kind} not found: {path}")
        else:
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as error:
                raise DataError(f"not a data folder or a readable zip archive: {path} ({error})") from None
            names = (n for n in self.zip.namelist() if not n.endswith("/"))
        # Skip hidden files and the resource forks that macOS adds to zips.
        self.names = sorted(n for n in names if not any(p.startswith((".", "__MACOSX")) for p in n.split("/")))

    def read(self, name: str) -> bytes:
        return self.zip.read(name) if self.zip else (self.path / name).read_bytes()

    def where(self, name: str) -> str:
        """How error messages name a file."""
        return f"{name} in {self.path}" if self.zip else str(self.path / name)

    def describe(self) -> str:
        return f"{self.path} ({'zip archive' if self.zip else 'folder'})"

    def fingerprint(self, names: list[str]) -> str:
        """Changes whenever `names` may have: path, size and time of the zip or of each file."""
        if self.zip:
            stat = self.path.stat()
            parts = [stat.st_size, stat.st_mtime_ns]
        else:
            parts = [(stat.st_size, stat.st_mtime_ns) for stat in (os.stat(self.path / n) for n in names)]
        return repr([str(self.path.resolve()), parts])


def _file_source(path: Path, kind: str) -> _Source:
    """A folder or zip of `kind` ("cifar10", "tiny-imagenet" or "folder")."""
    files = _Files(path)
    if kind == "tiny-imagenet":
        listing = _tiny_imagenet_listing(files)
    else:
        listing = _class_tree_listing(files, kind)
        if kind == "cifar10" and listing["class_names"] != list(catalog.CIFAR10_CLASSES):
            raise DataError(
                f"{files.path}: expected the CIFAR-10 classes {list(catalog.CIFAR10_CLASSES)}, "
                f"found {listing['class_names']}"
            )
    names = {split: [name for name, _ in listing[split]] for split in ("train", "test")}

    def read(split, indices, size):
        return _decode_cached(files, f"{kind}-{split}", [names[split][i] for i in indices], size)

    return _Source(
        name=kind,
        description=files.describe(),
        class_names=listing["class_names"],
        y_train=np.array([label for _, label in listing["train"]], np.int32),
        y_test=np.array([label for _, label in listing["test"]], np.int32),
        image_size=catalog.native_image_size(kind) or _image_width(files, names["train"][0]),
        read=read,
        test_names=names["test"],
    )


def _class_tree_listing(files: _Files, kind: str) -> dict:
    """Images in `[<top>/]{train,test}/<class>/<image>`; classes are the sorted folder names."""
    trees = {}
    for name in files.names:
        path = PurePosixPath(name)
        parts = path.parts
        if len(parts) >= 3 and parts[-3] in ("train", "test") and path.suffix.lower() in IMAGE_SUFFIXES:
            top = "/".join(parts[:-3])
            trees.setdefault(top, {"train": [], "test": []})[parts[-3]].append((name, parts[-2]))
    if not trees:
        raise DataError(f"no images in {files.path}: expected train/<class>/<image> and test/<class>/<image>")
    if len(trees) > 1:
        tops = ", ".join(f"{top or '.'}/" for top in sorted(trees))
        raise DataError(f"several image trees in {files.path} ({tops}): pass data_dir= the one you mean")
    ((top, splits),) = trees.items()
    for split in ("train", "test"):
        if not splits[split]:
            where = f"{top}/{split}" if top else split
            raise DataError(
                f"no {split} images in {files.path}: the {kind} dataset needs {where}/<class>/<image> files"
            )
    class_names = sorted({label for _, label in splits["train"]})
    unknown = sorted({label for _, label in splits["test"]} - set(class_names))
    if unknown:
        raise DataError(f"test class {unknown[0]!r} in {files.path} has no training images")
    index = {label: i for i, label in enumerate(class_names)}
    return {
        "class_names": class_names,
        "train": [(name, index[label]) for name, label in splits["train"]],
        "test": [(name, index[label]) for name, label in splits["test"]],
    }


def _tiny_imagenet_listing(files: _Files) -> dict:
    """The official layout: wnids.txt, train/<wnid>/images/*, val/images/* + val/val_annotations.txt."""
    wnids_files = sorted((n for n in files.names if PurePosixPath(n).name == "wnids.txt"), key=len)
    if not wnids_files:
        raise DataError(f"wnids.txt not found in {files.path}: expected the tiny-imagenet-200/ layout")
    root = wnids_files[0][: -len("wnids.txt")]
    # Sorted wnids give the usual label order whatever order a mirror's wnids.txt lists them in.
    class_names = sorted(set(files.read(wnids_files[0]).decode().split()))
    index = {wnid: i for i, wnid in enumerate(class_names)}
    names = set(files.names)
    train = []
    for name in files.names:
        parts = PurePosixPath(name[len(root) :]).parts
        if (
            name.startswith(root + "train/")
            and len(parts) == 4
            and parts[2] == "images"
            and parts[1] in index
            and PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES
        ):
            train.append((name, index[parts[1]]))
    if not train:
        raise DataError(f"no training images in {files.path}: expected {root}train/<wnid>/images/<image>")
    annotations = root + "val/val_annotations.txt"
    if annotations not in names:
        raise DataError(f"{files.where(annotations)} not found: it holds the labels of Tiny-ImageNet's val images")
    test = []
    for number, line in enumerate(files.read(annotations).decode().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{files.where(annotations)} line {number}: expected <image><TAB><wnid>, got {line!r}")
        image, wnid = fields[:2]
        if wnid not in index:
            raise DataError(f"{files.where(annotations)} line {number}: class {wnid!r} is not in wnids.txt")
        name = f"{root}val/images/{image}"
        if name not in names:
            raise DataError(f"{files.where(name)} not found (listed in {annotations} line {number})")
        test.append((name, index[wnid]))
    return {"class_names": class_names, "train": train, "test": test}


def _image_width(files: _Files, name: str) -> int:
    return _decode(files.read(name), None, files.where(name)).shape[1]


def _decode_all(files: _Files, names, size: int) -> np.ndarray:
    """Decode images into one (N, size, size, 3) uint8 array.

    One thread: for images this small PIL spends most of its time in Python holding the
    GIL, and threads made decoding slower here (about 270 us per CIFAR image on one).
    """
    out = np.empty((len(names), size, size, 3), np.uint8)
    for i, name in enumerate(names):
        out[i] = _decode(files.read(name), size, files.where(name))
    return out


def _decode(data: bytes, size: int | None, where: str) -> np.ndarray:
    """One image as RGB uint8, resized to size x size unless it is None or already that size."""
    try:
        image = Image.open(io.BytesIO(data))  # in memory: nothing to close
        image.load()  # decode everything now, so a truncated file fails here
    except UnidentifiedImageError:
        raise DataError(f"corrupt image {where}: not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"corrupt image {where}: {error}") from None
    if image.mode != "RGB":
        image = image.convert("RGB")  # Tiny-ImageNet has grayscale JPEGs
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image)


# ---- cache of decoded arrays ------------------------------------------------------------
def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "convmixer").expanduser()


def _decode_cached(files: _Files, label: str, names: list[str], size: int) -> np.ndarray:
    """`names` decoded at `size`, kept in an .npz keyed by the files' fingerprint, names and size."""
    if not names:
        return np.empty((0, size, size, 3), np.uint8)
    key = hashlib.sha256(repr([CACHE_FORMAT, size, files.fingerprint(names), names]).encode()).hexdigest()[:16]
    path = _cache_dir() / f"{label}-{len(names)}x{size}px-{key}.npz"
    if path.exists():
        try:
            with np.load(path) as cached:
                return cached["images"]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            log.warning("ignoring unreadable cache %s (%s)", path, error)
    images = _decode_all(files, names, size)
    try:
        buffer = io.BytesIO()
        np.savez(buffer, images=images)
        write_atomic(path, buffer.getvalue())
    except OSError as error:
        log.warning("could not write the decoded-image cache %s (%s)", path, error)
    return images


# ---- subsets and the validation split ------------------------------------------------------
def _choose(source: _Source, config: TrialConfig):
    """Indices of the train, validation and test images: subsets first, then the validation split."""
    pool = np.arange(len(source.y_train))
    if config.train_subset is not None:
        if config.train_subset > len(pool):
            log.warning(
                "train_subset %d > the %d training images of %s: using them all",
                config.train_subset,
                len(pool),
                source.description,
            )
        else:
            pool = _stratified(source.y_train, config.train_subset, SPLIT_SEED)
    if config.val_size >= len(pool):
        raise DataError(
            f"val_size {config.val_size} leaves no training images: only {len(pool)} from {source.description}"
        )
    val = pool[_stratified(source.y_train[pool], config.val_size, SPLIT_SEED)]
    train = np.setdiff1d(pool, val)
    return train, val, _test_indices(source, config)


def _test_indices(source: _Source, config: TrialConfig) -> np.ndarray:
    test = np.arange(len(source.y_test))
    if config.test_subset is not None and config.test_subset < len(test):
        test = _stratified(source.y_test, config.test_subset, SPLIT_SEED)
    return test


def _stratified(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of `n` items drawn without replacement, each class in proportion to its count."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / counts.sum()
    take = np.floor(quota).astype(int)
    # Hand the rounding remainder to the classes with the largest fractional quotas.
    take[np.argsort(take - quota, kind="stable")[: n - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))
    return out

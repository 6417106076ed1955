"""Dataset loading on real images: the shipped CIFAR-10 sample, the Tiny-ImageNet fixture,
the shared archives when present, plain image folders, splits, the cache and every error."""

import dataclasses
import hashlib
import io
import re
import shutil
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from convmixer import catalog, data
from convmixer.catalog import CIFAR10_CLASSES
from convmixer.config import TrialConfig
from convmixer.data import DataError, load_dataset

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "convmixer" / "samples" / "cifar10-sample.zip"
TINY_FIXTURE = REPO / "tests" / "fixtures" / "tiny-imagenet-mini-fixture.zip"
SHARED = REPO.parent / "shared" / "data"
SHARED_CIFAR = SHARED / "cifar10-jpeg.zip"
SHARED_TINY = SHARED / "tiny-imagenet-200-mini.zip"
needs_shared = pytest.mark.skipif(not SHARED_CIFAR.exists(), reason=f"no shared data at {SHARED}")


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    """One decoded-image cache for the module, and no data folder from the environment."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("cache")
        patch.setenv(data.CACHE_DIR_ENV, str(path))
        patch.delenv(data.DATA_DIR_ENV, raising=False)
        yield path


def config(**values):
    return TrialConfig.from_dict({"data_dir": str(SAMPLE), "val_size": 0, **values})


def pil_pixels(archive, member):
    with zipfile.ZipFile(archive) as zf:
        return np.asarray(Image.open(io.BytesIO(zf.read(member))).convert("RGB"))


def copy_zip(source, target, replace=None, drop=()):
    """Copy a zip, replacing some members' bytes and leaving some out."""
    replace = replace or {}
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            if info.filename not in drop:
                zout.writestr(info, replace.get(info.filename, zin.read(info)))
    return target


def extract(source, target, per_class=20):
    """Unzip the first `per_class` images of each class and split."""
    with zipfile.ZipFile(source) as zf:
        zf.extractall(target, [name for name in zf.namelist() if int(name[-8:-4]) < per_class])
    return target


def digests(images):
    return [hashlib.sha1(image.tobytes()).hexdigest() for image in images]


# ---- CIFAR-10 ------------------------------------------------------------------------------
def test_cifar10_sample_shapes_labels_and_classes():
    d = load_dataset(config(val_size=500))
    assert d.x_train.shape == (2500, 32, 32, 3) and d.x_train.dtype == np.uint8
    assert d.x_val.shape == (500, 32, 32, 3) and d.x_test.shape == (500, 32, 32, 3)
    assert d.y_train.dtype == np.int32 and d.y_test.dtype == np.int32
    assert d.class_names == list(CIFAR10_CLASSES) == sorted(CIFAR10_CLASSES)
    for labels, per_class in ((d.y_train, 250), (d.y_val, 50), (d.y_test, 50)):
        assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10
    assert d.summary == {
        "name": "cifar10",
        "source": f"{SAMPLE} (zip archive)",
        "num_classes": 10,
        "image_size": 32,
        "train": 2500,
        "val": 500,
        "test": 500,
        # the test files in order, as the archive lists them: test/<class>/<file>, one per line
        "test_files_sha256": hashlib.sha256("\n".join(sorted(listed_test_files(SAMPLE))).encode()).hexdigest(),
    }


def listed_test_files(archive) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        return [name.split("/", 1)[1] for name in zf.namelist() if name.split("/")[1:2] == ["test"]]


def test_known_images_decode_to_the_same_pixels_as_pil():
    d = load_dataset(config())  # no validation split: images stay in file order
    np.testing.assert_array_equal(d.x_train[0], pil_pixels(SAMPLE, "cifar10-jpeg/train/airplane/0000.jpg"))
    cat = 3 * 300 + 42
    assert d.y_train[cat] == CIFAR10_CLASSES.index("cat")
    np.testing.assert_array_equal(d.x_train[cat], pil_pixels(SAMPLE, "cifar10-jpeg/train/cat/0042.jpg"))
    np.testing.assert_array_equal(d.x_test[-1], pil_pixels(SAMPLE, "cifar10-jpeg/test/truck/0049.jpg"))


def test_folder_given_as_the_top_folder_its_parent_or_a_zip_without_top_folder(tmp_path):
    parent = extract(SAMPLE, tmp_path / "extracted")
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(flat, "w") as zout:
        for path in sorted((parent / "cifar10-jpeg").rglob("*.jpg")):
            zout.write(path, path.relative_to(parent / "cifar10-jpeg").as_posix())
    loaded = [load_dataset(config(data_dir=str(location))) for location in (parent, parent / "cifar10-jpeg", flat)]
    assert loaded[0].x_train.shape == (200, 32, 32, 3) and loaded[0].x_test.shape == (200, 32, 32, 3)
    np.testing.assert_array_equal(loaded[0].x_train[0], pil_pixels(SAMPLE, "cifar10-jpeg/train/airplane/0000.jpg"))
    for d in loaded[1:]:
        np.testing.assert_array_equal(d.x_train, loaded[0].x_train)
        np.testing.assert_array_equal(d.y_test, loaded[0].y_test)


def test_resized_to_image_size():
    d = load_dataset(config(image_size=48, train_subset=100, val_size=10, test_subset=20))
    assert d.x_train.shape == (90, 48, 48, 3) and d.x_val.shape == (10, 48, 48, 3)
    assert d.x_test.shape == (20, 48, 48, 3) and d.x_train.dtype == np.uint8
    assert d.image_size == 48 and d.summary["image_size"] == 48


def test_a_failed_download_is_one_line_naming_data_dir_never_the_sample(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/: Name or service not known\nmore")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    for dataset in ("cifar10", "tiny-imagenet"):
        message = r"could not download .*Name or service not known\); pass --data-dir"
        with pytest.raises(DataError, match=message) as error:
            load_dataset(TrialConfig(dataset=dataset, val_size=100))
        assert "\n" not in str(error.value)


def test_the_shipped_sample_is_asked_for_by_name():
    d = load_dataset(TrialConfig(data_dir="sample", val_size=100))
    assert d.source.startswith(str(data.SAMPLE_ZIP))
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (2900, 100, 500)
    with pytest.raises(DataError, match="shipped CIFAR-10 sample, not tiny-imagenet"):
        load_dataset(TrialConfig(dataset="tiny-imagenet", data_dir="sample"))


# The MD5 of http://cs231n.stanford.edu/tiny-imagenet-200.zip, as other Tiny-ImageNet loaders pin it.
PUBLISHED_TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


def test_tiny_imagenet_is_downloaded_over_https_and_a_changed_archive_is_refused(monkeypatch, tmp_path):
    tiny = catalog.DATASETS["tiny-imagenet"]
    assert tiny.md5 == PUBLISHED_TINY_IMAGENET_MD5
    assert tiny.download.startswith("https://")
    # The download itself, through Keras' get_file, from a local URL serving the fixture archive:
    # its hash is not the published one, so it is refused, and accepted under its own hash.
    monkeypatch.setitem(catalog.DATASETS, "tiny-imagenet", dataclasses.replace(tiny, download=TINY_FIXTURE.as_uri()))
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path))
    with pytest.raises(DataError, match="could not download Tiny-ImageNet from file:.*(hash|md5|corrupt)"):
        load_dataset(TrialConfig(dataset="tiny-imagenet", val_size=0))
    fixture_md5 = hashlib.md5(TINY_FIXTURE.read_bytes()).hexdigest()
    monkeypatch.setitem(
        catalog.DATASETS, "tiny-imagenet", dataclasses.replace(tiny, download=TINY_FIXTURE.as_uri(), md5=fixture_md5)
    )
    downloaded = load_dataset(TrialConfig(dataset="tiny-imagenet", val_size=0))
    assert downloaded.source.startswith(f"{TINY_FIXTURE.as_uri()} (downloaded to {tmp_path}")
    assert len(downloaded.y_train) == len(
        load_dataset(TrialConfig(dataset="tiny-imagenet", data_dir=str(TINY_FIXTURE), val_size=0)).y_train
    )


def test_data_dir_from_the_environment(monkeypatch, tmp_path):
    shutil.copy(SAMPLE, tmp_path / "cifar10-jpeg.zip")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    d = load_dataset(TrialConfig(val_size=0))
    assert d.source == f"{tmp_path / 'cifar10-jpeg.zip'} (zip archive)" and len(d.y_train) == 3000
    with pytest.raises(DataError, match=r"has no tiny-imagenet-200/ folder or tiny-imagenet-200\*\.zip archive"):
        load_dataset(TrialConfig(dataset="tiny-imagenet", val_size=0))


@needs_shared
def test_shared_cifar10_archive():
    source = data._file_source(SHARED_CIFAR, "cifar10")  # labels only: nothing decoded yet
    assert np.bincount(source.y_train).tolist() == [5000] * 10
    assert np.bincount(source.y_test).tolist() == [1000] * 10  # the official test split, whole
    # The 2,000 images the archive held before 2026-12 are each class's first 200.
    assert [name.split("/")[-1] for name in source.test_names[:200]] == [f"{i:04d}.jpg" for i in range(200)]
    cat = source.read("train", np.array([3 * 5000 + 42]), 32)[0]
    np.testing.assert_array_equal(cat, pil_pixels(SHARED_CIFAR, "cifar10-jpeg/train/cat/0042.jpg"))
    d = load_dataset(config(data_dir=str(SHARED_CIFAR), train_subset=2000, val_size=500, test_subset=300))
    assert d.class_names == list(CIFAR10_CLASSES)
    assert [len(d.x_train), len(d.x_val), len(d.x_test)] == [1500, 500, 300] and d.x_test.shape[1:] == (32, 32, 3)
    assert np.bincount(d.y_val).tolist() == [50] * 10 and np.bincount(d.y_test).tolist() == [30] * 10


def test_a_test_split_has_one_identity_in_a_zip_and_in_a_folder(tmp_path):
    """Runs are compared image by image only on the same split: the same files in the same order
    (wherever they are unpacked), and another subset is another split."""
    with zipfile.ZipFile(SAMPLE) as archive:
        archive.extractall(tmp_path)
    settings = {"val_size": 20, "train_subset": 100, "test_subset": 50}
    zipped = load_dataset(config(data_dir=str(SAMPLE), **settings)).test_split
    unpacked = load_dataset(config(data_dir=str(tmp_path / "cifar10-jpeg"), **settings)).test_split
    assert zipped == unpacked and zipped["images"] == 50
    assert load_dataset(config(data_dir=str(SAMPLE), **{**settings, "test_subset": 60})).test_split != zipped


# ---- Tiny-ImageNet --------------------------------------------------------------------------
def tiny_config(**values):
    settings = {"dataset": "tiny-imagenet", "data_dir": str(TINY_FIXTURE), "val_size": 0}
    return TrialConfig.from_dict({**settings, **values})


def test_tiny_imagenet_fixture_classes_from_wnids_and_val_labels_from_annotations():
    d = load_dataset(tiny_config())
    wnids = ["n01443537", "n02480855", "n02669723", "n03902125", "n04562935"]
    assert d.class_names == wnids and d.num_classes == 5
    assert d.x_train.shape == (50, 64, 64, 3) and np.bincount(d.y_train).tolist() == [10] * 5
    # The official val images are our test split; n02480855 has none of them.
    assert d.x_test.shape == (16, 64, 64, 3) and np.bincount(d.y_test, minlength=5).tolist() == [4, 0, 4, 4, 4]
    member = "tiny-imagenet-200/val/images/val_68.JPEG"  # annotated n01443537
    index = digests(d.x_test).index(digests([pil_pixels(TINY_FIXTURE, member)])[0])
    assert d.class_names[d.y_test[index]] == "n01443537"


def test_tiny_imagenet_grayscale_images_become_rgb():
    d = load_dataset(tiny_config())
    with zipfile.ZipFile(TINY_FIXTURE) as zf:
        gray = Image.open(io.BytesIO(zf.read("tiny-imagenet-200/train/n02669723/images/n02669723_7.JPEG")))
    assert gray.mode == "L"
    expected = np.repeat(np.asarray(gray)[..., None], 3, axis=-1)
    index = digests(d.x_train).index(digests([expected])[0])
    assert d.class_names[d.y_train[index]] == "n02669723"


@pytest.mark.skipif(not SHARED_TINY.exists(), reason=f"no shared data at {SHARED}")
def test_shared_tiny_imagenet_lists_202_classes_from_wnids():
    listing = data._tiny_imagenet_listing(data._Files(SHARED_TINY))
    assert len(listing["class_names"]) == 202
    assert (len(listing["train"]), len(listing["test"])) == (202 * 50, 2000)


# ---- plain image folders --------------------------------------------------------------------
def make_folder(root, sizes=((40, 40), (32, 32)), splits=("train", "test")):
    """root/<split>/<class>/ with real CIFAR images saved as PNG and JPEG in several sizes."""
    with zipfile.ZipFile(SAMPLE) as zf:
        for split in splits:
            for label in ("cat", "dog"):
                for i in range(6):
                    image = Image.open(io.BytesIO(zf.read(f"cifar10-jpeg/train/{label}/{i:04d}.jpg")))
                    (root / split / label).mkdir(parents=True, exist_ok=True)
                    suffix = "png" if i % 2 else "jpg"
                    image.resize(sizes[i % len(sizes)]).save(root / split / label / f"{i}.{suffix}")
    return root


def test_image_folder(tmp_path):
    root = make_folder(tmp_path / "pets")
    d = load_dataset(TrialConfig(dataset="folder", data_dir=str(root), val_size=2))
    assert d.class_names == ["cat", "dog"] and d.image_size == 40  # the first image's size
    assert d.x_train.shape == (10, 40, 40, 3) and d.x_val.shape == (2, 40, 40, 3)
    assert d.x_test.shape == (12, 40, 40, 3)
    small = load_dataset(TrialConfig(dataset="folder", data_dir=str(root), val_size=2, image_size=16))
    assert small.x_train.shape == (10, 16, 16, 3) and small.image_size == 16


def test_image_folder_needs_a_test_split_and_a_data_dir(tmp_path):
    root = make_folder(tmp_path / "pets", splits=("train",))
    message = r"no test images in .*pets: the folder dataset needs test/<class>/<image> files"
    with pytest.raises(DataError, match=message):
        load_dataset(TrialConfig(dataset="folder", data_dir=str(root), val_size=2))
    with pytest.raises(DataError, match="dataset 'folder' needs data_dir"):
        load_dataset(TrialConfig(dataset="folder", val_size=2))


def test_cifar10_folder_with_other_classes(tmp_path):
    root = make_folder(tmp_path / "pets")
    with pytest.raises(DataError, match=r"expected the CIFAR-10 classes .* found \['cat', 'dog'\]"):
        load_dataset(config(data_dir=str(root)))


# ---- subsets and splits -------------------------------------------------------------------
def test_subset_and_validation_split_are_stratified_deterministic_and_disjoint():
    first = load_dataset(config(train_subset=1000, val_size=200, test_subset=100, seed=3))
    again = load_dataset(config(train_subset=1000, val_size=200, test_subset=100, seed=3))
    other = load_dataset(config(train_subset=1000, val_size=200, test_subset=100, seed=4))
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert np.bincount(first.y_train).tolist() == [80] * 10 and np.bincount(first.y_val).tolist() == [20] * 10
    assert np.bincount(first.y_test).tolist() == [10] * 10
    assert not set(digests(first.x_train)) & set(digests(first.x_val))
    # Trials with other seeds train and are scored on the same images: seeds vary the model.
    for name in ("x_train", "x_val", "x_test"):
        np.testing.assert_array_equal(getattr(first, name), getattr(other, name))


def test_val_size_too_large():
    with pytest.raises(DataError, match=r"val_size 3000 leaves no training images: only 3000 from"):
        load_dataset(config(val_size=3000))
    with pytest.raises(DataError, match=r"val_size 100 leaves no training images: only 100 from"):
        load_dataset(config(train_subset=100, val_size=100))


# ---- the decoded-image cache --------------------------------------------------------------
def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    archive = shutil.copy(SAMPLE, tmp_path / "sample.zip")
    first = load_dataset(config(data_dir=str(archive), train_subset=200, val_size=20))
    cached = sorted(path.name.split("px-")[0] for path in (tmp_path / "cache").iterdir())
    assert cached == ["cifar10-test-500x32", "cifar10-train-180x32", "cifar10-train-20x32"]

    def no_decoding(*args):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(data, "_decode", no_decoding)
    second = load_dataset(config(data_dir=str(archive), train_subset=200, val_size=20))
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.x_val, second.x_val)
    Path(archive).touch()  # a changed archive is decoded again
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(config(data_dir=str(archive), train_subset=200, val_size=20))


# ---- errors -------------------------------------------------------------------------------
def test_missing_folder_and_archive(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"data folder not found: {tmp_path / 'nowhere'}") + "$"):
        load_dataset(config(data_dir=str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match=re.escape(f"data archive not found: {tmp_path / 'nowhere.zip'}") + "$"):
        load_dataset(config(data_dir=str(tmp_path / "nowhere.zip")))


def test_empty_folder_and_not_a_zip(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no images in .*empty: expected train/<class>/<image>"):
        load_dataset(config(data_dir=str(tmp_path / "empty")))
    (tmp_path / "notes.zip").write_text("not a zip")
    with pytest.raises(DataError, match=r"not a data folder or a readable zip archive: .*notes.zip"):
        load_dataset(config(data_dir=str(tmp_path / "notes.zip")))


def test_corrupt_jpeg_in_a_zip_is_named(tmp_path):
    member = "cifar10-jpeg/train/cat/0042.jpg"
    archive = copy_zip(SAMPLE, tmp_path / "x.zip", replace={member: b"\x00 not a jpeg " * 20})
    message = f"corrupt image {member} in {archive}: not an image file PIL can read"
    with pytest.raises(DataError, match=re.escape(message)):
        load_dataset(config(data_dir=str(archive)))


def test_truncated_jpeg_in_a_folder_is_named(tmp_path):
    root = extract(SAMPLE, tmp_path / "data")
    image = root / "cifar10-jpeg" / "train" / "bird" / "0017.jpg"
    image.write_bytes(image.read_bytes()[:400])
    with pytest.raises(DataError, match=re.escape(f"corrupt image {image}: ") + ".*[Tt]runcated"):
        load_dataset(config(data_dir=str(root)))


def test_tiny_imagenet_missing_wnids_or_annotations(tmp_path):
    no_wnids = copy_zip(TINY_FIXTURE, tmp_path / "a.zip", drop={"tiny-imagenet-200/wnids.txt"})
    with pytest.raises(DataError, match=re.escape(f"wnids.txt not found in {no_wnids}")):
        load_dataset(tiny_config(data_dir=str(no_wnids)))
    no_labels = copy_zip(TINY_FIXTURE, tmp_path / "b.zip", drop={"tiny-imagenet-200/val/val_annotations.txt"})
    message = f"tiny-imagenet-200/val/val_annotations.txt in {no_labels} not found"
    with pytest.raises(DataError, match=re.escape(message)):
        load_dataset(tiny_config(data_dir=str(no_labels)))


def test_tiny_imagenet_annotation_naming_a_missing_image(tmp_path):
    archive = copy_zip(TINY_FIXTURE, tmp_path / "c.zip", drop={"tiny-imagenet-200/val/images/val_68.JPEG"})
    message = r"tiny-imagenet-200/val/images/val_68.JPEG in .*c.zip not found \(listed in"
    with pytest.raises(DataError, match=message):
        load_dataset(tiny_config(data_dir=str(archive)))

"""Typed, validated trial configuration and safe YAML loading.

A `TrialConfig` holds every knob of one training run. It is built from plain dicts
(YAML profiles, notebook parameters) by `TrialConfig.from_dict`, which refuses unknown
keys and wrong types with a one-line `ConfigError` before anything is trained.

A trial's identity (`trial_id`) is the one hash of its settings that every part of the suite
uses: run folders refuse another identity, summaries group trials by `setting_id` (the identity
without the seed), and a trial that already ran in another experiment is reused by identity.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import typing
from pathlib import Path

import yaml

from . import catalog

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "onecycle", "cosine")
ACTIVATIONS = ("gelu", "relu")
MIXING_MODES = ("merged", "parallel")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
DEVICES = ("auto", "cpu", "gpu", "tpu")
EVALUATIONS = ("last", "best_val")
# Settings that change neither what a trial learns nor how it is measured: where the data
# lives, what computes it (and on how many devices: each computes a share of every batch of the
# same size), and how the same maths is computed (fused layers, XLA, the multi-kernel layer's
# merged or parallel form). They are not part of a trial's identity.
NOT_IN_IDENTITY = ("data_dir", "device", "devices", "fused", "jit_compile", "mixing")


class ConfigError(ValueError):
    """A bad configuration value, reported as one readable line."""


@dataclasses.dataclass(frozen=True)
class TrialConfig:
    # Data
    dataset: str = "cifar10"
    data_dir: str | None = None  # folder or zip; "sample": the shipped CIFAR-10 sample; None: download
    image_size: int | None = None  # None: the dataset's native size
    # Progressive resizing: the image size of each of the first epochs (smaller images train
    # faster); the later epochs and every evaluation use the full size. None: full size throughout.
    epoch_image_sizes: tuple[int, ...] | None = None
    train_subset: int | None = None  # use only this many training images (stratified)
    val_size: int = 5000  # carved from the training set with `seed`
    test_subset: int | None = None
    # Model
    width: int = 256
    depth: int = 8
    patch_size: int = 2
    kernel_size: int = 5
    kernel_sizes: tuple[int, ...] | None = None  # several: the dynamic weighted kernel
    mixing: str = "merged"
    activation: str = "gelu"
    # Optimisation
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    clip_norm: float | None = None
    ema_momentum: float = 0.0  # > 0: test and save a moving average of the weights (Keras' use_ema), BatchNorm refitted
    label_smoothing: float = 0.0
    early_stopping_patience: int = 0  # 0: off
    # Which weights the test split scores: the last epoch's, or those of the epoch with the best
    # validation accuracy (the Keras example's ModelCheckpoint(save_best_only=True) protocol).
    evaluate: str = "last"
    # Augmentation (training split only)
    crop_scale_min: float = 1.0  # random resized crop scale range [min, 1]; 1.0: off
    flip: bool = True
    randaugment_n: int = 0
    randaugment_m: int = 0
    color_jitter: float = 0.0
    erasing_prob: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    # Reproducibility and hardware
    seed: int = 0
    precision: str = "auto"
    device: str = "auto"  # auto: a TPU or GPU if there is one, else the CPU (and the record says so)
    # How many devices of that kind train the model together, each on an equal share of every
    # batch (batch size and learning rate unchanged; JAX only). null: every GPU or TPU, one CPU
    # (with several processes, all of theirs).
    devices: int | None = None
    # null: chosen per backend and device (convmixer.device.execution_choices); true/false force it.
    jit_compile: bool | None = None  # XLA-compile the train step
    fused: bool | None = None  # convmixer.fused GELU and BatchNorm (TensorFlow only; same maths as Keras')

    def __post_init__(self):
        for name in ("kernel_sizes", "epoch_image_sizes"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), tuple):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()
        # One spelling per trial: a single "dynamic" kernel is a plain kernel (the model builds a
        # plain depthwise layer for it), and the native image size is no resize.
        if self.kernel_sizes is not None and len(self.kernel_sizes) == 1:
            object.__setattr__(self, "kernel_size", self.kernel_sizes[0])
            object.__setattr__(self, "kernel_sizes", None)
        if self.image_size is not None and self.image_size == catalog.native_image_size(self.dataset):
            object.__setattr__(self, "image_size", None)
        if self.epoch_image_sizes is not None and set(self.epoch_image_sizes) <= {self.resolved_image_size}:
            object.__setattr__(self, "epoch_image_sizes", None)

    # ---- construction -------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict, where: str = "config") -> TrialConfig:
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: expected a mapping of settings, got {type(values).__name__}")
        check_keys(values, [f.name for f in dataclasses.fields(cls)], where)
        hints = typing.get_type_hints(cls)
        checked = {name: _check_type(name, value, hints[name], where) for name, value in values.items()}
        return cls(**checked)

    def replace(self, **changes) -> TrialConfig:
        return TrialConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        for name in ("kernel_sizes", "epoch_image_sizes"):
            if values[name] is not None:
                values[name] = list(values[name])
        return values

    def identity(self, seed: bool = True) -> dict:
        """The settings that make this trial what it is: those that differ from the defaults,
        less `NOT_IN_IDENTITY` (and the seed unless asked for). Folding defaults keeps a trial's
        identity when a new setting is added with a default that does what the code did before.
        """
        defaults = _DEFAULTS.to_dict()
        return {
            key: value
            for key, value in self.to_dict().items()
            if key not in NOT_IN_IDENTITY and (seed or key != "seed") and value != defaults[key]
        }

    def trial_id(self) -> str:
        """The trial's identity as a short hash: equal exactly when two trials are the same."""
        return _digest(self.identity())

    def setting_id(self) -> str:
        """The identity without the seed: the same for every seed of one setting."""
        return _digest(self.identity(seed=False))

    # ---- derived values -----------------------------------------------------------
    @property
    def resolved_image_size(self) -> int | None:
        return self.image_size or catalog.native_image_size(self.dataset)

    def epoch_sizes(self) -> list[int | None]:
        """The side of the training images in each epoch, in order: `epoch_image_sizes`, then the
        full size (`resolved_image_size`; None for a folder of images kept at their own size)."""
        early = [*(self.epoch_image_sizes or ())]
        return early + [self.resolved_image_size] * (self.epochs - len(early))

    def training_stages(self) -> list[tuple[int, int, int | None]]:
        """(first epoch, end epoch, image size) of each run of epochs at one image size, in
        order, epochs counted from 0 and the end excluded; size None is the full size."""
        stages = []
        for epoch, size in enumerate(self.epoch_sizes()):
            size = None if size == self.resolved_image_size else size
            if stages and stages[-1][2] == size:
                stages[-1] = (stages[-1][0], epoch + 1, size)
            else:
                stages.append((epoch, epoch + 1, size))
        return stages

    # ---- validation ---------------------------------------------------------------
    def augmentations(self) -> list[tuple[str, str]]:
        """(kind, description) of each training augmentation switched on, in the order applied:
        the per-image ones in timm's order, then MixUp and CutMix across the batch
        (convmixer.pipeline builds each kind's layer)."""
        found = [
            ("crop", f"random resized crop (scale {self.crop_scale_min:g}..1)") if self.crop_scale_min < 1 else None,
            ("flip", "horizontal flip") if self.flip else None,
            ("randaugment", f"RandAugment (N={self.randaugment_n}, M={self.randaugment_m})")
            if self.randaugment_n > 0
            else None,
            ("color_jitter", f"colour jitter ({self.color_jitter:g})") if self.color_jitter > 0 else None,
            ("erasing", f"random erasing (p={self.erasing_prob:g})") if self.erasing_prob > 0 else None,
            ("mixup", f"MixUp (alpha={self.mixup_alpha:g})") if self.mixup_alpha > 0 else None,
            ("cutmix", f"CutMix (alpha={self.cutmix_alpha:g})") if self.cutmix_alpha > 0 else None,
        ]
        return [entry for entry in found if entry]

    def augmentation_summary(self) -> list[str]:
        """The training augmentations switched on, in words, in the order applied."""
        return [description for _, description in self.augmentations()]

    def validate(self):
        _one_of("dataset", self.dataset, catalog.TRAINABLE)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("activation", self.activation, ACTIVATIONS)
        _one_of("mixing", self.mixing, MIXING_MODES)
        _one_of("precision", self.precision, PRECISIONS)
        _one_of("device", self.device, DEVICES)
        _one_of("evaluate", self.evaluate, EVALUATIONS)
        for name in ("width", "depth", "patch_size", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kernel_size < 1:
            raise ConfigError(f"kernel_size must be >= 1, got {self.kernel_size}")
        if self.kernel_sizes is not None:
            if not self.kernel_sizes:
                raise ConfigError("kernel_sizes is empty: give at least one kernel size, or null")
            bad = [k for k in self.kernel_sizes if k < 1]
            if bad:
                raise ConfigError(f"kernel_sizes must all be >= 1, got {bad[0]} in {list(self.kernel_sizes)}")
            if len(set(self.kernel_sizes)) != len(self.kernel_sizes):
                raise ConfigError(f"kernel_sizes has repeated sizes: {list(self.kernel_sizes)}")
        size = self.resolved_image_size
        if self.image_size is not None and self.image_size < 1:
            raise ConfigError(f"image_size must be >= 1, got {self.image_size}")
        if size is not None and size % self.patch_size:
            raise ConfigError(
                f"patch_size {self.patch_size} does not divide the {size}x{size} images of {self.dataset}"
            )
        for name in ("train_subset", "test_subset", "devices"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 or null, got {value}")
        if self.val_size < 0:
            raise ConfigError(f"val_size must be >= 0, got {self.val_size}")
        if self.val_size == 0 and self.early_stopping_patience:
            raise ConfigError("early_stopping_patience needs a validation split: set val_size >= 1")
        if self.val_size == 0 and self.evaluate == "best_val":
            raise ConfigError("evaluate: best_val needs a validation split: set val_size >= 1")
        if self.epoch_image_sizes is not None:
            self._validate_epoch_image_sizes()
        if self.ema_momentum and self.evaluate == "best_val":
            # The best epoch's checkpoint holds the raw weights, not their average.
            raise ConfigError("ema_momentum and evaluate: best_val exclude each other: set one of them")
        if self.ema_momentum and self.early_stopping_patience:
            # EarlyStopping restores the best raw weights after fit has copied the average in.
            raise ConfigError("ema_momentum and early_stopping_patience exclude each other: set one of them to 0")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in (
            "weight_decay",
            "warmup_epochs",
            "label_smoothing",
            "color_jitter",
            "mixup_alpha",
            "cutmix_alpha",
            "randaugment_n",
            "randaugment_m",
            "early_stopping_patience",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("label_smoothing", "erasing_prob", "ema_momentum"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 < self.crop_scale_min <= 1:
            raise ConfigError(f"crop_scale_min must be in (0, 1], got {self.crop_scale_min}")
        for name in ("color_jitter", "cutmix_alpha"):  # keras' layers take at most 1
            if getattr(self, name) > 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.randaugment_m > 30:
            raise ConfigError(f"randaugment_m must be in 0..30, got {self.randaugment_m}")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ConfigError(f"clip_norm must be > 0 or null, got {self.clip_norm}")

    def _validate_epoch_image_sizes(self):
        sizes, full = list(self.epoch_image_sizes), self.resolved_image_size
        if full is None:
            raise ConfigError("epoch_image_sizes needs a known image size: set image_size")
        if not sizes or len(sizes) > self.epochs:
            raise ConfigError(f"epoch_image_sizes must list 1 to epochs ({self.epochs}) sizes, got {len(sizes)}")
        for size in sizes:
            if size % self.patch_size:
                raise ConfigError(f"epoch_image_sizes: {size} is not a multiple of patch_size {self.patch_size}")
            if not self.patch_size <= size <= full:
                raise ConfigError(
                    f"epoch_image_sizes: {size} is outside {self.patch_size}..{full} (patch size..full size)"
                )
        if set(sizes) == {full}:  # no resizing at all: nothing excludes it
            return
        # Each run of equal sizes is one `fit` (train._fit). Keras' fit copies the average of the
        # weights into the model at the end of each one (the next restores the raw weights), and
        # EarlyStopping starts its patience and best value afresh in each.
        for name in ("ema_momentum", "early_stopping_patience"):
            if getattr(self, name):
                raise ConfigError(f"epoch_image_sizes and {name} exclude each other: set {name} to 0")


def check_keys(values: dict, known, where) -> None:
    """Refuse the first key of `values` not in `known`, naming the closest known one."""
    unknown = sorted(set(values) - set(known))
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(known))}"
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} ({hint})")


def _digest(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def _one_of(name, value, choices):
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r} (choose from: {', '.join(choices)})")


def _check_type(name, value, hint, where):
    """Accept `value` if it matches `hint` (ints are accepted for floats)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: {name} may not be null")
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    origin = typing.get_origin(base)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
            raise ConfigError(f"{where}: {name} must be a list of integers, got {value!r}")
        return tuple(value)
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = _is_int(value)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, base)
    if not ok:
        raise ConfigError(f"{where}: {name} must be {base.__name__}{' or null' if optional else ''}, got {value!r}")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_DEFAULTS = TrialConfig()


def load_yaml(path: str | Path) -> dict:
    """Load a YAML mapping safely (no object construction, nothing evaluated)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no such file: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data

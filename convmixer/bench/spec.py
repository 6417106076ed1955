"""What a benchmark times: the models (`Spec`, `CONFIGS`) and how (`Settings`); no Keras here, so
that the command line can offer them without loading a backend."""

from __future__ import annotations

import dataclasses

from .. import backend, config

# The keys every JSON entry has (entries hold more, see benchmarks/README.md).
ENTRY_KEYS = (
    "config",
    "device",
    "package_images_per_second",
    "reference_images_per_second",
    "ratio",
    "pipeline_images_per_second",
    "flop_utilisation",
)
# The package's precision policies, without "auto" (a benchmark names what it measures).
PRECISIONS = tuple(p for p in config.PRECISIONS if p != "auto")
REFERENCE_PRECISIONS = ("float32", "bfloat16", "float16")
# Every augmentation the pipeline has, at the official recipes' values: RandAugment N=2 M=12 and
# flip (the CIFAR-10 command), crop scale 0.75 and erasing 0.25 (convmixer-cifar10 train.py's
# defaults), MixUp and CutMix 0.5 (the ImageNet command).
FULL_AUGMENTATION = {
    "randaugment_n": 2,
    "randaugment_m": 12,
    "flip": True,
    "crop_scale_min": 0.75,
    "erasing_prob": 0.25,
    "mixup_alpha": 0.5,
    "cutmix_alpha": 0.5,
}


class BenchError(ValueError):
    """A bad benchmark setting, reported as one line."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """One model to time: ConvMixer-width/depth with its kernels, patch and image size."""

    width: int
    depth: int
    kernel_sizes: tuple[int, ...]
    patch_size: int
    image_size: int
    num_classes: int
    mixing: str = "merged"

    @property
    def name(self) -> str:
        kernels = "+".join(map(str, self.kernel_sizes))
        mixing = f" {self.mixing}" if len(self.kernel_sizes) > 1 else ""
        return f"{self.width}/{self.depth}-k{kernels}-p{self.patch_size}{mixing}"

    def trial_config(self, batch_size: int) -> config.TrialConfig:
        """The TrialConfig of this model with full augmentation (the pipeline's worst case)."""
        multi = len(self.kernel_sizes) > 1
        return config.TrialConfig(
            dataset="cifar10" if self.num_classes == 10 else "tiny-imagenet",
            image_size=self.image_size,
            width=self.width,
            depth=self.depth,
            patch_size=self.patch_size,
            kernel_size=self.kernel_sizes[0],
            kernel_sizes=self.kernel_sizes if multi else None,
            mixing=self.mixing,
            batch_size=batch_size,
            **FULL_AUGMENTATION,
        )


# CIFAR-10 at 32x32; Tiny-ImageNet at 63x63 (7 divides it), as the Columbia study's 512/8 p7.
CONFIGS = {
    "256/8-k5-p2": Spec(256, 8, (5,), 2, 32, 10),
    "128/8-k5-p2": Spec(128, 8, (5,), 2, 32, 10),  # the cpu profile's one-hour model
    "256/8-k9-p1": Spec(256, 8, (9,), 1, 32, 10),
    "256/8-k9-p4": Spec(256, 8, (9,), 4, 32, 10),  # the ReScience draft's 5-epoch p=4 setting
    "512/8-k9-p7": Spec(512, 8, (9,), 7, 63, 200),
    "512/8-k10-p7": Spec(512, 8, (10,), 7, 63, 200),
    "512/8-k2+4+6+8+10-p7": Spec(512, 8, (2, 4, 6, 8, 10), 7, 63, 200),
    # Narrower Columbia models, candidates for the tiny-cpu profile's width.
    "128/8-k9-p7": Spec(128, 8, (9,), 7, 63, 200),
    "256/8-k9-p7": Spec(256, 8, (9,), 7, 63, 200),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """How to measure: the same for every configuration of a run."""

    batch_size: int = 128
    steps: int = 10
    warmup: int = 2
    precision: str = "float32"
    jit_compile: bool | None = None  # None: as a trial chooses it for the backend and device
    fused: bool | None = None
    backends: tuple[str, ...] | None = None  # None: every installed Keras backend
    reference: bool = True
    reference_precisions: tuple[str, ...] | None = None  # None: the reference's own choice
    pipeline: bool = True
    peak_size: int | None = None  # matmul side; None: 2048 on the CPU, 8192 on accelerators
    intra_op_threads: int | None = None  # TensorFlow's thread pools (default: TensorFlow's)
    inter_op_threads: int | None = None

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise BenchError(f"unknown precision {self.precision!r} (choose from: {', '.join(PRECISIONS)})")
        for name in ("batch_size", "steps"):
            if getattr(self, name) < 1:
                raise BenchError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 1:  # the first step traces (and with XLA compiles) the model
            raise BenchError(f"warmup must be >= 1, got {self.warmup}")
        for name in self.backends or ():
            if name not in backend.BACKENDS:
                raise BenchError(f"unknown backend {name!r} (choose from: {', '.join(backend.BACKENDS)})")


def select(names=None, mixing=config.MIXING_MODES) -> list[Spec]:
    """The named configurations (default: all), multi-kernel ones once per mixing mode."""
    unknown = [name for name in names or () if name not in CONFIGS]
    if unknown:
        raise BenchError(f"unknown benchmark config {unknown[0]!r} (choose from: {', '.join(CONFIGS)})")
    if not mixing or set(mixing) - set(config.MIXING_MODES):
        raise BenchError(f"mixing must be one or more of {', '.join(config.MIXING_MODES)}, got {list(mixing)}")
    specs = []
    for name in names or CONFIGS:
        spec = CONFIGS[name]
        modes = mixing if len(spec.kernel_sizes) > 1 else ("merged",)
        specs += [dataclasses.replace(spec, mixing=mode) for mode in modes]
    return specs

"""How the report names a model and a varied setting: one spelling everywhere."""

from __future__ import annotations

from ..study.plan import value_text

SHORT_NAMES = {"patch_size": "p", "kernel_size": "k", "kernel_sizes": "k"}
AXIS_LABELS = {"patch_size": "patch size p", "kernel_size": "kernel size k", "kernel_sizes": "kernel sizes"}


def model_name(width, depth) -> str:
    """'ConvMixer-256/8'; either part may be a text listing several ('128 and 256')."""
    return f"ConvMixer-{width}/{depth}"


def value_label(value) -> str:
    """The varied value as text: '' for none, '2-4-6-8-10' for a list (as run names write it)."""
    return "" if value is None else value_text(value)


def kernels_label(settings: dict) -> str:
    """'9' for one depthwise kernel size, '2-4-6-8-10' for a multi-kernel model."""
    sizes = settings.get("kernel_sizes")
    return value_label(sizes) if sizes else str(settings.get("kernel_size"))

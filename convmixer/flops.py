"""The analytic cost of a ConvMixer, counted from its architecture.

Free of Keras, so that collation (run records to tables) can count a run's training cost
without importing a backend; the benchmark uses the same count.
"""

from __future__ import annotations


def model_flops(
    width: int,
    depth: int,
    kernel_sizes: tuple[int, ...],
    patch_size: int,
    image_size: int,
    num_classes: int,
    mixing: str = "merged",
) -> dict:
    """Multiply-accumulates per image counted from the architecture, and FLOPs (2 per MAC).

    Counts the convolutions and the head; normalisation, GELU, BatchNorm and pooling are
    elementwise and left out. A merged mix convolves once with the largest kernel, the
    parallel form once per kernel size. Training costs about 3x the forward pass (the
    backward pass computes gradients for both the inputs and the weights).
    """
    tokens = (image_size // patch_size) ** 2
    depthwise_taps = max(kernel_sizes) ** 2 if mixing == "merged" else sum(k * k for k in kernel_sizes)
    macs = (
        tokens * width * 3 * patch_size**2  # patch embedding
        + depth * tokens * width * depthwise_taps  # depthwise convolutions
        + depth * tokens * width**2  # pointwise convolutions
        + width * num_classes
    )  # classifier
    return {"macs": macs, "forward_flops": 2 * macs, "training_flops": 6 * macs}

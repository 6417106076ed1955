"""A PyTorch ConvMixer written as the official code writes it, for the speed benchmark.

`conv_mixer` follows locuslab/convmixer (and convmixer-cifar10's train.py) line by line: an
`nn.Sequential` of the patch embedding, GELU and BatchNorm, then `depth` blocks of a residual
depthwise convolution (`padding="same"`) and a 1x1 convolution, each followed by GELU and
BatchNorm. `MixedDepthwise` adds the multi-kernel layer of convmixer.model in both of its forms,
so the benchmark compares the same computation in both frameworks.

`time_training` times AdamW training steps the way the official training loop runs them:
channels-last tensors, autocast (bf16 on the CPU, fp16 with a GradScaler on CUDA) and
`loss.item()` after every step. On the CPU it times float32 and bf16 and keeps the faster,
but tries bf16 only where oneDNN has bf16 kernels for the CPU (AVX-512 or AMX): elsewhere
autocast falls back to slow kernels (on an AVX2-only AMD EPYC, one ConvMixer-512/8 k=10 step
at batch 2 took about 280 times as long in bf16 as in float32), and a real batch takes minutes.

Importing this module needs torch (`pip install ".[bench]"`).
"""

from __future__ import annotations

import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


class Residual(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


class MixedDepthwise(nn.Module):
    """sum_i softmax(alpha)_i * depthwise_conv_{k_i}(x), like convmixer.model.MixedDepthwiseConv2D.

    `merged` runs one convolution with the weighted sum of the kernels zero-padded to the
    largest size. PyTorch's padding="same" puts (k - 1) // 2 zeros before the input, as
    TensorFlow does, so a k-kernel sits at offset (K - 1) // 2 - (k - 1) // 2 inside the K one.
    """

    def __init__(self, dim: int, kernel_sizes, merged: bool = True):
        super().__init__()
        self.kernel_sizes = tuple(kernel_sizes)
        self.merged = merged
        self.convs = nn.ModuleList(nn.Conv2d(dim, dim, k, groups=dim, padding="same") for k in self.kernel_sizes)
        self.alpha = nn.Parameter(torch.ones(len(self.kernel_sizes)))

    def forward(self, x):
        weights = torch.softmax(self.alpha, 0)
        if not self.merged:
            return sum(w * conv(x) for w, conv in zip(weights, self.convs))
        size = max(self.kernel_sizes)
        kernel = bias = 0
        for w, k, conv in zip(weights, self.kernel_sizes, self.convs):
            start = (size - 1) // 2 - (k - 1) // 2
            kernel = kernel + w * F.pad(conv.weight, (start, size - k - start, start, size - k - start))
            bias = bias + w * conv.bias
        return F.conv2d(x, kernel, bias, padding="same", groups=x.shape[1])


def conv_mixer(dim, depth, kernel_size=9, patch_size=7, n_classes=1000, kernel_sizes=None, mixing="merged"):
    """ConvMixer-dim/depth exactly as the official repository defines it (plus the mixed layer)."""

    def spatial():
        if kernel_sizes and len(kernel_sizes) > 1:
            return MixedDepthwise(dim, kernel_sizes, merged=mixing == "merged")
        return nn.Conv2d(dim, dim, kernel_sizes[0] if kernel_sizes else kernel_size, groups=dim, padding="same")

    return nn.Sequential(
        nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size),
        nn.GELU(),
        nn.BatchNorm2d(dim),
        *[
            nn.Sequential(
                Residual(nn.Sequential(spatial(), nn.GELU(), nn.BatchNorm2d(dim))),
                nn.Conv2d(dim, dim, kernel_size=1),
                nn.GELU(),
                nn.BatchNorm2d(dim),
            )
            for _ in range(depth)
        ],
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(dim, n_classes),
    )


def best_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def candidate_precisions(device: str) -> list[str]:
    """What to try: fp16 autocast on CUDA (the official recipe); on the CPU float32, and bf16
    where the CPU has it (the check PyTorch's own tests use)."""
    if device == "cuda":
        return ["float16"]
    return ["float32", "bfloat16"] if torch.ops.mkldnn._is_mkldnn_bf16_supported() else ["float32"]


def time_training(
    width,
    depth,
    kernel_sizes,
    patch_size,
    image_size,
    num_classes,
    batch_size,
    steps,
    warmup,
    mixing="merged",
    device=None,
    precision="float32",
) -> list[float]:
    """Seconds of each of `steps` AdamW training steps after `warmup` untimed ones."""
    device = device or best_device()
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    model = conv_mixer(
        width, depth, patch_size=patch_size, n_classes=num_classes, kernel_sizes=kernel_sizes, mixing=mixing
    )
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    criterion = nn.CrossEntropyLoss()
    # The official loader normalises images; standard-normal inputs stand in for them.
    x = torch.randn(batch_size, 3, image_size, image_size, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch_size,), device=device)
    autocast_dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[precision]
    scaler = torch.amp.GradScaler(device) if precision == "float16" else None

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            loss = criterion(model(x), y)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        loss.item()  # waits for the step to finish, as the official loop's running loss does

    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds


def best_training_speed(
    width,
    depth,
    kernel_sizes,
    patch_size,
    image_size,
    num_classes,
    batch_size,
    steps,
    warmup,
    mixing="merged",
    precisions=None,
) -> dict:
    """Images/second at the fastest of `precisions` (default: `candidate_precisions`), and at each."""
    device = best_device()
    speeds = {}
    for precision in precisions or candidate_precisions(device):
        seconds = time_training(
            width,
            depth,
            kernel_sizes,
            patch_size,
            image_size,
            num_classes,
            batch_size,
            steps,
            warmup,
            mixing=mixing,
            device=device,
            precision=precision,
        )
        speeds[precision] = batch_size / statistics.median(seconds)
    best = max(speeds, key=speeds.get)
    return {"images_per_second": speeds[best], "precision": best, "device": device, "by_precision": speeds}

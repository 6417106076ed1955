"""`convmixer bench`: its options, registered on the main command's parser, and its run."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import backend
from ..config import MIXING_MODES
from .spec import CONFIGS, PRECISIONS, REFERENCE_PRECISIONS, Settings, select

USAGE = """Times training on one machine in one run: the package's ConvMixer on each installed Keras
backend against the official PyTorch code (convmixer.bench.torch_reference), the input pipeline
alone, and the FLOP utilisation against a measured matmul peak; writes a JSON file and prints a table.

    convmixer bench --steps 10 --warmup 2
    convmixer bench --configs 256/8-k5-p2 --backends jax --precision mixed_bfloat16
"""


def register(commands) -> None:
    """Add `bench` and its options to the main command's subparsers."""
    parser = commands.add_parser(
        "bench",
        help="time training against the PyTorch reference",
        description=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--configs", nargs="+", metavar="NAME", help=f"default: all of {', '.join(CONFIGS)}")
    parser.add_argument("--steps", type=int, default=Settings.steps, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=Settings.warmup, help="untimed steps first (>= 1)")
    parser.add_argument("--batch-size", type=int, default=Settings.batch_size)
    parser.add_argument(
        "--precision", choices=PRECISIONS, default=Settings.precision, help="the package's Keras precision policy"
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=backend.BACKENDS,
        help=f"Keras backends to measure (default: those installed, of {', '.join(backend.BACKENDS)})",
    )
    parser.add_argument(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        help="XLA-compile the package's train step (default: as a trial chooses it per backend and device)",
    )
    parser.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        help="convmixer.fused GELU and BatchNorm, TensorFlow only (default: as a trial chooses it)",
    )
    parser.add_argument(
        "--mixing",
        nargs="+",
        choices=MIXING_MODES,
        default=list(MIXING_MODES),
        help="forms of the multi-kernel layer to time",
    )
    parser.add_argument("--intra-op-threads", type=int, help="TensorFlow intra-op threads (default: TF's)")
    parser.add_argument("--inter-op-threads", type=int, help="TensorFlow inter-op threads (default: TF's)")
    parser.add_argument(
        "--peak-size", type=int, help="matrix side of the matmul peak (default: 2048 on the CPU, 8192 on a GPU)"
    )
    parser.add_argument(
        "--reference-precisions",
        nargs="+",
        choices=REFERENCE_PRECISIONS,
        help="autocast precisions the reference tries (default: float16 on CUDA; float32 "
        "on the CPU, and bfloat16 where oneDNN has bf16 kernels)",
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the PyTorch reference")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the input pipeline")
    parser.add_argument("--out", help="JSON file (default: benchmarks/results/<device>-<date>.json)")


def run(args: argparse.Namespace) -> int:
    """Measure, print the table and write the JSON; bad settings raise BenchError before any work."""
    precisions = tuple(args.reference_precisions) if args.reference_precisions else None
    settings = Settings(
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        precision=args.precision,
        jit_compile=args.jit_compile,
        fused=args.fused,
        backends=tuple(args.backends) if args.backends else None,
        reference=not args.no_reference,
        intra_op_threads=args.intra_op_threads,
        inter_op_threads=args.inter_op_threads,
        reference_precisions=precisions,
        pipeline=not args.no_pipeline,
        peak_size=args.peak_size,
    )
    specs = select(args.configs, args.mixing)
    from . import measure  # Keras, TensorFlow and torch load only now

    entries = measure.run(specs, settings, log=lambda line: print(line, flush=True))
    print(measure.table(entries))
    out = Path(args.out) if args.out else measure.default_output(entries[0]["device"])
    print(f"results: {measure.write(entries, out)}")
    return 0

"""`convmixer` command: run a profile's notebooks with papermill, build reports, benchmark.

convmixer run smoke                    # every experiment, then the HTML report
convmixer run cpu --only kernel_sweep  # one notebook
convmixer run smoke --backend jax      # Keras on JAX (default: TensorFlow if installed)
convmixer run columbia --executor ray --address HEAD:6379   # each trial a task on a Ray cluster
convmixer run columbia --coordinator HOST0:12355 --processes 2 --process-id I   # on each of 2 hosts: one model on both
convmixer report cpu --runs a/runs b/runs
convmixer list                         # profiles and experiments
convmixer list --show cpu              # every trial of a profile with its resolved settings
convmixer bench --configs 256/8-k5-p2 --steps 10   # training speed vs the PyTorch reference
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from pathlib import Path

from . import backend as keras_backend
from . import paths
from .backend import PROCESS_VARIABLES
from .bench import cli as bench_cli
from .config import DEVICES, ConfigError
from .report.build import ReportError, build_report
from .study import experiments
from .study.distributed import run_suite_on_ray
from .study.plan import resolved_settings
from .study.processes import run_suite_on_processes
from .study.suite import run_suite


def show_profile(profile: str) -> None:
    """Print what every trial of `profile` trains with (study.plan.resolved_settings)."""
    import pandas as pd

    common, tables = resolved_settings(profile)
    print(f"profile {profile}: {sum(map(len, tables.values()))} trials")
    print("settings every trial shares:")
    print("  " + ", ".join(f"{key}={value}" for key, value in common.items()))
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_colwidth", 40):
        for experiment, table in tables.items():
            print(f"\n{experiment}:")
            print(table.to_string(index=False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convmixer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    # Every command takes --verbose: TensorFlow's C++ log too (its notebooks' kernels inherit it).
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("--verbose", action="store_true", help="show TensorFlow's own log (default: quiet)")
    commands.add_parser = functools.partial(commands.add_parser, parents=[verbose])
    run = commands.add_parser("run", help="execute a profile's notebooks and build its report")
    run.add_argument("profile")
    run.add_argument(
        "--only",
        nargs="+",
        metavar="EXPERIMENT",
        help="run these experiments only (default: all, in the registry's order)",
    )
    run.add_argument("--out", help="output folder (default: reports/PROFILE)")
    run.add_argument(
        "--data-dir",
        help="dataset folder or archive, or 'sample' (default: the profile's, else $CONVMIXER_DATA_DIR, else download)",
    )
    run.add_argument("--device", choices=DEVICES, help="what trains (default: the profile's, auto)")
    run.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: the notebooks train here, one trial after another; ray: every trial is a task on a Ray "
        'cluster, then the notebooks display them (pip install -e ".[ray]"; docs/experiments.md)',
    )
    run.add_argument(
        "--address", help="--executor ray: the Ray cluster's address (default: $RAY_ADDRESS, else a new Ray here)"
    )
    # Several processes (hosts) training every model together, under JAX: Keras' variables, which
    # these set (backend.PROCESS_VARIABLES; docs/experiments.md).
    run.add_argument(
        "--coordinator", metavar="HOST:PORT", help=f"process 0's address (default: ${PROCESS_VARIABLES[0]})"
    )
    run.add_argument(
        "--processes", type=int, help=f"how many processes train each model (default: ${PROCESS_VARIABLES[1]})"
    )
    run.add_argument("--process-id", type=int, help=f"this process's index, 0 first (default: ${PROCESS_VARIABLES[2]})")
    evaluate = commands.add_parser("evaluate", help="test accuracy of a saved model.keras")
    for command in (run, evaluate):
        command.add_argument(
            "--backend",
            choices=("auto", *keras_backend.BACKENDS),
            default="auto",
            help="Keras backend (default: $KERAS_BACKEND, else TensorFlow if installed, else JAX)",
        )
    report = commands.add_parser("report", help="build the HTML report from run records")
    report.add_argument("profile")
    report.add_argument("--out", help="output folder (default: reports/PROFILE)")
    report.add_argument("--runs", nargs="+", help="run folders to collate (default: OUT/runs)")
    report.add_argument("--authors", help="the report's authors, 'Name; Name' (default: $CONVMIXER_AUTHORS)")
    report.add_argument("--date", help="the report's date, as written (default: $CONVMIXER_REPORT_DATE)")
    evaluate.add_argument("model", help="a run's model.keras (its config.json beside it says which test split)")
    evaluate.add_argument(
        "--data-dir", help="another copy of the dataset: folder or archive (default: the one it trained on)"
    )
    site = commands.add_parser("site", help="build reports/index.html, the landing page of every report there")
    site.add_argument("--root", help="the folder of reports (default: reports/ of this checkout)")
    listing = commands.add_parser("list", help="list profiles and experiments")
    listing.add_argument("--show", metavar="PROFILE", help="print every trial of PROFILE with its resolved settings")
    bench_cli.register(commands)
    return parser


def evaluation_summary(result: dict) -> str:
    """`convmixer evaluate`'s answer: what it measured, on how many images, beside the record."""
    recorded_on = result["recorded_test_images"]
    where = f" on {recorded_on} images" if recorded_on else ""

    def line(label, measured, recorded, scored=""):
        beside = f" (recorded: {recorded:.4f}{where})" if recorded is not None else ""
        return f"{label} {measured:.4f}{scored}{beside}"

    scored = f" on {result['images']} images from {result['source']}"
    lines = [line("test accuracy", result["test_accuracy"], result["recorded_test_accuracy"], scored)]
    if result["test_accuracy_flip"] is not None:
        flip = result["test_accuracy_flip"], result["recorded_test_accuracy_flip"]
        lines.append(line("with the test-time flip", *flip))
    if result["same_predictions"] is None:
        lines.append("another split than the run was scored on: kept in the run's rescored/ folder")
    else:
        same = "the same as" if result["same_predictions"] else "DIFFERENT from"
        lines.append(f"predictions {same} the recorded ones")
    return "\n".join(lines)


def run_profile(args) -> int:
    """`convmixer run`'s training and notebooks, on the executor asked for; return the failed notebooks' count."""
    options = args.profile, args.only, args.out, args.data_dir, args.backend, args.device
    flags = (args.coordinator, args.processes, args.process_id)
    if any(flag is not None for flag in flags) and None in flags:
        raise ConfigError("--coordinator, --processes and --process-id go together: give all three")
    for name, value in zip(PROCESS_VARIABLES, flags):
        if value is not None:  # the notebooks' kernels inherit them
            os.environ[name] = str(value)
    if keras_backend.launched_process()[1] > 1:
        if args.executor == "ray" or args.address:
            raise ConfigError("--executor ray trains each trial in one process: leave out --processes")
        return run_suite_on_processes(*options)
    if args.executor == "ray":
        return run_suite_on_ray(*options, address=args.address)
    if args.address:
        raise ConfigError("--address is the address of a Ray cluster: give it with --executor ray")
    return run_suite(*options)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:  # before TensorFlow is imported, which reads it once
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "bench":
            return bench_cli.run(args)
        if args.command == "evaluate":
            keras_backend.use(args.backend)
            from .train import evaluate_saved_model

            result = evaluate_saved_model(Path(args.model), args.data_dir)
            print(evaluation_summary(result))
            return 0
        if args.command == "list":
            if args.show:
                show_profile(args.show)
                return 0
            print("profiles:   ", ", ".join(experiments.available("profiles")))
            print("experiments:", ", ".join(experiments.experiment_names()))
            return 0
        if args.command == "run":
            if args.profile not in experiments.available("profiles"):
                raise ConfigError(
                    f"unknown profile {args.profile!r} (choose from: {', '.join(experiments.available('profiles'))})"
                )
            unknown = [name for name in args.only or [] if name not in experiments.experiment_names()]
            if unknown:
                raise ConfigError(
                    f"unknown experiment {unknown[0]!r} (choose from: {', '.join(experiments.experiment_names())})"
                )
            failures = run_profile(args)
            if keras_backend.launched_process()[0]:  # another process than 0: process 0 reports
                return 0
            print(f"report: {build_report(args.profile, paths.output_dir(args.profile, args.out))}")
            if failures:
                print(f"{failures} notebook(s) failed (see {paths.output_dir(args.profile, args.out) / 'logs'})")
            return 1 if failures else 0
        if args.command == "site":
            from .report.site import build_site

            print(build_site(Path(args.root) if args.root else paths.PROJECT_ROOT / "reports"))
            return 0
        out = paths.output_dir(args.profile, args.out)
        print(build_report(args.profile, out, runs_dirs=args.runs, authors=args.authors, date=args.date))
        return 0
    except (ConfigError, FileNotFoundError, ValueError, ReportError) as error:
        print(f"convmixer: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

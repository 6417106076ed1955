"""`convmixer` command: run a profile's notebooks with papermill, build reports, benchmark.

convmixer run smoke                    # every experiment, then the HTML report
convmixer run cpu --only kernel_sweep  # one notebook
convmixer run smoke --backend jax      # Keras on JAX (default: TensorFlow if installed)
convmixer report cpu --runs a/runs b/runs
convmixer list                         # profiles and experiments
convmixer list --show cpu              # every trial of a profile with its resolved settings
convmixer bench --configs 256/8-k5-p2 --steps 10   # training speed vs the PyTorch reference
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import nbformat

from . import backend as keras_backend
from . import experiments, paths, records
from .config import DEVICES, ConfigError
from .report import ReportError, build_report


def notebook_finished(path: Path, parameters: dict) -> bool:
    """True when `path` is a papermill output that ran to the end with these parameters."""
    try:
        meta = nbformat.read(path, as_version=4).metadata.get("papermill", {})
    except (OSError, ValueError):  # missing, or half-written when a kill interrupted papermill
        return False
    return meta.get("parameters") == parameters and meta.get("end_time") is not None and not meta.get("exception")


def run_suite(profile: str, only=None, out_dir=None, data_dir=None, backend="auto", device=None) -> int:
    """Execute the experiment notebooks in order, then build the report; return failures.

    The notebooks' kernels train on `backend` and `device` (None: the profile's device).
    """
    import papermill

    backend = keras_backend.use(backend)  # the kernels inherit KERAS_BACKEND
    names = list(only or experiments.experiment_names())
    if data_dir and data_dir != "sample" and not Path(data_dir).exists():
        raise ConfigError(f"data folder not found: {data_dir}")
    missing = [name for name in names if not (paths.NOTEBOOKS / f"{name}.ipynb").is_file()]
    if missing:
        raise ConfigError(
            f"experiment {missing[0]!r} has no notebook: add notebooks/{missing[0]}.ipynb "
            "(copy an experiment notebook and set its EXPERIMENT)"
        )
    out = paths.output_dir(profile, out_dir).resolve()
    overrides = {"data_dir": data_dir and str(data_dir), "device": device}
    plans = {}
    for name in names:  # every trial and its data are checked before the first one trains
        plans[name] = experiments.plan(name, profile, overrides=overrides, allow_empty=not only)
        experiments.check_before_training(name, plans[name], out)
    names = [name for name in names if plans[name]]  # an experiment the profile does not run
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    failed = []
    for number, name in enumerate(names, 1):
        output = out / "notebooks" / f"{name}.ipynb"
        parameters = {
            "profile": profile,
            "out_dir": str(out),
            "verbose": 2,
            "data_dir": str(Path(data_dir).resolve()) if data_dir and data_dir != "sample" else data_dir,
            "backend": backend,
            "device_type": device,
        }
        runs_complete = all(records.run_status(trial.run_dir(out)) == "complete" for trial in plans[name])
        if runs_complete and notebook_finished(output, parameters):
            print(f"[{number}/{len(names)}] {name}: already executed, skipping", flush=True)
            continue
        print(f"[{number}/{len(names)}] {name}: executing -> {output} (log: logs/{name}.log)", flush=True)
        with open(out / "logs" / f"{name}.log", "w") as log:
            try:
                papermill.execute_notebook(
                    paths.NOTEBOOKS / f"{name}.ipynb",
                    output,
                    parameters=parameters,
                    cwd=paths.NOTEBOOKS,
                    progress_bar=True,
                    stdout_file=log,
                    stderr_file=log,
                )
            except Exception as error:  # a failed notebook must not stop the others
                failed.append(name)
                print(f"    FAILED: {name}: {str(error).strip().splitlines()[-1]}", flush=True)
    index = build_report(profile, out)
    print(f"report: {index}")
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)} (see {out / 'logs'})")
    return len(failed)


def show_profile(profile: str) -> None:
    """Print what every trial of `profile` trains with (experiments.resolved_settings)."""
    import pandas as pd

    common, tables = experiments.resolved_settings(profile)
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
    evaluate.add_argument("model", help="a run's model.keras (its config.json beside it says which test split)")
    evaluate.add_argument(
        "--data-dir", help="another copy of the dataset: folder or archive (default: the one it trained on)"
    )
    site = commands.add_parser("site", help="build reports/index.html, the landing page of every report there")
    site.add_argument("--root", help="the folder of reports (default: reports/ of this checkout)")
    listing = commands.add_parser("list", help="list profiles and experiments")
    listing.add_argument("--show", metavar="PROFILE", help="print every trial of PROFILE with its resolved settings")
    # Its options live in convmixer.bench, imported only for this command (it loads TensorFlow and torch).
    commands.add_parser(
        "bench", add_help=False, help="time training against the PyTorch reference (convmixer bench --help)"
    )
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


def main(argv=None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "bench":
            from . import bench

            return bench.main(rest)
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
            failures = run_suite(args.profile, args.only, args.out, args.data_dir, args.backend, args.device)
            return 1 if failures else 0
        if args.command == "site":
            from .site import build_site

            print(build_site(Path(args.root) if args.root else paths.PROJECT_ROOT / "reports"))
            return 0
        print(build_report(args.profile, paths.output_dir(args.profile, args.out), runs_dirs=args.runs))
        return 0
    except (ConfigError, FileNotFoundError, ValueError, ReportError) as error:
        print(f"convmixer: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

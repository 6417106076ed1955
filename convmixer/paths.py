"""Where the project's files are: the repository root, found once, and the folders that
environment variables move (the tests move all of them)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = PROJECT_ROOT / "notebooks"
BENCHMARK_RESULTS = PROJECT_ROOT / "benchmarks" / "results"


def params_dir() -> Path:
    """params/ of the repository, or $CONVMIXER_PARAMS."""
    return Path(os.environ.get("CONVMIXER_PARAMS", PROJECT_ROOT / "params"))


def published_path() -> Path:
    return params_dir() / "published.yaml"


def output_dir(profile: str, out_dir=None) -> Path:
    """Where a profile's runs, notebooks and report go: reports/<profile> unless told.

    $CONVMIXER_REPORTS moves the default reports/ folder.
    """
    if out_dir:
        return Path(out_dir)
    return Path(os.environ.get("CONVMIXER_REPORTS", PROJECT_ROOT / "reports")) / profile

"""Where the project's files are: the repository root, found once, and the folders that
environment variables move (the tests move all of them)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .config import ConfigError

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


# What `persist_to` moves, and the sub-folder each goes to.
PERSISTENT = {"CONVMIXER_REPORTS": "reports", "CONVMIXER_CACHE_DIR": "cache", "KERAS_HOME": "keras"}
COLAB_DRIVE = Path("/content/drive")  # where Colab mounts Google Drive


def persist_to(folder) -> Path | None:
    """Keep everything a run needs to resume under `folder`, e.g. a mounted Google Drive.

    Run folders with their checkpoints (reports/<profile>/), the decoded-image cache and Keras'
    downloads (CIFAR-10) go there, so a notebook rerun on a new machine finds them and resumes.
    A folder under /content/drive mounts Google Drive first if it is not mounted (Colab).
    Keras reads KERAS_HOME once, when it is imported: call this first (the notebooks' first
    code cell does). None leaves everything where it is.
    """
    if not folder:
        return None
    if "keras" in sys.modules and os.environ.get("KERAS_HOME") != str(Path(folder).expanduser().resolve() / "keras"):
        raise ConfigError("persist_dir must be set before Keras is imported: restart the kernel and run from the top")
    folder = Path(folder).expanduser().resolve()
    if folder.is_relative_to(COLAB_DRIVE) and not COLAB_DRIVE.joinpath("MyDrive").exists():
        from google.colab import drive  # only on Colab; asks the user to allow access

        drive.mount(str(COLAB_DRIVE))
    for variable, name in PERSISTENT.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(folder / name)
    return folder

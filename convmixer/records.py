"""The run record of one trial (DESIGN.md contract): config.json, history.csv, metrics.json.

`metrics.json` is written last and atomically: a directory without it is unfinished.
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import io
import json
import os
import subprocess
import tempfile
from pathlib import Path

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds")
TRACKED_PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "papermill", "convmixer")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write to a temp file beside `path`, then rename: readers see all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide records and reports from other readers
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


def read_history(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_history(path: Path, rows: list[dict]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, out.getvalue())


def git_commit() -> str | None:
    """The commit of the code that ran (with `+dirty` when uncommitted changes exist)."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


class IncompatibleRunError(ValueError):
    """The run directory holds a trial of a different configuration."""


def check_compatible(run_dir: Path, config) -> None:
    previous = read_json(Path(run_dir) / "config.json") or {}
    if previous.get("config_hash") not in (None, config.config_hash()):
        raise IncompatibleRunError(
            f"{run_dir} holds a trial of another configuration (hash {previous['config_hash']}, "
            f"now {config.config_hash()}); refusing to resume it: delete it or use another directory")


def run_status(run_dir: Path) -> str:
    """`complete`, `failed`, `unfinished` (started, no metrics.json) or `new`."""
    metrics = read_json(Path(run_dir) / "metrics.json")
    if metrics is not None:
        return metrics.get("status", "failed")
    return "unfinished" if (Path(run_dir) / "config.json").exists() else "new"

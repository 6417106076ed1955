"""Which Keras backend runs the suite: TensorFlow or JAX, chosen before Keras is imported.

Keras reads its backend once, when it is first imported (`KERAS_BACKEND`, else
~/.keras/keras.json, else TensorFlow), so the choice belongs to the process: the CLI's
`--backend`, a notebook's `backend` parameter, or the environment variable. This module
imports neither Keras nor a backend, so it can run first.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from .config import ConfigError

BACKENDS = ("tensorflow", "jax")


def installed() -> list[str]:
    """The backends importable here, in BACKENDS order."""
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


def choose(requested: str | None = "auto") -> str:
    """The backend `requested` names. `auto` (or None) is `KERAS_BACKEND` if set, else the one
    keras.json names if it is installed (Keras writes "tensorflow" there on its first import,
    wherever it runs), else TensorFlow when it is installed and JAX when only JAX is (Colab's
    TPU runtimes)."""
    requested = requested or "auto"
    if requested not in ("auto", *BACKENDS):
        raise ConfigError(f"unknown backend {requested!r} (choose from: auto, {', '.join(BACKENDS)})")
    if requested == "auto":
        configured = _keras_json_backend()
        if configured in BACKENDS and configured not in installed():
            configured = None
        requested = os.environ.get("KERAS_BACKEND") or configured or next(iter(installed()), "tensorflow")
    if requested in BACKENDS and requested not in installed():
        extra = "tensorflow" if requested == "tensorflow" else "jax"
        raise ConfigError(
            f"backend {requested!r} is not installed here (found: {', '.join(installed()) or 'none'}); "
            f"pip install 'convmixer[{extra}]'"
        )
    return requested


def _keras_json_backend() -> str | None:
    path = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "keras.json"
    try:
        return json.loads(path.read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None


def use(requested: str | None = "auto") -> str:
    """Make `requested` the Keras backend of this process and return its name.

    Once Keras is imported its backend cannot change: asking for another one then is a
    one-line error (restart the kernel, or set the backend first).
    """
    name = choose(requested)
    if "keras" in sys.modules:
        running = sys.modules["keras"].backend.backend()
        if running != name:
            raise ConfigError(
                f"Keras is already running on {running} in this process and cannot switch to {name}: "
                f"restart the kernel (or the command) with backend={name}"
            )
        return name
    os.environ["KERAS_BACKEND"] = name
    return name


# Keras' own variables (keras.distribution.initialize) naming the processes that train one model
# together: the coordinator's address (the first of a comma-separated list), how many processes,
# and this one's index. A launcher sets them (from SLURM's or Ray's own), or `convmixer run
# --coordinator --processes --process-id`; the notebooks' kernels inherit them.
PROCESS_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def launched_process() -> tuple[int, int]:
    """(this process's index, how many processes train one model together); (0, 1) when unset."""
    return int(os.environ.get(PROCESS_VARIABLES[2]) or 0), int(os.environ.get(PROCESS_VARIABLES[1]) or 1)

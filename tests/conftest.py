"""Fixtures shared by the collation, claims, published-numbers and report tests, and the
XLA compilation cache that every process of a test session shares."""

import os
import tempfile
from pathlib import Path

# JAX compiles each jitted function once per process, and on a CPU each eager operation too, so the
# trials that tests run in subprocesses (killed and resumed trials, notebooks, Ray workers) compile
# the same programs again and again. JAX's persistent compilation cache lets them share what one
# compiled: a cache entry is the compiled program itself, so results do not change. An entry that a
# killed process left half written is read as an error, and JAX compiles again (with a warning).
# On the 2-core AMD EPYC the tiny trial of tests/fault_helpers.py took 16.4 s with an empty cache
# and 8.6 s with a full one (a training shared the cores). Set before anything imports JAX; .ci/run
# points it at a fresh folder.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(tempfile.gettempdir()) / "convmixer-tests-xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # the many small programs too
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")  # however small

import pytest  # noqa: E402
from records_factory import make_study  # noqa: E402

from convmixer.report import collate  # noqa: E402


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A small hand-made study on two machines (records_factory.make_study), collated."""
    root = tmp_path_factory.mktemp("study")
    machine_a = make_study(root)
    runs = collate.load_runs(machine_a, root / "machine_b")
    return {"root": root, "a": machine_a, "b": root / "machine_b", "runs": runs, "summary": collate.summarise(runs)}

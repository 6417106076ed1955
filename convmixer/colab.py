"""The notebooks' Colab setup, once their first cell has cloned the suite and checked out REVISION.

`install` makes the clone importable in the running kernel without a restart, and stops the
cell with one line (SystemExit, which IPython shows without a traceback) when what would run is
not what was asked for: the clone at another commit, a failed pip install, or pip replacing a
package that this kernel has already imported (its old version stays loaded until a restart).
This is code in the package, not in the cell, so that the tests can run it.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

# Every experiment notebook's first cell (they hold it verbatim: `python -m convmixer.colab` writes
# it into each). REVISION, the commit a Colab user runs, is set here and nowhere else.
SETUP_CELL = """\
# On Colab: fetch the suite at REVISION (a branch, tag or commit), install what the runtime lacks,
# and import it in this kernel without a restart; the run records name the commit that ran. A step
# that fails stops the cell with one line. Elsewhere: README, "Quick start".
import sys

if "google.colab" in sys.modules:
    import subprocess

    REVISION = "main"
    SUITE = "/content/convmixer-suite"
    for step, command in [
        ("git clone", f"test -d {SUITE} || git clone -q https://github.com/convmixer-repro/convmixer-suite {SUITE}"),
        (f"git checkout {REVISION}", f"git -C {SUITE} checkout -q {REVISION}"),
    ]:
        done = subprocess.run(command, shell=True, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"Colab setup: {step} failed: {(done.stderr.strip() or 'no message').splitlines()[-1]}")
    sys.path.insert(0, SUITE)  # importable now: an editable install is seen only after a restart
    from convmixer import colab

    colab.install(SUITE, REVISION)
    %cd {SUITE}/notebooks
"""

# What Colab says of its runtime in the environment of every kernel (null in a run record elsewhere).
RUNTIME_VARIABLES = ("COLAB_RELEASE_TAG", "COLAB_BACKEND_VERSION", "COLAB_GPU", "COLAB_TPU_ADDR")


def runtime() -> dict[str, str] | None:
    """The Colab runtime this process runs on, as its environment names it; None off Colab."""
    found = {name: os.environ[name] for name in RUNTIME_VARIABLES if os.environ.get(name)}
    return found or None


def install(suite: str | Path, revision: str) -> str:
    """`pip install -e suite` into this kernel's Python; the commit that runs, or SystemExit."""
    suite = Path(suite)
    commit = _git(suite, "rev-parse", "HEAD")
    if not commit:
        stop(f"{suite} is not a git clone of the suite")
    asked = _git(suite, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    if commit != asked:
        stop(f"{suite} is at {commit[:12]}, not at REVISION {revision!r} ({asked[:12] or 'not found'})")
    before = loaded_distributions()
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "-e", str(suite)], capture_output=True, text=True
    )
    if done.returncode:
        stop(f"pip install -e {suite} failed: {_last_line(done.stderr, done.returncode)}")
    replaced = replaced_since(before)
    if replaced:
        changes = ", ".join(f"{name} {old} -> {new or 'removed'}" for name, (old, new) in sorted(replaced.items()))
        stop(f"pip replaced {changes}, already imported by this kernel: restart the session and run this cell again")
    print(f"convmixer-suite {revision} ({commit[:12]}) installed; pip replaced nothing this kernel had imported")
    return commit


def loaded_distributions() -> dict[str, str]:
    """The installed distributions whose modules this process has imported, with their versions."""
    owners = importlib.metadata.packages_distributions()
    names = {dist for module in list(sys.modules) for dist in owners.get(module.partition(".")[0], ())}
    return {name: version for name in names if (version := _version(name))}


def replaced_since(before: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    """Of `before` (name: version), those whose installed version is now another, or gone."""
    return {name: (old, new) for name, old in before.items() if (new := _version(name)) != old}


def stop(message: str) -> None:
    raise SystemExit(f"Colab setup: {message}")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(suite: Path, *args: str) -> str:
    """What git printed; "" where it failed (not a repository, a revision that names nothing)."""
    return subprocess.run(["git", "-C", str(suite), *args], capture_output=True, text=True).stdout.strip()


def _last_line(text: str, code: int) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {code}"


def write_setup_cells(notebooks: Path) -> list[Path]:
    """Put SETUP_CELL into every experiment notebook under `notebooks` (its first code cell)."""
    import nbformat

    written = []
    for path in sorted(Path(notebooks).glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        first = next((cell for cell in notebook.cells if cell.cell_type == "code"), None)
        if first is not None and "google.colab" in first.source and first.source != SETUP_CELL.rstrip("\n"):
            first.source = SETUP_CELL.rstrip("\n")
            nbformat.write(notebook, path)
            written.append(path)
    return written


if __name__ == "__main__":
    from . import paths

    for path in write_setup_cells(paths.NOTEBOOKS):
        print(f"setup cell written: {path}")

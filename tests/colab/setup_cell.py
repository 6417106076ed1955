"""The notebooks' Colab setup cell, run for real in a Colab-like environment (.ci/run, last steps).

Run with the Python of a virtual environment built from tests/colab/<runtime>-runtime.txt (Colab's
versions of the packages the suite touches, on the Python that file names). In a live IPython
kernel of that environment, with `google.colab` faked and the GitHub clone replaced by a clone of
this checkout at HEAD, it runs the setup cell of notebooks/baseline.ipynb and then the rest of
that notebook on the smoke profile, in the same kernel, as a Colab user would; on the TPU runtime
it also builds the report from that run. It prints the cell's output and what pip added and
changed, and fails if the environment is not the runtime's (its Python; TensorFlow importable on
the TPU runtime), if pip replaced any installed package, if the package was not importable
without a restart, if the backend or device was not the one Colab would use, or if the notebook
did not finish its trial.

    python tests/colab/setup_cell.py --runtime gpu|tpu [--keep DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "baseline.ipynb"
CLONE_URL = "https://github.com/convmixer-repro/convmixer-suite"
# `google.colab` as the notebooks see it: importable, with the `output` module that JAX imports
# as soon as it finds `google.colab` among the loaded modules.
FAKE_COLAB = """import sys, types
colab = types.ModuleType("google.colab")
colab.output = sys.modules["google.colab.output"] = types.ModuleType("google.colab.output")
sys.modules["google.colab"] = colab
"""
# What `backend: auto` must pick in each runtime: TensorFlow where it is installed, else JAX.
BACKEND = {"gpu": "tensorflow", "tpu": "jax"}


class CellError(RuntimeError):
    """A cell raised: `printed` is what it printed, `error` the exception's last line."""

    def __init__(self, code: str, printed: str, error: str, traceback: str):
        super().__init__(f"cell failed:\n{code}\n{printed}\n{traceback}")
        self.printed, self.error = printed, error


def runtime_file(runtime: str) -> Path:
    return ROOT / "tests" / "colab" / f"{runtime}-runtime.txt"


def runtime_python(runtime: str) -> str:
    """The Python version ("3.13") that the runtime file names in its `# python:` line."""
    return re.search(r"^# python: (\S+)$", runtime_file(runtime).read_text(), re.M).group(1)


def wrong_environment(runtime: str) -> str | None:
    """Why this environment is not the runtime's (another Python; TensorFlow importable on the TPU
    runtime, which has none), in one line; None when it is."""
    python = runtime_python(runtime)
    if f"{sys.version_info.major}.{sys.version_info.minor}" != python:
        return f"Colab's {runtime} runtime runs Python {python}; this is Python {sys.version.split()[0]}"
    if runtime == "tpu" and importlib.util.find_spec("tensorflow") is not None:
        return "TensorFlow is importable here: this is not Colab's TPU runtime, which has none"
    return None


def installed() -> dict[str, str]:
    """Every package of this environment and its version, by lower-case name."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True
    ).stdout
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(listing)}


def execute(client, code: str, timeout: float) -> str:
    """Run `code` in the kernel; return what it printed; raise CellError when it raised."""
    printed, errors = [], []

    def collect(message):
        content, kind = message["content"], message["msg_type"]
        if kind == "stream":
            printed.append(content["text"])
        elif kind in ("execute_result", "display_data"):
            printed.append(content["data"].get("text/plain", "") + "\n")
        elif kind == "error":
            errors.append((f"{content['ename']}: {content['evalue']}", "\n".join(content["traceback"])))

    reply = client.execute_interactive(code, output_hook=collect, timeout=timeout)
    if errors or reply["content"]["status"] != "ok":
        error, traceback = errors[0] if errors else ("", "")
        raise CellError(code, "".join(printed), error, traceback)
    return "".join(printed)


def colab_cell(source: str, workdir: Path, revision: str) -> str:
    """The setup cell with GitHub replaced by this checkout, /content by `workdir`, and REVISION."""
    pinned = [line for line in source.splitlines() if line.strip().startswith("REVISION = ")]
    if len(pinned) != 1 or CLONE_URL not in source:
        raise SystemExit(f"the setup cell must clone {CLONE_URL} and name its REVISION once")
    cell = source.replace(pinned[0].strip(), f"REVISION = {revision!r}")
    return cell.replace(CLONE_URL, str(ROOT)).replace("/content", str(workdir))


def notebook_cells() -> tuple[str, str, list[str]]:
    """baseline.ipynb's setup cell, its parameters cell, and the code cells after them."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    setup, parameters, rest = code[0], code[1], code[2:]
    assert "google.colab" in setup.source and "parameters" in parameters.metadata.get("tags", [])
    return setup.source, parameters.source, [cell.source for cell in rest]


def colab_kernel(workdir: Path):
    """A live kernel of this environment in `workdir`, with `google.colab` importable."""
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(workdir))
    execute(client, FAKE_COLAB, 30)
    return manager, client


def head_commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=sorted(BACKEND), required=True)
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    wrong = wrong_environment(args.runtime)
    if wrong:
        raise SystemExit(wrong)
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="colab-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    setup, parameters, rest = notebook_cells()
    revision = head_commit()
    out_dir = workdir / "out"

    before = installed()
    manager, client = colab_kernel(workdir)
    try:
        output = execute(client, colab_cell(setup, workdir, revision), 900)
        print(f"---- setup cell output (Colab's {args.runtime} runtime, Python {sys.version.split()[0]}) ----")
        print(output.rstrip())
        print("---- end of setup cell output ----")
        where = execute(client, "import convmixer; print(convmixer.__file__)", 60).strip()
        clone = workdir / "convmixer-suite"
        if not where.startswith(str(clone)):
            raise SystemExit(f"convmixer imported from {where}, not from the clone {clone}")
        execute(client, parameters, 60)
        execute(client, f"out_dir = {str(out_dir)!r}\nverbose = 2", 60)  # as papermill injects them
        for cell in rest:
            print(execute(client, cell, 900).rstrip()[-2000:])
        if args.runtime == "tpu":
            index = execute(
                client, f"from convmixer.report import build\nprint(build.build_report('smoke', {str(out_dir)!r}))", 900
            )
            print(f"report built: {index.strip().splitlines()[-1]}")
        tensorflow = execute(
            client, "import importlib.util; print(importlib.util.find_spec('tensorflow') is not None)", 60
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    after = installed()

    changed = {name: (version, after.get(name)) for name, version in before.items() if after.get(name) != version}
    added = {name: version for name, version in after.items() if name not in before}
    print(f"pip added {len(added)} packages: " + ", ".join(f"{n}=={v}" for n, v in sorted(added.items())))
    print(
        f"pip changed {len(changed)} of the {len(before)} installed packages"
        + "".join(f"\n  {name}: {old} -> {new or 'removed'}" for name, (old, new) in sorted(changed.items()))
    )
    problems = [f"pip changed {len(changed)} package(s)"] if changed else []
    for path in sorted(out_dir.glob("runs/baseline/*/config.json")):
        record, metrics = json.loads(path.read_text()), json.loads(path.with_name("metrics.json").read_text())
        print(
            f"{path.parent.name}: {metrics['status']}, backend {record['backend']}, {record['device']}"
            f" ({record['device_note']}); test accuracy {metrics['test_accuracy']} on {metrics['test_images']} images"
        )
        if metrics["status"] != "complete":
            problems.append(f"{path.parent.name} is {metrics['status']}")
        if record["backend"] != BACKEND[args.runtime]:
            problems.append(
                f"backend {record['backend']}, where Colab's {args.runtime} runtime would use {BACKEND[args.runtime]}"
            )
        if not (record["device_note"] or "").startswith("device: auto found no GPU or TPU"):
            problems.append(f"device: auto did not say it found no accelerator: {record['device_note']!r}")
        if record["git_commit"] != revision:
            problems.append(f"the record names commit {record['git_commit']}, but {revision} ran")
    if not list(out_dir.glob("runs/baseline/*/config.json")):
        problems.append("the notebook left no baseline trial")
    if args.runtime == "tpu" and tensorflow.strip() != "False":
        problems.append("TensorFlow became importable: pip installed it")
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""The notebooks' Colab setup cell, run for real in a Colab-like environment (.ci/run, step 3).

Run with the Python of a virtual environment built from tests/colab/colab-runtime.txt (Colab's
versions of the packages the suite touches). In a live IPython kernel of that environment,
with `google.colab` faked and the GitHub clone replaced by a clone of this checkout at HEAD,
it runs the setup cell of notebooks/baseline.ipynb and then the rest of that notebook on the
smoke profile, in the same kernel, as a Colab user would. It prints the cell's output and what
pip changed, and fails if pip replaced any installed package, if the package was not importable
without a restart, or if the notebook did not finish its trial.

    python tests/colab/setup_cell.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "baseline.ipynb"
CLONE_URL = "https://github.com/convmixer-repro/convmixer-suite"
FAKE_COLAB = "import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')"


def installed() -> dict[str, str]:
    """Every package of this environment and its version, by lower-case name."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True
    ).stdout
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(listing)}


def execute(client, code: str, timeout: float) -> str:
    """Run `code` in the kernel; return what it printed; raise with the traceback on an error."""
    printed, errors = [], []

    def collect(message):
        content, kind = message["content"], message["msg_type"]
        if kind == "stream":
            printed.append(content["text"])
        elif kind in ("execute_result", "display_data"):
            printed.append(content["data"].get("text/plain", "") + "\n")
        elif kind == "error":
            errors.append("\n".join(content["traceback"]))

    reply = client.execute_interactive(code, output_hook=collect, timeout=timeout)
    if errors or reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell failed:\n{code}\n{''.join(printed)}\n{''.join(errors)}")
    return "".join(printed)


def colab_cell(source: str, workdir: Path, revision: str) -> str:
    """The setup cell with GitHub replaced by this checkout and /content by `workdir`."""
    pinned = [line for line in source.splitlines() if line.strip().startswith("REVISION = ")]
    if len(pinned) != 1 or CLONE_URL not in source:
        raise SystemExit(f"the setup cell must clone {CLONE_URL} and name its REVISION once")
    cell = source.replace(pinned[0].strip(), f'REVISION = "{revision}"')
    return cell.replace(CLONE_URL, str(ROOT)).replace("/content", str(workdir))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="colab-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    revision = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    setup, parameters, rest = code[0], code[1], code[2:]
    assert "google.colab" in setup.source and "parameters" in parameters.metadata.get("tags", [])

    before = installed()
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(workdir))
    try:
        execute(client, FAKE_COLAB, 30)
        output = execute(client, colab_cell(setup.source, workdir, revision), 900)
        print("---- setup cell output (Colab-like environment) ----")
        print(output.rstrip())
        print("---- end of setup cell output ----")
        where = execute(client, "import convmixer; print(convmixer.__file__)", 60).strip()
        clone = workdir / "convmixer-suite"
        if not where.startswith(str(clone)):
            raise SystemExit(f"convmixer imported from {where}, not from the clone {clone}")
        out_dir = workdir / "out"
        execute(client, parameters.source, 60)
        execute(client, f"out_dir = {str(out_dir)!r}\nverbose = 2", 60)  # as papermill injects them
        for cell in rest:
            execute(client, cell.source, 900)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    after = installed()

    metrics = sorted(out_dir.glob("runs/baseline/*/metrics.json"))
    statuses = [json.loads(path.read_text())["status"] for path in metrics]
    changed = {name: (version, after.get(name)) for name, version in before.items() if after.get(name) != version}
    added = {name: version for name, version in after.items() if name not in before}
    print(f"pip added {len(added)} packages: " + ", ".join(f"{n}=={v}" for n, v in sorted(added.items())))
    print(
        f"pip changed {len(changed)} of the {len(before)} installed packages"
        + "".join(f"\n  {name}: {old} -> {new or 'removed'}" for name, (old, new) in sorted(changed.items()))
    )
    print(f"smoke baseline in the same kernel: {len(statuses)} trial(s), status {statuses}")
    if changed:
        return 1
    if not statuses or any(status != "complete" for status in statuses):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

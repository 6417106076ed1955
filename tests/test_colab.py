"""The notebooks' Colab setup: the cell stops with one line on a failed step, `colab.install` refuses
a clone at another commit and names a replaced package, and records name the Colab runtime.

The whole cell in Colab's own versions (GPU and TPU runtimes, Python 3.13) is .ci/run's last job,
tests/colab/setup_cell.py."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from convmixer import colab

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("setup_cell", ROOT / "tests" / "colab" / "setup_cell.py")
setup_cell = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(setup_cell)


def test_the_setup_cell_stops_with_one_line_when_the_checkout_fails(tmp_path):
    """As on Colab when REVISION names nothing in the repository (the old cell went on regardless)."""
    setup, _, _ = setup_cell.notebook_cells()
    manager, client = setup_cell.colab_kernel(tmp_path)
    try:
        with pytest.raises(setup_cell.CellError) as failed:
            setup_cell.execute(client, setup_cell.colab_cell(setup, tmp_path, "no-such-revision"), 120)
        imported = setup_cell.execute(client, "import sys; print('convmixer' in sys.modules)", 30).strip()
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    error = failed.value.error
    assert error.startswith("SystemExit: Colab setup: git checkout no-such-revision failed: ")
    assert "no-such-revision" in error.split("failed: ", 1)[1] and "\n" not in error
    assert (tmp_path / "convmixer-suite" / ".git").is_dir()  # the clone worked; nothing after the checkout ran
    assert imported == "False"


def test_the_setup_cell_stops_with_one_line_when_the_clone_fails(tmp_path):
    """As on Colab without a network, or with a mistyped repository address."""
    setup, _, _ = setup_cell.notebook_cells()
    cell = setup_cell.colab_cell(setup, tmp_path, "main").replace(str(ROOT), str(tmp_path / "no-such-repository"))
    manager, client = setup_cell.colab_kernel(tmp_path)
    try:
        with pytest.raises(setup_cell.CellError) as failed:
            setup_cell.execute(client, cell, 120)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    error = failed.value.error
    assert error.startswith("SystemExit: Colab setup: git clone failed: ") and "\n" not in error
    assert "no-such-repository" in error
    assert not (tmp_path / "convmixer-suite").exists()


def test_the_colab_jobs_refuse_an_environment_that_is_not_the_runtimes(tmp_path, monkeypatch):
    """The TPU runtime has no TensorFlow: a TensorFlow on the path fails the TPU job, not the GPU job."""
    this_python = f"{sys.version_info.major}.{sys.version_info.minor}"
    monkeypatch.setattr(setup_cell, "runtime_python", lambda runtime: "2.7")
    assert setup_cell.wrong_environment("gpu").startswith("Colab's gpu runtime runs Python 2.7; this is Python 3.")
    monkeypatch.setattr(setup_cell, "runtime_python", lambda runtime: this_python)
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert setup_cell.wrong_environment("tpu") == (
        "TensorFlow is importable here: this is not Colab's TPU runtime, which has none"
    )
    assert setup_cell.wrong_environment("gpu") is None
    with pytest.raises(SystemExit, match="TensorFlow is importable here"):
        setup_cell.main(["--runtime", "tpu", "--keep", str(tmp_path / "work")])
    assert not (tmp_path / "work").exists()  # refused before anything ran


def test_every_experiment_notebook_opens_with_the_packages_setup_cell_without_shell_escapes():
    """One owner (colab.SETUP_CELL, with REVISION) for the six notebooks' first cell; `!git ...` would
    lose the command's exit status, so every step is a subprocess whose status is read."""
    import nbformat

    cells = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        first = next(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        if "google.colab" in first:
            cells[path.stem] = first
    assert sorted(cells) == ["adamw", "baseline", "dynamic_kernel", "kernel_sweep", "patch_sweep", "replication"]
    assert set(cells.values()) == {colab.SETUP_CELL.rstrip("\n")}
    assert not [line for line in colab.SETUP_CELL.splitlines() if line.strip().startswith("!")]
    assert "colab.install(SUITE, REVISION)" in colab.SETUP_CELL
    assert colab.write_setup_cells(ROOT / "notebooks") == []  # nothing to write: they hold it already


def _repo(tmp_path: Path) -> tuple[Path, list[str]]:
    """A git repository with two commits (it is at the second)."""
    repo = tmp_path / "suite"
    repo.mkdir()

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    commits = []
    for text in ("first", "second"):
        (repo / "file.txt").write_text(text)
        git("add", "file.txt")
        git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", text)
        commits.append(git("rev-parse", "HEAD"))
    return repo, commits


def test_install_refuses_a_folder_that_is_not_a_clone(tmp_path):
    with pytest.raises(SystemExit, match=rf"^Colab setup: {tmp_path} is not a git clone of the suite$"):
        colab.install(tmp_path, "main")


def test_install_refuses_a_clone_that_is_not_at_the_revision_asked_for(tmp_path):
    repo, (first, second) = _repo(tmp_path)
    with pytest.raises(SystemExit, match=rf"^Colab setup: {repo} is at {second[:12]}, not at REVISION '{first[:12]}'"):
        colab.install(repo, first[:12])
    with pytest.raises(SystemExit, match=r"not at REVISION 'v9.9' \(not found\)$"):
        colab.install(repo, "v9.9")


def test_install_stops_with_one_line_when_pip_fails(tmp_path):
    repo, (_, second) = _repo(tmp_path)  # a folder pip cannot install: no pyproject.toml or setup.py
    with pytest.raises(SystemExit) as stopped:
        colab.install(repo, second)
    message = str(stopped.value)
    assert message.startswith(f"Colab setup: pip install -e {repo} failed: ") and "\n" not in message


def test_install_says_to_restart_when_pip_replaced_a_package_the_kernel_had_imported(tmp_path, monkeypatch):
    """pip upgrading numpy under a kernel that imported it: one line saying to restart, not a crash later."""
    repo, (_, second) = _repo(tmp_path)
    run = subprocess.run

    def pip_upgrades_numpy(command, **kwargs):
        if command[1:3] == ["-m", "pip"]:  # pip "succeeds" and numpy's installed version moves on
            monkeypatch.setattr(colab, "_version", lambda name: "9.9.9" if name == "numpy" else versions.get(name))
            return subprocess.CompletedProcess(command, 0, "", "")
        return run(command, **kwargs)

    versions = colab.loaded_distributions()
    monkeypatch.setattr(colab.subprocess, "run", pip_upgrades_numpy)
    with pytest.raises(SystemExit) as stopped:
        colab.install(repo, second)
    assert str(stopped.value) == (
        f"Colab setup: pip replaced numpy {versions['numpy']} -> 9.9.9, already imported by this kernel: "
        "restart the session and run this cell again"
    )


def test_a_package_replaced_under_the_kernel_is_named_with_both_versions():
    loaded = colab.loaded_distributions()
    assert "numpy" in loaded and "pytest" in loaded  # imported by this process, with their versions
    assert colab.replaced_since(loaded) == {}
    older = {**loaded, "numpy": "1.0.0", "no-such-distribution": "1.0"}
    assert colab.replaced_since(older) == {"numpy": ("1.0.0", loaded["numpy"]), "no-such-distribution": ("1.0", None)}


def test_the_colab_runtime_is_what_colabs_environment_says_and_none_elsewhere(monkeypatch):
    for name in colab.RUNTIME_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert colab.runtime() is None
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-test")
    monkeypatch.setenv("COLAB_GPU", "")
    assert colab.runtime() == {"COLAB_RELEASE_TAG": "release-colab-test"}

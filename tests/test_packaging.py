"""Installing: ranges in pyproject.toml, the tested versions in constraints.txt, and conda's
environment.yml using the same constraints."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_every_requirement_has_a_tested_version_inside_its_range():
    pins = _constraints()
    requirements = PROJECT["dependencies"] + [r for extra in PROJECT["optional-dependencies"].values() for r in extra]
    for requirement in map(Requirement, requirements):
        name = requirement.name.lower()
        assert name in pins, f"constraints.txt has no tested version of {name}"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement}"
        assert "==" not in str(requirement.specifier), f"pyproject.toml pins {requirement}: give a range"


def test_environment_yml_installs_with_the_constraints():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-c constraints.txt" in pip_section
    assert any(line.startswith("-e .[") for line in pip_section)
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert re.fullmatch(r"python=3\.\d+", python)
    low = re.search(r">=3\.(\d+)", PROJECT["requires-python"]).group(1)
    assert int(python.split(".")[1]) >= int(low)


def test_every_notebook_sets_up_colab_the_same_way_at_this_version():
    """One setup cell for all notebooks, checking out the tag of the version in pyproject.toml."""
    import nbformat

    cells = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        code = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        if "google.colab" in code[0]:
            cells[path.name] = code[0]
    assert len(cells) >= 5 and len(set(cells.values())) == 1, "the notebooks' Colab cells differ"
    cell = next(iter(cells.values()))
    assert f'REVISION = "v{PROJECT["version"]}"' in cell
    assert "%pip install -e /content/convmixer-suite\n" in cell  # no -q: pip's restart notice shows
    assert 'sys.path.insert(0, "/content/convmixer-suite")' in cell  # importable without a restart

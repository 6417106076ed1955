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


def test_the_classifiers_name_the_pythons_ci_tests():
    """CI runs the suite on this machine's Python (3.11) and the Colab jobs on each runtime's own
    (tests/colab/*-runtime.txt); the classifiers list exactly those, requires-python the lowest."""
    tested = {"3.11"} | {
        re.search(r"^# python: (\S+)$", path.read_text(), re.M).group(1)
        for path in (ROOT / "tests" / "colab").glob("*-runtime.txt")
    }
    prefix = "Programming Language :: Python :: "
    listed = {c.removeprefix(prefix) for c in PROJECT["classifiers"] if re.fullmatch(rf"{prefix}3\.\d+", c)}
    assert listed == tested
    assert PROJECT["requires-python"].startswith(f">={min(tested, key=lambda v: int(v.split('.')[1]))}")


def test_papermill_lists_every_parameter_of_every_notebook_with_its_comment():
    """`papermill --help-notebook` is how a batch user finds a notebook's parameters: each assignment
    of the parameters cell must parse (a comment papermill cannot read drops the parameter)."""
    import nbformat
    import papermill

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
        assigned = [line.split("=")[0].strip() for line in cell.source.splitlines() if re.match(r"^\w+ = ", line)]
        listed = papermill.inspect_notebook(str(path))
        assert list(listed) == assigned, path.name
        assert all(parameter["help"] for parameter in listed.values()), path.name

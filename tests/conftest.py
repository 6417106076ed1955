"""Fixtures shared by the collation, claims, published-numbers and report tests."""

import pytest
from records_factory import make_study

from convmixer.report import collate


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A small hand-made study on two machines (records_factory.make_study), collated."""
    root = tmp_path_factory.mktemp("study")
    machine_a = make_study(root)
    runs = collate.load_runs(machine_a, root / "machine_b")
    return {"root": root, "a": machine_a, "b": root / "machine_b", "runs": runs, "summary": collate.summarise(runs)}

"""The documentation states what the code does: every run-record field is on docs/run-records.md,
and every experiment and profile the registry knows is in the README."""

import dataclasses
from pathlib import Path

import pytest

from convmixer import experiments, records

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def test_every_run_record_field_is_documented():
    page = (ROOT / "docs" / "run-records.md").read_text()
    fields = [f.name for schema in (records.RunRecord, records.Metrics) for f in dataclasses.fields(schema)]
    missing = [name for name in [*fields, *records.HISTORY_COLUMNS] if f"`{name}`" not in page]
    assert not missing, f"docs/run-records.md does not name {missing}"
    assert f"schema version {records.SCHEMA_VERSION}" in page


def test_the_readme_names_every_experiment_and_profile():
    readme = (ROOT / "README.md").read_text()
    for name in [*experiments.experiment_names(), *experiments.available("profiles")]:
        assert f"`{name}`" in readme, name

"""The report's tables written as CSV, Markdown and LaTeX, atomically."""

import os

import pandas as pd
import pytest

from convmixer import records, tables

pytestmark = pytest.mark.unit


def test_tables_are_written_as_csv_markdown_and_latex(study, tmp_path):
    summary = study["summary"][["experiment", "value_label", "n", "test_accuracy_mean", "test_accuracy_std"]]
    written = tables.write_tables({"summary": summary}, tmp_path)
    assert sorted(p.name for p in written) == ["summary.csv", "summary.md", "summary.tex"]
    assert pd.read_csv(tmp_path / "summary.csv")["test_accuracy_mean"].iloc[0] == pytest.approx(60.0)
    markdown = (tmp_path / "summary.md").read_text()
    assert "| baseline" in markdown and "60.00" in markdown and "14.14" in markdown
    latex = (tmp_path / "summary.tex").read_text()
    assert "\\toprule" in latex and "\\bottomrule" in latex and "patch\\_sweep" in latex
    assert sorted(os.listdir(tmp_path)) == ["summary.csv", "summary.md", "summary.tex"]  # no temp files


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = records.write_atomic(tmp_path / "table.csv", "old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        records.write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["table.csv"]

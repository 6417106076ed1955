"""The report's tables written as CSV, Markdown and LaTeX, atomically."""

import os

import pandas as pd
import pytest

from convmixer.report import claims, published, tables

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


def test_written_tables_hide_empty_columns_and_round_the_csv_as_shown(tmp_path):
    table = pd.DataFrame({"run": ["a", "b"], "acc": [61.23456, 7.0], "never": [None, None], "big": [123456789.0, 1.5]})
    tables.write_tables({"t": table}, tmp_path)
    csv = pd.read_csv(tmp_path / "t.csv")
    assert list(csv.columns) == ["run", "acc", "never", "big"]  # every column, for machines
    assert csv["acc"].tolist() == [61.23, 7.0] and csv["big"].tolist() == [123000000.0, 1.5]
    markdown = (tmp_path / "t.md").read_text()
    assert "never" not in markdown and "61.23" in markdown and "1.23e+08" in markdown
    assert "never" not in (tmp_path / "t.tex").read_text()


def test_the_provenance_and_unfinished_tables_name_folders_relative_to_the_project(tmp_path):
    from convmixer import paths

    runs = pd.DataFrame(
        {
            "experiment": ["baseline"],
            "run_name": ["baseline_seed0"],
            "status": ["complete"],
            "test_accuracy": [0.5],
            "error": [None],
            "run_dir": [str(paths.PROJECT_ROOT / "reports/cpu/runs/baseline/baseline_seed0")],
            "source": [str(paths.PROJECT_ROOT / "reports/cpu/runs")],
            "trial_id": ["x"],
            "reused_from": [None],
            "git_commit": ["c"],
            "backend": ["tensorflow"],
            "device": ["CPU"],
            "packages": [""],
            "duplicates": [""],
        }
    )
    row = tables.provenance_table(runs).iloc[0]
    assert (row["folder"], row["run directory"]) == ("reports/cpu/runs", "baseline/baseline_seed0")
    stopped = runs[["experiment", "run_name", "run_dir", "source"]].assign(epochs_done=3, epochs=10)
    unfinished = tables.unfinished_table(stopped).iloc[0]
    assert unfinished.to_dict() == {
        "experiment": "baseline",
        "run": "baseline_seed0",
        "epochs finished": 3,
        "epochs planned": 10,
        "run directory": "baseline/baseline_seed0",
        "folder": "reports/cpu/runs",
    }


def test_the_claims_table_sets_what_the_sources_found_beside_what_these_runs_found(study):
    table = tables.claims_table(claims.claims(study["summary"]), published.load_published())
    assert list(table.columns) == [
        "claim",
        "definition",
        "sources",
        "the sources found",
        "profile",
        "dataset",
        "scale",
        "effect (points)",
        "95% interval",
        "test",
        "p",
        "p (Holm)",
        "detectable effect (80% power)",
        "verdict",
        "these runs found",
    ]
    adamw = table[table["claim"].str.startswith("AdamW improves accuracy")].iloc[0]
    # 61 ± 1.41 against 51 ± 1.41, two seeds each: Welch's t on 2 df
    assert adamw["effect (points)"] == pytest.approx(10.0) and adamw["test"] == "Welch's t (2 and 2 seeds)"
    low, high = (float(x) for x in adamw["95% interval"].strip("[]").split(", "))
    assert low < 10 < high and adamw["p (Holm)"] >= adamw["p"]
    assert adamw["the sources found"].endswith("val accuracy: adam 67.6%, adamw 76.4%")
    assert "test_accuracy optimizer=adamw: 61.00 ± 1.41 (n=2)" in adamw["these runs found"]

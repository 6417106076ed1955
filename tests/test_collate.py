"""Collation of hand-made run records: loading, summaries, published matching, claims, tables."""

import math
import os

import pandas as pd
import pytest
from records_factory import make_notebook, make_run, make_study

from convmixer import collate


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    machine_a = make_study(root)
    runs = collate.load_runs(machine_a, root / "machine_b")
    return {"root": root, "a": machine_a, "b": root / "machine_b", "runs": runs,
            "summary": collate.summarise(runs)}


def row(table, **where):
    mask = pd.Series(True, index=table.index)
    for key, value in where.items():
        mask &= table[key] == value
    assert mask.sum() == 1, f"expected one row for {where}, found {mask.sum()}"
    return table[mask].iloc[0]


def test_unfinished_runs_are_left_out_and_listed(study):
    assert "baseline_seed2" not in set(study["runs"]["run_name"])
    unfinished = collate.unfinished_runs(study["a"], study["b"])
    assert list(unfinished["run_name"]) == ["baseline_seed2"]


def test_failed_run_is_kept_with_its_error_and_counted_apart(study):
    failed = row(study["runs"], run_name="baseline_seed3")
    assert failed["status"] == "failed"
    assert failed["error"].startswith("ResourceExhaustedError")
    baseline = row(study["summary"], experiment="baseline")
    assert (baseline["n"], baseline["n_failed"]) == (2, 1)


def test_mean_and_std_over_seeds_in_percent(study):
    baseline = row(study["summary"], experiment="baseline")
    assert baseline["test_accuracy_mean"] == pytest.approx(60.0)
    assert baseline["test_accuracy_std"] == pytest.approx(14.1421, abs=1e-4)  # sample std of 50 and 70
    adamw = row(study["summary"], experiment="adamw", value_label="adamw")
    assert (adamw["n"], adamw["test_accuracy_mean"]) == (2, pytest.approx(61.0))
    assert adamw["gap_mean"] == pytest.approx(19.0)  # 80 train - 61 test
    single = row(study["summary"], experiment="patch_sweep", value_label="1")
    assert single["n"] == 1 and math.isnan(single["test_accuracy_std"])


def test_test_time_flip_is_summarised_where_recorded(tmp_path):
    make_run(tmp_path, "baseline", seed=0, test_accuracy_flip=0.6)
    make_run(tmp_path, "baseline", seed=1, test_accuracy_flip=0.8)
    make_run(tmp_path, "adamw", "optimizer", "adam")  # a record from before test_accuracy_flip
    summary = collate.summarise(collate.load_runs(tmp_path))
    assert row(summary, experiment="baseline")["test_accuracy_flip_mean"] == pytest.approx(70.0)
    assert math.isnan(row(summary, experiment="adamw")["test_accuracy_flip_mean"])


def test_a_run_copied_to_two_machines_counts_once(study):
    runs = study["runs"]
    copies = runs[runs["run_name"] == "baseline_seed1"]
    assert len(copies) == 1
    kept = copies.iloc[0]
    assert kept["source"] == str(study["a"])  # the earlier folder
    assert kept["duplicates"] == str(study["b"] / "runs" / "baseline" / "baseline_seed1")
    patch = row(runs, run_name="patch_size=1_seed0")
    assert (patch["source"], patch["device"]) == (str(study["b"]), "GPU: NVIDIA test card")
    assert len(runs) == 15


def test_a_complete_copy_wins_over_a_failed_one(tmp_path):
    make_run(tmp_path / "a", "baseline", status="failed", error="killed")
    make_run(tmp_path / "b", "baseline", test_accuracy=0.8)
    runs = collate.load_runs(tmp_path / "a", tmp_path / "b")
    assert list(runs["status"]) == ["complete"]
    assert runs["source"].iloc[0] == str(tmp_path / "b")


def test_multi_kernel_run_keeps_kernels_and_mixing_weights(study):
    mixed = row(study["runs"], experiment="dynamic_kernel", value_label="3-5")
    assert mixed["kernels"] == "3-5"
    assert mixed["mixing_weights"] == {"block0_depthwise": [0.3, 0.7], "block1_depthwise": [0.6, 0.4]}
    single = row(study["runs"], experiment="dynamic_kernel", value_label="5")
    assert single["kernels"] == "5" and single["mixing_weights"] is None


def test_histories_are_tagged_by_run(study):
    histories = collate.load_histories(study["runs"])
    assert len(histories) == study["runs"]["epochs"].sum()
    run = histories[histories["run_name"] == "optimizer=adamw_seed1"]
    assert list(run["epoch"]) == [1, 2] and set(run["experiment"]) == {"adamw"}
    assert run["accuracy"].iloc[-1] == pytest.approx(0.8)


def test_notebook_metadata_gives_wall_time_per_experiment(study, tmp_path):
    notebooks = collate.load_notebooks(study["a"] / "notebooks", tmp_path / "missing")
    by_experiment = notebooks.set_index("experiment")
    assert by_experiment["duration"].to_dict() == {"baseline": 120.0, "kernel_sweep": 60.0}
    assert by_experiment["exception"].to_dict() == {"baseline": False, "kernel_sweep": True}
    make_notebook(tmp_path, "report", duration=5.0)
    assert collate.load_notebooks(tmp_path / "notebooks").empty  # the report is not an experiment
    requirements = collate.compute_requirements(study["runs"], notebooks)
    baseline = row(requirements, experiment="baseline")
    assert baseline["notebook_hours"] == pytest.approx(120 / 3600)
    assert baseline["train_hours"] == pytest.approx(20 / 3600)  # the failed run has no training time
    patch = row(requirements, experiment="patch_sweep")
    assert patch["accelerator_hours"] == pytest.approx(70 / 3600) and patch["cpu_hours"] == 0


def test_published_numbers_are_matched_by_setting(study):
    published = collate.load_published()
    comparison = collate.compare_with_published(study["summary"], published)
    keras = row(comparison, source="keras_example")
    assert (keras["accuracy_published"], keras["accuracy_reproduced"]) == (83.7, pytest.approx(60.0))
    assert keras["accuracy_diff"] == pytest.approx(-23.7)
    assert (keras["n"], keras["params_published"], keras["params_diff"]) == (2, 594186, 0)
    assert keras["accuracy_std"] == pytest.approx(14.1421, abs=1e-4)
    # Unmatched published numbers stay, with the reproduced side empty.
    paper = comparison[comparison["source"] == "trockman2022"]
    assert len(paper) == 6 and paper["n"].eq(0).all() and paper["accuracy_reproduced"].isna().all()
    assert comparison["experiment"].isna().sum() == 3  # the ImageNet numbers belong to no experiment


def test_unstated_epochs_match_any_but_a_stated_optimizer_must_agree(tmp_path):
    columbia = {"dataset": "tiny-imagenet", "image_size": 56, "width": 512, "depth": 8, "kernel_size": 9,
                "epochs": 1}
    make_run(tmp_path, "patch_sweep", "patch_size", 7, test_accuracy=0.30, optimizer="adam", **columbia)
    make_run(tmp_path, "patch_sweep", "patch_size", 14, test_accuracy=0.20, optimizer="adamw", **columbia)
    summary = collate.summarise(collate.load_runs(tmp_path))
    comparison = collate.compare_with_published(summary, collate.load_published())
    columbia_rows = comparison[comparison["source"].eq("columbia_e4040")
                               & comparison["experiment"].eq("patch_sweep")]
    p7 = row(columbia_rows, patch_size=7)
    assert (p7["accuracy_reproduced"], p7["epochs_reproduced"]) == (pytest.approx(30.0), 1)
    assert row(columbia_rows, patch_size=14)["n"] == 0  # Columbia used Adam, this run AdamW


def test_bad_published_entry_is_one_clear_line(tmp_path):
    path = tmp_path / "published.yaml"
    path.write_text("metrics: {test_accuracy: test_accuracy}\nsources: {x: {citation: X}}\n"
                    "results:\n  - {source: x, dataset: cifar10, width: 1, depth: 1, patch_size: 1,"
                    " kernel_size: 3, metric: top5, value: 1}\n")
    with pytest.raises(collate.CollateError, match=r"results\[0\]: unknown metric 'top5'"):
        collate.load_published(path)


def test_unreadable_records_are_one_clear_line(tmp_path):
    run_dir = make_run(tmp_path, "baseline")
    (run_dir / "metrics.json").write_text("{not json")
    with pytest.raises(collate.CollateError, match=r"metrics.json: malformed JSON at line 1"):
        collate.load_runs(tmp_path)
    with pytest.raises(collate.CollateError, match="no such runs folder"):
        collate.load_runs(tmp_path / "nowhere")


def test_claim_verdicts_follow_the_documented_rule(study):
    claims = collate.claims(study["summary"])
    verdict = dict(zip(claims["claim"], claims["verdict"]))
    assert verdict["AdamW improves validation accuracy over Adam"] == "supported"  # +10 > 2 SE = 2.83
    assert verdict["Smaller patches improve accuracy at a higher cost"] == "supported"  # +16 pp and 4x time
    assert verdict["Larger kernels improve accuracy"] == "inconclusive"  # +0.5 pp with single seeds
    assert verdict["The dynamic (multi-kernel) depthwise layer beats the best single kernel"] == "supported"
    k10 = row(claims, claim="k=10 is the best kernel size among {2, 6, 10, 14}")
    assert k10["verdict"] == "inconclusive" and "no runs for '10'" in k10["evidence"]
    assert len(claims) == len(collate.CLAIMS)


def test_compare_means_uses_two_standard_errors_or_a_single_seed_margin():
    def side(mean, std, n):
        return {"test_accuracy_mean": mean, "test_accuracy_std": std, "n": n}
    verdict, diff, margin = collate.compare_means(side(50, 1, 3), side(60, 1, 3), "test_accuracy")
    assert (verdict, diff, margin) == ("not supported", -10, pytest.approx(2 * math.sqrt(2 / 3)))
    assert collate.compare_means(side(61, 4, 2), side(60, 4, 2), "test_accuracy")[0] == "inconclusive"
    single_seed = collate.compare_means(side(62, math.nan, 1), side(60, math.nan, 1), "test_accuracy")
    assert single_seed[0] == "supported"  # +2 > 1 percentage point
    within = collate.compare_means(side(60.5, 0, 1), side(60, 0, 1), "test_accuracy", "not_higher")
    assert within[0] == "supported"
    assert collate.combine_verdicts(["supported", "inconclusive"]) == "inconclusive"
    assert collate.combine_verdicts(["supported", "not supported"]) == "not supported"


def test_claims_without_runs_are_inconclusive(study):
    only_baseline = study["summary"][study["summary"]["experiment"] == "baseline"]
    claims = collate.claims(only_baseline)
    assert set(claims["verdict"]) == {"inconclusive"}
    assert claims["evidence"].str.startswith("no complete runs of").all()


def test_tables_are_written_as_csv_markdown_and_latex(study, tmp_path):
    summary = study["summary"][["experiment", "value_label", "n", "test_accuracy_mean", "test_accuracy_std"]]
    paths = collate.write_tables({"summary": summary}, tmp_path)
    assert sorted(p.name for p in paths) == ["summary.csv", "summary.md", "summary.tex"]
    assert pd.read_csv(tmp_path / "summary.csv")["test_accuracy_mean"].iloc[0] == pytest.approx(60.0)
    markdown = (tmp_path / "summary.md").read_text()
    assert "| baseline" in markdown and "60.00" in markdown and "14.14" in markdown
    latex = (tmp_path / "summary.tex").read_text()
    assert "\\toprule" in latex and "\\bottomrule" in latex and "patch\\_sweep" in latex
    assert sorted(os.listdir(tmp_path)) == ["summary.csv", "summary.md", "summary.tex"]  # no temp files


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = collate.write_atomic(tmp_path / "table.csv", "old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        collate.write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["table.csv"]

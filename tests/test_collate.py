"""Collation of hand-made run records: loading, duplicates, summaries, compute, notebooks."""

import math
from pathlib import Path

import pytest
from records_factory import make_notebook, make_run, row

from convmixer.report import collate

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]


def test_unfinished_runs_are_left_out_and_listed(study):
    assert "baseline_seed2" not in set(study["runs"]["run_name"])
    unfinished = collate.unfinished_runs(study["a"], study["b"])
    assert list(unfinished["run_name"]) == ["baseline_seed2"]
    assert unfinished[["epochs_done", "epochs"]].values.tolist() == [[5, 10]]  # its history stops halfway


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


def test_unreadable_records_are_one_clear_line(tmp_path):
    run_dir = make_run(tmp_path, "baseline")
    (run_dir / "metrics.json").write_text("{not json")
    with pytest.raises(collate.CollateError, match=r"metrics.json: malformed JSON at line 1"):
        collate.load_runs(tmp_path)
    with pytest.raises(collate.CollateError, match="no such runs folder"):
        collate.load_runs(tmp_path / "nowhere")


def test_committed_records_of_the_older_schema_still_read():
    """reports/cpu/runs was written before records.py owned the schema (config_hash, no trial_id)."""
    all_runs = collate.load_runs(REPO / "reports" / "cpu" / "runs")
    assert set(all_runs["status"]) == {"complete"}
    # Tested on the 2,000-image split of their day, but the Keras example and the official recipe,
    # retrained exactly (issue 33), on all 10,000.
    retrained = all_runs["run_name"].str.match(r"setting=(keras-example|official-cifar10)_seed")
    assert (
        all_runs.loc[~retrained, "test_images"].eq(2000).all()
        and all_runs.loc[retrained, "test_images"].eq(10000).all()
    )
    assert set(all_runs.loc[retrained, "run_name"]) == {
        *(f"setting=keras-example_seed{seed}" for seed in (0, 1, 2)),
        "setting=official-cifar10_seed0",
    }
    runs = all_runs[all_runs["schema_version"] == 1]  # the published settings and baseline came later
    assert len(runs) == 18
    assert set(runs["backend"]) == {"tensorflow"}  # the only backend before schema 3
    # The same trial trained by three notebooks: one identity, bit-identical results.
    same = runs[runs["trial_id"] == row(runs, run_name="kernel_size=9_seed0")["trial_id"]]
    assert sorted(same["experiment"]) == ["dynamic_kernel", "kernel_sweep", "patch_sweep"]
    assert same["test_accuracy"].nunique() == 1
    # kernel_sizes: [9] is kernel_size 9: the dynamic experiment's single-kernel rows are plain k=9.
    single = runs[(runs["experiment"] == "dynamic_kernel") & (runs["value_label"] == "9")]
    assert single["kernel_sizes"].isna().all() and single["kernel_size"].eq(9).all()
    assert len(collate.summarise(runs)) == 10
    # Old and new records summarise together: the baseline (schema 3) beside the sweeps.
    summary = collate.summarise(all_runs)
    assert row(summary, experiment="baseline")["test_accuracy_mean"] == pytest.approx(86.575)
    assert len(summary) == 14  # with the Keras example and the official recipe, retrained exactly (issue 33)


def test_reused_runs_count_as_results_but_not_as_training_time(tmp_path):
    make_run(tmp_path, "kernel_sweep", "kernel_size", 9, train_seconds=30.0)
    make_run(
        tmp_path,
        "patch_sweep",
        "patch_size",
        2,
        kernel_size=9,
        train_seconds=30.0,
        reused_from="kernel_sweep/kernel_size=9_seed0",
    )
    runs = collate.load_runs(tmp_path)
    summary = collate.summarise(runs)
    assert row(summary, experiment="patch_sweep")[["n", "n_reused"]].tolist() == [1, 1]
    requirements = collate.compute_requirements(runs, collate.load_notebooks(tmp_path / "notebooks"))
    assert row(requirements, experiment="patch_sweep")[["runs", "reused", "train_hours"]].tolist() == [1, 1, 0]
    assert row(requirements, experiment="kernel_sweep")["train_hours"] == pytest.approx(30 / 3600)


def test_the_backend_is_provenance_and_does_not_split_a_setting(tmp_path):
    """Seeds trained on TensorFlow and on JAX are one setting, as seeds on two devices are."""
    make_run(tmp_path, "adamw", "optimizer", "adam", seed=0, backend="tensorflow", test_accuracy=0.5)
    make_run(tmp_path, "adamw", "optimizer", "adam", seed=1, backend="jax", test_accuracy=0.6)
    runs = collate.load_runs(tmp_path / "runs")
    assert sorted(runs["backend"]) == ["jax", "tensorflow"]
    [summary] = collate.summarise(runs).to_dict("records")
    assert summary["n"] == 2 and summary["test_accuracy_mean"] == pytest.approx(55.0)


def test_training_flops_are_counted_from_the_architecture_and_do_not_vary_with_the_clock(tmp_path):
    # ConvMixer-16/2, p=2, k=5 on 32x32 images, 10 classes: 16x16 tokens; patch embedding,
    # depthwise, pointwise and classifier multiply-accumulates, x6 for training (x2 FLOPs per MAC,
    # x3 forward and backward), x 100 training images x 2 epochs.
    macs = 256 * 16 * 3 * 2 * 2 + 2 * 256 * 16 * 5 * 5 + 2 * 256 * 16 * 16 + 16 * 10
    make_run(tmp_path, "adamw", "optimizer", "adam", seed=0, train_seconds=209.0)
    make_run(tmp_path, "adamw", "optimizer", "adam", seed=1, train_seconds=278.0)
    make_run(tmp_path, "dynamic_kernel", "kernel_sizes", [3, 5], optimizer="adam")
    make_run(tmp_path, "dynamic_kernel", "kernel_sizes", [3, 5], seed=1, optimizer="adam", mixing="parallel")
    runs = collate.load_runs(tmp_path)
    assert row(runs, run_name="optimizer=adam_seed0")["train_flops"] == 6 * macs * 100 * 2
    adam = row(collate.summarise(runs), experiment="adamw")
    assert (adam["train_flops_mean"], adam["train_flops_std"]) == (6 * macs * 100 * 2, 0)
    assert adam["train_seconds_std"] > 0  # the wall time stays in the summary
    # Merged, the mix of k=3 and k=5 convolves once with a 5x5 kernel: the cost of k=5.
    merged = row(runs, experiment="dynamic_kernel", mixing="merged")
    assert merged["train_flops"] == 6 * macs * 100 * 2
    # In parallel, it convolves with each: the 3x3 kernel's taps come on top.
    parallel = row(runs, experiment="dynamic_kernel", mixing="parallel")
    assert parallel["train_flops"] - merged["train_flops"] == 6 * (2 * 256 * 16 * 3 * 3) * 100 * 2


def test_progressive_resizing_counts_each_epoch_at_its_image_size(tmp_path):
    """A run whose first epochs trained on 16x16 images: its FLOPs count those epochs at 8x8
    tokens, and its steady training time takes the median epoch of each image size."""

    def macs(tokens):  # ConvMixer-16/2, p=2, k=5, as above
        return tokens * 16 * 3 * 2 * 2 + 2 * tokens * 16 * 5 * 5 + 2 * tokens * 16 * 16 + 16 * 10

    make_run(tmp_path, "baseline", epochs=4, patch_size=2, kernel_size=5, epoch_image_sizes=[16, 16],
             epoch_seconds=[10.0, 12.0, 40.0, 48.0])  # fmt: skip
    [run] = collate.load_runs(tmp_path).to_dict("records")
    assert run["train_flops"] == 6 * (2 * macs(64) + 2 * macs(256)) * 100
    assert run["steady_train_seconds"] == pytest.approx(2 * 11.0 + 2 * 44.0)


def test_settings_that_differ_only_in_the_kernel_share_an_identity_without_it(study):
    summary = study["summary"]
    sweep = summary[summary["experiment"] == "kernel_sweep"]
    dynamic = summary[summary["experiment"] == "dynamic_kernel"]
    assert sweep["setting_id"].nunique() == 3 and sweep["setting_id_without_kernel"].nunique() == 1
    assert set(dynamic["setting_id_without_kernel"]) == set(sweep["setting_id_without_kernel"])
    patches = summary[summary["experiment"] == "patch_sweep"]
    by_patch = dict(zip(patches["value_label"], patches["setting_id_without_kernel"]))
    assert by_patch["2"] in set(sweep["setting_id_without_kernel"])  # the sweeps' default patch size
    assert len({by_patch["1"], by_patch["2"], by_patch["4"]}) == 3


def test_mixing_weights_are_summarised_by_their_range(study):
    mixed = row(study["summary"], experiment="dynamic_kernel", value_label="3-5")
    assert (mixed["mixing_weight_min"], mixed["mixing_weight_max"]) == (0.3, 0.7)
    single = row(study["summary"], experiment="dynamic_kernel", value_label="5")
    assert math.isnan(single["mixing_weight_min"]) and math.isnan(single["mixing_weight_max"])


def test_a_record_says_dirty_when_the_code_that_ran_differs_from_its_commit(tmp_path, monkeypatch):
    """Outputs written while runs go on (a report, a results file) leave the commit clean."""
    import subprocess

    from convmixer import records

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for path in ("convmixer/train.py", "reports/cpu/index.html", "README.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("first\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    monkeypatch.setattr(records, "PROJECT_ROOT", tmp_path)
    sha = records.git_commit()
    assert len(sha) == 40
    (tmp_path / "reports/cpu/index.html").write_text("rebuilt\n")
    (tmp_path / "README.md").write_text("edited\n")
    assert records.git_commit() == sha
    (tmp_path / "convmixer/train.py").write_text("edited\n")
    assert records.git_commit() == sha + "+dirty"

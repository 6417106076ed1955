"""The article's sections (introduction, methods, reproduction, discussion, references),
generated from hand-made run records and params/published.yaml."""

import dataclasses

import pandas as pd
import pytest
from records_factory import make_study

from convmixer.config import TrialConfig
from convmixer.report import article, claims, evidence, published
from convmixer.report.published import claims_not_tested, sources_table
from convmixer.study import experiments

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("article")
    machine_a = make_study(root)
    return evidence.load_study("smoke", [machine_a, root / "machine_b"])


def test_the_introduction_lists_every_claim_with_its_verdict_and_the_untested_ones(study):
    text = article.introduction_markdown(study)
    for claim, verdicts in study.claims.groupby("claim")["verdict"]:
        assert f"{claim} (" in text and f"{'; '.join(sorted(set(verdicts)))} in this report" in text
    untested = claims_not_tested()
    assert len(untested) >= 2
    for entry in untested:
        assert " ".join(entry["claim"].split()).rstrip(".") in text
    assert text.count("not tested: ") == len(untested)


def test_the_methods_table_gives_data_sizes_and_hyperparameters_of_complete_runs(study):
    table = article.methods_table(study).set_index("experiment")
    complete = study.runs[study.runs["status"] == "complete"]
    assert sorted(table.index) == sorted(complete["experiment"].unique())
    baseline = table.loc["baseline"]
    # Seeds 0 and 1 completed (seed 1 twice, on two machines: counted once); 2 unfinished, 3 failed.
    assert baseline["seeds"] == "0; 1"
    assert baseline["model"] == "ConvMixer-256/8, p=2, k=5" and baseline["epochs"] == "10"
    defaults = TrialConfig()
    assert baseline["images (train / val / test)"] == f"100 / {defaults.val_size:,} / 40"
    assert baseline["optimizer"] == f"adamw, lr {defaults.learning_rate:g}, weight decay {defaults.weight_decay:g}"
    assert ("horizontal flip" in baseline["augmentation"]) == defaults.flip
    # Adam takes no weight decay (train.make_optimizer), so none is listed for it.
    lr, decay = f"lr {defaults.learning_rate:g}", f"weight decay {defaults.weight_decay:g}"
    assert table.loc["adamw", "optimizer"] == f"adam, {lr}; adamw, {lr}, {decay}"
    assert table.loc["patch_sweep", "model"].count("ConvMixer-16/2") == 3  # three patch sizes, listed together


def test_the_methods_table_reads_runs_at_the_native_image_size_beside_resized_ones(tmp_path):
    """A native-size run records image_size null; beside a resized run pandas reads it as NaN
    (tiny-cpu's patch sweep: p=4 at 64, native, and p=11 at 55)."""
    from records_factory import make_run

    make_run(tmp_path, "patch_sweep", "patch_size", 2, test_accuracy=0.5)
    make_run(tmp_path, "patch_sweep", "patch_size", 4, test_accuracy=0.6, image_size=36)
    table = article.methods_table(evidence.load_study("smoke", [tmp_path / "runs"])).set_index("experiment")
    assert table.loc["patch_sweep", "model"] == "ConvMixer-16/2, p=2, k=5; ConvMixer-16/2, p=4, k=5"
    assert "horizontal flip" in table.loc["patch_sweep", "augmentation"]


def test_differences_name_each_source_and_our_setting(study):
    text = article.methods_markdown(study)
    # The profile says what it runs and why at its scale; the report repeats it first.
    assert text.startswith(f"**Profile `smoke`.** {experiments.profile_description('smoke')}")
    assert experiments.profile_description("smoke").startswith("A tiny ConvMixer (32/2, 2 epochs) on the 3,500 real")
    line = next(line for line in text.splitlines() if line.startswith("* `baseline`"))
    assert "Keras example: cifar10, ConvMixer-256/8, 10 epochs, 45,000 training images" in line
    assert "Ours: cifar10, ConvMixer-256/8, 10 epochs, 100 training and 40 test images" in line


def test_reproducing_the_original_counts_published_numbers_once(study):
    text = article.reproduction_markdown(study)
    # Only the Keras example's setting was run; the other numbers are counted once each,
    # even those listed under two experiments.
    numbers = study.comparison.drop_duplicates(
        subset=["source", "metric", "accuracy_published", "kernels", "patch_size", "dataset", "epochs"]
    )
    assert text.startswith("1 published number(s) have runs at exactly their setting")
    assert f"The other {len(numbers) - 1} published numbers have no run" in text
    # What they would cost here, per dataset, from the settings' FLOPs (Columbia's epochs are unstated).
    unrun = numbers[numbers["n"] == 0].dropna(subset=["hours_here"])
    cifar = unrun[unrun["dataset"] == "cifar10"].drop_duplicates(
        ["model", "patch_size", "kernels", "optimizer", "epochs"]
    )
    assert f"cifar10: {len(cifar)} setting(s), {cifar['hours_here'].sum():,.0f} h in all" in text
    assert "tiny-imagenet:" not in text


def test_the_discussion_states_a_partial_replication_and_its_limits(study):
    text = article.discussion_markdown(study)
    tested = study.claims.loc[study.claims["verdict"] != claims.NOT_TESTED, "claim"].nunique()
    assert text.startswith("**Partial replication.** 1 of ")
    assert f"{tested} of the experiments' {study.claims['claim'].nunique()} claims were tested" in text
    assert "Test splits: 40 images against the published 10,000" in text
    single = int((study.summary["n"] == 1).sum())
    assert f"Seeds: {single} of {len(study.summary)} settings have one seed" in text
    assert "The suite" not in text and " now " not in text  # interpretation, not the suite's history


def test_the_discussion_says_per_source_what_agrees_what_is_undecided_and_why_and_what_to_run_next(study):
    text = article.discussion_markdown(study)
    labels = published.source_labels()
    tested = study.claims[study.claims["verdict"] != claims.NOT_TESTED]
    for keys in tested["sources"]:
        for key in keys:
            assert f"**{labels[key][:1].upper() + labels[key][1:]}.**" in text
    undecided = tested[tested["verdict"] == claims.INCONCLUSIVE]
    for row in undecided.to_dict("records"):
        if pd.notna(row["detectable"]):
            assert f"these runs detect {row['detectable']:.2f} points" in text
    unmatched = study.comparison[(study.comparison["n"] == 0) & study.comparison["hours_here"].notna()]
    if len(unmatched):
        assert "**What to run next.**" in text and "cheapest first" in text


def test_the_methodology_names_each_package_once_with_every_version_the_runs_used(study):
    runs = study.runs.copy()
    runs.loc[runs.index[0], "packages"] = "tensorflow 2.21.0, keras 3.16.0"  # one run from a later install
    text = article.summary_markdown(dataclasses.replace(study, runs=runs))
    assert "(tensorflow 2.21.0, keras 3.15.1 or 3.16.0)" in text


def test_references_are_numbered_with_every_source():
    lines = article.references_markdown().splitlines()
    sources = sources_table()
    assert len(lines) == len(sources)
    for number, (line, citation) in enumerate(zip(lines, sources["citation"]), start=1):
        assert line.startswith(f"{number}. {citation}")


def test_an_epoch_that_ran_paused_is_named_with_what_it_adds_to_the_training_time(study):
    histories = study.histories.copy()
    assert "Wall times:" not in article.discussion_markdown(study)  # the hand-made epochs are even
    run = histories["run_dir"] == histories.groupby("run_dir")["epoch"].count().idxmax()  # a 10-epoch trial
    median = histories.loc[run, "epoch_seconds"].astype(float).median()
    paused = histories.index[run][1]
    histories.loc[paused, "epoch_seconds"] = median + 5000.0  # a run suspended for 5,000 s in its 2nd epoch
    # A trial reused by another experiment carries a copy of the history: the pause counts once.
    source = study.runs[study.runs["run_dir"] == histories.loc[paused, "run_dir"]]
    runs = pd.concat([study.runs, source.assign(run_dir="elsewhere", reused_from="baseline/x")])
    histories = pd.concat([histories, histories[run].assign(run_dir="elsewhere")], ignore_index=True)
    text = article.discussion_markdown(dataclasses.replace(study, histories=histories, runs=runs))
    row = histories.loc[paused]
    assert f"Wall times: epoch 2 of {row['experiment']}/{row['run_name']}: {median + 5000:,.0f} s" in text
    assert "high by about 5,000 s in all" in text and text.count("epoch 2 of") == 1

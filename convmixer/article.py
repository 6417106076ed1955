"""The report's prose, every number in it computed from the collated study."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from . import claims
from .published import source_labels
from .tables import hours_text, setting_text

if TYPE_CHECKING:
    from .report import Study


def summary_markdown(study: Study) -> str:
    """The ReScience reproducibility summary; every number in it is computed from the records."""
    runs, claims = study.runs, study.claims
    complete = runs[runs["status"] == "complete"]
    failed = runs[runs["status"] == "failed"]
    verdicts = claims["verdict"].value_counts()
    matched = study.comparison[study.comparison["n"] > 0]
    published_count = len(
        study.published.drop_duplicates(
            subset=["source", "metric", "value", "kernels", "patch_size", "dataset", "epochs"]
        )
    )
    labels = source_labels()
    claim_sources = sorted({labels.get(s, s) for keys in claims["sources"] for s in keys})
    scope = (
        "We test whether ConvMixer's published claims and numbers hold when the model is "
        f"re-implemented and retrained: {claims['claim'].nunique()} claims from the "
        f"{', '.join(claim_sources)}, and {published_count} published accuracies."
    )
    methodology = (
        f"No finished run was found in {', '.join(map(str, study.runs_dirs))}."
        if runs.empty
        else (
            f"ConvMixer re-implemented in Keras 3 ({_packages(runs)}), trained from scratch by the suite's "
            f"experiment notebooks. This report covers profile `{study.profile}`: {len(complete)} complete runs, "
            f"{len(failed)} failed and {len(study.unfinished)} unfinished, in "
            f"{runs['experiment'].nunique()} experiments ({', '.join(runs['experiment'].unique())}); "
            f"{_settings(complete)}. Keras backend: {_join(runs['backend'])}. Hardware: {_join(runs['device'])}. "
            f"Training took "
            f"{hours_text(study.requirements['train_hours'].sum())} in total."
        )
    )
    results = results_text(study, verdicts, matched)
    return "\n\n".join(
        [
            f"**Scope of reproducibility.** {scope}",
            f"**Methodology.** {methodology}",
            f"**Results.** {results}",
            f"**What was easy.** {_easy_text(study, complete)}",
            f"**What was difficult.** {_difficult_text(study, failed, published_count)}",
            "**Communication with original authors.** None: the suite relies only on the published "
            "paper, the official repositories and the two reproduction reports.",
        ]
    )


def results_text(study: Study, verdicts: pd.Series, matched: pd.DataFrame) -> str:
    counts = ", ".join(
        f"{verdicts.get(v, 0)} {v}"
        for v in (claims.SUPPORTED, claims.NOT_SUPPORTED, claims.INCONCLUSIVE, claims.NOT_TESTED)
    )
    text = f"Of {int(verdicts.sum())} claim checks, {counts} (rule below the claims table)."
    if matched.empty:
        return text + " No run has the setting of a published number, so no accuracy is compared directly."
    compared = "; ".join(_comparison(row) for row in matched.to_dict("records"))
    return text + (
        f" {len(matched)} published number(s) have runs with the same setting: {compared} "
        "(verdict rule beside the published numbers)."
    )


def _comparison(row: dict) -> str:
    spread = "" if pd.isna(row["accuracy_std"]) else f" ± {row['accuracy_std']:.2f}"
    return (
        f"{_setting_name(row)}: {row['accuracy_published']:.2f}% published, {row['accuracy_reproduced']:.2f}%"
        f"{spread} reproduced (n={row['n']}, {row['test_images']} test images), "
        f"{row['accuracy_diff']:+.2f} points, {row['verdict']}"
    )


def _easy_text(study: Study, complete: pd.DataFrame) -> str:
    finished = len(study.runs)
    if not finished:
        return "Nothing yet: no run has finished."
    clean = f"{len(complete)} of {finished} finished runs completed without error"
    notebooks = study.notebooks
    clean_notebooks = int((~notebooks["exception"]).sum())
    ran = (
        f"; {clean_notebooks} of {len(notebooks)} experiment notebooks ran end to end under papermill"
        if len(notebooks)
        else ""
    )
    return (
        f"{clean}{ran}. Every run left a self-describing record (configuration, history, metrics), so "
        f"this report was rebuilt from {len(study.runs_dirs)} run folder(s) alone, "
        f"{_duplicates_text(study.runs)}"
    )


def _duplicates_text(runs: pd.DataFrame) -> str:
    copies = runs["duplicates"].astype(bool).sum() if len(runs) else 0
    reused = int(runs["reused_from"].notna().sum()) if len(runs) else 0
    text = f"with {copies} run(s) found in more than one folder counted once." if copies else "with no run found twice."
    return text + (
        f" {reused} trial(s) were the same trial (same identity) as one trained for another "
        "experiment, and reuse its results instead of training again (see the provenance "
        'table\'s "reused from").'
        if reused
        else ""
    )


def _difficult_text(study: Study, failed: pd.DataFrame, published_count: int) -> str:
    points = []
    if len(failed):
        errors = "; ".join(f"{r.experiment}/{r.run_name}: {_first_line(r.error)}" for r in failed.itertuples())
        points.append(f"{len(failed)} run(s) failed ({errors}).")
    if len(study.unfinished):
        points.append(
            f"{len(study.unfinished)} run(s) never finished: {', '.join(study.unfinished['run_name'].astype(str))}."
        )
    crashed = study.notebooks[study.notebooks["exception"]]
    if len(crashed):
        points.append(f"{len(crashed)} notebook(s) stopped on an exception: {', '.join(crashed['experiment'])}.")
    unmatched_settings = study.comparison[study.comparison["n"] == 0].drop_duplicates(
        subset=["source", "metric", "accuracy_published", "kernels", "patch_size", "dataset", "epochs"]
    )
    if len(unmatched_settings):
        epochs = sorted({int(e) for e in unmatched_settings["epochs"].dropna()})
        datasets = sorted(set(unmatched_settings["dataset"]))
        points.append(
            f"{len(unmatched_settings)} of {published_count} published numbers have no run "
            f"with the same setting (published datasets: {', '.join(datasets)}; epochs: "
            f"{', '.join(map(str, epochs)) or 'not stated'})."
        )
    inconclusive = study.claims[study.claims["verdict"] == claims.INCONCLUSIVE]
    if len(inconclusive):
        single = int((study.summary["n"] == 1).sum())
        points.append(
            f"{len(inconclusive)} claim check(s) stayed inconclusive"
            + (
                f"; {single} of {len(study.summary)} settings have a single seed, too few to separate small "
                "differences."
                if single
                else "."
            )
        )
    return " ".join(points) or "Nothing in the records: no failed or unfinished run and every check decided."


def requirements_markdown(study: Study) -> str:
    req = study.requirements
    wall = req["notebook_hours"].dropna()
    return (
        f"Devices (from each run's config.json): {_join(study.runs['device'])}, "
        f"Keras backend {_join(study.runs['backend'])}. "
        f"Training time summed over runs: {hours_text(req['train_hours'].sum())} "
        f"({hours_text(req['cpu_hours'].sum())} on CPUs, "
        f"{hours_text(req['accelerator_hours'].sum())} on GPUs/TPUs). "
        + (
            f"Notebook wall time (papermill): {hours_text(wall.sum())} over {len(wall)} experiment(s)."
            if len(wall)
            else "No executed experiment notebook with papermill metadata was found."
        )
    )


def _join(values: pd.Series) -> str:
    return "; ".join(sorted(set(values.dropna().astype(str)))) or "not recorded"


def _packages(runs: pd.DataFrame) -> str:
    return _join(runs["packages"].replace("", None))


def _settings(runs: pd.DataFrame) -> str:
    models = {f"ConvMixer-{r.width}/{r.depth} on {r.dataset}, {r.epochs} epochs" for r in runs.itertuples()}
    return "; ".join(sorted(models)) or "no complete run"


def _first_line(text) -> str:
    return str(text).splitlines()[0] if text else "no error text"


def _setting_name(row) -> str:
    return f"{setting_text(dict(row))} ({source_labels().get(row['source'], row['source'])}, {row['experiment']})"

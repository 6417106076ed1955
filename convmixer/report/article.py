"""The report's prose, every number in it computed from the collated study."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pandas as pd

from .. import catalog
from ..study import experiments
from . import claims
from .labels import model_name
from .published import claims_not_tested, source_details, source_labels, sources_table
from .tables import hours_text, interval_text, setting_text, verdict_text

if TYPE_CHECKING:
    from .evidence import Study


def summary_markdown(study: Study) -> str:
    """The ReScience reproducibility summary; every number in it is computed from the records."""
    runs, claims = study.runs, study.claims
    complete = runs[runs["status"] == "complete"]
    failed = runs[runs["status"] == "failed"]
    verdicts = claims["verdict"].value_counts()
    matched = study.comparison[study.comparison["n"] > 0]
    published_count = len(_published_numbers(study.comparison))
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
        for v in (claims.SUPPORTED, claims.CONTRADICTED, claims.INCONCLUSIVE, claims.NOT_TESTED)
    )
    text = f"Of {int(verdicts.sum())} claim checks, {counts} (rule below the claims table)."
    if matched.empty:
        return text + " No run has the setting of a published number, so no accuracy is compared directly."
    compared = "; ".join(_comparison(row) for row in matched.to_dict("records"))
    return text + (
        f" {len(matched)} published number(s) have runs with the same setting: {compared} "
        "(verdict rule beside the published numbers)."
    )


def _interval(row: dict) -> str:
    text = interval_text(row)
    return f" (95% interval {text})" if text else ""


def _comparison(row: dict) -> str:
    spread = "" if pd.isna(row["accuracy_std"]) else f" ± {row['accuracy_std']:.2f}"
    return (
        f"{_setting_name(row)}: {row['accuracy_published']:.2f}% published, {row['accuracy_reproduced']:.2f}%"
        f"{spread} reproduced (n={row['n']}, {row['test_images']} test images), "
        f"{row['accuracy_diff']:+.2f} points{_interval(row)}, {verdict_text(row)}"
    )


def _easy_text(study: Study, complete: pd.DataFrame) -> str:
    finished = len(study.runs)
    if not finished:
        return "Nothing yet: no run has finished."
    clean = f"{len(complete)} of {finished} finished runs completed without error"
    notebooks = study.notebooks
    clean_notebooks = int((~notebooks["exception"] & notebooks["end_time"].notna()).sum())
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
        runs = ", ".join(f"{r.run_name} (epoch {r.epochs_done} of {r.epochs})" for r in study.unfinished.itertuples())
        points.append(f"{len(study.unfinished)} run(s) unfinished when this report was built, so not in it: {runs}.")
    crashed = study.notebooks[study.notebooks["exception"]]
    if len(crashed):
        points.append(f"{len(crashed)} notebook(s) stopped on an exception: {', '.join(crashed['experiment'])}.")
    unmatched = _published_numbers(study.comparison)
    unmatched = unmatched[unmatched["n"] == 0]
    if len(unmatched):
        req = study.requirements
        epochs = sorted({int(e) for e in unmatched["epochs"].dropna()})
        points.insert(
            0,
            f"Compute: {hours_text(req['train_hours'].sum())} of training here "
            f"({hours_text(req['cpu_hours'].sum())} on CPUs, "
            f"{hours_text(req['accelerator_hours'].sum())} on GPUs/TPUs); "
            f"{len(unmatched)} of {published_count} published numbers have no run of their setting here "
            f"(datasets: {', '.join(sorted(set(unmatched['dataset'])))}; epochs: {', '.join(map(str, epochs))}).",
        )
    if unstated := _unstated_text(study):
        points.insert(1, unstated)
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
            f"Wall time of the last execution of each experiment notebook (papermill): {hours_text(wall.sum())} "
            f"over {len(wall)} notebook(s); it is not the training time, which the records give."
            if len(wall)
            else "No executed experiment notebook with papermill metadata was found."
        )
    )


def _join(values: pd.Series) -> str:
    return "; ".join(sorted(set(values.dropna().astype(str)))) or "not recorded"


def _packages(runs: pd.DataFrame) -> str:
    """Each package once, with every version the runs recorded: '..., keras 3.15.1, convmixer 0.1.0 or 0.2.0'."""
    versions: dict[str, set[str]] = {}
    for packages in runs["packages"].dropna():
        for package in filter(None, packages.split(", ")):
            name, _, version = package.partition(" ")
            versions.setdefault(name, set()).add(version)
    return ", ".join(f"{name} {' or '.join(sorted(found))}" for name, found in versions.items()) or "not recorded"


def _settings(runs: pd.DataFrame) -> str:
    models = {f"{model_name(r.width, r.depth)} on {r.dataset}, {r.epochs} epochs" for r in runs.itertuples()}
    return "; ".join(sorted(models)) or "no complete run"


def _first_line(text) -> str:
    return str(text).splitlines()[0] if text else "no error text"


def _setting_name(row) -> str:
    return f"{setting_text(dict(row))} ({source_labels().get(row['source'], row['source'])}, {row['experiment']})"


# ---- the article's sections -----------------------------------------------------------------
MODEL_TEXT = (
    "ConvMixer-h/d works on patches: a p x p convolution with stride p embeds the image into an "
    "h-channel grid of patches; d blocks follow, each a depthwise k x k convolution with a residual "
    "connection and a pointwise (1 x 1) convolution, each convolution followed by GELU and "
    "BatchNorm; global average pooling and a linear layer classify. The dynamic weighted kernel "
    "(Columbia) replaces each depthwise convolution by several kernel sizes mixed with learned "
    "softmax weights; this suite computes it as one merged depthwise convolution."
)


def introduction_markdown(study: Study) -> str:
    """The paper's central claims, those the experiments test with this report's verdicts, and
    those no experiment tests, with the reason (params/published.yaml)."""
    labels = source_labels()

    def cited(keys) -> str:
        return ", ".join(labels.get(k, k) for k in keys)

    tested = [
        f"* {claim} ({cited(group['sources'].iloc[0])}): {_join(group['verdict'])} in this report."
        for claim, group in study.claims.groupby("claim", sort=False)
    ]
    untested = [
        f"* {' '.join(c['claim'].split()).rstrip('.')} ({cited(c['sources'])}): not tested: "
        f"{' '.join(c['reason'].split())}"
        for c in claims_not_tested()
    ]
    return "\n\n".join(
        [
            'ConvMixer (Trockman and Kolter, "Patches Are All You Need?") asks whether the strength of '
            "vision Transformers comes partly from their patch representation, and answers with a plain "
            "convolutional network on patches. Two reproductions revisit it: a ReScience draft on CIFAR-10 "
            "and a Columbia report on Tiny-ImageNet, which adds a multi-kernel depthwise layer. This report "
            f"retrains the models of profile `{study.profile}` and checks the published numbers and claims.",
            "**Claims the experiments test** (verdicts in the Claims section):\n\n" + "\n".join(tested),
            "**Claims this suite does not test:**\n\n" + "\n".join(untested),
        ]
    )


def methods_markdown(study: Study) -> str:
    """The model, then how each experiment's setting differs from the published ones."""
    differences = [_difference_text(study, experiment) for experiment in study.runs["experiment"].unique()]
    profile = experiments.profile_description(study.profile)
    return "\n\n".join(
        [
            *([f"**Profile `{study.profile}`.** {profile}"] if profile else []),
            f"**Model.** {MODEL_TEXT}",
            "**Data and hyperparameters** of every complete run, per experiment (table below; values "
            "that differ between an experiment's runs are listed together). Images are counted from the "
            "run records; the validation images are held out of the training split.",
            "**Differences from the published settings:**\n\n" + "\n".join(f"* {d}" for d in differences if d),
        ]
    )


def methods_table(study: Study) -> pd.DataFrame:
    """Per experiment: data sizes and every hyperparameter of its complete runs."""
    runs = study.runs[study.runs["status"] == "complete"]
    runs = runs.assign(
        images=[
            f"{t:,} / {v:,} / {s:,}" for t, v, s in zip(runs["train_images"], runs["val_size"], runs["test_images"])
        ],
        model=[
            f"{model_name(w, d)}, p={p}, k={k}"
            for w, d, p, k in runs[["width", "depth", "patch_size", "kernels"]].values
        ],
        optimizer_text=[  # train.make_optimizer gives Adam no weight decay, whatever the setting holds
            f"{o}, lr {lr:g}" + (f", weight decay {wd:g}" if o != "adam" and wd else "")
            for o, lr, wd in runs[["optimizer", "learning_rate", "weight_decay"]].values
        ],
        schedule_text=[f"{s}, warm-up {w:g} epochs" if w else s for s, w in runs[["schedule", "warmup_epochs"]].values],
        clip_norm=runs["clip_norm"].fillna("none"),
    )
    columns = {
        "dataset": "dataset",
        "images": "images (train / val / test)",
        "model": "model",
        "epochs": "epochs",
        "batch_size": "batch",
        "optimizer_text": "optimizer",
        "schedule_text": "learning-rate schedule",
        "clip_norm": "gradient clipping",
        "label_smoothing": "label smoothing",
        "augmentation": "augmentation",
        "precision_used": "precision",
        "seed": "seeds",
    }
    rows = [
        {"experiment": experiment, **{label: _join(group[name]) for name, label in columns.items()}}
        for experiment, group in runs.groupby("experiment", sort=False)
    ]
    return pd.DataFrame(rows, columns=["experiment", *columns.values()])


def _difference_text(study: Study, experiment: str) -> str:
    """'experiment: published by source ...; ours ...' for the published numbers of the experiment."""
    theirs = study.published[study.published["experiment"] == experiment]
    ours = study.runs[(study.runs["experiment"] == experiment) & (study.runs["status"] == "complete")]
    if theirs.empty or ours.empty:
        return ""
    labels = source_labels()
    train_sizes, test_sizes = _official_sizes("train_images"), _official_sizes("test_images")
    published_sides = []
    for source, rows in theirs.groupby("source", sort=False):
        dataset = rows["dataset"].iloc[0]
        epochs = " and ".join(
            map(str, dict.fromkeys(rows["epochs"].map(lambda e: "unstated" if pd.isna(e) else int(e))))
        )
        full = train_sizes.get(dataset, 0)
        trained = (source_details(source).get("train_images") or {}).get(dataset, full)
        split = f"the full training split ({full:,} images)" if trained == full else f"{trained:,} training images"
        published_sides.append(
            f"{labels.get(source, source)}: {dataset}, {model_name(_join(rows['width']), _join(rows['depth']))}, "
            f"{epochs} epochs, {split}, {test_sizes.get(dataset, 0):,} test images"
        )
    ours_side = (
        f"Ours: {_join(ours['dataset'])}, {model_name(_join(ours['width']), _join(ours['depth']))}, "
        f"{_span(ours['epochs'])} epochs, {_span(ours['train_images'])} training and "
        f"{_span(ours['test_images'])} test images"
    )
    return f"`{experiment}`: published by {'; '.join(published_sides)}. {ours_side}."


def _span(values: pd.Series) -> str:
    """'9,000' or '9,000 to 49,000' for whole numbers."""
    low, high = int(values.min()), int(values.max())
    return f"{low:,}" if low == high else f"{low:,} to {high:,}"


def _published_numbers(comparison: pd.DataFrame) -> pd.DataFrame:
    """One row per published number (a number listed under two experiments counts once)."""
    return comparison.drop_duplicates(
        subset=["source", "metric", "accuracy_published", "kernels", "patch_size", "dataset", "epochs"]
    )


def reproduction_markdown(study: Study) -> str:
    """What 'reproducing the original' covers here: matched numbers, and those without a run."""
    numbers = _published_numbers(study.comparison)
    matched, unmatched = numbers[numbers["n"] > 0], numbers[numbers["n"] == 0]
    if matched.empty:
        head = "No run of this report has the setting of a published number."
    else:
        reproduced = matched["verdict"].str.startswith("reproduced").sum()
        head = (
            f"{len(matched)} published number(s) have runs at exactly their setting (table below, verdict "
            f"rule under it); {reproduced} of them are reproduced."
        )
    reasons = sorted(
        {
            f"{r['dataset']} at {'unstated' if pd.isna(r['epochs']) else int(r['epochs'])} epochs"
            for r in unmatched.to_dict("records")
        }
    )
    return head + (
        f" The other {len(unmatched)} published numbers have no run of their setting in this report "
        f"({'; '.join(reasons)}); all rows are in `tables/published_vs_reproduced.csv`.{_cost_text(unmatched)}"
        if len(unmatched)
        else ""
    )


def _cost_text(unmatched: pd.DataFrame) -> str:
    """What the published settings without a run would cost here, per dataset (published.cost_here)."""
    settings = unmatched.dropna(subset=["hours_here"]).drop_duplicates(
        ["dataset", "model", "patch_size", "kernels", "optimizer", "epochs"]
    )
    if settings.empty:
        return ""
    parts = []
    for dataset, rows in settings.groupby("dataset", sort=False):
        cheapest, dearest = rows.loc[rows["hours_here"].idxmin()], rows.loc[rows["hours_here"].idxmax()]
        span = _hours(cheapest) if len(rows) == 1 else f"from {_hours(cheapest)} to {_hours(dearest)}"
        parts.append(f"{dataset}: {len(rows)} setting(s), {rows['hours_here'].sum():,.0f} h in all, {span}")
    return (
        " Where their epochs are published, training them would take about this long where these runs "
        f"trained: {'; '.join(parts)}. These are estimates: each setting's training FLOPs at the FLOP rate that "
        "the runs nearest to it in architecture measured, at their median epoch's pace "
        "(column 'not run: hours here (estimate)', with its basis)."
    )


def _hours(row: pd.Series) -> str:
    return f"{row['hours_here']:,.1f} h ({setting_text(row.to_dict())}, {int(row['epochs'])} epochs)"


def discussion_markdown(study: Study) -> str:
    """What agrees with each source and what does not, the likely reasons the records support,
    what a reader with more compute should run next, and the limits of the evidence."""
    numbers = _published_numbers(study.comparison)
    matched = numbers[numbers["n"] > 0]
    reproduced = int(matched["verdict"].str.startswith("reproduced").sum())
    tested = study.claims[study.claims["verdict"] != claims.NOT_TESTED]
    full = len(matched) == len(numbers) == reproduced and tested["claim"].nunique() == study.claims["claim"].nunique()
    statement = (
        f"**{'Full' if full else 'Partial'} replication.** {len(matched)} of {len(numbers)} published numbers "
        f"were retrained at their exact setting and {reproduced} of those reproduced; "
        f"{tested['claim'].nunique()} of the experiments' {study.claims['claim'].nunique()} claims were tested, "
        f"at this report's scale, not the papers'; {len(claims_not_tested())} central claims of the paper are "
        "tested by no experiment (Introduction)."
    )
    sources = dict.fromkeys([*matched["source"], *(key for keys in tested["sources"] for key in keys)])
    ours = set(study.runs["dataset"].dropna())
    per_source = [_source_text(source, matched, tested, study.published, ours) for source in sources]
    parts = [statement, *per_source, _next_runs_text(numbers[numbers["n"] == 0], tested), _limits_text(study)]
    return "\n\n".join(part for part in parts if part)


def _source_text(source: str, matched: pd.DataFrame, tested: pd.DataFrame, published: pd.DataFrame, ours: set) -> str:
    """One source: which of its numbers and claims this report confirms, contradicts or cannot
    decide, each undecided one with what held it back, and whether it measured other data."""
    agree, differ, open_ = [], [], []
    for row in matched[matched["source"] == source].to_dict("records"):
        what = f"{setting_text(row)} at {row['epochs_reproduced']} epochs ({_interval_words(row)})"
        if str(row["verdict"]).startswith("reproduced"):
            agree.append(what)
        elif str(row["verdict"]).startswith("differs"):
            differ.append(what)
        else:
            open_.append(f"{what}: {_why_open(row)}")
    for row in tested[tested["sources"].map(lambda keys: source in keys)].to_dict("records"):
        claim = _short_claim(row["claim"])
        if row["verdict"] == claims.SUPPORTED:
            agree.append(f"{claim} ({row['scale']})")
        elif row["verdict"] == claims.CONTRADICTED:
            differ.append(f"{claim} ({row['scale']})")
        else:
            open_.append(f"{claim}: {_why_claim_open(row)}")
    label = source_labels().get(source, source)
    lines = [f"**{label[:1].upper() + label[1:]}.**"]
    theirs = set(published.loc[published["source"] == source, "dataset"])
    if theirs and not theirs & ours:
        names = " and ".join(sorted(map(catalog.name, theirs)))
        lines.append(
            f"It measured on {names}, these runs on {' and '.join(sorted(map(catalog.name, ours)))}: a verdict "
            "here says whether its claims carry over to this data and scale, not whether its numbers hold."
        )
    lines.append(f"Agrees here: {'; '.join(agree)}." if agree else "Nothing of it is confirmed here.")
    if differ:
        lines.append(f"Differs: {'; '.join(differ)}.")
    if open_:
        lines.append(f"Undecided: {'; '.join(open_)}.")
    return " ".join(lines)


def _interval_words(row: dict) -> str:
    if pd.isna(row.get("diff_low")):
        return f"{row['accuracy_diff']:+.2f} points, no interval"
    return f"{row['accuracy_diff']:+.2f} points, 95% interval [{row['diff_low']:+.2f}, {row['diff_high']:+.2f}]"


def _why_open(row: dict) -> str:
    """Why a retrained number is neither reproduced nor shown to differ, from its row."""
    if pd.isna(row.get("diff_low")):
        return "one run and no seed spread measured in this study"
    half = (row["diff_high"] - row["diff_low"]) / 2
    if half > row["bound"]:
        return (
            f"the interval (±{half:.2f}) is wider than the ±{row['bound']:g}-point bound: more seeds "
            f"({row['n']} now) or more test images ({row['test_images']:,.0f}) narrow it"
        )
    return f"the interval straddles the ±{row['bound']:g}-point bound"


def _why_claim_open(row: dict) -> str:
    """Why a claim stayed inconclusive: the effect these seeds could have detected, beside the one found."""
    detectable = row.get("detectable")
    if detectable is None or pd.isna(detectable):
        return f"{row['test']}, no detectable effect computed"
    effect = row.get("effect")
    found = "" if effect is None or pd.isna(effect) else f" against {effect:+.2f} found"
    return f"these runs detect {detectable:.2f} points{found} ({row['test']}, {row['scale']})"


def _short_claim(claim: str) -> str:
    """A claim without its parenthesised notes and its operational part: 'ConvMixer overfits'."""
    return re.sub(r" \([^()]*\)", "", claim).split(":", 1)[0]


def _next_runs_text(unmatched: pd.DataFrame, tested: pd.DataFrame) -> str:
    """What would decide more, with the cost the records let us estimate."""
    steps = []
    undecided = tested[(tested["verdict"] == claims.INCONCLUSIVE) & tested["detectable"].notna()]
    factors = (undecided["detectable"] / undecided["effect"].abs()) ** 2  # the detectable effect goes as 1/sqrt(seeds)
    close = [f"{_short_claim(c)} ({f:.1f}x)" for c, f in zip(undecided["claim"], factors) if f <= MORE_SEEDS]
    if close:
        steps.append(
            f"More seeds would decide: {'; '.join(close)} the seeds of each side, for the effect found to "
            "become detectable (the detectable effect shrinks as one over the square root of the seeds)."
        )
    if far := len(undecided) - len(close):
        steps.append(
            f"{far} inconclusive claim(s) found effects far below what their runs detect: at this scale they "
            "look like no effect, which more seeds would only bound, not reverse."
        )
    priced = unmatched[unmatched["hours_here"].notna()].sort_values("hours_here")
    if len(priced):
        cheapest = "; ".join(
            f"{setting_text(r)} at {r['epochs']:.0f} epochs, about {hours_text(r['hours_here'])}"
            for r in priced.head(3).to_dict("records")
        )
        steps.append(f"Published settings not run, cheapest first on this report's hardware: {cheapest}.")
    return "**What to run next.** " + " ".join(steps) if steps else ""


MORE_SEEDS = 10  # at most this many times the seeds is a next run worth proposing


def _limits_text(study: Study) -> str:
    complete = study.runs[study.runs["status"] == "complete"]
    limits = []
    if len(complete):
        test_sizes = _official_sizes("test_images")
        limits.append(
            f"Test splits: {_join(complete['test_images'].map(lambda n: f'{n:,}'))} images against the published "
            f"{_join(complete['dataset'].map(lambda d: f'{test_sizes.get(d, 0):,}'))}: each accuracy carries a "
            "binomial error, which the verdict margins include."
        )
        limits.append(
            f"Scale: {_span(complete['epochs'])} epochs on {_span(complete['train_images'])} "
            "training images; a claim supported or not here holds at this scale only."
        )
    single = int((study.summary["n"] == 1).sum())
    if single:
        limits.append(
            f"Seeds: {single} of {len(study.summary)} settings have one seed; their comparisons rest on the seed "
            "spread measured elsewhere in the report, not their own."
        )
    if unstated := _unstated_text(study):
        limits.append(unstated)
    reused = set(study.runs.loc[study.runs["reused_from"].notna(), "run_dir"])
    if stalled := _stalled_epochs_text(study.histories[~study.histories["run_dir"].isin(reused)]):
        limits.append(stalled)
    return "**Limitations.**\n\n" + "\n".join(f"* {line}" for line in limits) if limits else ""


# An epoch this many times its trial's median epoch (at its image size), and this many seconds longer, ran while the
# process was suspended or the machine busy: a recompilation after a resume (seconds on a GPU)
# stays below it, a pause of the run does not.
STALLED_EPOCH_FACTOR, STALLED_EPOCH_SECONDS = 2.0, 600.0


def _stalled_epochs_text(histories: pd.DataFrame) -> str:
    """The epochs whose wall time says the run was paused or crowded, and what they add to the
    training time (said, not corrected: the records keep what was measured)."""
    if histories.empty:
        return ""
    seconds = histories["epoch_seconds"].astype(float)
    # Per image size: the small-image epochs of progressive resizing are meant to be short.
    size = pd.to_numeric(histories.get("image_size", pd.Series(index=histories.index, dtype=float)), errors="coerce")
    median = seconds.groupby([histories["run_dir"], size.fillna(0)]).transform("median")
    stalled = histories.assign(seconds=seconds, median=median)[
        (seconds > STALLED_EPOCH_FACTOR * median) & (seconds - median > STALLED_EPOCH_SECONDS)
    ]
    if stalled.empty:
        return ""
    epochs = "; ".join(
        f"epoch {int(r['epoch'])} of {r['experiment']}/{r['run_name']}: {r['seconds']:,.0f} s against its trial's "
        f"median epoch of {r['median']:,.0f} s"
        for r in stalled.to_dict("records")
    )
    return (
        f"Wall times: {epochs}. An epoch over {STALLED_EPOCH_FACTOR:g}x its trial's median and "
        f"{STALLED_EPOCH_SECONDS / 60:g} minutes longer ran while the process was suspended or the machine busy, "
        f"so those trials' training times are high by about {(stalled['seconds'] - stalled['median']).sum():,.0f} s "
        "in all (the records keep the measured times)."
    )


def _unstated_text(study: Study) -> str:
    """How many published numbers give no number of epochs, and whose they are."""
    unstated = study.published[study.published["epochs"].isna()].drop_duplicates("result")
    if unstated.empty:
        return ""
    labels = source_labels()
    return (
        f"Unstated hyperparameters: {len(unstated)} published numbers "
        f"({_join(unstated['source'].map(lambda s: labels.get(s, s)))}) give no number of epochs; our choices "
        "are in the profile and the Methods section."
    )


def references_markdown() -> str:
    """The sources of the published numbers and claims, numbered."""
    rows = sources_table().to_dict("records")
    return "\n".join(
        f"{i}. {r['citation']}" + (f" <{r['url']}>" if isinstance(r["url"], str) else "")
        for i, r in enumerate(rows, start=1)
    )


def _official_sizes(split: str) -> dict[str, int]:
    """The official `split` ('train_images' or 'test_images') of each dataset (convmixer.catalog)."""
    return {key: size for key, dataset in catalog.DATASETS.items() if (size := getattr(dataset, split))}

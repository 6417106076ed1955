"""The study's ReScience-style report, built from run records only.

`load_study` collates run folders (from any number of machines) and the executed notebooks;
the functions below turn a `Study` into the report's text, tables and figures, which
notebooks/report.ipynb shows. `build_report` executes that notebook with papermill and
renders it into one self-contained `index.html` with the code hidden.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

import jinja2
import nbformat
import pandas as pd
import papermill
import yaml
from IPython.display import HTML, Image, Markdown, display
from nbconvert import HTMLExporter

from convmixer import collate, experiments, plots, records
from convmixer.config import load_yaml

REPO = Path(__file__).resolve().parents[1]
REPORT_NOTEBOOK = REPO / "notebooks" / "report.ipynb"
SOURCE_NAMES = plots.SOURCE_LABELS
DATASET_URLS = {"cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html",
                "tiny-imagenet": "http://cs231n.stanford.edu/tiny-imagenet-200.zip"}
TO_BE_FILLED = "to be filled"


class ReportError(RuntimeError):
    """The report could not be built, as one readable line."""


@dataclasses.dataclass
class Study:
    """Everything the report shows, collated from run folders and executed notebooks."""

    profile: str
    runs_dirs: list[Path]
    runs: pd.DataFrame
    unfinished: pd.DataFrame
    histories: pd.DataFrame
    notebooks: pd.DataFrame
    summary: pd.DataFrame
    published: pd.DataFrame
    comparison: pd.DataFrame
    claims: pd.DataFrame
    requirements: pd.DataFrame


def load_study(profile: str, runs_dirs, notebooks_dirs=None, published=collate.PUBLISHED) -> Study:
    """Collate `runs_dirs`; notebooks default to a `notebooks` folder beside each runs folder."""
    runs_dirs = [Path(d) for d in runs_dirs]
    if notebooks_dirs is None:
        notebooks_dirs = [d.parent / "notebooks" for d in runs_dirs]
    runs = collate.load_runs(*runs_dirs)
    notebooks = collate.load_notebooks(*notebooks_dirs)
    summary = collate.summarise(runs)
    published_rows = collate.load_published(published)
    return Study(
        profile=profile, runs_dirs=runs_dirs, runs=runs, unfinished=collate.unfinished_runs(*runs_dirs),
        histories=collate.load_histories(runs), notebooks=notebooks, summary=summary,
        published=published_rows, comparison=collate.compare_with_published(summary, published_rows),
        claims=collate.claims(summary), requirements=collate.compute_requirements(runs, notebooks),
    )


# ---- text ---------------------------------------------------------------------------------
def summary_markdown(study: Study) -> str:
    """The ReScience reproducibility summary; every number in it is computed from the records."""
    runs, claims = study.runs, study.claims
    complete = runs[runs["status"] == "complete"]
    failed = runs[runs["status"] == "failed"]
    verdicts = claims["verdict"].value_counts()
    matched = study.comparison[study.comparison["n"] > 0]
    published_count = len(study.published.drop_duplicates(subset=["source", "metric", "value", "kernels",
                                                                  "patch_size", "dataset", "epochs"]))
    claim_sources = sorted({SOURCE_NAMES.get(s, s) for s in claims["source"]})
    scope = ("We test whether ConvMixer's published claims and numbers hold when the model is "
             f"re-implemented and retrained: {claims['claim'].nunique()} claims from the "
             f"{', '.join(claim_sources)}, and {published_count} published accuracies.")
    methodology = f"No finished run was found in {', '.join(map(str, study.runs_dirs))}." if runs.empty else (
        f"ConvMixer re-implemented in Keras 3 ({_packages(runs)}), trained from scratch by the suite's "
        f"experiment notebooks. This report covers profile `{study.profile}`: {len(complete)} complete runs, "
        f"{len(failed)} failed and {len(study.unfinished)} unfinished, in "
        f"{runs['experiment'].nunique()} experiments ({', '.join(runs['experiment'].unique())}); "
        f"{_settings(complete)}. Hardware: {_join(runs['device'])}. Training took "
        f"{_hours(study.requirements['train_hours'].sum())} in total.")
    results = _results_text(study, verdicts, matched)
    return "\n\n".join([
        f"**Scope of reproducibility.** {scope}",
        f"**Methodology.** {methodology}",
        f"**Results.** {results}",
        f"**What was easy.** {_easy_text(study, complete)}",
        f"**What was difficult.** {_difficult_text(study, failed, published_count)}",
        "**Communication with original authors.** None: the suite relies only on the published "
        "paper, the official repositories and the two reproduction reports.",
    ])


def _results_text(study: Study, verdicts: pd.Series, matched: pd.DataFrame) -> str:
    counts = ", ".join(f"{verdicts.get(v, 0)} {v}" for v in
                       (collate.SUPPORTED, collate.NOT_SUPPORTED, collate.INCONCLUSIVE))
    text = f"Of {int(verdicts.sum())} claim checks, {counts} (rule below the claims table)."
    if matched.empty:
        return text + " No run has the setting of a published number, so no accuracy is compared directly."
    diffs = matched["accuracy_diff"].abs()
    closest, furthest = matched.loc[diffs.idxmin()], matched.loc[diffs.idxmax()]
    if len(matched) == 1:
        return text + (f" One published number has a run with the same setting: {_setting_name(closest)}, "
                       f"{_pair(closest)} ({closest['accuracy_diff']:+.2f} percentage points).")
    return text + (
        f" {len(matched)} published numbers have a run with the same setting; the reproduced accuracy "
        f"differs by {diffs.min():.2f} to {diffs.max():.2f} percentage points (closest: "
        f"{_setting_name(closest)}, {_pair(closest)}; furthest: {_setting_name(furthest)}, "
        f"{_pair(furthest)}).")


def _pair(row) -> str:
    return f"{row['accuracy_published']:.2f}% published against {row['accuracy_reproduced']:.2f}% reproduced"


def _easy_text(study: Study, complete: pd.DataFrame) -> str:
    finished = len(study.runs)
    if not finished:
        return "Nothing yet: no run has finished."
    clean = f"{len(complete)} of {finished} finished runs completed without error"
    notebooks = study.notebooks
    clean_notebooks = int((~notebooks["exception"]).sum())
    ran = (f"; {clean_notebooks} of {len(notebooks)} experiment notebooks ran end to end under papermill"
           if len(notebooks) else "")
    return (f"{clean}{ran}. Every run left a self-describing record (configuration, history, metrics), so "
            f"this report was rebuilt from {len(study.runs_dirs)} run folder(s) alone, "
            f"{_duplicates_text(study.runs)}")


def _duplicates_text(runs: pd.DataFrame) -> str:
    copies = runs["duplicates"].astype(bool).sum() if len(runs) else 0
    return (f"with {copies} run(s) found in more than one folder counted once." if copies
            else "with no run found twice.")


def _difficult_text(study: Study, failed: pd.DataFrame, published_count: int) -> str:
    points = []
    if len(failed):
        errors = "; ".join(f"{r.experiment}/{r.run_name}: {_first_line(r.error)}"
                           for r in failed.itertuples())
        points.append(f"{len(failed)} run(s) failed ({errors}).")
    if len(study.unfinished):
        points.append(f"{len(study.unfinished)} run(s) never finished: "
                      f"{', '.join(study.unfinished['run_name'].astype(str))}.")
    crashed = study.notebooks[study.notebooks["exception"]]
    if len(crashed):
        points.append(f"{len(crashed)} notebook(s) stopped on an exception: "
                      f"{', '.join(crashed['experiment'])}.")
    unmatched_settings = study.comparison[study.comparison["n"] == 0].drop_duplicates(
        subset=["source", "metric", "accuracy_published", "kernels", "patch_size", "dataset", "epochs"])
    if len(unmatched_settings):
        epochs = sorted({int(e) for e in unmatched_settings["epochs"].dropna()})
        datasets = sorted(set(unmatched_settings["dataset"]))
        points.append(f"{len(unmatched_settings)} of {published_count} published numbers have no run "
                      f"with the same setting (published datasets: {', '.join(datasets)}; epochs: "
                      f"{', '.join(map(str, epochs)) or 'not stated'}).")
    inconclusive = study.claims[study.claims["verdict"] == collate.INCONCLUSIVE]
    if len(inconclusive):
        single = int((study.summary["n"] == 1).sum())
        points.append(f"{len(inconclusive)} claim check(s) stayed inconclusive" + (
            f"; {single} of {len(study.summary)} settings have a single seed, too few to separate small "
            "differences." if single else "."))
    return " ".join(points) or "Nothing in the records: no failed or unfinished run and every check decided."


def requirements_markdown(study: Study) -> str:
    req = study.requirements
    wall = req["notebook_hours"].dropna()
    return (f"Devices (from each run's config.json): {_join(study.runs['device'])}. "
            f"Training time summed over runs: {_hours(req['train_hours'].sum())} "
            f"({_hours(req['cpu_hours'].sum())} on CPUs, "
            f"{_hours(req['accelerator_hours'].sum())} on GPUs/TPUs). "
            + (f"Notebook wall time (papermill): {_hours(wall.sum())} over {len(wall)} experiment(s)."
               if len(wall) else "No executed experiment notebook with papermill metadata was found."))


def _hours(hours: float) -> str:
    return f"{hours:.2f} h" if hours >= 0.1 else f"{hours * 60:.1f} min"


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
    return f"{_setting(dict(row))} ({SOURCE_NAMES.get(row['source'], row['source'])}, {row['experiment']})"


# ---- tables -------------------------------------------------------------------------------
def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per setting: mean and std over seeds (accuracies in percent)."""
    table = summary.assign(
        value=[f"{v}={label}" if label else "" for v, label in zip(summary["vary"], summary["value_label"])],
        setting=[_setting(r) for r in summary.to_dict("records")])
    columns = {
        "experiment": "experiment", "value": "varied", "setting": "setting", "n": "n", "n_failed": "failed",
        "test_accuracy_mean": "test acc (%)", "test_accuracy_std": "std",
        "test_accuracy_flip_mean": "with test-time flip (%)", "final_train_accuracy_mean": "train acc (%)", "gap_mean": "train-test gap", "params": "params",
        "train_seconds_mean": "train time (s)", "images_per_second": "images/s",
        "config_hashes": "config hashes",
    }
    return table[list(columns)].rename(columns=columns)


def comparison_table(comparison: pd.DataFrame, experiment: str | None = None) -> pd.DataFrame:
    """Published | reproduced pairs for accuracy, parameters and time (for one experiment if given)."""
    rows = comparison if experiment is None else comparison[comparison["experiment"] == experiment]
    table = rows.assign(source=rows["source"].map(lambda s: SOURCE_NAMES.get(s, s)),
                        setting=[_setting(r) for r in rows.to_dict("records")],
                        metric=rows["metric"].str.replace("_", " "))
    columns = {
        "experiment": "experiment", "source": "source", "setting": "setting", "metric": "metric",
        "epochs": "epochs", "epochs_reproduced": "our epochs", "accuracy_published": "published acc (%)",
        "accuracy_reproduced": "reproduced acc (%)", "accuracy_std": "std", "n": "n",
        "accuracy_diff": "difference", "params_published": "published params",
        "params_reproduced": "reproduced params", "seconds_published": "published time (s)",
        "seconds_reproduced": "reproduced time (s)", "note": "note",
    }
    if experiment is not None:
        del columns["experiment"]
    return table[list(columns)].rename(columns=columns)


def _setting(row: dict) -> str:
    """'cifar10, ConvMixer-256/8, p=2, k=5, adamw' (the optimizer where known)."""
    model = row.get("model") or f"ConvMixer-{row['width']}/{row['depth']}"
    optimizer = "" if pd.isna(row.get("optimizer")) else f", {row['optimizer']}"
    return f"{row['dataset']}, {model}, p={row['patch_size']}, k={row['kernels']}{optimizer}"


def claims_table(claims: pd.DataFrame) -> pd.DataFrame:
    table = claims.assign(source=claims["source"].map(lambda s: SOURCE_NAMES.get(s, s)))
    return table[["source", "claim", "profile", "dataset", "verdict", "evidence"]]


def provenance_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Where every number comes from: one row per run."""
    table = runs.assign(
        test_accuracy=100 * runs["test_accuracy"].astype(float),
        run_dir=[_relative(d, s) for d, s in zip(runs["run_dir"], runs["source"])])
    columns = {"experiment": "experiment", "run_name": "run", "status": "status",
               "test_accuracy": "test acc (%)", "error": "error", "run_dir": "run directory",
               "source": "folder", "config_hash": "config hash", "git_commit": "git commit",
               "device": "device", "packages": "packages", "duplicates": "also found in"}
    return table[list(columns)].rename(columns=columns)


def requirements_table(requirements: pd.DataFrame) -> pd.DataFrame:
    """collate.compute_requirements with its hours written for reading (minutes when short)."""
    hours = ["train_hours", "cpu_hours", "accelerator_hours", "notebook_hours"]
    names = {"train_hours": "training", "cpu_hours": "on CPUs", "accelerator_hours": "on GPUs/TPUs",
             "notebook_hours": "notebook wall time"}
    readable = {name: requirements[name].map(lambda h: "" if pd.isna(h) else _hours(h)) for name in hours}
    return requirements.assign(**readable).rename(columns=names)


def notebooks_table(notebooks: pd.DataFrame) -> pd.DataFrame:
    return notebooks.assign(minutes=notebooks["duration"].astype(float) / 60)[
        ["experiment", "start_time", "end_time", "minutes", "exception", "notebook"]]


def _relative(run_dir: str, source: str) -> str:
    try:
        return str(Path(run_dir).relative_to(source))
    except ValueError:
        return run_dir


def tables(study: Study) -> dict[str, pd.DataFrame]:
    """The report's tables by file name, as written to <out_dir>/tables/."""
    result = {"summary": summary_table(study.summary),
              "published_vs_reproduced": comparison_table(study.comparison)}
    for experiment in study.comparison["experiment"].dropna().unique():
        result[f"published_vs_reproduced_{experiment}"] = comparison_table(study.comparison, experiment)
    result.update({"claims": claims_table(study.claims), "requirements": study.requirements,
                   "notebooks": notebooks_table(study.notebooks), "runs": provenance_table(study.runs)})
    return result


# ---- figures ------------------------------------------------------------------------------
def figures(study: Study) -> dict[str, plots.Figure]:
    """The report's figures by file name, as written to <out_dir>/figures/."""
    result = {}
    for experiment, histories in study.histories.groupby("experiment", sort=False):
        result[f"learning_curves_{experiment}"] = plots.learning_curves(histories, title=experiment)
    result["patch_sweep"] = plots.sweep(study.summary, "patch_size", study.published)
    result["kernel_sweep"] = plots.sweep(study.summary, "kernel_size", study.published)
    if study.runs["mixing_weights"].map(lambda w: isinstance(w, dict)).any():
        result["mixing_weights"] = plots.mixing_weights(study.runs)
    result["accuracy_vs_time"] = plots.accuracy_vs_compute(study.summary, "train_seconds_mean")
    result["accuracy_vs_compute"] = plots.accuracy_vs_compute(study.summary, "compute")
    return result


# ---- output -------------------------------------------------------------------------------
def write_outputs(study: Study, out_dir: str | Path) -> dict[str, list[Path]]:
    """Write tables, figures and metadata.yaml under `out_dir`; return the files by name."""
    out_dir = Path(out_dir)
    written = {name: collate.write_tables({name: table}, out_dir / "tables")
               for name, table in tables(study).items()}
    written.update({name: plots.save_figure(figure, out_dir / "figures", name)
                    for name, figure in figures(study).items()})
    written["metadata"] = [write_metadata(study, out_dir)]
    return written


EXPERIMENT_TITLES = {"baseline": "Baseline", "adamw": "Adam against AdamW", "patch_sweep": "Patch-size sweep",
                     "kernel_sweep": "Kernel-size sweep",
                     "dynamic_kernel": "Dynamic (multi-kernel) depthwise layer"}
EXPERIMENT_FIGURES = {"patch_sweep": ["patch_sweep"], "kernel_sweep": ["kernel_sweep"],
                      "dynamic_kernel": ["mixing_weights"]}


def show_experiments(study: Study, written: dict[str, list[Path]]) -> None:
    """Per experiment: our results, the published numbers beside them, and the figures."""
    found = [e for e in study.runs["experiment"].unique() if e not in collate.EXPERIMENTS]
    for experiment in [*collate.EXPERIMENTS, *found]:
        show_markdown(f"### {EXPERIMENT_TITLES.get(experiment, experiment)}")
        ours = study.summary[study.summary["experiment"] == experiment]
        if ours.empty:
            show_markdown(f"No finished run of `{experiment}` in this report.")
        else:
            show_markdown("Our runs (mean and standard deviation over seeds; accuracies in percent):")
            show_table(summary_table(ours))
        published = comparison_table(study.comparison, experiment)
        if len(published):
            show_markdown("Published numbers beside ours (empty reproduced cells: no run with that setting):")
            show_table(published)
        for name in [f"learning_curves_{experiment}", *EXPERIMENT_FIGURES.get(experiment, [])]:
            if name in written:
                show_figure(written[name])


def sources_table(path: str | Path = collate.PUBLISHED) -> pd.DataFrame:
    """The sources of the published numbers, with full citations."""
    sources = load_yaml(path)["sources"]
    return pd.DataFrame([{"key": key, "source": SOURCE_NAMES.get(key, key),
                          "citation": " ".join(s["citation"].split()), "url": s.get("url"),
                          "note": " ".join(str(s.get("note") or "").split())} for key, s in sources.items()])


def show_table(table: pd.DataFrame) -> None:
    """Display a table in a notebook, numbers formatted as in the Markdown and LaTeX files."""
    display(HTML(collate.format_table(table).to_html(index=False, border=0)))


def show_figure(paths: list[Path]) -> None:
    """Display a saved figure (its PNG) in a notebook, its file name as the alternative text."""
    display(Image(filename=str(paths[0]), alt=Path(paths[0]).stem.replace("_", " ")))


def show_markdown(text: str) -> None:
    display(Markdown(text))


def metadata(study: Study) -> dict:
    """The ReScience C article metadata (template fields) with this project's values.

    The title takes the template's '[¬Re]' prefix when more claim checks are not supported than
    supported. Fields only people or the journal can give (ORCID, affiliations, editor,
    reviewers) say "to be filled" or stay empty as in the template.
    """
    project = _pyproject().get("project", {})
    authors = [{"name": a.get("name", TO_BE_FILLED), "orcid": TO_BE_FILLED,
                "email": a.get("email", TO_BE_FILLED), "affiliations": TO_BE_FILLED}
               for a in project.get("authors", [])]
    verdicts = study.claims["verdict"].value_counts()
    failed = verdicts.get(collate.NOT_SUPPORTED, 0) > verdicts.get(collate.SUPPORTED, 0)
    datasets = sorted(set(study.runs["dataset"].dropna()))
    paper = sources_table().set_index("key").loc["trockman2022"]
    return {
        "title": f"{'[¬Re]' if failed else '[Re]'} Patches Are All You Need? "
                 f"(ConvMixer in Keras 3, profile {study.profile})",
        "authors": authors or [{"name": TO_BE_FILLED}],
        "affiliations": [{"code": 1, "name": TO_BE_FILLED}],
        "keywords": "rescience c, machine learning, convmixer, keras, python",
        "code": [{"url": _code_url(project)}, {"doi": None}, {"swh": None}],
        "data": [{"url": DATASET_URLS.get(name, name)} for name in datasets] or [{"url": None}],
        "replication": [{"cite": paper["citation"]}, {"bib": "trockman2022"}, {"url": paper["url"]},
                        {"doi": "10.48550/arXiv.2201.09792"}],
        "abstract": _results_text(study, verdicts, study.comparison[study.comparison["n"] > 0]),
        "type": "Replication",
        "domain": "Machine learning (computer vision)",
        "language": "Python",
        "review": [{"url": None}],
        "contributors": [{"name": TO_BE_FILLED, "orcid": None, "role": "editor"},
                         {"name": TO_BE_FILLED, "orcid": None, "role": "reviewer"}],
        "dates": [{"received": None}, {"accepted": None}, {"published": None}],
        "article": [{"number": None}, {"doi": None}, {"url": None}],
        "journal": [{"name": "ReScience C"}, {"issn": "2430-3658"}, {"volume": None}, {"issue": None}],
    }


def write_metadata(study: Study, out_dir: str | Path) -> Path:
    text = yaml.safe_dump(metadata(study), sort_keys=False, allow_unicode=True, width=100)
    return records.write_atomic(Path(out_dir) / "metadata.yaml", text)


def _pyproject() -> dict:
    path = REPO / "pyproject.toml"
    return tomllib.loads(path.read_text()) if path.is_file() else {}


def _code_url(project: dict) -> str:
    urls = project.get("urls", {})
    if urls:
        return next(iter(urls.values()))
    remote = subprocess.run(["git", "remote", "get-url", "origin"], cwd=REPO, capture_output=True, text=True)
    return remote.stdout.strip() or TO_BE_FILLED


# ---- building -----------------------------------------------------------------------------
def build_report(profile: str, out_dir: str | Path | None = None, runs_dirs=None, notebooks_dirs=None,
                 timeout: int = 600) -> Path:
    """Execute report.ipynb into <out_dir>/notebooks/, render <out_dir>/index.html; return its path.

    `runs_dirs` defaults to <out_dir>/runs and `out_dir` to reports/<profile> (see
    experiments.output_dir); the executed notebook also writes <out_dir>/tables,
    <out_dir>/figures and <out_dir>/metadata.yaml.
    """
    out_dir = experiments.output_dir(profile, out_dir).resolve()
    runs_dirs = [str(Path(d).resolve()) for d in (runs_dirs or [out_dir / "runs"])]
    parameters = {"profile": profile, "runs_dirs": runs_dirs, "out_dir": str(out_dir),
                  "notebooks_dirs": None if notebooks_dirs is None else [str(Path(d).resolve())
                                                                          for d in notebooks_dirs]}
    executed = out_dir / "notebooks" / "report.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(REPORT_NOTEBOOK, executed, parameters=parameters, cwd=str(REPO),
                                   kernel_name="python3", progress_bar=False, execution_timeout=timeout)
    except papermill.PapermillExecutionError as error:
        raise ReportError(f"report notebook failed: {error.ename}: {error.evalue} (see {executed})") from None
    return records.write_atomic(out_dir / "index.html", render_html(executed))


# JupyterLab's look without its scripts (require.js, MathJax, Mermaid from a CDN): the report
# has no widgets, maths or diagrams, and a self-contained page must load nothing. Tables are
# compact and read left to right.
_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style>
  .jp-RenderedHTMLCommon table { font-size: 12px; }
  .jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { text-align: left !important; vertical-align: top; }
</style>
{%- endblock extra_css -%}
"""


def render_html(notebook_path: str | Path) -> str:
    """One self-contained HTML page: outputs only (no code, no stderr), images inline."""
    notebook = nbformat.read(notebook_path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    exporter = HTMLExporter(template_name="lab", template_file="report.html.j2",
                            extra_loaders=[jinja2.DictLoader({"report.html.j2": _TEMPLATE})],
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    html, _ = exporter.from_notebook_node(notebook)
    return html


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1280, height: int = 4000) -> Path:
    """Render `html_path` with headless Chromium into `png_path` (to check the page reads well)."""
    browser = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(name)), None)
    if browser is None:
        raise ReportError("no Chromium found: install it (apt-get install -y chromium) to take screenshots")
    png_path = Path(png_path).resolve()
    png_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile_dir:
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={profile_dir}", f"--screenshot={png_path}",
                   f"--window-size={width},{height}", Path(html_path).resolve().as_uri()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if not png_path.is_file():
        raise ReportError(f"Chromium wrote no screenshot (exit {result.returncode}): "
                          f"{result.stderr.strip()[-300:]}")
    return png_path

"""The study's ReScience-style report, built from run records only.

`load_study` collates run folders (from any number of machines) and the executed notebooks;
the functions below turn a `Study` into the report's text, tables and figures, which
notebooks/report.ipynb shows. `build_report` executes that notebook with papermill and
renders it into one self-contained `index.html` with the code hidden.
"""

from __future__ import annotations

import dataclasses
import subprocess
import tomllib
from pathlib import Path

import jinja2
import nbformat
import pandas as pd
import papermill
import yaml
from IPython.display import HTML, Markdown, display
from nbconvert import HTMLExporter

from . import article, claims, collate, experiments, paths, plots, published, records
from .config import TINY_IMAGENET_URL
from .tables import (
    claims_table,
    comparison_table,
    notebooks_table,
    provenance_table,
    readable,
    summary_table,
    write_tables,
)

REPORT_NOTEBOOK = paths.NOTEBOOKS / "report.ipynb"
DATASET_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html",
    "tiny-imagenet": TINY_IMAGENET_URL,
}
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


def load_study(profile: str, runs_dirs, notebooks_dirs=None, published_path=None) -> Study:
    """Collate `runs_dirs`; notebooks default to a `notebooks` folder beside each runs folder."""
    runs_dirs = [Path(d) for d in runs_dirs]
    if notebooks_dirs is None:
        notebooks_dirs = [d.parent / "notebooks" for d in runs_dirs]
    runs = collate.load_runs(*runs_dirs)
    notebooks = collate.load_notebooks(*notebooks_dirs)
    summary = collate.summarise(runs)
    published_rows = published.load_published(published_path)
    return Study(
        profile=profile,
        runs_dirs=runs_dirs,
        runs=runs,
        unfinished=collate.unfinished_runs(*runs_dirs),
        histories=collate.load_histories(runs),
        notebooks=notebooks,
        summary=summary,
        published=published_rows,
        comparison=published.compare_with_published(summary, published_rows),
        claims=claims.claims(summary),
        requirements=collate.compute_requirements(runs, notebooks),
    )


# ---- tables -------------------------------------------------------------------------------
def tables(study: Study) -> dict[str, pd.DataFrame]:
    """The report's tables by file name, as written to <out_dir>/tables/."""
    result = {"summary": summary_table(study.summary), "published_vs_reproduced": comparison_table(study.comparison)}
    for experiment in study.comparison["experiment"].dropna().unique():
        result[f"published_vs_reproduced_{experiment}"] = comparison_table(study.comparison, experiment)
    result.update(
        {
            "claims": claims_table(study.claims, study.published),
            "requirements": study.requirements,
            "notebooks": notebooks_table(study.notebooks, study.runs),
            "runs": provenance_table(study.runs),
        }
    )
    return result


# ---- figures ------------------------------------------------------------------------------
def experiment_figures(
    experiment: experiments.Experiment, summary: pd.DataFrame, runs: pd.DataFrame, published_rows: pd.DataFrame | None
) -> dict[str, plots.Figure]:
    """The figures an experiment file asks for (`figures`), by file name."""
    result = {}
    if "sweep" in experiment.figures:
        result[f"sweep_{experiment.name}"] = plots.sweep(summary, experiment.name, experiment.vary, published_rows)
    mixed = runs[
        (runs["experiment"] == experiment.name) & runs["mixing_weights"].map(lambda w: isinstance(w, dict) and bool(w))
    ]
    if "mixing_weights" in experiment.figures and len(mixed):
        result[f"mixing_weights_{experiment.name}"] = plots.mixing_weights(mixed)
    return result


def figures(study: Study) -> dict[str, plots.Figure]:
    """The report's figures by file name, as written to <out_dir>/figures/. Learning curves are
    titled with the experiment's title and captioned with its runs' data sizes."""
    result = {}
    titles = {e.name: e.title for e in experiments.registry()}
    sizes = study.runs[["run_dir", "dataset", "train_images", "test_images"]]
    histories = study.histories.merge(sizes, on="run_dir", how="left")
    for experiment, runs in histories.groupby("experiment", sort=False):
        result[f"learning_curves_{experiment}"] = plots.learning_curves(runs, titles.get(experiment, experiment))
    for experiment in experiments.registry():
        result.update(experiment_figures(experiment, study.summary, study.runs, study.published))
    result["accuracy_vs_time"] = plots.accuracy_vs_compute(study.summary, "train_seconds_mean")
    result["accuracy_vs_compute"] = plots.accuracy_vs_compute(study.summary, "train_flops_mean")
    return result


# ---- output -------------------------------------------------------------------------------
def write_outputs(study: Study, out_dir: str | Path) -> dict[str, list[Path]]:
    """Write tables, figures and metadata.yaml under `out_dir`; return the files by name."""
    out_dir = Path(out_dir)
    written = {name: write_tables({name: table}, out_dir / "tables") for name, table in tables(study).items()}
    written.update(
        {name: plots.save_figure(figure, out_dir / "figures", name) for name, figure in figures(study).items()}
    )
    written["metadata"] = [write_metadata(study, out_dir)]
    return written


def show_experiments(study: Study, written: dict[str, list[Path]], exclude=(published.REPLICATION,)) -> None:
    """Per experiment, in the registry's order: our results, the published numbers beside
    them, and the figures. Experiments found in the records but not in the registry come last.
    The published settings (`exclude`) are shown by `show_reproduction` instead."""
    registry = experiments.registry()
    known = {e.name for e in registry}
    titles = {e.name: e.title for e in registry if e.name not in exclude}
    found = [e for e in study.runs["experiment"].unique() if e not in known]
    for experiment in [*titles, *found]:
        show_markdown(f"### {titles.get(experiment, experiment)}")
        ours = study.summary[study.summary["experiment"] == experiment]
        if ours.empty:
            show_markdown(f"No finished run of `{experiment}` in this report.")
        else:
            show_markdown("Our runs (mean and standard deviation over seeds; accuracies in percent):")
            show_table(summary_table(ours))
        published_rows = comparison_table(study.comparison, experiment)
        if len(published_rows):
            show_markdown("Published numbers beside ours (empty reproduced cells: no run with that setting):")
            show_table(published_rows)
            if (published_rows["n"] > 0).any():
                show_markdown(f"**Verdict rule.** {published.VERDICT_RULE}")
        for figure in ("learning_curves", *experiments.FIGURES):
            if f"{figure}_{experiment}" in written:
                show_figure(written[f"{figure}_{experiment}"])


def show_results(experiment: str, profile: str, out_dir=None) -> pd.DataFrame:
    """An experiment notebook's results: its summary table, the figures its experiment file
    asks for, and the learning curves, from the run records in <out_dir>/runs/<experiment>."""
    spec = experiments.load_experiment(experiment)
    runs = collate.load_runs(paths.output_dir(profile, out_dir) / "runs" / experiment)
    summary = collate.summarise(runs)
    show_table(summary_table(summary))
    for figure in experiment_figures(spec, summary, runs, published.load_published()).values():
        display(figure)
    display(plots.learning_curves(collate.load_histories(runs), title=spec.title))
    return summary


def show_table(table: pd.DataFrame) -> None:
    """Display a table in a notebook, numbers formatted as in the Markdown and LaTeX files."""
    display(HTML(readable(table).to_html(index=False, border=0)))


_figure_numbers: dict[Path, dict[str, int]] = {}  # per figures folder: figure name -> number, in display order


def show_figure(paths: list[Path]) -> None:
    """Display a figure saved by plots.save_figure (PNG first in `paths`) as an HTML <figure> with
    its alternative text and caption, numbered in the order its folder's figures are first shown.

    HTML rather than IPython's Image: nbconvert's lab template drops an image's `alt` metadata.
    """
    png = Path(paths[0])
    numbers = _figure_numbers.setdefault(png.parent.resolve(), {})
    display(HTML(plots.saved_figure_html(png, numbers.setdefault(png.stem, len(numbers) + 1))))


def show_reproduction(study: Study, written: dict[str, list[Path]]) -> None:
    """The published numbers that have runs at their setting, with verdicts and the rule, and
    the learning curves of the published-setting runs."""
    show_markdown(article.reproduction_markdown(study))
    matched = study.comparison[study.comparison["n"] > 0]
    if len(matched):
        show_table(comparison_table(matched))
        show_markdown(f"**Verdict rule.** {published.VERDICT_RULE}")
    if f"learning_curves_{published.REPLICATION}" in written:
        show_figure(written[f"learning_curves_{published.REPLICATION}"])


def show_details(summary: str, table: pd.DataFrame) -> None:
    """A wide table folded under a one-line summary, so that the page keeps its width."""
    html = readable(table).to_html(index=False, border=0)
    display(HTML(f'<details><summary>{summary}</summary><div style="overflow-x:auto">{html}</div></details>'))


def show_markdown(text: str) -> None:
    display(Markdown(text))


def metadata(study: Study) -> dict:
    """The ReScience C article metadata (template fields) with this project's values.

    The title takes the template's '[¬Re]' prefix when more claim checks are not supported than
    supported. Fields only people or the journal can give (ORCID, affiliations, editor,
    reviewers) say "to be filled" or stay empty as in the template.
    """
    project = _pyproject().get("project", {})
    authors = [
        {
            "name": a.get("name", TO_BE_FILLED),
            "orcid": TO_BE_FILLED,
            "email": a.get("email", TO_BE_FILLED),
            "affiliations": TO_BE_FILLED,
        }
        for a in project.get("authors", [])
    ]
    verdicts = study.claims["verdict"].value_counts()
    failed = verdicts.get(claims.CONTRADICTED, 0) > verdicts.get(claims.SUPPORTED, 0)
    datasets = sorted(set(study.runs["dataset"].dropna()))
    paper = published.sources_table().set_index("key").loc["trockman2022"]
    return {
        "title": f"{'[¬Re]' if failed else '[Re]'} Patches Are All You Need? "
        f"(ConvMixer in Keras 3, profile {study.profile})",
        "authors": authors or [{"name": TO_BE_FILLED}],
        "affiliations": [{"code": 1, "name": TO_BE_FILLED}],
        "keywords": "rescience c, machine learning, convmixer, keras, python",
        "code": [{"url": _code_url(project)}, {"doi": None}, {"swh": None}],
        "data": [{"url": DATASET_URLS.get(name, name)} for name in datasets] or [{"url": None}],
        "replication": [
            {"cite": paper["citation"]},
            {"bib": "trockman2022"},
            {"url": paper["url"]},
            {"doi": "10.48550/arXiv.2201.09792"},
        ],
        "abstract": article.results_text(study, verdicts, study.comparison[study.comparison["n"] > 0]),
        "type": "Replication",
        "domain": "Machine learning (computer vision)",
        "language": "Python",
        "review": [{"url": None}],
        "contributors": [
            {"name": TO_BE_FILLED, "orcid": None, "role": "editor"},
            {"name": TO_BE_FILLED, "orcid": None, "role": "reviewer"},
        ],
        "dates": [{"received": None}, {"accepted": None}, {"published": None}],
        "article": [{"number": None}, {"doi": None}, {"url": None}],
        "journal": [{"name": "ReScience C"}, {"issn": "2430-3658"}, {"volume": None}, {"issue": None}],
    }


def write_metadata(study: Study, out_dir: str | Path) -> Path:
    text = yaml.safe_dump(metadata(study), sort_keys=False, allow_unicode=True, width=100)
    return records.write_atomic(Path(out_dir) / "metadata.yaml", text)


def _pyproject() -> dict:
    path = paths.PROJECT_ROOT / "pyproject.toml"
    return tomllib.loads(path.read_text()) if path.is_file() else {}


def _code_url(project: dict) -> str:
    urls = project.get("urls", {})
    if urls:
        return next(iter(urls.values()))
    remote = subprocess.run(
        ["git", "remote", "get-url", "origin"], cwd=paths.PROJECT_ROOT, capture_output=True, text=True
    )
    return remote.stdout.strip() or TO_BE_FILLED


# ---- building -----------------------------------------------------------------------------
def build_report(
    profile: str, out_dir: str | Path | None = None, runs_dirs=None, notebooks_dirs=None, timeout: int = 600
) -> Path:
    """Execute report.ipynb into <out_dir>/notebooks/, render <out_dir>/index.html; return its path.

    `runs_dirs` defaults to <out_dir>/runs and `out_dir` to reports/<profile> (see
    paths.output_dir); the executed notebook also writes <out_dir>/tables,
    <out_dir>/figures and <out_dir>/metadata.yaml.
    """
    out_dir = paths.output_dir(profile, out_dir).resolve()
    runs_dirs = [str(Path(d).resolve()) for d in (runs_dirs or [out_dir / "runs"])]
    parameters = {
        "profile": profile,
        "runs_dirs": runs_dirs,
        "out_dir": str(out_dir),
        "notebooks_dirs": None if notebooks_dirs is None else [str(Path(d).resolve()) for d in notebooks_dirs],
    }
    executed = out_dir / "notebooks" / "report.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            REPORT_NOTEBOOK,
            executed,
            parameters=parameters,
            cwd=str(paths.PROJECT_ROOT),
            kernel_name="python3",
            progress_bar=False,
            execution_timeout=timeout,
        )
    except papermill.PapermillExecutionError as error:
        raise ReportError(f"report notebook failed: {error.ename}: {error.evalue} (see {executed})") from None
    title = yaml.safe_load((out_dir / "metadata.yaml").read_text())["title"]
    return records.write_atomic(out_dir / "index.html", render_html(executed, title))


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


def render_html(notebook_path: str | Path, title: str | None = None) -> str:
    """One self-contained HTML page: outputs only (no code, no stderr), images inline; `title`
    is the page's (default: the notebook's file name)."""
    notebook = nbformat.read(notebook_path, as_version=4)
    if title:
        notebook.metadata["title"] = title
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    exporter = HTMLExporter(
        template_name="lab",
        template_file="report.html.j2",
        extra_loaders=[jinja2.DictLoader({"report.html.j2": _TEMPLATE})],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    html, _ = exporter.from_notebook_node(notebook)
    return html

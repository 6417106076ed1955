"""What the notebooks show: an experiment's results, and the report's sections, tables and
numbered figures, displayed with IPython."""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd
from IPython.display import HTML, Markdown, display

from .. import paths
from ..study import experiments
from . import article, collate, outputs, plots, published
from .evidence import Study
from .outputs import Byline, experiment_figures
from .tables import READ_FIRST, comparison_table, readable, summary_table


def show_experiments(study: Study, written: dict[str, list[Path]], exclude=(published.REPLICATION,)) -> None:
    """Per experiment, in the registry's order: our results, the published numbers beside
    them, and the figures. Experiments found in the records but not in the registry come last.
    The published settings (`exclude`) are shown by `show_reproduction` instead."""
    registry = experiments.registry()
    known = {e.name for e in registry}
    titles = {e.name: e.title for e in registry if e.name not in exclude}
    found = [e for e in study.runs["experiment"].unique() if e not in known]
    for experiment in [*titles, *found]:
        show_markdown(f"#### {titles.get(experiment, experiment)}")
        ours = study.summary[study.summary["experiment"] == experiment]
        if ours.empty:
            show_markdown(f"No finished run of `{experiment}` in this report.")
        else:
            show_markdown("Our runs (mean and standard deviation over seeds; accuracies in percent):")
            show_table(summary_table(ours), READ_FIRST["summary"])
        published_rows = comparison_table(study.comparison, experiment)
        if len(published_rows):
            show_markdown("Published numbers beside ours (empty reproduced cells: no run with that setting):")
            show_table(published_rows, READ_FIRST["comparison"])
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
    published_rows = published.load_published()
    mine = published_rows[published_rows["experiment"] == experiment]
    if len(mine):
        show_markdown(f"**Published.** {published.findings(mine['source'].unique(), experiment, published_rows)}.")
    for figure in experiment_figures(spec, summary, runs, published.own_datasets(published_rows, runs)).values():
        display(figure)
    display(plots.learning_curves(collate.load_histories(runs), title=spec.title))
    return summary


def show_table(table: pd.DataFrame, first: list[str] | None = None) -> None:
    """Display a table in a notebook, numbers formatted as in the Markdown and LaTeX files. With
    `first` (tables.READ_FIRST), those columns, and the whole table folded under them."""
    text = readable(table)
    shown = [column for column in first or text.columns if column in text.columns]
    folded = [column for column in text.columns if column not in shown]
    html = text[shown].to_html(index=False, border=0)
    if folded:
        html += _folded(f"All {len(text.columns)} columns (adds: {', '.join(folded)})", text)
    display(HTML(html))


def _folded(summary: str, text: pd.DataFrame) -> str:
    """`text` under a one-line summary that opens it, scrolling sideways inside its own box."""
    table = text.to_html(index=False, border=0)
    return f'<details><summary>{summary}</summary><div style="overflow-x:auto">{table}</div></details>'


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
        show_table(comparison_table(matched), READ_FIRST["comparison"])
        show_markdown(f"**Verdict rule.** {published.VERDICT_RULE}")
    if f"learning_curves_{published.REPLICATION}" in written:
        show_figure(written[f"learning_curves_{published.REPLICATION}"])


def show_details(summary: str, table: pd.DataFrame) -> None:
    """A wide table folded under a one-line summary, so that the page keeps its width."""
    display(HTML(_folded(summary, readable(table))))


def show_markdown(text: str) -> None:
    display(Markdown(text))


# The report's sections: report.ipynb's headings, whose anchors nbconvert makes from their text.
SECTIONS = (
    "Reproducibility summary",
    "Introduction",
    "Methods",
    "Results",
    "Reproducing the original",
    "Beyond the original",
    "Claims",
    "Discussion",
    "Computational requirements",
    "Provenance",
    "References",
)
LINKED_TABLES = ("published_vs_reproduced", "claims", "summary", "runs", "requirements")


def show_front_matter(study: Study, out_dir, written: dict[str, list[Path]], byline: Byline) -> None:
    """The report's title, byline, links to its tables, run folders, executed notebooks and the
    landing page (relative to its index.html in `out_dir`), and its table of contents."""
    out_dir = Path(out_dir)

    def link(text: str, path: Path) -> str:
        return f"[{text}]({Path(os.path.relpath(path, out_dir)).as_posix()})"

    tables = [
        link(name.replace("_", " "), p) for name in LINKED_TABLES for p in written.get(name, []) if p.suffix == ".csv"
    ]
    runs = [
        link(experiment, Path(runs_dir) / experiment)
        for runs_dir in study.runs_dirs
        for experiment in study.runs["experiment"].unique()
        if (Path(runs_dir) / experiment).is_dir()
    ]
    notebooks = [link(p.stem, p) for p in sorted((out_dir / "notebooks").glob("*.ipynb")) if p.stem != "report"]
    # HTML, not a Markdown heading: nbconvert would give it an anchor whose id it does not make.
    display(HTML(f'<h1 id="title">{html.escape(outputs.title(study))}</h1>'))
    lines = [byline.text()]
    if (out_dir.parent / "index.html").is_file():
        lines.append(f"{link('All reports', out_dir.parent / 'index.html')}: every report's verdicts on one page.")
    lines += [
        f"**Tables (CSV):** {', '.join(tables)}." if tables else "",
        f"**Run folders:** {', '.join(runs)}." if runs else "",
        f"**Executed notebooks:** {', '.join(notebooks)}." if notebooks else "",
        "**Contents:** " + " · ".join(f"[{name}](#{name.replace(' ', '-')})" for name in SECTIONS),
    ]
    show_markdown("\n\n".join(line for line in lines if line))

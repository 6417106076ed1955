"""A report's files: its tables (CSV, Markdown, LaTeX), figures and ReScience metadata, written
from a `Study` under <out_dir>."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tomllib
from pathlib import Path

import pandas as pd
import yaml

from .. import catalog, paths, records
from ..study import experiments
from . import article, claims, plots, published
from .evidence import Study
from .tables import claims_table, comparison_table, notebooks_table, provenance_table, summary_table, write_tables

TO_BE_FILLED = "to be filled"
AUTHORS_ENV, DATE_ENV = "CONVMIXER_AUTHORS", "CONVMIXER_REPORT_DATE"


# ---- tables -------------------------------------------------------------------------------
def tables(study: Study, report_dir=None) -> dict[str, pd.DataFrame]:
    """The report's tables by file name, as written to <out_dir>/tables/."""
    result = {"summary": summary_table(study.summary), "published_vs_reproduced": comparison_table(study.comparison)}
    for experiment in study.comparison["experiment"].dropna().unique():
        result[f"published_vs_reproduced_{experiment}"] = comparison_table(study.comparison, experiment)
    result.update(
        {
            "claims": claims_table(study.claims, study.published),
            "requirements": study.requirements,
            "notebooks": notebooks_table(study.notebooks, study.runs),
            "runs": provenance_table(study.runs, report_dir),
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
        result.update(
            experiment_figures(
                experiment, study.summary, study.runs, published.own_datasets(study.published, study.runs)
            )
        )
    result["accuracy_vs_time"] = plots.accuracy_vs_compute(study.summary, "train_seconds_mean")
    result["accuracy_vs_compute"] = plots.accuracy_vs_compute(study.summary, "train_flops_mean")
    return result


# ---- output -------------------------------------------------------------------------------
def write_outputs(study: Study, out_dir: str | Path, byline: Byline | None = None) -> dict[str, list[Path]]:
    """Write tables, figures and metadata.yaml under `out_dir`; return the files by name."""
    out_dir = Path(out_dir)
    written = {name: write_tables({name: table}, out_dir / "tables") for name, table in tables(study, out_dir).items()}
    written.update(
        {name: plots.save_figure(figure, out_dir / "figures", name) for name, figure in figures(study).items()}
    )
    written["metadata"] = [write_metadata(study, out_dir, byline or Byline())]
    return written


@dataclasses.dataclass(frozen=True)
class Byline:
    """Who wrote the report and when: the user's own settings (`convmixer report --authors --date`,
    or $CONVMIXER_AUTHORS and $CONVMIXER_REPORT_DATE), never made up."""

    authors: tuple[str, ...] = ()
    date: str | None = None

    @classmethod
    def from_settings(cls, authors: str | None = None, date: str | None = None) -> Byline:
        """`authors` as "Name; Name" (None: $CONVMIXER_AUTHORS), `date` as written (None: $CONVMIXER_REPORT_DATE)."""
        authors = authors if authors is not None else os.environ.get(AUTHORS_ENV, "")
        names = tuple(name.strip() for name in authors.split(";") if name.strip())
        return cls(names, date or os.environ.get(DATE_ENV) or None)

    def text(self) -> str:
        """The byline, or once, that the user has not set it and how to."""
        if self.authors or self.date:
            return f"{', '.join(self.authors) or 'Authors not set'}; {self.date or 'date not set'}"
        return (
            "Authors and date not set: `convmixer report PROFILE --authors 'Name; Name' --date YYYY-MM-DD` "
            f"(or ${AUTHORS_ENV} and ${DATE_ENV})"
        )


def title(study: Study) -> str:
    """The report's title: the study (its datasets), its profile and what trained it. The ReScience
    template's '[¬Re]' prefix when more claim checks are contradicted than supported."""
    verdicts = study.claims["verdict"].value_counts()
    failed = verdicts.get(claims.CONTRADICTED, 0) > verdicts.get(claims.SUPPORTED, 0)
    datasets = " and ".join(catalog.name(d) for d in sorted(set(study.runs["dataset"].dropna()))) or "no runs"
    hardware = "; ".join(sorted(set(study.runs["device"].dropna()))) or "no recorded device"
    return (
        f"{'[¬Re]' if failed else '[Re]'} Patches Are All You Need? ConvMixer on {datasets}, "
        f"profile {study.profile}, trained on {hardware}"
    )


def metadata(study: Study, byline: Byline = Byline()) -> dict:
    """The ReScience C article metadata (template fields) with this report's values. Authors and
    date come from `byline` only; fields that only the journal gives (ORCID, affiliations, editor,
    reviewers) say "to be filled" or stay empty as in the template.
    """
    project = _pyproject().get("project", {})
    verdicts = study.claims["verdict"].value_counts()
    datasets = sorted(set(study.runs["dataset"].dropna()))
    paper = published.sources_table().set_index("key").loc["trockman2022"]
    return {
        "title": title(study),
        "authors": [{"name": name, "orcid": TO_BE_FILLED, "affiliations": TO_BE_FILLED} for name in byline.authors],
        "affiliations": [{"code": 1, "name": TO_BE_FILLED}],
        "keywords": "rescience c, machine learning, convmixer, keras, python",
        "code": [{"url": _code_url(project)}, {"doi": None}, {"swh": None}],
        "data": [{"url": catalog.DATASETS[name].homepage if name in catalog.DATASETS else name} for name in datasets]
        or [{"url": None}],
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
        "dates": [{"received": byline.date}, {"accepted": None}, {"published": None}],
        "article": [{"number": None}, {"doi": None}, {"url": None}],
        "journal": [{"name": "ReScience C"}, {"issn": "2430-3658"}, {"volume": None}, {"issue": None}],
    }


def write_metadata(study: Study, out_dir: str | Path, byline: Byline = Byline()) -> Path:
    text = yaml.safe_dump(metadata(study, byline), sort_keys=False, allow_unicode=True, width=100)
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

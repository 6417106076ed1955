"""The evidence a report shows: run folders (from any number of machines) and executed notebooks,
collated, with the published numbers matched and the claims judged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from . import claims, collate, published


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
        # A CIFAR-10 report compares with CIFAR-10 numbers only (the claims still quote every source).
        comparison=published.compare_with_published(summary, published.own_datasets(published_rows, runs)),
        claims=claims.claims(summary),
        requirements=collate.compute_requirements(runs, notebooks),
    )

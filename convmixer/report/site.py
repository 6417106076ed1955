"""The landing page of the reports, `reports/index.html`: every claim's verdict in every report that
tests it, every published number beside what each report reproduced, each report's hardware and
training hours, and links into the reports. Built from the reports' own tables (`tables/*.csv`),
so it says nothing a report does not."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import yaml

from ..records import write_atomic

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1240px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; width: 100%; font-size: 0.85em; table-layout: fixed; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top; overflow-wrap: anywhere; }
th { background: #f3f3f3; text-align: left; }
.supported, .reproduced { color: #1a7f37; } .contradicted, .differs { color: #b42318; }
.inconclusive { color: #7a5d00; } .not-tested, .not-run { color: #777; }
"""
SECTIONS = {"Reproducing the original": "Reproducing-the-original", "Results": "Results", "Methods": "Methods"}


def reports_in(root: Path) -> list[Path]:
    """The report folders under `root`: those with an index.html and the tables it was built with."""
    return sorted(
        d for d in Path(root).iterdir() if (d / "index.html").is_file() and (d / "tables" / "claims.csv").is_file()
    )


def claims_matrix(reports: list[Path]) -> pd.DataFrame:
    """One row per claim, one column per report: its verdict there, with effect, interval, test and scale."""
    rows = []
    for report in reports:
        for claim in pd.read_csv(report / "tables" / "claims.csv").to_dict("records"):
            rows.append({"claim": claim["claim"], "report": report.name, "cell": _claim_cell(claim)})
    table = pd.DataFrame(rows, columns=["claim", "report", "cell"])
    matrix = table.pivot_table(index="claim", columns="report", values="cell", aggfunc="first", sort=False)
    return _flat(matrix.reindex(columns=[r.name for r in reports]).fillna("").reset_index())


def published_matrix(reports: list[Path]) -> pd.DataFrame:
    """One row per published number a report retrained, one column per report: what it reproduced."""
    rows = []
    for report in reports:
        table = pd.read_csv(report / "tables" / "published_vs_reproduced.csv")
        for number in table[table["n"] > 0].to_dict("records"):
            setting = f"{number['setting']}, {int(number['epochs'])} epochs"
            key = f"{number['source']}: {setting}, {number['published acc (%)']:.2f}%"
            rows.append({"published number": key, "report": report.name, "cell": _published_cell(number)})
    table = pd.DataFrame(rows, columns=["published number", "report", "cell"])
    if table.empty:
        return pd.DataFrame(columns=["published number", *[r.name for r in reports]])
    matrix = table.pivot_table(index="published number", columns="report", values="cell", aggfunc="first", sort=False)
    return _flat(matrix.reindex(columns=[r.name for r in reports]).fillna("").reset_index())


def _flat(matrix: pd.DataFrame) -> pd.DataFrame:
    matrix.columns.name = None  # else to_html prints the pivot's "report" as an empty first column
    return matrix


def hardware(reports: list[Path]) -> pd.DataFrame:
    """Each report: its title, what trained its runs, how many runs and hours, and links into it."""
    rows = []
    for report in reports:
        needs = pd.read_csv(report / "tables" / "requirements.csv")
        title = _title(report)
        links = " · ".join(
            f'<a href="{report.name}/index.html#{anchor}">{name}</a>' for name, anchor in SECTIONS.items()
        )
        tables = " · ".join(
            f'<a href="{report.name}/tables/{name}.csv">{name}</a>'
            for name in ("claims", "published_vs_reproduced", "runs")
        )
        rows.append(
            {
                "report": f'<a href="{report.name}/index.html">{html.escape(title)}</a>',
                "trained on": html.escape("; ".join(sorted(set("; ".join(needs["devices"].dropna()).split("; "))))),
                "runs": int(needs["runs"].sum()),
                "training hours": f"{needs['train_hours'].sum():.2f}",
                "sections": links,
                "tables": tables,
            }
        )
    return pd.DataFrame(rows)


def build_site(root: Path) -> Path:
    """Write `root`/index.html from the reports under `root`; return its path."""
    reports = reports_in(root)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>ConvMixer reproducibility reports</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>ConvMixer reproducibility reports</h1>",
        "<p>Every verdict below is copied from a report's tables; each report states its rules (published "
        "numbers: an equivalence bound on the 95% t interval of the difference; claims: paired or Welch tests "
        "with Holm's correction) and what each verdict was measured on.</p>",
        "<h2 id='reports'>Reports</h2>",
        hardware(reports).to_html(index=False, escape=False, border=0),
        "<h2 id='claims'>Claims, report by report</h2>",
        claims_matrix(reports).to_html(index=False, escape=False, border=0),
        "<h2 id='published'>Published numbers retrained at their setting</h2>",
        published_matrix(reports).to_html(index=False, escape=False, border=0),
        "</body></html>",
    ]
    return write_atomic(Path(root) / "index.html", "\n".join(parts) + "\n")


def _verdict(text: str) -> str:
    word = str(text).split(" (")[0]
    return f'<span class="{word.replace(" ", "-")}">{html.escape(str(text))}</span>'


def _claim_cell(claim: dict) -> str:
    if claim["verdict"] == "not tested" or pd.isna(claim.get("scale")):
        return _verdict(claim["verdict"])
    numbers = ""
    if not pd.isna(claim.get("effect (points)")):
        numbers = (
            f"<br>{claim['effect (points)']:+.2f} points {claim['95% interval']}, {html.escape(str(claim['test']))}, "
            f"Holm p {_p(claim['p (Holm)'])}"
        )
    return f"{_verdict(claim['verdict'])}{numbers}<br><small>{html.escape(str(claim['scale']))}</small>"


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.2g}"


def _published_cell(number: dict) -> str:
    interval = "" if pd.isna(number.get("95% interval (bound)")) else f" {number['95% interval (bound)']}"
    return (
        f"{_verdict(number['verdict'])}<br>{number['reproduced acc (%)']:.2f}% (n={int(number['n'])}, "
        f"{int(number['our test images']):,} test images){interval}"
    )


def _title(report: Path) -> str:
    metadata = report / "metadata.yaml"
    if metadata.is_file():
        return str(yaml.safe_load(metadata.read_text()).get("title") or report.name)
    return report.name

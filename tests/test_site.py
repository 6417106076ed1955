"""The landing page of the reports, built from the committed reports' own tables."""

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from convmixer import cli
from convmixer.report import site

pytestmark = pytest.mark.unit

REPORTS = Path(__file__).resolve().parents[1] / "reports"


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and "href" in attrs:
            self.hrefs.append(attrs["href"])
        if "id" in attrs:
            self.ids.add(attrs["id"])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The committed reports' pages and tables copied to a folder, and the landing page built there."""
    root = tmp_path_factory.mktemp("reports")
    for report in site.reports_in(REPORTS):
        shutil.copytree(report / "tables", root / report.name / "tables")
        for name in ("index.html", "metadata.yaml"):
            shutil.copy(report / name, root / report.name / name)
    assert cli.main(["site", "--root", str(root)]) == 0
    return root, (root / "index.html").read_text()


def test_every_claim_of_every_report_is_one_row_with_its_verdict_in_each(built):
    root, page = built
    reports = site.reports_in(root)
    assert [r.name for r in reports] == ["cpu", "gpu-rescience", "tiny-cpu"]
    matrix = site.claims_matrix(reports)
    claims = {claim for r in reports for claim in pd.read_csv(r / "tables" / "claims.csv")["claim"]}
    assert set(matrix["claim"]) == claims and list(matrix.columns) == ["claim", *[r.name for r in reports]]
    cpu = pd.read_csv(root / "cpu" / "tables" / "claims.csv").set_index("claim")
    patches = matrix.set_index("claim").loc["Smaller patches improve accuracy", "cpu"]
    assert patches.startswith('<span class="supported">supported</span>')
    assert f"{cpu.loc['Smaller patches improve accuracy', 'effect (points)']:+.2f} points" in patches
    assert "ConvMixer-128/8 at 5 epochs, 9,000 training images" in patches


def test_every_retrained_published_number_has_what_each_report_reproduced(built):
    root, _ = built
    matrix = site.published_matrix(site.reports_in(root)).set_index("published number")
    rescience = matrix.loc["ReScience draft: cifar10, ConvMixer-256/8, p=4, k=9, adamw, 5 epochs, 70.62%", "cpu"]
    table = pd.read_csv(root / "cpu" / "tables" / "published_vs_reproduced.csv")
    row = table[table["setting"].eq("cifar10, ConvMixer-256/8, p=4, k=9, adamw") & table["epochs"].eq(5)].iloc[0]
    shown = f"{row['reproduced acc (%)']:.2f}% (n={row['n']}, {int(row['our test images']):,} test images)"
    assert f"{shown} {row['95% interval (bound)']}" in rescience and row["verdict"] in rescience


def test_the_landing_page_links_resolve_and_name_each_reports_hardware(built):
    root, page = built
    links = Links()
    links.feed(page)
    assert len(links.hrefs) >= 3 * 7
    for href in links.hrefs:
        path, _, anchor = href.partition("#")
        assert (root / path).is_file(), href
        if anchor:
            target = Links()
            target.feed((root / path).read_text())
            assert anchor in target.ids, href
    assert "CPU: AMD EPYC (2 cores)" in page and "NVIDIA H100" in page
    hours = pd.read_csv(root / "tiny-cpu" / "tables" / "requirements.csv")["train_hours"].sum()
    assert re.search(rf">{hours:.2f}<", page)

"""The HTML report built by papermill + nbconvert from hand-made run records."""

import re

import nbformat
import numpy as np
import pytest
import yaml
from PIL import Image
from records_factory import make_study
from screenshot import requires_chromium, screenshot

from convmixer.report import article, build, evidence, outputs

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    machine_a = make_study(root)
    out_dir = root / "out"
    index = build.build_report("smoke", out_dir, runs_dirs=[machine_a, root / "machine_b"])
    return {"root": root, "out": out_dir, "index": index, "html": index.read_text()}


def test_index_html_is_written_with_code_hidden(built):
    assert built["index"] == built["out"] / "index.html"
    html = built["html"]
    code_cells = re.findall(r'class="jp-Cell jp-CodeCell([^"]*)"', html)
    assert len(code_cells) >= 8 and all("jp-mod-noInput" in c for c in code_cells)
    assert 'class="jp-CodeMirrorEditor' not in html and 'class="highlight hl-ipython3' not in html
    assert "evidence.load_study" not in html and "show_experiments" not in html
    assert "Reproducibility summary" in html and "Provenance" in html
    # The page is titled as the article (metadata.yaml), not after the notebook file.
    title = yaml.safe_load((built["out"] / "metadata.yaml").read_text())["title"]
    assert re.search(r"<title>(.*?)</title>", html).group(1) == title.replace("'", "&#39;")


def test_figures_are_embedded_and_nothing_is_loaded_from_outside(built):
    html = built["html"]
    images = re.findall(r'<img[^>]* src="([^"]{0,30})', html)
    assert len(images) >= 9 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', html)


def test_report_shows_the_collated_numbers(built):
    html = built["html"]
    for number in ("60.00", "14.14", "83.70", "-23.70", "594186"):  # baseline mean, std, Keras example
        assert number in html, number
    assert "14 complete runs, 1 failed and 1 unfinished" in html
    assert "baseline_seed2 (epoch 5 of 10)" in html  # the unfinished run, with how far it got
    # The Keras example's number against the baseline's two seeds, with its verdict, in the text:
    # 23.70 points, within 2 x sqrt(14.14^2 x 1.5 + 60 x 40 / 40 + 83.7 x 16.3 / 10000) = 38.0.
    # Two seeds 14 points apart: a t interval with about one degree of freedom, far too wide to say.
    found = re.search(
        r"83.70% published, 60.00% ± 14.14 reproduced \(n=2, 40 test images\), -23.70 points "
        r"\(95% interval \[([-+.\d]+), ([-+.\d]+)\] \(±2\)\), inconclusive",
        html,
    )
    assert found and float(found[1]) < -50 and float(found[2]) > 2
    assert "ResourceExhaustedError: out of memory" in html
    assert "machine_b/runs/baseline/baseline_seed1" in html  # the duplicate copy is named
    for verdict in ("supported", "inconclusive", "not tested"):
        assert f"<td>{verdict}</td>" in html


def test_tables_figures_and_metadata_are_written(built):
    out = built["out"]
    for name in ("summary", "claims", "published_vs_reproduced", "published_vs_reproduced_baseline", "runs"):
        assert {p.suffix for p in (out / "tables").glob(f"{name}.*")} == {".csv", ".md", ".tex"}
    assert "60.00" in (out / "tables" / "summary.md").read_text()
    figures = (
        "sweep_patch_sweep",
        "sweep_kernel_sweep",
        "mixing_weights_dynamic_kernel",
        "learning_curves_adamw",
        "accuracy_vs_time",
    )
    for name in figures:
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
        assert (out / "figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    metadata = yaml.safe_load((out / "metadata.yaml").read_text())
    assert metadata["type"] == "Replication" and metadata["language"] == "Python"
    assert metadata["title"].startswith("[Re] Patches Are All You Need?")
    assert "Trockman" in metadata["replication"][0]["cite"]
    # The baseline's two seeds (50% and 70%) set the seed spread the single-seed sweeps are
    # judged with (s = 8.25 points pooled with AdamW's, 3 df): their claims are inconclusive, and
    # so is the baseline's gap of 30 ± 14.14 points over two seeds (a t interval with 1 df).
    assert "2 supported, 0 contradicted, 5 inconclusive, 2 not tested" in metadata["abstract"]  # +1: FLOPs


def test_executed_notebook_records_its_parameters(built):
    executed = nbformat.read(built["out"] / "notebooks" / "report.ipynb", as_version=4)
    parameters = executed.metadata["papermill"]["parameters"]
    assert parameters["profile"] == "smoke" and len(parameters["runs_dirs"]) == 2
    assert not executed.metadata["papermill"]["exception"]


def test_a_study_without_runs_still_reads(tmp_path):
    (tmp_path / "runs").mkdir()
    study = evidence.load_study("smoke", [tmp_path / "runs"])
    text = article.summary_markdown(study)
    assert "No finished run was found" in text
    assert "0 supported, 0 contradicted, 0 inconclusive, 9 not tested" in text
    written = outputs.write_outputs(study, tmp_path / "out")
    assert (tmp_path / "out" / "figures" / "sweep_patch_sweep.png").is_file()
    assert "learning_curves_baseline" not in written


def test_a_failing_report_is_one_clear_line(tmp_path):
    with pytest.raises(build.ReportError, match="report notebook failed: CollateError: no such runs folder"):
        build.build_report("smoke", tmp_path / "out", runs_dirs=[tmp_path / "nowhere"])


@requires_chromium
def test_the_rendered_report_shows_its_title_text_and_figures(built):
    """What a reader sees at 1280 px, read from the pixels: dark text from the top (the title), and
    the figures' colours further down; a blank or unstyled page, or one whose images do not load, fails."""
    png = screenshot(built["index"], built["root"] / "report.png", height=9000)
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert pixels.shape == (9000, 1280, 3)
    dark = pixels.max(axis=2) < 100
    assert dark[:250].mean() > 0.002, "no title text at the top of the page"
    # The figures' lines and markers in matplotlib's palette (saturated blues, oranges, greens): never
    # in the text and tables, which are grey or black (this page without its images has none).
    saturated = (pixels.max(axis=2) - pixels.min(axis=2)) > 80
    assert saturated.sum() > 5000, f"{saturated.sum()} pixels in figure colours"
    assert (saturated.mean(axis=1) > 0.002).sum() > 300, "the figures' colours fill too few rows"


def test_the_report_reads_as_an_article(built):
    """The sections of a ReScience replication, in order, and the provenance folded to fit the page."""
    headings = re.findall(r"<h2[^>]*>(.*?)<", built["html"])
    sections = [
        "Reproducibility summary",
        "Introduction",
        "Methods",
        "Results",
        "Discussion",
        "Computational requirements",
        "Provenance",
        "References",
    ]
    assert [h.strip() for h in headings if h.strip() in sections] == sections
    assert "Reproducing the original" in built["html"] and "Beyond the original" in built["html"]
    assert "<details><summary>Every run" in built["html"]

"""The committed reports as a reader gets them: each report notebook re-executed by nbval against
its own records reproduces what it shows, and every page (the landing page and each report) fits a
1280-px browser window in headless Chromium with every link resolving."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from screenshot import chromium, requires_chromium

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"
REPORT_NOTEBOOKS = sorted(REPORTS.glob("*/notebooks/report.ipynb"))
PAGES = [REPORTS / "index.html", *sorted(REPORTS.glob("*/index.html"))]
WIDTH = 1280


@pytest.mark.parametrize("notebook", REPORT_NOTEBOOKS, ids=lambda path: path.parents[1].name)
def test_a_committed_report_regenerates_from_its_records(notebook, tmp_path):
    """pytest --nbval on a copy of the report's folder (its records, without the model weights):
    every cell's output equals the committed one (tests/nbval-sanitize.cfg: the PNG bytes aside)."""
    report = notebook.parents[1]
    copy = tmp_path / "reports" / report.name
    shutil.copytree(report, copy, ignore=shutil.ignore_patterns("*.keras", "*.h5", "backup"))
    shutil.copy(REPORTS / "index.html", tmp_path / "reports" / "index.html")  # the front matter links it
    command = [sys.executable, "-m", "pytest", "--nbval", str(copy / "notebooks" / "report.ipynb")]
    command += ["--nbval-sanitize-with", str(ROOT / "tests" / "nbval-sanitize.cfg"), "-p", "no:cacheprovider"]
    command += ["-o", "addopts=", "-q", "--nbval-cell-timeout", "600"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:]
    assert re.search(r"\b\d+ passed\b", done.stdout), done.stdout[-1000:]


# Appended to a copy of a page: measures it as laid out and writes the result into the page.
MEASURE = """<script>
const out = {width: document.documentElement.scrollWidth, wide: [], anchors: [], links: []};
for (const el of document.querySelectorAll("table, img, figure, svg, pre")) {
  if (el.closest("details:not([open])") || el.closest("#measured")) continue;
  const box = el.getBoundingClientRect();
  const what = `${el.tagName} to ${Math.round(box.right)} px: ${el.textContent.slice(0, 80)}`;
  if (box.right > innerWidth + 1) out.wide.push(what);
}
for (const a of document.querySelectorAll("a[href]")) {
  const href = a.getAttribute("href");
  if (href.startsWith("#")) { if (!document.getElementById(decodeURIComponent(href.slice(1)))) out.anchors.push(href); }
  else if (!/^[a-z]+:/.test(href)) out.links.push(href);
}
const pre = document.createElement("pre"); pre.id = "measured"; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


def measured(page: Path, tmp_path: Path) -> dict:
    """The page laid out at 1280 px by headless Chromium: its width, what sticks out, its links."""
    copy = page.with_name(f".measured-{page.name}")
    copy.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    try:
        done = subprocess.run(
            [
                *chromium(tmp_path),
                f"--window-size={WIDTH},1000",
                "--virtual-time-budget=10000",
                "--dump-dom",
                copy.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        copy.unlink()
    found = re.search(r'<pre id="measured">(.*?)</pre>', done.stdout, re.S)
    assert found, f"Chromium gave no measurement of {page} (exit {done.returncode}): {done.stderr[-500:]}"
    return json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


@requires_chromium
@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.parent.name)
def test_every_page_fits_1280_px_and_its_links_resolve(page, tmp_path):
    found = measured(page, tmp_path)
    assert found["width"] <= WIDTH, f"{page} is {found['width']} px wide"
    assert not found["wide"], found["wide"]
    assert not found["anchors"], f"links to no anchor of the page: {found['anchors']}"
    targets = [(page.parent / href.split("#")[0]).resolve() for href in found["links"]]
    assert targets, "no link to the report's files"
    missing = [str(target) for target in targets if not target.exists()]
    assert not missing, missing
    for href in found["links"]:  # an anchor in another page: that page has it
        path, _, anchor = href.partition("#")
        if anchor:
            assert f'id="{anchor}"' in (page.parent / path).read_text(), href

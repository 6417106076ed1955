"""The report built: notebooks/report.ipynb executed with papermill against run folders, then
rendered by nbconvert into one self-contained index.html with the code hidden."""

from __future__ import annotations

import os
from pathlib import Path

import jinja2
import nbformat
import papermill
import yaml
from nbconvert import HTMLExporter

from .. import paths, records

REPORT_NOTEBOOK = paths.NOTEBOOKS / "report.ipynb"


class ReportError(RuntimeError):
    """The report could not be built, as one readable line."""


def build_report(
    profile: str,
    out_dir: str | Path | None = None,
    runs_dirs=None,
    notebooks_dirs=None,
    timeout: int = 600,
    authors: str | None = None,
    date: str | None = None,
) -> Path:
    """Execute report.ipynb into <out_dir>/notebooks/, render <out_dir>/index.html; return its path.

    `runs_dirs` defaults to <out_dir>/runs and `out_dir` to reports/<profile> (see
    paths.output_dir); the executed notebook also writes <out_dir>/tables,
    <out_dir>/figures and <out_dir>/metadata.yaml. `authors` ("Name; Name") and `date` are the
    byline (outputs.Byline). The executed notebook runs in its own folder and names every folder
    relative to it, so that it re-executes wherever the report is copied (tests/test_report_notebooks.py).
    """
    out_dir = paths.output_dir(profile, out_dir).resolve()
    executed = out_dir / "notebooks" / "report.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)

    def relative(folder) -> str:
        return Path(os.path.relpath(Path(folder).resolve(), executed.parent)).as_posix()

    parameters = {
        "profile": profile,
        "runs_dirs": [relative(d) for d in (runs_dirs or [out_dir / "runs"])],
        "out_dir": relative(out_dir),
        "notebooks_dirs": None if notebooks_dirs is None else [relative(d) for d in notebooks_dirs],
        "authors": authors,
        "date": date,
    }
    try:
        papermill.execute_notebook(
            REPORT_NOTEBOOK,
            executed,
            parameters=parameters,
            cwd=str(executed.parent),
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

"""Headless Chromium for the tests: screenshots of built reports (and for looking at a page as a
reader sees it: `python -c "from screenshot import screenshot; screenshot('index.html', 'page.png')"`),
and the command line the page-measuring tests start it with."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Skips a test without Chromium, except in CI, which installs it (.ci/run): there it must run.
requires_chromium = pytest.mark.skipif(
    not any(shutil.which(name) for name in BROWSERS) and not os.environ.get("CI"),
    reason="needs Chromium (apt-get install -y chromium)",
)


def chromium(profile_dir: str | Path) -> list[str]:
    """Headless Chromium with a fresh profile and nothing that reaches the network on its own."""
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if browser is None:
        raise RuntimeError("no Chromium found: install it (apt-get install -y chromium)")
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile_dir}",
    ]


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1280, height: int = 4000) -> Path:
    """Render `html_path` with headless Chromium into `png_path` (to check the page reads well)."""
    png_path = Path(png_path).resolve()
    png_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile_dir:
        command = [
            *chromium(profile_dir),
            f"--screenshot={png_path}",
            f"--window-size={width},{height}",
            Path(html_path).resolve().as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if not png_path.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {result.returncode}): {result.stderr.strip()[-300:]}")
    return png_path

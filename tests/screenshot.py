"""Headless-Chromium screenshots of built reports, for the tests (and for looking at a page
as a reader sees it: `python -c "from screenshot import screenshot; screenshot('index.html', 'page.png')"`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1280, height: int = 4000) -> Path:
    """Render `html_path` with headless Chromium into `png_path` (to check the page reads well)."""
    browser = next(
        (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None
    )
    if browser is None:
        raise RuntimeError("no Chromium found: install it (apt-get install -y chromium) to take screenshots")
    png_path = Path(png_path).resolve()
    png_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile_dir:
        command = [
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
            f"--screenshot={png_path}",
            f"--window-size={width},{height}",
            Path(html_path).resolve().as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if not png_path.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {result.returncode}): {result.stderr.strip()[-300:]}")
    return png_path

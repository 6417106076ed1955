"""The `convmixer` command's own behaviour that no other test covers: quiet TensorFlow by default,
its log on --verbose."""

import os
import subprocess
import sys

import pytest

from convmixer import cli

pytestmark = pytest.mark.unit


def test_tensorflow_is_quiet_unless_the_user_asks(monkeypatch, capsys):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    quiet = subprocess.run(
        [sys.executable, "-c", "import os, convmixer; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
    )
    assert quiet.stdout.strip() == "2"  # notes and warnings off, errors shown
    kept = subprocess.run(
        [sys.executable, "-c", "import os, convmixer; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "1"},
    )
    assert kept.stdout.strip() == "1"  # the user's own setting wins
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    assert cli.main(["list", "--verbose"]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"  # set before TensorFlow is imported, for the kernels too
    assert "profiles:" in capsys.readouterr().out

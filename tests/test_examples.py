"""The README's first command: ``examples/demo.py`` runs to its picture.

Run in a subprocess from a temporary folder, as a user runs it; it needs every backend it
reports on and matplotlib, so it runs where all are installed (tox env ``all``) and is
skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

import flowcore as fc

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def test_demo_trains_ports_samples_and_writes_its_picture(tmp_path):
    missing = [m for m in ("torch", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the demo needs {', '.join(missing)}")
    if len(fc.installed_backends()) < 3:
        pytest.skip("the demo ports between all three backends; some are not installed")
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every backend computes the same density" in done.stdout
    assert (tmp_path / "demo.png").stat().st_size > 10_000

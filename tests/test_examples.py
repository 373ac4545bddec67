"""The examples run, as a user runs them: a subprocess in a temporary folder.

Every example runs to its output and figure in tox env ``docs`` (part of ``.ci/run``), whose
figures (copied to the folder ``FLOWCORE_EXAMPLE_FIGURES`` names) go into the docs site.
Each needs every backend, scikit-learn and matplotlib, so where some are missing it is
skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import flowcore as fc

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _run(name: str, folder: pathlib.Path) -> str:
    missing = [
        m for m in ("torch", "matplotlib", "sklearn") if importlib.util.find_spec(m) is None
    ]
    if missing:
        pytest.skip(f"the examples need {', '.join(missing)}")
    if len(fc.installed_backends()) < 3:
        pytest.skip("the examples port between all three backends; some are not installed")
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for line in done.stdout.splitlines():  # every figure an example says it wrote is there
        if line.startswith("wrote ") and line.endswith(".png"):
            assert (folder / line.removeprefix("wrote ")).stat().st_size > 10_000, line
    figures = os.environ.get("FLOWCORE_EXAMPLE_FIGURES")
    if figures:  # the docs env: the figures go into the site
        pathlib.Path(figures).mkdir(parents=True, exist_ok=True)
        for picture in folder.glob("*.png"):
            shutil.copy(picture, figures)
    return done.stdout


def test_demo_trains_ports_samples_and_writes_its_picture(tmp_path):
    assert "every backend computes the same density" in _run("demo", tmp_path)
    assert (tmp_path / "demo.png").stat().st_size > 10_000


#: Every other example and a line its output must hold.
OTHERS = {
    "glow_steps": "loaded",
    "multiscale_graph": "loaded",
    "catalogue_tour": "keras  loaded",
    "custom_transforms": "torch  log_det=1.3863  swap where c>0: True",
    "freia_to_jax": "JAX vs PyTorch (float32)",
    "disentangling_arc": "wrote disentangling_arc.png",
    "two_moons": "every flow beats the Gaussian by more than 0.5 nats",
    "conditional_moons": "each condition gives its own moon",
    "porting": "every hand-over agrees",
    "digits": "held-out bits/pixel below 3.0: True",
    "anomaly_map": "every AUROC above 0.9: True",
}


def test_every_example_is_tested():
    assert {p.stem for p in EXAMPLES.glob("*.py")} == {"demo", *OTHERS}


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_example_runs(name, tmp_path):
    assert OTHERS[name] in _run(name, tmp_path)

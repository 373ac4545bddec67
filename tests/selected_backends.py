"""The backends a test module runs on: ``FLOWCORE_TEST_BACKENDS`` (comma-separated; set but
empty: none), default torch, jax and keras; each one not installed is skipped, with the
reason, and so reported as not run."""

from __future__ import annotations

import os

import pytest

import flowcore as fc

_wanted = os.environ.get("FLOWCORE_TEST_BACKENDS")
BACKENDS = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(
            name not in fc.installed_backends(), reason=f"{name} is not installed"
        ),
    )
    for name in (_wanted.split(",") if _wanted is not None else ["torch", "jax", "keras"])
    if name
]

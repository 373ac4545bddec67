"""The backends a test module runs on: ``FLOWCORE_TEST_BACKENDS`` (comma-separated; set but
empty: none), default torch, jax and keras; each one not installed is skipped, with the
reason, and so reported as not run. A test of one framework's own features (``torch.compile``,
``nnx.jit``, a backend's module) is marked :func:`subject`: it runs only where that backend is
selected, so an env that has the framework only as a dependency (Keras on JAX has JAX) does
not run it again."""

from __future__ import annotations

import os

import pytest

import flowcore as fc
from flowcore.backend import Backend, load_backend

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


def selected(name: str) -> bool:
    """Whether ``FLOWCORE_TEST_BACKENDS`` (unset: every backend) names backend ``name``."""
    return _wanted is None or name in _wanted.split(",")


def subject(name: str) -> pytest.MarkDecorator:
    """Skip a test (or a module, as ``pytestmark``) of backend ``name`` unless it is selected."""
    return pytest.mark.skipif(
        not selected(name), reason=f"{name} is not selected (FLOWCORE_TEST_BACKENDS)"
    )


#: The modules each backend needs.
FRAMEWORKS = {"torch": ("torch",), "jax": ("jax", "flax.nnx"), "keras": ("keras",)}


def require(name: str) -> Backend:
    """Backend ``name`` for a test of it: skipped unless selected and its modules import."""
    if not selected(name):
        pytest.skip(f"{name} is not selected (FLOWCORE_TEST_BACKENDS)")
    for module in FRAMEWORKS[name]:
        pytest.importorskip(module, reason=f"the {name} backend needs {module}")
    return load_backend(name)

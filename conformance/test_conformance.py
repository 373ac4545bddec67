"""The conformance suite under pytest, one test per check, case, dtype and device, through
the suite's pytest plugin (:mod:`flowcore.conformance.pytest_plugin`).

Backends: ``$FLOWCORE_TEST_BACKENDS`` (comma-separated), default every installed one; a
requested backend that is not installed, and a device a backend lacks (once per backend and
device), are skipped with the reason (not run, never passed). Keras runs on the process'
``KERAS_BACKEND``, named in the ids (``keras.tensorflow``). Cases:
``$FLOWCORE_CONFORMANCE_CASES`` (a name pattern, ``all`` or ``representative``), default
all; dtypes: ``$FLOWCORE_CONFORMANCE_DTYPES`` (comma-separated, or ``alternate``: one per
case in turn), default both. Known divergences are strict xfails listed in ``xfails.txt``.
The plugin's ``--flowcore-*`` options override each.
"""

from __future__ import annotations

import pytest


def test_backend_loads(flowcore_backend):
    flowcore_backend.check()


@pytest.mark.flowcore_conformance(kind="single")
def test_backend(flowcore_check):
    flowcore_check.run()


@pytest.mark.flowcore_conformance(kind="pair")
def test_cross_backend(flowcore_check):
    flowcore_check.run()

"""The conformance suite under pytest, one test per check, case, dtype and device.

Backends: ``$FLOWCORE_TEST_BACKENDS`` (comma-separated), default every installed one; a
requested backend that is not installed, and a device a backend lacks (once per backend and
device), are skipped with the reason (not run, never passed). Keras runs on the process'
``KERAS_BACKEND``, named in the ids (``keras.tensorflow``). Cases:
``$FLOWCORE_CONFORMANCE_CASES`` (a name pattern, ``all`` or ``representative``), default
all; dtypes: ``$FLOWCORE_CONFORMANCE_DTYPES`` (comma-separated, or ``alternate``: one per
case in turn), default both. Known divergences are strict xfails listed in ``xfails.txt``.
"""

from __future__ import annotations

import os

import pytest
from flowcore.conformance import cases, checks, plan

SELECTION = plan.select_backends()
XFAILS = plan.load_xfails()
CASES = cases.select(os.environ.get(plan.ENV_CASES))
PLAN = plan.case_dtypes(CASES, os.environ.get(plan.ENV_DTYPES))
SINGLE = [i for c, d in PLAN for i in plan.single_items(SELECTION, [c], d, XFAILS)]
SINGLE += plan.absent_device_items(SELECTION)  # one skip per device a backend lacks
PAIRS = (
    [i for c, d in PLAN for i in plan.pair_items(SELECTION, [c], d, XFAILS)]
    if len(SELECTION.loaded) >= 2
    else list(plan.pair_items(SELECTION, CASES, plan.DTYPES, XFAILS))  # one not-run each
)


def _params(items) -> list:
    return [
        pytest.param(
            item,
            id=item.key,
            marks=[pytest.mark.xfail(reason=item.xfail, strict=True)] if item.xfail else [],
        )
        for item in items
    ]


def _run(item: plan.Item) -> None:
    if item.not_run:
        pytest.skip(item.not_run)
    try:
        plan.execute(item)
    except checks.NotRun as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("name", SELECTION.names)
def test_backend_loads(name):
    if name in SELECTION.not_run:
        pytest.skip(SELECTION.not_run[name])
    problem = SELECTION.problem(name)
    assert problem is None, problem


@pytest.mark.parametrize("item", _params(SINGLE))
def test_backend(item):
    _run(item)


@pytest.mark.parametrize("item", _params(PAIRS))
def test_cross_backend(item):
    _run(item)

"""flowcore-strict's own tests: flowcore's conformance suite, through its pytest plugin.

``pytest tests`` here runs the representative slice, float32 and float64 in turn;
``pytest tests --flowcore-backends strict,torch`` adds the cross-backend checks against
torch, where the known divergences of ``xfails.txt`` are strict xfails.
"""

import pytest
from flowcore.conformance.pytest_plugin import BackendUnderTest, ConformanceCheck

pytestmark = pytest.mark.flowcore_conformance(
    backends="strict", cases="representative", dtypes="alternate", xfails="../xfails.txt"
)


def test_backend_loads(flowcore_backend: BackendUnderTest) -> None:
    flowcore_backend.check()


def test_conformance(flowcore_check: ConformanceCheck) -> None:
    flowcore_check.run()

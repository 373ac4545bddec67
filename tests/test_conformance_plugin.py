"""The conformance suite's pytest plugin, as a third party's test suite uses it: run by
pytester in this process, on the example backend (``examples/third_party_backend``,
registered at run time as its entry point would)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip(
    "array_api_strict",
    reason="array-api-strict is not installed (a test dependency: pip install 'flowcore[test]')",
)

from flowcore.conformance import cases, plan  # noqa: E402

import flowcore as fc  # noqa: E402

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).parents[1] / "examples" / "third_party_backend"
CASE = "aio_vec_default"
TESTS = f"""
import pytest

pytestmark = pytest.mark.flowcore_conformance(
    backends="strict", cases="{CASE}", dtypes="float64", xfails="known.txt", kind="single"
)

def test_backend_loads(flowcore_backend):
    flowcore_backend.check()

def test_conformance(flowcore_check):
    flowcore_check.run()
"""


@pytest.fixture
def strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    fc.register(fc.BackendInfo("strict", "flowcore_strict.backend", ("array_api_strict",)))
    for name in (plan.ENV_BACKENDS, plan.ENV_CASES, plan.ENV_DTYPES, plan.ENV_XFAILS):
        monkeypatch.delenv(name, raising=False)


def _expected(dtype: str) -> list[plan.Item]:
    selection = plan.select_backends(["strict"])
    return plan.items(selection, cases.select(CASE), dtype, {}, kinds=("single",))


def test_the_marker_chooses_the_items_and_an_xfail_file_beside_the_test(pytester, strict):
    expected = _expected("float64")
    listed = next(i for i in expected if not i.not_run and i.check == "forward")
    pytester.makefile(".txt", known=f"{listed.key}  # listed to see the strict xfail fire")
    pytester.makepyfile(test_plugin_user=TESTS)
    result = pytester.runpytest("-p", "no:randomly", "-rs")
    outcomes = result.parseoutcomes()
    # one load test and one test per item; the listed item passes, which its strict xfail
    # turns into the one failure
    assert outcomes.get("failed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*XPASS(strict)*listed to see the strict xfail fire*"])
    ran = outcomes["passed"] + outcomes.get("skipped", 0) + 1
    assert ran == len(expected) + 1
    assert outcomes.get("skipped", 0) >= sum(1 for i in expected if i.not_run) > 0
    result.stdout.fnmatch_lines(["*no cuda device for strict here*"])


def test_the_command_line_overrides_the_marker(pytester, strict):
    pytester.makefile(".txt", known="")
    pytester.makepyfile(test_plugin_user=TESTS)
    result = pytester.runpytest("--collect-only", "-q", "--flowcore-dtypes", "float32")
    ids = [line for line in result.stdout.lines if "::test_conformance[" in line]
    assert len(ids) == len(_expected("float32")) > 0
    assert all("-float32-" in i or "-all-" in i for i in ids), ids


def test_an_unknown_kind_in_the_marker_is_a_usage_error(pytester, strict):
    pytester.makepyfile(
        test_plugin_user="""
import pytest

@pytest.mark.flowcore_conformance(backends="strict", cases="aio_vec_default", kind="pairs")
def test_conformance(flowcore_check):
    flowcore_check.run()
"""
    )
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*UsageError*kind='pairs'*kind is 'single' or 'pair'*"])

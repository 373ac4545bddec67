"""The conformance suite as a pytest plugin, for a backend's own test suite.

pytest loads it by its ``pytest11`` entry point whenever flowcore is installed (``-p
no:flowcore`` turns it off); it imports nothing of flowcore until a test asks for it. A test
that takes an argument ``flowcore_check`` is run once per conformance item, one that takes
``flowcore_backend`` once per selected backend (does it load and have the hooks)::

    # tests/test_flowcore_conformance.py of a package that ships a backend
    import pytest

    pytestmark = pytest.mark.flowcore_conformance(backends="mybackend", xfails="xfails.txt")

    def test_backend_loads(flowcore_backend):
        flowcore_backend.check()

    def test_conformance(flowcore_check):
        flowcore_check.run()

What runs, each from the first of: the command line (``--flowcore-backends``,
``--flowcore-cases``, ``--flowcore-dtypes``, ``--flowcore-xfails``,
``--flowcore-sliced-checks``), the marker's keywords
(``backends``, ``cases``, ``dtypes``, ``xfails`` relative to the test file, and ``kind``:
``"single"`` or ``"pair"`` for one kind of check only), the environment
(``$FLOWCORE_TEST_BACKENDS``, ``$FLOWCORE_CONFORMANCE_CASES``,
``$FLOWCORE_CONFORMANCE_DTYPES``, ``$FLOWCORE_CONFORMANCE_XFAILS``,
``$FLOWCORE_CONFORMANCE_SLICED_CHECKS``), and the defaults (every
installed backend, every case, both dtypes). An item that cannot run is a skip with its
reason, a known divergence a strict xfail.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from . import plan

MARKER = "flowcore_conformance"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flowcore", "flowcore conformance suite")
    group.addoption(
        "--flowcore-backends", help="comma-separated backends (default: every installed one)"
    )
    group.addoption("--flowcore-cases", help="a case-name pattern, 'all' or 'representative'")
    group.addoption("--flowcore-dtypes", help="comma-separated dtypes, or 'alternate'")
    group.addoption(
        "--flowcore-sliced-checks",
        choices=("slice", "all"),
        help="where the sliced checks (compiled) run: 'slice' (each transform once) or 'all'",
    )
    group.addoption(
        "--flowcore-xfails", action="append", help="a file of known divergences (repeatable)"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(backends=, cases=, dtypes=, xfails=, kind=): what the flowcore_check and "
        "flowcore_backend arguments of the marked tests run",
    )


@dataclasses.dataclass(frozen=True)
class ConformanceCheck:
    """One item of the suite: :meth:`run` passes, fails, skips with the reason it cannot
    run, or (a known divergence) fails as its strict xfail expects."""

    item: plan.Item

    def run(self) -> None:
        from . import checks, plan

        if self.item.not_run:
            pytest.skip(self.item.not_run)
        try:
            plan.execute(self.item)
        except checks.NotRun as exc:
            pytest.skip(str(exc))


@dataclasses.dataclass(frozen=True)
class BackendUnderTest:
    """A selected backend: :meth:`check` fails if it is broken or lacks a hook, and skips
    with the reason if it is not installed."""

    name: str
    selection: plan.Selection

    def check(self) -> None:
        if self.name in self.selection.not_run:
            pytest.skip(self.selection.not_run[self.name])
        problem = self.selection.problem(self.name)
        assert problem is None, problem


def _setting(metafunc: pytest.Metafunc, name: str) -> Any:
    option = metafunc.config.getoption(f"--flowcore-{name}")
    if option is not None:
        return option
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is not None and name in marker.kwargs:
        value = marker.kwargs[name]
        if name == "xfails":
            values = [value] if isinstance(value, (str, Path)) else value
            return [metafunc.definition.path.parent / Path(v) for v in values]
        return value
    return None


def _names(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else value
    return tuple(p.strip() for p in parts if p.strip())


@functools.cache
def _selection(names: tuple[str, ...] | None) -> plan.Selection:
    from . import plan

    return plan.select_backends(names)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wanted = {"flowcore_check", "flowcore_backend"} & set(metafunc.fixturenames)
    if not wanted:
        return
    from . import cases, plan

    selection = _selection(_names(_setting(metafunc, "backends")))
    if "flowcore_backend" in wanted:
        metafunc.parametrize(
            "flowcore_backend",
            [BackendUnderTest(name, selection) for name in selection.names],
            ids=selection.names,
        )
    if "flowcore_check" in wanted:
        pattern = _setting(metafunc, "cases") or os.environ.get(plan.ENV_CASES)
        dtypes = _setting(metafunc, "dtypes") or os.environ.get(plan.ENV_DTYPES)
        marker = metafunc.definition.get_closest_marker(MARKER)
        kind = marker.kwargs.get("kind") if marker else None
        if kind not in (None, "single", "pair"):
            raise pytest.UsageError(
                f"{MARKER}(kind={kind!r}) on {metafunc.definition.nodeid}: "
                "kind is 'single' or 'pair' (or left out for both)"
            )
        chosen = plan.items(
            selection,
            cases.select(pattern),
            dtypes,
            plan.load_xfails(_setting(metafunc, "xfails") or ()),
            kinds=(kind,) if kind else ("single", "pair"),
            sliced=metafunc.config.getoption("--flowcore-sliced-checks"),
        )
        params = [
            pytest.param(ConformanceCheck(item), id=item.key, marks=_xfail_marks(item))
            for item in chosen
        ]
        metafunc.parametrize("flowcore_check", params)


def _xfail_marks(item: plan.Item) -> list[pytest.MarkDecorator]:
    return [pytest.mark.xfail(reason=item.xfail, strict=True)] if item.xfail else []

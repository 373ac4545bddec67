"""FrEIA's own test suite, run against flowcore's FrEIA drop-in.

The suite (FrEIA's ``tests/`` folder, kept unchanged under its license outside this
project, by default in ``../shared/external/freia-tests`` beside the repository) is copied
into a temporary folder with only its import lines changed: ``FrEIA.framework``,
``FrEIA.modules``, ``FrEIA.utils`` and ``FrEIA.distributions`` become
``flowcore.backends.torch.freia.*``. Then pytest runs it, and this prints how many tests
ran, passed, failed and did not run (with pytest's reasons).

Tests known not to pass yet are listed, with the reason, in ``expected_failures.txt``
beside this file; the run fails if any other test fails, or if a listed one does not (so
the list cannot go stale). Where the suite's folder is absent, it says that it ran nothing and
why, and exits 0.

Usage: ``python tests/freia_suite/run_suite.py [suite folder]`` (default: ``$FREIA_SUITE``,
else the shared folder).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import sys
import tempfile
from collections import Counter
from typing import Any

import pytest

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_SUITE = HERE.parents[2] / "shared" / "external" / "freia-tests"
DROP_IN = "flowcore.backends.torch.freia"
_IMPORT = re.compile(r"^(\s*)(from|import)\s+FrEIA\.(framework|modules|utils|distributions)\b")


def expected_failures() -> dict[str, str]:
    """Test ids (file::class::test) known to fail, with the reason."""
    out: dict[str, str] = {}
    for line in (HERE / "expected_failures.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            test, _, reason = line.partition(" ")
            out[test] = reason.strip()
    return out


def point_at_drop_in(source: pathlib.Path, target: pathlib.Path) -> int:
    """Copy the suite with its FrEIA import lines pointed at the drop-in; return how many
    lines changed (nothing else does)."""
    changed = 0
    target.mkdir()
    for path in sorted(source.iterdir()):
        if path.suffix != ".py":
            shutil.copy(path, target / path.name)
            continue
        lines = path.read_text().splitlines(keepends=True)
        for i, line in enumerate(lines):
            new = _IMPORT.sub(lambda m: f"{m[1]}{m[2]} {DROP_IN}.{m[3]}", line)
            changed += new != line
            lines[i] = new
        (target / path.name).write_text("".join(lines))
    return changed


class _Outcomes:
    """A pytest plugin recording each test's outcome and skip reason."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}
        self.reasons: Counter[str] = Counter()

    def pytest_runtest_logreport(self, report: Any) -> None:
        test = report.nodeid.split("/")[-1]
        if report.when == "call" or report.outcome != "passed":
            if report.skipped:
                self.outcomes[test] = "not run"
                self.reasons[str(report.longrepr[-1]).removeprefix("Skipped: ")] += 1
            elif test not in self.outcomes or report.failed:
                self.outcomes[test] = report.outcome

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.outcomes[report.nodeid.split("/")[-1]] = "failed"


def main(argv: list[str]) -> int:
    suite = pathlib.Path(argv[0] if argv else os.environ.get("FREIA_SUITE", DEFAULT_SUITE))
    if not (suite / "test_sequence.py").is_file():
        print(
            f"FrEIA's suite: ran nothing: {suite} is absent (FrEIA's tests/ folder belongs there)"
        )
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        target = pathlib.Path(tmp) / "freia_tests"
        changed = point_at_drop_in(suite, target)
        plugin = _Outcomes()
        old = os.getcwd()
        os.chdir(tmp)  # the suite writes its plots below the working folder
        try:
            pytest.main(
                [
                    os.fspath(target),
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "-W",
                    "ignore",
                    "--continue-on-collection-errors",
                ],
                plugins=[plugin],
            )
        finally:
            os.chdir(old)
    return report(suite, changed, plugin)


def report(suite: pathlib.Path, changed: int, plugin: _Outcomes) -> int:
    counts = Counter(plugin.outcomes.values())
    print(f"\nFrEIA's suite from {suite}, {changed} import lines pointed at {DROP_IN}:")
    print(
        f"  {len(plugin.outcomes)} tests: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['not run']} not run"
    )
    for reason, n in sorted(plugin.reasons.items()):
        print(f"  not run ({n}): {reason}")
    expected = expected_failures()
    unexpected = []
    for test, outcome in sorted(plugin.outcomes.items()):
        if outcome == "failed" and test in expected:
            print(f"  known failure: {test}: {expected[test]}")
        elif outcome == "failed":
            unexpected.append(f"  FAILED (not a known failure): {test}")
    failed = {t for t, outcome in plugin.outcomes.items() if outcome == "failed"}
    for test in sorted(set(expected) - failed):
        unexpected.append(f"  listed as a known failure but did not fail: {test}")
    print("\n".join(unexpected))
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

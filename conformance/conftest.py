"""pytest setup of the conformance suite: framework environment first, then a header line."""

from __future__ import annotations

import pytest
from flowcore.conformance import plan

plan.prepare_environment(plan.requested_backends())


def pytest_report_header(config: pytest.Config) -> list[str]:
    selection = plan.select_backends()
    lines = ["flowcore conformance backends: " + (", ".join(selection.labels.values()) or "none")]
    lines += [f"  not run: {reason}" for reason in selection.not_run.values()]
    lines += [f"  broken: {name}: {error}" for name, error in selection.broken.items()]
    return lines

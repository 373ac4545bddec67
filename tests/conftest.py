"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest


@pytest.fixture
def freia():
    """FrEIA 0.2's modules with torch's default dtype float64 while the test runs."""
    torch = pytest.importorskip("torch", reason="FrEIA 0.2 as oracle needs torch")
    pytest.importorskip("FrEIA", reason="FrEIA 0.2 as oracle: pip install 'flowcore[freia]'")
    import FrEIA.modules as fm

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield fm
    torch.set_default_dtype(previous)

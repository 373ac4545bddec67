"""Normalisation: ActNorm with data-dependent initialisation."""

from __future__ import annotations

__all__: list[str] = []

"""Coupling blocks: FrEIA's NICE, RealNVP, GLOW, GIN, one-sided and conditional affine
couplings."""

from __future__ import annotations

__all__: list[str] = []

"""Conformance cases of flowcore.transforms.couplings."""

from __future__ import annotations

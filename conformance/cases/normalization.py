"""Conformance cases of flowcore.transforms.normalization."""

from __future__ import annotations

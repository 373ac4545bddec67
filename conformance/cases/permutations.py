"""Conformance cases of flowcore.transforms.permutations."""

from __future__ import annotations

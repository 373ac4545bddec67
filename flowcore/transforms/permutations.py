"""Permutations and linear maps: PermuteRandom, fixed linear maps and 1x1 convolutions,
Householder and orthogonal maps, LU-parametrised invertible linear maps and 1x1 convolutions.
"""

from __future__ import annotations

__all__: list[str] = []

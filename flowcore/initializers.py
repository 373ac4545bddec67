"""Initialisers: functions of a ``numpy.random.Generator`` returning a float64/int64 array.

Each returns ``init(rng) -> np.ndarray`` for a :class:`flowcore.spec.ParamSpec`.
"""

from __future__ import annotations

import math

import numpy as np

from .spec import Initializer, Shape


def zeros(shape: Shape) -> Initializer:
    return lambda rng: np.zeros(shape)


def constant(shape: Shape, value: float) -> Initializer:
    return lambda rng: np.full(shape, float(value))


def normal(shape: Shape, std: float) -> Initializer:
    return lambda rng: std * rng.standard_normal(shape)


def fan_in_uniform(shape: Shape, fan_in: int) -> Initializer:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Linear and Conv layers."""
    bound = 1.0 / math.sqrt(fan_in)
    return lambda rng: rng.uniform(-bound, bound, shape)


def permutation(n: int) -> Initializer:
    """A uniformly random permutation of ``range(n)`` (int64)."""
    return lambda rng: rng.permutation(n).astype(np.int64)


def permutation_matrix(n: int) -> Initializer:
    """The matrix ``P`` with ``P[i, perm[i]] = 1``, so that ``P @ x == x[perm]``."""

    def init(rng: np.random.Generator) -> np.ndarray:
        return np.eye(n)[rng.permutation(n)]

    return init


def special_orthogonal(n: int) -> Initializer:
    """A Haar-distributed rotation from SO(n): QR of a Gaussian matrix with signs fixed
    (Mezzadri 2007), then one column flipped if needed so that ``det = +1``."""

    def init(rng: np.random.Generator) -> np.ndarray:
        q, r = np.linalg.qr(rng.standard_normal((n, n)))
        q = q * np.sign(np.diag(r))
        if np.linalg.det(q) < 0:
            q[:, 0] = -q[:, 0]
        return q

    return init

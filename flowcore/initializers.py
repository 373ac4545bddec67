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


def array(value: np.ndarray) -> Initializer:
    """A given fixed value (a fresh float64/int64 copy each call); draws nothing."""
    fixed = np.array(value, copy=True)
    return lambda rng: fixed.copy()


def lu_decomposition(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``a = P L U`` by Gaussian elimination with partial pivoting (as LAPACK's getrf and
    ``scipy.linalg.lu``): returns ``perm`` (int64, ``P[i, perm[i]] = 1`` so ``P @ z ==
    z[perm]``), unit lower triangular ``L`` and upper triangular ``U``."""
    u = np.array(a, dtype=np.float64, copy=True)
    n = u.shape[0]
    lower = np.eye(n)
    rows = np.arange(n)  # a[rows] = L U
    for k in range(n - 1):
        pivot = k + int(np.argmax(np.abs(u[k:, k])))
        if pivot != k:
            u[[k, pivot]] = u[[pivot, k]]
            lower[[k, pivot], :k] = lower[[pivot, k], :k]
            rows[[k, pivot]] = rows[[pivot, k]]
        if u[k, k] != 0.0:
            factors = u[k + 1 :, k] / u[k, k]
            lower[k + 1 :, k] = factors
            u[k + 1 :, k:] -= np.outer(factors, u[k, k:])
        u[k + 1 :, k] = 0.0
    return np.argsort(rows).astype(np.int64), lower, u


def lu_rotation(n: int) -> dict[str, Initializer]:
    """Glow's LU initialisation: a random rotation :func:`special_orthogonal` ``= P L (U +
    diag(s))`` split into its parts ``perm`` (int64), ``lower`` (L, unit diagonal), ``upper``
    (strictly upper U), ``log_s`` (log|s|) and ``sign_s`` (sign s).

    The parts share one rotation: each but ``sign_s`` restores the generator's state after
    drawing, so declare them in this order (``sign_s`` last) and they all see the same one,
    and the generator moves on once.
    """

    def part(name: str, advance: bool) -> Initializer:
        def draw(rng: np.random.Generator) -> np.ndarray:
            state = rng.bit_generator.state
            perm, lower, upper = lu_decomposition(special_orthogonal(n)(rng))
            if not advance:
                rng.bit_generator.state = state
            s = np.diag(upper)
            values = {
                "perm": perm,
                "lower": lower,
                "upper": np.triu(upper, k=1),
                "log_s": np.log(np.abs(s)),
                "sign_s": np.sign(s),
            }
            return values[name]

        return draw

    names = ("perm", "lower", "upper", "log_s", "sign_s")
    return {name: part(name, advance=name == names[-1]) for name in names}

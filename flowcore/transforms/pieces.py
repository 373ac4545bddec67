r"""Pieces the transforms share: channel splits, conditions, soft clamps, channel maps.

Each is a function of the array namespace ``xp``, written with strict Array API indexing
(``x[:, a:b, ...]``, never ``x[:, a:b]`` on arrays of unknown rank).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

from ..errors import FlowError, ShapeError
from ..spec import Array, Namespace, Shape

#: Named soft clamps :math:`s = \mathrm{clamp}(a)` bounding a log-scale to (-α, α).
ClampName = Literal["scaled_tanh", "tanh", "atan", "sigmoid"]
CLAMPS: tuple[str, ...] = ("scaled_tanh", "tanh", "atan", "sigmoid")
#: FrEIA's ATAN factor, hard-coded as 0.636 rather than 2/pi (FrEIA issue #19).
FREIA_ATAN_FACTOR = 0.636


def channels(x: Array, start: int, stop: int) -> Array:
    """Channels ``start:stop`` of a (batch, C, ...) array."""
    return x[:, start:stop, ...]


def split_channels(x: Array, sizes: Sequence[int]) -> list[Array]:
    """Split the channel axis into consecutive parts of the given sizes."""
    out, start = [], 0
    vector = x.ndim == 2  # x[:, a:b] indexes every axis; higher ranks need the ellipsis
    for size in sizes:
        out.append(x[:, start : start + size] if vector else x[:, start : start + size, ...])
        start += size
    return out


def freia_split(total: int, split_len: float | int) -> tuple[int, int]:
    """FrEIA's coupling split: ``round(C * split_len)`` (banker's rounding) for a fraction,
    the count itself for an int; returns the sizes of the two halves."""
    first = split_len if isinstance(split_len, int) else round(total * split_len)
    if not 0 < first < total:
        raise ShapeError(
            f"split_len {split_len!r} splits {total} channels into {first} and {total - first}"
        )
    return first, total - first


def pixels(x: Array) -> int:
    """The number of positions per channel (1 for vectors)."""
    if x.ndim == 2:
        return 1
    return math.prod([int(d) for d in x.shape[2:]])  # a list: torch.compile traces it


def condition_channels(shape: Shape, conditions: Sequence[Shape], owner: str) -> int:
    """Channels the conditions add to an input of ``shape``; each must be a vector or match
    the input's spatial shape."""
    for i, c in enumerate(conditions):
        if tuple(c[1:]) != tuple(shape[1:]) and len(c) != 1:
            raise ShapeError(
                f"{owner}: condition {i} must be a vector (K,) or match the input's spatial "
                f"shape {shape[1:]}, got {c}"
            )
    return sum(c[0] for c in conditions)


def with_conditions(xp: Namespace, x: Array, cs: Sequence[Array]) -> Array:
    """``x`` with the conditions concatenated on the channel axis; a vector condition is
    broadcast over the positions of an image."""
    if not cs:
        return x
    spatial = x.ndim - 2
    positions = xp.zeros_like(channels(x, 0, 1))
    parts = [x] + [
        c[(...,) + (None,) * spatial] + positions if c.ndim == 2 and spatial else c for c in cs
    ]
    return xp.concat(parts, axis=1)


def soft_clamp(
    xp: Namespace, a: Array, alpha: float, kind: ClampName | Callable[[Array], Array]
) -> Array:
    r"""A log-scale bounded to :math:`(-\alpha, \alpha)`:

    - ``"scaled_tanh"``: :math:`\alpha \tanh(a/\alpha)` (FrEIA master's AllInOneBlock);
    - ``"tanh"``: :math:`\alpha \tanh(a)` (FrEIA 0.2's AllInOneBlock, anomalib; FrEIA's
      coupling ``TANH``);
    - ``"atan"``: :math:`0.636\,\alpha \arctan(a)` (FrEIA's coupling ``ATAN``);
    - ``"sigmoid"``: :math:`2\alpha(\sigma(a) - 1/2)` (FrEIA's coupling ``SIGMOID``);
    - a callable ``f``: :math:`\alpha f(a)`, on the backend's own arrays (not portable).
    """
    if callable(kind):
        return alpha * kind(a)
    if kind == "scaled_tanh":
        return alpha * xp.tanh(a / alpha)
    if kind == "tanh":
        return alpha * xp.tanh(a)
    if kind == "atan":
        return (alpha * FREIA_ATAN_FACTOR) * xp.atan(a)
    if kind == "sigmoid":
        return (2.0 * alpha) * (1.0 / (1.0 + xp.exp(-a)) - 0.5)
    raise FlowError(f"unknown soft clamp {kind!r}; use one of {CLAMPS} or a callable")


def channel_matmul(xp: Namespace, w: Array, x: Array) -> Array:
    """``W x`` on the channel axis: ``x @ W^T`` for vectors, a 1x1 convolution for images."""
    if x.ndim == 2:
        return xp.matmul(x, xp.permute_dims(w, (1, 0)))
    rest = tuple(int(d) for d in x.shape[1:])
    flat = xp.reshape(x, (-1, rest[0], math.prod(rest[1:])))
    return xp.reshape(xp.matmul(w, flat), (-1, *rest))


def take_channels(xp: Namespace, x: Array, index: Array) -> Array:
    """``x[:, index]``: a gather on the channel axis."""
    return xp.take(x, index, axis=1)

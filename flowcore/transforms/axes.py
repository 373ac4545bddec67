r"""Acting on chosen axes of a channels-last input, as gyoza's ``FlowLayer(shape, axes)``.

gyoza's layers act on the ``axes`` of their input (counted as gyoza counts them: the batch
axis is 0, so every axis is at least 1), whose sizes are ``shape``, and sweep over the other
axes. Here that is one mechanism, :class:`AxesLayout`, which every layer and mask of
:mod:`flowcore.transforms.gyoza` uses:

- :meth:`AxesLayout.flatten` moves the chosen axes behind the others (``permute_dims``) and
  flattens them into one axis of :math:`n = \prod` ``shape`` entries (row-major over the
  chosen axes, in ascending order) and the other non-batch axes into one swept axis of
  :math:`M` positions (1 when there are none): ``(batch, M, n)``;
- :meth:`AxesLayout.unflatten` is its inverse.

Unlike gyoza, whose plain reshape into ``axes[0]`` is only right for contiguous axes, this is
right for non-contiguous ones too (for contiguous axes both give the same flattening). The
batch size is never used (the batch axis reshapes with ``-1``), so it may be unknown, as it
is in a Keras graph.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from ..errors import ShapeError
from ..options import OptionError
from ..spec import Array, Namespace, Shape, SimpleTransform

__all__ = ["AxesLayout", "OnAxes", "check_shape_and_axes"]


def check_shape_and_axes(label: str, shape: Any, axes: Any) -> tuple[Shape, tuple[int, ...]]:
    """The options ``shape`` and ``axes`` as tuples of ints, checked: ``axes`` strictly
    ascending and each at least 1 (the batch axis is 0), ``shape`` positive sizes, one per
    axis. Raises :class:`~flowcore.options.OptionError` naming ``label`` and the value."""

    def ints(name: str, value: Any) -> tuple[int, ...]:
        try:
            out = tuple(value)
        except TypeError:
            raise OptionError(
                f"{label}: option {name} must be a sequence of ints, got {value!r}"
            ) from None
        if not out or not all(isinstance(v, int) and not isinstance(v, bool) for v in out):
            raise OptionError(
                f"{label}: option {name} must be a non-empty sequence of ints, got {value!r}"
            )
        return out

    shape, axes = ints("shape", shape), ints("axes", axes)
    if any(a < 1 for a in axes):
        raise OptionError(
            f"{label}: option axes must be >= 1 (axis 0 is the batch axis), got {axes}"
        )
    if len(set(axes)) != len(axes):
        raise OptionError(f"{label}: option axes must not repeat an axis, got {axes}")
    if list(axes) != sorted(axes):
        raise OptionError(f"{label}: option axes must be strictly ascending, got {axes}")
    if any(s < 1 for s in shape):
        raise OptionError(f"{label}: option shape must hold positive sizes, got {shape}")
    if len(shape) != len(axes):
        raise OptionError(
            f"{label}: options shape and axes must have the same length (a size per axis), "
            f"got shape {shape} and axes {axes}"
        )
    return shape, axes


@dataclasses.dataclass(frozen=True)
class AxesLayout:
    """Where the chosen ``axes`` (batch = 0) lie in a sample of ``sample_shape`` (batch axis
    excluded), and how to bring them to ``(batch, M, n)`` and back."""

    sample_shape: Shape
    axes: tuple[int, ...]

    @classmethod
    def bind(
        cls, label: str, sample_shape: Sequence[int], shape: Shape, axes: tuple[int, ...]
    ) -> AxesLayout:
        """The layout of ``axes`` in an input of ``sample_shape``, checked against the options
        (axes in range, their sizes equal to ``shape``); a :class:`ShapeError` otherwise."""
        sample = tuple(int(d) for d in sample_shape)
        rank = len(sample)
        if axes[-1] > rank:
            raise ShapeError(
                f"{label}: axes {axes} out of range for an input of shape {sample} (batch "
                f"excluded; axes count the batch as 0, so they must lie in 1..{rank})"
            )
        got = tuple(sample[a - 1] for a in axes)
        if got != tuple(shape):
            raise ShapeError(
                f"{label}: option shape {tuple(shape)} does not match the input's sizes {got} "
                f"on axes {axes} (input shape {sample}, batch excluded)"
            )
        return cls(sample, tuple(axes))

    @property
    def others(self) -> tuple[int, ...]:
        """The swept axes (batch = 0 excluded), ascending."""
        return tuple(a for a in range(1, len(self.sample_shape) + 1) if a not in self.axes)

    @property
    def n(self) -> int:
        """Entries of the chosen axes."""
        return math.prod([self.sample_shape[a - 1] for a in self.axes])

    @property
    def m(self) -> int:
        """Positions swept over (the product of the other non-batch sizes; 1 if none)."""
        return math.prod([self.sample_shape[a - 1] for a in self.others])

    @property
    def order(self) -> tuple[int, ...]:
        """The ``permute_dims`` order bringing the chosen axes behind the others."""
        return (0, *self.others, *self.axes)

    @property
    def moved(self) -> bool:
        """Whether the chosen axes must move (they are not already the trailing ones)."""
        return self.order != tuple(range(len(self.sample_shape) + 1))

    def flatten(self, xp: Namespace, x: Array) -> Array:
        """``x`` of shape ``(batch, *sample_shape)`` as ``(batch, M, n)``."""
        if self.moved:
            x = xp.permute_dims(x, self.order)
        return xp.reshape(x, (-1, self.m, self.n))

    def unflatten(self, xp: Namespace, z: Array) -> Array:
        """The inverse of :meth:`flatten`: ``(batch, M, n)`` back to ``(batch, *sample)``."""
        moved_shape = tuple(self.sample_shape[a - 1] for a in self.order[1:])
        x = xp.reshape(z, (-1, *moved_shape))
        if self.moved:
            back = [0] * len(self.order)
            for position, axis in enumerate(self.order):
                back[axis] = position
            x = xp.permute_dims(x, tuple(back))
        return x


@dataclasses.dataclass(frozen=True)
class OnAxes(SimpleTransform):
    """Base of the transforms that act on chosen axes (gyoza's ``FlowLayer``): the options
    ``shape`` and ``axes``, their checks, the shape checks and the layout of an input."""

    shape: tuple[int, ...]
    axes: tuple[int, ...]

    def __post_init__(self) -> None:
        shape, axes = check_shape_and_axes(self.label, self.shape, self.axes)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "axes", axes)
        super().__post_init__()

    @property
    def n(self) -> int:
        """Entries of the chosen axes, :math:`\\prod` ``shape``."""
        return math.prod(self.shape)

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        if conditions:
            raise ShapeError(f"{self.label}: takes no conditions, got {len(conditions)}")
        self.bind(shape)
        return tuple(shape)

    def bind(self, sample_shape: Sequence[int]) -> AxesLayout:
        """The layout of this transform's axes in an input of ``sample_shape``."""
        return AxesLayout.bind(self.label, sample_shape, self.shape, self.axes)

    def layout(self, x: Array) -> AxesLayout:
        """The layout of an input array ``x`` (with its batch axis)."""
        return AxesLayout(tuple(int(d) for d in x.shape[1:]), self.axes)

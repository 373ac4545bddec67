r"""The one contract: framework-free specs of transforms and subnetworks.

A spec is a frozen dataclass of hyper-parameters. For a given :class:`Signature` (input,
output and condition shapes, batch axis excluded) it declares

- its parameters (:class:`ParamSpec`: name, shape, kind, trainable or buffer, and an
  initialiser drawing from a ``numpy.random.Generator``), and
- its children (:class:`Child`): subnetworks, and for composite transforms the transforms
  they are made of,

and it computes with only the Array API namespace ``xp`` it is handed (plus the few extras
listed in :mod:`flowcore.namespace`). Backends never hold per-transform code: they create
native parameters from the declarations and call this math.

A :class:`Transform` maps inputs ``xs`` to outputs ``ys``::

    forward(xp, params, subnets, xs, cs, jac) -> (ys, log_det)   # log|det dy/dx|
    inverse(xp, params, subnets, ys, cs, jac) -> (xs, log_det)   # log|det dx/dy| = -that

``log_det`` has shape ``(batch,)``. ``params`` maps the spec's own parameter names to arrays;
``subnets`` maps child names to callables: a subnetwork child is ``f(x) -> y``, a transform
child is ``f(xs, cs, rev, jac) -> (ys, log_det)``.

A :class:`Subnet` is a non-invertible function ``apply(xp, params, subnets, x) -> y`` whose
input and output shapes its parent chooses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

Shape = tuple[int, ...]
Array = Any
Namespace = Any
Initializer = Callable[[np.random.Generator], np.ndarray]


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """A declared parameter.

    ``kind="float"`` parameters take the model's dtype; ``kind="index"`` ones are int64
    (index buffers such as hard permutations) and are never trainable. ``init(rng)`` returns
    the initial value as a float64 or int64 NumPy array of ``shape``.
    """

    name: str
    shape: Shape
    init: Initializer
    trainable: bool = True
    kind: Literal["float", "index"] = "float"

    def __post_init__(self) -> None:
        if "." in self.name or not self.name:
            raise ValueError(f"parameter name {self.name!r} must be non-empty without '.'")
        if self.kind == "index" and self.trainable:
            raise ValueError(f"index parameter {self.name!r} cannot be trainable")


@dataclasses.dataclass(frozen=True)
class Signature:
    """Shapes of a module's inputs, outputs and conditions, batch axis excluded."""

    inputs: tuple[Shape, ...]
    outputs: tuple[Shape, ...]
    conditions: tuple[Shape, ...] = ()


@dataclasses.dataclass(frozen=True)
class NativeSubnet:
    """A backend-native subnetwork constructor ``f(c_in, c_out)``, as FrEIA takes it.

    Only the backend that owns the returned module can run it; its weights are not part of
    the canonical parameters.
    """

    constructor: Callable[[int, int], Any]

    @property
    def name(self) -> str:
        return getattr(self.constructor, "__name__", type(self.constructor).__name__)


@dataclasses.dataclass(frozen=True)
class Child:
    """A named child module of a spec.

    For a subnetwork child give ``outputs`` (its parent chooses them); for a transform child
    leave ``outputs`` as None and they are inferred with the child's ``output_shapes``.
    """

    name: str
    spec: Spec | NativeSubnet
    inputs: tuple[Shape, ...]
    conditions: tuple[Shape, ...] = ()
    outputs: tuple[Shape, ...] | None = None


class Spec:
    """Base of every spec: declarations default to none.

    Subclasses register themselves for :mod:`flowcore.serialize`; a spec that is not a
    dataclass implements ``get_config`` and ``from_config``.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        from .serialize import register_spec

        register_spec(cls)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments of a non-dataclass spec (dataclass fields otherwise)."""
        raise NotImplementedError(f"{self.label} must implement get_config")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Spec:
        return cls(**config)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        """Parameters of this module (not of its children) for the given shapes."""
        return ()

    def children(self, sig: Signature) -> Sequence[Child]:
        """Child modules, in a fixed order."""
        return ()

    @property
    def label(self) -> str:
        """The name errors use for this spec."""
        return type(self).__name__


class Subnet(Spec):
    """A non-invertible network ``y = f(x)`` whose in and out shapes the parent chooses."""

    def validate(self, in_shape: Shape, out_shape: Shape) -> None:
        """Raise :class:`flowcore.errors.ShapeError` when the shapes do not suit this net."""

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], subnets: Mapping[str, Any], x: Array
    ) -> Array:
        raise NotImplementedError


class Transform(Spec):
    """An invertible map with a log-det; see the module docstring for the contract."""

    #: Number of inputs the transform takes; None: any number.
    n_inputs: int | None = 1

    def output_shapes(
        self, inputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        """Shape inference: the output shapes for these input and condition shapes."""
        return tuple(tuple(s) for s in inputs)

    def signature(
        self, inputs: Sequence[Sequence[int]], conditions: Sequence[Sequence[int]] = ()
    ) -> Signature:
        ins = tuple(tuple(int(d) for d in s) for s in inputs)
        conds = tuple(tuple(int(d) for d in s) for s in conditions)
        if self.n_inputs is not None and len(ins) != self.n_inputs:
            from .errors import ShapeError

            raise ShapeError(f"{self.label}: expected {self.n_inputs} input(s), got {len(ins)}")
        return Signature(ins, tuple(self.output_shapes(ins, conds)), conds)

    def forward(
        self,
        xp: Namespace,
        params: Mapping[str, Array],
        subnets: Mapping[str, Any],
        xs: Sequence[Array],
        cs: Sequence[Array],
        jac: bool,
    ) -> tuple[list[Array], Array]:
        raise NotImplementedError

    def inverse(
        self,
        xp: Namespace,
        params: Mapping[str, Array],
        subnets: Mapping[str, Any],
        ys: Sequence[Array],
        cs: Sequence[Array],
        jac: bool,
    ) -> tuple[list[Array], Array]:
        raise NotImplementedError


def batch_zeros(xp: Namespace, x: Array) -> Array:
    """A zero log-det of shape ``(batch,)`` with the dtype and device of ``x``."""
    return xp.zeros_like(x[(slice(None),) + (0,) * (x.ndim - 1)])


def sum_per_sample(xp: Namespace, x: Array) -> Array:
    """Sum over every axis but the batch axis: shape ``(batch,)``."""
    return xp.sum(x, axis=tuple(range(1, x.ndim)))

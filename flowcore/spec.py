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

A :class:`Transform` maps inputs ``xs`` to outputs ``ys`` with a log-det, given a
:class:`Context` (namespace, own parameters, children, ``jac``, state updates, randomness)::

    forward(ctx, xs, cs) -> (ys, log_det)   # log|det dy/dx|, shape (batch,)
    inverse(ctx, ys, cs) -> (xs, log_det)   # log|det dx/dy| = minus that

:class:`SimpleTransform` is the short form on one array: ``forward(ctx, x, cs) -> (y,
log_det)``. A :class:`Subnet` is a non-invertible ``apply(xp, params, children, x) -> y``
whose input and output shapes its parent chooses.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from .errors import OptionError

Shape = tuple[int, ...]
Array = Any
Namespace = Any
Initializer = Callable[[np.random.Generator], np.ndarray]
#: ``draw(kind, shape, like)``: random samples ("normal" or "rademacher") like ``like``.
Draw = Callable[[str, Shape, Array], Array]
#: What :mod:`flowcore.params` checks a parameter's values against when they are set.
Constraint = Literal["permutation", "orthogonal", "fixed", "nonnegative"]
#: What a condition holds (:meth:`Transform.condition_kinds`): ``"float"`` values (float32 or
#: float64, the default), ``"index"`` integers (int32 or int64, such as a mixture component
#: per sample), or ``"any"``: a container hands it on unchecked to the transform that uses it.
ConditionKind = Literal["float", "index", "any"]


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """A declared parameter.

    ``kind="float"`` parameters take the model's dtype; ``kind="index"`` ones are int64
    (index buffers such as hard permutations) and are never trainable. ``init(rng)`` returns
    the initial value as a float64 or int64 NumPy array of ``shape``. ``constraint`` names
    what values must satisfy for the transform to stay invertible: ``"permutation"`` (each
    last-axis row is a permutation of ``range(n)``), ``"orthogonal"`` (a square matrix
    whose inverse is its transpose), ``"fixed"`` (structure the spec derives, such as a
    coupling mask or a MADE's degrees: only the initial value is allowed, so ``init`` must
    draw nothing) or ``"nonnegative"``; :func:`flowcore.params.validate` enforces it.
    """

    name: str
    shape: Shape
    init: Initializer
    trainable: bool = True
    kind: Literal["float", "index"] = "float"
    constraint: Constraint | None = None

    def __post_init__(self) -> None:
        if "." in self.name or not self.name:
            raise OptionError(f"parameter name {self.name!r} must be non-empty without '.'")
        if self.kind == "index" and self.trainable:
            raise OptionError(f"index parameter {self.name!r} cannot be trainable")
        if self.constraint == "permutation" and self.kind != "index":
            raise OptionError(f"permutation parameter {self.name!r} must be kind='index'")
        if self.constraint == "orthogonal" and (
            len(self.shape) != 2 or self.shape[0] != self.shape[1] or self.kind != "float"
        ):
            raise OptionError(f"orthogonal parameter {self.name!r} must be a square float matrix")
        if self.constraint == "fixed" and self.trainable:
            raise OptionError(f"fixed parameter {self.name!r} cannot be trainable")


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

    def __post_init__(self) -> None:
        """A dataclass spec's options are checked against their annotations on construction
        (:func:`flowcore.options.check_fields`); override and call ``super().__post_init__()``
        to add checks."""
        from .options import check_fields

        check_fields(self)

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
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        raise NotImplementedError


class Context:
    """What a transform's math is handed for one call.

    - ``xp``: the Array API namespace (plus :mod:`flowcore.namespace`'s extras);
    - ``params``: the transform's own parameters by declared name;
    - ``children``: callables by child name: a subnetwork ``f(x) -> y``, a child transform
      ``f(xs, cs, rev=False, jac=True) -> (ys, log_det)``;
    - ``jac``: whether the caller wants the log-det. When False a transform may skip its
      log-det work; the executor returns zeros of shape ``(batch,)`` whatever it gives;
    - ``signature``: the shapes the transform was bound to (batch axis excluded).

    :meth:`update` records a new value for one of the transform's parameters (ActNorm's
    data-dependent initialisation); the adapter writes it back natively after the call.
    :meth:`normal` and :meth:`rademacher` draw from a generator the backend owns, seeded from
    the build seed.
    """

    __slots__ = ("_draw", "_owner", "children", "jac", "params", "updates", "xp")

    def __init__(
        self,
        xp: Namespace,
        params: Mapping[str, Array],
        children: Mapping[str, Callable[..., Any]],
        jac: bool,
        draw: Draw | None = None,
        owner: Any = None,
    ) -> None:
        self.xp = xp
        self.params = params
        self.children = children
        self.jac = jac
        self.updates: dict[str, Array] = {}
        self._draw = draw
        self._owner = owner  # what errors name (its ``label``), looked up only then

    @property
    def _label(self) -> str:
        return str(getattr(self._owner, "label", "transform"))

    @property
    def signature(self) -> Signature:
        """The shapes (batch axis excluded) the transform was bound to: what an inverse needs
        when its outputs do not tell its inputs' shapes (Flatten, Reshape, Concat)."""
        sig = getattr(self._owner, "signature", None)
        if not isinstance(sig, Signature):
            from .errors import FlowError

            raise FlowError(f"{self._label}: this call was given no bound signature")
        return sig

    def update(self, name: str, value: Array) -> None:
        """Give parameter ``name`` the value ``value`` after this call (same shape)."""
        if name not in self.params:
            from .errors import ParameterError

            raise ParameterError(f"{self._label}: update of unknown parameter {name!r}")
        self.updates[name] = value

    def normal(self, shape: Shape, like: Array) -> Array:
        """Standard normal samples of ``shape``, dtype and device of ``like``."""
        return self._random("normal", shape, like)

    def rademacher(self, shape: Shape, like: Array) -> Array:
        """Samples of ``shape`` equal to -1 or +1 with probability 1/2, like ``like``."""
        return self._random("rademacher", shape, like)

    def _random(self, kind: str, shape: Shape, like: Array) -> Array:
        if self._draw is None:
            from .errors import FlowError

            raise FlowError(
                f"{self._label} draws random numbers, but its caller gave no generator "
                "(the JAX functional form needs key=...)"
            )
        return self._draw(kind, tuple(shape), like)


class Transform(Spec):
    """An invertible map with a log-det: the general form, several inputs and outputs.

    Subclasses implement ``forward(ctx, xs, cs) -> (ys, log_det)`` and
    ``inverse(ctx, ys, cs) -> (xs, log_det)`` on lists of arrays, ``log_det`` of shape
    ``(batch,)`` (a scalar is broadcast): ``log|det dy/dx|`` forward and
    ``log|det dx/dy|`` (minus that) inverse. :class:`SimpleTransform` is the short form for
    one input and one output.
    """

    #: Number of inputs the transform takes; None: any number.
    n_inputs: int | None = 1
    #: Whether the math draws random numbers (:meth:`Context.normal`).
    uses_randomness: bool = False
    #: Whether native children are subnets ``y = f(x)``, whose output shape the backends
    #: check on each call; False where a native child is itself the transform.
    native_children_are_subnets: bool = True

    def output_shapes(
        self, inputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        """Shape inference: the output shapes for these input and condition shapes."""
        return tuple(tuple(s) for s in inputs)

    def input_shapes(
        self, outputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        """Inverse shape inference: the input shapes whose outputs have these shapes, which
        :class:`~flowcore.Inverse` needs. The default answers for transforms that keep
        shapes; a transform that changes them and can tell overrides it."""
        from .errors import ShapeError

        outs = tuple(tuple(s) for s in outputs)
        try:
            same = self.signature(outs, conditions).outputs == outs
        except (ShapeError, ValueError):
            same = False
        if not same:
            raise ShapeError(f"{self.label}: cannot tell its input shapes from its outputs {outs}")
        return outs

    def default_shapes(self) -> tuple[tuple[Shape, ...], tuple[Shape, ...]] | None:
        """The input and condition shapes the transform fixes itself (a graph's input and
        condition nodes), used when :func:`flowcore.build` is given none; None otherwise."""
        return None

    def condition_kinds(self, conditions: Sequence[Shape]) -> tuple[ConditionKind, ...]:
        """What each condition holds, for these condition shapes: ``"float"`` (the default),
        ``"index"`` (integers, which the executor checks are int32 or int64 and no adapter
        casts to the model's dtype) or ``"any"`` (handed on unchecked). A container
        answers for the conditions it hands to its children."""
        return same_kind("float", len(conditions))

    def signature(
        self, inputs: Sequence[Sequence[int]], conditions: Sequence[Sequence[int]] = ()
    ) -> Signature:
        ins = tuple(tuple(int(d) for d in s) for s in inputs)
        conds = tuple(tuple(int(d) for d in s) for s in conditions)
        if self.n_inputs is not None and len(ins) != self.n_inputs:
            from .errors import ShapeError

            raise ShapeError(f"{self.label}: expected {self.n_inputs} input(s), got {len(ins)}")
        try:
            return _signature(self, ins, conds)
        except TypeError as err:  # a spec with an unhashable option: nothing to cache by
            if "unhashable" not in str(err):
                raise
            return Signature(ins, tuple(self.output_shapes(ins, conds)), conds)

    def run(
        self, ctx: Context, xs: list[Array], cs: list[Array], rev: bool
    ) -> tuple[list[Array], Array]:
        """What executors call: :meth:`inverse` if ``rev`` else :meth:`forward`."""
        return (self.inverse if rev else self.forward)(ctx, xs, cs)

    def forward(
        self, ctx: Context, xs: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Array]:
        raise NotImplementedError(f"{self.label} implements no forward")

    def inverse(
        self, ctx: Context, ys: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Array]:
        raise NotImplementedError(f"{self.label} implements no inverse")


class SimpleTransform(Transform):
    """The short form: one input, one output.

    Implement ``forward(ctx, x, cs) -> (y, log_det)`` and ``inverse(ctx, y, cs) ->
    (x, log_det)`` on single arrays, and ``output_shape(shape, conditions)`` if the shape
    changes; ``cs`` is the list of conditions.
    """

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        """The output shape for this input shape (default: unchanged)."""
        return tuple(shape)

    def output_shapes(
        self, inputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        return (tuple(self.output_shape(tuple(inputs[0]), conditions)),)

    def run(
        self, ctx: Context, xs: list[Array], cs: list[Array], rev: bool
    ) -> tuple[list[Array], Array]:
        y, log_det = (self.inverse if rev else self.forward)(ctx, xs[0], cs)
        return [y], log_det


@functools.lru_cache(maxsize=4096)
def _signature(spec: Transform, ins: tuple[Shape, ...], conds: tuple[Shape, ...]) -> Signature:
    """Shape inference once per (spec, shapes): a sequence's blocks are bound when the
    sequence infers its output shapes, when it lists its children and when each child is
    bound; specs are frozen values, so the answer cannot change."""
    return Signature(ins, tuple(spec.output_shapes(ins, conds)), conds)


def same_kind(kind: ConditionKind, n: int) -> tuple[ConditionKind, ...]:
    """``n`` conditions all of ``kind``."""
    return (kind,) * n


def agreed_kind(kinds: Sequence[ConditionKind]) -> ConditionKind | None:
    """The kind of a condition that several children read: the one they agree on (``"any"``
    agrees with every kind; none read it: ``"float"``), None when two disagree."""
    wanted = set(kinds) - {"any"}
    if len(wanted) > 1:
        return None
    if wanted:
        return next(iter(wanted))
    return "any" if kinds else "float"


def batch_zeros(xp: Namespace, x: Array) -> Array:
    """A zero log-det of shape ``(batch,)`` with the dtype and device of ``x``."""
    return xp.zeros_like(x[(slice(None),) + (0,) * (x.ndim - 1)])


def sum_per_sample(xp: Namespace, x: Array) -> Array:
    """Sum over every axis but the batch axis: shape ``(batch,)``."""
    return xp.sum(x, axis=tuple(range(1, x.ndim)))

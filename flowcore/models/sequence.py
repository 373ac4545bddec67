r"""SequenceINN: transforms applied one after another (FrEIA ``SequenceINN``, gyoza
``FlowModel``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ArgumentError, OptionError, ShapeError
from ..spec import (
    Array,
    Child,
    ConditionKind,
    Context,
    Shape,
    Signature,
    Transform,
    agreed_kind,
    same_kind,
)


class SequenceINN(Transform):
    r"""The composition :math:`f = f_n \circ \dots \circ f_1` of single-input transforms.

    ``conditions[i]`` is the index, into the conditions the sequence is called with, of the
    one condition transform ``i`` takes, or None. The log-det is the sum of the blocks':

    .. math:: \log|\det J_f(x)| = \sum_i \log|\det J_{f_i}(x_{i-1})|

    Children are named ``"0"``, ``"1"``, ...; slicing gives a sequence of those blocks
    (a negative step reverses the order and inverts each block).
    """

    def __init__(
        self, *transforms: Transform, conditions: Sequence[int | None] | None = None
    ) -> None:
        for t in transforms:
            if not isinstance(t, Transform):
                raise ArgumentError(
                    f"SequenceINN: expected Transform specs, got {type(t).__name__}"
                )
            if t.n_inputs != 1:
                raise ArgumentError(
                    f"SequenceINN: {t.label} takes {t.n_inputs} inputs, blocks must take 1"
                )
        if conditions is not None and not isinstance(conditions, (list, tuple)):
            raise OptionError(
                f"SequenceINN: conditions must be a list of condition indices (int >= 0) or "
                f"None, one per block; got {conditions!r}"
            )
        conds = tuple(conditions) if conditions is not None else (None,) * len(transforms)
        wrong = [c for c in conds if c is not None and (type(c) is not int or c < 0)]
        if wrong:
            raise OptionError(
                f"SequenceINN: each block's condition is an index int >= 0 or None; got {wrong}"
            )
        if len(conds) != len(transforms):
            raise OptionError(
                f"SequenceINN: {len(transforms)} transforms but {len(conds)} condition indices"
            )
        self.transforms: tuple[Transform, ...] = tuple(transforms)
        self.conditions: tuple[int | None, ...] = conds

    def __repr__(self) -> str:
        return (
            f"SequenceINN({', '.join(map(repr, self.transforms))}, conditions={self.conditions})"
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SequenceINN)
            and self.transforms == other.transforms
            and self.conditions == other.conditions
        )

    def __hash__(self) -> int:
        return hash((self.transforms, self.conditions))

    def __len__(self) -> int:
        return len(self.transforms)

    def get_config(self) -> dict[str, Any]:
        return {"transforms": self.transforms, "conditions": self.conditions}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SequenceINN:
        return cls(*config["transforms"], conditions=config["conditions"])

    def __getitem__(self, index: int | slice) -> Transform:
        if isinstance(index, int):
            return self.transforms[index]
        items = list(zip(self.transforms, self.conditions, strict=True))[index]
        if index.step is not None and index.step < 0:
            items = [(Inverse(t), c) for t, c in items]
        return SequenceINN(*(t for t, _ in items), conditions=[c for _, c in items])

    def _conditions_of(self, i: int, conditions: Sequence[Shape]) -> tuple[Shape, ...]:
        idx = self.conditions[i]
        if idx is None:
            return ()
        if not 0 <= idx < len(conditions):
            raise ShapeError(
                f"SequenceINN: block {i} takes condition {idx}, but {len(conditions)} "
                "condition shape(s) were given"
            )
        return (tuple(conditions[idx]),)

    def output_shapes(
        self, inputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        shapes = tuple(inputs)
        for i, t in enumerate(self.transforms):
            shapes = t.signature(shapes, self._conditions_of(i, conditions)).outputs
        return shapes

    def input_shapes(
        self, outputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        shapes = tuple(outputs)
        for i in reversed(range(len(self.transforms))):
            shapes = self.transforms[i].input_shapes(shapes, self._conditions_of(i, conditions))
        return shapes

    def condition_kinds(self, conditions: Sequence[Shape]) -> tuple[ConditionKind, ...]:
        """Each condition's kind as the blocks that take it declare it (float if none)."""
        readers: list[list[ConditionKind]] = [[] for _ in conditions]
        for i, t in enumerate(self.transforms):
            idx, conds = self.conditions[i], self._conditions_of(i, conditions)
            if idx is not None:
                readers[idx].extend(t.condition_kinds(conds))
        kinds = []
        for idx, wanted in enumerate(readers):
            kind = agreed_kind(wanted)
            if kind is None:
                raise ShapeError(
                    f"SequenceINN: condition {idx} is read as {sorted(set(wanted))} by its "
                    "blocks; one condition holds one kind of value"
                )
            kinds.append(kind)
        return tuple(kinds)

    def children(self, sig: Signature) -> Sequence[Child]:
        shapes, out = sig.inputs, []
        for i, t in enumerate(self.transforms):
            conds = self._conditions_of(i, sig.conditions)
            out.append(Child(str(i), t, shapes, conds))
            shapes = t.signature(shapes, conds).outputs
        return out

    def _run(
        self, ctx: Context, xs: Sequence[Array], cs: Sequence[Array], rev: bool
    ) -> tuple[list[Array], Array]:
        order = range(len(self.transforms))
        log_det: Array = 0.0
        for i in reversed(order) if rev else order:
            idx = self.conditions[i]
            xs, block_log_det = ctx.children[str(i)](
                xs, [] if idx is None else [cs[idx]], rev, ctx.jac
            )
            log_det = log_det + block_log_det
        return list(xs), log_det

    def forward(
        self, ctx: Context, xs: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Array]:
        return self._run(ctx, xs, cs, rev=False)

    def inverse(
        self, ctx: Context, ys: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Array]:
        return self._run(ctx, ys, cs, rev=True)


class Inverse(Transform):
    r"""The inverse :math:`f^{-1}` of a transform :math:`f`.

    Forward runs ``f.inverse`` (log-det :math:`-\log|\det J_f|` at :math:`f^{-1}(y)`),
    inverse runs ``f.forward``. Its inputs are the outputs of ``f``, whose input shapes
    ``f.input_shapes`` tells (it can for transforms that keep shapes, sequences and graphs).
    Its one child, ``"inner"``, is ``f``.
    """

    def __init__(self, inner: Transform) -> None:
        if not isinstance(inner, Transform):
            raise ArgumentError(f"Inverse: expected a Transform spec, got {type(inner).__name__}")
        self.inner = inner
        self.n_inputs = getattr(inner, "n_outputs", inner.n_inputs)

    def __repr__(self) -> str:
        return f"Inverse({self.inner!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Inverse) and self.inner == other.inner

    def __hash__(self) -> int:
        return hash(("Inverse", self.inner))

    @property
    def label(self) -> str:
        return f"Inverse({self.inner.label})"

    def get_config(self) -> dict[str, Any]:
        return {"inner": self.inner}

    def output_shapes(
        self, inputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        return tuple(self.inner.input_shapes(inputs, conditions))

    def input_shapes(
        self, outputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        return tuple(self.inner.output_shapes(outputs, conditions))

    def default_shapes(self) -> tuple[tuple[Shape, ...], tuple[Shape, ...]] | None:
        shapes = self.inner.default_shapes()
        if shapes is None:
            return None
        return tuple(self.inner.output_shapes(*shapes)), shapes[1]

    def condition_kinds(self, conditions: Sequence[Shape]) -> tuple[ConditionKind, ...]:
        return tuple(self.inner.condition_kinds(conditions))

    def children(self, sig: Signature) -> Sequence[Child]:
        return (Child("inner", self.inner, sig.outputs, sig.conditions),)

    def forward(
        self, ctx: Context, xs: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Array]:
        return ctx.children["inner"](xs, cs, True, ctx.jac)

    def inverse(
        self, ctx: Context, ys: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Array]:
        return ctx.children["inner"](ys, cs, False, ctx.jac)


class Unconditioned(Transform):
    r"""A transform that takes no conditions, placed where conditions are given: it
    ignores them, :math:`y = f(x)` whatever :math:`c` (as FrEIA's unconditional modules
    accept and ignore ``dims_c``). Its one child, ``"inner"``, is ``f``; log-det ``f``'s."""

    def __init__(self, inner: Transform) -> None:
        if not isinstance(inner, Transform):
            raise ArgumentError(
                f"Unconditioned: expected a Transform spec, got {type(inner).__name__}"
            )
        self.inner = inner
        self.n_inputs = inner.n_inputs

    def __repr__(self) -> str:
        return f"Unconditioned({self.inner!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unconditioned) and self.inner == other.inner

    def __hash__(self) -> int:
        return hash(("Unconditioned", self.inner))

    @property
    def label(self) -> str:
        return f"Unconditioned({self.inner.label})"

    def get_config(self) -> dict[str, Any]:
        return {"inner": self.inner}

    def output_shapes(
        self, inputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        return tuple(self.inner.output_shapes(inputs, ()))

    def input_shapes(
        self, outputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        return tuple(self.inner.input_shapes(outputs, ()))

    def condition_kinds(self, conditions: Sequence[Shape]) -> tuple[ConditionKind, ...]:
        return same_kind("any", len(conditions))  # ignored, whatever they hold

    def children(self, sig: Signature) -> Sequence[Child]:
        return (Child("inner", self.inner, sig.inputs, ()),)

    def run(
        self, ctx: Context, xs: list[Array], cs: list[Array], rev: bool
    ) -> tuple[list[Array], Array]:
        return ctx.children["inner"](xs, [], rev, ctx.jac)  # type: ignore[no-any-return]

"""A backend-native invertible module as a transform: FrEIA's module protocol, any backend.

FrEIA's guide teaches users to write their own invertible modules, subclasses of its
``InvertibleModule`` (CS-Flow has its own). Such a module keeps its own parameters and
math; :class:`NativeTransform` places it in flowcore sequences and graphs. It speaks FrEIA's
protocol, which nothing here ties to one framework:

- ``module.dims_in``: the list of input shapes (batch axis excluded) it was built for;
- ``module.output_dims(input_dims)``: its list of output shapes;
- ``module(xs, c=cs, rev=rev, jac=jac)``: lists of arrays in, ``(outputs, log_det)`` out,
  ``log_det`` of shape ``(batch,)`` or a number (a constant log-det, often ``0``).

The module is a native child (like a ``subnet_constructor``'s module): only the backend
that owns it can run it, and its weights are not part of the canonical parameters, so a
graph holding one cannot be saved or ported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ArgumentError, FlowError, ShapeError
from ..spec import (
    Array,
    Child,
    ConditionKind,
    Context,
    NativeSubnet,
    Shape,
    Signature,
    Transform,
    same_kind,
)
from .nodes import _GivenModule


class NativeTransform(Transform):
    """A native invertible module with FrEIA's protocol, run as it computes itself.

    Forward :math:`(y, \\log|\\det J|) = m(x, c)`, inverse ``m(y, c, rev=True)``: the
    module's own math and log-det, unchanged (a number is broadcast over the batch).
    """

    native_children_are_subnets = False

    def __init__(self, module: Any) -> None:
        for attr in ("dims_in", "output_dims"):
            if not hasattr(module, attr):
                raise ArgumentError(
                    f"NativeTransform: {type(module).__name__} is not an invertible module "
                    f"with FrEIA's protocol (it has no {attr!r})"
                )
        self.module = module

    @property
    def label(self) -> str:
        return f"NativeTransform({type(self.module).__name__})"

    @property
    def n_inputs(self) -> int:  # type: ignore[override]
        return len(self.module.dims_in)

    def output_shapes(
        self, inputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        built_for = [tuple(s) for s in self.module.dims_in]
        if [tuple(s) for s in inputs] != built_for:
            raise ShapeError(
                f"{self.label}: built for inputs {built_for}, placed where the inputs are "
                f"{[tuple(s) for s in inputs]}"
            )
        return tuple(tuple(int(d) for d in s) for s in self.module.output_dims(list(inputs)))

    def condition_kinds(self, conditions: Sequence[Shape]) -> tuple[ConditionKind, ...]:
        return same_kind("any", len(conditions))  # the module takes what it takes

    def children(self, sig: Signature) -> Sequence[Child]:
        native = NativeSubnet(_GivenModule(self.module))
        return [Child("module", native, sig.inputs, sig.conditions, sig.outputs)]

    def run(
        self, ctx: Context, xs: list[Array], cs: list[Array], rev: bool
    ) -> tuple[list[Array], Array]:
        ys, log_det = ctx.children["module"](list(xs), c=list(cs), rev=rev, jac=ctx.jac)
        batch = xs[0][(slice(None),) + (0,) * (xs[0].ndim - 1)]
        if not hasattr(log_det, "shape") or log_det.ndim == 0:
            log_det = ctx.xp.zeros_like(batch) + log_det
        return list(ys), log_det

    def get_config(self) -> dict[str, Any]:
        raise FlowError(
            f"{self.label}: a native module cannot be saved or ported; its weights and code "
            "belong to its framework (save its state_dict with the framework instead)"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NativeTransform) and other.module is self.module

    def __hash__(self) -> int:
        return hash(id(self.module))

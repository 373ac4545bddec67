"""The generic Flax NNX modules: any spec tree as an ``nnx.Module``.

Every node of the tree is a module holding its parameters under their canonical names
(trainable ones as ``nnx.Param``, the rest as :class:`Buffer`) and its children as
attributes, so ``nnx.state(flow)`` paths joined by dots are the canonical names, and
``nnx.grad`` or an ``nnx.Optimizer(..., wrt=nnx.Param)`` touch only the trainables. A call
gathers the values and runs :func:`flowcore.tree.functional_call`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flowcore.errors import ShapeError
from flowcore.spec import ParamSpec
from flowcore.tree import Node, functional_call

from .dtypes import jax_dtype
from .namespace import XP
from .native import build_native


class Buffer(nnx.Variable):
    """A non-trainable array: an index permutation or a frozen matrix."""


def as_arrays(x: Any, what: str) -> list[jax.Array]:
    """An array, a list or tuple of arrays, or None, as a list of JAX arrays."""
    if x is None:
        return []
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    if not all(isinstance(a, (jax.Array, np.ndarray)) for a in items):
        raise ShapeError(
            f"expected an array or a list of arrays as {what}, got {type(x).__name__}"
        )
    return [jnp.asarray(a) for a in items]


def outputs(x: Any, ys: Sequence[jax.Array]) -> Any:
    """One array if one array came in, else a tuple (FrEIA's convention)."""
    return ys[0] if not isinstance(x, (list, tuple)) and len(ys) == 1 else tuple(ys)


def _initial(p: ParamSpec, value: Any, dtype: jnp.dtype) -> jax.Array:
    value = np.zeros(p.shape) if value is None else np.asarray(value)
    if p.kind == "index":  # int64 with x64 enabled, else int32: either indexes the same
        return jnp.asarray(value.astype(np.int64))
    return jnp.asarray(value, dtype=dtype)


def cast_floats(module: nnx.Module, dtype: jnp.dtype, device: jax.Device | None = None) -> None:
    """Cast the floating variables of ``module`` in place (and put all on ``device``)."""

    def convert(a: jax.Array) -> jax.Array:
        a = a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
        return a if device is None else jax.device_put(a, device)

    nnx.update(module, jax.tree.map(convert, nnx.state(module)))


class _Holder(nnx.Module):
    """Holds a node's parameters and children."""

    def __init__(
        self,
        tree: Node,
        params: Mapping[str, np.ndarray] | None,
        dtype: Any = "float32",
        *,
        seed: int = 0,
        modules: Mapping[str, nnx.Module] | None = None,
    ) -> None:
        self.flowcore_tree = tree
        dt = jax_dtype(dtype)
        for p in tree.params:
            if hasattr(type(self), p.name):
                raise ValueError(f"{tree.label}: parameter name {p.name!r} clashes with nnx")
            value = None if params is None else params[tree.full_name(p.name)]
            kind = nnx.Param if p.trainable else Buffer
            setattr(self, p.name, kind(_initial(p, value, dt)))
        for name, child in tree.children.items():
            module: nnx.Module
            if modules is not None and name in modules:
                module = modules[name]
            elif child.is_native:
                module = build_native(child, seed)
                cast_floats(module, dt)
            elif child.is_transform:
                module = FlowModule(child, params, dtype, seed=seed)
            else:
                module = SubnetModule(child, params, dtype, seed=seed)
            setattr(self, name, module)


class SubnetModule(_Holder):
    """The parameters of a portable subnetwork spec (its parent transform runs it)."""


def gather(
    module: nnx.Module, node: Node
) -> tuple[dict[str, nnx.Variable], dict[str, nnx.Module]]:
    """The canonical variables below ``module`` by full name, and its native subnets by
    path: what :func:`flowcore.tree.functional_call` needs."""
    variables: dict[str, nnx.Variable] = {}
    natives: dict[str, nnx.Module] = {}

    def visit(m: nnx.Module, n: Node) -> None:
        for p in n.params:
            variables[n.full_name(p.name)] = getattr(m, p.name)
        for name, child in n.children.items():
            if child.is_native:
                natives[child.path] = getattr(m, name)
            else:
                visit(getattr(m, name), child)

    visit(module, node)
    return variables, natives


class FlowModule(_Holder):
    """A transform spec as a Flax NNX module, called as FrEIA's: ``flow(x, c, rev, jac)``.

    ``x`` is an array or a list of arrays; ``c`` an array, a list of arrays or None.
    Returns ``(z, log_det)`` with ``z`` an array if ``x`` was one, else a tuple, and
    ``log_det`` of shape ``(batch,)``: log|det dz/dx| forward, log|det dx/dz| with ``rev``.
    ``seed`` seeds native subnets whose constructor takes ``rngs``.
    """

    flowcore_backend = "jax"

    def run(
        self, xs: Sequence[jax.Array], cs: Sequence[jax.Array], rev: bool, jac: bool
    ) -> tuple[list[jax.Array], jax.Array]:
        variables, natives = gather(self, self.flowcore_tree)
        values = {name: var[...] for name, var in variables.items()}
        return functional_call(self.flowcore_tree, XP, values, xs, cs, rev, jac, natives)

    def __call__(
        self, x: Any, c: Any = None, rev: bool = False, jac: bool = True
    ) -> tuple[Any, jax.Array]:
        ys, log_det = self.run(as_arrays(x, "input"), as_arrays(c, "condition"), rev, jac)
        return outputs(x, ys), log_det

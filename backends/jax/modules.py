"""The Flax NNX glue: any spec tree as an ``nnx.Module``.

Every node of the tree is a module holding its parameters under their canonical names
(trainable ones as ``nnx.Param``, the rest as :class:`Buffer`) and its children as
attributes, so ``nnx.state(flow)`` paths joined by dots are the canonical names, and
``nnx.grad`` or an ``nnx.Optimizer(..., wrt=nnx.Param)`` touch only the trainables. What a
node does is :class:`flowcore.adapter.NodeModule`'s; this file only makes native things.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flowcore.adapter import NodeModule
from flowcore.density import Density
from flowcore.errors import OptionError
from flowcore.spec import Array, Draw, ParamSpec, Shape, Transform
from flowcore.tree import Node, path_seed

from .dtypes import jax_dtype
from .namespace import XP
from .native import build_native


class Buffer(nnx.Variable):
    """A non-trainable array: an index permutation, a frozen matrix, a state flag."""


def cast_floats(module: nnx.Module, dtype: jnp.dtype, device: jax.Device | None = None) -> None:
    """Cast the floating variables of ``module`` in place (and put all on ``device``)."""

    def convert(a: jax.Array) -> jax.Array:
        a = a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
        return a if device is None else jax.device_put(a, device)

    nnx.update(module, jax.tree.map(convert, nnx.state(module)))


def key_draw(next_key: Any) -> Draw:
    """Random draws from JAX keys, ``next_key()`` giving a fresh key for each draw."""

    def draw(kind: str, shape: Shape, like: jax.Array) -> jax.Array:
        if kind == "normal":
            return jax.random.normal(next_key(), shape, like.dtype)
        return jax.random.rademacher(next_key(), shape, like.dtype)

    return draw


class _JaxNode(NodeModule, nnx.Module):
    """A node's parameters and children as a module."""

    xp = XP

    def __init__(
        self,
        tree: Node,
        params: Mapping[str, np.ndarray] | None,
        dtype: Any = "float32",
        *,
        seed: int = 0,
        modules: Mapping[str, nnx.Module] | None = None,
    ) -> None:
        self._dtype = jax_dtype(dtype)
        self._seed_value = seed
        if isinstance(tree.spec, Transform) and tree.spec.uses_randomness:
            self.rngs = nnx.Rngs(path_seed(seed, tree.path))
        self._populate(tree, params, modules)

    def _add_param(self, p: ParamSpec, value: np.ndarray | None) -> None:
        if hasattr(type(self), p.name):
            raise OptionError(f"{self.flowcore_tree.label}: parameter name {p.name!r} clashes")
        value = np.zeros(p.shape) if value is None else np.array(value)  # a copy
        if p.kind == "index":  # int64 with x64 enabled, else int32: either indexes the same
            array = jnp.asarray(value.astype(np.int64))
        else:
            array = jnp.asarray(value, dtype=self._dtype)
        setattr(self, p.name, (nnx.Param if p.trainable else Buffer)(array))

    def _add_child(self, name: str, module: Any) -> None:
        setattr(self, name, module)

    def _children(self) -> Mapping[str, Any]:
        return {name: getattr(self, name) for name, _ in self._kinds}

    def _values(self) -> dict[str, jax.Array]:
        return {p.name: getattr(self, p.name)[...] for p in self.flowcore_tree.params}

    def _write(self, name: str, value: Array) -> None:
        getattr(self, name).set_value(jax.lax.stop_gradient(value))

    def _make_native(self, node: Node) -> nnx.Module:
        module = build_native(node, self._seed_value)
        cast_floats(module, self._dtype)
        return module

    def _make_module(self, node: Node, params: Mapping[str, np.ndarray] | None) -> nnx.Module:
        kind = FlowModule if node.is_transform else SubnetModule
        return kind(node, params, self._dtype, seed=self._seed_value)

    array_text = "a jax.Array or np.ndarray"

    def _is_array(self, x: Any) -> bool:
        return isinstance(x, (jax.Array, np.ndarray))

    def _convert(self, x: Any) -> jax.Array:
        x = jnp.asarray(x)
        if x.dtype != self._dtype and jnp.issubdtype(x.dtype, jnp.floating):
            return x.astype(self._dtype)
        return x

    def _draw(self) -> Draw:
        return key_draw(self.rngs)


class SubnetModule(_JaxNode):
    """A portable subnetwork spec as a module: ``subnet(x) -> y``."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.apply_subnet(x)


def gather(
    module: nnx.Module, node: Node
) -> tuple[dict[str, nnx.Variable], dict[str, nnx.Module]]:
    """The canonical variables below ``module`` by full name, and its native subnets by
    path: what :func:`flowcore.executor.functional_call` needs."""
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


class FlowModule(_JaxNode, Density):
    """A transform spec as a Flax NNX module, called as FrEIA's: ``flow(x, c, rev, jac)``.

    ``x`` is an array or a list of arrays; ``c`` an array, a list of arrays or None.
    Returns ``(z, log_det)`` with ``z`` an array if ``x`` was one, else a tuple, and
    ``log_det`` of shape ``(batch,)``: log|det dz/dx| forward, log|det dx/dz| with ``rev``.
    State updates (ActNorm's initialisation) are written into the variables, also under
    ``nnx.jit``. ``seed`` seeds native subnets whose constructor takes ``rngs`` and the
    random draws of transforms that make them.
    """

    flowcore_backend = "jax"

    def __call__(
        self, x: Any, c: Any = None, rev: bool = False, jac: bool = True
    ) -> tuple[Any, jax.Array]:
        return self.call_flow(x, c, rev, jac)

"""Native Flax NNX subnetworks: FrEIA's ``subnet_constructor(c_in, c_out)``.

A constructor that accepts an ``rngs`` keyword (or ``**kwargs``) is called as
``f(c_in, c_out, rngs=nnx.Rngs(s))`` with ``s`` drawn from ``(seed, path)`` like the
canonical parameters; any other is called as ``f(c_in, c_out)`` and brings its own ``rngs``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
from flax import nnx

from flowcore.errors import ArgumentError
from flowcore.spec import NativeSubnet
from flowcore.tree import Node, path_seed


def _takes_rngs(constructor: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(constructor).parameters.values()
    except (TypeError, ValueError):  # builtins and some callables have no signature
        return False
    return any(p.name == "rngs" or p.kind is p.VAR_KEYWORD for p in params)


def build_native(node: Node, seed: int) -> nnx.Module:
    """Call the node's constructor for its channel counts; it must return an nnx.Module."""
    spec = node.spec
    assert isinstance(spec, NativeSubnet)
    c_in, c_out = node.signature.inputs[0][0], node.signature.outputs[0][0]
    constructor: Callable[..., Any] = spec.constructor
    if _takes_rngs(constructor):
        module = constructor(c_in, c_out, rngs=nnx.Rngs(path_seed(seed, node.path)))
    else:
        module = constructor(c_in, c_out)
    if not isinstance(module, nnx.Module):
        raise ArgumentError(
            f"{node.label}: subnet_constructor must return a flax.nnx.Module, "
            f"got {type(module).__name__}"
        )
    return module


def dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(k) for k in path)


def native_variables(modules: Mapping[str, nnx.Module]) -> dict[str, nnx.Variable]:
    """The live variables (all but RNG state) of native subnets, by full dotted name."""
    return {
        f"{path}.{dotted(key)}": var
        for path, module in modules.items()
        for key, var in nnx.to_flat_state(nnx.state(module, nnx.Not(nnx.RngState)))
    }


class NativeParams:
    """Native subnets split into flat trainable arrays and the rest, for the pure form.

    :attr:`params` holds their ``nnx.Param`` values by full dotted name; :meth:`modules`
    rebuilds the subnets from such a dict (arrays or tracers). Their other state is closed
    over read-only, so a subnet that updates state in its call (dropout, batch statistics in
    training) runs in :class:`~flowcore.backends.jax.FlowModule`, not here.
    """

    def __init__(self, modules: Mapping[str, nnx.Module]) -> None:
        self._parts: dict[str, tuple[Any, list[Any], dict[str, tuple[Any, nnx.Variable]]]] = {}
        self.params: dict[str, jax.Array] = {}
        for path, module in modules.items():
            graph, params, *rest = nnx.split(module, nnx.Param, ...)
            leaves = {f"{path}.{dotted(k)}": (k, v) for k, v in nnx.to_flat_state(params)}
            self._parts[path] = (graph, rest, leaves)
            self.params.update({name: var[...] for name, (_, var) in leaves.items()})

    def modules(self, params: Mapping[str, jax.Array]) -> dict[str, nnx.Module]:
        out = {}
        for path, (graph, rest, leaves) in self._parts.items():
            state = nnx.from_flat_state(
                [(key, var.replace(params[name])) for name, (key, var) in leaves.items()]
            )
            out[path] = nnx.merge(graph, state, *rest)
        return out

"""The pure functional form: ``apply(params, x, c, rev, jac)`` over a pytree of trainables.

``params`` is a flat dict of canonical name to array holding the trainable parameters only
(and the ``nnx.Param`` leaves of native subnets, under their subnet's path); buffers such as
index permutations are closed over. ``jax.jit``, ``jax.grad`` and ``jax.vmap`` take
``apply`` as it is; ``rev`` and ``jac`` choose the code path, so under ``jax.jit`` pass them
as static arguments: ``jax.jit(apply, static_argnames=("rev", "jac"))``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from flowcore.errors import FlowError, ParameterError
from flowcore.spec import Transform
from flowcore.tree import build_tree, functional_call, initial_params, normalize_shapes

from .modules import FlowModule, as_arrays, gather, outputs
from .namespace import XP
from .native import NativeParams

Apply = Callable[..., tuple[Any, jax.Array]]


def _static(flag: Any, name: str) -> bool:
    if not isinstance(flag, (bool, np.bool_)):
        raise FlowError(
            f"apply: {name} must be a Python bool, got {type(flag).__name__}; under jax.jit "
            'mark it static: jax.jit(apply, static_argnames=("rev", "jac"))'
        )
    return bool(flag)


def functional(model: FlowModule) -> tuple[Apply, dict[str, jax.Array]]:
    """Split a :class:`FlowModule` into a pure ``apply`` and its trainable ``params``.

    ``apply(params, x, c=None, rev=False, jac=True) -> (z, log_det)`` computes what
    ``model(x, c, rev, jac)`` does with the given parameters. ``params`` is a snapshot;
    write trained values back with
    ``flowcore.set_params(model, {**flowcore.get_params(model), **params})``.
    """
    tree = model.flowcore_tree
    variables, natives = gather(model, tree)
    buffers = {k: v[...] for k, v in variables.items() if not isinstance(v, nnx.Param)}
    native = NativeParams(natives)
    params = {k: v[...] for k, v in variables.items() if isinstance(v, nnx.Param)}
    params.update(native.params)
    expected = frozenset(params)

    def apply(
        params: Mapping[str, jax.Array],
        x: Any,
        c: Any = None,
        rev: bool = False,
        jac: bool = True,
    ) -> tuple[Any, jax.Array]:
        if set(params) != expected:
            raise ParameterError(
                f"{tree.label}: apply got parameters missing {sorted(expected - set(params))}"
                f" and unexpected {sorted(set(params) - expected)}"
            )
        ys, log_det = functional_call(
            tree,
            XP,
            {**buffers, **params},
            as_arrays(x, "input"),
            as_arrays(c, "condition"),
            _static(rev, "rev"),
            _static(jac, "jac"),
            native.modules(params),
        )
        return outputs(x, ys), log_det

    return apply, params


def init(
    spec: Transform,
    input_shape: Any,
    cond_shapes: Sequence[Sequence[int]] = (),
    seed: int = 0,
    dtype: str = "float32",
) -> tuple[Apply, dict[str, jax.Array]]:
    """``(apply, params)`` of ``spec`` for inputs of ``input_shape`` (batch axis excluded).

    The parameters equal ``flowcore.build(spec, ..., seed=seed)``'s in every backend.
    """
    tree = build_tree(spec, normalize_shapes(input_shape), [tuple(c) for c in cond_shapes])
    return functional(FlowModule(tree, initial_params(tree, seed), dtype, seed=seed))

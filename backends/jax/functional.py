"""The pure functional form: ``apply(params, x, c, rev, jac)`` over a pytree of trainables.

``params`` is a flat dict of canonical name to array holding the trainable parameters only
(and the ``nnx.Param`` leaves of native subnets, under their subnet's path); the buffers
(index permutations, frozen matrices, state flags) are the ``state``, by default the model's
at the time :func:`functional` was called. ``jax.jit``, ``jax.grad`` and ``jax.vmap`` take
``apply`` as it is; ``rev`` and ``jac`` choose the code path, so under ``jax.jit`` pass them
as static arguments: ``jax.jit(apply, static_argnames=("rev", "jac", "mutable"))``.

State updates (ActNorm's initialisation) come back as Flax's ``apply(..., mutable=...)``
gives them: with ``mutable=True``, ``apply`` returns ``((z, log_det), updates)``, the new
values by canonical name (trainable or not), to be merged into ``params`` and ``state``.
A transform that draws random numbers needs ``key=`` (a ``jax.random`` key).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flowcore.adapter import as_list, outputs
from flowcore.errors import FlowError, ParameterError
from flowcore.executor import functional_call
from flowcore.spec import Transform
from flowcore.tree import build_tree, initial_params, normalize_shapes

from .modules import FlowModule, gather, key_draw
from .namespace import XP
from .native import NativeParams

Apply = Callable[..., Any]


def _static(flag: Any, name: str) -> bool:
    if not isinstance(flag, (bool, np.bool_)):
        raise FlowError(
            f"apply: {name} must be a Python bool, got {type(flag).__name__}; under jax.jit "
            'mark it static: jax.jit(apply, static_argnames=("rev", "jac"))'
        )
    return bool(flag)


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


def _split_keys(key: jax.Array) -> Callable[[], jax.Array]:
    box = [key]

    def next_key() -> jax.Array:
        box[0], sub = jax.random.split(box[0])
        return sub

    return next_key


def functional(model: FlowModule, *, with_state: bool = False) -> Any:
    """Split a :class:`FlowModule` into a pure ``apply`` and its trainable ``params``
    (and, with ``with_state``, its buffers: ``(apply, params, state)``).

    ``apply(params, x, c=None, rev=False, jac=True, *, state=None, key=None,
    mutable=False)`` computes what ``model(x, c, rev, jac)`` does with the given
    parameters. ``params`` is a snapshot; write trained values back with
    ``flowcore.set_params(model, {**flowcore.get_params(model), **params})``.
    """
    tree = model.flowcore_tree
    variables, natives = gather(model, tree)
    buffers = {k: v[...] for k, v in variables.items() if not isinstance(v, nnx.Param)}
    native = NativeParams(natives)
    params = {k: v[...] for k, v in variables.items() if isinstance(v, nnx.Param)}
    params.update(native.params)
    expected = frozenset(params)
    random = tree.uses_randomness

    def apply(
        params: Mapping[str, jax.Array],
        x: Any,
        c: Any = None,
        rev: bool = False,
        jac: bool = True,
        *,
        state: Mapping[str, jax.Array] | None = None,
        key: jax.Array | None = None,
        mutable: bool = False,
    ) -> Any:
        if set(params) != expected:
            raise ParameterError(
                f"{tree.label}: apply got parameters missing {sorted(expected - set(params))}"
                f" and unexpected {sorted(set(params) - expected)}"
            )
        if random and key is None:
            raise FlowError(f"{tree.label} draws random numbers: apply needs key=...")
        ys, log_det, updates = functional_call(
            tree,
            XP,
            {**(buffers if state is None else state), **params},
            as_list(x, "input", _is_array, jnp.asarray),
            as_list(c, "condition", _is_array, jnp.asarray),
            _static(rev, "rev"),
            _static(jac, "jac"),
            native.modules(params),
            key_draw(_split_keys(key)) if key is not None else None,
        )
        result = (outputs(x, ys), log_det)
        return (result, updates) if mutable else result

    return (apply, params, buffers) if with_state else (apply, params)


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
    return functional(FlowModule(tree, initial_params(tree, seed), dtype, seed=seed))  # type: ignore[no-any-return]

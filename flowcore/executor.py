"""Running a bound tree: the one place that checks calls and collects state updates.

:func:`run_node` runs one node with its own parameters and its children's callables; the
per-module adapters (torch, Keras, Flax NNX) call it from every module. :func:`functional_call`
runs a whole tree on a flat dict of canonical parameters: the NumPy reference and the JAX
pure form. Both check the inputs' count, shapes and dtypes, the conditions, and that ``rev``
and ``jac`` are bools, before any math runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from . import finite
from .errors import ArgumentError, ParameterError, ShapeError
from .spec import Array, ConditionKind, Context, Draw, Namespace, Subnet, Transform, batch_zeros
from .tree import Node

FLOAT_DTYPES = ("float32", "float64")
#: The dtypes an ``"index"`` condition may have (:meth:`flowcore.Transform.condition_kinds`).
INDEX_DTYPES = ("int32", "int64")
#: ``(outputs, log_det, updates)``: updates map parameter names to their new values.
Result = tuple[list[Array], Array, dict[str, Array]]


_DTYPE_NAMES: dict[tuple[type, Any], str] = {}


def dtype_name(dtype: Any) -> str:
    """``"float32"`` for a NumPy, torch, JAX, TensorFlow or Keras dtype (cached: it is
    asked for every array of every call)."""
    key = (type(dtype), dtype)  # dtypes of different libraries may compare equal
    try:
        return _DTYPE_NAMES[key]
    except (KeyError, TypeError):  # unseen, or unhashable
        name = str(getattr(dtype, "name", dtype)).rsplit(".", 1)[-1]
    try:
        _DTYPE_NAMES[key] = name
    except TypeError:
        pass
    return name


def check_flags(rev: Any, jac: Any) -> None:
    """``rev`` and ``jac`` must be bools: ``rev="False"`` would otherwise run the inverse."""
    for name, flag in (("rev", rev), ("jac", jac)):
        if not isinstance(flag, (bool, np.bool_)):
            raise ArgumentError(f"{name} must be a bool, got {type(flag).__name__} {flag!r}")


def _shape_text(shape: Sequence[Any]) -> str:
    return "(batch, " + ", ".join(str(d) for d in shape) + ")" if shape else "(batch,)"


def _check_arrays(
    node: Node,
    what: str,
    arrays: Sequence[Array],
    shapes: Sequence[tuple[int, ...]],
    kinds: Sequence[ConditionKind] | None = None,
) -> None:
    if len(arrays) != len(shapes):
        raise ShapeError(f"{node.label}: expected {len(shapes)} {what}(s), got {len(arrays)}")
    for i, (a, shape) in enumerate(zip(arrays, shapes, strict=True)):
        kind = "float" if kinds is None else kinds[i]
        try:
            got, dtype = tuple(a.shape), a.dtype
        except AttributeError:
            raise ShapeError(
                f"{node.label}: {what} {i} should be an array of shape {_shape_text(shape)}, "
                f"got {type(a).__name__}"
            ) from None
        if got[1:] != shape or not got:
            raise ShapeError(
                f"{node.label}: {what} {i} should have shape {_shape_text(shape)}, got {got}"
            )
        if kind == "any":
            continue
        seen = _KIND_KEYS[kind].setdefault(type(dtype), set())
        if dtype not in seen:
            name = dtype_name(dtype)
            allowed = FLOAT_DTYPES if kind == "float" else INDEX_DTYPES
            if name not in allowed:
                want = (
                    "float32 or float64"
                    if kind == "float"
                    else "an integer index (int32 or int64)"
                )
                raise ShapeError(f"{node.label}: {what} {i} should be {want}, got {name}")
            seen.add(dtype)


#: The dtypes seen to be of each kind, a set per dtype class: one set lookup per array.
#: Per class, because dtypes of different libraries may compare equal, and because
#: torch.compile cannot trace the hash of NumPy's dtypes (a set holding them, hashed while
#: checking a torch tensor, would break the graph).
_KIND_KEYS: dict[str, dict[type, set[Any]]] = {"float": {}, "index": {}}


def check_call(
    node: Node, xs: Sequence[Array], cs: Sequence[Array], rev: Any, jac: Any
) -> tuple[bool, bool]:
    """Check a call's flags, inputs and conditions against the node's signature; returns
    the flags as bools."""
    if type(rev) is not bool or type(jac) is not bool:  # np.bool_ passes the slow check
        check_flags(rev, jac)
        rev, jac = bool(rev), bool(jac)
    sig = node.signature
    _check_arrays(node, "output" if rev else "input", xs, sig.outputs if rev else sig.inputs)
    _check_arrays(node, "condition", cs, sig.conditions, node.condition_kinds)
    _check_batch(node, xs, cs, "output" if rev else "input")
    return rev, jac


def _check_batch(node: Node, xs: Sequence[Array], cs: Sequence[Array], what: str) -> None:
    """Every input and condition has the same batch size (None, a symbolic Keras batch,
    matches any): a condition is never broadcast over a batch."""
    first = xs[0].shape[0] if xs else None
    for i, a in enumerate((*xs, *cs)):
        n = a.shape[0]
        if first is None:
            first = n
        elif n is not None and n != first:
            name = f"{what} {i}" if i < len(xs) else f"condition {i - len(xs)}"
            raise ShapeError(
                f"{node.label}: {name} has batch size {n}, but {what} 0 has {first}: "
                "inputs and conditions need one row each per sample"
            )


def checked_native(node: Node, module: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """``module``, a native subnet of ``node``, with its output's shape checked on each call
    (a wrong width would otherwise fail deep inside the transform that uses it)."""
    want = tuple(node.signature.outputs[0])

    def call(x: Array) -> Array:
        y = module(x)
        got = tuple(getattr(y, "shape", ()))
        if got[1:] != want or (got and None not in (got[0], x.shape[0]) and got[0] != x.shape[0]):
            raise ShapeError(
                f"{node.label}: the native subnet maps input {tuple(x.shape)} to {got}, "
                f"expected (batch, {', '.join(map(str, want))}): subnet_constructor(c_in, "
                "c_out) must return a module from c_in to c_out features"
            )
        return y

    return call


def run_node(
    node: Node,
    xp: Namespace,
    params: Mapping[str, Array],
    children: Mapping[str, Callable[..., Any]],
    xs: Sequence[Array],
    cs: Sequence[Array],
    rev: bool,
    jac: bool,
    draw: Draw | None = None,
) -> Result:
    """Check the call, then run the node's transform one way or the other.

    Returns the outputs, the log-det of shape ``(batch,)`` (zeros when ``jac`` is False) and
    the node's own parameter updates by local name.
    """
    spec: Transform = node.spec  # type: ignore[assignment]  # build_tree binds transforms
    rev, jac = check_call(node, xs, cs, rev, jac)
    checking = finite.checking_finite()
    if checking:
        floats = [c for c, kind in zip(cs, node.condition_kinds, strict=True) if kind == "float"]
        finite.check_inputs(xp, node.label, _way(rev), xs, floats)
    ctx = Context(xp, params, children, jac, draw, node)
    ys, log_det = spec.run(ctx, list(xs), list(cs), rev)
    if not jac:
        log_det = batch_zeros(xp, ys[0])
    elif getattr(log_det, "ndim", 0) == 0:  # a constant log-det still gets shape (batch,)
        log_det = log_det + batch_zeros(xp, ys[0])
    if checking:
        finite.check_outputs(xp, node.label, _way(rev), ys, log_det if jac else None)
    for name, value in ctx.updates.items():
        declared = node.param(name).shape
        if tuple(value.shape) != declared:
            raise ParameterError(
                f"{node.label}: update of {name!r} has shape {tuple(value.shape)}, "
                f"declared {declared}"
            )
    return ys, log_det, ctx.updates


def _way(rev: bool) -> str:
    return "inverse" if rev else "forward"


def functional_call(
    tree: Node,
    xp: Namespace,
    params: Mapping[str, Array],
    xs: Sequence[Array],
    cs: Sequence[Array] = (),
    rev: bool = False,
    jac: bool = True,
    native: Mapping[str, Callable[..., Any]] | None = None,
    draw: Draw | None = None,
) -> Result:
    """Run a tree on a flat dict of canonical parameters: the pure functional form.

    ``native`` maps the paths of native-subnet nodes to the callables that run them. Returns
    the outputs, the log-det and every node's updates by full canonical name; a parameter
    updated by one node is seen with its new value by nodes run after it.
    """
    native = native or {}
    values = dict(params)
    updates: dict[str, Array] = {}

    def local(node: Node) -> dict[str, Array]:
        return {p.name: values[node.full_name(p.name)] for p in node.params}

    def callables(node: Node) -> dict[str, Callable[..., Any]]:
        checked = isinstance(node.spec, Transform) and node.spec.native_children_are_subnets
        return {name: bind(child, checked) for name, child in node.children.items()}

    def run(node: Node, xs_: Sequence[Array], cs_: Sequence[Array], rev_: bool, jac_: bool) -> Any:
        ys, log_det, own = run_node(
            node, xp, local(node), callables(node), xs_, cs_, rev_, jac_, draw
        )
        for name, value in own.items():
            values[node.full_name(name)] = updates[node.full_name(name)] = value
        return ys, log_det

    def bind(node: Node, checked: bool = True) -> Callable[..., Any]:
        if node.is_native:
            if node.path not in native:
                raise ShapeError(f"{node.label}: a native subnet needs its backend to run it")
            return checked_native(node, native[node.path]) if checked else native[node.path]
        if node.is_transform:
            return lambda xs_, cs_=(), rev_=False, jac_=True: run(node, xs_, cs_, rev_, jac_)
        spec = node.spec
        assert isinstance(spec, Subnet)
        return lambda x: spec.apply(xp, local(node), callables(node), x)

    ys, log_det = run(tree, xs, cs, rev, jac)
    return ys, log_det, updates

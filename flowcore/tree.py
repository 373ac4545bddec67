"""The module tree a spec unfolds into, shared by every backend.

:func:`build_tree` resolves a spec for concrete shapes into :class:`Node` objects, each with
its parameter declarations and its children, and with the canonical dotted path its
parameters are named under (``"0.subnet.1.weight"``). :func:`initial_params` draws every
parameter from NumPy generators seeded by ``(seed, path)``, so the same seed gives the same
model in every backend and adding a module never shifts another module's draw.
:func:`run_transform` and :func:`run_subnet` are the one place that checks the shapes and
conditions a module is called with.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import ShapeError
from .spec import (
    Array,
    Child,
    Namespace,
    NativeSubnet,
    ParamSpec,
    Signature,
    Spec,
    Subnet,
    Transform,
    batch_zeros,
)

FLOAT_DTYPES = ("float32", "float64")


@dataclasses.dataclass(frozen=True)
class Node:
    """A spec bound to shapes, at a place in the module tree."""

    spec: Spec | NativeSubnet
    signature: Signature
    path: str
    params: tuple[ParamSpec, ...]
    children: dict[str, Node]

    @property
    def is_transform(self) -> bool:
        return isinstance(self.spec, Transform)

    @property
    def is_native(self) -> bool:
        return isinstance(self.spec, NativeSubnet)

    @property
    def label(self) -> str:
        name = self.spec.name if isinstance(self.spec, NativeSubnet) else self.spec.label
        return f"{name} at '{self.path}'" if self.path else name

    def full_name(self, param: str) -> str:
        return f"{self.path}.{param}" if self.path else param

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, parents first, children in declared order."""
        yield self
        for child in self.children.values():
            yield from child.walk()

    def param_specs(self) -> dict[str, ParamSpec]:
        """Every canonical parameter of the tree, by dotted name relative to this node."""
        return {self.relative(n.full_name(p.name)): p for n in self.walk() for p in n.params}

    def relative(self, name: str) -> str:
        """A full dotted name made relative to this node."""
        return name[len(self.path) + 1 :] if self.path else name

    def native_paths(self) -> list[str]:
        """Relative paths of the native subnets below this node."""
        return [self.relative(n.path) for n in self.walk() if n.is_native]


def _bind(spec: Spec | NativeSubnet, sig: Signature, path: str) -> Node:
    if isinstance(spec, NativeSubnet):
        return Node(spec, sig, path, (), {})
    params = tuple(spec.parameters(sig))
    children: dict[str, Node] = {}
    for child in spec.children(sig):
        if child.name in children or "." in child.name:
            raise ValueError(f"{spec.label}: bad or repeated child name {child.name!r}")
        children[child.name] = _bind_child(child, f"{path}.{child.name}" if path else child.name)
    names = [p.name for p in params]
    clash = set(names) & set(children) or {n for n in names if names.count(n) > 1}
    if clash:
        raise ValueError(f"{spec.label}: names used twice: {sorted(clash)}")
    return Node(spec, sig, path, params, children)


def _bind_child(child: Child, path: str) -> Node:
    spec = child.spec
    if isinstance(spec, Transform):
        return _bind(spec, spec.signature(child.inputs, child.conditions), path)
    if child.outputs is None:
        raise ValueError(f"subnet child {child.name!r} needs its output shape")
    if isinstance(spec, Subnet):
        spec.validate(child.inputs[0], child.outputs[0])
    return _bind(spec, Signature(child.inputs, child.outputs), path)


def build_tree(
    spec: Transform,
    inputs: Sequence[Sequence[int]],
    conditions: Sequence[Sequence[int]] = (),
    path: str = "",
) -> Node:
    """Bind a transform spec to input and condition shapes (batch axis excluded).

    ``path`` places the tree below a parent (it seeds the initial parameters).
    """
    if not isinstance(spec, Transform):
        raise TypeError(f"expected a flowcore Transform spec, got {type(spec).__name__}")
    return _bind(spec, spec.signature(inputs, conditions), path)


def normalize_shapes(shape: Any) -> tuple[tuple[int, ...], ...]:
    """Accept one shape ``(8,)``, a bare int ``8`` or a list of shapes ``[(8,), (4,)]``."""
    if isinstance(shape, int):
        shape = (shape,)
    try:
        items = tuple(shape)
        shapes = (items,) if all(isinstance(d, int) for d in items) else tuple(map(tuple, items))
    except TypeError:
        shapes = ()
    if not shapes or not all(
        s and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in s)
        for s in shapes
    ):
        raise ShapeError(
            f"input shape must be positive ints like (8,) or (3, 32, 32), or a list of such "
            f"shapes (batch axis excluded); got {shape!r}"
        )
    return shapes


def _path_seed(seed: int, path: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(path.encode())]))


def initial_params(tree: Node, seed: int) -> dict[str, np.ndarray]:
    """Initial canonical parameters: float64 or int64 NumPy arrays by full (absolute) name.

    Each node draws its parameters, in declaration order, from its own generator seeded with
    ``(seed, crc32(path))``.
    """
    out: dict[str, np.ndarray] = {}
    for node in tree.walk():
        rng = _path_seed(seed, node.path)
        for p in node.params:
            value = np.asarray(p.init(rng))
            if value.shape != p.shape:
                raise ValueError(
                    f"{node.label}: initialiser of {p.name!r} gave shape {value.shape}, "
                    f"declared {p.shape}"
                )
            out[node.full_name(p.name)] = value.astype(
                np.int64 if p.kind == "index" else np.float64
            )
    return out


def check_params(tree: Node, params: Mapping[str, Any]) -> None:
    """Raise if ``params`` does not hold exactly the tree's canonical parameters and shapes."""
    from .errors import ParameterError

    specs = tree.param_specs()
    native = tuple(f"{p}." for p in tree.native_paths())
    missing = sorted(set(specs) - set(params))
    surplus = sorted(k for k in set(params) - set(specs) if not k.startswith(native))
    if missing or surplus:
        raise ParameterError(
            f"{tree.label}: parameters do not match; missing {missing}, unexpected {surplus}"
        )
    for name, p in specs.items():
        shape = tuple(np.shape(params[name]))
        if shape != p.shape:
            raise ParameterError(
                f"{tree.label}: parameter {name!r} has shape {shape}, expected {p.shape}"
            )


def dtype_name(dtype: Any) -> str:
    """``"float32"`` for a NumPy, torch, JAX, TensorFlow or Keras dtype."""
    return str(getattr(dtype, "name", dtype)).rsplit(".", 1)[-1]


def _shape_text(shape: Sequence[Any]) -> str:
    return "(batch, " + ", ".join(str(d) for d in shape) + ")" if shape else "(batch,)"


def _check_arrays(
    node: Node, what: str, arrays: Sequence[Array], shapes: Sequence[tuple[int, ...]]
) -> None:
    if len(arrays) != len(shapes):
        raise ShapeError(f"{node.label}: expected {len(shapes)} {what}(s), got {len(arrays)}")
    for i, (a, shape) in enumerate(zip(arrays, shapes, strict=True)):
        got = tuple(a.shape)
        if len(got) != len(shape) + 1 or tuple(got[1:]) != shape:
            raise ShapeError(
                f"{node.label}: {what} {i} should have shape {_shape_text(shape)}, got {got}"
            )
        dtype = dtype_name(a.dtype)
        if dtype not in FLOAT_DTYPES:
            raise ShapeError(f"{node.label}: {what} {i} should be float32 or float64, got {dtype}")


def run_transform(
    node: Node,
    xp: Namespace,
    params: Mapping[str, Array],
    subnets: Mapping[str, Callable[..., Any]],
    xs: Sequence[Array],
    cs: Sequence[Array],
    rev: bool,
    jac: bool,
) -> tuple[list[Array], Array]:
    """Check the inputs and conditions, then run the transform one way or the other."""
    spec = node.spec
    assert isinstance(spec, Transform)
    sig = node.signature
    _check_arrays(node, "output" if rev else "input", xs, sig.outputs if rev else sig.inputs)
    _check_arrays(node, "condition", cs, sig.conditions)
    run = spec.inverse if rev else spec.forward
    ys, log_det = run(xp, params, subnets, list(xs), list(cs), jac)
    if getattr(log_det, "ndim", 0) == 0:  # a constant log-det still gets shape (batch,)
        log_det = log_det + batch_zeros(xp, ys[0])
    return ys, log_det


def functional_call(
    tree: Node,
    xp: Namespace,
    params: Mapping[str, Array],
    xs: Sequence[Array],
    cs: Sequence[Array] = (),
    rev: bool = False,
    jac: bool = True,
    native: Mapping[str, Callable[..., Any]] | None = None,
) -> tuple[list[Array], Array]:
    """Run a tree on a flat dict of canonical parameters: the pure functional form.

    ``native`` maps the paths of :class:`NativeSubnet` nodes to the callables that run them.
    The NumPy reference and the JAX functional API are this function with their namespace.
    """
    native = native or {}

    def local(node: Node) -> dict[str, Array]:
        return {p.name: params[node.full_name(p.name)] for p in node.params}

    def callables(node: Node) -> dict[str, Callable[..., Any]]:
        return {name: bind(child) for name, child in node.children.items()}

    def bind(node: Node) -> Callable[..., Any]:
        if node.is_native:
            if node.path not in native:
                raise ShapeError(f"{node.label}: a native subnet needs its backend to run it")
            return native[node.path]
        if node.is_transform:
            return lambda xs_, cs_, rev_, jac_: run_transform(
                node, xp, local(node), callables(node), xs_, cs_, rev_, jac_
            )
        spec = node.spec
        assert isinstance(spec, Subnet)
        return lambda x: spec.apply(xp, local(node), callables(node), x)

    return run_transform(tree, xp, local(tree), callables(tree), xs, cs, rev, jac)

"""The module tree a spec unfolds into, shared by every backend.

:func:`build_tree` resolves a spec for concrete shapes into :class:`Node` objects, each with
its parameter declarations and its children, and with the canonical dotted path its
parameters are named under (``"0.subnet.1.weight"``). :func:`initial_params` draws every
parameter from NumPy generators seeded by ``(seed, path)``, so the same seed gives the same
model in every backend and adding a module never shifts another module's draw.
Running a tree is :mod:`flowcore.executor`'s job; checking values is :mod:`flowcore.params`'.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .errors import ArgumentError, OptionError, ParameterError, ShapeError
from .spec import (
    Child,
    ConditionKind,
    NativeSubnet,
    ParamSpec,
    Signature,
    Spec,
    Subnet,
    Transform,
    same_kind,
)


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

    @functools.cached_property
    def label(self) -> str:
        name = self.spec.name if isinstance(self.spec, NativeSubnet) else self.spec.label
        return f"{name} at '{self.path}'" if self.path else name

    @functools.cached_property
    def condition_kinds(self) -> tuple[ConditionKind, ...]:
        """What each condition holds (:meth:`flowcore.Transform.condition_kinds`), which
        :func:`flowcore.executor.check_call` checks; a subnet's are floats."""
        conds = self.signature.conditions
        if not isinstance(self.spec, Transform):
            return same_kind("float", len(conds))
        kinds = tuple(self.spec.condition_kinds(conds))
        if len(kinds) != len(conds) or not set(kinds) <= {"float", "index", "any"}:
            raise OptionError(
                f"{self.label}: condition_kinds gave {kinds} for {len(conds)} condition(s); "
                'each must be "float", "index" or "any"'
            )
        return kinds

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

    def param(self, name: str) -> ParamSpec:
        """This node's own declared parameter ``name``."""
        for p in self.params:
            if p.name == name:
                return p
        raise ParameterError(f"{self.label} has no parameter {name!r}")

    @property
    def uses_randomness(self) -> bool:
        """Whether this node or one below it draws random numbers."""
        return any(isinstance(n.spec, Transform) and n.spec.uses_randomness for n in self.walk())

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
            raise OptionError(f"{spec.label}: bad or repeated child name {child.name!r}")
        children[child.name] = _bind_child(child, f"{path}.{child.name}" if path else child.name)
    names = [p.name for p in params]
    clash = set(names) & set(children) or {n for n in names if names.count(n) > 1}
    if clash:
        raise OptionError(f"{spec.label}: names used twice: {sorted(clash)}")
    node = Node(spec, sig, path, params, children)
    node.condition_kinds  # noqa: B018  (a container whose children disagree fails here)
    return node


def _bind_child(child: Child, path: str) -> Node:
    spec = child.spec
    if isinstance(spec, Transform):
        return _bind(spec, spec.signature(child.inputs, child.conditions), path)
    if child.outputs is None:
        raise OptionError(f"subnet child {child.name!r} needs its output shape")
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
        raise ArgumentError(f"expected a flowcore Transform spec, got {type(spec).__name__}")
    inputs, conditions = _shapes("input", inputs), _shapes("condition", conditions)
    return _bind(spec, spec.signature(inputs, conditions), path)


def _is_dim(d: Any) -> bool:
    return isinstance(d, (int, np.integer)) and not isinstance(d, bool) and bool(d > 0)


def _shapes(what: str, shapes: Any) -> list[tuple[int, ...]]:
    """``shapes`` as a list of tuples of positive ints, or a ShapeError saying what a list of
    shapes is."""
    ok = isinstance(shapes, (list, tuple)) and all(
        isinstance(s, (list, tuple)) and all(_is_dim(d) for d in s) for s in shapes
    )
    if not ok:
        raise ShapeError(
            f"{what} shapes must be a list of shapes of positive ints, batch axis excluded, "
            f"like [(3,)] for one {what} of 3 features; got {shapes!r}"
        )
    return [tuple(int(d) for d in s) for s in shapes]


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


def path_seed(seed: int, path: str) -> int:
    """A 32-bit seed from the build seed and a module's path, for what a backend seeds itself
    (native subnets, random draws), drawn as the parameters are."""
    entropy = np.random.SeedSequence([seed, zlib.crc32(path.encode())])
    return int(entropy.generate_state(1)[0])


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
                raise OptionError(
                    f"{node.label}: initialiser of {p.name!r} gave shape {value.shape}, "
                    f"declared {p.shape}"
                )
            out[node.full_name(p.name)] = value.astype(
                np.int64 if p.kind == "index" else np.float64
            )
    return out

"""Bookkeeping of FrEIA's imperative ``SequenceINN(*dims).append(...)``, shared by backends.

A backend's imperative ``SequenceINN`` keeps its native blocks; this class keeps their trees,
shapes and condition indices, and gives the tree of the whole sequence (or of a slice) that
the backend's generic module runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ..errors import ArgumentError, ShapeError
from ..spec import Shape, Signature, Transform
from ..tree import Node, build_tree
from .sequence import Inverse, SequenceINN

T = TypeVar("T")
M = TypeVar("M")


class SequenceBuilder:
    """The blocks of an imperative sequence: their trees and condition indices."""

    def __init__(self, *dims: int) -> None:
        if not dims or not all(isinstance(d, int) and d > 0 for d in dims):
            raise ShapeError(f"SequenceINN: input dimensions must be positive ints, got {dims}")
        self.input_shape: Shape = tuple(dims)
        self.blocks: list[Node] = []
        self.conditions: list[int | None] = []
        self.cond_shapes: dict[int, Shape] = {}

    @property
    def output_shape(self) -> Shape:
        return self.blocks[-1].signature.outputs[0] if self.blocks else self.input_shape

    def add(
        self,
        block: type[Transform] | Transform,
        cond: int | None,
        cond_shape: Any,
        kwargs: Mapping[str, Any],
        make: Callable[[Node], T],
    ) -> T:
        """Bind a new block (a spec class with its kwargs, or a spec) after the last one and
        build its native module with ``make(node)``; nothing is recorded if either fails."""
        if isinstance(block, type) and issubclass(block, Transform):
            spec = block(**kwargs)
        elif isinstance(block, Transform) and not kwargs:
            spec = block
        else:
            raise ArgumentError(
                "SequenceINN.append: expected a flowcore Transform class with its keyword "
                f"arguments, or a Transform spec without them; got {block!r}"
            )
        conds: list[Shape] = []
        if cond is not None:
            if cond_shape is None:
                raise ShapeError("SequenceINN.append: cond=... needs cond_shape=...")
            shape = (cond_shape,) if isinstance(cond_shape, int) else tuple(cond_shape)
            if self.cond_shapes.get(cond, shape) != shape:
                raise ShapeError(
                    f"SequenceINN.append: condition {cond} was declared with shape "
                    f"{self.cond_shapes[cond]}, now {shape}"
                )
            conds = [shape]
        node = build_tree(spec, [self.output_shape], conds, path=str(len(self.blocks)))
        module = make(node)
        if cond is not None:
            self.cond_shapes[cond] = conds[0]
        self.blocks.append(node)
        self.conditions.append(cond)
        return module

    def replace(self, index: int, spec: Transform, make: Callable[[Node], T]) -> T:
        """Put ``spec`` in place of block ``index``, with the same input, output and
        condition shapes, and build its native module with ``make(node)``; nothing changes
        if either fails."""
        old = self.blocks[index]
        node = build_tree(spec, old.signature.inputs, old.signature.conditions, path=str(index))
        if node.signature.outputs != old.signature.outputs:
            raise ShapeError(
                f"SequenceINN: block {index} gives {list(old.signature.outputs)}; its "
                f"replacement {spec.label} gives {list(node.signature.outputs)}"
            )
        module = make(node)
        self.blocks[index] = node
        return module

    def select(
        self, index: int | slice, blocks: Sequence[M], wrap: Callable[[Node, dict[str, M]], M]
    ) -> M:
        """``seq[index]``: a block, or for a slice a module made by ``wrap(tree, children)``
        that shares the blocks (each wrapped as an inverse when the step is negative)."""
        if isinstance(index, int):
            return blocks[index]
        order = list(range(len(self.blocks)))[index]
        invert = index.step is not None and index.step < 0
        tree = self.tree(order, invert)
        children = {}
        for j, i in enumerate(order):
            child = tree.children[str(j)]
            children[str(j)] = wrap(child, {"inner": blocks[i]}) if invert else blocks[i]
        return wrap(tree, children)

    def tree(self, order: list[int] | None = None, invert: bool = False) -> Node:
        """The tree of the sequence, or of the blocks ``order`` (inverted if ``invert``)."""
        order = list(range(len(self.blocks))) if order is None else order
        n_conds = max(self.cond_shapes, default=-1) + 1
        gaps = [i for i in range(n_conds) if i not in self.cond_shapes]
        if gaps:
            raise ShapeError(f"SequenceINN: conditions {gaps} are used by no block")
        cond_shapes = tuple(self.cond_shapes[i] for i in range(n_conds))
        children = {}
        for j, i in enumerate(order):
            node = self.blocks[i]
            if invert:
                assert isinstance(node.spec, Transform)
                node = Node(Inverse(node.spec), node.signature, str(j), (), {"inner": node})
            children[str(j)] = node
        specs = [children[str(j)].spec for j in range(len(order))]
        spec = SequenceINN(*specs, conditions=[self.conditions[i] for i in order])  # type: ignore[arg-type]
        if not order:
            first = last = self.output_shape
        elif invert:  # an inverted block maps its outputs back to its inputs
            first = self.blocks[order[0]].signature.outputs[0]
            last = self.blocks[order[-1]].signature.inputs[0]
        else:
            first = self.blocks[order[0]].signature.inputs[0]
            last = self.blocks[order[-1]].signature.outputs[0]
        return Node(spec, Signature((first,), (last,), cond_shapes), "", (), children)

r"""The nodes of a graph flow, as FrEIA names them: framework-free, shapes inferred at once.

A node is built from the nodes it reads, so a graph is written top to bottom::

    x = InputNode(3, 16, 16, name="x")
    c = ConditionNode(10, name="c")
    a = Node(x, fc.AllInOneBlock(subnet=fc.ConvNet()), conditions=c, name="a")
    split = Node(a, fc.Split(sections=(1, 2)), name="split")
    out = OutputNode(split.out0), OutputNode(split.out1)

An input is given as a node (its output 0), as ``node.outK`` (its output ``K``) or a list of
those. The outputs of an :class:`InputNode` or a :class:`Node` are invertible variables: each
goes to exactly one node, as input; a node may also read any variable as a *condition*
(a :class:`ConditionNode`, a :class:`FeedForwardNode`'s output, or an intermediate
variable), which does not consume it. :class:`~flowcore.models.graph.GraphINN` turns a list
of nodes into a transform.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ArgumentError, OptionError, ShapeError
from ..spec import NativeSubnet, Shape, Spec, Subnet, Transform
from ..tree import build_tree

#: A reference to a variable: output ``index`` of ``node``.
Connection = tuple["GraphNode", int]


def _dims(dims: Sequence[Any], what: str) -> Shape:
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise ShapeError(f"{what}: dimensions must be positive ints like (3, 32, 32), got {dims}")
    return tuple(dims)


def parse_connections(value: Any, where: str, what: str) -> list[Connection]:
    """``node``, ``(node, k)`` / ``node.outK`` or a list of those, as ``[(node, k), ...]``."""
    if value is None:
        return []
    if isinstance(value, GraphNode):
        return [(value, 0)]
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ArgumentError(
            f"{where}: {what} must be nodes or node.outK, got {type(value).__name__}"
        )
    out: list[Connection] = []
    for item in value:
        if isinstance(item, GraphNode):
            item = (item, 0)
        if not (
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[0], GraphNode)
            and isinstance(item[1], int)
        ):
            raise ArgumentError(f"{where}: {what} must be nodes or node.outK, got {item!r}")
        node, index = item
        if not 0 <= index < len(node.output_dims):
            raise ShapeError(
                f"{where}: {node.label} has {len(node.output_dims)} output(s), "
                f"there is no output {index}"
            )
        out.append((node, index))
    return out


class GraphNode:
    """What every node has: a name, the variables it reads, its output shapes.

    ``inputs`` and ``conditions`` are ``[(node, k), ...]``; ``input_dims``,
    ``condition_dims`` and ``output_dims`` their shapes (batch axis excluded);
    ``outputs[k]`` is ``(consumer, slot)`` once a node takes output ``k`` as input.
    """

    #: The kind a graph's config records.
    kind: str = ""
    #: Whether this node's outputs must each go to exactly one node.
    invertible_outputs: bool = False

    def __init__(
        self,
        inputs: Any,
        conditions: Any,
        spec: Spec | NativeSubnet | None,
        name: str | None,
    ) -> None:
        if name is not None and (not isinstance(name, str) or not name or "." in name):
            raise OptionError(f"node name must be a non-empty string without '.', got {name!r}")
        self.name = name
        self.spec = spec
        where = self.label
        self.inputs = parse_connections(inputs, where, "inputs")
        self.conditions = parse_connections(conditions, where, "conditions")
        for node, _ in self.inputs:
            if not node.invertible_outputs:
                raise ArgumentError(
                    f"{where}: {node.label} gives conditions, not inputs; pass it as "
                    "conditions=..."
                )
        for node, _ in self.conditions:
            if isinstance(node, OutputNode):
                raise ArgumentError(f"{where}: an OutputNode has no outputs to condition on")
        self.input_dims: list[Shape] = [n.output_dims[i] for n, i in self.inputs]
        self.condition_dims: list[Shape] = [n.output_dims[i] for n, i in self.conditions]
        self.output_dims: list[Shape] = self._infer_shapes()
        self.outputs: list[tuple[GraphNode, int] | None] = [None] * len(self.output_dims)
        for slot, (node, index) in enumerate(self.inputs):
            node._consume(index, self, slot)

    def _infer_shapes(self) -> list[Shape]:
        raise NotImplementedError

    def _consume(self, index: int, by: GraphNode, slot: int) -> None:
        taken = self.outputs[index]
        if taken is not None:
            raise ShapeError(
                f"{by.label}: output {index} of {self.label} already goes to "
                f"{taken[0].label}; an invertible variable is used once (read it as a "
                "condition to use it again)"
            )
        self.outputs[index] = (by, slot)

    def __getattr__(self, attr: str) -> Connection:
        if attr.startswith("out") and attr[3:].isdigit():
            index = int(attr[3:])
            dims = self.__dict__.get("output_dims", [])
            if index < len(dims):
                return (self, index)
            raise AttributeError(f"{self.label} has {len(dims)} output(s), no {attr}")
        raise AttributeError(f"{type(self).__name__!s} object has no attribute {attr!r}")

    @property
    def label(self) -> str:
        """What errors call this node: its kind and name, or its kind and transform."""
        kind = type(self).__name__
        if self.name is not None:
            return f"{kind} {self.name!r}"
        spec = self.__dict__.get("spec")
        if isinstance(spec, (Spec, NativeSubnet)):
            inner = spec.name if isinstance(spec, NativeSubnet) else spec.label
            return f"{kind}({inner})"
        return kind

    def __repr__(self) -> str:
        ins = getattr(self, "input_dims", [])
        outs = getattr(self, "output_dims", [])
        return f"<{self.label}: {ins} -> {outs}>"


class InputNode(GraphNode):
    """An input of the graph (its output when run in reverse): ``InputNode(3, 32, 32)``."""

    kind = "input"
    invertible_outputs = True

    def __init__(self, *dims: int, name: str | None = None) -> None:
        self.dims = _dims(dims, f"InputNode {name!r}" if name else "InputNode")
        super().__init__(None, None, None, name)

    def _infer_shapes(self) -> list[Shape]:
        return [self.dims]


class ConditionNode(GraphNode):
    """A condition given to the graph's call, read by nodes as ``conditions=``:
    ``ConditionNode(10)`` a vector per sample, ``ConditionNode()`` one number per sample
    (shape ``()``, such as :class:`~flowcore.GaussianMixtureModel`'s component index)."""

    kind = "condition"

    def __init__(self, *dims: int, name: str | None = None) -> None:
        scalar = dims in ((), ((),))
        where = f"ConditionNode {name!r}" if name else "ConditionNode"
        self.dims = () if scalar else _dims(dims, where)
        super().__init__(None, None, None, name)

    def _infer_shapes(self) -> list[Shape]:
        return [self.dims]


class OutputNode(GraphNode):
    """An output of the graph (its input when run in reverse): ``OutputNode(node.out1)``."""

    kind = "output"

    def __init__(self, in_node: Any, name: str | None = None) -> None:
        super().__init__(in_node, None, None, name)

    def _infer_shapes(self) -> list[Shape]:
        if len(self.inputs) != 1:
            raise ShapeError(f"{self.label}: takes exactly one input, got {len(self.inputs)}")
        return []


def _make_spec(module_type: Any, module_args: Mapping[str, Any] | None, where: str) -> Any:
    if isinstance(module_type, type):
        return module_type(**dict(module_args or {}))
    if module_args:
        raise ArgumentError(
            f"{where}: module_args are the arguments of a class; an instance "
            f"({type(module_type).__name__}) takes none"
        )
    return module_type


class Node(GraphNode):
    """An invertible transform in the graph: ``Node(inputs, module_type, module_args,
    conditions=None, name=None)``.

    ``module_type`` is a flowcore :class:`~flowcore.Transform` class, built with
    ``module_args``, or a transform spec (then ``module_args`` stays empty). The conditions
    are handed to the transform in the order given.
    """

    kind = "node"
    invertible_outputs = True

    def __init__(
        self,
        inputs: Any,
        module_type: Any,
        module_args: Mapping[str, Any] | None = None,
        conditions: Any = None,
        name: str | None = None,
    ) -> None:
        where = f"Node {name!r}" if name else "Node"
        spec = _make_spec(module_type, module_args, where)
        if not isinstance(spec, Transform):
            raise ArgumentError(
                f"{where}: module_type must be a flowcore Transform class or spec, got "
                f"{type(spec).__name__}"
            )
        super().__init__(inputs, conditions, spec, name)

    def _infer_shapes(self) -> list[Shape]:
        spec = self.spec
        assert isinstance(spec, Transform)
        if not self.inputs:
            raise ShapeError(f"{self.label}: a Node needs at least one input")
        try:  # binding checks the children's shapes too (a subnet that cannot take images)
            sig = build_tree(spec, self.input_dims, self.condition_dims).signature
        except (ShapeError, ValueError) as err:
            raise ShapeError(
                f"{self.label}: {err} (inputs {self.input_dims}, conditions {self.condition_dims})"
            ) from err
        return list(sig.outputs)


class _FixedModule:
    """A native module class with its arguments, as FrEIA's FeedForwardNode builds it."""

    def __init__(self, module_type: type, module_args: Mapping[str, Any]) -> None:
        self.module_type = module_type
        self.module_args = dict(module_args)
        self.__name__ = module_type.__name__

    def __call__(self, c_in: int, c_out: int) -> Any:
        return self.module_type(**self.module_args)


class _GivenModule:
    """A native module instance, used as it is (FrEIA's FeedForwardNode, NativeTransform)."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.__name__ = type(module).__name__

    def __call__(self, c_in: int, c_out: int) -> Any:
        return self.module


class FeedForwardNode(GraphNode):
    """A non-invertible network whose output is used only as a condition:
    ``FeedForwardNode(conditions, output_dims, module_type, module_args=None)``.

    ``module_type`` is a flowcore :class:`~flowcore.Subnet` (class or spec, such as
    :class:`~flowcore.MLP`), or a backend-native module class built with ``module_args``
    (FrEIA's form; it runs only in that backend). It reads one variable and computes the
    same value in both directions, so it is never inverted and adds nothing to the log-det.
    """

    kind = "feed_forward"

    def __init__(
        self,
        conditions: Any,
        output_dims: Sequence[int],
        module_type: Any,
        module_args: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        where = f"FeedForwardNode {name!r}" if name else "FeedForwardNode"
        self.module_output_dims = _dims(tuple(output_dims), where)
        if isinstance(module_type, type) and not issubclass(module_type, Subnet):
            spec: Any = NativeSubnet(_FixedModule(module_type, module_args or {}))
        else:
            spec = _make_spec(module_type, module_args, where)
            if isinstance(spec, Spec) and not isinstance(spec, Subnet):
                raise ArgumentError(f"{where}: module_type must be a subnet, got {spec.label}")
            if not isinstance(spec, (Subnet, NativeSubnet)):
                spec = NativeSubnet(_GivenModule(spec))
        super().__init__(None, conditions, spec, name)

    def _infer_shapes(self) -> list[Shape]:
        if len(self.conditions) != 1:
            raise ShapeError(
                f"{self.label}: reads exactly one variable (conditions=...), got "
                f"{len(self.conditions)}"
            )
        if isinstance(self.spec, Subnet):
            self.spec.validate(self.condition_dims[0], self.module_output_dims)
        return [self.module_output_dims]


def collect_nodes(*start: GraphNode) -> list[GraphNode]:
    """Every node reachable from ``start`` (the input nodes, usually): through the nodes that
    take their outputs and the nodes they read conditions from, in the order found."""
    found: list[GraphNode] = []
    pending = list(start)
    while pending:
        node = pending.pop(0)
        if any(node is n for n in found):
            continue
        found.append(node)
        pending += [t[0] for t in node.outputs if t is not None]
        pending += [n for n, _ in node.conditions]
    return found

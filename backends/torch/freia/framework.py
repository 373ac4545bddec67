"""FrEIA's ``FrEIA.framework`` on flowcore: ``SequenceINN``, ``GraphINN`` and the nodes.

The classes are flowcore's PyTorch ones with FrEIA's conventions on top: blocks are FrEIA
modules built dims first (``module_class(dims_in, dims_c=..., **kwargs)``): the drop-in's
own (:mod:`.modules`), a user's :class:`~.modules.InvertibleModule` subclass, a
``functools.partial`` or any factory of them; a built module can be passed instead of a
class. A flowcore spec class or spec is accepted as in :mod:`flowcore.backends.torch`.
``SequenceINN`` has ``shapes``, ``output_dims()``, ``module_list`` and ``inn[i] = block``;
``GraphINN`` has ``dims_in``, ``dims_c``, ``node_list`` with each node's ``module``, and
``log_jacobian_numerical``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

import flowcore.models.nodes as core_nodes
from flowcore.adapter import as_list
from flowcore.errors import ArgumentError, OptionError, ShapeError
from flowcore.executor import check_flags
from flowcore.interop.freia import FreiaVersion, freia_blocks
from flowcore.models import GraphINN as GraphSpec
from flowcore.models.native import NativeTransform
from flowcore.models.nodes import collect_nodes, parse_connections
from flowcore.spec import Context, Transform
from flowcore.tree import Node as TreeNode

from ..graph import GraphINN as TorchGraphINN
from ..modules import FlowModule
from ..sequence import SequenceINN as TorchSequenceINN
from .checkpoint import install_container_hooks
from .modules import FreiaBlock
from .utils import plot_graph
from .versions import freia_version

__all__ = [
    "ConditionNode", "FeedForwardNode", "GraphINN", "InputNode", "Node", "OutputNode",
    "ReversibleGraphNet", "SequenceINN", "collect_nodes", "numerical_log_det",
]  # fmt: skip


class InputNode(core_nodes.InputNode):
    """FrEIA's ``InputNode(*dims, name=None)``; its ``module`` is None."""

    module: nn.Module | None = None


class ConditionNode(core_nodes.ConditionNode):
    """FrEIA's ``ConditionNode(*dims, name=None)``; its ``module`` is None. FrEIA's size-0
    ``ConditionNode(0)`` (FrEIA's own test declares a GaussianMixtureModel's component
    index so) is flowcore's ``ConditionNode()``: one number per sample, shape ()."""

    module: nn.Module | None = None

    def __init__(self, *dims: int, name: str | None = None) -> None:
        super().__init__(*(() if dims in ((0,), ((0,),)) else dims), name=name)


class OutputNode(core_nodes.OutputNode):
    """FrEIA's ``OutputNode(in_node, name=None)``; its ``module`` is None."""

    module: nn.Module | None = None


class FeedForwardNode(core_nodes.FeedForwardNode):
    """FrEIA's ``FeedForwardNode(inputs, output_dims, module_type, module_args=None,
    name=None)``; its ``module`` is set when a GraphINN builds it."""

    module: nn.Module | None = None


def _is_spec(block: Any) -> bool:
    return isinstance(block, Transform) or (
        isinstance(block, type) and issubclass(block, Transform)
    )


def _build_module(
    module_type: Any, dims_in: list[tuple[int, ...]], dims_c: list[tuple[int, ...]], kwargs: Any
) -> nn.Module:
    """A FrEIA module: ``module_type`` itself if built, else built dims first as FrEIA
    does (``dims_c`` passed only when there are conditions)."""
    if isinstance(module_type, nn.Module):
        if kwargs:
            raise ArgumentError(
                f"{type(module_type).__name__} is already built: it takes no arguments"
            )
        return module_type
    if not callable(module_type):
        raise ArgumentError(
            f"expected a FrEIA module class, factory or module, got {module_type!r}"
        )
    extra = {"dims_c": dims_c} if dims_c else {}
    module = module_type(dims_in, **extra, **dict(kwargs or {}))
    if not isinstance(module, nn.Module):
        raise ArgumentError(f"{module_type!r} built {type(module).__name__}, not a torch module")
    return module


class FreiaNativeTransform(NativeTransform):
    """A user's FrEIA module, called as FrEIA's containers call it: with ``c=`` only when
    it has conditions, so that a ``forward(x, rev=False, jac=True)`` without ``c`` (as
    CS-Flow's modules have) runs as in FrEIA."""

    def run(self, ctx: Any, xs: list[Any], cs: list[Any], rev: bool) -> tuple[list[Any], Any]:
        if not cs:
            module = ctx.children["module"]
            ctx.children = {
                **ctx.children,
                "module": lambda x, c, rev, jac: module(x, rev=rev, jac=jac),
            }
        return super().run(ctx, xs, cs, rev)


def _spec_of(module: nn.Module) -> Transform:
    """The flowcore spec a FrEIA module runs as: its own, or the module itself, native."""
    if isinstance(module, FlowModule):
        spec = module.flowcore_tree.spec
        assert isinstance(spec, Transform)
        return spec
    return FreiaNativeTransform(module)


def _check_built_for(module: nn.Module, node: TreeNode) -> None:
    if isinstance(module, FlowModule):
        built = module.flowcore_tree.signature
        if (built.inputs, built.conditions) != (node.signature.inputs, node.signature.conditions):
            raise OptionError(
                f"{type(module).__name__} was built for inputs {list(built.inputs)} and "
                f"conditions {list(built.conditions)}; here they are "
                f"{list(node.signature.inputs)} and {list(node.signature.conditions)}"
            )


def _adopt(module: nn.Module, node: TreeNode, dtype: torch.dtype) -> nn.Module:
    """The module a container holds for a FrEIA module placed at ``node``: a flowcore
    module itself (bound to its place), a native one wrapped so it runs as a transform."""
    _check_built_for(module, node)
    if isinstance(module, FlowModule):
        module._bind(node)
        return module
    return FlowModule(node, {}, dtype, {"module": module})


def _is_block(module: nn.Module) -> bool:
    """Whether a container's child converts its own ``state_dict`` entries."""
    return isinstance(module, FreiaBlock)


def _unwrap(module: nn.Module) -> nn.Module:
    """A native module as the user gave it, not the wrapper a container holds it in."""
    tree = getattr(module, "flowcore_tree", None)
    if isinstance(tree, TreeNode) and isinstance(tree.spec, NativeTransform):
        native: nn.Module = tree.spec.module
        return native
    return module


class SequenceINN(TorchSequenceINN):
    """FrEIA's ``SequenceINN(*dims, force_tuple_output=False)``: blocks appended one by
    one, built dims first from the current output shape."""

    def __init__(self, *dims: int, force_tuple_output: bool = False) -> None:
        super().__init__(*dims, force_tuple_output=force_tuple_output)
        #: The FrEIA version whose ``state_dict`` layout the model has (see .checkpoint).
        self.freia_version: FreiaVersion = freia_version()
        install_container_hooks(self, _is_block)

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """The input shape, then each block's output shape."""
        return [self._builder.input_shape] + [b.signature.outputs[0] for b in self._builder.blocks]

    def output_dims(self, input_dims: Any = None) -> list[tuple[int, ...]]:
        return [self.shapes[-1]]

    @property
    def dims_in(self) -> list[tuple[int, ...]]:
        return [self.shapes[0]]

    @property
    def module_list(self) -> list[nn.Module]:
        """The blocks, as FrEIA's ``module_list``."""
        return [_unwrap(m) for m in self]

    def append(
        self, module_class: Any, cond: int | None = None, cond_shape: Any = None, **kwargs: Any
    ) -> None:
        if _is_spec(module_class):
            super().append(module_class, cond, cond_shape, **kwargs)
            return
        dims_c = [self._cond_shape(cond, cond_shape)] if cond is not None else []
        module = _build_module(module_class, [self.shapes[-1]], dims_c, kwargs)
        built = self._builder.add(
            _spec_of(module), cond, cond_shape, {}, lambda node: _adopt(module, node, self._dtype)
        )
        self._add_child(str(len(self) - 1), built)
        self._bind(self._builder.tree())

    @staticmethod
    def _cond_shape(cond: int, cond_shape: Any) -> tuple[int, ...]:
        if cond_shape is None:
            raise OptionError("SequenceINN.append: cond=... needs cond_shape=...")
        return (cond_shape,) if isinstance(cond_shape, int) else tuple(cond_shape)

    def __getitem__(self, index: int | slice) -> Any:
        item = super().__getitem__(index)
        return _unwrap(item) if isinstance(index, int) else item

    def __setitem__(self, index: int, block: nn.Module) -> None:
        """Replace block ``index`` by a built FrEIA module with the same input, output and
        condition shapes (a ValueError otherwise)."""
        index = range(len(self))[index]
        built = self._builder.replace(
            index, _spec_of(block), lambda node: _adopt(block, node, self._dtype)
        )
        self._add_child(str(index), built)
        self._bind(self._builder.tree())


class Node(core_nodes.Node):
    """FrEIA's ``Node(inputs, module_type, module_args=None, conditions=None, name=None)``:
    ``module_type`` a FrEIA module class or factory (built dims first, as FrEIA builds it),
    a built module, or a flowcore spec class or spec. The module is ``node.module``."""

    def __init__(
        self,
        inputs: Any,
        module_type: Any,
        module_args: Mapping[str, Any] | None = None,
        conditions: Any = None,
        name: str | None = None,
    ) -> None:
        self.module: nn.Module | None = None
        if not _is_spec(module_type):
            where = f"Node {name!r}" if name else "Node"
            dims_in = [n.output_dims[i] for n, i in parse_connections(inputs, where, "inputs")]
            dims_c = [
                n.output_dims[i] for n, i in parse_connections(conditions, where, "conditions")
            ]
            self.module = _build_module(module_type, dims_in, dims_c, module_args)
            module_type, module_args = _spec_of(self.module), None
        super().__init__(inputs, module_type, module_args, conditions, name)


class GraphINN(TorchGraphINN):
    """FrEIA's ``GraphINN(node_list, force_tuple_output=False, verbose=False)``; each
    node's module is ``node.module`` and a submodule named after the node."""

    def __init__(
        self, node_list: Any, force_tuple_output: bool = False, verbose: bool = False
    ) -> None:
        nodes = list(node_list)
        tree = self._graph_tree(nodes)
        spec = tree.spec
        assert isinstance(spec, GraphSpec)
        given = {
            name: _adopt(n.module, tree.children[name], torch.get_default_dtype())
            for n, name in zip(nodes, spec.names, strict=True)
            if isinstance(n, Node) and n.module is not None
        }
        params, seed = self._initial(tree, None)
        FlowModule.__init__(self, tree, params, torch.get_default_dtype(), given, seed=seed)
        self._graph_init(nodes, tree, force_tuple_output, verbose)
        #: The FrEIA version whose ``state_dict`` layout the model has (see .checkpoint).
        self.freia_version: FreiaVersion = freia_version()
        install_container_hooks(self, _is_block)
        for n, name in zip(nodes, spec.names, strict=True):
            if isinstance(n, (core_nodes.Node, core_nodes.FeedForwardNode)):
                held = self._modules[name]
                assert held is not None
                n.module = _unwrap(held)  # type: ignore[union-attr]

    def forward(  # type: ignore[override]
        self,
        x_or_z: Any,
        c: Any = None,
        rev: bool = False,
        jac: bool = True,
        intermediate_outputs: bool = False,
    ) -> tuple[Any, Any]:
        if isinstance(c, (list, tuple)) and not all(isinstance(a, torch.Tensor) for a in c):
            return self._call_with_flags(x_or_z, list(c), rev, jac)
        return super().forward(x_or_z, c, rev, jac, intermediate_outputs)

    def _call_with_flags(
        self, x_or_z: Any, cs: list[Any], rev: bool, jac: bool
    ) -> tuple[Any, Any]:
        """FrEIA-compat glue: FrEIA's GaussianMixtureModel takes None (every component) or
        an int (a seed) as its component index, and its output is then (batch, K, D). The
        graph hands such conditions to its nodes as they are, without its own shape checks
        (FrEIA's GraphINN makes none); each node checks what it takes."""
        check_flags(rev, jac)
        tree = self.flowcore_tree
        if len(cs) != len(tree.signature.conditions):
            raise ShapeError(
                f"{tree.label}: expected {len(tree.signature.conditions)} condition(s), "
                f"got {len(cs)}"
            )
        xs = as_list(x_or_z, "input", self._is_array, self._convert)
        ctx = Context(self.xp, self._values(), self._callables(), bool(jac), None, tree)
        ys, log_dets, _ = self.graph.evaluate(ctx, xs, cs, bool(rev))
        log_det: Any = 0.0
        for value in log_dets.values():
            log_det = log_det + value
        return (ys[0] if len(ys) == 1 and not self.force_tuple_output else tuple(ys)), log_det

    @property
    def dims_in(self) -> list[tuple[int, ...]]:
        return [n.output_dims[0] for n in self.in_nodes]

    @property
    def module_list(self) -> list[nn.Module]:
        """The nodes' modules in FrEIA's order, a topological one (as the keys
        ``module_list.{i}.`` of the ``state_dict``); where the graph has several, FrEIA's
        depends on its node objects' hashes, and this takes the node listed first."""
        tree = self.flowcore_tree
        return [
            _unwrap(self._modules[tree.relative(node.path)])  # type: ignore[arg-type]
            for _, node in freia_blocks(tree, strict=False)
        ]

    @property
    def dims_c(self) -> list[tuple[int, ...]]:
        return [n.output_dims[0] for n in self.condition_nodes]

    def output_dims(self, input_dims: Any = None) -> list[tuple[int, ...]]:
        return [n.input_dims[0] for n in self.out_nodes]

    def plot(self, path: str = "graph", filename: str = "graph") -> None:
        """Draw the graph to ``path/filename`` and ``.pdf`` (:func:`.utils.plot_graph`)."""
        plot_graph(self.node_list, path, filename)

    def log_jacobian_numerical(
        self, x: Any, c: Any = None, rev: bool = False, h: float = 1e-04
    ) -> torch.Tensor:
        """log|det J| per sample by central differences of step ``h`` (FrEIA's check)."""
        return numerical_log_det(lambda xs: self(xs, c=c, rev=rev, jac=False)[0], x, h)


#: FrEIA's old name of :class:`GraphINN`.
ReversibleGraphNet = GraphINN


def numerical_log_det(f: Callable[[list[torch.Tensor]], Any], x: Any, h: float) -> torch.Tensor:
    """log|det df/dx| per sample by central differences: ``x`` a tensor or a list (their
    flattened concatenation is the variable), ``f`` of that list returns a tensor or tuple."""
    xs = [x] if isinstance(x, torch.Tensor) else list(x)
    batch = xs[0].shape[0]
    flat = torch.cat([t.reshape(batch, -1) for t in xs], dim=1).detach()
    sizes = [t[0].numel() for t in xs]

    def evaluate(v: torch.Tensor) -> torch.Tensor:
        parts = torch.split(v, sizes, dim=1)
        out = f([p.reshape(t.shape) for p, t in zip(parts, xs, strict=True)])
        outs = [out] if isinstance(out, torch.Tensor) else list(out)
        return torch.cat([o.reshape(batch, -1) for o in outs], dim=1)

    n = flat.shape[1]
    columns = []
    with torch.no_grad():
        for i in range(n):
            step = torch.zeros_like(flat)
            step[:, i] = h
            columns.append((evaluate(flat + step) - evaluate(flat - step)) / (2 * h))
    jacobian = torch.stack(columns, dim=2)
    return torch.linalg.slogdet(jacobian)[1]

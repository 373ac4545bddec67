"""The neutral half of every backend's modules, written once.

A backend's module class mixes in :class:`NodeModule` and supplies a few hooks of native
glue (make a variable, hold a child, read and write values, draw random numbers); this class
turns a bound :class:`~flowcore.tree.Node` into that module tree, runs it through
:func:`flowcore.executor.run_node` and writes state updates back. :class:`ImperativeSequence`
is FrEIA's ``SequenceINN(*dims).append(...)`` on top of it, and :class:`ImperativeGraph`
FrEIA's ``GraphINN(node_list)``, for every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import BackendError, FlowError, ShapeError
from .executor import check_call, checked_native, run_node
from .models import GraphINN, SequenceBuilder
from .models.nodes import GraphNode
from .spec import Array, Context, Draw, Namespace, ParamSpec, Transform
from .tree import Node, build_tree, initial_params


def as_list(
    x: Any,
    what: str,
    is_array: Callable[[Any], bool],
    convert: Callable[[Any], Any] | None = None,
    expected: str = "an array",
) -> list[Any]:
    """Inputs or conditions as a list: an array, a list or tuple of arrays, or None; each
    passed through ``convert`` when given. ``expected`` names what an array is, for the
    error."""
    if x is None:
        return []
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    bad = next((a for a in items if not is_array(a)), None)
    if bad is not None:
        inner = "" if bad is x else f" holding {type(bad).__name__}"
        raise ShapeError(
            f"expected {expected} or a list of arrays as {what}, got {type(x).__name__}{inner}"
        )
    return items if convert is None else [convert(a) for a in items]


def outputs(x: Any, ys: Sequence[Array]) -> Any:
    """One array if one array came in and one goes out, else a tuple (FrEIA's convention)."""
    return ys[0] if not isinstance(x, (list, tuple)) and len(ys) == 1 else tuple(ys)


class NodeModule:
    """Mixin of a backend's module: a node's parameters and children, and its call.

    Hooks a backend implements: :attr:`xp`, :meth:`_add_param`, :meth:`_add_child`,
    :meth:`_children`, :meth:`_values`, :meth:`_write`, :meth:`_make_native`,
    :meth:`_make_module`, :meth:`_is_array`, and :meth:`_draw` for transforms that draw random
    numbers.
    """

    flowcore_tree: Node
    xp: Namespace
    _draws: bool
    _kinds: tuple[tuple[str, bool], ...]

    # -- hooks --------------------------------------------------------------------------
    def _add_param(self, p: ParamSpec, value: np.ndarray | None) -> None:
        """Create the native variable of ``p`` holding ``value`` (zeros when None)."""
        raise NotImplementedError

    def _add_child(self, name: str, module: Any) -> None:
        raise NotImplementedError

    def _child(self, name: str) -> Any:
        return self._children()[name]

    def _children(self) -> Mapping[str, Any]:
        """The child modules by name (read per call: DataParallel replicas have their own)."""
        raise NotImplementedError

    def _values(self) -> Mapping[str, Array]:
        """The node's own parameters as arrays, by local name."""
        raise NotImplementedError

    def _write(self, name: str, value: Array) -> None:
        """Write a state update into the variable ``name`` (no gradient flows)."""
        raise NotImplementedError

    def _make_native(self, node: Node) -> Any:
        raise NotImplementedError

    def _make_module(self, node: Node, params: Mapping[str, np.ndarray] | None) -> Any:
        """A module of this backend for a child transform or portable subnet."""
        raise NotImplementedError

    def _is_array(self, x: Any) -> bool:
        raise NotImplementedError

    def _draw(self) -> Draw | None:
        return None

    def _convert(self, x: Any) -> Any:
        """An input array as the backend computes with it (default: as it is).

        The rule of every backend: a floating-point input or condition in another float
        dtype than the model's is cast to the model's dtype (Keras' own rule for layers);
        integers (index conditions) pass unchanged.
        """
        return x

    #: what an input array is in this backend, for errors
    array_text = "an array"

    def _placement_problem(self, arrays: Sequence[Any]) -> str | None:
        """After a call failed: why, if the arrays are not where the model is (another
        device), in words that say what to do; None when that is not the cause."""
        return None

    # -- neutral ------------------------------------------------------------------------
    def _populate(
        self,
        tree: Node,
        params: Mapping[str, np.ndarray] | None,
        given: Mapping[str, Any] | None = None,
    ) -> None:
        """Create the node's variables (from ``params``, canonical full names) and children
        (``given`` ones reused)."""
        self._bind(tree)
        for p in tree.params:
            self._add_param(p, None if params is None else params[tree.full_name(p.name)])
        for name, child in tree.children.items():
            if given is not None and name in given:
                module = given[name]
            elif child.is_native:
                module = self._make_native(child)
            else:
                module = self._make_module(child, params)
            self._add_child(name, module)

    def _bind(self, tree: Node) -> None:
        """Run ``tree`` from now on; what a call needs to know of it is decided here once."""
        self.flowcore_tree = tree
        self._draws = isinstance(tree.spec, Transform) and tree.spec.uses_randomness
        self._kinds = tuple((name, child.is_transform) for name, child in tree.children.items())
        checked = isinstance(tree.spec, Transform) and tree.spec.native_children_are_subnets
        self._natives = tuple(
            (name, c) for name, c in tree.children.items() if c.is_native and checked
        )

    def _callables(self) -> dict[str, Callable[..., Any]]:
        # looked up per call (not cached) so that DataParallel replicas use their own children
        if not self._kinds:
            return {}
        modules = self._children()
        found = {name: modules[name].run if run else modules[name] for name, run in self._kinds}
        for name, node in self._natives:
            found[name] = checked_native(node, found[name])
        return found

    def run(
        self, xs: Sequence[Array], cs: Sequence[Array], rev: bool = False, jac: bool = True
    ) -> tuple[list[Array], Array]:
        """Run the transform on lists of native arrays; state updates are written back."""
        tree = self.flowcore_tree
        draw = (
            self._draw()
            if isinstance(tree.spec, Transform) and tree.spec.uses_randomness
            else None
        )
        ys, log_det, updates = run_node(
            tree, self.xp, self._values(), self._callables(), xs, cs, rev, jac, draw
        )
        for name, value in updates.items():
            self._write(name, value)
        return ys, log_det

    def apply_subnet(self, x: Array) -> Array:
        """Run a portable subnet node: ``y = f(x)``."""
        spec = self.flowcore_tree.spec
        return spec.apply(self.xp, self._values(), self._callables(), x)  # type: ignore[union-attr]

    def call_flow(self, x: Any, c: Any, rev: bool, jac: bool) -> tuple[Any, Array]:
        """FrEIA's call: ``x`` an array or list, ``c`` an array, list or None."""
        xs = as_list(x, "input", self._is_array, self._convert, self.array_text)
        cs = as_list(c, "condition", self._is_array, self._convert, self.array_text)
        try:
            ys, log_det = self.run(xs, cs, rev, jac)
        except FlowError:
            raise
        except Exception as err:  # the framework's own error: say so if placement is why
            problem = self._placement_problem([*xs, *cs])
            if problem is None:
                raise
            raise BackendError(f"{self.flowcore_tree.label}: {problem}") from err
        return outputs(x, ys), log_det


class ImperativeSequence(NodeModule):
    """FrEIA's ``SequenceINN(*dims)``: blocks appended one by one, sliced, iterated.

    Hooks beyond :class:`NodeModule`'s: :meth:`_new_block` (a block module for a bound
    node, on this sequence's device and dtype), :meth:`_wrap` (a module running a tree with
    given children) and :meth:`_random_seed` (a seed from the framework's global generator).
    """

    _builder: SequenceBuilder
    _seed: int | None
    force_tuple_output: bool

    def _new_block(self, node: Node, params: Mapping[str, np.ndarray], seed: int) -> Any:
        raise NotImplementedError

    def _wrap(self, tree: Node, children: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _random_seed(self) -> int:
        raise NotImplementedError

    def append(
        self,
        module_class: type[Transform] | Transform,
        cond: int | None = None,
        cond_shape: Any = None,
        **kwargs: Any,
    ) -> None:
        """Build ``module_class(**kwargs)`` (or take a spec) for the current output shape;
        ``cond`` indexes the list of conditions given to the call. Initial parameters come
        from the sequence's ``seed`` when given, else from the framework's global generator."""
        seed = self._seed if self._seed is not None else self._random_seed()
        module = self._builder.add(
            module_class,
            cond,
            cond_shape,
            kwargs,
            lambda node: self._new_block(node, initial_params(node, seed), seed),
        )
        self._add_child(str(len(self) - 1), module)
        self._bind(self._builder.tree())

    def __len__(self) -> int:
        return len(self._builder.blocks)

    def __iter__(self) -> Iterator[Any]:
        return (self._child(str(i)) for i in range(len(self)))

    def __getitem__(self, index: int | slice) -> Any:
        return self._builder.select(index, list(self), self._wrap)

    def call_flow(self, x: Any, c: Any, rev: bool, jac: bool) -> tuple[Any, Array]:
        z, log_det = super().call_flow(x, c, rev, jac)
        if self.force_tuple_output and not isinstance(z, tuple):
            z = (z,)
        return z, log_det


class ImperativeGraph(NodeModule):
    """FrEIA's ``GraphINN(node_list, force_tuple_output=False)`` on top of a backend module.

    The nodes are flowcore's (:mod:`flowcore.models.nodes`); each node's module is a child
    registered under the node's name. A call returns one array for a graph with one output
    (unless ``force_tuple_output``), else a tuple; ``intermediate_outputs=True`` returns every
    variable by ``(node, output index)`` and each transform node's log-det by node instead.
    Hook beyond :class:`NodeModule`'s: :meth:`_random_seed`.
    """

    graph: GraphINN
    node_list: list[GraphNode]
    force_tuple_output: bool

    def _random_seed(self) -> int:
        raise NotImplementedError

    @staticmethod
    def _graph_tree(node_list: Any) -> Node:
        graph = GraphINN(node_list)
        return build_tree(graph, graph.input_dims, graph.condition_dims)

    def _graph_init(
        self, node_list: Any, tree: Node, force_tuple_output: bool, verbose: bool
    ) -> None:
        self.graph = tree.spec  # type: ignore[assignment]
        self.node_list = list(node_list)
        self.force_tuple_output = force_tuple_output
        if verbose:
            from .models.picture import graph_text

            print(graph_text(self.graph))

    def _initial(self, tree: Node, seed: int | None) -> tuple[dict[str, np.ndarray], int]:
        seed = seed if seed is not None else self._random_seed()
        return initial_params(tree, seed), seed

    @property
    def _names(self) -> dict[int, str]:
        return {id(n): name for n, name in zip(self.node_list, self.graph.names, strict=True)}

    @property
    def in_nodes(self) -> list[GraphNode]:
        return [n for n in self.node_list if n.kind == "input"]

    @property
    def condition_nodes(self) -> list[GraphNode]:
        return [n for n in self.node_list if n.kind == "condition"]

    @property
    def out_nodes(self) -> list[GraphNode]:
        return [n for n in self.node_list if n.kind == "output"]

    def get_node_by_name(self, name: str) -> GraphNode | None:
        """The node named ``name`` (its given name, or the graph's default), or None."""
        return next((n for n in self.node_list if self._names[id(n)] == name), None)

    def get_module_by_name(self, name: str) -> Any:
        """The module of the node named ``name``, or None."""
        return self._children().get(name)

    def call_graph(
        self, x: Any, c: Any, rev: bool, jac: bool, intermediate_outputs: bool
    ) -> tuple[Any, Any]:
        xs = as_list(x, "input", self._is_array, self._convert, self.array_text)
        cs = as_list(c, "condition", self._is_array, self._convert, self.array_text)
        if intermediate_outputs:
            return self._intermediates(xs, cs, rev, jac)
        ys, log_det = self.run(xs, cs, rev, jac)
        return (ys[0] if len(ys) == 1 and not self.force_tuple_output else tuple(ys)), log_det

    def _intermediates(
        self, xs: list[Array], cs: list[Array], rev: bool, jac: bool
    ) -> tuple[dict[tuple[GraphNode, int], Array], dict[GraphNode, Array]]:
        tree = self.flowcore_tree
        rev, jac = check_call(tree, xs, cs, rev, jac)
        ctx = Context(self.xp, self._values(), self._callables(), jac, None, tree)
        results, log_dets, values = self.graph.evaluate(ctx, xs, cs, rev)
        by_name = {name: n for n, name in zip(self.node_list, self.graph.names, strict=True)}
        outs = {(by_name[name], k): v for (name, k), v in values.items()}
        for node, value in zip(self.in_nodes if rev else self.out_nodes, results, strict=True):
            outs[(node, 0)] = value
        return outs, {by_name[name]: v for name, v in log_dets.items()}

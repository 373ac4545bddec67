r"""GraphINN: an invertible network of nodes with several inputs, outputs and conditions.

The graph is a transform like any other: it nests in a sequence or another graph, and it
saves, loads and ports across backends. Its topology is decided here once, framework-free;
a backend only runs the children it is handed.
"""

from __future__ import annotations

import dataclasses
import graphlib
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import ArgumentError, ParameterError, ShapeError
from ..spec import (
    Array,
    Child,
    ConditionKind,
    Context,
    NativeSubnet,
    Shape,
    Signature,
    Spec,
    Transform,
    agreed_kind,
)
from .nodes import (
    ConditionNode,
    FeedForwardNode,
    GraphNode,
    InputNode,
    Node,
    OutputNode,
)

#: A variable of the graph: output ``index`` of the node named ``name``.
Edge = tuple[str, int]


@dataclasses.dataclass(frozen=True)
class Record:
    """One node as the graph keeps it: plain names and shapes, hashable and saveable."""

    kind: str
    name: str
    spec: Spec | NativeSubnet | None
    inputs: tuple[Edge, ...]
    conditions: tuple[Edge, ...]
    input_dims: tuple[Shape, ...]
    condition_dims: tuple[Shape, ...]
    output_dims: tuple[Shape, ...]

    def as_config(self) -> list[Any]:
        dims = self.output_dims[0] if self.kind in ("input", "condition", "feed_forward") else []
        return [self.kind, self.name, self.spec, self.inputs, self.conditions, dims]


def _kahn(
    names: Sequence[str], needs: dict[str, set[str]], direction: str, labels: dict[str, str]
) -> list[str]:
    """The nodes in an order where each runs after those it needs (ties: list order)."""
    sorter = graphlib.TopologicalSorter({n: needs[n] for n in names})
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        cycle = " -> ".join(labels[n] for n in err.args[1])
        raise ShapeError(f"GraphINN: the {direction} pass has a cycle: {cycle}") from None
    position = {n: i for i, n in enumerate(names)}
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order += ready
        sorter.done(*ready)
    return order


class GraphINN(Transform):
    r"""An invertible graph of :mod:`~flowcore.models.nodes` (FrEIA's ``GraphINN``).

    ``GraphINN(nodes)`` takes every node of the graph, in any order. The graph's inputs are
    its :class:`InputNode` s, its conditions its :class:`ConditionNode` s and its outputs its
    :class:`OutputNode` s, each in the order of ``nodes``. Forward runs the nodes in an order
    where each node's inputs and conditions are ready; reverse inverts each node, in an
    order where its outputs and conditions are ready (a condition read from an intermediate
    variable is then taken from where the reverse pass recomputes it). The log-det is the sum
    of the nodes':

    .. math:: \log|\det J_f(x)| = \sum_{\text{nodes } v} \log|\det J_v|

    Children are the transform and feed-forward nodes, by name; an unnamed node is named
    by its kind and its place in ``nodes`` (``"node3"``). Raises :class:`ShapeError` naming
    the nodes for a node missing from the list, a variable used by nothing, a cycle, and
    repeated names.
    """

    n_inputs = None

    def __init__(self, nodes: Iterable[GraphNode]) -> None:
        nodes = list(nodes)
        if not all(isinstance(n, GraphNode) for n in nodes):
            bad = next(n for n in nodes if not isinstance(n, GraphNode))
            raise ArgumentError(f"GraphINN: expected graph nodes, got {type(bad).__name__}")
        self.records, self.input_names, self.condition_names, self.output_names = _records(nodes)
        #: The nodes it was made of, and the name of each, in that order.
        self.nodes = tuple(nodes)
        self.names = tuple(r.name for r in self.records)
        self.n_inputs = len(self.input_names)
        self.n_outputs = len(self.output_names)
        self._by_name = {r.name: r for r in self.records}
        labels = {r.name: f"{_KIND_LABEL[r.kind]} {r.name!r}" for r in self.records}
        self._labels = labels
        steps = [r.name for r in self.records if r.kind in ("node", "feed_forward")]
        self.forward_order = tuple(_kahn(steps, self._needs(rev=False), "forward", labels))
        self.reverse_order = tuple(_kahn(steps, self._needs(rev=True), "reverse", labels))
        outs = [self._by_name[n].inputs[0] for n in self.output_names]
        self._output_edges: tuple[Edge, ...] = tuple(outs)
        self._condition_kinds = self._kinds_of_conditions()

    # -- description ----------------------------------------------------------------------
    @property
    def input_dims(self) -> tuple[Shape, ...]:
        return tuple(self._by_name[n].output_dims[0] for n in self.input_names)

    @property
    def condition_dims(self) -> tuple[Shape, ...]:
        return tuple(self._by_name[n].output_dims[0] for n in self.condition_names)

    @property
    def output_dims(self) -> tuple[Shape, ...]:
        return tuple(self._by_name[n].input_dims[0] for n in self.output_names)

    def default_shapes(self) -> tuple[tuple[Shape, ...], tuple[Shape, ...]]:
        return self.input_dims, self.condition_dims

    def record(self, name: str) -> Record:
        """The node named ``name``."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ParameterError(f"GraphINN has no node named {name!r}") from None

    def __repr__(self) -> str:
        return f"GraphINN({len(self.records)} nodes: {', '.join(self._labels.values())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GraphINN) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[Any, ...]:
        return (self.records, self.input_names, self.condition_names, self.output_names)

    def get_config(self) -> dict[str, Any]:
        """The nodes in list order, which orders the inputs, conditions and outputs."""
        return {"nodes": [r.as_config() for r in self.records]}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GraphINN:
        entries = {str(entry[1]): entry for entry in config["nodes"]}
        if len(entries) != len(config["nodes"]):
            names = [str(entry[1]) for entry in config["nodes"]]
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ShapeError(f"GraphINN config: nodes {twice} are listed more than once")
        reads = {name: {str(n) for n, _ in [*e[3], *e[4]]} for name, e in entries.items()}
        for name, needed in reads.items():
            if needed - entries.keys():
                raise ShapeError(
                    f"GraphINN config: node {name!r} reads {sorted(needed - entries.keys())}, "
                    "which the config does not list"
                )
        try:  # a node is made from the nodes it reads, so those first
            order = list(graphlib.TopologicalSorter(reads).static_order())
        except graphlib.CycleError as err:
            cycle = " -> ".join(repr(n) for n in err.args[1])
            raise ShapeError(
                f"GraphINN config: the nodes read each other in a cycle: {cycle}"
            ) from None
        made: dict[str, GraphNode] = {}
        for name in order:
            kind, _, spec, inputs, conditions, dims = entries[name]
            ins = [made[str(n)].__getattr__(f"out{i}") for n, i in inputs]
            conds = [made[str(n)].__getattr__(f"out{i}") for n, i in conditions]
            made[name] = _NODE_MAKERS[kind](spec, ins, conds, tuple(dims), name)
        return cls([made[n] for n in entries])

    # -- topology -----------------------------------------------------------------------------
    def _producer(self, edge: Edge, rev: bool) -> str | None:
        """The step that computes variable ``edge`` in a pass, or None if it is given."""
        name, index = edge
        record = self._by_name[name]
        if record.kind == "feed_forward":
            return name
        if record.kind == "condition":
            return None
        if not rev:
            return None if record.kind == "input" else name
        consumer = self._consumers[edge]
        return None if self._by_name[consumer].kind == "output" else consumer

    @property
    def _consumers(self) -> dict[Edge, str]:
        return {e: r.name for r in self.records for e in r.inputs}

    def _needs(self, rev: bool) -> dict[str, set[str]]:
        needs: dict[str, set[str]] = {}
        for r in self.records:
            if r.kind not in ("node", "feed_forward"):
                continue
            reads = list(r.conditions)
            if r.kind == "node":
                reads += [(r.name, k) for k in range(len(r.output_dims))] if rev else r.inputs
            needs[r.name] = {
                p for e in reads if (p := self._producer(e, rev)) not in (None, r.name)
            }
            own = [e for e in r.conditions if self._producer(e, rev) == r.name]
            if own:
                name, index = own[0]
                raise ShapeError(
                    f"GraphINN: {self._labels[r.name]} is conditioned on output {index} of "
                    f"{self._labels[name]}, which it computes itself in the "
                    f"{'reverse' if rev else 'forward'} pass: a node cannot read its own "
                    "input or output as a condition"
                )
        return needs

    def _kinds_of_conditions(self) -> tuple[ConditionKind, ...]:
        """Each condition node's kind, as the nodes reading it declare it (float if none);
        a ShapeError when two readers disagree."""
        readers: dict[str, list[tuple[ConditionKind, str]]] = {n: [] for n in self.condition_names}
        for r in self.records:
            if r.kind == "node":
                assert isinstance(r.spec, Transform)
                kinds = tuple(r.spec.condition_kinds(r.condition_dims))
            elif r.kind == "feed_forward":  # a portable subnet computes with floats
                kinds = ("any" if isinstance(r.spec, NativeSubnet) else "float",)
            else:
                continue
            for (name, _), kind in zip(r.conditions, kinds, strict=True):
                if name in readers:
                    readers[name].append((kind, self._labels[r.name]))
        out = []
        for name, read in readers.items():
            agreed = agreed_kind([k for k, _ in read])
            if agreed is None:
                how = ", ".join(f"{who} as {k!r}" for k, who in read)
                raise ShapeError(
                    f"GraphINN: {self._labels[name]} is read as different kinds of value: {how}"
                )
            out.append(agreed)
        return tuple(out)

    # -- the transform ------------------------------------------------------------------------
    def condition_kinds(self, conditions: Sequence[Shape]) -> tuple[ConditionKind, ...]:
        return self._condition_kinds

    def output_shapes(
        self, inputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        _expect("input", inputs, self.input_dims, self.input_names)
        _expect("condition", conditions, self.condition_dims, self.condition_names)
        return self.output_dims

    def input_shapes(
        self, outputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        _expect("output", outputs, self.output_dims, self.output_names)
        return self.input_dims

    def children(self, sig: Signature) -> Sequence[Child]:
        out = []
        for name in self.forward_order:
            r = self._by_name[name]
            assert r.spec is not None
            if r.kind == "node":
                out.append(Child(name, r.spec, r.input_dims, r.condition_dims))
            else:
                out.append(Child(name, r.spec, r.condition_dims, (), outputs=r.output_dims))
        return out

    def evaluate(
        self, ctx: Context, arrays: Sequence[Array], cs: Sequence[Array], rev: bool
    ) -> tuple[list[Array], dict[str, Array], dict[Edge, Array]]:
        """Run the graph one way: its results, each transform node's log-det by name, and
        every variable by ``(node name, output index)``."""
        values: dict[Edge, Array] = {}
        given = self._output_edges if rev else [(n, 0) for n in self.input_names]
        values.update(zip(given, arrays, strict=True))
        values.update(((n, 0), c) for n, c in zip(self.condition_names, cs, strict=True))
        log_dets: dict[str, Array] = {}
        for name in self.reverse_order if rev else self.forward_order:
            r = self._by_name[name]
            conds = [values[e] for e in r.conditions]
            if r.kind == "feed_forward":
                values[(name, 0)] = ctx.children[name](conds[0])
                continue
            mine = [(name, k) for k in range(len(r.output_dims))]
            reads, writes = (mine, r.inputs) if rev else (r.inputs, mine)
            results, log_dets[name] = ctx.children[name](
                [values[e] for e in reads], conds, rev, ctx.jac
            )
            values.update(zip(writes, results, strict=True))
        done = [values[(n, 0)] for n in self.input_names] if rev else None
        results = done if done is not None else [values[e] for e in self._output_edges]
        return results, log_dets, values

    def _run(
        self, ctx: Context, arrays: Sequence[Array], cs: Sequence[Array], rev: bool
    ) -> tuple[list[Array], Array]:
        results, log_dets, _ = self.evaluate(ctx, arrays, cs, rev)
        log_det: Array = 0.0
        for value in log_dets.values():
            log_det = log_det + value
        return results, log_det

    def forward(
        self, ctx: Context, xs: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Array]:
        return self._run(ctx, xs, cs, rev=False)

    def inverse(
        self, ctx: Context, ys: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Array]:
        return self._run(ctx, ys, cs, rev=True)


_KIND_LABEL = {
    "input": "InputNode",
    "condition": "ConditionNode",
    "node": "Node",
    "feed_forward": "FeedForwardNode",
    "output": "OutputNode",
}

_NODE_MAKERS: dict[str, Any] = {
    "input": lambda spec, ins, conds, dims, name: InputNode(*dims, name=name),
    "condition": lambda spec, ins, conds, dims, name: ConditionNode(*dims, name=name),
    "node": lambda spec, ins, conds, dims, name: Node(ins, spec, conditions=conds, name=name),
    "feed_forward": lambda spec, ins, conds, dims, name: FeedForwardNode(
        conds, dims, spec, name=name
    ),
    "output": lambda spec, ins, conds, dims, name: OutputNode(ins, name=name),
}


def _expect(what: str, got: Sequence[Shape], want: Sequence[Shape], names: Sequence[str]) -> None:
    got = tuple(tuple(s) for s in got)
    if got != tuple(want):
        listed = ", ".join(f"{n!r} {s}" for n, s in zip(names, want, strict=True)) or "none"
        raise ShapeError(
            f"GraphINN: {what} shapes {list(got)} do not match its {what} nodes ({listed})"
        )


def _records(
    nodes: list[GraphNode],
) -> tuple[tuple[Record, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Check the node list and describe it by names."""
    ids = {id(n): i for i, n in enumerate(nodes)}
    if len(ids) != len(nodes):
        twice = next(n for i, n in enumerate(nodes) if ids[id(n)] != i)
        raise ShapeError(f"GraphINN: {twice.label} is listed twice")
    names = [
        n.name if n.name is not None else f"{n.kind.replace('_', '')}{i}"
        for i, n in enumerate(nodes)
    ]
    seen: dict[str, GraphNode] = {}
    for node, name in zip(nodes, names, strict=True):
        if name in seen:
            raise ShapeError(
                f"GraphINN: {seen[name].label} and {node.label} have the same name {name!r}"
            )
        seen[name] = node
    name_of = {id(n): name for n, name in zip(nodes, names, strict=True)}

    def edge(node: GraphNode, index: int, user: GraphNode, what: str) -> Edge:
        if id(node) not in name_of:
            raise ShapeError(
                f"GraphINN: {user.label} takes {what} from {node.label}, which is not in the "
                "node list (a node of another graph, or one left out)"
            )
        return (name_of[id(node)], index)

    used_as_condition = {id(n) for node in nodes for n, _ in node.conditions}
    records = []
    for node, name in zip(nodes, names, strict=True):
        if node.invertible_outputs:
            for k, taker in enumerate(node.outputs):
                if taker is None:
                    raise ShapeError(
                        f"GraphINN: output {k} of {node.label} is used by nothing; every "
                        "output of an InputNode or Node goes to one Node or OutputNode"
                    )
                if id(taker[0]) not in name_of:
                    raise ShapeError(
                        f"GraphINN: output {k} of {node.label} goes to {taker[0].label}, "
                        "which is not in the node list"
                    )
        elif node.kind in ("condition", "feed_forward") and id(node) not in used_as_condition:
            raise ShapeError(f"GraphINN: {node.label} is used by nothing")
        records.append(
            Record(
                node.kind,
                name,
                node.spec,
                tuple(edge(n, i, node, "an input") for n, i in node.inputs),
                tuple(edge(n, i, node, "a condition") for n, i in node.conditions),
                tuple(node.input_dims),
                tuple(node.condition_dims),
                tuple(node.output_dims),
            )
        )
    by_kind = {k: tuple(r.name for r in records if r.kind == k) for k in _KIND_LABEL}
    if not by_kind["input"] or not by_kind["output"]:
        raise ShapeError("GraphINN: a graph needs at least one InputNode and one OutputNode")
    return tuple(records), by_kind["input"], by_kind["condition"], by_kind["output"]

"""Pictures of a :class:`~flowcore.models.graph.GraphINN`: a text table and Graphviz DOT.

:func:`graph_text` lists the steps in forward order with where each reads its variables
from (``"a.out1"``: output 1 of node ``a``), their shapes and the parameter counts;
:func:`graph_dot` gives the same wiring as DOT source; :func:`draw_graph` renders it with
Graphviz's ``dot`` program when it is installed and writes the text otherwise.
"""

from __future__ import annotations

import math
import os
import pathlib
import shutil
import subprocess
import warnings
from collections.abc import Sequence

from ..errors import BackendError, OptionError
from ..spec import NativeSubnet, Shape
from ..tree import build_tree
from .graph import Edge, GraphINN, Record

#: The file formats :func:`draw_graph` asks ``dot`` for, by file suffix.
FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf"}


def _shape(shape: Shape) -> str:
    return f"({shape[0]},)" if len(shape) == 1 else str(tuple(shape))


def _variable(edge: Edge) -> str:
    return f"{edge[0]}.out{edge[1]}"


def _reads(edges: Sequence[Edge], dims: Sequence[Shape]) -> str:
    return ", ".join(f"{_variable(e)} {_shape(s)}" for e, s in zip(edges, dims, strict=True))


def _gives(dims: Sequence[Shape]) -> str:
    if len(dims) == 1:
        return _shape(dims[0])
    return ", ".join(f"out{k} {_shape(s)}" for k, s in enumerate(dims))


def _transform(record: Record) -> str:
    spec = record.spec
    if isinstance(spec, NativeSubnet):
        return spec.name
    return spec.label if spec is not None else ""


def parameter_counts(graph: GraphINN) -> dict[str, tuple[int, int, bool]]:
    """Per transform or feed-forward node: ``(trainable, frozen, has_native)``, the number
    of trainable and frozen canonical values and whether a native subnet (whose weights
    the count misses) sits below it."""
    tree = build_tree(graph, graph.input_dims, graph.condition_dims)
    counts: dict[str, tuple[int, int, bool]] = {}
    for name, child in tree.children.items():
        sizes = [(math.prod(p.shape), p.trainable) for p in child.param_specs().values()]
        trainable = sum(size for size, learned in sizes if learned)
        frozen = sum(size for size, learned in sizes if not learned)
        counts[name] = (trainable, frozen, bool(child.native_paths()))
    return counts


def _count(trainable: int, native: bool) -> str:
    return f"{trainable:,}" + (" + native" if native else "")


def graph_text(graph: GraphINN) -> str:
    """A table of ``graph``'s steps in forward order, one line each: kind, name, transform,
    the variables it reads as inputs and as conditions (``"node.outK"`` and shape), the shapes
    it gives and its trainable parameters; then the graph's inputs, conditions, outputs and
    totals."""
    counts = parameter_counts(graph)
    header = ("kind", "name", "transform", "inputs", "conditions", "outputs", "params")
    rows = [header]
    for name in graph.forward_order:
        r = graph.record(name)
        trainable, _, native = counts[name]
        rows.append(
            (
                r.kind,
                r.name,
                _transform(r),
                _reads(r.inputs, r.input_dims),
                _reads(r.conditions, r.condition_dims),
                _gives(r.output_dims),
                _count(trainable, native),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))

    def given(names: Sequence[str]) -> str:
        return ", ".join(f"{n} {_shape(graph.record(n).output_dims[0])}" for n in names) or "none"

    outputs = [graph.record(n) for n in graph.output_names]
    trainable = sum(c[0] for c in counts.values())
    frozen = sum(c[1] for c in counts.values())
    native = any(c[2] for c in counts.values())
    footer = {
        "inputs": given(graph.input_names),
        "conditions": given(graph.condition_names),
        "outputs": ", ".join(
            f"{r.name} {_shape(r.input_dims[0])} <- {_variable(r.inputs[0])}" for r in outputs
        ),
        "reverse order": ", ".join(graph.reverse_order) or "none",
        "parameters": f"{_count(trainable, native)} trainable, {frozen:,} frozen",
    }
    lines.append("")
    lines += [f"{key + ':':<15}{value}" for key, value in footer.items()]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


#: DOT attributes by node kind: graph inputs and outputs as houses, conditions as notes,
#: transform steps as boxes and feed-forward networks as dashed boxes.
_STYLE = {
    "input": 'shape=invhouse, style=filled, fillcolor="#cfe2f3"',
    "condition": 'shape=note, style=filled, fillcolor="#fce5cd"',
    "node": 'shape=box, style="rounded,filled", fillcolor="#ffffff"',
    "feed_forward": 'shape=box, style="rounded,dashed"',
    "output": 'shape=house, style=filled, fillcolor="#d9ead3"',
}


def _dot_edge(graph: GraphINN, edge: Edge, target: str, shape: Shape, attributes: str) -> str:
    source, k = edge
    several = len(graph.record(source).output_dims) > 1
    label = f"out{k} {_shape(shape)}" if several else _shape(shape)
    return f"  {_quote(source)} -> {_quote(target)} [label={_quote(label)}{attributes}];"


def graph_dot(graph: GraphINN) -> str:
    """Graphviz DOT source of ``graph``: a node per graph node labelled with its name,
    transform and shapes; an edge per variable labelled with its shape (``outK`` when the
    producer has several outputs, ``inK`` at the head when the consumer has several inputs);
    condition edges dashed."""
    counts = parameter_counts(graph)
    lines = [
        "digraph GraphINN {",
        "  rankdir=TB;",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for r in graph.records:
        if r.kind in ("input", "condition"):
            text = [r.name, _shape(r.output_dims[0])]
        elif r.kind == "output":
            text = [r.name, _shape(r.input_dims[0])]
        else:
            ins = ", ".join(map(_shape, r.input_dims if r.kind == "node" else r.condition_dims))
            text = [r.name, _transform(r), f"{ins} -> {', '.join(map(_shape, r.output_dims))}"]
            trainable, _, native = counts[r.name]
            if trainable or native:
                text.append(f"{_count(trainable, native)} params")
        lines.append(f"  {_quote(r.name)} [{_STYLE[r.kind]}, label={_quote(chr(10).join(text))}];")
    for r in graph.records:
        for slot, (edge, shape) in enumerate(zip(r.inputs, r.input_dims, strict=True)):
            head = f", headlabel={_quote(f'in{slot}')}" if len(r.inputs) > 1 else ""
            lines.append(_dot_edge(graph, edge, r.name, shape, head))
        for edge, shape in zip(r.conditions, r.condition_dims, strict=True):
            lines.append(_dot_edge(graph, edge, r.name, shape, ", style=dashed"))
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_graph(graph: GraphINN, path: str | os.PathLike[str]) -> pathlib.Path:
    """Write a picture of ``graph`` to ``path`` and return the path written.

    With Graphviz's ``dot`` on ``PATH`` the picture is rendered in the format of the suffix
    (``.svg``, ``.png`` or ``.pdf``); without it, :func:`graph_text` is written to ``path``
    with the suffix ``.txt`` instead, with a warning saying so.
    """
    target = pathlib.Path(path)
    fmt = FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise OptionError(
            f"draw_graph: path must end in one of {sorted(FORMATS)}, got {target.name!r}"
        )
    dot = shutil.which("dot")
    if dot is None:
        fallback = target.with_suffix(".txt")
        fallback.write_text(graph_text(graph))
        warnings.warn(
            f"draw_graph: Graphviz's 'dot' is not on PATH; wrote the text picture to {fallback} "
            f"instead of {target.name}",
            stacklevel=2,
        )
        return fallback
    done = subprocess.run(
        [dot, f"-T{fmt}", "-o", os.fspath(target)],
        input=graph_dot(graph).encode(),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise BackendError(
            f"draw_graph: dot failed: {done.stderr.decode(errors='replace').strip()}"
        )
    return target

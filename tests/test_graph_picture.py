"""The pictures of a graph: the text table, the DOT source, and drawing with or without dot."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

import flowcore as fc
from flowcore.models import picture
from flowcore.models.picture import draw_graph, graph_dot, graph_text

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt install graphviz)"
)


def conditioned_split() -> fc.GraphINN:
    """Input x -> a -> split s; s.out1 -> b, conditioned on ff(c); outputs s.out0, b."""
    x = fc.InputNode(4, 8, 8, name="x")
    c = fc.ConditionNode(5, name="c")
    ff = fc.FeedForwardNode(c, (6,), fc.MLP(hidden=(16,)), name="ff")
    a = fc.Node(x, fc.AllInOneBlock(subnet=fc.ConvNet(hidden=(8,))), name="a")
    s = fc.Node(a, fc.Split(section_sizes=(2, 2)), name="s")
    b = fc.Node(s.out1, fc.AllInOneBlock(subnet=fc.ConvNet(hidden=(8,))), conditions=ff, name="b")
    return fc.GraphINN([x, c, ff, a, s, b, fc.OutputNode(s.out0, name="z0"), fc.OutputNode(b)])


def merged_vectors() -> fc.GraphINN:
    """Two unnamed inputs concatenated; the second half conditioned on an intermediate
    variable (the first coupling's output), a name that DOT must quote."""
    u, v = fc.InputNode(3), fc.InputNode(2)
    first = fc.Node(u, fc.AllInOneBlock(subnet=fc.MLP(hidden=(4,))))
    second = fc.Node(v, fc.AllInOneBlock(subnet=fc.MLP(hidden=(4,))), conditions=first)
    cat = fc.Node([first, second], fc.Concat(), name='say "cat"')
    return fc.GraphINN([u, v, second, first, cat, fc.OutputNode(cat)])


class NativeNet:
    """A stand-in for a backend-native module class: never built by the picture."""


# Trainable values, counted by hand (ConvNet kernel 3, last layer giving scale and shift):
#   ff: MLP 5 -> 16 -> 6                          5*16 + 16 + 16*6 + 6             = 198
#   a:  4 channels, subnet 2 -> 8 -> 4, 4 scales and 4 offsets
#       2*8*9 + 8 + 8*4*9 + 4 + 4 + 4                                              = 452
#   b:  2 channels, subnet 1 + 6 (condition) -> 8 -> 2, 2 scales and 2 offsets
#       7*8*9 + 8 + 8*2*9 + 2 + 2 + 2                                              = 662
# Frozen: the hard permutations, 4 (a) + 2 (b) indices.
HAND_COUNTS = {"ff": 198, "a": 452, "s": 0, "b": 662}


def table(text: str) -> dict[str, list[str]]:
    """The step rows of graph_text, by name, split on the column gaps."""
    rows = text.split("\n\n")[0].splitlines()[2:]
    cells = [re.split(r"  +", row.strip()) for row in rows]
    return {row[1]: row for row in cells}


def footer(text: str) -> dict[str, str]:
    lines = text.split("\n\n")[1].splitlines()
    pairs = (line.split(":", 1) for line in lines)
    return {key: value.strip() for key, value in pairs}


def test_text_lists_every_step_in_forward_order_with_wiring_and_shapes() -> None:
    graph = conditioned_split()
    text = graph_text(graph)
    rows = table(text)
    assert list(rows) == ["ff", "a", "s", "b"] == list(graph.forward_order)
    assert rows["ff"] == ["feed_forward", "ff", "MLP", "c.out0 (5,)", "(6,)", "198"]
    assert rows["a"] == ["node", "a", "AllInOneBlock", "x.out0 (4, 8, 8)", "(4, 8, 8)", "452"]
    assert rows["s"] == [
        "node", "s", "Split", "a.out0 (4, 8, 8)", "out0 (2, 8, 8), out1 (2, 8, 8)", "0",
    ]  # fmt: skip
    assert rows["b"] == [
        "node", "b", "AllInOneBlock", "s.out1 (2, 8, 8)", "ff.out0 (6,)", "(2, 8, 8)", "662",
    ]  # fmt: skip
    # The columns line up: each row's conditions cell starts where the header's does.
    header, _, *steps = text.split("\n\n")[0].splitlines()
    column = header.index("conditions")
    b_row = next(line for line in steps if line.startswith("node          b"))
    assert b_row[column:].startswith("ff.out0 (6,)")


def test_text_footer_gives_the_graph_inputs_conditions_outputs_and_totals() -> None:
    graph = conditioned_split()
    info = footer(graph_text(graph))
    assert info["inputs"] == "x (4, 8, 8)"
    assert info["conditions"] == "c (5,)"
    assert info["outputs"] == "z0 (2, 8, 8) <- s.out0, output7 (2, 8, 8) <- b.out0"
    assert info["reverse order"] == ", ".join(graph.reverse_order) == "ff, b, s, a"
    assert info["parameters"] == f"{sum(HAND_COUNTS.values()):,} trainable, 6 frozen"


def test_parameter_counts_match_a_hand_count() -> None:
    counts = picture.parameter_counts(conditioned_split())
    assert {name: c[0] for name, c in counts.items()} == HAND_COUNTS
    assert {name: c[1] for name, c in counts.items()} == {"ff": 0, "a": 4, "s": 0, "b": 2}
    assert not any(c[2] for c in counts.values())


def test_text_of_unnamed_nodes_and_an_intermediate_condition() -> None:
    graph = merged_vectors()
    text = graph_text(graph)
    rows = table(text)
    assert list(rows) == ["node3", "node2", 'say "cat"']
    assert rows["node2"][3:5] == ["input1.out0 (2,)", "node3.out0 (3,)"]
    assert rows['say "cat"'][2:5] == ["Concat", "node3.out0 (3,), node2.out0 (2,)", "(5,)"]
    info = footer(text)
    assert info["conditions"] == "none"
    assert info["inputs"] == "input0 (3,), input1 (2,)"
    # Reverse: inverting the Concat recomputes node3.out0, node2's condition, so node2 need
    # not wait for node3 and goes first (list order breaks the tie).
    assert info["reverse order"] == 'say "cat", node2, node3'


def test_native_feed_forward_is_marked_as_uncounted() -> None:
    x, c = fc.InputNode(2, name="x"), fc.ConditionNode(3, name="c")
    ff = fc.FeedForwardNode(c, (4,), NativeNet, name="ff")
    a = fc.Node(x, fc.AllInOneBlock(subnet=fc.MLP(hidden=(4,))), conditions=ff, name="a")
    text = graph_text(fc.GraphINN([x, c, ff, a, fc.OutputNode(a)]))
    assert table(text)["ff"] == [
        "feed_forward",
        "ff",
        "NativeNet",
        "c.out0 (3,)",
        "(4,)",
        "0 + native",
    ]
    assert footer(text)["parameters"].endswith("+ native trainable, 2 frozen")


def dot_statements(source: str) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """DOT node statements by name and edges as (tail, head, attributes)."""
    name = r'"((?:[^"\\]|\\.)*)"'
    nodes = dict(re.findall(rf"^  {name} \[(.*)\];$", source, re.M))
    edges = re.findall(rf"^  {name} -> {name} \[(.*)\];$", source, re.M)
    return nodes, edges


def test_dot_has_every_node_and_edge_with_shapes_and_dashed_conditions() -> None:
    graph = conditioned_split()
    source = graph_dot(graph)
    assert source.startswith("digraph GraphINN {") and source.rstrip().endswith("}")
    nodes, edges = dot_statements(source)
    assert set(nodes) == {r.name for r in graph.records}
    assert 'label="a\\nAllInOneBlock\\n(4, 8, 8) -> (4, 8, 8)\\n452 params"' in nodes["a"]
    assert 'label="s\\nSplit\\n(4, 8, 8) -> (2, 8, 8), (2, 8, 8)"' in nodes["s"]
    assert "shape=invhouse" in nodes["x"] and "shape=house" in nodes["z0"]
    assert "shape=note" in nodes["c"] and "dashed" in nodes["ff"]
    assert sorted(edges) == sorted(
        [
            ("c", "ff", 'label="(5,)", style=dashed'),
            ("x", "a", 'label="(4, 8, 8)"'),
            ("a", "s", 'label="(4, 8, 8)"'),
            ("s", "b", 'label="out1 (2, 8, 8)"'),
            ("ff", "b", 'label="(6,)", style=dashed'),
            ("s", "z0", 'label="out0 (2, 8, 8)"'),
            ("b", "output7", 'label="(2, 8, 8)"'),
        ]
    )


def test_dot_marks_input_slots_and_quotes_names() -> None:
    nodes, edges = dot_statements(graph_dot(merged_vectors()))
    assert 'say \\"cat\\"' in nodes
    assert ("node3", 'say \\"cat\\"', 'label="(3,)", headlabel="in0"') in edges
    assert ("node2", 'say \\"cat\\"', 'label="(2,)", headlabel="in1"') in edges
    assert ("node3", "node2", 'label="(3,)", style=dashed') in edges


@needs_dot
@pytest.mark.parametrize("make", [conditioned_split, merged_vectors])
def test_dot_renders_to_svg_with_every_node_and_edge(make) -> None:
    graph = make()
    done = subprocess.run(
        ["dot", "-Tsvg"], input=graph_dot(graph).encode(), capture_output=True, check=True
    )
    assert not done.stderr, done.stderr.decode()
    svg = ET.fromstring(done.stdout)
    ns = {"s": "http://www.w3.org/2000/svg"}
    nodes = {
        g.findtext("s:title", namespaces=ns) for g in svg.iterfind(".//s:g[@class='node']", ns)
    }
    assert nodes == {r.name for r in graph.records}
    edges = {
        g.findtext("s:title", namespaces=ns): g for g in svg.iterfind(".//s:g[@class='edge']", ns)
    }
    want = {f"{e[0]}->{r.name}": False for r in graph.records for e in r.inputs}
    want |= {f"{e[0]}->{r.name}": True for r in graph.records for e in r.conditions}
    assert set(edges) == set(want)
    for title, dashed in want.items():
        path = edges[title].find("s:path", ns)
        assert path is not None
        assert (path.get("stroke-dasharray") is not None) == dashed, title


@needs_dot
def test_draw_graph_writes_svg_and_png(tmp_path) -> None:
    graph = conditioned_split()
    svg = draw_graph(graph, tmp_path / "g.svg")
    assert svg == tmp_path / "g.svg"
    assert ET.fromstring(svg.read_bytes()).tag == "{http://www.w3.org/2000/svg}svg"
    png = draw_graph(graph, str(tmp_path / "g.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_draw_graph_falls_back_to_text_without_dot(tmp_path, monkeypatch) -> None:
    graph = conditioned_split()
    monkeypatch.setattr(shutil, "which", lambda program: None)
    with pytest.warns(UserWarning, match="'dot' is not on PATH"):
        written = draw_graph(graph, tmp_path / "g.svg")
    assert written == tmp_path / "g.txt"
    assert written.read_text() == graph_text(graph)
    assert not (tmp_path / "g.svg").exists()


def test_draw_graph_refuses_unknown_formats_and_reports_dot_failures(tmp_path, monkeypatch):
    graph = conditioned_split()
    with pytest.raises(ValueError, match=r"\.pdf"):
        draw_graph(graph, tmp_path / "g.jpeg")
    false = shutil.which("false")
    if false is None:
        pytest.skip("no 'false' program to stand in for a failing dot")
    monkeypatch.setattr(shutil, "which", lambda program: false)
    with pytest.raises(RuntimeError, match="dot failed"):
        draw_graph(graph, tmp_path / "g.svg")

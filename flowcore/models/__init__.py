"""Models: transforms made of transforms."""

from .builder import SequenceBuilder
from .graph import GraphINN
from .nodes import (
    ConditionNode,
    FeedForwardNode,
    InputNode,
    Node,
    OutputNode,
    collect_nodes,
)
from .picture import draw_graph, graph_dot, graph_text
from .sequence import Inverse, SequenceINN, Unconditioned

__all__ = [
    "ConditionNode", "FeedForwardNode", "GraphINN", "InputNode", "Inverse", "Node",
    "OutputNode", "SequenceBuilder", "SequenceINN", "collect_nodes", "draw_graph", "graph_dot",
    "graph_text", "Unconditioned",
]  # fmt: skip

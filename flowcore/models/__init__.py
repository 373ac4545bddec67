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
from .sequence import Inverse, SequenceINN

__all__ = [
    "ConditionNode", "FeedForwardNode", "GraphINN", "InputNode", "Inverse", "Node",
    "OutputNode", "SequenceBuilder", "SequenceINN", "collect_nodes",
]  # fmt: skip

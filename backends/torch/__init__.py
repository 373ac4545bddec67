"""flowcore on PyTorch: plain ``torch.nn.Module`` flows, FrEIA's API by changing an import.

``import flowcore.backends.torch as Ff`` gives ``Ff.SequenceINN(8)`` and the transform
specs (``Ff.AllInOneBlock``), with native ``subnet_constructor(c_in, c_out)`` subnets.
"""

from flowcore import (
    MLP,
    AllInOneBlock,
    ConditionNode,
    ConvNet,
    FeedForwardNode,
    InputNode,
    Inverse,
    Node,
    OutputNode,
)

from .backend import BACKEND, TorchBackend
from .graph import GraphINN
from .modules import FlowModule, SubnetModule
from .sequence import SequenceINN
from .training import fit

__all__ = [
    "BACKEND", "MLP", "AllInOneBlock", "ConvNet", "FlowModule", "Inverse", "SequenceINN",
    "SubnetModule", "TorchBackend", "fit",
    "ConditionNode", "FeedForwardNode", "GraphINN", "InputNode", "Node", "OutputNode",
]  # fmt: skip

"""flowcore on JAX: Flax NNX flows, a pure ``apply(params, x, c, rev, jac)`` for jit, grad
and vmap, and FrEIA's API by changing an import.

``import flowcore.backends.jax as Fj`` gives ``Fj.SequenceINN(8)`` and the transform specs
(``Fj.AllInOneBlock``), with native ``subnet_constructor(c_in, c_out)`` nnx subnets;
``Fj.init(spec, (8,))`` and ``Fj.functional(flow)`` give ``(apply, params)``.
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

from .backend import BACKEND, JaxBackend
from .functional import functional, init
from .graph import GraphINN
from .modules import Buffer, FlowModule, SubnetModule
from .namespace import XP
from .sequence import SequenceINN
from .training import fit

__all__ = [
    "BACKEND", "MLP", "XP", "AllInOneBlock", "Buffer", "ConvNet", "FlowModule", "Inverse",
    "JaxBackend", "SequenceINN", "SubnetModule", "fit", "functional", "init",
    "ConditionNode", "FeedForwardNode", "GraphINN", "InputNode", "Node", "OutputNode",
]  # fmt: skip

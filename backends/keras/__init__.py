"""flowcore on Keras 3: flows as ``keras.layers.Layer`` on the TensorFlow, JAX and torch
backends, trained with ``fit`` and saved in Keras' ``.keras`` format.

``import flowcore.backends.keras as Ff`` gives ``Ff.SequenceINN(8)`` and the transform
specs (``Ff.AllInOneBlock``), with native ``subnet_constructor(c_in, c_out)`` subnets
returning Keras layers; ``Ff.DensityModel(flow)`` trains a flow by maximum likelihood.
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

from .backend import BACKEND, KerasBackend
from .graph import GraphINN
from .layers import FlowLayer, SubnetLayer
from .sequence import SequenceINN
from .training import DensityModel, DisentanglingFlowModel, negative_log_likelihood

__all__ = [
    "BACKEND", "MLP", "AllInOneBlock", "ConvNet", "DensityModel", "DisentanglingFlowModel",
    "FlowLayer", "Inverse",
    "KerasBackend", "SequenceINN", "SubnetLayer", "negative_log_likelihood",
    "ConditionNode", "FeedForwardNode", "GraphINN", "InputNode", "Node", "OutputNode",
]  # fmt: skip

"""flowcore: normalizing flows written once, run natively in PyTorch, Keras 3 and JAX.

``import flowcore`` imports no framework; a backend is imported when it is first asked for.
"""

from . import layers, transforms
from .api import (
    backend_of,
    build,
    get_backend,
    get_params,
    reference,
    set_backend,
    set_params,
    tree_of,
)
from .backend import BackendInfo, installed_backends, register
from .density import log_prob, sample, standard_normal_log_prob
from .errors import (
    ArgumentError,
    BackendError,
    FileError,
    FlowError,
    NonFiniteError,
    ParameterError,
    ShapeError,
)
from .finite import check_finite
from .io import load, save
from .layers import Sequential
from .losses import SupervisedFactorLoss, disentangling_loss
from .models import (
    ConditionNode,
    FeedForwardNode,
    GraphINN,
    InputNode,
    Inverse,
    Node,
    OutputNode,
    SequenceINN,
    collect_nodes,
    draw_graph,
    graph_dot,
    graph_text,
)
from .options import OptionError
from .reference import Reference
from .spec import (
    Child,
    Context,
    NativeSubnet,
    ParamSpec,
    Signature,
    SimpleTransform,
    Spec,
    Subnet,
    Transform,
)
from .subnets import MLP, Conv2d, ConvNet, Linear
from .transforms import *  # noqa: F403
from .tree import build_tree, initial_params

#: gyoza's name for a sequence of flow layers: ``FlowModel(*layers)`` is a SequenceINN.
FlowModel = SequenceINN

__version__ = "0.1.0"

__all__ = [
    "MLP", "BackendError", "BackendInfo", "Child", "ConditionNode", "Context", "Conv2d",
    "ConvNet", "FeedForwardNode", "FileError", "FlowError", "GraphINN", "InputNode", "Inverse",
    "Linear",
    "NativeSubnet", "Node", "OptionError", "OutputNode", "ParamSpec", "ParameterError",
    "Reference", "SequenceINN", "Sequential", "ShapeError", "Signature", "SimpleTransform", "Spec",
    "Subnet", "Transform", "layers",
    "backend_of", "build", "build_tree", "collect_nodes", "draw_graph", "get_backend",
    "get_params", "graph_dot", "graph_text", "initial_params", "installed_backends", "load",
    "reference", "register", "save", "set_backend", "set_params", "tree_of",
]  # fmt: skip
__all__ += transforms.__all__
__all__ += ["FlowModel", "SupervisedFactorLoss", "disentangling_loss"]
__all__ += ["log_prob", "sample", "standard_normal_log_prob"]
__all__ += ["ArgumentError", "NonFiniteError", "check_finite"]

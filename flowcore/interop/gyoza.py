r"""gyoza models saved by Keras as flowcore models, in any backend.

gyoza 0.3.0 saves a ``FlowModel`` (or ``DisentanglingFlowModel``) the Keras 3 way: a
``.keras`` archive holds ``config.json`` (the layers and their options) and
``model.weights.h5`` (each variable by path, ``layers/<layer name>/vars/<index>``); a
``.weights.h5`` file holds the variables alone. Both are read here with ``zipfile``,
``json`` and ``h5py``: neither TensorFlow nor gyoza is needed, so a model trained in gyoza
runs in PyTorch, JAX or Keras on any backend.

- :func:`read_gyoza` reads a ``.keras`` archive into a :class:`GyozaImport`: the flowcore
  spec that computes what gyoza computes (:func:`spec_from_gyoza_config`), its input shape,
  its dtype and its parameters;
- :func:`from_gyoza` builds that spec in a backend with the weights loaded;
- :func:`load_gyoza_weights` loads a ``.weights.h5`` file (or a ``.keras`` archive's
  weights) into a flowcore model built from the matching spec.

gyoza's layers and what they become:

========================================  ===========================================
gyoza                                     flowcore
========================================  ===========================================
``ActivationNormalization``               :class:`~flowcore.ActivationNormalization`
``Reflection``                            :class:`~flowcore.Reflection`
``AdditiveCoupling`` + a mask             :class:`~flowcore.AdditiveCoupling` + the mask
``ShufflePermutation``, ``Permutation``   :class:`~flowcore.ShufflePermutation`
``HeavisidePermutation``                  :class:`~flowcore.HeavisidePermutation`
``CheckerBoardPermutation``               :class:`~flowcore.CheckerBoardPermutation`
========================================  ===========================================

A coupling's ``compute_coupling_parameters`` must be a Keras ``Sequential`` (or one layer)
of ``Dense``, ``Activation``, ``ReLU``, ``LeakyReLU``, ``ELU`` and ``Dropout`` layers; it
becomes a :class:`~flowcore.Sequential` (``Dense``'s kernel ``(in, out)`` transposed into
``Linear``'s ``(out, in)``). gyoza hands the net the whole masked input, and a Keras
``Dense`` acts on its last axis; flowcore's coupling hands the net the entries of its axes
at each swept position. The two agree when the coupling's axes are the input's last axis
alone (gyoza's tutorial and every 2-D model), and a coupling on other axes is an error.
Anything else gyoza or Keras could hold (another layer class, an activation flowcore lacks,
a variable of another shape) is a :class:`GyozaImportError` naming the layer.

References: gyoza 0.3.0 (github.com/TimHenry1995/gyoza), ``gyoza.modelling.flow_layers``
and ``gyoza.modelling.masks``; the Keras 3 saving format (``keras.saving``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..api import build, set_params, tree_of
from ..errors import FlowError
from ..layers import ELU, Dropout, LeakyReLU, ReLU, Sequential, Sigmoid, Softplus, Tanh
from ..models import SequenceINN
from ..spec import Shape, Transform
from ..subnets import Layer, Linear
from ..transforms.gyoza import (
    ActivationNormalization,
    AdditiveCoupling,
    CheckerBoardMask,
    CheckerBoardPermutation,
    HeavisideMask,
    HeavisidePermutation,
    Mask,
    Reflection,
    ShufflePermutation,
)

__all__ = [
    "GyozaImport",
    "GyozaImportError",
    "from_gyoza",
    "gyoza_params",
    "load_gyoza_weights",
    "read_gyoza",
    "read_weights",
    "spec_from_gyoza_config",
]

#: gyoza's model classes a ``.keras`` archive may hold.
MODEL_CLASSES = ("FlowModel", "DisentanglingFlowModel")
#: The attribute gyoza keeps a coupling's net in (its group in the weights file).
NET_GROUP = "_compute_coupling_parameters_"
#: Softplus's linear threshold for Keras' ``softplus`` (exactly :math:`\log(1 + e^x)`):
#: past it :math:`\log(1 + e^{-x}) < 10^{-17}`, below float64's resolution of :math:`x`.
SOFTPLUS_THRESHOLD = 40.0


class GyozaImportError(FlowError, ValueError):
    """A gyoza file that flowcore cannot read, or weights that do not fit the model."""


@dataclasses.dataclass(frozen=True)
class GyozaImport:
    """A gyoza model read from a ``.keras`` archive.

    ``spec`` is the :class:`~flowcore.FlowModel` computing what the gyoza model computes,
    for inputs of ``input_shape`` (batch axis excluded); ``dtype`` is the model's Keras
    dtype (``float32`` or ``float64``); ``params`` are its weights as flowcore parameters;
    ``names`` are gyoza's layer names, one per layer of ``spec``.
    """

    spec: SequenceINN
    input_shape: Shape
    dtype: str
    params: dict[str, np.ndarray]
    names: tuple[str, ...]

    def build(self, backend: str | None = None, *, dtype: str | None = None) -> Any:
        """The model as a native module of ``backend`` with gyoza's weights, in ``dtype``
        (the saved model's unless given)."""
        model = build(self.spec, self.input_shape, backend=backend, dtype=dtype or self.dtype)
        set_params(model, self.params)
        return model


# -- reading files ----------------------------------------------------------------------------


def read_weights(source: str | os.PathLike[str] | bytes) -> dict[str, np.ndarray]:
    """Every variable of a Keras weights file (a path, or the file's bytes), by its path in
    the file (``layers/reflection/vars/0``)."""
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py comes with Keras and flowcore's test extra
        raise ImportError(
            "reading gyoza's weights needs h5py: pip install 'flowcore[gyoza]'"
        ) from None
    handle = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
    out: dict[str, np.ndarray] = {}

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            out[name] = np.asarray(item[()])

    try:
        with h5py.File(handle, "r") as file:
            file.visititems(visit)
    except OSError as error:
        raise GyozaImportError(f"{source!r} is not a Keras weights file ({error})") from None
    return out


def _archive(path: str | os.PathLike[str]) -> tuple[dict[str, Any], bytes]:
    """A ``.keras`` archive's config and the bytes of its weights file."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            weights = archive.read("model.weights.h5")
    except (zipfile.BadZipFile, KeyError) as error:
        raise GyozaImportError(
            f"{os.fspath(path)!r} is not a Keras .keras archive with config.json and "
            f"model.weights.h5 ({error})"
        ) from None
    return config, weights


# -- the config -------------------------------------------------------------------------------


def _options(layer: Mapping[str, Any]) -> tuple[str, Shape, tuple[int, ...]]:
    config = layer["config"]
    return config["name"], tuple(config["shape"]), tuple(config["axes"])


def _mask(coupling: str, config: Mapping[str, Any]) -> Mask:
    kind = config.get("class_name")
    options = config["config"]
    shape, axes = tuple(options["shape"]), tuple(options["axes"])
    values = tuple(int(v) for v in options["mask"])
    patterns: dict[str, type[Mask]] = {
        "CheckerBoardMask": CheckerBoardMask,
        "HeavisideMask": HeavisideMask,
    }
    if kind in patterns:
        mask = patterns[kind](shape, axes)
        if mask.values().astype(int).tolist() != list(values):
            raise GyozaImportError(
                f"gyoza layer {coupling!r}: its {kind} holds {list(values)}, not the "
                f"pattern {mask.values().astype(int).tolist()} of shape {shape}"
            )
        return mask
    if kind != "Mask":
        raise GyozaImportError(f"gyoza layer {coupling!r}: unknown mask class {kind!r}")
    return Mask(shape, axes, values)


def tf_slope(slope: float) -> float:
    """A leaky ReLU's slope as TensorFlow applies it (gyoza runs on TensorFlow only): its
    ``leaky_relu`` op takes the slope as a float32 attribute, so ``0.2`` acts as
    ``0.20000000298...`` in float64 too."""
    return float(np.float32(slope))


def _activation(where: str, name: str | None) -> list[Layer]:
    """The flowcore layers of a Keras activation name."""
    table: dict[str, Callable[[], list[Layer]]] = {
        "linear": list,
        "relu": lambda: [ReLU()],
        "tanh": lambda: [Tanh()],
        "sigmoid": lambda: [Sigmoid()],
        "elu": lambda: [ELU(1.0)],
        "softplus": lambda: [Softplus(1.0, SOFTPLUS_THRESHOLD)],
        "leaky_relu": lambda: [LeakyReLU(tf_slope(0.2))],  # keras.activations' default
    }
    key = "linear" if name is None else name
    if key not in table:
        raise GyozaImportError(
            f"{where}: activation {name!r} has no flowcore layer (supported: {sorted(table)})"
        )
    return table[key]()


def _keras_layer(where: str, layer: Mapping[str, Any]) -> tuple[list[Layer], bool]:
    """A Keras layer as flowcore layers, and whether it holds weights (a ``Dense``)."""
    kind, config = layer.get("class_name"), layer.get("config", {})
    name = config.get("name")
    where = f"{where}, Keras layer {name!r}"
    if kind == "InputLayer":
        return [], False
    if kind == "Dense":
        if config.get("kernel_constraint") or config.get("bias_constraint"):
            raise GyozaImportError(f"{where}: Dense with a weight constraint")
        dense = Linear(int(config["units"]), bias=bool(config.get("use_bias", True)))
        return [dense, *_activation(where, config.get("activation"))], True
    if kind == "Activation":
        return _activation(where, config.get("activation")), False
    if kind == "ReLU":
        defaults = (config.get("max_value"), config.get("threshold", 0.0))
        if defaults != (None, 0.0):
            raise GyozaImportError(f"{where}: ReLU with max_value or threshold set")
        slope = float(config.get("negative_slope", 0.0))
        return [LeakyReLU(tf_slope(slope)) if slope else ReLU()], False
    if kind == "LeakyReLU":
        return [LeakyReLU(tf_slope(float(config.get("negative_slope", 0.3))))], False
    if kind == "ELU":
        return [ELU(float(config.get("alpha", 1.0)))], False
    if kind == "Dropout":
        return [Dropout(float(config.get("rate", 0.5)))], False
    raise GyozaImportError(
        f"{where}: Keras layer class {kind!r} has no portable flowcore layer (supported: "
        "Dense, Activation, ReLU, LeakyReLU, ELU, Dropout in a Sequential)"
    )


@dataclasses.dataclass(frozen=True)
class _Net:
    """A coupling's net: its flowcore form, and per ``Linear`` (by its index in the
    ``Sequential``) the path of its ``Dense``'s group in the weights file."""

    spec: Sequential
    dense: dict[int, str]


def _net(coupling: str, config: Mapping[str, Any]) -> _Net:
    where = f"gyoza layer {coupling!r}, compute_coupling_parameters"
    if config.get("class_name") == "Sequential":
        keras_layers = config["config"]["layers"]
        prefix = f"{NET_GROUP}/layers/"
    else:  # one layer as the whole net: its variables sit in the net's own group
        keras_layers = [config]
        prefix = None
    groups = saved_names([str(item.get("class_name")) for item in keras_layers])
    layers: list[Layer] = []
    dense: dict[int, str] = {}
    for keras_layer, group in zip(keras_layers, groups, strict=True):
        converted, weighted = _keras_layer(where, keras_layer)
        if weighted:
            dense[len(layers)] = NET_GROUP if prefix is None else prefix + group
        layers.extend(converted)
    return _Net(Sequential(tuple(layers)), dense)


def _coupling(layer: Mapping[str, Any], rank: int) -> tuple[AdditiveCoupling, _Net]:
    name, shape, axes = _options(layer)
    if axes != (rank - 1,):
        raise GyozaImportError(
            f"gyoza layer {name!r}: a coupling on axes {list(axes)} of a {rank}-D input "
            "hands its net the whole masked input, which a flowcore coupling does not; only "
            f"couplings on the last axis alone ([{rank - 1}]) import"
        )
    net = _net(name, layer["config"]["compute_coupling_parameters"])
    mask = _mask(name, layer["config"]["mask"])
    return AdditiveCoupling(shape, axes, mask, net.spec), net


#: gyoza's layers without a net, by class name: the flowcore transform of a layer config.
SIMPLE_LAYERS: dict[str, Callable[[Mapping[str, Any]], Transform]] = {
    "ActivationNormalization": lambda c: ActivationNormalization(_options(c)[1], _options(c)[2]),
    "Reflection": lambda c: Reflection(
        _options(c)[1], _options(c)[2], int(c["config"]["reflection_count"]), normalize=False
    ),
    "Permutation": lambda c: ShufflePermutation(_options(c)[1], _options(c)[2]),
    "ShufflePermutation": lambda c: ShufflePermutation(_options(c)[1], _options(c)[2]),
    "HeavisidePermutation": lambda c: HeavisidePermutation(_options(c)[1], _options(c)[2]),
    "CheckerBoardPermutation": lambda c: CheckerBoardPermutation(_options(c)[1], _options(c)[2]),
}


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where each layer's weights are: its group in the weights file, and each coupling's
    net; and gyoza's names of the layers."""

    groups: tuple[str, ...]
    nets: dict[int, _Net]
    names: tuple[str, ...]


def _model_options(config: Mapping[str, Any]) -> tuple[Shape, str]:
    kind = config.get("class_name")
    if kind not in MODEL_CLASSES:
        raise GyozaImportError(f"not a gyoza model: class {kind!r} (expected {MODEL_CLASSES})")
    built = config.get("build_config") or {}
    if "input_shape" not in built:
        raise GyozaImportError("the gyoza model was saved before it was built: no input shape")
    dtype = config["config"].get("dtype", "float32")
    if isinstance(dtype, dict):
        dtype = dtype["config"]["name"]
    if dtype not in ("float32", "float64"):
        raise GyozaImportError(f"the gyoza model's dtype {dtype!r} is not float32 or float64")
    return tuple(int(s) for s in built["input_shape"][1:]), dtype


def _spec_and_layout(config: Mapping[str, Any]) -> tuple[SequenceINN, Shape, str, _Layout]:
    input_shape, dtype = _model_options(config)
    rank = len(input_shape) + 1
    transforms: list[Transform] = []
    names: list[str] = []
    nets: dict[int, _Net] = {}
    for k, layer in enumerate(config["config"]["flow_layers"]):
        kind, name = layer.get("class_name"), layer["config"]["name"]
        axes = list(layer["config"].get("axes", ()))
        if axes and axes != list(range(axes[0], axes[0] + len(axes))):
            raise GyozaImportError(
                f"gyoza layer {name!r}: axes {axes} are not contiguous, and gyoza 0.3.0 "
                "flattens them with a plain reshape that mixes the entries (not the layer's "
                "documented map); flowcore does not reproduce that"
            )
        if kind == "AdditiveCoupling":
            coupling, nets[k] = _coupling(layer, rank)
            transforms.append(coupling)
        elif kind in SIMPLE_LAYERS:
            transforms.append(SIMPLE_LAYERS[kind](layer))
        else:
            raise GyozaImportError(
                f"gyoza layer {name!r}: class {kind!r} has no flowcore form (supported: "
                f"AdditiveCoupling, {', '.join(SIMPLE_LAYERS)})"
            )
        names.append(name)
    classes = [layer["class_name"] for layer in config["config"]["flow_layers"]]
    layout = _Layout(tuple(saved_names(classes)), nets, tuple(names))
    return SequenceINN(*transforms), input_shape, dtype, layout


def spec_from_gyoza_config(config: Mapping[str, Any]) -> tuple[SequenceINN, Shape, str]:
    """The flowcore spec of a gyoza model's Keras config (``config.json`` of a ``.keras``
    archive), its input shape (batch axis excluded) and its dtype."""
    spec, input_shape, dtype, _ = _spec_and_layout(config)
    return spec, input_shape, dtype


# -- the weights ------------------------------------------------------------------------------


def _var(weights: Mapping[str, np.ndarray], group: str, index: int, where: str) -> np.ndarray:
    key = f"{group}/vars/{index}"
    if key not in weights:
        raise GyozaImportError(f"{where}: the weights file has no {key!r}")
    return weights[key]


def _fit(value: np.ndarray, shape: Shape, where: str) -> np.ndarray:
    if math.prod(value.shape) != math.prod(shape):
        raise GyozaImportError(f"{where}: shape {value.shape} does not fit {tuple(shape)}")
    return np.asarray(value).reshape(shape)


def _layer_params(
    k: int, layer: Transform, group: str, net: _Net | None, weights: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    where = f"gyoza layer {group.rsplit('/', 1)[-1]!r} (flowcore layer {k}, {layer.label})"
    out: dict[str, np.ndarray] = {}
    if isinstance(layer, ActivationNormalization):
        for index, name in enumerate(("location", "scale")):
            out[f"{k}.{name}"] = _fit(_var(weights, group, index, where), layer.shape, where)
        if layer.data_init:
            out[f"{k}.initialised"] = np.ones(1)
    elif isinstance(layer, Reflection):
        shape = (layer.reflection_count, layer.n)
        out[f"{k}.normals"] = _fit(_var(weights, group, 0, where), shape, where)
    elif isinstance(layer, (ShufflePermutation, HeavisidePermutation, CheckerBoardPermutation)):
        forward = _fit(_var(weights, group, 0, where), (layer.n,), where).astype(np.int64)
        backward = _fit(_var(weights, group, 1, where), (layer.n,), where)
        if sorted(forward.tolist()) != list(range(layer.n)) or not np.array_equal(
            np.argsort(forward), backward
        ):
            raise GyozaImportError(
                f"{where}: forward_permutation {forward.tolist()} and inverse_permutation "
                f"{backward.tolist()} are not a permutation and its inverse"
            )
        out[f"{k}.permutation"] = forward
    elif isinstance(layer, AdditiveCoupling) and net is not None:
        out[f"{k}.mask"] = layer.mask.values()
        for index, path in net.dense.items():
            linear = net.spec.layers[index]
            assert isinstance(linear, Linear)
            name = f"{k}.{AdditiveCoupling.SUBNET}.{index}"
            kernel = _var(weights, f"{group}/{path}", 0, where)
            out[f"{name}.weight"] = np.asarray(kernel).T
            if linear.bias:
                out[f"{name}.bias"] = _var(weights, f"{group}/{path}", 1, where)
    else:
        raise GyozaImportError(f"{where}: not a layer gyoza has")
    return out


def gyoza_params(
    spec: SequenceINN,
    weights: Mapping[str, np.ndarray],
    classes: Sequence[str] | None = None,
    nets: Mapping[int, _Net] | None = None,
) -> dict[str, np.ndarray]:
    """The flowcore parameters of ``spec`` from gyoza's ``weights`` (by path, as
    :func:`read_weights` gives them).

    Keras saves layer ``k`` under a group named by its class (:func:`saved_names`):
    ``classes`` are gyoza's class names of the layers, by default each flowcore layer's
    (:data:`GYOZA_CLASSES`). Without ``nets`` (the layout a config gives), a coupling's
    subnet is a :class:`~flowcore.Sequential` whose ``Linear`` layers are gyoza's ``Dense``
    layers in order."""
    if classes is None:
        classes = [GYOZA_CLASSES.get(type(t), type(t).__name__) for t in spec.transforms]
    if len(classes) != len(spec.transforms):
        raise GyozaImportError(
            f"{len(classes)} gyoza classes for the {len(spec.transforms)} layers of the model"
        )
    return _params(spec, weights, saved_names(classes), nets or {})


def _params(
    spec: SequenceINN,
    weights: Mapping[str, np.ndarray],
    groups: Sequence[str],
    nets: Mapping[int, _Net],
) -> dict[str, np.ndarray]:
    read = _Recording(weights)
    params: dict[str, np.ndarray] = {}
    for k, (layer, group) in enumerate(zip(spec.transforms, groups, strict=True)):
        net = nets.get(k)
        if net is None and isinstance(layer, AdditiveCoupling):
            net = _net_of_spec(layer, f"layers/{group}", weights)
        params.update(_layer_params(k, layer, f"layers/{group}", net, read))
    # the model's variables; an optimizer's (a compiled model's ``optimizer/``) are not read
    unread = sorted(k for k in set(weights) - read.keys_read if k.startswith("layers/"))
    if unread:
        raise GyozaImportError(
            f"the weights file holds variables the model has no place for: {unread[:6]}"
            f"{' ...' if len(unread) > 6 else ''} (a gyoza model with other layers?)"
        )
    return params


class _Recording(dict[str, np.ndarray]):
    """The weights, remembering which were looked up."""

    def __init__(self, weights: Mapping[str, np.ndarray]) -> None:
        super().__init__(weights)
        self.keys_read: set[str] = set()

    def __getitem__(self, key: str) -> np.ndarray:
        self.keys_read.add(key)
        return super().__getitem__(key)


# -- the paths Keras saves under ------------------------------------------------------------


def snake_case(name: str) -> str:
    """A class name as Keras names its saved instances (``CheckerBoardPermutation`` ->
    ``checker_board_permutation``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def saved_names(class_names: Sequence[str]) -> list[str]:
    """The groups Keras saves a container's layers under: each layer by its class name in
    snake case, the second of a class with ``_1``, the third ``_2``, ... in the container's
    order (``keras.saving``, not the layers' own names, which vary between runs)."""
    used: dict[str, int] = {}
    out = []
    for name in class_names:
        base = snake_case(name)
        count = used.get(base, 0)
        used[base] = count + 1
        out.append(base if count == 0 else f"{base}_{count}")
    return out


def _net_of_spec(layer: AdditiveCoupling, group: str, weights: Mapping[str, np.ndarray]) -> _Net:
    """A coupling's net laid out as gyoza's would be saved: a Sequential of Dense layers, or
    one Dense as the whole net (its variables in the net's own group)."""
    net = layer.subnet
    if not isinstance(net, Sequential):
        raise GyozaImportError(
            f"{layer.label}: its subnet must be a flowcore Sequential to read gyoza's Dense "
            f"layers into, got {type(net).__name__}"
        )
    linears = [i for i, item in enumerate(net.layers) if isinstance(item, Linear)]
    if len(linears) == 1 and f"{group}/{NET_GROUP}/vars/0" in weights:
        return _Net(net, {linears[0]: NET_GROUP})
    groups = saved_names(["Dense"] * len(linears))
    return _Net(net, {i: f"{NET_GROUP}/layers/{g}" for i, g in zip(linears, groups, strict=True)})


#: gyoza's class of each flowcore layer it has (a flowcore ShufflePermutation may also be a
#: gyoza Permutation: pass its class to :func:`load_gyoza_weights`).
GYOZA_CLASSES: dict[type, str] = {
    ActivationNormalization: "ActivationNormalization",
    Reflection: "Reflection",
    AdditiveCoupling: "AdditiveCoupling",
    ShufflePermutation: "ShufflePermutation",
    HeavisidePermutation: "HeavisidePermutation",
    CheckerBoardPermutation: "CheckerBoardPermutation",
}


# -- entry points -----------------------------------------------------------------------------


def read_gyoza(path: str | os.PathLike[str]) -> GyozaImport:
    """A gyoza model saved as a ``.keras`` archive (``model.save("flow.keras")``)."""
    config, weights_file = _archive(path)
    spec, input_shape, dtype, layout = _spec_and_layout(config)
    weights = read_weights(weights_file)
    params = _params(spec, weights, layout.groups, layout.nets)
    return GyozaImport(spec, input_shape, dtype, params, layout.names)


def from_gyoza(
    path: str | os.PathLike[str], backend: str | None = None, *, dtype: str | None = None
) -> Any:
    """A gyoza ``.keras`` archive as a native module of ``backend`` (the default backend
    unless given) with gyoza's weights, in ``dtype`` (the saved model's unless given)."""
    return read_gyoza(path).build(backend, dtype=dtype)


def load_gyoza_weights(
    model: Any, path: str | os.PathLike[str], *, classes: Sequence[str] | None = None
) -> None:
    """Load gyoza's weights into ``model``, a flowcore model whose spec is a
    :class:`~flowcore.FlowModel` of gyoza's layers in gyoza's order.

    ``path`` is a ``.weights.h5`` file (``model.save_weights(...)``) or a ``.keras`` archive.
    ``classes`` are gyoza's class names of the layers, by default each flowcore layer's
    (a gyoza ``Permutation`` read into a :class:`~flowcore.ShufflePermutation` must be
    named). Every value is checked before any is written.
    """
    spec = tree_of(model).spec
    if not isinstance(spec, SequenceINN):
        raise GyozaImportError(f"gyoza's weights load into a FlowModel, not {type(spec).__name__}")
    if zipfile.is_zipfile(path):
        weights = read_weights(_archive(path)[1])
    else:
        weights = read_weights(path)
    set_params(model, gyoza_params(spec, weights, classes))

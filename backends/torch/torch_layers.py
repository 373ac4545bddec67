"""torch ``nn.Sequential`` subnets as flowcore's portable :class:`~flowcore.layers.Sequential`,
and back.

FrEIA and anomalib users build coupling subnets as ``torch.nn.Sequential`` of a few layer
types. :func:`sequential_from_torch` reads such a live module into the equivalent
:class:`~flowcore.layers.Sequential` spec, whose canonical parameters have the torch
module's ``state_dict`` keys and shapes, so a checkpoint's ``subnet.0.weight`` loads one to
one into a flowcore model in any backend. :func:`sequential_to_torch` builds the torch
module of a spec with given weights, for flowcore models going back to FrEIA or anomalib code.

It lives in the torch backend, as it reads and makes torch modules; the specs it makes run
in every backend.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from flowcore.errors import FlowError
from flowcore.layers import (
    ELU,
    BatchNorm,
    Conv2d,
    Dropout,
    Layer,
    LeakyReLU,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    Softplus,
    Tanh,
    ZeroPad2d,
)

__all__ = ["SUPPORTED", "sequential_from_torch", "sequential_to_torch"]

#: The ``torch.nn`` layers :func:`sequential_from_torch` reads (exactly these classes: a
#: subclass may compute differently).
SUPPORTED: tuple[str, ...] = (
    "Linear", "Conv2d", "ZeroPad2d", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "ELU",
    "Softplus", "Dropout", "BatchNorm1d", "BatchNorm2d", "Sequential",
)  # fmt: skip


def _refuse(where: str, module: Any, why: str) -> FlowError:
    kind = f"{type(module).__module__}.{type(module).__qualname__}"
    return FlowError(f"sequential_from_torch: layer {where} ({kind}) {why}")


def _one(x: Any) -> Any:
    """A tuple of equal ints as the int (torch's (3, 3) is flowcore's 3), else the tuple."""
    t = tuple(int(v) for v in x) if isinstance(x, (tuple, list)) else (int(x),)
    return t[0] if len(set(t)) == 1 else t


def _conv(where: str, m: Any) -> Conv2d:
    for name, plain in (("stride", (1, 1)), ("dilation", (1, 1)), ("groups", 1)):
        if getattr(m, name) != plain:
            raise _refuse(
                where, m, f"has {name}={getattr(m, name)}; flowcore's Conv2d has {plain}"
            )
    if m.padding_mode != "zeros":
        raise _refuse(where, m, f"pads with {m.padding_mode!r}; flowcore's Conv2d pads zeros")
    padding: Any = m.padding
    if padding == "valid":
        padding = 0
    elif padding != "same":
        padding = _one(padding)
    return Conv2d(m.out_channels, _one(m.kernel_size), padding, bias=m.bias is not None)


def _batch_norm(where: str, m: Any) -> BatchNorm:
    if m.training:
        raise _refuse(
            where,
            m,
            "is in training mode, where it normalises with batch statistics; call .eval() "
            "on the module first (flowcore computes BatchNorm as torch does in eval mode)",
        )
    return BatchNorm(
        eps=float(m.eps),
        momentum=None if m.momentum is None else float(m.momentum),
        affine=bool(m.affine),
        track_running_stats=bool(m.track_running_stats),
    )


def _pad(where: str, m: Any) -> ZeroPad2d:
    sides = tuple(int(p) for p in m.padding)
    if len(sides) != 4 or min(sides) < 0:
        raise _refuse(where, m, f"has padding {m.padding}; flowcore pads 4 non-negative sides")
    return ZeroPad2d(_one(sides))


def _layer(where: str, m: Any) -> Layer:
    kind = type(m)
    simple: dict[Any, Any] = {
        nn.Linear: lambda: Linear(m.out_features, bias=m.bias is not None),
        nn.ReLU: ReLU,
        nn.Tanh: Tanh,
        nn.Sigmoid: Sigmoid,
        nn.LeakyReLU: lambda: LeakyReLU(float(m.negative_slope)),
        nn.ELU: lambda: ELU(float(m.alpha)),
        nn.Softplus: lambda: Softplus(float(m.beta), float(m.threshold)),
        nn.Dropout: lambda: Dropout(float(m.p)),
        nn.Conv2d: lambda: _conv(where, m),
        nn.ZeroPad2d: lambda: _pad(where, m),
        nn.BatchNorm1d: lambda: _batch_norm(where, m),
        nn.BatchNorm2d: lambda: _batch_norm(where, m),
        nn.Sequential: lambda: _sequential(where + ".", m),
    }
    if kind not in simple:
        raise _refuse(
            where, m, f"is not a layer flowcore holds; supported: {', '.join(SUPPORTED)}"
        )
    layer: Layer = simple[kind]()
    return layer


def _sequential(prefix: str, module: Any) -> Sequential:
    layers = []
    for k, (name, child) in enumerate(module.named_children()):
        if name != str(k):
            raise FlowError(
                f"sequential_from_torch: the Sequential at '{prefix or '<top>'}' names its "
                f"layer {k} {name!r}; flowcore names layers by position ('0', '1', ...) as "
                "nn.Sequential(*layers) does, so these keys would not map one to one"
            )
        layers.append(_layer(prefix + name, child))
    return Sequential(tuple(layers))


def sequential_from_torch(module: Any) -> Sequential:
    """The :class:`~flowcore.layers.Sequential` computing what ``module`` (a live
    ``torch.nn.Sequential``, in eval mode where it has BatchNorm) computes in eval mode.

    Its layers must be the ``torch.nn`` classes in :data:`SUPPORTED` (not subclasses):
    ``Conv2d`` with stride 1, dilation 1, groups 1 and zero padding; ``ZeroPad2d`` with
    non-negative padding; ``BatchNorm1d`` / ``BatchNorm2d`` in eval mode; nested
    ``Sequential`` s named by position as the outer one must be (a layer named otherwise,
    from an ``OrderedDict``, would change the keys). Anything else is a
    :class:`~flowcore.FlowError` naming the layer's index and type.

    The spec has the module's widths; its parameters (for the shapes the parent gives it)
    are named as the module's ``state_dict``: load them with
    ``{prefix + k: v.numpy() for k, v in module.state_dict().items()}`` into the model's
    :func:`flowcore.get_params`, then :func:`flowcore.set_params`.
    """
    if type(module) is not nn.Sequential:
        raise FlowError(
            f"sequential_from_torch: expected a torch.nn.Sequential, got {type(module).__name__}"
        )
    return _sequential("", module)


def _walk(seq: Sequential, prefix: str = "") -> Iterator[tuple[str, Layer]]:
    for k, layer in enumerate(seq.layers):
        if isinstance(layer, Sequential):
            yield from _walk(layer, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}.", layer


def _rank(seq: Sequential, input_shape: Sequence[int] | None) -> int | None:
    """The rank of every layer's input (a Sequential of these layers keeps it)."""
    if input_shape is not None:
        return len(input_shape)
    for _, layer in _walk(seq):
        if isinstance(layer, Linear):
            return 1
        if isinstance(layer, (Conv2d, ZeroPad2d)):
            return 3
    return None


def sequential_to_torch(
    spec: Sequential,
    params: Mapping[str, Any],
    *,
    prefix: str = "",
    input_shape: Sequence[int] | None = None,
) -> Any:
    """The ``torch.nn.Sequential`` that computes what ``spec`` computes with ``params``, in
    eval mode, with the same ``state_dict`` keys.

    ``params`` maps the spec's canonical names (``"0.weight"``) to arrays (NumPy, or anything
    ``numpy.asarray`` takes). With ``prefix``, only the names starting with it are read, with
    it removed: ``prefix="0.subnet1."`` picks one subnet out of a whole model's
    :func:`flowcore.get_params`. Every entry the torch module has must be there, and nothing
    else. The module takes the params' float dtype. BatchNorm becomes
    ``BatchNorm1d`` on features and ``BatchNorm2d`` on images; which one is read from the
    net's Linear or Conv2d layers, or from ``input_shape`` (batch axis excluded) where it
    has neither.
    """
    nn = torch.nn
    state = {k[len(prefix) :]: np.asarray(v) for k, v in params.items() if k.startswith(prefix)}
    floats = [v.dtype for v in state.values() if v.dtype.kind == "f"]
    dtype = torch.float32 if floats and floats[0] == np.float32 else torch.float64
    rank = _rank(spec, input_shape)
    channels = None if input_shape is None else int(input_shape[0])

    def build(seq: Sequential, at: str) -> Any:
        nonlocal channels
        modules = []
        for k, layer in enumerate(seq.layers):
            key = f"{at}{k}."
            if isinstance(layer, Sequential):
                modules.append(build(layer, key))
                continue
            module, channels = _to_torch(layer, key, state, rank, channels, nn)
            modules.append(module)
        return nn.Sequential(*modules)

    module = build(spec, "").to(dtype)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    surplus = sorted(set(state) - set(expected))
    if missing or surplus:
        raise FlowError(
            f"sequential_to_torch: params{f' under {prefix!r}' if prefix else ''} do not match "
            f"the spec; missing {missing}, unexpected {surplus}"
        )
    bad = [k for k, v in expected.items() if tuple(v.shape) != state[k].shape]
    if bad:
        raise FlowError(f"sequential_to_torch: params {bad} do not have the spec's shapes")
    module.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    return module.eval()


def _shape(state: Mapping[str, np.ndarray], key: str, what: str) -> tuple[int, ...]:
    if key not in state:
        raise FlowError(f"sequential_to_torch: params lack {key!r}, the {what}")
    return tuple(state[key].shape)


def _to_torch(
    layer: Layer,
    key: str,
    state: Mapping[str, np.ndarray],
    rank: int | None,
    channels: int | None,
    nn: Any,
) -> tuple[Any, int | None]:
    """One torch layer, and the channel count after it."""
    if isinstance(layer, Linear):
        out_features, in_features = _shape(state, key + "weight", "Linear's weight")
        return nn.Linear(in_features, out_features, bias=layer.bias), out_features
    if isinstance(layer, Conv2d):
        out_c, in_c, kh, kw = _shape(state, key + "weight", "Conv2d's weight")
        padding: Any = layer.padding
        return nn.Conv2d(in_c, out_c, (kh, kw), padding=padding, bias=layer.bias), out_c
    if isinstance(layer, BatchNorm):
        if rank is None:
            raise FlowError(
                f"sequential_to_torch: layer {key[:-1]} (BatchNorm) could be BatchNorm1d or "
                "BatchNorm2d: the net has no Linear or Conv2d to tell; pass input_shape"
            )
        stat = "weight" if layer.affine else "running_mean"
        if layer.affine or layer.track_running_stats:
            channels = _shape(state, key + stat, "BatchNorm's channel count")[0]
        elif channels is None:  # torch never reads num_features then
            channels = 1
        kind = nn.BatchNorm2d if rank == 3 else nn.BatchNorm1d
        module = kind(
            channels,
            eps=layer.eps,
            momentum=layer.momentum,
            affine=layer.affine,
            track_running_stats=layer.track_running_stats,
        )
        return module, channels
    if isinstance(layer, ZeroPad2d):
        return nn.ZeroPad2d(layer.sides), channels
    if isinstance(layer, LeakyReLU):
        return nn.LeakyReLU(layer.negative_slope), channels
    if isinstance(layer, ELU):
        return nn.ELU(layer.alpha), channels
    if isinstance(layer, Softplus):
        return nn.Softplus(layer.beta, layer.threshold), channels
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.p), channels
    plains: dict[type[Layer], Any] = {ReLU: nn.ReLU, Tanh: nn.Tanh, Sigmoid: nn.Sigmoid}
    plain = plains.get(type(layer))
    if plain is None:
        raise FlowError(f"sequential_to_torch: no torch layer for {layer.label} at {key[:-1]}")
    return plain(), channels

r"""Portable layers, and :class:`Sequential`: subnets built as ``torch.nn.Sequential`` ones.

FrEIA and anomalib build coupling subnets as ``torch.nn.Sequential`` of a few layer types
(FastFlow: ``ZeroPad2d, Conv2d, ReLU, ZeroPad2d, Conv2d``; U-Flow: ``Conv2d(padding="same"),
ReLU, Conv2d``; CFLOW: ``Linear, ReLU, Linear``). :class:`Sequential` holds such a list of
the layers here, computes what torch computes in eval mode, and names its children by their
position as torch does, so its canonical parameters are the torch module's ``state_dict``
entries, key for key (``subnet.0.weight``, ``subnet.2.running_var``); a parameterless layer
occupies its index and holds nothing. :mod:`flowcore.backends.torch.torch_layers` reads a live
torch ``Sequential`` into one and writes one back.

**Eval mode.** flowcore subnets compute as torch's do in eval mode: :class:`Dropout` is the
identity, and :class:`BatchNorm` normalises with its running statistics, which are buffers:
saved and loaded with the model in every backend, never trained and never updated by a
call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from . import initializers as init
from .errors import ShapeError
from .options import NON_NEGATIVE, POSITIVE, OptionError, Range
from .spec import Array, Child, Namespace, ParamSpec, Shape, Signature
from .subnets import Conv2d, Layer, Linear

__all__ = [
    "ELU", "BatchNorm", "Conv2d", "Dropout", "Layer", "LeakyReLU", "Linear", "ReLU",
    "Sequential", "Sigmoid", "Softplus", "Tanh", "ZeroPad2d",
]  # fmt: skip

NonNegative = Annotated[int, NON_NEGATIVE]


class _Elementwise(Layer):
    """A parameterless layer applied to each entry: any shape, kept."""


@dataclasses.dataclass(frozen=True)
class ReLU(_Elementwise):
    r""":math:`y = \max(x, 0)`."""

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        return xp.relu(x)


@dataclasses.dataclass(frozen=True)
class LeakyReLU(_Elementwise):
    r""":math:`y = x` where :math:`x > 0`, else :math:`\alpha x`, :math:`\alpha` =
    ``negative_slope``."""

    negative_slope: float = 0.01

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        return xp.leaky_relu(x, self.negative_slope)


@dataclasses.dataclass(frozen=True)
class Tanh(_Elementwise):
    r""":math:`y = \tanh x`."""

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        return xp.tanh(x)


@dataclasses.dataclass(frozen=True)
class Sigmoid(_Elementwise):
    r""":math:`y = 1 / (1 + e^{-x})`."""

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        return xp.sigmoid(x)


@dataclasses.dataclass(frozen=True)
class ELU(_Elementwise):
    r""":math:`y = x` where :math:`x > 0`, else :math:`\alpha (e^x - 1)`."""

    alpha: float = 1.0

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        return xp.elu(x, self.alpha)


@dataclasses.dataclass(frozen=True)
class Softplus(_Elementwise):
    r""":math:`y = \log(1 + e^{\beta x}) / \beta`, and :math:`y = x` where :math:`\beta x >`
    ``threshold`` (torch's definition)."""

    beta: Annotated[float, Range(0, None, low_open=True)] = 1.0
    threshold: float = 20.0

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        return xp.softplus(x, self.beta, self.threshold)


@dataclasses.dataclass(frozen=True)
class Dropout(_Elementwise):
    r"""Dropout as in eval mode: the identity, :math:`y = x`.

    flowcore subnets compute as torch's do in eval mode, so ``p`` (the probability torch
    zeroes an entry with while training) is kept only to describe the torch layer: it never
    changes an output, in training or not.
    """

    p: Annotated[float, Range(0, 1)] = 0.5

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        return x


@dataclasses.dataclass(frozen=True)
class ZeroPad2d(Layer):
    r"""Zeros around an image (C, H, W), as ``torch.nn.ZeroPad2d``: ``padding`` is ``p`` on
    every side or ``(left, right, top, bottom)`` (torch's order); the output is (C, H + top +
    bottom, W + left + right), :math:`y_{c,i,j} = x_{c, i - \text{top}, j - \text{left}}`
    inside, 0 outside."""

    padding: NonNegative | tuple[NonNegative, NonNegative, NonNegative, NonNegative] = 1

    def __post_init__(self) -> None:
        if isinstance(self.padding, list):
            object.__setattr__(self, "padding", tuple(self.padding))
        super().__post_init__()

    @property
    def sides(self) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)``."""
        p = self.padding
        return (p, p, p, p) if isinstance(p, int) else p

    def output_shape(self, shape: Shape, target: Shape) -> Shape:
        if len(shape) != 3:
            raise ShapeError(f"needs (C, H, W) images, got {shape}")
        left, right, top, bottom = self.sides
        return (shape[0], shape[1] + top + bottom, shape[2] + left + right)

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        return xp.pad2d(x, self.sides)


@dataclasses.dataclass(frozen=True)
class BatchNorm(Layer):
    r"""Batch normalisation as torch's ``BatchNorm1d`` / ``BatchNorm2d`` compute it in eval
    mode, on features (C,), sequences (C, L) or images (C, H, W), per channel :math:`c`:

    .. math::

        y = \frac{x - \mu_c}{\sqrt{\sigma^2_c + \epsilon}}\, \gamma_c + \beta_c,

    :math:`\mu` = ``running_mean``, :math:`\sigma^2` = ``running_var``, :math:`\gamma` =
    ``weight``, :math:`\beta` = ``bias``, :math:`\epsilon` = ``eps``.

    - ``affine=False``: no ``weight`` and ``bias`` (:math:`\gamma = 1, \beta = 0`);
    - ``track_running_stats=False``: no running statistics; as torch does in eval mode then,
      :math:`\mu` and :math:`\sigma^2` are the mean and the biased variance of the batch
      (over the batch and spatial axes), so each sample's output depends on the batch.

    State: ``running_mean`` (start 0), ``running_var`` (start 1) and ``num_batches_tracked``
    (int64, start 0, so that a torch ``state_dict`` round-trips) are buffers: saved and
    loaded with the model in every backend, never trained, never changed by a call.
    ``weight`` (start 1) and ``bias`` (start 0) are trainable. ``momentum`` is not used
    (flowcore runs eval mode); it is kept so that an exported torch layer trains as the
    imported one did.
    """

    eps: Annotated[float, POSITIVE] = 1e-5
    momentum: Annotated[float, Range(0, 1)] | None = 0.1
    affine: bool = True
    track_running_stats: bool = True

    def output_shape(self, shape: Shape, target: Shape) -> Shape:
        if len(shape) not in (1, 2, 3):
            raise ShapeError(f"needs features (C,), (C, L) or images (C, H, W), got {shape}")
        return tuple(shape)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        (c, *_), out = sig.inputs[0], []
        if self.affine:
            out += [ParamSpec("weight", (c,), init.constant((c,), 1.0))]
            out += [ParamSpec("bias", (c,), init.zeros((c,)))]
        if self.track_running_stats:
            out += [
                ParamSpec("running_mean", (c,), init.zeros((c,)), trainable=False),
                ParamSpec(
                    "running_var",
                    (c,),
                    init.constant((c,), 1.0),
                    trainable=False,
                    constraint="nonnegative",
                ),
                ParamSpec(
                    "num_batches_tracked", (), init.zeros(()), trainable=False, kind="index"
                ),
            ]
        return tuple(out)

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        channels, rank = int(x.shape[1]), len(x.shape)

        def per_channel(v: Array) -> Array:  # (C,) -> (C, 1, ...) against (B, C, ...)
            return xp.reshape(v, (channels,) + (1,) * (rank - 2))

        if self.track_running_stats:
            mean, var = per_channel(params["running_mean"]), per_channel(params["running_var"])
        else:
            axes = (0, *range(2, rank))
            mean = xp.mean(x, axis=axes, keepdims=True)
            var = xp.mean((x - mean) * (x - mean), axis=axes, keepdims=True)
        y = (x - mean) / xp.sqrt(var + self.eps)
        if self.affine:
            y = y * per_channel(params["weight"]) + per_channel(params["bias"])
        return y


@dataclasses.dataclass(frozen=True)
class Sequential(Layer):
    r"""Layers run in order, as ``torch.nn.Sequential``: :math:`y = f_{n-1}(\cdots f_1(f_0(x)))`.

    Layer ``k``'s parameters are named ``k.<name>``, as torch names them (``0.weight``,
    ``2.running_mean``); a layer without parameters occupies its index and holds nothing.
    A nested ``Sequential`` is a layer too (``1.0.weight``, as torch's nesting). The shapes
    are checked through the layers when the net is bound: a layer given an input it cannot
    take, or a last output that is not the shape the parent needs, is a
    :class:`~flowcore.errors.ShapeError` naming the layer's index and type.

    A :class:`~flowcore.layers.Linear` or :class:`~flowcore.layers.Conv2d` whose width is
    None takes the channel count the net must give (what its parent asks of a subnet).
    Parameters start as PyTorch's defaults; ``zero_init_last`` starts the last Linear or
    Conv2d at zero (weights and bias), so that the net gives zeros when the layers after it
    keep zero (BatchNorm with its initial statistics, ReLU, Tanh, Dropout do) and a fresh
    coupling block is the identity, as :class:`~flowcore.MLP`'s option does.
    """

    layers: tuple[Layer, ...] = ()
    zero_init_last: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        super().__post_init__()
        if self.zero_init_last and not self._weighted():
            raise OptionError(
                f"{self.label}: zero_init_last needs a Linear or Conv2d layer to start at zero"
            )

    def _shapes(self, shape: Shape, target: Shape) -> list[tuple[Shape, Shape]]:
        """Each layer's input and output shapes, from ``shape`` on."""
        out = []
        for k, layer in enumerate(self.layers):
            try:
                following = tuple(layer.output_shape(shape, target))
            except ShapeError as err:
                raise ShapeError(f"layer {k} ({layer.label}): {err}") from None
            out.append((shape, following))
            shape = following
        return out

    def output_shape(self, shape: Shape, target: Shape) -> Shape:
        shapes = self._shapes(tuple(shape), tuple(target))
        got = shapes[-1][1] if shapes else tuple(shape)
        if self._shapes(tuple(shape), got) != shapes:  # how its children will be bound
            raise ShapeError(
                "the widths left None in a nested Sequential must equal its own output width; "
                "give them explicitly"
            )
        return got

    def validate(self, in_shape: Shape, out_shape: Shape) -> None:
        in_shape, out_shape = tuple(in_shape), tuple(out_shape)
        try:
            shapes = self._shapes(in_shape, out_shape)
        except ShapeError as err:
            raise ShapeError(f"{self.label}: {err}") from None
        got = shapes[-1][1] if shapes else in_shape
        if got != out_shape:
            last = (
                f"its last layer, {len(shapes) - 1} ({self.layers[-1].label}), gives"
                if shapes
                else "with no layers it gives its input"
            )
            raise ShapeError(
                f"{self.label}: {last} {got}, but {out_shape} is needed (from input {in_shape})"
            )

    def _initial_layers(self) -> list[Layer]:
        """The layers, the last weighted one starting at zero if ``zero_init_last``."""
        layers = list(self.layers)
        if self.zero_init_last:
            for k in reversed(range(len(layers))):
                zeroed = layers[k].zero_initialised()
                if zeroed is not None:
                    layers[k] = zeroed
                    break
        return layers

    def _weighted(self) -> bool:
        """Whether a layer has weights that ``zero_init_last`` can start at zero."""
        return any(layer.zero_initialised() is not None for layer in self.layers)

    def zero_initialised(self) -> Sequential | None:
        return dataclasses.replace(self, zero_init_last=True) if self._weighted() else None

    def children(self, sig: Signature) -> Sequence[Child]:
        out = []
        shapes = self._shapes(sig.inputs[0], sig.outputs[0])
        for k, (layer, (a, b)) in enumerate(zip(self._initial_layers(), shapes, strict=True)):
            bound = Signature((a,), (b,))
            if layer.parameters(bound) or layer.children(bound):  # else it is run inline
                out.append(Child(str(k), layer, (a,), outputs=(b,)))
        return tuple(out)

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        for k, layer in enumerate(self.layers):
            name = str(k)
            x = children[name](x) if name in children else layer.apply(xp, {}, {}, x)
        return x

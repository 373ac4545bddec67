r"""Portable subnetworks: the nets coupling blocks use to predict their coefficients.

Their canonical layout follows PyTorch: a layer ``k`` of a net holds ``k.weight`` of shape
(out, in) or (out, in, kh, kw) and ``k.bias`` of shape (out,). :class:`Linear` and
:class:`Conv2d` are :class:`Layer` s, which :class:`flowcore.layers.Sequential` chains with
the other layers of :mod:`flowcore.layers`. Weights start as PyTorch's
default, :math:`U(-1/\sqrt{\text{fan\_in}}, 1/\sqrt{\text{fan\_in}})`; the last layer starts
at zero when ``zero_init_last`` so that a fresh coupling block is the identity.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from . import initializers as init
from .errors import ShapeError
from .options import NON_NEGATIVE, POSITIVE, OptionError
from .spec import Array, Child, Namespace, ParamSpec, Shape, Signature, Subnet

Activation = Literal["relu", "leaky_relu", "tanh"]


def activate(xp: Namespace, x: Array, name: Activation, negative_slope: float) -> Array:
    """Apply the named activation."""
    if name == "relu":
        return xp.relu(x)
    if name == "leaky_relu":
        return xp.leaky_relu(x, negative_slope)
    return xp.tanh(x)


class Layer(Subnet):
    """A subnet that infers its output shape from its input shape: what
    :class:`flowcore.layers.Sequential` chains.

    A layer whose width (``features``, ``channels``) is left None takes the channel count of
    the shape its net must give (``target``), so ``Linear()`` alone is a subnet of whatever
    width its parent asks for, as :class:`MLP`'s layers are.
    """

    def output_shape(self, shape: Shape, target: Shape) -> Shape:
        """The output shape for an input of ``shape``; ``target`` is the shape the enclosing
        net must give. Raises :class:`~flowcore.errors.ShapeError` with the reason, without
        the layer's name (the caller adds it), for an input the layer cannot take."""
        return tuple(shape)

    def validate(self, in_shape: Shape, out_shape: Shape) -> None:
        try:
            got = self.output_shape(tuple(in_shape), tuple(out_shape))
        except ShapeError as err:
            raise ShapeError(f"{self.label}: {err}") from None
        if got != tuple(out_shape):
            raise ShapeError(
                f"{self.label}: maps {tuple(in_shape)} to {got}, but {tuple(out_shape)} is needed"
            )

    def zero_initialised(self) -> Layer | None:
        """This layer with its last weighted layer starting at zero (weights and bias);
        None if it has no weights to zero."""
        return None


def _width(width: int | None, target: Shape) -> int:
    return target[0] if width is None else width


@dataclasses.dataclass(frozen=True)
class Linear(Layer):
    r"""A dense layer on 1-D features, as ``torch.nn.Linear``: :math:`y = x W^\top + b`,
    ``W`` of shape (out, in), ``b`` of shape (out,).

    ``features`` is the output width (None: the width its net must give); ``bias=False``
    leaves out :math:`b` (and its parameter). Weights start as PyTorch's,
    :math:`U(\pm 1/\sqrt{\text{in}})`, or at zero with ``zero_init``.
    """

    features: Annotated[int, POSITIVE] | None = None
    bias: bool = True
    zero_init: bool = False

    def output_shape(self, shape: Shape, target: Shape) -> Shape:
        if len(shape) != 1:
            raise ShapeError(f"needs 1-D features (C,), got {shape}")
        return (_width(self.features, target),)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        (n_in,), (n_out,) = sig.inputs[0], sig.outputs[0]
        shapes = {"weight": (n_out, n_in), "bias": (n_out,)}
        return tuple(
            ParamSpec(
                name,
                shape,
                init.zeros(shape) if self.zero_init else init.fan_in_uniform(shape, n_in),
            )
            for name, shape in shapes.items()
            if name == "weight" or self.bias
        )

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        return xp.linear(x, params["weight"], params.get("bias"))

    def zero_initialised(self) -> Linear:
        return dataclasses.replace(self, zero_init=True)


PositivePair = tuple[Annotated[int, POSITIVE], Annotated[int, POSITIVE]]
NonNegativePair = tuple[Annotated[int, NON_NEGATIVE], Annotated[int, NON_NEGATIVE]]


def pair(value: int | Sequence[int]) -> tuple[int, int]:
    """An int ``n`` as ``(n, n)``; a pair as it is."""
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


@dataclasses.dataclass(frozen=True)
class Conv2d(Layer):
    r"""A 2-D convolution (cross-correlation) on (C, H, W) images, stride 1, as
    ``torch.nn.Conv2d``:

    .. math::

        y_{o,i,j} = b_o + \sum_{c,u,v} W_{o,c,u,v}\, \tilde x_{c, i+u, j+v},

    :math:`\tilde x` the input zero-padded, ``W`` of shape (out, in, kh, kw).

    ``channels`` is the output channel count (None: that its net must give);
    ``kernel_size`` is ``k`` or ``(kh, kw)``; ``padding`` is ``p`` zeros on every side,
    ``(ph, pw)`` (rows above and below, columns left and right), or ``"same"``: the output
    keeps H and W, with ``(k - 1) // 2`` zeros before and the rest after along each axis, as
    torch's ``padding="same"`` (symmetric for odd kernels). ``bias=False`` leaves out
    :math:`b`. Weights start as PyTorch's, :math:`U(\pm 1/\sqrt{\text{in} \cdot kh \cdot
    kw})`, or at zero with ``zero_init``.
    """

    channels: Annotated[int, POSITIVE] | None = None
    kernel_size: Annotated[int, POSITIVE] | PositivePair = 3
    padding: Annotated[int, NON_NEGATIVE] | NonNegativePair | Literal["same"] = 1
    bias: bool = True
    zero_init: bool = False

    def __post_init__(self) -> None:
        for name in ("kernel_size", "padding"):  # a list (from code or JSON) as a tuple
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        super().__post_init__()

    @property
    def sides(self) -> tuple[int, int, int, int]:
        """The zeros padded on each side: ``(left, right, top, bottom)``, torch's order."""
        if self.padding == "same":
            kh, kw = pair(self.kernel_size)
            return (kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2
        ph, pw = pair(self.padding)
        return pw, pw, ph, ph

    def output_shape(self, shape: Shape, target: Shape) -> Shape:
        if len(shape) != 3:
            raise ShapeError(f"needs (C, H, W) images, got {shape}")
        (kh, kw), (left, right, top, bottom) = pair(self.kernel_size), self.sides
        height, width = shape[1] + top + bottom - kh + 1, shape[2] + left + right - kw + 1
        if height < 1 or width < 1:
            raise ShapeError(
                f"kernel {(kh, kw)} with padding {self.padding!r} leaves no output pixels "
                f"of a {shape} image"
            )
        return (_width(self.channels, target), height, width)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        c_in, c_out = sig.inputs[0][0], sig.outputs[0][0]
        shapes = {"weight": (c_out, c_in, *pair(self.kernel_size)), "bias": (c_out,)}
        fan_in = math.prod(shapes["weight"][1:])
        return tuple(
            ParamSpec(
                name,
                shape,
                init.zeros(shape) if self.zero_init else init.fan_in_uniform(shape, fan_in),
            )
            for name, shape in shapes.items()
            if name == "weight" or self.bias
        )

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        left, right, top, bottom = self.sides
        if top != bottom or left != right:  # an even kernel's "same": pad unevenly first
            x, top, left = xp.pad2d(x, self.sides), 0, 0
        return xp.conv2d(x, params["weight"], params.get("bias"), (top, left))

    def zero_initialised(self) -> Conv2d:
        return dataclasses.replace(self, zero_init=True)


@dataclasses.dataclass(frozen=True)
class MLP(Subnet):
    """A fully connected net on 1-D features: Linear, activation, ..., Linear.

    Layers are children ``0 .. len(hidden)``; the last starts at zero if ``zero_init_last``.
    """

    hidden: tuple[Annotated[int, POSITIVE], ...] = (128,)
    activation: Activation = "relu"
    negative_slope: float = 0.01
    zero_init_last: bool = True

    def validate(self, in_shape: Shape, out_shape: Shape) -> None:
        if len(in_shape) != 1 or len(out_shape) != 1:
            raise ShapeError(
                f"MLP: needs 1-D features, got input {in_shape} and output {out_shape}; "
                "use ConvNet for (C, H, W) images"
            )

    def children(self, sig: Signature) -> Sequence[Child]:
        widths = [sig.inputs[0][0], *self.hidden, sig.outputs[0][0]]
        last = len(widths) - 2
        return tuple(
            Child(
                str(k),
                Linear(zero_init=self.zero_init_last and k == last),
                ((a,),),
                outputs=((b,),),
            )
            for k, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        last = len(self.hidden)
        for k in range(last):
            x = activate(xp, children[str(k)](x), self.activation, self.negative_slope)
        return children[str(last)](x)


@dataclasses.dataclass(frozen=True)
class ConvNet(Subnet):
    """A convolutional net on (C, H, W) images: Conv2d, activation, ..., Conv2d.

    Every layer has kernel ``kernel_size`` and explicit zero padding ``kernel_size // 2``
    (odd kernels keep H and W), the form anomalib's FastFlow uses so that ONNX export works.
    Layers are children ``0 .. len(hidden)``; the last starts at zero if ``zero_init_last``.
    """

    hidden: tuple[Annotated[int, POSITIVE], ...] = (128,)
    kernel_size: Annotated[int, POSITIVE] = 3
    activation: Activation = "relu"
    negative_slope: float = 0.01
    zero_init_last: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kernel_size % 2 != 1:
            raise OptionError(f"ConvNet: kernel_size must be odd, got {self.kernel_size}")

    def validate(self, in_shape: Shape, out_shape: Shape) -> None:
        if len(in_shape) != 3 or len(out_shape) != 3 or in_shape[1:] != out_shape[1:]:
            raise ShapeError(
                f"ConvNet: needs (C, H, W) images of equal H, W, got input {in_shape} and "
                f"output {out_shape}; use MLP for 1-D features"
            )

    def children(self, sig: Signature) -> Sequence[Child]:
        (c_in, h, w), c_out = sig.inputs[0], sig.outputs[0][0]
        widths = [c_in, *self.hidden, c_out]
        last = len(widths) - 2
        k = self.kernel_size
        return tuple(
            Child(
                str(i),
                Conv2d(kernel_size=k, padding=k // 2, zero_init=self.zero_init_last and i == last),
                ((a, h, w),),
                outputs=((b, h, w),),
            )
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        last = len(self.hidden)
        for k in range(last):
            x = activate(xp, children[str(k)](x), self.activation, self.negative_slope)
        return children[str(last)](x)

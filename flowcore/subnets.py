r"""Portable subnetworks: the nets coupling blocks use to predict their coefficients.

Their canonical layout follows PyTorch: a layer ``k`` of a net holds ``k.weight`` of shape
(out, in) or (out, in, kh, kw) and ``k.bias`` of shape (out,). Weights start as PyTorch's
default, :math:`U(-1/\sqrt{\text{fan\_in}}, 1/\sqrt{\text{fan\_in}})`; the last layer starts
at zero when ``zero_init_last`` so that a fresh coupling block is the identity.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from . import initializers as init
from .errors import ShapeError
from .options import POSITIVE, OptionError
from .spec import Array, Child, Namespace, ParamSpec, Shape, Signature, Subnet

Activation = Literal["relu", "leaky_relu", "tanh"]


def activate(xp: Namespace, x: Array, name: Activation, negative_slope: float) -> Array:
    """Apply the named activation."""
    if name == "relu":
        return xp.relu(x)
    if name == "leaky_relu":
        return xp.leaky_relu(x, negative_slope)
    return xp.tanh(x)


@dataclasses.dataclass(frozen=True)
class Linear(Subnet):
    r"""A dense layer :math:`y = x W^\top + b`, ``W`` of shape (out, in)."""

    zero_init: bool = False

    def validate(self, in_shape: Shape, out_shape: Shape) -> None:
        if len(in_shape) != 1 or len(out_shape) != 1:
            raise ShapeError(f"Linear: needs 1-D features, got {in_shape} -> {out_shape}")

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        (n_in,), (n_out,) = sig.inputs[0], sig.outputs[0]
        w_init = (
            init.zeros((n_out, n_in))
            if self.zero_init
            else init.fan_in_uniform((n_out, n_in), n_in)
        )
        b_init = init.zeros((n_out,)) if self.zero_init else init.fan_in_uniform((n_out,), n_in)
        return (ParamSpec("weight", (n_out, n_in), w_init), ParamSpec("bias", (n_out,), b_init))

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        return xp.linear(x, params["weight"], params["bias"])


@dataclasses.dataclass(frozen=True)
class Conv2d(Subnet):
    r"""A 2-D convolution, stride 1, with explicit zero padding of ``padding`` pixels.

    :math:`y_{o,i,j} = b_o + \sum_{c,u,v} W_{o,c,u,v}\, \tilde x_{c, i+u, j+v}`, where
    :math:`\tilde x` is ``x`` zero-padded; ``W`` has shape (out, in, k, k).
    """

    kernel_size: int = 3
    padding: int = 1
    zero_init: bool = False

    def validate(self, in_shape: Shape, out_shape: Shape) -> None:
        if len(in_shape) != 3 or len(out_shape) != 3:
            raise ShapeError(f"Conv2d: needs (C, H, W) images, got {in_shape} -> {out_shape}")
        h, w = in_shape[1:]
        k, p = self.kernel_size, self.padding
        if (h + 2 * p - k + 1, w + 2 * p - k + 1) != tuple(out_shape[1:]):
            raise ShapeError(
                f"Conv2d: kernel {k} with padding {p} maps {in_shape} to spatial size "
                f"{(h + 2 * p - k + 1, w + 2 * p - k + 1)}, but {out_shape} is needed"
            )

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        c_in, c_out, k = sig.inputs[0][0], sig.outputs[0][0], self.kernel_size
        shape = (c_out, c_in, k, k)
        fan_in = c_in * k * k
        w_init = init.zeros(shape) if self.zero_init else init.fan_in_uniform(shape, fan_in)
        b_init = init.zeros((c_out,)) if self.zero_init else init.fan_in_uniform((c_out,), fan_in)
        return (ParamSpec("weight", shape, w_init), ParamSpec("bias", (c_out,), b_init))

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        return xp.conv2d(x, params["weight"], params["bias"], self.padding)


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
                Conv2d(k, k // 2, zero_init=self.zero_init_last and i == last),
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

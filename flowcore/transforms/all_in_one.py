r"""AllInOneBlock: affine coupling, global affine scaling ('ActNorm') and a permutation."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

from .. import initializers as init
from ..errors import ArgumentError, ShapeError
from ..options import NON_NEGATIVE, POSITIVE, OptionError
from ..spec import (
    Array,
    Child,
    Context,
    Namespace,
    NativeSubnet,
    ParamSpec,
    Shape,
    Signature,
    SimpleTransform,
    Subnet,
    sum_per_sample,
)
from . import pieces

__all__ = ["AllInOneBlock"]

GlobalAffineType = Literal["SOFTPLUS", "SIGMOID", "EXP"]
SoftClamp = Literal["scaled_tanh", "tanh"]


def _global_scale_start(kind: str, value: float) -> float:
    """The pre-activation g0 with Psi(g0) = value."""
    if kind == "SOFTPLUS":  # log(e^y - 1) = y + log(1 - e^-y): finite for any y > 0
        y = 5.0 * value
        return 2.0 * (y + math.log(-math.expm1(-y)))
    if kind == "SIGMOID":
        return 2.0 - math.log(10.0 / value - 1.0)
    return math.log(value)


@dataclasses.dataclass(frozen=True)
class AllInOneBlock(SimpleTransform):
    r"""FrEIA's AllInOneBlock: coupling, global affine and permutation in one block.

    With the channels split as :math:`x = (x_1, x_2)`, :math:`x_1` the first
    :math:`C - \lfloor C/2 \rfloor` channels, and :math:`(a_s, a_t) = 0.1\,
    \mathrm{subnet}([x_1, c])` (conditions concatenated on the channel axis, a vector
    condition broadcast over the pixels of an image):

    .. math::

        s &= \alpha \tanh(a_s / \alpha) \quad(\text{``scaled\_tanh''}, \text{FrEIA master})
            \quad\text{or}\quad \alpha \tanh(a_s) \quad(\text{``tanh''}, \text{FrEIA 0.2,
            anomalib}) \\
        s &\leftarrow s - \mathrm{mean}(s) \quad\text{if gin\_block (mean over all
            non-batch axes)} \\
        u &= (x_1,\; x_2 \odot e^{s} + a_t) \\
        y &= P\,\big(\Psi(g) \odot u + o\big)

    where :math:`g, o` are per-channel parameters (``global_scale``, ``global_offset``;
    :math:`\Psi = 1` in GIN mode), :math:`\Psi` is ``0.1 softplus_{β=0.5}``,
    ``10 sigmoid(g - 2)`` or ``exp`` (``global_affine_type``), and :math:`P` acts on
    channels: a hard permutation (an index gather), a random rotation from SO(C)
    (``permute_soft``), either one times learned Householder reflections
    :math:`P = W_0 \prod_k (I - 2 v_k v_k^\top / v_k^\top v_k)`. With
    ``reverse_permutation`` the input is first multiplied by :math:`P^{-1}`.

    Log-det, with :math:`N` the number of pixels (1 for vectors):

    .. math::

        \log|\det J| = \sum s + N \sum_c \log \Psi(g_c)

    Parameters: ``global_scale`` and ``global_offset`` (shape (1, C, 1, ...)),
    ``vk_householder`` (K, C) if K > 0; buffers ``w_perm`` (C,) int64 indices (hard),
    ``w_perm`` (C, C) (soft), or ``w_0`` (C, C) (Householder); child ``subnet`` mapping
    ``C - C//2 + cond channels`` to ``2 (C//2)`` channels.

    ``subnet`` is a portable :class:`~flowcore.Subnet` (``MLP`` for vectors, ``ConvNet``
    for images); ``subnet_constructor`` a backend-native ``f(c_in, c_out)`` as in FrEIA.
    Unlike FrEIA, Householder reflections also work with hard permutations.

    References: Ardizzone et al., FrEIA (github.com/vislearn/FrEIA), ``AllInOneBlock``.
    """

    subnet: Subnet | None = None
    subnet_constructor: Callable[[int, int], Any] | None = None
    affine_clamping: Annotated[float, POSITIVE] = 2.0
    gin_block: bool = False
    global_affine_init: Annotated[float, POSITIVE] = 1.0
    global_affine_type: GlobalAffineType = "SOFTPLUS"
    permute_soft: bool = False
    learned_householder_permutation: Annotated[int, NON_NEGATIVE] = 0
    reverse_permutation: bool = False
    soft_clamp: SoftClamp = "scaled_tanh"

    def __post_init__(self) -> None:
        if self.subnet is not None and not isinstance(self.subnet, Subnet):
            raise ArgumentError(
                "AllInOneBlock: subnet= takes a portable flowcore.Subnet such as flowcore.MLP; "
                f"got {type(self.subnet).__name__} (pass a native f(c_in, c_out) as "
                "subnet_constructor=)"
            )
        if self.subnet_constructor is not None and not callable(self.subnet_constructor):
            raise ArgumentError(
                "AllInOneBlock: subnet_constructor must be callable f(c_in, c_out)"
            )
        super().__post_init__()
        if (self.subnet is None) == (self.subnet_constructor is None):
            raise OptionError("AllInOneBlock: give exactly one of subnet= or subnet_constructor=")
        upper = 10.0 if self.global_affine_type == "SIGMOID" else math.inf
        if not self.global_affine_init < upper:
            raise OptionError(
                f"AllInOneBlock: option global_affine_init must lie in (0, {upper}) for "
                f"{self.global_affine_type}, got {self.global_affine_init}"
            )

    # -- declarations -------------------------------------------------------------------

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        if not 1 <= len(shape) <= 4 or shape[0] < 2:
            raise ShapeError(
                f"AllInOneBlock: input must be (C,), (C, L), (C, H, W) or (C, D, H, W) with "
                f"C >= 2, got {shape}"
            )
        pieces.condition_channels(shape, conditions, "AllInOneBlock")
        return tuple(shape)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        shape = sig.inputs[0]
        channels = shape[0]
        affine_shape = (1, channels) + (1,) * (len(shape) - 1)
        g0 = _global_scale_start(self.global_affine_type, self.global_affine_init)
        params = [
            ParamSpec("global_scale", affine_shape, init.constant(affine_shape, g0)),
            ParamSpec("global_offset", affine_shape, init.zeros(affine_shape)),
        ]
        k = self.learned_householder_permutation
        base = (
            init.special_orthogonal(channels)
            if self.permute_soft
            else init.permutation_matrix(channels)
        )
        square = (channels, channels)
        if k:
            params += [
                ParamSpec("w_0", square, base, trainable=False, constraint="orthogonal"),
                ParamSpec("vk_householder", (k, channels), init.normal((k, channels), 0.2)),
            ]
        elif self.permute_soft:
            params.append(
                ParamSpec("w_perm", square, base, trainable=False, constraint="orthogonal")
            )
        else:
            params.append(
                ParamSpec(
                    "w_perm",
                    (channels,),
                    init.permutation(channels),
                    trainable=False,
                    kind="index",
                    constraint="permutation",
                )
            )
        return params

    def children(self, sig: Signature) -> Sequence[Child]:
        shape = sig.inputs[0]
        channels = shape[0]
        cond_channels = sum(c[0] for c in sig.conditions)
        spec: Subnet | NativeSubnet
        if self.subnet is not None:
            spec = self.subnet
        else:
            assert self.subnet_constructor is not None
            spec = NativeSubnet(self.subnet_constructor)
        passive, active = channels - channels // 2, channels // 2
        return (
            Child(
                "subnet",
                spec,
                ((passive + cond_channels, *shape[1:]),),
                outputs=((2 * active, *shape[1:]),),
            ),
        )

    # -- math -----------------------------------------------------------------------------

    def _psi(self, xp: Namespace, g: Array) -> Array:
        if self.global_affine_type == "SOFTPLUS":
            return 0.2 * xp.logaddexp(0.5 * g, xp.zeros_like(g))  # 0.1 * softplus_{beta=0.5}
        if self.global_affine_type == "SIGMOID":
            return 10.0 / (1.0 + xp.exp(2.0 - g))
        return xp.exp(g)

    def _rotation(self, xp: Namespace, params: Mapping[str, Array]) -> Array | None:
        """The dense channel matrix P, or None for a hard permutation."""
        if not self.learned_householder_permutation:
            return params["w_perm"] if self.permute_soft else None
        w = params["w_0"]
        vs = params["vk_householder"]
        for k in range(self.learned_householder_permutation):
            v = vs[k, :]
            wv = xp.matmul(w, v[:, None])  # (C, 1)
            w = w - (2.0 / xp.sum(v * v)) * wv * v[None, :]
        return w

    def _permute(
        self, xp: Namespace, params: Mapping[str, Array], w: Array | None, x: Array, inverse: bool
    ) -> Array:
        """y = P x (or P^{-1} x) on the channel axis."""
        if w is None:
            idx = params["w_perm"]
            return xp.take(x, xp.argsort(idx) if inverse else idx, axis=1)
        return pieces.channel_matmul(xp, xp.permute_dims(w, (1, 0)) if inverse else w, x)

    def _coupling(
        self, ctx: Context, x: Array, cs: Sequence[Array], inverse: bool
    ) -> tuple[Array, Array | None]:
        xp = ctx.xp
        active = x.shape[1] // 2
        x1, x2 = pieces.split_channels(x, (x.shape[1] - active, active))
        a = 0.1 * ctx.children["subnet"](pieces.with_conditions(xp, x1, cs) if cs else x1)
        a_s, a_t = pieces.split_channels(a, (active, active))
        s = pieces.soft_clamp(xp, a_s, self.affine_clamping, self.soft_clamp)
        if self.gin_block:
            s = s - xp.mean(s, axis=tuple(range(1, s.ndim)), keepdims=True)
        y2 = (x2 - a_t) * xp.exp(-s) if inverse else x2 * xp.exp(s) + a_t
        log_det = sum_per_sample(xp, s) if ctx.jac else None
        return xp.concat([x1, y2], axis=1), log_det

    def _global_affine(self, xp: Namespace, params: Mapping[str, Array]) -> Array | None:
        """Psi(g), or None in GIN mode."""
        return None if self.gin_block else self._psi(xp, params["global_scale"])

    def _log_det(self, ctx: Context, coupling: Array | None, scale: Array | None, x: Array) -> Any:
        if not ctx.jac:
            return 0.0
        if scale is None:
            return coupling
        return coupling + pieces.pixels(x) * ctx.xp.sum(ctx.xp.log(scale))

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        xp, params = ctx.xp, ctx.params
        w = self._rotation(xp, params)
        if self.reverse_permutation:
            x = self._permute(xp, params, w, x, inverse=True)
        u, coupling = self._coupling(ctx, x, cs, inverse=False)
        scale = self._global_affine(xp, params)
        if scale is not None:
            u = u * scale
        y = self._permute(xp, params, w, u + params["global_offset"], inverse=False)
        return y, self._log_det(ctx, coupling, scale, x)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        xp, params = ctx.xp, ctx.params
        w = self._rotation(xp, params)
        u = self._permute(xp, params, w, y, inverse=True) - params["global_offset"]
        scale = self._global_affine(xp, params)
        if scale is not None:
            u = u / scale
        x, coupling = self._coupling(ctx, u, cs, inverse=True)
        if self.reverse_permutation:
            x = self._permute(xp, params, w, x, inverse=False)
        log_det = self._log_det(ctx, coupling, scale, y)
        return x, -log_det if ctx.jac else 0.0

r"""Permutations and linear maps: PermuteRandom, fixed linear maps and 1x1 convolutions,
Householder and orthogonal maps, LU-parametrised invertible linear maps and 1x1 convolutions.

All of them act on the channel axis (axis 1 with the batch axis) of vectors ``(C,)`` and,
where said, of images ``(C, H, W)`` (any number of spatial axes).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np

from .. import initializers as init
from ..errors import ShapeError
from ..options import OptionError, Range
from ..spec import Array, Context, Namespace, ParamSpec, Shape, Signature, SimpleTransform
from . import pieces

__all__ = [
    "Fixed1x1Conv",
    "FixedLinearTransform",
    "HouseholderPerm",
    "InvertibleConv1x1",
    "InvertibleLinear",
    "OrthogonalTransform",
    "PermuteRandom",
    "orthogonal_correction",
]

#: FrEIA's ``OrthogonalTransform`` clamps with ``0.636 * atan``, as its couplings do.
_ATAN = pieces.FREIA_ATAN_FACTOR
#: A seed NumPy's legacy ``RandomState`` (FrEIA's ``np.random.seed``) takes.
SEED = Range(0, 2**32 - 1)


def _no_conditions(label: str, conditions: Sequence[Shape]) -> None:
    if conditions:
        raise ShapeError(f"{label}: takes no conditions, got {len(conditions)}")


def _channels_first(label: str, shape: Shape, min_rank: int, what: str) -> int:
    if len(shape) < min_rank or shape[0] < 1:
        raise ShapeError(f"{label}: input must be {what}, got {shape}")
    return shape[0]


def _identity(xp: Namespace, like: Array) -> Array:
    """The identity matrix with the dtype and device of the square matrix ``like``."""
    return xp.triu(xp.tril(xp.ones_like(like)))


# -- PermuteRandom ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PermuteRandom(SimpleTransform):
    r"""A fixed random permutation of the channels: :math:`y = x_{[:, \pi]}`, i.e.
    :math:`y_i = x_{\pi(i)}` on the channel axis of vectors and images.

    Log-det: 0. Buffer ``perm`` (C,) int64, a permutation of ``range(C)`` (``set_params``
    refuses any other); the inverse gathers with ``argsort(perm)``.

    The permutation is drawn from the build seed; with ``seed`` it is
    ``numpy.random.RandomState(seed).permutation(C)`` whatever the build seed, the same
    permutation FrEIA's ``PermuteRandom(seed=seed)`` draws (FrEIA reseeds NumPy's global
    generator to do it; flowcore leaves it alone).

    References: Ardizzone et al., FrEIA (github.com/vislearn/FrEIA), ``PermuteRandom``;
    Dinh et al., "Density estimation using Real NVP", ICLR 2017.
    """

    seed: Annotated[int, SEED] | None = None

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        _channels_first(self.label, shape, 1, "(C,) or (C, *spatial)")
        _no_conditions(self.label, conditions)
        return tuple(shape)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        channels = sig.inputs[0][0]
        if self.seed is None:
            draw = init.permutation(channels)
        else:
            seed = self.seed
            draw = lambda rng: np.random.RandomState(seed).permutation(channels)  # noqa: E731
        return [
            ParamSpec(
                "perm", (channels,), draw, trainable=False, kind="index", constraint="permutation"
            )
        ]

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return pieces.take_channels(ctx.xp, x, ctx.params["perm"]), 0.0

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        xp = ctx.xp
        return pieces.take_channels(xp, y, xp.argsort(ctx.params["perm"])), 0.0


# -- fixed matrices ---------------------------------------------------------------------------

Matrix = tuple[tuple[float, ...], ...]
#: What ``M`` may be given as; it is stored as a :data:`Matrix` (JSON-ready).
MatrixLike = Matrix | np.ndarray | Sequence[Sequence[float]]
#: What ``b`` may be given as; it is stored as a tuple of floats.
VectorLike = tuple[float, ...] | np.ndarray | Sequence[float]


def _as_matrix(label: str, value: Any) -> Matrix:
    """A square, finite, numerically invertible matrix as a tuple of tuples of floats."""
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise OptionError(
            f"{label}: option M must be a square matrix of floats, got {value!r} ({error})"
        ) from None
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] == 0:
        raise OptionError(
            f"{label}: option M must be a square (d, d) matrix, got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise OptionError(f"{label}: option M must be finite, got {array.tolist()}")
    condition = float(np.linalg.cond(array))
    if not condition * np.finfo(np.float64).eps < 1.0:
        raise OptionError(
            f"{label}: option M must be invertible, got a singular matrix (condition number "
            f"{condition:.3g}): {array.tolist()}"
        )
    return tuple(tuple(float(v) for v in row) for row in array)


@dataclasses.dataclass(frozen=True)
class _FixedMatrix(SimpleTransform):
    """Shared by the fixed linear maps: ``M`` held as a tuple of tuples (JSON-ready)."""

    M: MatrixLike

    def __post_init__(self) -> None:
        object.__setattr__(self, "M", _as_matrix(self.label, self.M))
        super().__post_init__()

    @property
    def size(self) -> int:
        return len(self.M)

    @functools.cached_property
    def log_abs_det(self) -> float:
        r""":math:`\log|\det M|`, computed once in float64."""
        return float(np.linalg.slogdet(np.array(self.M))[1])

    def _matrix_params(self) -> list[ParamSpec]:
        m = np.array(self.M)
        square = m.shape
        return [
            ParamSpec("M", square, init.array(m), trainable=False),
            ParamSpec("M_inv", square, init.array(np.linalg.inv(m)), trainable=False),
        ]


@dataclasses.dataclass(frozen=True)
class FixedLinearTransform(_FixedMatrix):
    r"""A fixed affine map of vectors: :math:`y = M x + b`, :math:`x = M^{-1}(y - b)`.

    Log-det: :math:`\log|\det M|` (a constant, computed in float64 when the spec is made).

    Options: ``M`` a square invertible (d, d) matrix, ``b`` an optional (d,) offset (any
    array-like; stored as tuples so that the spec saves as JSON). Buffers ``M``, ``M_inv``
    (computed in float64 with NumPy) and ``b`` when given. Input: (d,) vectors.

    References: Ardizzone et al., FrEIA (github.com/vislearn/FrEIA),
    ``FixedLinearTransform``.
    """

    b: VectorLike | None = None

    def __post_init__(self) -> None:
        if self.b is not None:
            try:
                b = np.array(self.b, dtype=np.float64)
            except (TypeError, ValueError) as error:
                raise OptionError(
                    f"{self.label}: option b must be a vector of floats, got {self.b!r} ({error})"
                ) from None
            if b.ndim != 1 or not np.isfinite(b).all():
                raise OptionError(
                    f"{self.label}: option b must be a finite vector (d,), got "
                    f"{b.tolist()} of shape {b.shape}"
                )
            object.__setattr__(self, "b", tuple(float(v) for v in b))
        super().__post_init__()
        if self.b is not None and len(self.b) != self.size:
            raise OptionError(
                f"{self.label}: option b must have length {self.size} as M is "
                f"{self.size}x{self.size}, got {len(self.b)}"
            )

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        if tuple(shape) != (self.size,):
            raise ShapeError(
                f"{self.label}: input must be a vector ({self.size},) to match M, got {shape}"
            )
        _no_conditions(self.label, conditions)
        return tuple(shape)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        params = self._matrix_params()
        if self.b is not None:
            params.append(
                ParamSpec("b", (self.size,), init.array(np.array(self.b)), trainable=False)
            )
        return params

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        y = pieces.channel_matmul(ctx.xp, ctx.params["M"], x)
        if self.b is not None:
            y = y + ctx.params["b"]
        return y, self.log_abs_det

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        if self.b is not None:
            y = y - ctx.params["b"]
        return pieces.channel_matmul(ctx.xp, ctx.params["M_inv"], y), -self.log_abs_det


@dataclasses.dataclass(frozen=True)
class Fixed1x1Conv(_FixedMatrix):
    r"""A fixed 1x1 convolution: :math:`y = M x` at every pixel, :math:`x = M^{-1} y`.

    Log-det: :math:`N \log|\det M|` with :math:`N` the number of pixels (H W).

    Options: ``M`` a square invertible (C, C) matrix (any array-like; stored as tuples).
    Buffers ``M`` and ``M_inv`` (float64 NumPy inverse). Input: images (C, H, W), or any
    (C, *spatial) with at least one spatial axis.

    FrEIA 0.2's ``Fixed1x1Conv(M)`` convolves with the kernel ``M.t()``, that is computes
    :math:`y = M^\top x` (unlike its ``FixedLinearTransform``, which computes :math:`Mx`):
    flowcore's ``Fixed1x1Conv(M.T)`` gives FrEIA's numbers.

    References: Ardizzone et al., FrEIA (github.com/vislearn/FrEIA), ``Fixed1x1Conv``.
    """

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        if len(shape) < 2 or shape[0] != self.size:
            raise ShapeError(
                f"{self.label}: input must be an image ({self.size}, H, W) to match M, got {shape}"
            )
        _no_conditions(self.label, conditions)
        return tuple(shape)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        return self._matrix_params()

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        y = pieces.channel_matmul(ctx.xp, ctx.params["M"], x)
        return y, pieces.pixels(x) * self.log_abs_det

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        x = pieces.channel_matmul(ctx.xp, ctx.params["M_inv"], y)
        return x, -pieces.pixels(y) * self.log_abs_det


# -- Householder reflections ------------------------------------------------------------------


def _reflect(xp: Namespace, x: Array, v: Array) -> Array:
    r""":math:`(I - 2 v v^\top / v^\top v)\, x` on the channel axis; ``v`` is (C,) or
    (batch, C)."""
    channels = x.shape[1]
    v = xp.reshape(v, (-1, channels) + (1,) * (x.ndim - 2))
    coefficient = 2.0 * xp.sum(v * x, axis=1, keepdims=True) / xp.sum(v * v, axis=1, keepdims=True)
    return x - coefficient * v


@dataclasses.dataclass(frozen=True)
class HouseholderPerm(SimpleTransform):
    r"""A product of learned Householder reflections: :math:`y = W^\top x`,
    :math:`x = W y`, with

    .. math::

        W = H_0 H_1 \cdots H_{K-1}, \qquad H_k = I - 2\, v_k v_k^\top / v_k^\top v_k,

    so :math:`H_0` acts on :math:`x` first (FrEIA's ``x.mm(W)``). :math:`W` is orthogonal,
    so the log-det is 0.

    Options: ``n_reflections`` :math:`K \ge 2` (FrEIA's default of 1 raises there, so here
    it has none), ``fixed``. Parameter ``Vs`` (K, C), the vectors :math:`v_k` as rows:
    trainable, initialised to the first K unit vectors plus N(0, 0.1²) noise; with
    ``fixed=True`` a buffer drawn from N(0, 1).

    Conditional form (as FrEIA's): with one condition of C·K elements (any shape) and no
    parameters, the vectors come from the condition, ``v_k = c.reshape(C, K)[:, k]`` per
    sample; ``fixed`` must then be False.

    Unlike FrEIA the reflections are applied to the input one by one (FrEIA forms W with
    the WY representation); they work on images too (C, *spatial), at every pixel.

    References: Ardizzone et al., FrEIA (github.com/vislearn/FrEIA), ``HouseholderPerm``;
    Tomczak & Welling, "Improving variational auto-encoders using Householder flow", 2016;
    Mathiesen et al., "Fast product of Householder matrices" (INNF workshop, 2020).
    """

    n_reflections: Annotated[int, Range(2, None)]
    fixed: bool = False

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        channels = _channels_first(self.label, shape, 1, "(C,) or (C, *spatial)")
        if len(conditions) > 1:
            raise ShapeError(f"{self.label}: takes at most one condition, got {len(conditions)}")
        if conditions:
            if self.fixed:
                raise ShapeError(
                    f"{self.label}: option fixed=True cannot be conditional (the reflections "
                    "would come from the condition), got a condition of shape "
                    f"{conditions[0]}"
                )
            want = channels * self.n_reflections
            if math.prod(conditions[0]) != want:
                raise ShapeError(
                    f"{self.label}: the condition must hold C * n_reflections = {channels} * "
                    f"{self.n_reflections} = {want} values, got shape {conditions[0]}"
                )
        return tuple(shape)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        if sig.conditions:
            return ()
        channels = sig.inputs[0][0]
        shape = (self.n_reflections, channels)
        if self.fixed:
            return [ParamSpec("Vs", shape, init.normal(shape, 1.0), trainable=False)]
        eye = np.eye(channels, self.n_reflections).T
        return [ParamSpec("Vs", shape, lambda rng: eye + 0.1 * rng.standard_normal(shape))]

    def _vectors(self, ctx: Context, x: Array, cs: Sequence[Array]) -> list[Array]:
        xp = ctx.xp
        if cs:
            vs = xp.reshape(cs[0], (-1, x.shape[1], self.n_reflections))
            return [vs[:, :, k] for k in range(self.n_reflections)]
        vs = ctx.params["Vs"]
        return [vs[k, :] for k in range(self.n_reflections)]

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        for v in self._vectors(ctx, x, cs):
            x = _reflect(ctx.xp, x, v)
        return x, 0.0

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        for v in reversed(self._vectors(ctx, y, cs)):
            y = _reflect(ctx.xp, y, v)
        return y, 0.0


# -- OrthogonalTransform ----------------------------------------------------------------------


def orthogonal_correction(weights: np.ndarray) -> np.ndarray:
    """FrEIA's ``orth_correction``: Gram-Schmidt on the rows of ``weights``, in float64.

    :class:`OrthogonalTransform` learns a free matrix whose inverse it takes as its
    transpose; FrEIA projects it back every ~``correction_interval`` gradient steps from a
    backward hook. flowcore leaves that to the training loop: ``p = get_params(flow);
    p["0.weights"] = orthogonal_correction(p["0.weights"]); set_params(flow, p)``.
    """
    r = np.array(weights, dtype=np.float64, copy=True)
    if r.ndim != 2 or r.shape[0] != r.shape[1]:
        raise ShapeError(f"orthogonal_correction: expected a square matrix, got {r.shape}")
    r[0] /= np.linalg.norm(r[0])
    for i in range(1, r.shape[0]):
        r[i] -= np.sum(r[:i].T * (r[:i] @ r[i]), axis=1)
        r[i] /= np.linalg.norm(r[i])
    return r


@dataclasses.dataclass(frozen=True)
class OrthogonalTransform(SimpleTransform):
    r"""FrEIA's learned orthogonal map of vectors with a bias and a clamped scaling:

    .. math::

        y = (R^\top x + b) \odot e^{\ell}, \qquad x = R\,(y \odot e^{-\ell} - b),
        \qquad \ell = 0.636\,\alpha \arctan(s / \alpha)

    (FrEIA's ``(x.mm(R) + b) * exp(l)``; its docstring's :math:`\Psi(s) \odot Rx + b` and
    :math:`2\alpha/\pi` do not match its code, which this follows.)

    Log-det: :math:`\sum_i \ell_i`, exact while :math:`R` is orthogonal.

    Options: ``clamp`` :math:`\alpha > 0`. Parameters (trainable, FrEIA's names and shapes):
    ``weights`` :math:`R` (C, C), initialised to a random rotation; ``bias`` :math:`b`
    (1, C) ~ N(0, 0.05²); ``scaling`` :math:`s` (1, C) ~ N(0, 0.02²). Input: (C,) vectors.

    The inverse uses :math:`R^\top` for :math:`R^{-1}`, so training must keep :math:`R`
    orthogonal. FrEIA re-orthogonalises ``weights`` from a backward hook every
    ``correction_interval`` steps; flowcore has no such option (a call's state updates
    cannot tell training from inference, and rewriting a weight between the forward pass
    and its backward pass breaks autodiff): apply :func:`orthogonal_correction` between
    optimiser steps. ``weights`` carries no ``"orthogonal"`` constraint, since a checkpoint
    saved between two corrections is legitimately off.

    References: Ardizzone et al., FrEIA (github.com/vislearn/FrEIA), ``OrthogonalTransform``.
    """

    clamp: Annotated[float, Range(0, None, low_open=True)] = 5.0

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        if len(shape) != 1 or shape[0] < 1:
            raise ShapeError(f"{self.label}: input must be a vector (C,), got {shape}")
        _no_conditions(self.label, conditions)
        return tuple(shape)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        channels = sig.inputs[0][0]
        row = (1, channels)
        return [
            ParamSpec("weights", (channels, channels), init.special_orthogonal(channels)),
            ParamSpec("bias", row, init.normal(row, 0.05)),
            ParamSpec("scaling", row, init.normal(row, 0.02)),
        ]

    def _log_scale(self, ctx: Context) -> Array:
        return (self.clamp * _ATAN) * ctx.xp.atan(ctx.params["scaling"] / self.clamp)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        xp, p = ctx.xp, ctx.params
        log_scale = self._log_scale(ctx)
        y = (xp.matmul(x, p["weights"]) + p["bias"]) * xp.exp(log_scale)
        return y, xp.sum(log_scale) if ctx.jac else 0.0

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        xp, p = ctx.xp, ctx.params
        log_scale = self._log_scale(ctx)
        x = xp.matmul(y * xp.exp(-log_scale) - p["bias"], xp.permute_dims(p["weights"], (1, 0)))
        return x, -xp.sum(log_scale) if ctx.jac else 0.0


# -- LU-parametrised invertible linear maps (Glow) --------------------------------------------


def _unit_triangular_inverse(xp: Namespace, strict: Array, lower: bool) -> Array:
    r""":math:`(I + N)^{-1}` for a strictly lower (``lower``) or strictly upper triangular
    :math:`N`, by substitution against the identity, one column of :math:`N` a step.

    Solving :math:`(I + N) X = I` row by row, row :math:`j` of :math:`X` is final once the
    rows it depends on are; then it is subtracted, times column :math:`j` of :math:`N`,
    from the rows that depend on it. The (static) channel count bounds the loop, so it
    traces; the result is exact to round-off as a forward/back substitution is.
    """
    x = _identity(xp, strict)
    size = int(strict.shape[0])
    for j in range(size) if lower else reversed(range(size)):
        x = x - strict[:, j : j + 1] * x[j : j + 1, :]
    return x


@dataclasses.dataclass(frozen=True)
class InvertibleLinear(SimpleTransform):
    r"""A learned invertible linear map of the channels, LU-parametrised (Glow):

    .. math::

        W = P\,L\,(U + \mathrm{diag}(s)), \qquad s = \mathrm{sign}_s \odot e^{\log s},
        \qquad y = W x, \qquad x = W^{-1} y,

    with :math:`P` a fixed permutation (:math:`P_{i,\mathrm{perm}_i} = 1`, so
    :math:`(P z)_i = z_{\mathrm{perm}_i}`), :math:`L` unit lower triangular and :math:`U`
    strictly upper triangular. On images (C, *spatial) it is a 1x1 convolution: the same
    :math:`W` at every pixel. :math:`W^{-1} = (U + \mathrm{diag}\,s)^{-1} L^{-1} P^\top`,
    the triangular inverses by substitution (no ``linalg`` needed).

    Log-det: :math:`N \sum_i \log|s_i| = N \sum_i \log s_i` with :math:`N` the number of
    pixels (1 for vectors).

    Parameters: trainable ``lower`` (C, C) (its strictly lower part is :math:`L - I`),
    ``upper`` (C, C) (its strictly upper part is :math:`U`), ``log_s`` (C,); buffers
    ``perm`` (C,) int64 (a permutation) and ``sign_s`` (C,) (:math:`\pm 1`). The entries
    outside the triangles are ignored. Initialised from the LU decomposition with partial
    pivoting of a random rotation (:func:`flowcore.initializers.lu_rotation`), so
    :math:`W` starts orthogonal.

    The learnable 1x1 convolution FrEIA users asked for (FrEIA issue #50); FrEIA has none.

    References: Kingma & Dhariwal, "Glow: Generative flow with invertible 1x1
    convolutions", NeurIPS 2018, section 3.2.
    """

    #: The least input rank (1: vectors and images; 2: images only).
    min_rank = 1

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        what = "(C,) or (C, *spatial)" if self.min_rank == 1 else "an image (C, H, W)"
        _channels_first(self.label, shape, self.min_rank, what)
        _no_conditions(self.label, conditions)
        return tuple(shape)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        channels = sig.inputs[0][0]
        parts = init.lu_rotation(channels)
        square, row = (channels, channels), (channels,)
        return [
            ParamSpec(
                "perm",
                row,
                parts["perm"],
                trainable=False,
                kind="index",
                constraint="permutation",
            ),
            ParamSpec("lower", square, parts["lower"]),
            ParamSpec("upper", square, parts["upper"]),
            ParamSpec("log_s", row, parts["log_s"]),
            ParamSpec("sign_s", row, parts["sign_s"], trainable=False),
        ]

    def _factors(self, ctx: Context) -> tuple[Array, Array, Array]:
        """Strictly lower L - I, strictly upper U, and s."""
        xp, p = ctx.xp, ctx.params
        return (
            xp.tril(p["lower"], k=-1),
            xp.triu(p["upper"], k=1),
            p["sign_s"] * xp.exp(p["log_s"]),
        )

    def weight(self, ctx: Context) -> Array:
        """The matrix :math:`W = P L (U + \\mathrm{diag}\\, s)`."""
        xp = ctx.xp
        strict_lower, strict_upper, s = self._factors(ctx)
        eye = _identity(xp, strict_lower)
        lu = xp.matmul(eye + strict_lower, strict_upper + eye * s)
        return xp.take(lu, ctx.params["perm"], axis=0)

    def inverse_weight(self, ctx: Context) -> Array:
        r""":math:`W^{-1} = (U + \mathrm{diag}\, s)^{-1} L^{-1} P^\top`, with
        :math:`(U + \mathrm{diag}\, s)^{-1} = \mathrm{diag}(s)^{-1} (I + U
        \mathrm{diag}(s)^{-1})^{-1}`."""
        xp = ctx.xp
        strict_lower, strict_upper, s = self._factors(ctx)
        lower_inv = _unit_triangular_inverse(xp, strict_lower, lower=True)
        upper_inv = _unit_triangular_inverse(xp, strict_upper / s, lower=False) / s[:, None]
        return xp.take(xp.matmul(upper_inv, lower_inv), ctx.params["perm"], axis=1)

    def _log_det(self, ctx: Context, x: Array) -> Any:
        return pieces.pixels(x) * ctx.xp.sum(ctx.params["log_s"]) if ctx.jac else 0.0

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return pieces.channel_matmul(ctx.xp, self.weight(ctx), x), self._log_det(ctx, x)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        x = pieces.channel_matmul(ctx.xp, self.inverse_weight(ctx), y)
        return x, -self._log_det(ctx, y) if ctx.jac else 0.0


@dataclasses.dataclass(frozen=True)
class InvertibleConv1x1(InvertibleLinear):
    r"""Glow's invertible 1x1 convolution, LU-parametrised: :class:`InvertibleLinear` on
    images (C, H, W) (any (C, *spatial) with a spatial axis), the same matrix
    :math:`W = P L (U + \mathrm{diag}\, s)` at every pixel.

    Log-det: :math:`H W \sum_i \log|s_i|`. Parameters as :class:`InvertibleLinear`.

    References: Kingma & Dhariwal, "Glow: Generative flow with invertible 1x1
    convolutions", NeurIPS 2018, section 3.2.
    """

    min_rank = 2

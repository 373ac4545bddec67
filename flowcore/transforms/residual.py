r"""Residual flows: the invertible residual block of Behrmann et al. (i-ResNet).

:class:`IResNetLayer` is ``y = x + g(x)`` with ``g`` an MLP (on vectors) or a net of 3×3
convolutions (on images) whose weights are spectrally normalised in every call, so that ``g``
is a contraction: the inverse is a fixed-point iteration and ``log det(I + J_g)`` is a
convergent power series. The residual net's
parameters are the transform's own (not a subnet child), so its Jacobian is known in closed
form: Jacobian-vector products and the full per-sample Jacobian are computed analytically with
the Array API, never by autodiff.

State: one power-iteration vector per weight, a buffer updated through
:meth:`flowcore.Context.update` by each forward call (see :class:`IResNetLayer`).
:func:`iresnet_params_from_freia` converts a FrEIA ``IResNetLayer`` state.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np

from .. import initializers as init
from ..errors import OptionError, ParameterError, ShapeError
from ..namespace import numpy_namespace
from ..options import POSITIVE, Range
from ..spec import (
    Array,
    Context,
    Initializer,
    Namespace,
    ParamSpec,
    Shape,
    Signature,
    SimpleTransform,
    batch_zeros,
)

__all__ = [
    "IResNetLayer",
    "iresnet_params_from_freia",
    "power_vectors",
    "series_truncation_bound",
]

AtLeastOne = Annotated[int, Range(1, None)]
LogDetMethod = Literal["series", "exact"]
ProbeDistribution = Literal["rademacher", "normal"]

#: Added to ``W^T W v`` as ``EPS * v`` before normalising: the same eigenvectors (so the
#: converged vector stays a fixed point), and never the zero vector, even for ``W = 0``.
EPS = 1e-12


#: A forward's power steps that move the stored vector by at most this much (largest entry
#: of the difference of unit vectors) leave it unchanged: a converged vector stays bit for
#: bit, whatever the backend's rounding, and the spectral norm estimate is then accurate to
#: about CONVERGED**2 / (1 - (sigma_2 / sigma_1)**2) relative.
CONVERGED = 1e-6

#: The largest image (C·H·W entries) ``log_det_method="exact"`` takes: its Jacobian is built
#: from that many Jacobian-vector products per sample and eliminated in a static loop of that
#: many steps.
EXACT_IMAGE_LIMIT = 256

#: Convolutions on inputs of at most this many entries get their initial vector from the
#: dense operator's Gram matrix :math:`A^\top A` (an eigendecomposition); larger ones from
#: :data:`INIT_POWER_STEPS` steps of subspace iteration on :data:`INIT_POWER_BLOCK` vectors.
DENSE_INIT_LIMIT = 512
INIT_POWER_STEPS = 100
INIT_POWER_BLOCK = 8


def series_truncation_bound(dim: int, lipschitz: float, terms: int) -> float:
    r"""An upper bound on the error of the power series cut after ``terms`` terms.

    With :math:`\|J\| \le q < 1`, :math:`|\mathrm{tr}(J^k)| \le D q^k`, so

    .. math::

        \Big|\log\det(I + J) - \sum_{k=1}^{n} \frac{(-1)^{k+1}}{k} \mathrm{tr}(J^k)\Big|
        \le D \sum_{k > n} \frac{q^k}{k} \le \frac{D\, q^{n+1}}{(n + 1)(1 - q)}.
    """
    if not 0.0 <= lipschitz < 1.0:
        raise OptionError(f"series_truncation_bound: lipschitz must be in [0, 1), got {lipschitz}")
    return dim * lipschitz ** (terms + 1) / ((terms + 1) * (1.0 - lipschitz))


def power_vectors(
    weights: Sequence[np.ndarray], spatial: Sequence[int] | None = None
) -> list[np.ndarray]:
    """The top right singular vector of each weight's operator (float64, unit norm, sign
    fixed so that its largest entry is positive): the converged power-iteration vectors, a
    fixed point of the update.

    A weight (out, in) is its own operator; a kernel (out, in, 3, 3) stands for its
    bias-free padding-1 convolution on images (in, *spatial), and its vector has that shape.
    It is the top eigenvector of the dense operator's Gram matrix for inputs of at most
    :data:`DENSE_INIT_LIMIT` entries, else the result of :data:`INIT_POWER_STEPS` steps of
    subspace iteration on :data:`INIT_POWER_BLOCK` vectors from a fixed start and a
    Rayleigh-Ritz step (close to it, a warm start for the forward's own steps).
    """
    vectors = []
    for w in weights:
        w = np.asarray(w, dtype=np.float64)
        if w.ndim == 2:
            v = np.linalg.svd(w)[2][0]
        elif spatial is None:
            raise OptionError(f"power_vectors: a kernel {w.shape} needs spatial=(H, W)")
        else:
            v = _conv_top_vector(w, tuple(spatial))
        vectors.append(v * np.sign(v.flat[np.argmax(np.abs(v))]))
    return vectors


def _conv_top_vector(w: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    """The top right singular vector (in, H, W) of the padding-1 convolution by ``w``."""
    shape = (w.shape[1], *spatial)
    size = math.prod(shape)
    if size <= DENSE_INIT_LIMIT:
        dense = _conv_operator(w, spatial)
        return np.linalg.eigh(dense.T @ dense)[1][:, -1].reshape(shape)
    conv = numpy_namespace().conv2d
    adjoint = np.flip(w, axis=(2, 3)).transpose(1, 0, 2, 3)
    zeros_out, zeros_in = np.zeros(w.shape[0]), np.zeros(shape[0])

    def gram(basis: np.ndarray) -> np.ndarray:  # A^T A on the columns of (size, k)
        images = basis.T.reshape(-1, *shape)
        return conv(conv(images, w, zeros_out, 1), adjoint, zeros_in, 1).reshape(-1, size).T

    # subspace iteration: converges as (sigma_{k+1} / sigma_1)^(2 steps), not as
    # (sigma_2 / sigma_1)^(2 steps): a convolution's top singular values are close
    basis = np.random.default_rng(0).standard_normal((size, min(INIT_POWER_BLOCK, size)))
    for _ in range(INIT_POWER_STEPS):
        basis = np.linalg.qr(gram(basis))[0]
    ritz = np.linalg.eigh(basis.T @ gram(basis))[1][:, -1]  # Rayleigh-Ritz: the top one
    return (basis @ ritz).reshape(shape)


def _conv_operator(w: np.ndarray, spatial: Sequence[int]) -> np.ndarray:
    """The bias-free padding-1 convolution by ``w`` (out, in, kh, kw) on images (in, H, W)
    as a dense (out·H·W, in·H·W) matrix, entries in C order."""
    shape = (w.shape[1], *spatial)
    size = math.prod(shape)
    basis = np.eye(size).reshape(size, *shape)
    columns = numpy_namespace().conv2d(basis, np.asarray(w, np.float64), np.zeros(w.shape[0]), 1)
    return columns.reshape(size, -1).T


def _layer_weight(shape: Shape, advance: bool) -> Initializer:
    """PyTorch's default Linear or Conv2d weight, U(±1/sqrt(fan_in)); without ``advance``
    the generator's state is restored after the draw, so the vector initialiser declared
    after it sees the same weight."""
    draw = init.fan_in_uniform(shape, math.prod(shape[1:]))

    def weight(rng: np.random.Generator) -> np.ndarray:
        state = rng.bit_generator.state
        value = draw(rng)
        if not advance:
            rng.bit_generator.state = state
        return value

    return weight


def _layer_vector(shape: Shape, spatial: Shape | None) -> Initializer:
    """The top right singular vector of the weight the generator draws next (the same draw
    as the weight declared just before, which restored the state)."""
    draw = _layer_weight(shape, advance=True)
    return lambda rng: power_vectors([draw(rng)], spatial)[0]


def _elu(xp: Namespace, h: Array) -> tuple[Array, Array]:
    """ELU and its derivative; the exponential sees only non-positive values, so neither
    the unused branch nor its gradient overflows."""
    positive = h > 0
    negative = xp.where(positive, xp.zeros_like(h), h)
    low = xp.expm1(negative)
    return xp.where(positive, h, low), xp.where(positive, xp.ones_like(h), low + 1.0)


def _normalised(xp: Namespace, v: Array) -> Array:
    return v / xp.sqrt(xp.sum(v * v))


def _shape(a: Array, start: int = 0) -> tuple[int, ...]:
    """The static sizes of ``a``'s axes from ``start`` on (a batch axis's may be unknown)."""
    return tuple(int(d) for d in a.shape[start:])


def _is_kernel(w: Array) -> bool:
    return len(w.shape) == 4


def _conv(xp: Namespace, x: Array, w: Array) -> Array:
    """The bias-free padding-1 convolution of images ``x`` (N, in, H, W)."""
    return xp.conv2d(x, w, xp.zeros_like(w[:, 0, 0, 0]), 1)


def _adjoint_kernel(xp: Namespace, w: Array) -> Array:
    """The kernel whose padding-1 convolution is the adjoint of ``w``'s (an odd square
    kernel): flipped in both spatial axes, in and out channels swapped."""
    size = int(w.shape[2])
    w = xp.concat([w[:, :, i : i + 1, :] for i in reversed(range(size))], axis=2)
    w = xp.concat([w[:, :, :, i : i + 1] for i in reversed(range(size))], axis=3)
    return xp.permute_dims(w, (1, 0, 2, 3))


def _gram(xp: Namespace, w: Array, v: Array) -> Array:
    r""":math:`W^\top W v`, ``W`` the weight or the bias-free convolution of an image ``v``."""
    if not _is_kernel(w):
        return xp.matmul(xp.matmul(v, xp.permute_dims(w, (1, 0))), w)
    image = xp.reshape(v, (1, *_shape(v)))
    return xp.reshape(_conv(xp, _conv(xp, image, w), _adjoint_kernel(xp, w)), _shape(v))


def _apply(xp: Namespace, w: Array, v: Array) -> Array:
    """:math:`W v` for one vector or image ``v`` (an image with a batch axis of one), bias
    excluded."""
    if not _is_kernel(w):
        return xp.matmul(w, v)
    return _conv(xp, xp.reshape(v, (1, *_shape(v))), w)


def _stacked(xp: Namespace, w: Array, u: Array) -> Array:
    """:math:`W u` for each vector of ``u`` (..., in) or image of ``u`` (S, in, H, W) or
    (B, S, in, H, W), bias excluded."""
    if not _is_kernel(w):
        return xp.matmul(u, xp.permute_dims(w, (1, 0)))
    if len(u.shape) == 4:
        return _conv(xp, u, w)
    out = _conv(xp, xp.reshape(u, (-1, *_shape(u, 2))), w)
    return xp.reshape(out, (-1, int(u.shape[1]), *_shape(out, 1)))


def _layer(xp: Namespace, w: Array, b: Array, h: Array) -> Array:
    """One layer of ``g`` before its activation: linear, or the padding-1 convolution."""
    return xp.conv2d(h, w, b, 1) if _is_kernel(w) else xp.linear(h, w, b)


def _jacobian_products(
    xp: Namespace, layers: Sequence[tuple[Array, Array]], slopes: Sequence[Array], first: Array
) -> Array:
    r""":math:`J u` at each sample for S vectors ``u``, given their first products
    :math:`\tilde W_1 u` (S, ...) or (B, S, ...): (B, S, *input shape)."""
    h = first
    for (w, _), slope in zip(layers[1:], slopes, strict=True):
        h = _stacked(xp, w, slope[:, None, ...] * h)
    return h


def _identity_like(xp: Namespace, like: Array) -> Array:
    """The identity of size ``like``'s entry count, with its dtype and device."""
    size = math.prod(_shape(like))
    row = xp.reshape(xp.ones_like(like), (1, size))
    return xp.tril(xp.triu(xp.broadcast_to(row, (size, size))))


def _log_det_of_identity_plus(xp: Namespace, j: Array) -> Array:
    r""":math:`\log\det(I + J)` per sample of ``j`` (B, D, D) by Gaussian elimination
    without pivoting, valid for :math:`\|J\| < 1` (every pivot a ratio of positive
    leading minors)."""
    # the identity kept implicit: the Schur complement of I + M's first pivot is
    # I + (M[1:, 1:] - M[1:, 0] M[0, 1:] / pivot).
    pivot = 1.0 + j[:, 0, 0]
    log_det = xp.log(pivot)
    for _ in range(int(j.shape[1]) - 1):
        j = j[:, 1:, 1:] - j[:, 1:, 0:1] * j[:, 0:1, 1:] / pivot[:, None, None]
        pivot = 1.0 + j[:, 0, 0]
        log_det = log_det + xp.log(pivot)
    return log_det


@dataclasses.dataclass(frozen=True)
class IResNetLayer(SimpleTransform):
    r"""Invertible residual block (i-ResNet): :math:`y = x + g(x)` with :math:`\mathrm{Lip}(g)
    < 1`.

    The residual branch is an MLP with ELU activations,

    .. math::

        g(x) = W_L\,\phi(\cdots \phi(W_2\, \phi(W_1 x + b_1) + b_2) \cdots) + b_L,

    :math:`W_1: D \to H`, ``n_internal_layers`` maps :math:`H \to H`, :math:`W_L: H \to D`
    (:math:`H` = ``internal_size``, default :math:`2D`; :math:`L` = ``n_internal_layers +
    2``), as FrEIA builds it. On images (C, H, W) each :math:`W_i x + b_i` is a 3×3
    convolution with one pixel of zero padding (stride 1, so every layer keeps the image
    size) and :math:`W_i` the linear operator of its kernel, bias excluded: channels
    :math:`C \to H_c`, :math:`H_c \to H_c`, :math:`H_c \to C`, :math:`H_c` =
    ``internal_size``, default :math:`2C` (FrEIA's ``2 * dims_in[0][0]``). Each weight is
    spectrally normalised in every call, as Behrmann et al. do:

    .. math::

        \tilde W_i = W_i / \max(1, \hat\sigma_i / c), \qquad \hat\sigma_i = \|W_i v_i\|,

    :math:`c` = ``spectral_norm_max`` in (0, 1) and :math:`v_i` a unit power-iteration
    vector (an image (in_i, H, W) for a convolution, :math:`W_i v_i` its convolution and
    :math:`W_i^\top` the convolution by the kernel flipped in H and W with its channels
    swapped, also with padding 1). With :math:`v_i` the top right singular vector,
    :math:`\hat\sigma_i` is the spectral norm and :math:`\|\tilde W_i\| \le c`; ELU is
    1-Lipschitz, so
    :math:`\mathrm{Lip}(g) \le q = c^L < 1`. (:math:`\hat\sigma_i` is a lower bound of
    the spectral norm: before the vectors converge the bound can be exceeded slightly.)

    **Inverse**: ``fixed_point_iterations`` = :math:`n` steps of
    :math:`x_{k+1} = y - g(x_k)` from :math:`x_0 = y` (a static loop: it traces under
    ``jax.jit``, ``torch.compile`` and ``tf.function``); the error is at most
    :math:`q^n \|g(y)\| / (1 - q)`. Gradients flow through every step (exact for the
    unrolled map, converging to those of the true inverse).

    **Log-det** :math:`\log\det(I + J)`, :math:`J = \partial g / \partial x =
    \tilde W_L D_{L-1} \tilde W_{L-1} \cdots D_1 \tilde W_1`, :math:`D_i =
    \mathrm{diag}(\phi'(h_i))` (positive: :math:`\det(I + J) > 0`):

    - ``log_det_method="series"`` (default, as FrEIA): the power series cut after
      :math:`n` = ``jacobian_iterations`` terms,
      :math:`\sum_{k=1}^{n} (-1)^{k+1} \mathrm{tr}(J^k) / k`, each trace by Hutchinson's
      estimator :math:`\mathrm{tr}(A) \approx \frac1S \sum_s u_s^\top A u_s` with
      :math:`S` = ``hutchinson_samples`` probes :math:`u_s` (Rademacher or standard normal,
      ``probe_distribution``), drawn from the backend's generator and shared by the
      samples of a batch (the contract draws no batch-sized arrays: each sample's estimate
      is unbiased for its truncated series, those of one batch are correlated). The
      truncation error is at most :math:`D \sum_{k>n} q^k / k \le D q^{n+1} / ((n+1)(1-q))`
      (:func:`series_truncation_bound`); the estimate is unbiased for the truncated
      series. :math:`J u` is computed analytically, :math:`L` matrix products (on images,
      bias-free convolutions) per power.
    - ``log_det_method="exact"``: :math:`J` per sample, shape (batch, D, D), and
      :math:`\log\det(I + J)` by Gaussian elimination without pivoting (a static loop over
      :math:`D`; cost :math:`D^3/3` per sample: for small :math:`D`). Valid because every
      leading principal submatrix :math:`J_k` of :math:`J` has :math:`\|J_k\| \le \|J\| <
      1`, so every leading minor :math:`\det(I_k + J_k)` is positive and so is every
      pivot. Deterministic: this is the mode the conformance suite checks. On images
      :math:`J` is built from its products with the :math:`D = CHW` basis vectors, so it
      is refused (a ``ShapeError``) above ``EXACT_IMAGE_LIMIT`` = 256 entries.

    Forward returns the log-det at :math:`x`; the inverse returns minus the log-det at the
    reconstructed :math:`x` (FrEIA evaluates it at :math:`y`), with its parameter
    gradient (FrEIA's has none).

    **State and determinism.** Buffer ``vector_i`` (shape ``(in_i,)``, on images
    ``(in_i, H, W)``) holds :math:`v_i`. A *forward* call takes ``lipschitz_iterations``
    power-iteration steps :math:`v \leftarrow (W^\top W v + \epsilon v) / \|\cdot\|` from
    the stored vector,
    normalises with the result and writes it back (:meth:`flowcore.Context.update`; torch in
    place, NNX variables, Keras ``assign``; the JAX pure form returns it); steps that move
    the vector by at most ``CONVERGED`` = 1e-6 (largest entry) keep the stored one bit for
    bit, so a converged vector is an exact fixed point in every backend. The *inverse*
    normalises with the stored vectors as they are and writes nothing, so an inverse right
    after a forward undoes exactly the map the forward applied. The vectors start at the
    top right singular vectors of the initial weights (drawn from the build seed; for a
    convolution on more than ``DENSE_INIT_LIMIT`` = 512 entries, 100 steps of subspace
    iteration towards them); once converged they are a fixed point of the update, so
    repeated calls (the float64 NumPy reference keeps the same state) agree. Gradients flow
    through the power steps of the call (at convergence they equal the spectral norm's,
    :math:`u v^\top`).

    Parameters: ``weight_i`` (out, in), on images (out, in, 3, 3), and ``bias_i`` (out,)
    for ``i = 0 .. L-1`` (trainable, PyTorch's default Linear or Conv2d initialisation);
    buffers ``vector_i`` (in,) or (in, H, W).

    Options: ``internal_size`` (H), ``n_internal_layers`` (≥ 0), ``jacobian_iterations``,
    ``hutchinson_samples``, ``fixed_point_iterations``, ``lipschitz_iterations`` (each ≥ 1),
    ``spectral_norm_max`` (c, in (0, 1)), ``log_det_method``, ``probe_distribution``.
    Vectors (D,) or images (C, H, W), no conditions (FrEIA's takes none). FrEIA's
    ``lipschitz_batchsize`` (random restarts of a cold power method) has no counterpart: the
    vectors here are warm-started.

    References: Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen, "Invertible Residual
    Networks", ICML 2019 (arXiv:1811.00995); Hutchinson, "A stochastic estimator of the trace
    of the influence matrix for Laplacian smoothing splines", 1989; Miyato et al., "Spectral
    Normalization for Generative Adversarial Networks", ICLR 2018; Gouk, Frank, Pfahringer &
    Cree, "Regularisation of Neural Networks by Enforcing Lipschitz Continuity", 2018
    (arXiv:1804.04368: the convolution's power method); Ardizzone et al., FrEIA
    (github.com/vislearn/FrEIA), ``IResNetLayer``.
    """

    internal_size: Annotated[int, POSITIVE] | None = None
    n_internal_layers: Annotated[int, Range(0, None)] = 1
    jacobian_iterations: AtLeastOne = 20
    hutchinson_samples: AtLeastOne = 1
    fixed_point_iterations: AtLeastOne = 50
    lipschitz_iterations: AtLeastOne = 1
    spectral_norm_max: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 0.8
    log_det_method: LogDetMethod = "series"
    probe_distribution: ProbeDistribution = "rademacher"

    @property
    def uses_randomness(self) -> bool:  # type: ignore[override]  # only the series draws
        return self.log_det_method == "series"

    # -- declarations -------------------------------------------------------------------

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        if conditions:
            raise ShapeError(
                f"IResNetLayer: takes no condition, got {len(conditions)} condition(s) of "
                f"shape {', '.join(str(tuple(c)) for c in conditions)}"
            )
        if len(shape) not in (1, 3):
            raise ShapeError(
                f"IResNetLayer: takes vectors (D,) or images (C, H, W), got {tuple(shape)}"
            )
        size = math.prod(shape)
        if len(shape) == 3 and self.log_det_method == "exact" and size > EXACT_IMAGE_LIMIT:
            raise ShapeError(
                f"IResNetLayer: log_det_method='exact' takes images of at most "
                f"{EXACT_IMAGE_LIMIT} entries, got {tuple(shape)} ({size}); use "
                "log_det_method='series'"
            )
        return tuple(shape)

    def sizes(self, channels: int) -> list[tuple[int, int]]:
        """``(out, in)`` of each weight (features, or channels for images) for inputs of
        ``channels`` features or channels."""
        hidden = self.internal_size or 2 * channels
        return (
            [(hidden, channels)]
            + [(hidden, hidden)] * self.n_internal_layers
            + [(channels, hidden)]
        )

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        channels, *spatial = sig.inputs[0]
        kernel, image = ((3, 3), tuple(spatial)) if spatial else ((), None)
        specs: list[ParamSpec] = []
        for i, (out, inp) in enumerate(self.sizes(channels)):
            weight = (out, inp, *kernel)
            specs += [
                ParamSpec(f"weight_{i}", weight, _layer_weight(weight, advance=False)),
                ParamSpec(
                    f"vector_{i}", (inp, *spatial), _layer_vector(weight, image), trainable=False
                ),
                ParamSpec(f"bias_{i}", (out,), init.fan_in_uniform((out,), math.prod(weight[1:]))),
            ]
        return specs

    def lipschitz_bound(self) -> float:
        """:math:`q = c^L`, the Lipschitz bound of ``g`` once the vectors have converged."""
        return float(self.spectral_norm_max ** (self.n_internal_layers + 2))

    # -- math -----------------------------------------------------------------------------

    def _weights(self, ctx: Context, update: bool) -> list[tuple[Array, Array]]:
        """The spectrally normalised ``(weight, bias)`` pairs of this call."""
        xp, params = ctx.xp, ctx.params
        layers = []
        for i in range(self.n_internal_layers + 2):
            w = params[f"weight_{i}"]
            # a copy: torch writes the update in place, which must not touch a tensor this
            # call's autograd graph saved
            v = xp.asarray(params[f"vector_{i}"], copy=True)
            if update:
                start = v
                for _ in range(self.lipschitz_iterations):
                    v = _normalised(xp, _gram(xp, w, v) + EPS * v)
                # converged: a step moving the vector by at most CONVERGED keeps it, bit for bit
                v = xp.where(xp.max(xp.abs(v - start)) > CONVERGED, v, start)
                ctx.update(f"vector_{i}", v)
            wv = _apply(xp, w, v)
            ratio = xp.sqrt(xp.sum(wv * wv)) / self.spectral_norm_max
            layers.append(
                (w / xp.where(ratio > 1.0, ratio, xp.ones_like(ratio)), params[f"bias_{i}"])
            )
        return layers

    def _residual(
        self, xp: Namespace, layers: Sequence[tuple[Array, Array]], x: Array
    ) -> tuple[Array, list[Array]]:
        """``g(x)`` and the activations' derivatives ``phi'(h_i)`` of the hidden layers."""
        h = x
        slopes = []
        for w, b in layers[:-1]:
            h, slope = _elu(xp, _layer(xp, w, b, h))
            slopes.append(slope)
        w, b = layers[-1]
        return _layer(xp, w, b, h), slopes

    def _log_det(
        self,
        ctx: Context,
        layers: Sequence[tuple[Array, Array]],
        slopes: Sequence[Array],
        x: Array,
    ) -> Array:
        if self.log_det_method == "series":
            return self._series_log_det(ctx, layers, slopes, x)
        if _is_kernel(layers[0][0]):
            return self._exact_image_log_det(ctx, layers, slopes)
        return self._exact_log_det(ctx.xp, layers, slopes)

    def _exact_log_det(
        self, xp: Namespace, layers: Sequence[tuple[Array, Array]], slopes: Sequence[Array]
    ) -> Array:
        # J = W_L D_{L-1} W_{L-1} ... D_1 W_1 per sample: (batch, D, D)
        m = slopes[0][:, :, None] * layers[0][0][None, :, :]
        for (w, _), slope in zip(layers[1:-1], slopes[1:], strict=True):
            m = slope[:, :, None] * xp.matmul(w, m)
        return _log_det_of_identity_plus(xp, xp.matmul(layers[-1][0], m))

    def _exact_image_log_det(
        self, ctx: Context, layers: Sequence[tuple[Array, Array]], slopes: Sequence[Array]
    ) -> Array:
        xp, like = ctx.xp, ctx.params["vector_0"]  # an image's shape, dtype and device
        size = math.prod(_shape(like))
        basis = xp.reshape(_identity_like(xp, like), (size, *_shape(like)))
        # row j of J^T is J e_j: (batch, D, D); det(I + J^T) = det(I + J)
        columns = _jacobian_products(xp, layers, slopes, _stacked(xp, layers[0][0], basis))
        return _log_det_of_identity_plus(xp, xp.reshape(columns, (-1, size, size)))

    def _series_log_det(
        self,
        ctx: Context,
        layers: Sequence[tuple[Array, Array]],
        slopes: Sequence[Array],
        x: Array,
    ) -> Array:
        xp = ctx.xp
        shape = (self.hutchinson_samples, *_shape(x, 1))
        probes = (ctx.rademacher if self.probe_distribution == "rademacher" else ctx.normal)(
            shape, x
        )  # (S, *input shape), shared by the batch
        w0 = layers[0][0]
        first = _stacked(xp, w0, probes)  # the first product does not depend on x
        axes = tuple(range(2, len(shape) + 1))
        u = probes
        log_det = batch_zeros(xp, x)
        for k in range(1, self.jacobian_iterations + 1):
            # u <- J u, J = W_L D_{L-1} ... D_1 W_1 at each sample: (batch, S, *input shape)
            u = _jacobian_products(xp, layers, slopes, first if k == 1 else _stacked(xp, w0, u))
            trace = xp.mean(xp.sum(u * probes, axis=axes), axis=1)  # (batch,)
            log_det = log_det + ((-1.0) ** (k + 1) / k) * trace
        return log_det

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        layers = self._weights(ctx, update=True)
        g, slopes = self._residual(ctx.xp, layers, x)
        if not ctx.jac:
            return x + g, 0.0
        return x + g, self._log_det(ctx, layers, slopes, x)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        xp = ctx.xp
        layers = self._weights(ctx, update=False)
        x = y
        for _ in range(self.fixed_point_iterations):
            x = y - self._residual(xp, layers, x)[0]
        if not ctx.jac:
            return x, 0.0
        _, slopes = self._residual(xp, layers, x)
        return x, -self._log_det(ctx, layers, slopes, x)


# -- FrEIA checkpoints --------------------------------------------------------------------


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach()
    if hasattr(value, "cpu"):
        value = value.cpu()
    return np.array(value, dtype=np.float64, copy=True)


def iresnet_params_from_freia(
    state: Mapping[str, Any],
    n_internal_layers: int = 1,
    prefix: str = "",
    spatial: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    r"""flowcore's ``weight_i``, ``bias_i`` and ``vector_i`` from a FrEIA ``IResNetLayer``
    state (0.2 and master store the same keys: ``residual.{2i}.weight`` and
    ``residual.{2i}.bias``, the ELUs between them holding nothing).

    FrEIA uses its weights as they are (``lipschitz_correction()``, called by hand,
    rescales them); flowcore normalises in every call with :math:`\max(1, \sigma/c)`.
    ``vector_i`` is set to the converged top right singular vector of each weight, so that
    flowcore computes the same map as FrEIA whenever every FrEIA weight has spectral norm
    at most ``spectral_norm_max`` (as after a converged correction), and otherwise the map
    with those weights scaled down to it. A convolutional block (FrEIA's on images) needs
    the image size ``spatial = (H, W)``: the spectral norm is the convolution's at that size.
    """
    n = n_internal_layers + 2
    params: dict[str, np.ndarray] = {}
    missing = [
        f"{prefix}residual.{2 * i}.{k}"
        for i in range(n)
        for k in ("weight", "bias")
        if f"{prefix}residual.{2 * i}.{k}" not in state
    ]
    if missing:
        raise ParameterError(
            f"iresnet_params_from_freia: a FrEIA IResNetLayer state with {n_internal_layers} "
            f"internal layer(s) needs {missing}; got the keys {sorted(state)}"
        )
    weights = [_numpy(state[f"{prefix}residual.{2 * i}.weight"]) for i in range(n)]
    if weights[0].ndim == 4 and spatial is None:
        raise ShapeError(
            "iresnet_params_from_freia: the state holds 3x3 convolutions (FrEIA's block on "
            "images): give spatial=(H, W), the image size"
        )
    for i, (w, v) in enumerate(zip(weights, power_vectors(weights, spatial), strict=True)):
        params[f"weight_{i}"] = w
        params[f"bias_{i}"] = _numpy(state[f"{prefix}residual.{2 * i}.bias"])
        params[f"vector_{i}"] = v
    return params

r"""Gaussian mixtures as invertible maps: FrEIA's ``GaussianMixtureModel``.

A mixture density network (MDN) predicts, per sample, the parameters of a Gaussian mixture
with :math:`K` components in :math:`D` dimensions; :class:`GaussianMixtureModel` takes them
as conditions and maps data to the standard-normal latent space of one component (or of
every component at once), so that the mixture is trained and sampled through an invertible
network like any other flow, with full covariance matrices.

Each component :math:`k` has a mean :math:`\mu_k` and a precision matrix
:math:`\Lambda_k = U_k^\top U_k` given by its upper triangular factor :math:`U_k` (the
transposed Cholesky factor of :math:`\Lambda_k`), packed in :math:`D(D+1)/2` numbers: the
first :math:`D` are the logs of the diagonal, the rest the entries above the diagonal row by
row, :math:`(0,1), (0,2), \dots, (0,D-1), (1,2), \dots, (D-2,D-1)`. The diagonal is
exponentiated, so any real numbers give a valid, invertible :math:`U_k`.

The static helpers (:meth:`~GaussianMixtureModel.normalize_weights`,
:meth:`~GaussianMixtureModel.pick_mixture_component`,
:meth:`~GaussianMixtureModel.component_log_dets`, :meth:`~GaussianMixtureModel.nll_loss`,
:meth:`~GaussianMixtureModel.nll_upper_bound`) take arrays of any library the Array API
reaches through ``array-api-compat`` (NumPy, PyTorch, JAX), or a namespace ``xp=``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ArgumentError, FlowError, ShapeError
from ..spec import Array, ConditionKind, Context, Namespace, Shape, SimpleTransform, same_kind

__all__ = ["GaussianMixtureModel"]

_NAME = "GaussianMixtureModel"


def packed_size(dims: int) -> int:
    """The numbers packing one :math:`D \\times D` factor: :math:`D(D+1)/2`."""
    return dims * (dims + 1) // 2


def _dims_of_packed(size: int, where: str) -> int:
    """:math:`D` such that :math:`D(D+1)/2` is ``size``; a ShapeError if there is none."""
    dims = (math.isqrt(8 * size + 1) - 1) // 2
    if dims < 1 or packed_size(dims) != size:
        raise ShapeError(
            f"{where}: the last axis of U must hold D(D+1)/2 numbers (1, 3, 6, 10, ...) for "
            f"some dimension D, got {size}"
        )
    return dims


def _shapes(label: str, shape: Shape, conditions: Sequence[Shape]) -> tuple[int, int, bool]:
    """Check the input and condition shapes; returns ``(K, D, one_component)``."""
    if len(conditions) not in (3, 4):
        raise ShapeError(
            f"{label}: takes the conditions (w, mu, U, i), or (w, mu, U) to map every "
            f"component at once; got {len(conditions)} condition(s)"
        )
    w, mu, u = (tuple(c) for c in conditions[:3])
    if len(w) != 1:
        raise ShapeError(f"{label}: condition w (the weights) must have shape (K,), got {w}")
    k = w[0]
    if len(mu) != 2 or mu[0] != k:
        raise ShapeError(
            f"{label}: condition mu (the means) must have shape (K, D) with the K = {k} "
            f"components of w, got {mu}"
        )
    dims = mu[1]
    if u != (k, packed_size(dims)):
        raise ShapeError(
            f"{label}: condition U (the packed precision factors) must have shape "
            f"(K, D(D+1)/2) = {(k, packed_size(dims))} for K = {k} and D = {dims}, got {u}"
        )
    one = len(conditions) == 4
    if one and tuple(conditions[3]) != ():
        raise ShapeError(
            f"{label}: condition i (the component of each sample) must hold one integer per "
            f"sample, shape (), got {tuple(conditions[3])}"
        )
    want = (dims,) if one else (k, dims)
    if tuple(shape) != want:
        if one:
            raise ShapeError(f"{label}: input must have shape (D,) = {want}, got {tuple(shape)}")
        raise ShapeError(
            f"{label}: without a component index i every component maps its own copy of the "
            f"input, of shape (K, D) = {want}; got {tuple(shape)} (give the conditions "
            "(w, mu, U, i) to map (D,) through one component)"
        )
    return k, dims, one


# -- the math, on arrays with any leading axes ------------------------------------------------


def _factors(xp: Namespace, packed: Array, dims: int) -> tuple[Array, Array]:
    r"""The dense upper triangular :math:`U` (..., D, D) and :math:`\log\mathrm{diag}\,U`
    (..., D) from the packed numbers (..., D(D+1)/2), row by row (no gather, no scatter)."""
    log_diag = packed[..., :dims]
    diag = xp.exp(log_diag)
    rows, start = [], dims
    for r in range(dims):
        above = dims - 1 - r
        parts = [xp.zeros_like(packed[..., :r])] if r else []
        parts.append(diag[..., r : r + 1])
        if above:
            parts.append(packed[..., start : start + above])
        start += above
        rows.append(xp.concat(parts, axis=-1)[..., None, :])
    return xp.concat(rows, axis=-2), log_diag


def _solve_upper(xp: Namespace, u: Array, log_diag: Array, z: Array) -> Array:
    r""":math:`U^{-1} z` by back substitution, one column of :math:`U` a step: the last
    unknown is final first, and is then taken off the rows above it."""
    dims = int(z.shape[-1])
    inv_diag = xp.exp(-log_diag)
    rest, pieces = z, []
    for j in reversed(range(dims)):
        x_j = rest[..., j : j + 1] * inv_diag[..., j : j + 1]
        pieces.append(x_j)
        if j:
            rest = rest[..., :j] - u[..., :j, j] * x_j
    return xp.concat(pieces[::-1], axis=-1)


def _pick(xp: Namespace, w: Array, i: Array, arrays: Sequence[Array]) -> tuple[list[Array], Array]:
    """Component ``i[b]`` of each array (batch, K, ...), by a one-hot mask (no gather), and
    whether ``i[b]`` named a component (``0 <= i[b] < K``)."""
    components = xp.cumulative_sum(xp.ones_like(w), axis=1) - 1.0  # (batch, K): 0 .. K-1
    hit = components == xp.astype(i, w.dtype)[:, None]
    picked = [xp.sum(xp.where(hit[:, :, None], a, xp.zeros_like(a)), axis=1) for a in arrays]
    valid = xp.sum(xp.where(hit, xp.ones_like(w), xp.zeros_like(w)), axis=1) > 0.5
    return picked, valid


def _nan_unless(xp: Namespace, valid: Array, a: Array) -> Array:
    """``a`` where ``valid`` (per sample), NaN elsewhere."""
    mask = valid if a.ndim == 1 else valid[:, None]
    return xp.where(mask, a, xp.zeros_like(a) + math.nan)


# -- the transform --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GaussianMixtureModel(SimpleTransform):
    r"""An invertible Gaussian mixture: data to the standard-normal latent of a component.

    Conditions (batch axis excluded), as FrEIA takes them: ``w`` (K,) the mixture weights
    (positive, summing to one; the map does not use them, the helpers do), ``mu`` (K, D)
    the means, ``U`` (K, D(D+1)/2) the packed precision factors (see
    :mod:`flowcore.transforms.mixture`: log-diagonal first, then the entries above the
    diagonal row by row), and ``i`` () the component of each sample, an integer index
    (int32 or int64). With component :math:`k = i`:

    .. math::

        z = U_k\,(x - \mu_k), \qquad x = \mu_k + U_k^{-1} z, \qquad
        \Lambda_k = U_k^\top U_k, \qquad
        (U_k)_{rr} = e^{u_{k,r}},

    so that :math:`z \sim \mathcal N(0, I)` exactly when
    :math:`x \sim \mathcal N(\mu_k, \Lambda_k^{-1})`. Log-det:

    .. math::

        \log|\det \partial z / \partial x| = \log\det U_k = \sum_{r<D} u_{k,r}

    forward (the first :math:`D` packed numbers, no log taken), minus that inverse; the log
    density of component :math:`k` is :math:`-\tfrac12|z|^2 + \log\det U_k -
    \tfrac D2\log 2\pi`. The inverse solves :math:`U_k` by back substitution (the Array API
    has no ``linalg`` here). An index outside ``0 .. K-1`` cannot be checked under tracing;
    such a sample's outputs and log-det are NaN (the FrEIA drop-in raises, eagerly).

    **Every component at once** (FrEIA's ``i=None``): with the conditions ``(w, mu, U)``
    only, the input has shape (K, D), one copy per component, and
    :math:`z_k = U_k (x_k - \mu_k)` for each :math:`k`: a block-diagonal map whose log-det
    is :math:`\sum_k \log\det U_k` (shape ``(batch,)`` as the contract wants; the
    per-component ones, which :meth:`nll_loss` takes, are :meth:`component_log_dets`).

    No parameters: everything comes in as conditions, typically from a network trained by
    backpropagating through this map (an MDN). Differences from FrEIA master: FrEIA's
    all-components mode also takes x of shape (D,) (broadcast to every component) and
    returns log-dets of shape (batch, K), and its ``i`` may be a Python int, a seed for
    :meth:`pick_mixture_component`; the FrEIA drop-in
    (``flowcore.backends.torch.freia.modules.GaussianMixtureModel``) does those.

    References: Ardizzone et al., FrEIA (github.com/vislearn/FrEIA),
    ``modules.GaussianMixtureModel`` (master, not in FrEIA 0.2); Kruse, "Technical report:
    Training Mixture Density Networks with full covariance matrices", 2020
    (arXiv:2003.05739); Bishop, "Mixture Density Networks", 1994.
    """

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        _shapes(self.label, shape, conditions)
        return tuple(shape)

    def condition_kinds(self, conditions: Sequence[Shape]) -> tuple[ConditionKind, ...]:
        if len(conditions) == 4:
            return ("float", "float", "float", "index")
        return same_kind("float", len(conditions))

    def _component(self, ctx: Context, cs: Sequence[Array]) -> tuple[Array, Array, Array | None]:
        """The mean (..., D), packed factor (..., D(D+1)/2) and validity of each sample's
        component; all components (batch, K, ...) and None without ``i``."""
        if len(cs) == 3:
            return cs[1], cs[2], None
        w, mu, packed, i = cs
        (mu_i, packed_i), valid = _pick(ctx.xp, w, i, [mu, packed])
        return mu_i, packed_i, valid

    def _log_det(self, xp: Namespace, log_diag: Array) -> Array:
        return xp.sum(log_diag, axis=tuple(range(1, log_diag.ndim)))

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        xp = ctx.xp
        mu, packed, valid = self._component(ctx, cs)
        u, log_diag = _factors(xp, packed, int(mu.shape[-1]))
        z = xp.matmul(u, (x - mu)[..., None])[..., 0]
        log_det = self._log_det(xp, log_diag) if ctx.jac else 0.0
        if valid is not None:
            z = _nan_unless(xp, valid, z)
            log_det = _nan_unless(xp, valid, log_det) if ctx.jac else 0.0
        return z, log_det

    def inverse(self, ctx: Context, z: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        xp = ctx.xp
        mu, packed, valid = self._component(ctx, cs)
        u, log_diag = _factors(xp, packed, int(mu.shape[-1]))
        x = mu + _solve_upper(xp, u, log_diag, z)
        log_det = -self._log_det(xp, log_diag) if ctx.jac else 0.0
        if valid is not None:
            x = _nan_unless(xp, valid, x)
            log_det = _nan_unless(xp, valid, log_det) if ctx.jac else 0.0
        return x, log_det

    # -- FrEIA's static helpers, for any Array API library -------------------------------------

    @staticmethod
    def normalize_weights(w: Array, xp: Namespace | None = None) -> Array:
        r"""Mixture weights from unnormalised ones: the softmax over the last axis,
        :math:`w_k = e^{a_k} / \sum_j e^{a_j}`, computed with the row's maximum taken off
        (FrEIA takes off the maximum of the whole array; softmax does not change)."""
        xp = _namespace(xp, w)
        e = xp.exp(w - xp.max(w, axis=-1, keepdims=True))
        return e / xp.sum(e, axis=-1, keepdims=True)

    @staticmethod
    def pick_mixture_component(
        w: Array,
        seed: int | np.random.Generator | None = None,
        *,
        uniform: Array | None = None,
        xp: Namespace | None = None,
    ) -> Array:
        r"""A component per sample, drawn with the probabilities ``w`` (batch, K).

        One uniform number :math:`u_b \in [0, 1)` per sample picks the component whose
        interval :math:`(\sum_{j<k} w_j, \sum_{j \le k} w_j]` holds it: the index is the
        number of cumulative weights below :math:`u_b` (FrEIA's rule), at most :math:`K - 1`
        (where the weights sum to a little less than one). The numbers come from
        ``numpy.random.default_rng(seed)`` (an int: the same components in every backend
        for the same weights; None: fresh entropy; or a ``numpy.random.Generator``), or are
        given as ``uniform`` (batch,) or (batch, 1). Returns int64 indices (batch,), with
        the namespace and device of ``w``. FrEIA draws its numbers with
        ``torch.rand(generator=torch.Generator().manual_seed(seed))``; the FrEIA drop-in
        does that, for FrEIA's exact components.
        """
        xp = _namespace(xp, w)
        if w.ndim != 2:
            raise ShapeError(
                f"{_NAME}.pick_mixture_component: w must have shape (batch, K), got "
                f"{tuple(w.shape)}"
            )
        batch, k = int(w.shape[0]), int(w.shape[1])
        if uniform is None:
            uniform = _generator(seed).random((batch, 1))
        u = xp.reshape(xp.asarray(uniform, dtype=w.dtype, device=_device(w)), (-1, 1))
        if int(u.shape[0]) != batch:
            raise ShapeError(
                f"{_NAME}.pick_mixture_component: uniform must hold one number per sample "
                f"({batch}), got shape {tuple(uniform.shape)}"
            )
        below = xp.astype(u > xp.cumulative_sum(w, axis=1), xp.int64)
        return xp.clip(xp.sum(below, axis=1), 0, k - 1)

    @staticmethod
    def component_log_dets(u: Array, xp: Namespace | None = None) -> Array:
        r""":math:`\log\det U_k = \sum_{r<D} u_{k,r}` of each packed factor: ``U`` (..., K,
        D(D+1)/2) to (..., K), what :meth:`nll_loss` takes as ``log_jacobian`` (negate it
        for the inverse direction)."""
        xp = _namespace(xp, u)
        dims = _dims_of_packed(int(u.shape[-1]), f"{_NAME}.component_log_dets")
        return xp.sum(u[..., :dims], axis=-1)

    @staticmethod
    def nll_loss(w: Array, z: Array, log_jacobian: Array, xp: Namespace | None = None) -> Array:
        r"""The negative log-likelihood of the mixture, per sample (batch,):

        .. math::

            -\log \sum_k w_k \exp\!\big(-\tfrac12 |z_k|^2 + \log\det U_k\big)

        with ``w`` (batch, K), ``z`` (batch, K, D) every component's latent code and
        ``log_jacobian`` (batch, K) their log-dets (:meth:`component_log_dets`); as FrEIA's,
        without the constant :math:`\tfrac D2 \log 2\pi`. Computed with the largest exponent
        taken out (log-sum-exp), so it stays finite where FrEIA's ``exp`` underflows to 0
        (large :math:`D` or far-off samples) and FrEIA's loss is ``inf``.
        """
        xp = _namespace(xp, w, z, log_jacobian)
        exponent = -0.5 * xp.sum(z * z, axis=-1) + log_jacobian
        top = xp.max(exponent, axis=-1, keepdims=True)
        total = xp.sum(w * xp.exp(exponent - top), axis=-1)
        return -(top[..., 0] + xp.log(total))

    @staticmethod
    def nll_upper_bound(
        w: Array, z: Array, log_jacobian: Array, xp: Namespace | None = None
    ) -> Array:
        r"""FrEIA's "numerically more stable upper bound" of :meth:`nll_loss`, per sample:

        .. math:: -\sum_k \big(\log w_k - \tfrac12 |z_k|^2 + \log\det U_k\big)

        It bounds :meth:`nll_loss` from above when every term in the sum is
        :math:`\le 0` (each :math:`\log w_k \le 0`; it is not a bound when a component's
        log-density term is large and positive). Same arguments as :meth:`nll_loss`.
        """
        xp = _namespace(xp, w, z, log_jacobian)
        terms = xp.log(w) - 0.5 * xp.sum(z * z, axis=-1) + log_jacobian
        return -xp.sum(terms, axis=-1)


def _namespace(xp: Namespace | None, *arrays: Array) -> Namespace:
    if xp is not None:
        return xp
    import array_api_compat

    try:
        return array_api_compat.array_namespace(*arrays)
    except TypeError as err:
        kinds = ", ".join(sorted({type(a).__name__ for a in arrays}))
        raise FlowError(
            f"{_NAME}: no Array API namespace for {kinds} ({err}); pass xp= (for Keras "
            "tensors, flowcore.backends.keras.namespace.XP)"
        ) from None


def _device(a: Array) -> Any:
    import array_api_compat

    return array_api_compat.device(a)


def _generator(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        return np.random.default_rng(None if seed is None else int(seed))
    raise ArgumentError(
        f"{_NAME}.pick_mixture_component: seed must be an int, None or a "
        f"numpy.random.Generator, got {type(seed).__name__} {seed!r}"
    )

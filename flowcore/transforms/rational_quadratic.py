r"""Monotone spline kernels shared by the spline transforms: rational-quadratic (RQ) and linear,
written once against the array namespace ``xp``.

Every kernel is elementwise: ``x`` has any shape ``S`` and the spline's parameters have shape
``S + (n,)``, one spline per element, and the log-det returned is elementwise too (shape
``S``), for the caller to sum.

A rational-quadratic spline (Gregory and Delbourgo 1982; Durkan et al. 2019) on knots
:math:`(x_k, y_k)`, :math:`k = 0..K`, with derivatives :math:`d_k > 0` at the knots maps
:math:`x` in bin :math:`k` (width :math:`w_k`, height :math:`h_k`, slope
:math:`s_k = h_k/w_k`, :math:`\theta = (x - x_k)/w_k`) to

.. math::

    y = y_k + \frac{h_k\,(s_k \theta^2 + d_k\,\theta(1-\theta))}
                   {s_k + (d_{k+1} + d_k - 2 s_k)\,\theta(1-\theta)},

    \frac{dy}{dx} = \frac{s_k^2\,(d_{k+1}\theta^2 + 2 s_k\theta(1-\theta) + d_k(1-\theta)^2)}
                         {(s_k + (d_{k+1} + d_k - 2 s_k)\,\theta(1-\theta))^2},

and the inverse solves the quadratic for :math:`\theta` with the stable root
:math:`\theta = 2c / (-b - \sqrt{b^2 - 4ac})`. Both ways :math:`\theta` is clamped into
[0, 1], which rounding can leave next to a knot of tiny derivative (a negative numerator
and a NaN log-det otherwise).

No NaN or inf for inputs far outside the spline's domain, neither in the values, the
log-dets nor the gradients: an input is clipped into the domain before the spline arithmetic
and the tail is chosen with ``xp.where`` afterwards, so that the masked branch is finite too
(a masked NaN would still poison the gradient through ``where``).

The bin search counts the knots below the input (``sum(x >= knots) - 1``, as nflows' own
``searchsorted``), and the per-bin values are gathered with a one-hot ``where`` and ``sum``:
the Array API's ``searchsorted`` takes a one-dimensional sorted array only, not a sorted
axis per element, and ``take_along_axis`` is not in its 2023.12 version.

References: Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019;
nflows (github.com/bayesiains/nflows) ``unconstrained_rational_quadratic_spline``, whose
semantics :func:`unconstrained_rational_quadratic` reproduces; FrEIA master
(github.com/vislearn/FrEIA) ``FrEIA/modules/splines``, whose parametrisation
:func:`freia_knots` reproduces.
"""

from __future__ import annotations

import math

from ..errors import FlowError
from ..spec import Array, Namespace

__all__ = [
    "binned_linear",
    "binned_rational_quadratic",
    "freia_knots",
    "softmax",
    "softplus",
    "unconstrained_rational_quadratic",
]

DEFAULT_MIN_BIN_WIDTH = 1e-3
DEFAULT_MIN_BIN_HEIGHT = 1e-3
DEFAULT_MIN_DERIVATIVE = 1e-3
#: nflows' searchsorted moves the last knot up by this much, so the right bound is in a bin.
_NFLOWS_EPS = 1e-6
#: torch's softplus returns its input above this threshold.
_SOFTPLUS_THRESHOLD = 20.0


def softplus(xp: Namespace, a: Array) -> Array:
    r""":math:`\log(1 + e^a)`, as torch's ``softplus``: ``a`` itself above 20; no overflow."""
    large = a > _SOFTPLUS_THRESHOLD
    capped = xp.where(large, xp.zeros_like(a) + _SOFTPLUS_THRESHOLD, a)
    return xp.where(large, a, xp.log1p(xp.exp(capped)))


def softmax(xp: Namespace, a: Array) -> Array:
    """The softmax over the last axis (the maximum subtracted first)."""
    e = xp.exp(a - xp.max(a, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def _cumsum(xp: Namespace, a: Array) -> Array:
    return xp.cumulative_sum(a, axis=-1)


def _last(a: Array, start: int, stop: int | None = None) -> Array:
    """``a[..., start:stop]``."""
    return a[..., start:stop]


def _gather(xp: Namespace, onehot: Array, values: Array) -> Array:
    """The value of the selected bin: ``values[..., k]`` where ``onehot[..., k]``."""
    return xp.sum(xp.where(onehot, values, xp.zeros_like(values)), axis=-1)


def _unit(xp: Namespace, t: Array) -> Array:
    """``t`` clamped into [0, 1] with ``where``, so that the derivative is 1 on the bounds
    themselves (``clip``'s is 1/2 there in JAX)."""
    zero = xp.zeros_like(t)
    return xp.where(t > 1.0, zero + 1.0, xp.where(t < 0.0, zero, t))


def _rq_inside(
    xp: Namespace,
    x: Array,
    knot_x: Array,
    knot_y: Array,
    derivatives: Array,
    onehot: Array,
    inverse: bool,
) -> tuple[Array, Array]:
    """The RQ spline of ``x`` in the bins ``onehot`` selects (``x`` inside the domain):
    the output and the elementwise forward log-det."""
    widths = _last(knot_x, 1) - _last(knot_x, 0, -1)
    heights = _last(knot_y, 1) - _last(knot_y, 0, -1)
    xk = _gather(xp, onehot, _last(knot_x, 0, -1))
    yk = _gather(xp, onehot, _last(knot_y, 0, -1))
    w = _gather(xp, onehot, widths)
    h = _gather(xp, onehot, heights)
    s = _gather(xp, onehot, heights / widths)
    dk = _gather(xp, onehot, _last(derivatives, 0, -1))
    dkp = _gather(xp, onehot, _last(derivatives, 1))
    curvature = dk + dkp - 2.0 * s
    if inverse:
        dy = x - yk
        a = dy * curvature + h * (s - dk)
        b = h * dk - dy * curvature
        c = -s * dy
        # in [0, 1] but for rounding, which near a knot of tiny derivative would make the
        # numerator below negative (NaN log-det): clipped back
        theta = _unit(xp, (2.0 * c) / (-b - xp.sqrt(b * b - 4.0 * a * c)))
        t1 = theta * (1.0 - theta)
        denominator = s + curvature * t1
        out = theta * w + xk
    else:
        theta = _unit(xp, (x - xk) / w)  # rounding, as in the inverse
        t1 = theta * (1.0 - theta)
        denominator = s + curvature * t1
        out = yk + h * (s * theta * theta + dk * t1) / denominator
    numerator = s * s * (dkp * theta * theta + 2.0 * s * t1 + dk * (1.0 - theta) * (1.0 - theta))
    return out, xp.log(numerator) - 2.0 * xp.log(denominator)


def unconstrained_rational_quadratic(
    xp: Namespace,
    x: Array,
    unnormalized_widths: Array,
    unnormalized_heights: Array,
    unnormalized_derivatives: Array,
    *,
    inverse: bool,
    tail_bound: float,
    min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
    min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
    min_derivative: float = DEFAULT_MIN_DERIVATIVE,
) -> tuple[Array, Array]:
    r"""nflows' ``unconstrained_rational_quadratic_spline`` with ``tails="linear"``.

    ``K`` bins on :math:`[-B, B]` (``tail_bound`` :math:`B`), the identity outside. Widths
    :math:`w = m_w + (1 - K m_w)\,\mathrm{softmax}(u_w)` (times :math:`2B`), heights
    likewise, the :math:`K-1` interior derivatives :math:`m_d + \mathrm{softplus}(u_d)`, the
    two boundary ones 1 (so the tails join with slope 1).

    ``x`` has shape ``S``; ``unnormalized_widths`` and ``unnormalized_heights`` ``S + (K,)``,
    ``unnormalized_derivatives`` ``S + (K - 1,)``. Returns ``(y, log_abs_det)``, both of
    shape ``S``: the forward map and :math:`\log|dy/dx|`, or with ``inverse`` the inverse
    map and :math:`-\log|dy/dx|` at the result (nflows' convention).

    An input on a knot falls into the bin to its right (nflows' ``searchsorted``); the
    boundary derivatives are exactly 1 (nflows' softplus of its constant gives 1 to an ulp).
    """
    bins = int(unnormalized_widths.shape[-1])
    if bins < 1:
        raise FlowError(f"rational-quadratic spline: need at least one bin, got {bins}")
    if int(unnormalized_heights.shape[-1]) != bins or (
        int(unnormalized_derivatives.shape[-1]) != bins - 1
    ):
        raise FlowError(
            "rational-quadratic spline: widths and heights need K values and derivatives "
            f"K - 1 on the last axis, got {unnormalized_widths.shape[-1]}, "
            f"{unnormalized_heights.shape[-1]} and {unnormalized_derivatives.shape[-1]}"
        )
    for name, m in (("min_bin_width", min_bin_width), ("min_bin_height", min_bin_height)):
        if m * bins > 1.0:
            raise FlowError(
                f"rational-quadratic spline: {name}={m} is too large for {bins} bins "
                f"({name} * bins must be <= 1)"
            )
    bound = float(tail_bound)
    inside = (x >= -bound) & (x <= bound)
    xc = _clamp(xp, x, -bound, bound)

    edge = xp.zeros_like(xc)[..., None]  # (..., 1) zeros

    def knots(unnormalized: Array, minimum: float) -> Array:
        sizes = minimum + (1.0 - minimum * bins) * softmax(xp, unnormalized)
        cum = (2.0 * bound) * _last(_cumsum(xp, sizes), 0, bins - 1) - bound
        return xp.concat([edge - bound, cum, edge + bound], axis=-1)

    knot_x = knots(unnormalized_widths, min_bin_width)
    knot_y = knots(unnormalized_heights, min_bin_height)
    interior = min_derivative + softplus(xp, unnormalized_derivatives)
    derivatives = xp.concat([edge + 1.0, interior, edge + 1.0], axis=-1)

    locations = knot_y if inverse else knot_x
    upper = xp.concat([_last(locations, 1, bins), edge + (bound + _NFLOWS_EPS)], axis=-1)
    xe = xc[..., None]
    onehot = (xe >= _last(locations, 0, bins)) & (xe < upper)
    y, log_det = _rq_inside(xp, xc, knot_x, knot_y, derivatives, onehot, inverse)
    y = xp.where(inside, y, x)
    log_det = xp.where(inside, -log_det if inverse else log_det, xp.zeros_like(log_det))
    return y, log_det


# -- FrEIA master's binned splines ---------------------------------------------------------


def freia_knots(
    xp: Namespace,
    raw: dict[str, Array],
    *,
    bins: int,
    min_bin_sizes: tuple[float, float],
    default_domain: tuple[float, float, float, float],
    identity_tails: bool,
    domain_clamping: float | None,
    derivatives: bool,
) -> tuple[Array, Array, Array | None]:
    r"""FrEIA master's ``BinnedSplineBase.constrain_parameters`` (and, with
    ``derivatives``, ``RationalQuadraticSpline``'s): the knots and knot derivatives from the
    raw (network) values.

    ``raw`` holds ``"widths"``, ``"heights"`` (shape ``S + (K,)``), ``"left"`` and
    ``"bottom"`` (``S + (1,)``; without ``identity_tails``) or ``"total_width"``
    (``S + (1,)``; with), and ``"deltas"`` (``S + (K - 1,)``; with ``derivatives``).

    Without ``identity_tails``, with domain :math:`(l_0, r_0, b_0, t_0)` and minimum sizes
    :math:`(m_x, m_y)`: :math:`l = u_l + l_0`, :math:`w_k = m_x +
    \mathrm{softplus}(u_{w,k} + \log(e^{(r_0 - l_0)/K - m_x} - 1))` (raw zeros give the
    default domain), heights likewise; with ``domain_clamping`` :math:`D` the widths and
    :math:`l` are rescaled by :math:`D\tanh(W/D)/W`, :math:`W = \sum_k w_k` (heights and
    :math:`b` by theirs). With ``identity_tails``: :math:`W = (r_0 - l_0)\,
    \mathrm{softplus}(u_W + \log(e - 1))` (clamped the same way), :math:`l = b = -W/2`,
    :math:`w = W\,\mathrm{softmax}(u_w)`, :math:`h = W\,\mathrm{softmax}(u_h)` (the minimum
    sizes are not used: FrEIA's behaviour). Derivatives: interior
    :math:`\mathrm{softplus}(u_d + \log(e - 1))`, both boundary ones the tails' slope
    :math:`\sum h / \sum w`.

    Returns ``(knot_x, knot_y, derivatives)``, shapes ``S + (K + 1,)`` (derivatives None
    unless asked for).
    """

    def clamp(v: Array) -> Array:
        assert domain_clamping is not None
        return domain_clamping * xp.tanh(v / domain_clamping)

    if identity_tails:
        total = (default_domain[1] - default_domain[0]) * softplus(
            xp, raw["total_width"] + math.log(math.e - 1.0)
        )
        if domain_clamping is not None:
            total = clamp(total)
        left = bottom = -total / 2.0
        widths = total * softmax(xp, raw["widths"])
        heights = total * softmax(xp, raw["heights"])
    else:
        left = raw["left"] + default_domain[0]
        bottom = raw["bottom"] + default_domain[2]
        x_shift = math.log(
            math.expm1((default_domain[1] - default_domain[0]) / bins - min_bin_sizes[0])
        )
        y_shift = math.log(
            math.expm1((default_domain[3] - default_domain[2]) / bins - min_bin_sizes[1])
        )
        widths = min_bin_sizes[0] + softplus(xp, raw["widths"] + x_shift)
        heights = min_bin_sizes[1] + softplus(xp, raw["heights"] + y_shift)
        if domain_clamping is not None:
            total_w = xp.sum(widths, axis=-1, keepdims=True)
            total_h = xp.sum(heights, axis=-1, keepdims=True)
            resize_w = clamp(total_w) / total_w
            resize_h = clamp(total_h) / total_h
            widths, left = widths * resize_w, left * resize_w
            heights, bottom = heights * resize_h, bottom * resize_h
    knot_x = xp.concat([left, left + _cumsum(xp, widths)], axis=-1)
    knot_y = xp.concat([bottom, bottom + _cumsum(xp, heights)], axis=-1)
    if not derivatives:
        return knot_x, knot_y, None
    slope = xp.sum(heights, axis=-1, keepdims=True) / xp.sum(widths, axis=-1, keepdims=True)
    interior = softplus(xp, raw["deltas"] + math.log(math.e - 1.0))
    return knot_x, knot_y, xp.concat([slope, interior, slope], axis=-1)


def _clamp(xp: Namespace, x: Array, low: Array | float, high: Array | float) -> Array:
    """``x`` clipped into ``[low, high]`` with ``where``: an input on a bound keeps the
    derivative 1 (``jnp.clip``, a max and a min, gives 1/2 there), one outside gets 0."""
    zero = xp.zeros_like(x)
    return xp.where(x < low, zero + low, xp.where(x > high, zero + high, x))


def _freia_bins(xp: Namespace, x: Array, knots: Array) -> tuple[Array, Array, Array, Array, Array]:
    """FrEIA's binning: inside is ``knots[0] < x <= knots[K]`` and an input on a knot falls
    into the bin to its left; ``x`` is clipped into the domain first (the clipped lower edge
    taking the first bin). Returns ``(inside, clipped x, onehot, tail slope, tail shift)``
    where the tails are computed by the caller."""
    bins = int(knots.shape[-1]) - 1
    first, last = _last(knots, 0, 1), _last(knots, bins)
    inside = (x > first[..., 0]) & (x <= last[..., 0])
    xc = _clamp(xp, x, first[..., 0], last[..., 0])
    xe = xc[..., None]
    lower = _last(knots, 0, bins)
    # the first bin also takes the lower edge itself (the clipped lower tail)
    above = xp.concat([xe >= first, xe > _last(lower, 1)], axis=-1)
    onehot = above & (xe <= _last(knots, 1))
    return inside, xc, onehot, first[..., 0], last[..., 0]


def _affine_tails(
    xp: Namespace, knot_x: Array, knot_y: Array, freia_widths_heights: tuple[Array, Array]
) -> tuple[Array, Array]:
    """FrEIA's tail map ``y = scale x + shift``: ``scale = sum(heights) / sum(widths)``,
    ``shift = bottom - scale * left``."""
    widths, heights = freia_widths_heights
    scale = xp.sum(heights, axis=-1) / xp.sum(widths, axis=-1)
    return scale, knot_y[..., 0] - scale * knot_x[..., 0]


def _widths_heights(knot_x: Array, knot_y: Array) -> tuple[Array, Array]:
    return _last(knot_x, 1) - _last(knot_x, 0, -1), _last(knot_y, 1) - _last(knot_y, 0, -1)


def binned_rational_quadratic(
    xp: Namespace,
    x: Array,
    knot_x: Array,
    knot_y: Array,
    derivatives: Array,
    *,
    inverse: bool,
) -> tuple[Array, Array]:
    r"""FrEIA master's binned RQ spline with affine tails.

    ``x`` of shape ``S``, knots and knot derivatives ``S + (K + 1,)`` (increasing knots).
    Inside :math:`(x_0, x_K]` the RQ spline; outside the affine map
    :math:`y = \sigma x + (y_0 - \sigma x_0)`, :math:`\sigma = \sum h / \sum w` (the identity
    when the knots are those of ``identity_tails``). Returns the output and the elementwise
    log-det: forward :math:`\log|dy/dx|`, with ``inverse`` minus it at the result.
    """
    return _binned(xp, x, knot_x, knot_y, derivatives, inverse)


def binned_linear(
    xp: Namespace, x: Array, knot_x: Array, knot_y: Array, *, inverse: bool
) -> tuple[Array, Array]:
    r"""FrEIA master's binned linear spline (straight lines between the knots) with the
    affine tails of :func:`binned_rational_quadratic`; log-det :math:`\log h_k - \log w_k`
    inside."""
    return _binned(xp, x, knot_x, knot_y, None, inverse)


def _binned(
    xp: Namespace,
    x: Array,
    knot_x: Array,
    knot_y: Array,
    derivatives: Array | None,
    inverse: bool,
) -> tuple[Array, Array]:
    widths, heights = _widths_heights(knot_x, knot_y)
    scale, shift = _affine_tails(xp, knot_x, knot_y, (widths, heights))
    inside, xc, onehot, _, _ = _freia_bins(xp, x, knot_y if inverse else knot_x)
    if derivatives is None:
        xk = _gather(xp, onehot, _last(knot_x, 0, -1))
        yk = _gather(xp, onehot, _last(knot_y, 0, -1))
        w = _gather(xp, onehot, widths)
        h = _gather(xp, onehot, heights)
        s = h / w
        b = yk - s * xk
        y_in = (xc - b) / s if inverse else s * xc + b
        ld_in = xp.log(h) - xp.log(w)
    else:
        y_in, ld_in = _rq_inside(xp, xc, knot_x, knot_y, derivatives, onehot, inverse)
    y_out = (x - shift) / scale if inverse else scale * x + shift
    y = xp.where(inside, y_in, y_out)
    log_det = xp.where(inside, ld_in, xp.log(scale) + xp.zeros_like(ld_in))
    return y, (-log_det if inverse else log_det)

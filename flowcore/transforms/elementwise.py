r"""Elementwise maps: the sigmoid, learned scalings, learned leaky slopes, the logit.

Each acts on every element of its input separately, so its Jacobian is diagonal and the
log-det is the sum of the log-derivatives over every non-batch axis. None takes a condition.

- :class:`InvertibleSigmoid`: :math:`y = \sigma(x)`, inverse the logit;
- :class:`LearnedElementwiseScaling`: :math:`y = x\,e^{s}` with one learned :math:`s` per
  element;
- :class:`InvAutoAct`, :class:`InvAutoActFixed`, :class:`InvAutoActTwoSided`: leaky-ReLU-like
  maps with learned (or fixed) per-channel slopes;
- :class:`Logit`: :math:`y = \mathrm{logit}(\alpha + (1 - 2\alpha)\,x)` on :math:`[0, 1]`,
  the dequantisation preprocessing of image flows.

The sigmoid is computed as :math:`\sigma(x) = e^{-\mathrm{softplus}(-x)}` with
:math:`\mathrm{softplus}(u) = \mathrm{logaddexp}(0, u)`, and its log-derivative as
:math:`\log\sigma'(x) = -\mathrm{softplus}(x) - \mathrm{softplus}(-x)`: neither ever takes
``log(0)`` or divides ``inf`` by ``inf``, so outputs, log-dets and gradients stay finite at
any finite :math:`x` (:math:`|x| = 10^4` included), where ``1 / (1 + exp(-x))`` and
``log(1 / ((1 + e^x)(1 + e^{-x})))`` give ``-inf`` log-dets and NaN gradients once
:math:`e^{|x|}` overflows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Annotated, Any

from .. import initializers as init
from ..errors import ShapeError
from ..options import POSITIVE, OptionError, Range
from ..spec import (
    Array,
    Context,
    Namespace,
    ParamSpec,
    Shape,
    Signature,
    SimpleTransform,
    sum_per_sample,
)

__all__ = [
    "InvAutoAct",
    "InvAutoActFixed",
    "InvAutoActTwoSided",
    "InvertibleSigmoid",
    "LearnedElementwiseScaling",
    "Logit",
]

#: The offset of :class:`Logit`: ``0 <= alpha < 0.5``.
ALPHA = Range(0.0, 0.5, high_open=True)


def _no_conditions(label: str, conditions: Sequence[Shape]) -> None:
    if conditions:
        raise ShapeError(
            f"{label}: takes no conditions, got {len(conditions)} of shape "
            f"{', '.join(str(tuple(c)) for c in conditions)}"
        )


def _softplus(xp: Namespace, x: Array) -> Array:
    r""":math:`\log(1 + e^x)`, exact and finite for every finite ``x``."""
    return xp.logaddexp(x, xp.zeros_like(x))


def _sigmoid(xp: Namespace, x: Array) -> Array:
    r""":math:`\sigma(x) = e^{-\mathrm{softplus}(-x)}`: no overflow, finite gradients."""
    return xp.exp(-_softplus(xp, -x))


def _log_sigmoid_derivative(xp: Namespace, x: Array) -> Array:
    r""":math:`\log\sigma'(x) = \log\sigma(x) + \log\sigma(-x)`, elementwise."""
    return -(_softplus(xp, x) + _softplus(xp, -x))


def _logit(xp: Namespace, y: Array) -> Array:
    r""":math:`\log y - \log(1 - y)` for ``y`` in (0, 1)."""
    return xp.log(y) - xp.log1p(-y)


def _size(x: Array) -> int:
    """Elements per sample (a list, not a generator: torch.compile traces it)."""
    return math.prod([int(d) for d in x.shape[1:]])


# -- InvertibleSigmoid --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InvertibleSigmoid(SimpleTransform):
    r"""The logistic sigmoid, elementwise; the inverse is the logit.

    .. math::

        y = \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad
        x = \sigma^{-1}(y) = \log y - \log(1 - y)

    Log-det, summed over every non-batch axis (vectors and images alike):

    .. math::

        \log|\det \partial y / \partial x| = \sum_i \log \sigma'(x_i)
        = -\sum_i \big(\mathrm{softplus}(x_i) + \mathrm{softplus}(-x_i)\big)

    forward, and :math:`-\sum_i (\log y_i + \log(1 - y_i))` inverse. The forward direction
    takes any real input; the inverse one takes :math:`y \in (0, 1)` (outside it the logit is
    undefined and gives NaN; at 0 and 1 it is infinite). Computed with softplus identities
    (see :mod:`flowcore.transforms.elementwise`): finite outputs, log-dets and gradients at
    any finite forward input. In float32 :math:`\sigma(x)` rounds to 1 for
    :math:`x \gtrsim 17` (to 0 below about -104), so such inputs do not round-trip.

    No parameters; no conditions.

    FrEIA's ``InvertibleSigmoid`` sums its log-det over axis 1 only, so on an image
    ``(C, H, W)`` it returns a ``(batch, H, W)`` array of per-pixel sums (FrEIA PRs
    #176/#177); flowcore sums over every axis. FrEIA also computes
    ``log(1 / ((1 + e^x)(1 + e^{-x})))``, which is ``-inf`` with NaN gradients for
    :math:`|x| > 709.78` in float64 (:math:`|x| > 88.72` in float32), and whose gradient
    underflows to 0 a little before; flowcore's log-det and its gradient stay exact there.

    References: Ardizzone et al., FrEIA (github.com/vislearn/FrEIA),
    ``modules.InvertibleSigmoid``.
    """

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        _no_conditions(self.label, conditions)
        return tuple(shape)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        xp = ctx.xp
        y = _sigmoid(xp, x)
        if not ctx.jac:
            return y, 0.0
        return y, sum_per_sample(xp, _log_sigmoid_derivative(xp, x))

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        xp = ctx.xp
        x = _logit(xp, y)
        if not ctx.jac:
            return x, 0.0
        return x, -sum_per_sample(xp, xp.log(y) + xp.log1p(-y))


# -- LearnedElementwiseScaling ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LearnedElementwiseScaling(SimpleTransform):
    r"""Each element scaled by its own learned positive factor.

    .. math::

        y = x \odot e^{s}, \qquad x = y \odot e^{-s}

    with :math:`s` of shape ``(1, *input_shape)``: one log-scale per element, not per channel.
    Log-det :math:`\sum s` forward and :math:`-\sum s` inverse (a constant, broadcast to
    ``(batch,)``).

    Parameters: ``s`` (trainable, shape ``(1, *input_shape)``, FrEIA's name and layout, so
    a FrEIA state dict's ``s`` ports as it is), initialised to :math:`\log`
    ``init_scale`` (``init_scale > 0`` is the initial factor :math:`e^{s}`). No conditions.

    FrEIA behaviour not reproduced: FrEIA's inverse returns :math:`+\sum s` (the forward
    log-det, with the wrong sign), and FrEIA 0.2 initialises ``s`` to
    ``log(init_scale) * zeros``, i.e. always to 0 (scale 1), whatever ``init_scale`` is
    (FrEIA master uses ``ones``, as flowcore does).

    References: Ardizzone et al., FrEIA (github.com/vislearn/FrEIA),
    ``modules.LearnedElementwiseScaling``.
    """

    init_scale: Annotated[float, POSITIVE] = 1.0

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        _no_conditions(self.label, conditions)
        return tuple(shape)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        shape = (1, *sig.inputs[0])
        return (ParamSpec("s", shape, init.constant(shape, math.log(self.init_scale))),)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        xp, s = ctx.xp, ctx.params["s"]
        return x * xp.exp(s), xp.sum(s) if ctx.jac else 0.0

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        xp, s = ctx.xp, ctx.params["s"]
        return y * xp.exp(-s), -xp.sum(s) if ctx.jac else 0.0


# -- InvAutoAct and its variants ----------------------------------------------------------


def _per_channel(label: str, shape: Shape, conditions: Sequence[Shape]) -> Shape:
    _no_conditions(label, conditions)
    if len(shape) < 1 or shape[0] < 1:
        raise ShapeError(f"{label}: input must be (C,) or (C, *spatial), got {tuple(shape)}")
    return (1, shape[0]) + (1,) * (len(shape) - 1)


def _scale_by_log_slope(ctx: Context, x: Array, log_slope: Array, rev: bool) -> tuple[Array, Any]:
    """``x * exp(±log_slope)`` with the log-det ``±sum(log_slope)`` per sample."""
    xp = ctx.xp
    if rev:
        log_slope = -log_slope
    y = x * xp.exp(log_slope)
    return y, sum_per_sample(xp, log_slope) if ctx.jac else 0.0


@dataclasses.dataclass(frozen=True)
class InvAutoAct(SimpleTransform):
    r"""A leaky-ReLU-like activation with learned, symmetric per-channel slopes.

    .. math::

        y = x\, e^{\alpha\, \mathrm{sign}(x)} =
        \begin{cases} x\, e^{\alpha} & x > 0 \\ x\, e^{-\alpha} & x < 0 \\ 0 & x = 0
        \end{cases}, \qquad x = y\, e^{-\alpha\, \mathrm{sign}(y)}

    with one :math:`\alpha` per channel (element for vectors), broadcast over the positions
    of an image. The slopes are positive, so :math:`\mathrm{sign}(y) = \mathrm{sign}(x)`.

    Log-det: :math:`\sum_i \alpha_{c(i)} \mathrm{sign}(x_i)` over every non-batch axis
    forward, :math:`-\sum_i \alpha_{c(i)} \mathrm{sign}(y_i)` inverse. At the kink
    :math:`x = 0` the map is not differentiable; there :math:`\mathrm{sign}(0) = 0`
    contributes :math:`0`, the mean of the one-sided log-slopes :math:`\pm\alpha` (as in
    FrEIA), which is also the derivative autodiff gives there, and the inverse at
    :math:`y = 0` contributes 0 too, so the log-dets of the two directions still cancel.

    Parameters: ``alpha`` (shape ``(1, C, 1, ...)``, FrEIA's name and layout), initialised
    to :math:`\log` ``slope_init`` (``slope_init > 0`` is the initial positive slope
    :math:`e^{\alpha}`); trainable unless ``learnable=False`` (then a buffer). No
    conditions.

    References: Ardizzone et al., FrEIA (github.com/vislearn/FrEIA),
    ``modules.InvAutoAct``; Teng, Choromanska & Bojarski, "Invertible Autoencoder for
    Domain Adaptation", 2018 (arXiv:1802.06869).
    """

    slope_init: Annotated[float, POSITIVE] = 2.0
    learnable: bool = True

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        _per_channel(self.label, shape, conditions)
        return tuple(shape)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        shape = _per_channel(self.label, sig.inputs[0], ())
        value = init.constant(shape, math.log(self.slope_init))
        return (ParamSpec("alpha", shape, value, trainable=self.learnable),)

    def _log_slope(self, ctx: Context, x: Array) -> Array:
        return ctx.params["alpha"] * ctx.xp.sign(x)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return _scale_by_log_slope(ctx, x, self._log_slope(ctx, x), rev=False)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return _scale_by_log_slope(ctx, y, self._log_slope(ctx, y), rev=True)


@dataclasses.dataclass(frozen=True)
class InvAutoActFixed(InvAutoAct):
    r""":class:`InvAutoAct` with fixed slopes: ``alpha`` is a buffer, not trained.

    The same map and log-det as :class:`InvAutoAct` (see there), with
    :math:`e^{\alpha} =` ``slope_init`` for good. ``learnable`` must stay False.

    FrEIA 0.2's ``InvAutoActFixed`` is a deprecated alias of ``InvAutoAct`` that only warns
    ("please use InvAutoAct with the learnable=False argument") and stays learnable unless
    given ``learnable=False``; flowcore's fixes the slopes, as the name and that warning say
    (and as FrEIA's original ``InvAutoActFixed`` did). The numbers are the same either way.

    References: Ardizzone et al., FrEIA (github.com/vislearn/FrEIA),
    ``modules.InvAutoActFixed``.
    """

    learnable: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.learnable:
            raise OptionError(
                f"{self.label}: option learnable must be False (fixed slopes; use InvAutoAct "
                f"for learned ones), got {self.learnable!r}"
            )


@dataclasses.dataclass(frozen=True)
class InvAutoActTwoSided(SimpleTransform):
    r"""A leaky-ReLU-like activation with learned per-channel slopes on each side.

    .. math::

        y = x\, e^{\ell(x)}, \qquad
        \ell(x) = \alpha_+ + \tfrac12 (\alpha_- - \alpha_+)(1 - \mathrm{sign}(x)) =
        \begin{cases} \alpha_+ & x > 0 \\ \alpha_- & x < 0 \\
        \tfrac12(\alpha_+ + \alpha_-) & x = 0 \end{cases}

    and :math:`x = y\, e^{-\ell(y)}` (the slopes are positive, so
    :math:`\mathrm{sign}(y) = \mathrm{sign}(x)`), with one :math:`\alpha_\pm` per channel
    (element for vectors), broadcast over the positions of an image.

    Log-det: :math:`\sum_i \ell(x_i)` over every non-batch axis forward,
    :math:`-\sum_i \ell(y_i)` inverse. At the kink :math:`x = 0` the log-slope is the mean
    :math:`\tfrac12(\alpha_+ + \alpha_-)` of the two one-sided ones (FrEIA's formula), which
    is also the derivative autodiff gives there, and both directions use it, so their
    log-dets cancel.

    Parameters: ``alpha_pos`` and ``alpha_neg`` (shape ``(1, C, 1, ...)``, FrEIA's names and
    layout), initialised to :math:`\log` ``init_pos`` and :math:`\log` ``init_neg`` (both
    ``> 0``: the initial slopes :math:`e^{\alpha_\pm}`); trainable unless
    ``learnable=False`` (then buffers). No conditions.

    References: Ardizzone et al., FrEIA (github.com/vislearn/FrEIA),
    ``modules.InvAutoActTwoSided``.
    """

    init_pos: Annotated[float, POSITIVE] = 2.0
    init_neg: Annotated[float, POSITIVE] = 0.5
    learnable: bool = True

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        _per_channel(self.label, shape, conditions)
        return tuple(shape)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        shape = _per_channel(self.label, sig.inputs[0], ())
        return (
            ParamSpec(
                "alpha_pos",
                shape,
                init.constant(shape, math.log(self.init_pos)),
                trainable=self.learnable,
            ),
            ParamSpec(
                "alpha_neg",
                shape,
                init.constant(shape, math.log(self.init_neg)),
                trainable=self.learnable,
            ),
        )

    def _log_slope(self, ctx: Context, x: Array) -> Array:
        pos, neg = ctx.params["alpha_pos"], ctx.params["alpha_neg"]
        return pos + 0.5 * (neg - pos) * (1.0 - ctx.xp.sign(x))

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return _scale_by_log_slope(ctx, x, self._log_slope(ctx, x), rev=False)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return _scale_by_log_slope(ctx, y, self._log_slope(ctx, y), rev=True)


# -- Logit --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Logit(SimpleTransform):
    r"""The logit with a dequantisation offset: image data in :math:`[0, 1]` to the real line.

    .. math::

        u = \alpha + (1 - 2\alpha)\, x, \qquad y = \mathrm{logit}(u) = \log u - \log(1 - u),
        \qquad x = \frac{\sigma(y) - \alpha}{1 - 2\alpha}

    Input domain: :math:`x \in [0, 1]` when :math:`\alpha > 0` (:math:`u \in [\alpha,
    1 - \alpha]`, so the logit stays finite at 0 and 1), :math:`x \in (0, 1)` when
    :math:`\alpha = 0`; outside it the logit is undefined (NaN). Dequantised pixel values
    :math:`(k + \text{uniform noise}) / 256` lie in it. The inverse takes any real
    :math:`y`.

    Log-det, summed over every non-batch axis (:math:`n` elements per sample):

    .. math::

        \log|\det \partial y / \partial x| = n \log(1 - 2\alpha)
        - \sum_i \big(\log u_i + \log(1 - u_i)\big)

    forward, and :math:`-n \log(1 - 2\alpha) - \sum_i (\mathrm{softplus}(y_i) +
    \mathrm{softplus}(-y_i))` inverse. :math:`1 - u` is computed as
    :math:`\alpha + (1 - 2\alpha)(1 - x)`, exact near :math:`x = 1`; the inverse uses the
    softplus form of the sigmoid (finite outputs, log-dets and gradients for any finite
    :math:`y`).

    Options: ``alpha`` with :math:`0 \le \alpha < 1/2` (default 0.05, RealNVP's value).
    No parameters; no conditions.

    RealNVP writes its offset as :math:`\alpha + (1 - \alpha) x`; this transform uses the
    symmetric :math:`\alpha + (1 - 2\alpha) x`, which maps :math:`[0, 1]` onto
    :math:`[\alpha, 1 - \alpha]` and so commutes with :math:`x \mapsto 1 - x`
    (:math:`y \mapsto -y`). FrEIA has no such transform.

    References: Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR
    2017 (arXiv:1605.08803), §4.1; Papamakarios, Pavlakou & Murray, "Masked Autoregressive
    Flow for Density Estimation", NeurIPS 2017 (arXiv:1705.07057).
    """

    alpha: Annotated[float, ALPHA] = 0.05

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        _no_conditions(self.label, conditions)
        return tuple(shape)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        xp, a = ctx.xp, self.alpha
        u = a + (1.0 - 2.0 * a) * x
        v = a + (1.0 - 2.0 * a) * (1.0 - x)  # 1 - u, without the cancellation near x = 1
        log_u, log_v = xp.log(u), xp.log(v)
        y = log_u - log_v
        if not ctx.jac:
            return y, 0.0
        return y, _size(x) * math.log1p(-2.0 * a) - sum_per_sample(xp, log_u + log_v)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        xp, a = ctx.xp, self.alpha
        x = (_sigmoid(xp, y) - a) / (1.0 - 2.0 * a)
        if not ctx.jac:
            return x, 0.0
        log_det = sum_per_sample(xp, _log_sigmoid_derivative(xp, y))
        return x, log_det - _size(y) * math.log1p(-2.0 * a)

r"""Autoregressive flows: the MADE subnet and MaskedAutoregressive (MAF, NSF-AR, IAF).

An autoregressive transform maps a vector :math:`x \in \mathbb{R}^D` elementwise,
:math:`y_i = \tau(x_i; \theta_i)`, where the transformer's coefficients :math:`\theta_i`
depend only on the variables that come before :math:`i` in an ordering :math:`\pi` (and on
the conditions): :math:`\theta_i = \theta_i(x_{\{j:\ \pi(j) < \pi(i)\}}, c)`. Its Jacobian
is triangular in that ordering, so its log-det is :math:`\sum_i \log|\partial_{x_i}
\tau(x_i; \theta_i)|`. One masked network (:class:`MADE`) gives every :math:`\theta_i` in
one pass; the other direction needs :math:`D` sequential passes.

References: Germain et al., "MADE: Masked Autoencoder for Distribution Estimation", ICML
2015; Papamakarios et al., "Masked Autoregressive Flow for Density Estimation", NeurIPS
2017; Kingma et al., "Improved Variational Inference with Inverse Autoregressive Flow",
NeurIPS 2016; Durkan et al., "Neural Spline Flows", NeurIPS 2019.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np

from .. import initializers as init
from ..errors import ShapeError
from ..options import NON_NEGATIVE, POSITIVE, OptionError, Range
from ..spec import (
    Array,
    Child,
    Context,
    Namespace,
    ParamSpec,
    Shape,
    Signature,
    SimpleTransform,
    Subnet,
    sum_per_sample,
)
from ..subnets import Activation, activate
from . import pieces
from .rational_quadratic import softplus, unconstrained_rational_quadratic

__all__ = ["MADE", "MaskedAutoregressive", "made_degrees"]

Order = Literal["natural", "reversed", "random"]
Transformer = Literal["affine", "rational_quadratic"]
AffineScale = Literal["softplus", "exp"]
#: A seed NumPy's ``default_rng`` takes.
SEED = Range(0, 2**63 - 1)
#: The minimum bin width, height and derivative: in (0, 1).
FRACTION = Range(0, 1, low_open=True, high_open=True)


def hidden_degrees(width: int, features: int, conditional: bool = False) -> np.ndarray:
    r"""Degrees of a hidden layer of ``width`` units for ``features`` inputs :math:`D`.

    Without conditions unit :math:`k` has degree :math:`1 + (k \bmod (D - 1))` (0 for every
    unit when :math:`D = 1`), nflows' deterministic rule; with conditions :math:`k \bmod D`,
    so that units of degree 0 (which see the conditions only) feed the first variable too,
    which zuko's MaskedMLP amounts to. In both, the degrees equal zuko's."""
    if conditional:
        return np.arange(width) % features
    return np.arange(width) % max(1, features - 1) + min(1, features - 1)


def made_degrees(
    order: np.ndarray, hidden: Sequence[int], multiplier: int, conditional: bool = False
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The degrees of a MADE (NumPy, for tests and inspection): input degrees ``order + 1``,
    each hidden layer's (:func:`hidden_degrees`) and the outputs' (``order + 1`` of output
    ``i // multiplier``)."""
    order = np.asarray(order, dtype=np.int64)
    return (
        order + 1,
        [hidden_degrees(h, order.shape[0], conditional) for h in hidden],
        np.repeat(order + 1, multiplier),
    )


@dataclasses.dataclass(frozen=True)
class MADE(Subnet):
    r"""A masked autoencoder (Germain et al. 2015): an MLP whose output block :math:`i`
    depends only on the inputs that come before input :math:`i` in an ordering.

    Input :math:`j` has degree :math:`m_0(j) = \pi(j) + 1`, where :math:`\pi` is the
    ``order`` (``"natural"`` :math:`\pi(j) = j`, ``"reversed"`` :math:`D - 1 - j`, or
    ``"random"``: a permutation drawn from the build seed, or from
    ``numpy.random.default_rng(seed)`` if ``seed`` is given). Hidden unit :math:`k` of every
    layer has degree :math:`1 + (k \bmod (D-1))` (nflows' rule) without conditions and
    :math:`k \bmod D` with them (:func:`hidden_degrees`; degree-0 units see only the
    conditions, so that the first variable is conditioned too, which nflows' is not),
    and output :math:`o` (parameter :math:`o \bmod M` of variable :math:`\lfloor o/M
    \rfloor`, ``M`` the output multiplier the parent asks for: it declares ``D * M``
    outputs) has the degree of its variable. Masks are derived from the degrees:
    :math:`M^{(l)}_{kj} = [m_l(k) \ge m_{l-1}(j)]` for hidden layers and
    :math:`[m_{out}(o) > m_L(j)]` for the output layer, so that a path from input :math:`j`
    to output :math:`o` exists only if :math:`\pi(j) < \pi(\lfloor o/M \rfloor)`. The
    last ``conditions`` inputs are conditions: connected to every unit of the first layer
    (the autoregressive transform sets this count; it concatenates the conditions to
    :math:`x`).

    :math:`h_0 = (x, c)`, :math:`h_l = \sigma(h_{l-1} (W_l \odot M_l)^\top + b_l)`, the
    output layer without activation.

    Parameters (the canonical layout): ``weight_l`` (out, in) and ``bias_l`` (out,) for
    layers ``l = 0 .. len(hidden)``, dense, with PyTorch's default initialisation (the last
    layer zero if ``zero_init_last``); buffers ``order`` (D,) int64 (a permutation: the
    ordering, ``set_params`` refuses any other) and ``degrees_l`` (width,) int64 for hidden
    layer ``l = 1 .. len(hidden)``. The masks are computed from these buffers in each call,
    never stored: whatever integers a checkpoint holds in ``degrees_l`` the net stays
    autoregressive, and the ordering travels with the weights.

    References: Germain et al., "MADE: Masked Autoencoder for Distribution Estimation",
    ICML 2015; nflows (github.com/bayesiains/nflows), ``transforms/made.py``.
    """

    hidden: tuple[Annotated[int, POSITIVE], ...] = (64, 64)
    order: Order = "natural"
    seed: Annotated[int, SEED] | None = None
    activation: Activation = "relu"
    negative_slope: float = 0.01
    zero_init_last: bool = False
    #: The number of trailing inputs that are conditions (set by the parent transform).
    conditions: Annotated[int, NON_NEGATIVE] = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seed is not None and self.order != "random":
            raise OptionError(
                f"{self.label}: option seed is used only with order='random', got "
                f"seed={self.seed} with order={self.order!r}"
            )

    def _features(self, in_shape: Shape) -> int:
        return in_shape[0] - self.conditions

    def validate(self, in_shape: Shape, out_shape: Shape) -> None:
        if len(in_shape) != 1 or len(out_shape) != 1:
            raise ShapeError(
                f"{self.label}: needs 1-D features, got input {in_shape} and output {out_shape}"
            )
        features = self._features(in_shape)
        if features < 1:
            raise ShapeError(
                f"{self.label}: input {in_shape} has no features besides its "
                f"{self.conditions} condition inputs"
            )
        if out_shape[0] % features:
            raise ShapeError(
                f"{self.label}: output size {out_shape[0]} must be a multiple of the "
                f"{features} features"
            )
        low = 0 if self.conditions else min(1, features - 1)
        need = features if self.conditions else max(1, features - 1)
        if any(h < need for h in self.hidden):
            what = f"D = {features}" if self.conditions else f"D - 1 = {features - 1}"
            raise OptionError(
                f"{self.label}: option hidden must have widths >= {what} for D = {features} "
                f"features{' with conditions' if self.conditions else ''} (so that every "
                f"degree {low}..{features - 1} has a unit), got {self.hidden}"
            )

    def _order(self, features: int) -> init.Initializer:
        if self.order == "natural":
            return init.array(np.arange(features))
        if self.order == "reversed":
            return init.array(np.arange(features)[::-1].copy())
        if self.seed is None:
            return init.permutation(features)
        seed = self.seed
        return lambda rng: np.random.default_rng(seed).permutation(features).astype(np.int64)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        n_in, n_out = sig.inputs[0][0], sig.outputs[0][0]
        features = self._features(sig.inputs[0])
        specs = [
            ParamSpec(
                "order",
                (features,),
                self._order(features),
                trainable=False,
                kind="index",
                constraint="permutation",
            )
        ]
        for layer, width in enumerate(self.hidden, start=1):
            degrees = hidden_degrees(width, features, self.conditions > 0)
            specs.append(
                ParamSpec(
                    f"degrees_{layer}",
                    (width,),
                    init.array(degrees),
                    trainable=False,
                    kind="index",
                    constraint="fixed",
                )
            )
        widths = [n_in, *self.hidden, n_out]
        last = len(self.hidden)
        for layer, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            zero = self.zero_init_last and layer == last
            specs.append(
                ParamSpec(
                    f"weight_{layer}",
                    (b, a),
                    init.zeros((b, a)) if zero else init.fan_in_uniform((b, a), a),
                )
            )
            specs.append(
                ParamSpec(
                    f"bias_{layer}",
                    (b,),
                    init.zeros((b,)) if zero else init.fan_in_uniform((b,), a),
                )
            )
        return specs

    def masks(self, xp: Namespace, params: Mapping[str, Array]) -> list[Array]:
        """The layers' masks (out, in), in the weights' dtype, from the degree buffers."""
        order = params["order"]
        features = int(order.shape[0])
        last = len(self.hidden)
        n_out = int(params[f"weight_{last}"].shape[0])
        multiplier = n_out // features
        inputs = order + 1
        outputs = xp.reshape(
            xp.broadcast_to(xp.reshape(inputs, (-1, 1)), (features, multiplier)), (-1,)
        )
        degrees = [inputs] + [params[f"degrees_{k}"] for k in range(1, last + 1)] + [outputs]
        out = []
        for layer in range(last + 1):
            w = params[f"weight_{layer}"]
            before = xp.reshape(degrees[layer], (1, -1))
            after = xp.reshape(degrees[layer + 1], (-1, 1))
            connected = after > before if layer == last else after >= before
            mask = xp.astype(connected, w.dtype)
            if layer == 0 and self.conditions:  # conditions reach every unit
                mask = xp.concat([mask, xp.ones_like(w[:, features:])], axis=1)
            out.append(mask)
        return out

    def apply(
        self, xp: Namespace, params: Mapping[str, Array], children: Mapping[str, Any], x: Array
    ) -> Array:
        last = len(self.hidden)
        for layer, mask in enumerate(self.masks(xp, params)):
            x = xp.linear(x, params[f"weight_{layer}"] * mask, params[f"bias_{layer}"])
            if layer < last:
                x = activate(xp, x, self.activation, self.negative_slope)
        return x


@dataclasses.dataclass(frozen=True)
class MaskedAutoregressive(SimpleTransform):
    r"""A masked autoregressive transform on vectors (MAF, NSF-AR; IAF as an option).

    A :class:`MADE` ``subnet`` reads :math:`(u, c)` (the conditions concatenated to
    :math:`u`) and gives each variable :math:`i` its transformer's coefficients
    :math:`\theta_i(u_{<i}, c)`, ``<`` in the MADE's ordering. With
    ``inverse_autoregressive=False`` (MAF) :math:`u = x`: the forward map
    :math:`y_i = \tau(x_i; \theta_i(x_{<i}, c))` takes one MADE pass, and the inverse
    :math:`D` sequential passes (a static loop over :math:`D`: it traces under
    ``jax.jit``, ``torch.compile`` and ``tf.function``). With
    ``inverse_autoregressive=True`` (IAF) the transform is the inverse of that map,
    :math:`x_i = \tau(y_i; \theta_i(y_{<i}, c))` read from :math:`y` to :math:`x`: the
    inverse (sampling, latent to data) takes one pass and the forward :math:`D`.

    Transformers :math:`\tau` (``transformer``):

    - ``"affine"`` (MAF; Papamakarios et al. 2017): :math:`\tau(x) = \sigma x + t` with
      coefficients :math:`(a, t)` per variable (in that order). ``affine_scale="softplus"``
      (nflows' MaskedAffineAutoregressiveTransform): :math:`\sigma = \mathrm{softplus}(a) +
      \epsilon`, ``epsilon`` :math:`\epsilon` (1e-3); ``"exp"``: :math:`\sigma = e^s` with the
      soft clamp :math:`s = \alpha \tanh(a / \alpha)`, ``clamp`` :math:`\alpha`.
      Log-det :math:`\sum_i \log \sigma_i`.
    - ``"rational_quadratic"`` (NSF-AR; Durkan et al. 2019): a monotonic rational-quadratic
      spline of ``bins`` :math:`K` bins on :math:`[-B, B]` (``tail_bound`` :math:`B`), the
      identity outside (linear tails), with coefficients :math:`3K - 1` per variable: ``K``
      unnormalised widths, ``K`` heights and ``K - 1`` interior derivatives (nflows'
      ``MaskedPiecewiseRationalQuadraticAutoregressiveTransform`` with ``tails="linear"``,
      and its minimum bin width, height and derivative). Log-det :math:`\sum_i \log
      \tau'(x_i)`.

    Forward log-det :math:`\log|\det \partial y/\partial x|` is the sum of the transformer's
    elementwise log-derivatives; the inverse returns minus it.

    Parameters: those of the ``subnet`` child (a :class:`MADE`, with ``D + K`` inputs for
    ``K`` condition features and ``D * M`` outputs, ``M`` the coefficients per variable).
    Conditions must be vectors.

    References: Papamakarios et al., "Masked Autoregressive Flow for Density Estimation",
    NeurIPS 2017; Kingma et al., "Improved Variational Inference with Inverse Autoregressive
    Flow", NeurIPS 2016; Durkan et al., "Neural Spline Flows", NeurIPS 2019; Germain et al.,
    "MADE", ICML 2015; nflows (github.com/bayesiains/nflows), ``transforms/autoregressive.py``.
    """

    subnet: MADE = dataclasses.field(default_factory=MADE)
    transformer: Transformer = "affine"
    inverse_autoregressive: bool = False
    affine_scale: AffineScale = "softplus"
    epsilon: Annotated[float, POSITIVE] = 1e-3
    clamp: Annotated[float, POSITIVE] = 3.0
    bins: int = 8
    tail_bound: Annotated[float, POSITIVE] = 3.0
    min_bin_width: Annotated[float, FRACTION] = 1e-3
    min_bin_height: Annotated[float, FRACTION] = 1e-3
    min_derivative: Annotated[float, POSITIVE] = 1e-3

    def __post_init__(self) -> None:
        label = self.label
        if not isinstance(self.subnet, MADE):
            raise OptionError(
                f"{label}: option subnet must be a flowcore MADE (a masked net: any other "
                f"would break the autoregressive structure), got {type(self.subnet).__name__}"
            )
        super().__post_init__()
        if self.bins < 1:
            raise OptionError(f"{label}: option bins must be an int >= 1, got {self.bins}")
        for name in ("min_bin_width", "min_bin_height"):
            if self.bins * getattr(self, name) >= 1.0:
                raise OptionError(
                    f"{label}: option {name} must be < 1 / bins = {1.0 / self.bins:g}, got "
                    f"{getattr(self, name)}"
                )

    # -- declarations -------------------------------------------------------------------

    @property
    def multiplier(self) -> int:
        """The transformer's coefficients per variable."""
        return 2 if self.transformer == "affine" else 3 * self.bins - 1

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        if len(shape) != 1:
            raise ShapeError(
                f"{self.label}: input must be a vector (D,), got {shape}; flatten images first"
            )
        for i, c in enumerate(conditions):
            if len(c) != 1:
                raise ShapeError(f"{self.label}: condition {i} must be a vector (K,), got {c}")
        return tuple(shape)

    def children(self, sig: Signature) -> Sequence[Child]:
        features = sig.inputs[0][0]
        cond = sum(c[0] for c in sig.conditions)
        made = dataclasses.replace(self.subnet, conditions=cond)
        return (
            Child("subnet", made, ((features + cond,),), outputs=((features * self.multiplier,),)),
        )

    # -- math ---------------------------------------------------------------------------

    def _coefficients(self, ctx: Context, u: Array, cs: Sequence[Array]) -> Array:
        """The MADE's output as (batch, D, M)."""
        out = ctx.children["subnet"](pieces.with_conditions(ctx.xp, u, cs))
        return ctx.xp.reshape(out, (-1, int(u.shape[1]), self.multiplier))

    def _tau(self, ctx: Context, x: Array, p: Array, inverse: bool) -> tuple[Array, Array | None]:
        """The transformer (``inverse``: its inverse) elementwise, with its elementwise forward
        log-derivative (None when ``ctx.jac`` is False)."""
        xp = ctx.xp
        if self.transformer == "affine":
            a, t = p[:, :, 0], p[:, :, 1]
            if self.affine_scale == "softplus":
                scale = softplus(xp, a) + self.epsilon
                log_scale = xp.log(scale) if ctx.jac else None
            else:
                log_scale = pieces.soft_clamp(xp, a, self.clamp, "scaled_tanh")
                scale = xp.exp(log_scale)
            y = (x - t) / scale if inverse else scale * x + t
            return y, log_scale
        k = self.bins
        y, log_abs_det = unconstrained_rational_quadratic(
            xp,
            x,
            p[:, :, :k],
            p[:, :, k : 2 * k],
            p[:, :, 2 * k :],
            inverse=inverse,
            tail_bound=self.tail_bound,
            min_bin_width=self.min_bin_width,
            min_bin_height=self.min_bin_height,
            min_derivative=self.min_derivative,
        )
        # nflows' inverse gives the inverse's log-det; keep the forward one
        return y, (-log_abs_det if inverse else log_abs_det) if ctx.jac else None

    def _one_pass(self, ctx: Context, u: Array, cs: Sequence[Array]) -> tuple[Array, Array | None]:
        """:math:`\\tau(u; \\theta(u, c))`, one MADE pass."""
        return self._tau(ctx, u, self._coefficients(ctx, u, cs), inverse=False)

    def _sequential(
        self, ctx: Context, v: Array, cs: Sequence[Array]
    ) -> tuple[Array, Array | None]:
        """The ``u`` with :math:`\\tau(u; \\theta(u, c)) = v`: D MADE passes, from zeros.

        After pass ``k`` the first ``k`` variables in the ordering are exact, so the last
        pass's coefficients are those of the solution."""
        u = ctx.xp.zeros_like(v)
        log_tau: Array | None = None
        for _ in range(int(v.shape[1])):  # static: D is a shape, never a value
            u, log_tau = self._tau(ctx, v, self._coefficients(ctx, u, cs), inverse=True)
        return u, log_tau

    def _log_det(self, ctx: Context, log_tau: Array | None, sign: float) -> Any:
        if log_tau is None:
            return 0.0
        total = sum_per_sample(ctx.xp, log_tau)
        return total if sign > 0 else -total

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        if self.inverse_autoregressive:
            y, log_tau = self._sequential(ctx, x, cs)
            return y, self._log_det(ctx, log_tau, -1.0)
        y, log_tau = self._one_pass(ctx, x, cs)
        return y, self._log_det(ctx, log_tau, 1.0)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        if self.inverse_autoregressive:
            x, log_tau = self._one_pass(ctx, y, cs)
            return x, self._log_det(ctx, log_tau, 1.0)
        x, log_tau = self._sequential(ctx, y, cs)
        return x, self._log_det(ctx, log_tau, -1.0)

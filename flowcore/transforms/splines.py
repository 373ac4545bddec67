r"""Spline transforms: FrEIA master's binned rational-quadratic and linear spline couplings
and its elementwise rational-quadratic spline.

Each element :math:`x_i` of the active half goes through its own monotone spline on
:math:`K` bins (``bins``) whose knots :math:`(x_k, y_k)` and knot derivatives :math:`d_k` a
subnetwork predicts from the passive half and the conditions; outside the spline's domain
:math:`(x_0, x_K]` the map is affine, :math:`y = \sigma x + (y_0 - \sigma x_0)` with
:math:`\sigma = \sum h_k / \sum w_k`, the identity with ``identity_tails``. The knots follow
FrEIA master's parametrisation (:func:`flowcore.transforms.rational_quadratic.freia_knots`):
raw network zeros give ``default_domain`` with equal bins, ``min_bin_sizes`` bound the bins
from below, ``domain_clamping`` :math:`D` bounds the domain's size softly to :math:`D`.

Per element the subnet predicts, in this order (FrEIA's): :math:`K` widths, :math:`K` heights,
then ``bottom`` and ``left`` (or one ``total_width`` with ``identity_tails``), then for the
rational-quadratic spline :math:`K - 1` interior derivatives: :math:`P` values, output channel
:math:`i P + j` being value :math:`j` of element :math:`i` (at every position of an image).

References: Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019;
FrEIA master (github.com/vislearn/FrEIA, 4212496) ``FrEIA/modules/splines`` (not in FrEIA 0.2),
whose formulas, options and subnet names these reproduce.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from ..errors import ShapeError
from ..initializers import zeros
from ..options import NON_NEGATIVE, POSITIVE, OptionError
from ..spec import (
    Array,
    Child,
    Context,
    NativeSubnet,
    ParamSpec,
    Shape,
    Signature,
    SimpleTransform,
    Subnet,
    sum_per_sample,
)
from . import pieces
from . import rational_quadratic as rq
from .couplings import _Coupling

__all__ = ["ElementwiseRationalQuadraticSpline", "LinearSpline", "RationalQuadraticSpline"]

MinBinSizes = tuple[Annotated[float, NON_NEGATIVE], Annotated[float, NON_NEGATIVE]]
Domain = tuple[float, float, float, float]


@dataclasses.dataclass(frozen=True)
class _Binned(SimpleTransform):
    """The options of FrEIA's ``BinnedSplineBase`` and the parameter layout."""

    bins: Annotated[int, POSITIVE] = 10
    min_bin_sizes: MinBinSizes = (0.1, 0.1)
    default_domain: Domain = (-3.0, 3.0, -3.0, 3.0)
    identity_tails: bool = False
    domain_clamping: Annotated[float, POSITIVE] | None = None

    #: Whether the spline has knot derivatives (rational-quadratic) or not (linear).
    _derivatives = True

    def _check_binned(self) -> None:
        left, right, bottom, top = self.default_domain
        for axis, (low, high), name, size in (
            ("x", (left, right), "left < right", self.min_bin_sizes[0]),
            ("y", (bottom, top), "bottom < top", self.min_bin_sizes[1]),
        ):
            if not high > low:
                raise OptionError(
                    f"{self.label}: option default_domain=(left, right, bottom, top) must have "
                    f"{name} (an increasing {axis} domain), got {self.default_domain!r}"
                )
            if not self.identity_tails and self.bins * size >= high - low:
                raise OptionError(
                    f"{self.label}: option min_bin_sizes={self.min_bin_sizes!r} must fit "
                    f"{self.bins} bins into the {axis} domain of size {high - low:g} "
                    f"(bins * min {axis} size < size), got bins * min = {self.bins * size:g}"
                )

    def _keys(self) -> tuple[tuple[str, int], ...]:
        """The raw values per element, in FrEIA's order, and their counts."""
        edges = (("total_width", 1),) if self.identity_tails else (("bottom", 1), ("left", 1))
        deltas = (("deltas", self.bins - 1),) if self._derivatives else ()
        return (("widths", self.bins), ("heights", self.bins), *edges, *deltas)

    def _count(self) -> int:
        """:math:`P`, the raw values per element."""
        return sum(n for _, n in self._keys())

    def _spline(
        self, ctx: Context, x: Array, raw: Array, inverse: bool
    ) -> tuple[Array, Array | None]:
        r"""The splines of ``x`` (batch, n, \*spatial) from the raw values ``raw`` (batch,
        n * P, \*spatial): the output and the log-det of this direction (forward, or minus it
        with ``inverse``) summed per sample (None when ``ctx.jac`` is False)."""
        xp = ctx.xp
        n, p = int(x.shape[1]), self._count()
        spatial = tuple(int(d) for d in x.shape[2:])
        raw = xp.reshape(raw, (-1, n, p, *spatial))
        rank = raw.ndim
        raw = xp.permute_dims(raw, (0, 1, *range(3, rank), 2))  # P last
        parts, start = {}, 0
        for key, count in self._keys():
            parts[key] = raw[..., start : start + count]
            start += count
        knot_x, knot_y, derivatives = rq.freia_knots(
            xp,
            parts,
            bins=self.bins,
            min_bin_sizes=self.min_bin_sizes,
            default_domain=self.default_domain,
            identity_tails=self.identity_tails,
            domain_clamping=self.domain_clamping,
            derivatives=self._derivatives,
        )
        if derivatives is None:
            y, log_det = rq.binned_linear(xp, x, knot_x, knot_y, inverse=inverse)
        else:
            y, log_det = rq.binned_rational_quadratic(
                xp, x, knot_x, knot_y, derivatives, inverse=inverse
            )
        return y, (sum_per_sample(xp, log_det) if ctx.jac else None)


def _total(a: Array | None, b: Array | None) -> Any:
    if a is None or b is None:
        return 0.0
    return a + b


@dataclasses.dataclass(frozen=True)
class _BinnedCoupling(_Binned, _Coupling):
    r"""Both halves in turn, FrEIA's ``BinnedSpline``: :math:`y_1 = f(x_1 \mid
    \mathrm{subnet1}([x_2, c]))`, then :math:`y_2 = g(x_2 \mid \mathrm{subnet2}([y_1, c]))`."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_binned()

    def children(self, sig: Signature) -> Sequence[Child]:
        c1, c2 = self._split(sig.inputs[0][0])
        p = self._count()
        return (self._child("subnet1", sig, c2, c1 * p), self._child("subnet2", sig, c1, c2 * p))

    def _step(
        self, ctx: Context, name: str, x: Array, u: Array, cs: Sequence[Array], inverse: bool
    ) -> tuple[Array, Array | None]:
        raw = ctx.children[name](pieces.with_conditions(ctx.xp, u, cs))
        return self._spline(ctx, x, raw, inverse)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        x1, x2 = pieces.split_channels(x, self._split(x.shape[1]))
        y1, j1 = self._step(ctx, "subnet1", x1, x2, cs, inverse=False)
        y2, j2 = self._step(ctx, "subnet2", x2, y1, cs, inverse=False)
        return ctx.xp.concat([y1, y2], axis=1), _total(j1, j2)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        y1, y2 = pieces.split_channels(y, self._split(y.shape[1]))
        x2, j2 = self._step(ctx, "subnet2", y2, y1, cs, inverse=True)
        x1, j1 = self._step(ctx, "subnet1", y1, x2, cs, inverse=True)
        return ctx.xp.concat([x1, x2], axis=1), _total(j1, j2)


@dataclasses.dataclass(frozen=True)
class RationalQuadraticSpline(_BinnedCoupling):
    r"""FrEIA master's RationalQuadraticSpline: a coupling of both halves through monotone
    rational-quadratic splines with predicted domains and affine tails (Durkan et al. 2019).

    .. math::

        y_1 = \mathrm{RQS}(x_1;\ \mathrm{subnet1}([x_2, c])), \qquad
        y_2 = \mathrm{RQS}(x_2;\ \mathrm{subnet2}([y_1, c]))

    elementwise; in bin :math:`k` (:math:`\theta = (x - x_k)/w_k`, :math:`s_k = h_k/w_k`)

    .. math::

        \mathrm{RQS}(x) = y_k + \frac{h_k (s_k\theta^2 + d_k\theta(1-\theta))}
            {s_k + (d_{k+1} + d_k - 2 s_k)\theta(1-\theta)},

    outside :math:`(x_0, x_K]` the affine tail :math:`\sigma x + (y_0 - \sigma x_0)`,
    :math:`\sigma = \sum h/\sum w`, whose slope the boundary derivatives :math:`d_0 = d_K =
    \sigma` match. Interior derivatives :math:`\mathrm{softplus}(u + \log(e - 1))` (raw zero:
    1); knots as the module says.

    Log-det: :math:`\sum \log \frac{s_k^2 (d_{k+1}\theta^2 + 2 s_k\theta(1-\theta) +
    d_k(1-\theta)^2)}{(s_k + (d_{k+1}+d_k-2s_k)\theta(1-\theta))^2}` over the spline's
    elements, plus :math:`\log\sigma` per element in a tail.

    Parameters: none of its own; children ``subnet1`` (:math:`C_2` + condition channels to
    :math:`C_1 P`) and ``subnet2`` (:math:`C_1` + condition channels to :math:`C_2 P`),
    FrEIA's names, :math:`P = 3K + 1` (:math:`3K` with ``identity_tails``). Options: ``bins``
    :math:`K \ge 1`; ``min_bin_sizes`` (x, y) :math:`\ge 0`, with ``bins * min`` below the
    domain's size; ``default_domain`` (left, right, bottom, top), increasing;
    ``identity_tails`` (a domain centred at 0, equal in x and y, sized by one raw value:
    identity tails; the minimum sizes are then unused, as in FrEIA); ``domain_clamping``
    :math:`D > 0` or None; ``split_len``, ``subnet`` or ``subnet_constructor`` as the
    couplings (:class:`~flowcore.transforms.couplings.NICECouplingBlock`).

    References: Durkan et al., "Neural Spline Flows", NeurIPS 2019; Gregory, Delbourgo,
    "Piecewise rational quadratic interpolation to monotonic data", IMA J. Numer. Anal. 1982;
    FrEIA master ``FrEIA/modules/splines/rational_quadratic.py``.
    """


@dataclasses.dataclass(frozen=True)
class LinearSpline(_BinnedCoupling):
    r"""FrEIA master's LinearSpline: :class:`RationalQuadraticSpline` with straight lines
    between the knots (a piecewise-linear monotone map, Müller et al. 2019 in spirit).

    .. math::

        y = y_k + s_k (x - x_k) \text{ in bin } k, \quad s_k = h_k / w_k,

    and the affine tails of :class:`RationalQuadraticSpline`.

    Log-det: :math:`\sum (\log h_k - \log w_k)` over the elements inside, :math:`\log\sigma`
    per element in a tail.

    Parameters: children ``subnet1`` and ``subnet2`` as :class:`RationalQuadraticSpline`
    with :math:`P = 2K + 2` (:math:`2K + 1` with ``identity_tails``). Options as
    :class:`RationalQuadraticSpline`.

    References: Müller et al., "Neural Importance Sampling", ACM TOG 2019; FrEIA master
    ``FrEIA/modules/splines/linear.py``.
    """

    _derivatives = False


@dataclasses.dataclass(frozen=True)
class ElementwiseRationalQuadraticSpline(_Binned):
    r"""FrEIA master's ElementwiseRationalQuadraticSpline: every element through its own
    rational-quadratic spline (formula, tails and knots as
    :class:`RationalQuadraticSpline`), with free parameters, or predicted from the
    conditions when there are any.

    .. math::

        y = \mathrm{RQS}(x;\ \phi), \qquad \phi = \texttt{spline\_parameters}
        \text{ or } \phi = \mathrm{subnet}([c_1, \dots])

    Log-det: as :class:`RationalQuadraticSpline`, over all elements.

    Parameters: unconditioned, ``spline_parameters`` of shape :math:`(C P, \ldots)` (the
    input's spatial shape; zeros: the default domain with equal bins), :math:`P = 3K + 1`
    (:math:`3K` with ``identity_tails``), shared over the batch. Conditioned, a child
    ``subnet`` from the condition channels to :math:`C P` (vector conditions: a vector
    subnet whose output is broadcast over an image's positions; otherwise the conditions at
    the input's positions, a vector one broadcast over them). ``subnet`` (portable) or
    ``subnet_constructor`` (native ``f(c_in, c_out)``) must be given with conditions and
    only then. Options ``bins``, ``min_bin_sizes``, ``default_domain``, ``identity_tails``,
    ``domain_clamping`` as :class:`RationalQuadraticSpline`.

    References: Durkan et al., "Neural Spline Flows", NeurIPS 2019; FrEIA master
    ``FrEIA/modules/splines/rational_quadratic.py``.
    """

    subnet: Subnet | None = None
    subnet_constructor: Callable[[int, int], Any] | None = None

    def __post_init__(self) -> None:
        if self.subnet is not None and not isinstance(self.subnet, Subnet):
            raise OptionError(
                f"{self.label}: option subnet takes a portable flowcore.Subnet such as "
                f"flowcore.MLP; got {type(self.subnet).__name__} (pass a native "
                "f(c_in, c_out) as subnet_constructor=)"
            )
        super().__post_init__()
        if self.subnet is not None and self.subnet_constructor is not None:
            raise OptionError(
                f"{self.label}: give at most one of the options subnet= or "
                "subnet_constructor=, got both"
            )
        self._check_binned()

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        if not 1 <= len(shape) <= 4:
            raise ShapeError(
                f"{self.label}: input must be (C,), (C, L), (C, H, W) or (C, D, H, W), got {shape}"
            )
        pieces.condition_channels(shape, conditions, self.label)
        has_subnet = self.subnet is not None or self.subnet_constructor is not None
        if conditions and not has_subnet:
            raise OptionError(
                f"{self.label}: with conditions, option subnet= or subnet_constructor= must "
                "be given (it predicts the spline parameters from them), got neither"
            )
        if not conditions and has_subnet:
            raise OptionError(
                f"{self.label}: without conditions the spline parameters are free, so option "
                "subnet= / subnet_constructor= must be None, got a subnet"
            )
        return tuple(shape)

    def _vector_conditions(self, sig: Signature) -> bool:
        return all(len(c) == 1 for c in sig.conditions)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        if sig.conditions:
            return ()
        shape = sig.inputs[0]
        size = (shape[0] * self._count(), *shape[1:])
        return (ParamSpec("spline_parameters", size, zeros(size)),)

    def children(self, sig: Signature) -> Sequence[Child]:
        if not sig.conditions:
            return ()
        shape = sig.inputs[0]
        cond = sum(c[0] for c in sig.conditions)
        spatial = () if self._vector_conditions(sig) else tuple(shape[1:])
        spec: Subnet | NativeSubnet
        if self.subnet is not None:
            spec = self.subnet
        else:
            assert self.subnet_constructor is not None  # output_shape checked it
            spec = NativeSubnet(self.subnet_constructor)
        return (
            Child(
                "subnet",
                spec,
                ((cond, *spatial),),
                outputs=((shape[0] * self._count(), *spatial),),
            ),
        )

    def _raw(self, ctx: Context, x: Array, cs: Sequence[Array]) -> Array:
        xp = ctx.xp
        zero = xp.zeros_like(pieces.channels(x, 0, 1))  # (batch, 1, *spatial)
        if not cs:
            return ctx.params["spline_parameters"][None, ...] + zero
        if all(c.ndim == 2 for c in cs):
            u = cs[0] if len(cs) == 1 else xp.concat(list(cs), axis=1)
            raw = ctx.children["subnet"](u)
            return raw[(...,) + (None,) * (x.ndim - 2)] + zero if x.ndim > 2 else raw
        channels = int(x.shape[1])
        u = pieces.with_conditions(xp, x, cs)
        return ctx.children["subnet"](u[:, channels:, ...])

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        y, log_det = self._spline(ctx, x, self._raw(ctx, x, cs), inverse=False)
        return y, (0.0 if log_det is None else log_det)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        x, log_det = self._spline(ctx, y, self._raw(ctx, y, cs), inverse=True)
        return x, (0.0 if log_det is None else log_det)

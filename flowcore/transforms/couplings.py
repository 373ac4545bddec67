r"""Coupling blocks: FrEIA's NICE, RealNVP, GLOW, GIN, one-sided and conditional affine
couplings.

Every block splits the channel axis (axis 1) into :math:`x = (x_1, x_2)`, the first
``split_len`` channels and the rest, and predicts the coefficients of an elementwise map of
one half from the other half with a subnetwork. Conditions are concatenated to the subnet's
input on the channel axis; a vector condition ``(K,)`` is broadcast over the positions of an
image (FrEIA asserts that conditions match the input's spatial shape instead).

The log-scale is soft-clamped, :math:`s = \alpha\, f(a)` with ``clamp`` :math:`\alpha` and
``clamp_activation`` :math:`f`: ``"ATAN"`` :math:`0.636 \arctan` (FrEIA's constant, not
:math:`2/\pi`), ``"TANH"`` :math:`\tanh`, ``"SIGMOID"`` :math:`2(\sigma - 1/2)`, or a callable
applied to the backend's own arrays (such a spec runs but is not portable).

References: Ardizzone et al., FrEIA (github.com/vislearn/FrEIA), ``coupling_layers.py`` of
release 0.2, whose formulas and subnet names these blocks reproduce.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ClassVar, Literal

from ..errors import ShapeError
from ..options import POSITIVE, OptionError, Range
from ..spec import (
    Array,
    Child,
    Context,
    Namespace,
    NativeSubnet,
    Shape,
    Signature,
    SimpleTransform,
    Spec,
    Subnet,
    sum_per_sample,
)
from . import pieces

__all__ = [
    "AffineCouplingOneSided",
    "Subnets",
    "ConditionalAffineTransform",
    "GINCouplingBlock",
    "GLOWCouplingBlock",
    "NICECouplingBlock",
    "RNVPCouplingBlock",
]

ClampActivation = Literal["ATAN", "TANH", "SIGMOID"]
_CLAMP_KINDS: dict[str, pieces.ClampName] = {"ATAN": "atan", "TANH": "tanh", "SIGMOID": "sigmoid"}
#: ``split_len``: a fraction in (0, 1) of the channels (rounded half to even) or a count.
SplitLen = Annotated[float, Range(0, 1, low_open=True, high_open=True)] | Annotated[int, POSITIVE]


def _broadcast_conditions(xp: Namespace, x: Array, cs: Sequence[Array]) -> Array:
    """The conditions concatenated on the channel axis, a vector one broadcast over the
    positions of ``x`` (an image)."""
    spatial = x.ndim - 2
    positions = xp.zeros_like(pieces.channels(x, 0, 1))
    parts = [
        c[(...,) + (None,) * spatial] + positions if c.ndim == 2 and spatial else c for c in cs
    ]
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=1)


def affine_step(
    ctx: Context,
    x: Array,
    t: Array,
    inverse: bool,
    a_s: Array | None = None,
    clamp: float = 2.0,
    activation: pieces.ClampName | Callable[[Array], Array] = "atan",
    centre: bool = False,
) -> tuple[Array, Array | None]:
    r"""One coupling update of the active half ``x``, the step every block here is made of.

    Affine, :math:`y = e^{s} \odot x + t` with :math:`s = \alpha f(a_s)` (``clamp``
    :math:`\alpha`, ``activation`` :math:`f`, see :func:`pieces.soft_clamp`), its inverse
    :math:`x = (y - t) \odot e^{-s}`; additive, :math:`y = x + t`, when ``a_s`` is None.
    With ``centre`` :math:`s` loses its mean over the channel axis at each position (GIN).

    Returns the new half and the forward log-det :math:`\sum s` over the non-batch axes, or
    None where it is zero (additive, centred) or not wanted (``ctx.jac`` False).
    """
    xp = ctx.xp
    if a_s is None:
        return (x - t if inverse else x + t), None
    s = pieces.soft_clamp(xp, a_s, clamp, activation)
    if centre:
        s = s - xp.mean(s, axis=1, keepdims=True)
    y = (x - t) * xp.exp(-s) if inverse else xp.exp(s) * x + t
    return y, (sum_per_sample(xp, s) if ctx.jac and not centre else None)


def _total(log_dets: Sequence[Array | None], inverse: bool) -> Any:
    """The sum of the steps' forward log-dets (0.0 when none), negated for the inverse."""
    terms = [j for j in log_dets if j is not None]
    if not terms:
        return 0.0
    total = terms[0]
    for j in terms[1:]:
        total = total + j
    return -total if inverse else total


@dataclasses.dataclass(frozen=True)
class Subnets(Spec):
    """A portable subnet for each subnet of a coupling block, by the block's subnet names:
    ``Subnets(names=("subnet1", "subnet2"), nets=(net1, net2))`` as a block's ``subnet``,
    where one spec for all will not do (as a FrEIA ``subnet_constructor`` whose hidden
    width follows ``c_in`` builds them). Each name must be one of the block's subnets, and
    each of the block's subnets must be named."""

    names: tuple[str, ...]
    nets: tuple[Subnet, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "nets", tuple(self.nets))
        if len(self.names) != len(self.nets) or len(set(self.names)) != len(self.names):
            raise OptionError(
                f"Subnets: needs one net per distinct name, got names {self.names} and "
                f"{len(self.nets)} nets"
            )
        for net in self.nets:
            if not isinstance(net, Subnet):
                raise OptionError(
                    f"Subnets: nets must be portable flowcore.Subnet specs, got "
                    f"{type(net).__name__}"
                )

    def check(self, label: str, names: Sequence[str]) -> None:
        """Refuse names the block lacks and subnets of the block left without a net."""
        missing = [n for n in names if n not in self.names]
        surplus = [n for n in self.names if n not in names]
        if missing or surplus:
            raise OptionError(
                f"{label}: option subnet=Subnets(...) must name the block's subnets "
                f"{list(names)}; missing {missing}, unknown {surplus}"
            )

    def net(self, name: str) -> Subnet:
        return self.nets[self.names.index(name)]


@dataclasses.dataclass(frozen=True)
class _Coupling(SimpleTransform):
    """What the coupling blocks share: the subnet options, the split and shape checks."""

    #: The names of the block's subnets (its children).
    SUBNET_NAMES: ClassVar[tuple[str, ...]] = ()

    subnet: Subnet | Subnets | None = None
    subnet_constructor: Callable[[int, int], Any] | None = None
    split_len: SplitLen = 0.5

    def __post_init__(self) -> None:
        label = self.label
        if self.subnet is not None and not isinstance(self.subnet, (Subnet, Subnets)):
            raise OptionError(
                f"{label}: option subnet takes a portable flowcore.Subnet such as "
                f"flowcore.MLP, or Subnets; got {type(self.subnet).__name__} (pass a native "
                "f(c_in, c_out) as subnet_constructor=)"
            )
        if isinstance(self.subnet, Subnets):
            self.subnet.check(label, self.SUBNET_NAMES)
        super().__post_init__()
        if (self.subnet is None) == (self.subnet_constructor is None):
            raise OptionError(
                f"{label}: give exactly one of the options subnet= or subnet_constructor=, "
                f"got {'both' if self.subnet is not None else 'neither'}"
            )

    # -- declarations -------------------------------------------------------------------

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        self._check_shapes(shape, conditions)
        self._split(shape[0])
        return tuple(shape)

    def _check_shapes(self, shape: Shape, conditions: Sequence[Shape]) -> None:
        if not 1 <= len(shape) <= 4:
            raise ShapeError(
                f"{self.label}: input must be (C,), (C, L), (C, H, W) or (C, D, H, W), got {shape}"
            )
        pieces.condition_channels(shape, conditions, self.label)

    def _split(self, channels: int) -> tuple[int, int]:
        """The sizes of :math:`x_1` and :math:`x_2`."""
        try:
            return pieces.freia_split(channels, self.split_len)
        except ShapeError as error:
            raise ShapeError(
                f"{self.label}: option split_len={self.split_len!r} must leave both halves "
                f"non-empty: {error}"
            ) from None

    def _step_options(self) -> dict[str, Any]:
        """The options of :func:`affine_step` besides the arrays (none: additive)."""
        return {}

    def _subnet_spec(self, name: str) -> Subnet | NativeSubnet:
        if isinstance(self.subnet, Subnets):
            return self.subnet.net(name)
        if self.subnet is not None:
            return self.subnet
        assert self.subnet_constructor is not None
        return NativeSubnet(self.subnet_constructor)

    def _child(self, name: str, sig: Signature, c_in: int, c_out: int) -> Child:
        """A subnet child from ``c_in`` plus the conditions' channels to ``c_out``."""
        spatial = sig.inputs[0][1:]
        cond = sum(c[0] for c in sig.conditions)
        return Child(
            name, self._subnet_spec(name), ((c_in + cond, *spatial),), outputs=((c_out, *spatial),)
        )


@dataclasses.dataclass(frozen=True)
class _Affine(_Coupling):
    """A coupling with a soft-clamped log-scale."""

    clamp: Annotated[float, POSITIVE] = 2.0
    clamp_activation: ClampActivation | Callable[[Array], Array] = "ATAN"

    def _step_options(self) -> dict[str, Any]:
        kind = self.clamp_activation
        return {"clamp": self.clamp, "activation": kind if callable(kind) else _CLAMP_KINDS[kind]}


class _TwoSided(_Coupling):
    r"""Both halves in turn: :math:`y_1 = f(x_1 \mid x_2, c)`, then
    :math:`y_2 = g(x_2 \mid y_1, c)`; the inverse undoes :math:`g`, then :math:`f`."""

    def _coefficients(self, ctx: Context, step: int, u: Array) -> tuple[Array | None, Array]:
        """``(a_s, t)`` of step 1 (active half 1) or 2 from the passive half ``u``."""
        raise NotImplementedError

    def _step(
        self, ctx: Context, step: int, x: Array, u: Array, cs: Sequence[Array], inverse: bool
    ) -> tuple[Array, Array | None]:
        a_s, t = self._coefficients(ctx, step, pieces.with_conditions(ctx.xp, u, cs))
        return affine_step(ctx, x, t, inverse, a_s, **self._step_options())

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        x1, x2 = pieces.split_channels(x, self._split(x.shape[1]))
        y1, j1 = self._step(ctx, 1, x1, x2, cs, inverse=False)
        y2, j2 = self._step(ctx, 2, x2, y1, cs, inverse=False)
        return ctx.xp.concat([y1, y2], axis=1), _total((j1, j2), inverse=False)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        y1, y2 = pieces.split_channels(y, self._split(y.shape[1]))
        x2, j2 = self._step(ctx, 2, y2, y1, cs, inverse=True)
        x1, j1 = self._step(ctx, 1, y1, x2, cs, inverse=True)
        return ctx.xp.concat([x1, x2], axis=1), _total((j1, j2), inverse=True)


@dataclasses.dataclass(frozen=True)
class NICECouplingBlock(_TwoSided):
    r"""FrEIA's NICECouplingBlock: additive coupling of both halves (Dinh et al. 2015).

    .. math::

        y_1 = x_1 + F([x_2, c]), \qquad y_2 = x_2 + G([y_1, c])

    and the inverse :math:`x_2 = y_2 - G([y_1, c])`, :math:`x_1 = y_1 - F([x_2, c])`.

    Log-det: 0 (volume preserving).

    Parameters: none of its own; children ``F`` (:math:`C_2` + condition channels to
    :math:`C_1`) and ``G`` (:math:`C_1` + condition channels to :math:`C_2`), FrEIA's names,
    where :math:`C_1` = ``round(C * split_len)`` (half to even) or ``split_len`` itself if an
    int, and :math:`C_2 = C - C_1`. ``subnet`` is a portable :class:`~flowcore.Subnet`
    (``MLP`` for vectors, ``ConvNet`` for images), ``subnet_constructor`` a native
    ``f(c_in, c_out)``; give exactly one.

    References: Dinh, Krueger, Bengio, "NICE: Non-linear Independent Components Estimation",
    ICLR 2015; FrEIA 0.2 ``NICECouplingBlock``.
    """

    SUBNET_NAMES: ClassVar[tuple[str, ...]] = ("F", "G")

    def children(self, sig: Signature) -> Sequence[Child]:
        c1, c2 = self._split(sig.inputs[0][0])
        return (self._child("F", sig, c2, c1), self._child("G", sig, c1, c2))

    def _coefficients(self, ctx: Context, step: int, u: Array) -> tuple[Array | None, Array]:
        return None, ctx.children["F" if step == 1 else "G"](u)


@dataclasses.dataclass(frozen=True)
class RNVPCouplingBlock(_Affine, _TwoSided):
    r"""FrEIA's RNVPCouplingBlock: affine coupling of both halves with separate scale and
    shift nets (Dinh et al. 2017).

    .. math::

        y_1 &= e^{s_2} \odot x_1 + t_2, \quad s_2 = \alpha f(S_2([x_2, c])),\;
            t_2 = T_2([x_2, c]) \\
        y_2 &= e^{s_1} \odot x_2 + t_1, \quad s_1 = \alpha f(S_1([y_1, c])),\;
            t_1 = T_1([y_1, c])

    Log-det: :math:`\sum s_1 + \sum s_2` over the non-batch axes.

    Parameters: none of its own; children ``subnet_s1``, ``subnet_t1`` (:math:`C_1` +
    condition channels to :math:`C_2`) and ``subnet_s2``, ``subnet_t2`` (:math:`C_2` +
    condition channels to :math:`C_1`), FrEIA's names. Options: ``clamp`` :math:`\alpha > 0`,
    ``clamp_activation`` :math:`f`, ``split_len``, ``subnet`` or ``subnet_constructor`` (see
    the module and :class:`NICECouplingBlock`).

    References: Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017;
    FrEIA 0.2 ``RNVPCouplingBlock``.
    """

    SUBNET_NAMES: ClassVar[tuple[str, ...]] = ("subnet_s1", "subnet_t1", "subnet_s2", "subnet_t2")

    def children(self, sig: Signature) -> Sequence[Child]:
        c1, c2 = self._split(sig.inputs[0][0])
        return (
            self._child("subnet_s1", sig, c1, c2),
            self._child("subnet_t1", sig, c1, c2),
            self._child("subnet_s2", sig, c2, c1),
            self._child("subnet_t2", sig, c2, c1),
        )

    def _coefficients(self, ctx: Context, step: int, u: Array) -> tuple[Array | None, Array]:
        k = 2 if step == 1 else 1  # step 1 moves x_1 with the nets of x_2 (FrEIA's s2, t2)
        return ctx.children[f"subnet_s{k}"](u), ctx.children[f"subnet_t{k}"](u)


@dataclasses.dataclass(frozen=True)
class GLOWCouplingBlock(_Affine, _TwoSided):
    r"""FrEIA's GLOWCouplingBlock: affine coupling of both halves, one net per half
    predicting :math:`[a_s \mid t]` (Kingma and Dhariwal 2018; coupling only, no ActNorm or
    1x1 convolution).

    .. math::

        [a_2 \mid t_2] &= \mathrm{subnet2}([x_2, c]), \quad
            y_1 = e^{s_2} \odot x_1 + t_2, \quad s_2 = \alpha f(a_2) \\
        [a_1 \mid t_1] &= \mathrm{subnet1}([y_1, c]), \quad
            y_2 = e^{s_1} \odot x_2 + t_1, \quad s_1 = \alpha f(a_1)

    the scale taking the first :math:`C_1` (resp. :math:`C_2`) output channels.

    Log-det: :math:`\sum s_1 + \sum s_2` over the non-batch axes.

    Parameters: none of its own; children ``subnet1`` (:math:`C_1` + condition channels to
    :math:`2 C_2`) and ``subnet2`` (:math:`C_2` + condition channels to :math:`2 C_1`),
    FrEIA's names. Options as :class:`RNVPCouplingBlock`.

    References: Kingma, Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions",
    NeurIPS 2018; FrEIA 0.2 ``GLOWCouplingBlock``.
    """

    SUBNET_NAMES: ClassVar[tuple[str, ...]] = ("subnet1", "subnet2")

    def children(self, sig: Signature) -> Sequence[Child]:
        c1, c2 = self._split(sig.inputs[0][0])
        return (self._child("subnet1", sig, c1, 2 * c2), self._child("subnet2", sig, c2, 2 * c1))

    def _coefficients(self, ctx: Context, step: int, u: Array) -> tuple[Array | None, Array]:
        a = ctx.children["subnet2" if step == 1 else "subnet1"](u)
        half = a.shape[1] // 2
        a_s, t = pieces.split_channels(a, (half, half))
        return a_s, t


@dataclasses.dataclass(frozen=True)
class GINCouplingBlock(GLOWCouplingBlock):
    r"""FrEIA's GINCouplingBlock: :class:`GLOWCouplingBlock` made volume preserving
    (Sorrenson et al. 2020).

    As GLOW, but each clamped log-scale loses its mean over the channel axis at every
    position, :math:`s \leftarrow s - \frac{1}{C_k}\sum_{\text{channels}} s` (FrEIA's
    per-pixel channel mean; AllInOneBlock's ``gin_block`` subtracts the mean over all axes).

    Log-det: 0.

    Parameters: children ``subnet1`` and ``subnet2`` as :class:`GLOWCouplingBlock`.

    References: Sorrenson, Rother, Köthe, "Disentanglement by Nonlinear ICA with General
    Incompressible-flow Networks (GIN)", ICLR 2020; FrEIA 0.2 ``GINCouplingBlock``.
    """

    def _step_options(self) -> dict[str, Any]:
        return {**super()._step_options(), "centre": True}


@dataclasses.dataclass(frozen=True)
class AffineCouplingOneSided(_Affine):
    r"""FrEIA's AffineCouplingOneSided: half of a GLOW coupling, only :math:`x_2` changes.

    .. math::

        [a \mid t] = \mathrm{subnet}([x_1, c]), \qquad
        y = (x_1,\; x_2 \odot e^{s} + t), \quad s = \alpha f(a)

    Log-det: :math:`\sum s` over the non-batch axes.

    Parameters: none of its own; child ``subnet`` (:math:`C_1` + condition channels to
    :math:`2 C_2`). Options as :class:`RNVPCouplingBlock`.

    References: FrEIA 0.2 ``AffineCouplingOneSided``.
    """

    SUBNET_NAMES: ClassVar[tuple[str, ...]] = ("subnet",)

    def children(self, sig: Signature) -> Sequence[Child]:
        c1, c2 = self._split(sig.inputs[0][0])
        return (self._child("subnet", sig, c1, 2 * c2),)

    def _run(self, ctx: Context, x: Array, cs: Sequence[Array], inverse: bool) -> Any:
        c1, c2 = self._split(x.shape[1])
        x1, x2 = pieces.split_channels(x, (c1, c2))
        a = ctx.children["subnet"](pieces.with_conditions(ctx.xp, x1, cs))
        a_s, t = pieces.split_channels(a, (c2, c2))
        y2, j = affine_step(ctx, x2, t, inverse, a_s, **self._step_options())
        return ctx.xp.concat([x1, y2], axis=1), _total((j,), inverse)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return self._run(ctx, x, cs, inverse=False)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return self._run(ctx, y, cs, inverse=True)


@dataclasses.dataclass(frozen=True)
class ConditionalAffineTransform(_Affine):
    r"""FrEIA's ConditionalAffineTransform: an affine map of the whole input whose
    coefficients come from the condition only (as SPADE, Park et al. 2019).

    .. math::

        [a \mid t] = \mathrm{subnet}(c), \qquad y = e^{s} \odot x + t, \quad s = \alpha f(a)

    with the conditions concatenated on the channel axis (a vector condition broadcast over
    an image's positions). A condition is required.

    Log-det: :math:`\sum s` over the non-batch axes.

    Parameters: none of its own; child ``subnet`` (condition channels to :math:`2C`).
    ``split_len`` is accepted for FrEIA's signature and checked, but unused.

    References: Park et al., "Semantic Image Synthesis with Spatially-Adaptive
    Normalization", CVPR 2019; FrEIA 0.2 ``ConditionalAffineTransform``.
    """

    SUBNET_NAMES: ClassVar[tuple[str, ...]] = ("subnet",)

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        if not conditions:
            raise ShapeError(f"{self.label}: needs a condition, got none")
        self._check_shapes(shape, conditions)
        return tuple(shape)

    def children(self, sig: Signature) -> Sequence[Child]:
        return (self._child("subnet", sig, 0, 2 * sig.inputs[0][0]),)

    def _run(self, ctx: Context, x: Array, cs: Sequence[Array], inverse: bool) -> Any:
        channels = x.shape[1]
        a = ctx.children["subnet"](_broadcast_conditions(ctx.xp, x, cs))
        a_s, t = pieces.split_channels(a, (channels, channels))
        y, j = affine_step(ctx, x, t, inverse, a_s, **self._step_options())
        return y, _total((j,), inverse)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return self._run(ctx, x, cs, inverse=False)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return self._run(ctx, y, cs, inverse=True)

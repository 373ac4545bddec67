r"""gyoza's layers: masked couplings, activation normalisation, reflections and permutations
on chosen axes of a channels-last input.

Every layer takes gyoza's options ``shape`` and ``axes``: it acts on the input's ``axes``
(the batch axis is 0, so axes are at least 1, strictly ascending), whose sizes are ``shape``,
and sweeps over the other axes (:mod:`flowcore.transforms.axes`). Its math sees the input as
``(batch, M, n)``: the :math:`n = \prod` ``shape`` entries of the chosen axes (row-major, as
gyoza flattens them) at each of the :math:`M` swept positions. Unlike gyoza 0.3.0, whose
reshape is only right for contiguous axes, non-contiguous axes are right too. No layer takes
conditions.

Masks (:class:`Mask`, :class:`CheckerBoardMask`, :class:`HeavisideMask`) are not transforms
but options of the couplings: a 0/1 pattern over ``shape``; entries where the mask is 1 pass
unchanged, those where it is 0 are transformed.

References: gyoza 0.3.0 (github.com/TimHenry1995/gyoza, ``gyoza.modelling.flow_layers`` and
``gyoza.modelling.masks``), whose formulas these layers reproduce, with the deviations each
docstring names; Esser, Rombach & Ommer, "A Disentangling Invertible Interpretation Network
for Explaining Latent Representations", CVPR 2020 (arXiv:2004.13166), the flows gyoza builds;
Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR 2017.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, ClassVar

import numpy as np

from .. import initializers as init
from ..errors import ShapeError
from ..layers import Linear, ReLU, Sequential
from ..options import POSITIVE, OptionError, Range
from ..spec import Array, Child, Context, Namespace, ParamSpec, Signature, Spec, Subnet
from . import pieces
from .axes import AxesLayout, OnAxes, check_shape_and_axes
from .normalization import MIN_STD, finite_statistics

__all__ = [
    "ActivationNormalization",
    "AdditiveCoupling",
    "AffineCoupling",
    "CheckerBoardMask",
    "CheckerBoardPermutation",
    "HeavisideMask",
    "HeavisidePermutation",
    "Mask",
    "Reflection",
    "ShufflePermutation",
    "checkerboard_permutation",
    "heaviside_permutation",
    "rope_indices",
]

#: gyoza's floor of the scale of :class:`ActivationNormalization`.
MIN_SCALE = 1e-6


def _device(x: Array) -> Any:
    try:
        import array_api_compat

        return array_api_compat.device(x)
    except Exception:  # a namespace whose arrays array-api-compat does not know
        return None


# -- masks ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mask(Spec):
    r"""A 0/1 mask :math:`m` over the entries of ``shape`` on ``axes`` (gyoza's ``Mask``).

    ``mask`` is any array-like of ``shape`` (or flat, of :math:`n` entries) holding 0 and 1;
    it is stored flat, row-major, as a tuple of ints (so a spec holding it saves as JSON).
    :class:`CheckerBoardMask` and :class:`HeavisideMask` compute theirs.

    - :meth:`call`: :math:`m \odot x` (``is_positive``) or :math:`(1 - m) \odot x`,
      broadcast over the other axes;
    - :meth:`arrange`: the chosen axes flattened into one axis at position ``axes[0]``, the
      entries where :math:`m = 1` first (as gyoza's code does; its docstring says the
      opposite), then those where :math:`m = 0`, each in row-major order;
      :meth:`re_arrange` inverts it.

    References: gyoza 0.3.0, ``gyoza.modelling.masks.Mask``.
    """

    shape: tuple[int, ...]
    axes: tuple[int, ...]
    mask: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        shape, axes = check_shape_and_axes(self.label, self.shape, self.axes)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "axes", axes)
        n = math.prod(shape)
        pattern = self.pattern()
        if self.mask is None:
            if pattern is None:
                raise OptionError(f"{self.label}: option mask is required, got None")
            values = pattern
        else:
            try:
                values = np.asarray(self.mask, dtype=np.float64)
            except (TypeError, ValueError) as error:
                raise OptionError(
                    f"{self.label}: option mask must be an array of 0 and 1, got "
                    f"{self.mask!r} ({error})"
                ) from None
            if values.shape not in (shape, (n,)):
                raise OptionError(
                    f"{self.label}: option mask must have the shape {shape} (or {n} entries "
                    f"flat), got shape {values.shape}"
                )
            values = values.reshape(-1)
            if not np.isin(values, (0.0, 1.0)).all():
                raise OptionError(
                    f"{self.label}: option mask must hold only 0 and 1, got {values.tolist()}"
                )
            if pattern is not None and not np.array_equal(values, pattern):
                raise OptionError(
                    f"{self.label}: option mask must be its pattern {pattern.astype(int)} "
                    f"for shape {shape}, got {values.astype(int)}"
                )
        object.__setattr__(self, "mask", tuple(int(v) for v in values))
        super().__post_init__()

    def pattern(self) -> np.ndarray | None:
        """The flat float64 mask a subclass computes from ``shape``; None: given."""
        return None

    @property
    def n(self) -> int:
        return math.prod(self.shape)

    def values(self) -> np.ndarray:
        """The mask, flat (row-major over ``shape``), float64."""
        assert self.mask is not None
        return np.array(self.mask, dtype=np.float64)

    def order(self) -> np.ndarray:
        """The flat indices :meth:`arrange` reads: those where the mask is 1, then 0."""
        values = self.values()
        return np.concatenate([np.flatnonzero(values == 1), np.flatnonzero(values == 0)])

    def _layout(self, x: Array) -> AxesLayout:
        return AxesLayout.bind(self.label, x.shape[1:], self.shape, self.axes)

    def call(self, xp: Namespace, x: Array, is_positive: bool = True) -> Array:
        """:math:`m \\odot x` if ``is_positive`` else :math:`(1 - m) \\odot x`."""
        layout = self._layout(x)
        values = self.values() if is_positive else 1.0 - self.values()
        m = xp.asarray(values.reshape(1, 1, -1), dtype=x.dtype, device=_device(x))
        return layout.unflatten(xp, layout.flatten(xp, x) * m)

    def arrange(self, xp: Namespace, x: Array) -> Array:
        """``x`` with the chosen axes flattened into one at position ``axes[0]``, ordered by
        :meth:`order` (the mask's 1 entries first)."""
        layout = self._layout(x)
        index = xp.asarray(self.order(), device=_device(x))
        flat = xp.take(layout.flatten(xp, x), index, axis=2)
        others = [layout.sample_shape[a - 1] for a in layout.others]
        flat = xp.reshape(flat, (-1, *others, self.n))
        at = self.axes[0]  # every axis before axes[0] is a swept one
        order = [*range(at), len(others) + 1, *range(at, len(others) + 1)]
        return xp.permute_dims(flat, tuple(order))

    def re_arrange(self, xp: Namespace, x_new: Array) -> Array:
        """The inverse of :meth:`arrange`."""
        at = self.axes[0]
        sizes = [int(d) for d in x_new.shape[1:]]
        if len(sizes) < at or sizes[at - 1] != self.n:
            raise ShapeError(
                f"{self.label}: re_arrange needs {self.n} entries on axis {at}, got an input "
                f"of shape {tuple(sizes)} (batch excluded)"
            )
        others = sizes[: at - 1] + sizes[at:]
        rank = len(others) + len(self.axes)
        sample, rest = [], iter(others)
        for axis in range(1, rank + 1):
            sample.append(self.shape[self.axes.index(axis)] if axis in self.axes else next(rest))
        layout = AxesLayout.bind(self.label, sample, self.shape, self.axes)
        order = [0, *range(1, at), *range(at + 1, len(others) + 2), at]
        flat = xp.reshape(xp.permute_dims(x_new, tuple(order)), (-1, layout.m, self.n))
        index = xp.asarray(np.argsort(self.order()), device=_device(x_new))
        return layout.unflatten(xp, xp.take(flat, index, axis=2))


@dataclasses.dataclass(frozen=True)
class CheckerBoardMask(Mask):
    r"""gyoza's checkerboard mask on any number of axes: :math:`m[i_1, \ldots, i_k] =
    (i_1 + \cdots + i_k) \bmod 2`, so the origin cell is 0 (transformed).

    References: gyoza 0.3.0, ``gyoza.modelling.masks.CheckerBoard``.
    """

    def pattern(self) -> np.ndarray:
        return (np.indices(self.shape).sum(axis=0) % 2).reshape(-1).astype(np.float64)


@dataclasses.dataclass(frozen=True)
class HeavisideMask(Mask):
    r"""gyoza's Heaviside mask: the first :math:`\lfloor n/2 \rfloor` entries (flat,
    row-major) 0, the rest 1.

    References: gyoza 0.3.0, ``gyoza.modelling.masks.Heaviside``.
    """

    def pattern(self) -> np.ndarray:
        values = np.ones(math.prod(self.shape))
        values[: values.size // 2] = 0.0
        return values


# -- couplings --------------------------------------------------------------------------------


def gyoza_subnet(n: int) -> Sequential:
    """gyoza's tutorial subnet on the flattened selection: ``Dense(4n, relu) -> Dense(n)``
    as ``Sequential(Linear(4n), ReLU(), Linear())`` (the last width is what the coupling
    asks for)."""
    return Sequential(layers=(Linear(4 * n), ReLU(), Linear()))


@dataclasses.dataclass(frozen=True)
class _Coupling(OnAxes):
    r"""gyoza's ``Coupling``: :math:`x_1 = m \odot x`, :math:`p = g(x_1)`,
    :math:`y = x_1 + (1 - m) \odot f(x, p)`; the inverse :math:`y_1 = m \odot y`,
    :math:`x = y_1 + (1 - m) \odot f^{-1}(y, g(y_1))`."""

    #: How many values per entry the subnet predicts (1: a shift; 2: a log-scale and a shift).
    COEFFICIENTS: ClassVar[int] = 1
    SUBNET: ClassVar[str] = "compute_coupling_parameters"

    mask: Mask
    subnet: Subnet | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.mask.shape, self.mask.axes) != (self.shape, self.axes):
            raise OptionError(
                f"{self.label}: option mask must have the layer's shape {self.shape} and axes "
                f"{self.axes}, got a {type(self.mask).__name__} of shape {self.mask.shape} "
                f"and axes {self.mask.axes}"
            )

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        return [
            ParamSpec(
                "mask",
                (self.n,),
                init.array(self.mask.values()),
                trainable=False,
                constraint="fixed",
            )
        ]

    def children(self, sig: Signature) -> Sequence[Child]:
        net = self.subnet if self.subnet is not None else gyoza_subnet(self.n)
        return [Child(self.SUBNET, net, ((self.n,),), outputs=((self.COEFFICIENTS * self.n,),))]

    def _coupling_parameters(self, ctx: Context, layout: AxesLayout, z1: Array) -> Array:
        """:math:`g` applied to each swept position's masked entries: ``(batch, M, k n)``."""
        xp = ctx.xp
        p = ctx.children[self.SUBNET](xp.reshape(z1, (-1, self.n)))
        return xp.reshape(p, (-1, layout.m, self.COEFFICIENTS * self.n))

    def _couple(
        self, ctx: Context, z: Array, p: Array, inverse: bool
    ) -> tuple[Array, Array | None]:
        """:math:`f(z, p)` (or :math:`f^{-1}`) and its forward log-det terms per entry."""
        raise NotImplementedError

    def _run(self, ctx: Context, x: Array, inverse: bool) -> tuple[Array, Any]:
        xp = ctx.xp
        layout = self.layout(x)
        z = layout.flatten(xp, x)
        m = xp.reshape(ctx.params["mask"], (1, 1, self.n))
        z1 = m * z
        coupled, log_scale = self._couple(
            ctx, z, self._coupling_parameters(ctx, layout, z1), inverse
        )
        y = layout.unflatten(xp, z1 + (1.0 - m) * coupled)
        if log_scale is None or not ctx.jac:
            return y, 0.0
        log_det = xp.sum((1.0 - m) * log_scale, axis=(1, 2))
        return y, -log_det if inverse else log_det

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return self._run(ctx, x, inverse=False)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return self._run(ctx, y, inverse=True)


@dataclasses.dataclass(frozen=True)
class AdditiveCoupling(_Coupling):
    r"""gyoza's additive coupling (NICE) on chosen axes, with a mask :math:`m`:

    .. math::

        x_1 = m \odot x, \qquad y = x_1 + (1 - m) \odot (x + g(x_1)),

    and the inverse :math:`y_1 = m \odot y`, :math:`x = y_1 + (1 - m) \odot (y - g(y_1))`.

    Log-det: 0 (volume preserving).

    Options: ``shape``, ``axes``; ``mask`` a :class:`Mask` of the same shape and axes;
    ``subnet`` a portable :class:`~flowcore.Subnet` for :math:`g`, bound from the :math:`n`
    entries of the chosen axes, flattened, to :math:`n` (child
    ``compute_coupling_parameters``, gyoza's name), and applied at each swept position.
    Left None it is gyoza's tutorial net ``Sequential(Linear(4n), ReLU(), Linear())``
    (gyoza's ``Dense(4N, relu) -> Dense(N)``; flowcore's layers start as PyTorch's, not
    Keras' Glorot). Buffer ``mask`` (n,), the mask's values.

    Deviation from gyoza: gyoza hands :math:`g` the whole masked input, so its net may mix
    the swept positions; here :math:`g` sees one position's entries at a time. The two agree
    when the axes cover every non-batch axis (gyoza's tutorial).

    References: gyoza 0.3.0, ``AdditiveCoupling``; Dinh, Krueger & Bengio, "NICE", ICLR 2015.
    """

    def _couple(
        self, ctx: Context, z: Array, p: Array, inverse: bool
    ) -> tuple[Array, Array | None]:
        return (z - p if inverse else z + p), None


@dataclasses.dataclass(frozen=True)
class AffineCoupling(_Coupling):
    r"""An affine coupling on chosen axes, with a mask :math:`m` (RealNVP):

    .. math::

        x_1 = m \odot x, \qquad (a, t) = g(x_1), \qquad s = 0.636\,\alpha \arctan(a),

        y = x_1 + (1 - m) \odot (x \odot e^{s} + t),

    and the inverse :math:`y_1 = m \odot y`,
    :math:`x = y_1 + (1 - m) \odot (y - t) \odot e^{-s}` with :math:`(a, t) = g(y_1)`.

    Log-det: :math:`\sum (1 - m) \odot s` over the entries and swept positions of a sample
    (gyoza 0.2.2's affine coupling summed the unmasked :math:`s`, which was wrong; 0.3.0
    disables it).

    Options as :class:`AdditiveCoupling`; the subnet predicts :math:`2n` values per swept
    position, :math:`a` first, then :math:`t`. ``clamp`` :math:`\alpha`: FrEIA's ATAN soft
    clamp bounds :math:`s` to :math:`(-\alpha, \alpha)` (0.636 is FrEIA's constant);
    ``clamp=None`` uses :math:`s = a` unbounded, as gyoza 0.2.2 did.

    References: gyoza 0.2.2, ``AffineCoupling``; Dinh, Sohl-Dickstein & Bengio, "Density
    estimation using Real NVP", ICLR 2017; Ardizzone et al., FrEIA, the ATAN clamp.
    """

    COEFFICIENTS: ClassVar[int] = 2

    clamp: Annotated[float, POSITIVE] | None = 2.0

    def _couple(
        self, ctx: Context, z: Array, p: Array, inverse: bool
    ) -> tuple[Array, Array | None]:
        xp, n = ctx.xp, self.n
        a, t = p[:, :, :n], p[:, :, n:]
        s = a if self.clamp is None else pieces.soft_clamp(xp, a, self.clamp, "atan")
        return ((z - t) * xp.exp(-s) if inverse else z * xp.exp(s) + t), s


# -- activation normalisation -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ActivationNormalization(OnAxes):
    r"""gyoza's activation normalisation: a location and a scale per entry of the chosen
    axes, broadcast over the other axes,

    .. math::

        y = (x - l) / \hat s, \qquad x = \hat s\, y + l, \qquad
        \hat s = \max(s, 10^{-6}).

    Log-det: :math:`-M \sum \log \hat s`, :math:`M` the product of the other non-batch
    sizes (a constant per sample), forward; minus that inverse.

    Parameters: ``location`` :math:`l` and ``scale`` :math:`s`, trainable, of shape
    ``shape``, starting at 0 and 1 (the identity). gyoza keeps :math:`s` positive with a
    constraint applied after each optimiser step and clips it to :math:`10^{-6}` in the map;
    flowcore clips in the map only.

    ``data_init=True`` (gyoza 0.3.0 has none; 0.2.2 had one): the first call, in either
    direction, sets per entry :math:`l = \mu` and :math:`s = \sigma`, the mean and the
    Bessel-corrected standard deviation of the call's input over the batch and the swept
    positions, so that a first forward batch comes out with zero mean and unit variance per
    entry (samples holding a NaN or inf left out); a :math:`\sigma \le 10^{-6}(1 + |\mu|)`
    gives :math:`s = 1`. As
    :class:`flowcore.ActNorm`, the choice is an ``xp.where`` on the buffer ``initialised``
    (shape (1,), present only with ``data_init``), and the values and the flag are written
    back after the call, so a saved model never re-initialises.

    References: gyoza 0.3.0, ``ActivationNormalization``; Kingma & Dhariwal, "Glow",
    NeurIPS 2018; Esser, Rombach & Ommer 2020.
    """

    data_init: bool = False

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        params = [
            ParamSpec("location", self.shape, init.zeros(self.shape)),
            ParamSpec("scale", self.shape, init.constant(self.shape, 1.0)),
        ]
        if self.data_init:
            params.append(ParamSpec("initialised", (1,), init.zeros((1,)), trainable=False))
        return params

    def _statistics(self, xp: Namespace, z: Array) -> tuple[Array, Array]:
        """Per entry mean and standard deviation (1 where too small) of ``z`` (B, M, n)."""
        mean, var = finite_statistics(xp, z, (0, 1))
        floor = MIN_STD * (1.0 + xp.abs(mean))
        std = xp.sqrt(xp.where(var > floor * floor, var, xp.zeros_like(var) + 1.0))
        return mean, std

    def _affine(self, ctx: Context, z: Array) -> tuple[Array, Array]:
        xp, params = ctx.xp, ctx.params
        location = xp.reshape(params["location"], (1, 1, self.n))
        scale = xp.reshape(params["scale"], (1, 1, self.n))
        if self.data_init:
            done = params["initialised"] > 0.0
            mean, std = self._statistics(xp, z)
            location = xp.where(done, location, mean)
            scale = xp.where(done, scale, std)
            ctx.update("location", xp.reshape(location, self.shape))
            ctx.update("scale", xp.reshape(scale, self.shape))
            ctx.update("initialised", xp.zeros_like(params["initialised"]) + 1.0)
        scale = xp.where(scale > MIN_SCALE, scale, xp.zeros_like(scale) + MIN_SCALE)
        return location, scale

    def _log_det(self, ctx: Context, layout: AxesLayout, scale: Array) -> Any:
        return -layout.m * ctx.xp.sum(ctx.xp.log(scale)) if ctx.jac else 0.0

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        xp, layout = ctx.xp, self.layout(x)
        z = layout.flatten(xp, x)
        location, scale = self._affine(ctx, z)
        return layout.unflatten(xp, (z - location) / scale), self._log_det(ctx, layout, scale)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        xp, layout = ctx.xp, self.layout(y)
        z = layout.flatten(xp, y)
        location, scale = self._affine(ctx, z)
        log_det = self._log_det(ctx, layout, scale)
        return layout.unflatten(xp, z * scale + location), -log_det if ctx.jac else 0.0


# -- reflections ------------------------------------------------------------------------------


def _unit_rows(shape: tuple[int, int]) -> Any:
    def draw(rng: np.random.Generator) -> np.ndarray:
        v = rng.uniform(-1.0, 1.0, shape)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return draw


@dataclasses.dataclass(frozen=True)
class Reflection(OnAxes):
    r"""gyoza's reflections: ``reflection_count`` :math:`R` Householder reflections of the
    flattened entries of the chosen axes, at every swept position,

    .. math::

        x \leftarrow x - 2\, (x \cdot \hat v_r)\, \hat v_r, \qquad
        \hat v_r = v_r / \lVert v_r \rVert, \qquad r = 0, \ldots, R - 1,

    and the inverse the same reflections in reverse order (each is its own inverse).

    Log-det: 0 (orthogonal).

    Parameter ``normals`` (R, n), trainable, drawn uniform(-1, 1) from the build seed and
    normalised per row. gyoza keeps the rows unit with a ``UnitNorm`` constraint after each
    optimiser step; here the map normalises them (:math:`\hat v_r`), so any values keep it a
    reflection, and trained and loaded ones alike. ``reflection_count`` must be at least 1.

    ``normalize=False`` applies the stored rows as they are, :math:`\hat v_r = v_r`, as gyoza
    does: what its imports use (:mod:`flowcore.interop.gyoza`), since Keras' ``UnitNorm``
    divides by :math:`\lVert v \rVert + 10^{-7}`, so a trained gyoza model's rows are of norm
    :math:`1 - 10^{-7}` and its map is a reflection only to about :math:`10^{-7}` (its
    log-det, taken as 0, is then off by about :math:`-4 \cdot 10^{-7}` per reflection, and
    its inverse by as much). With it, nothing keeps the rows unit but the caller.

    References: gyoza 0.3.0, ``Reflection``; Tomczak & Welling, "Improving variational
    auto-encoders using Householder flow", 2016.
    """

    reflection_count: Annotated[int, Range(1, None)]
    normalize: bool = True

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        shape = (self.reflection_count, self.n)
        return [ParamSpec("normals", shape, _unit_rows(shape))]

    def _reflect(self, ctx: Context, x: Array, order: Sequence[int]) -> Array:
        xp, layout = ctx.xp, self.layout(x)
        z = layout.flatten(xp, x)
        normals = ctx.params["normals"]
        for r in order:
            v = normals[r, :]
            if self.normalize:
                v = v / xp.sqrt(xp.sum(v * v))
            z = z - 2.0 * xp.sum(z * v, axis=2, keepdims=True) * v
        return layout.unflatten(xp, z)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return self._reflect(ctx, x, range(self.reflection_count)), 0.0

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return self._reflect(ctx, y, range(self.reflection_count - 1, -1, -1)), 0.0


# -- permutations -----------------------------------------------------------------------------


def heaviside_permutation(n: int) -> np.ndarray:
    """gyoza's Heaviside permutation: ``[n//2, ..., n-1, 0, ..., n//2 - 1]`` (int64)."""
    return np.concatenate([np.arange(n // 2, n), np.arange(n // 2)]).astype(np.int64)


def rope_indices(shape: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """gyoza's "rope" through a tensor of ``shape``: an n-D snake (boustrophedon) path from
    the origin, each step moving the last axis that can still move in its direction, and
    reversing the direction of each axis that cannot (a carry to the axis before it)."""
    index, direction = [0] * len(shape), [1] * len(shape)
    yield tuple(index)
    for _ in range(math.prod(shape) - 1):
        for axis in reversed(range(len(shape))):
            at_end = index[axis] == (shape[axis] - 1 if direction[axis] == 1 else 0)
            if at_end:
                direction[axis] = -direction[axis]
                continue
            index[axis] += direction[axis]
            break
        yield tuple(index)


def checkerboard_permutation(shape: Sequence[int]) -> np.ndarray:
    """gyoza's checkerboard permutation: ``arange(n).reshape(shape)`` read along the rope
    (:func:`rope_indices`), consecutive pairs swapped (the last entry stays when n is odd),
    written back along the rope and flattened (int64). E.g. ``[2, 4]`` gives
    ``[1, 0, 3, 2, 5, 4, 7, 6]``."""
    shape = tuple(int(s) for s in shape)
    grid = np.arange(math.prod(shape)).reshape(shape)
    rope = list(rope_indices(shape))
    values = [grid[i] for i in rope]
    for k in range(0, len(values) - 1, 2):
        values[k], values[k + 1] = values[k + 1], values[k]
    out = np.empty_like(grid)
    for i, v in zip(rope, values, strict=True):
        out[i] = v
    return out.reshape(-1).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class _Permutation(OnAxes):
    r"""gyoza's ``Permutation``: :math:`y_{\mathrm{flat}}[i] = x_{\mathrm{flat}}[\pi_i]` on
    the flattened chosen axes at every swept position, the inverse gathering with
    :math:`\mathrm{argsort}(\pi)`. Log-det 0."""

    def permutation(self) -> Any:
        """The initializer of the buffer ``permutation``."""
        raise NotImplementedError

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        return [
            ParamSpec(
                "permutation",
                (self.n,),
                self.permutation(),
                trainable=False,
                kind="index",
                constraint="permutation",
            )
        ]

    def _gather(self, ctx: Context, x: Array, index: Array) -> Array:
        xp, layout = ctx.xp, self.layout(x)
        return layout.unflatten(xp, xp.take(layout.flatten(xp, x), index, axis=2))

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return self._gather(ctx, x, ctx.params["permutation"]), 0.0

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return self._gather(ctx, y, ctx.xp.argsort(ctx.params["permutation"])), 0.0


@dataclasses.dataclass(frozen=True)
class ShufflePermutation(_Permutation):
    r"""gyoza's random permutation of the flattened chosen axes:
    :math:`y_{\mathrm{flat}}[i] = x_{\mathrm{flat}}[\pi_i]`, :math:`\pi` drawn from the build
    seed (gyoza draws a new one on every construction, even from a config; here the seed
    fixes it and the buffer carries it). Log-det 0.

    Buffer ``permutation`` (n,) int64, a permutation (``set_params`` refuses any other).

    References: gyoza 0.3.0, ``ShufflePermutation``.
    """

    def permutation(self) -> Any:
        return init.permutation(self.n)


@dataclasses.dataclass(frozen=True)
class HeavisidePermutation(_Permutation):
    r"""gyoza's Heaviside permutation: :math:`\pi = [\lfloor n/2 \rfloor, \ldots, n - 1, 0,
    \ldots, \lfloor n/2 \rfloor - 1]`, :math:`y_{\mathrm{flat}}[i] =
    x_{\mathrm{flat}}[\pi_i]`: the two halves of the flattened chosen axes swap (what
    :class:`HeavisideMask` pairs with). Log-det 0. Buffer ``permutation`` (n,) int64.

    References: gyoza 0.3.0, ``HeavisidePermutation``.
    """

    def permutation(self) -> Any:
        return init.array(heaviside_permutation(self.n))


@dataclasses.dataclass(frozen=True)
class CheckerBoardPermutation(_Permutation):
    r"""gyoza's checkerboard permutation, in exactly gyoza's "rope" order
    (:func:`checkerboard_permutation`): neighbours along an n-D snake path through ``shape``
    swap, :math:`y_{\mathrm{flat}}[i] = x_{\mathrm{flat}}[\pi_i]`. It is its own inverse;
    for an even :math:`n` it maps :class:`CheckerBoardMask`'s 1 entries onto its 0 entries.
    Log-det 0. Buffer ``permutation`` (n,) int64.

    Examples: ``[4]`` gives :math:`\pi = [1, 0, 3, 2]`; ``[3, 5]`` gives
    ``[1, 0, 3, 2, 9, 6, 5, 8, 7, 4, 11, 10, 13, 12, 14]``.

    References: gyoza 0.3.0, ``CheckerBoardPermutation``.
    """

    def permutation(self) -> Any:
        return init.array(checkerboard_permutation(self.shape))

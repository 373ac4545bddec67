r"""Reshapes and topology: i-RevNet and Haar downsampling and upsampling, Flatten, Reshape,
Split and Concat.

Each moves values around without changing them (Haar mixes them by a fixed orthogonal 4x4
map), so outputs match FrEIA's element by element. Written with ``reshape``,
``permute_dims``, ``concat``, slicing and arithmetic only: no convolution, no copies of the
caller's arrays that are then written to (FrEIA's ``HaarDownsampling`` inverse scales its
input in place; flowcore never writes to an input).

Images are ``(C, H, W)`` after the batch axis. Split and Concat use the general form of the
contract: Split has one input and several outputs, Concat several inputs and one output.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Annotated, Any

from ..errors import ShapeError
from ..options import NON_NEGATIVE, OptionError, Range
from ..spec import Array, Context, Namespace, Shape, SimpleTransform, Transform

__all__ = [
    "Concat",
    "Flatten",
    "HaarDownsampling",
    "HaarUpsampling",
    "IRevNetDownsampling",
    "IRevNetUpsampling",
    "Reshape",
    "Split",
]

#: A count of at least one.
_COUNT = Range(1, None)


def _no_conditions(label: str, conditions: Sequence[Shape]) -> None:
    if conditions:
        raise ShapeError(f"{label}: takes no conditions, got {len(conditions)}")


def _image(label: str, shape: Shape, conditions: Sequence[Shape], up: bool) -> Shape:
    """Check an image ``(C, H, W)``: even H and W to downsample, C a multiple of 4 to
    upsample; returns the output shape."""
    _no_conditions(label, conditions)
    if len(shape) != 3:
        raise ShapeError(
            f"{label}: input must be an image (C, H, W), got shape {tuple(shape)} "
            f"(rank {len(shape)})"
        )
    c, h, w = shape
    if up:
        if c % 4:
            raise ShapeError(
                f"{label}: input channels must be a multiple of 4, got C={c} in {tuple(shape)}"
            )
        return (c // 4, 2 * h, 2 * w)
    if h % 2 or w % 2:
        raise ShapeError(
            f"{label}: input height and width must be even, got H={h}, W={w} in {tuple(shape)}"
        )
    return (4 * c, h // 2, w // 2)


# -- 2x2 space-to-depth -------------------------------------------------------------------


def space_to_depth(xp: Namespace, x: Array, legacy: bool) -> Array:
    r"""``(B, C, H, W) -> (B, 4C, H/2, W/2)``: the 2x2 patch ``x[c, 2h+i, 2w+j]`` goes to
    channel ``4c + 2i + j`` (``legacy=False``, FrEIA's convolution kernel) or
    ``(2i + j) C + c`` (``legacy=True``, FrEIA's i-RevNet reshape)."""
    c, h, w = (int(d) for d in x.shape[1:])
    t = xp.reshape(x, (-1, c, h // 2, 2, w // 2, 2))  # b c h i w j
    order = (0, 3, 5, 1, 2, 4) if legacy else (0, 1, 3, 5, 2, 4)
    return xp.reshape(xp.permute_dims(t, order), (-1, 4 * c, h // 2, w // 2))


def depth_to_space(xp: Namespace, y: Array, legacy: bool) -> Array:
    """The inverse of :func:`space_to_depth`: ``(B, 4C, H, W) -> (B, C, 2H, 2W)``."""
    c4, h, w = (int(d) for d in y.shape[1:])
    c = c4 // 4
    if legacy:  # b i j c h w -> b c h i w j
        t = xp.permute_dims(xp.reshape(y, (-1, 2, 2, c, h, w)), (0, 3, 4, 1, 5, 2))
    else:  # b c i j h w -> b c h i w j
        t = xp.permute_dims(xp.reshape(y, (-1, c, 2, 2, h, w)), (0, 1, 4, 2, 5, 3))
    return xp.reshape(t, (-1, c, 2 * h, 2 * w))


@dataclasses.dataclass(frozen=True)
class IRevNetDownsampling(SimpleTransform):
    r"""i-RevNet's invertible downsampling: each 2x2 patch of a channel becomes four channels,
    ``(C, H, W) -> (4C, H/2, W/2)``.

    With the patch ``x[c, 2h+i, 2w+j]`` (``i, j`` in {0, 1}):

    - ``legacy_backend=False`` (default, FrEIA's strided-convolution kernel):
      :math:`y[4c + 2i + j, h, w] = x[c, 2h+i, 2w+j]`, channels ``a1, b1, c1, d1, a2, ...``;
    - ``legacy_backend=True`` (FrEIA's reshape from pytorch-i-revnet):
      :math:`y[(2i + j) C + c, h, w] = x[c, 2h+i, 2w+j]`, channels ``a1, a2, ..., b1, b2, ...``.

    Log-det: 0 (a permutation). No parameters. H and W must be even.

    References: Jacobsen, Smeulders and Oyallon, "i-RevNet: Deep Invertible Networks",
    ICLR 2018; FrEIA (github.com/vislearn/FrEIA), ``IRevNetDownsampling``.
    """

    legacy_backend: bool = False

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        return _image(self.label, shape, conditions, up=False)

    def input_shapes(
        self, outputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        return (_image(self.label, outputs[0], conditions, up=True),)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return space_to_depth(ctx.xp, x, self.legacy_backend), 0.0

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return depth_to_space(ctx.xp, y, self.legacy_backend), 0.0


@dataclasses.dataclass(frozen=True)
class IRevNetUpsampling(SimpleTransform):
    r"""The inverse of :class:`IRevNetDownsampling`: ``(4C, H, W) -> (C, 2H, 2W)``, with the
    same two channel orders (``legacy_backend``):
    :math:`y[c, 2h+i, 2w+j] = x[4c + 2i + j, h, w]` (False) or :math:`x[(2i + j) C + c, h, w]`
    (True).

    Log-det: 0. No parameters. The input channels must be a multiple of 4.

    References: Jacobsen et al., ICLR 2018; FrEIA, ``IRevNetUpsampling``.
    """

    legacy_backend: bool = False

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        return _image(self.label, shape, conditions, up=True)

    def input_shapes(
        self, outputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        return (_image(self.label, outputs[0], conditions, up=False),)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return depth_to_space(ctx.xp, x, self.legacy_backend), 0.0

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return space_to_depth(ctx.xp, y, self.legacy_backend), 0.0


# -- Haar wavelets ------------------------------------------------------------------------

#: The signs of the Haar map on a patch ``(x00, x01, x10, x11)``: average, vertical,
#: horizontal and diagonal wavelet, in FrEIA's order. Symmetric, and ``H @ H = 4 I``.
HAAR_SIGNS = ((1, 1, 1, 1), (1, -1, 1, -1), (1, 1, -1, -1), (1, -1, -1, 1))


def _signed_sum(parts: Sequence[Array], signs: Sequence[int]) -> Array:
    """``sum_k signs[k] * parts[k]``, added left to right as a 2x2 convolution does."""
    total = parts[0] if signs[0] > 0 else -parts[0]
    for part, sign in zip(parts[1:], signs[1:], strict=True):
        total = total + part if sign > 0 else total - part
    return total


def _stack(xp: Namespace, parts: Sequence[Array], axis: int) -> Array:
    """``stack(parts, axis)`` for (B, C, H, W) parts, with ``reshape`` and ``concat``."""
    c, h, w = (int(d) for d in parts[0].shape[1:])
    shape = (-1, 1, c, h, w) if axis == 1 else (-1, c, 1, h, w)
    return xp.concat([xp.reshape(p, shape) for p in parts], axis=axis)


def haar_down(xp: Namespace, x: Array, factor: float, by_wavelet: bool) -> Array:
    r"""``(B, C, H, W) -> (B, 4C, H/2, W/2)``: ``factor * H @ patch`` per channel and patch,
    wavelet ``k`` of channel ``c`` at channel ``4c + k``, or ``kC + c`` when ``by_wavelet``."""
    c, h, w = (int(d) for d in x.shape[1:])
    t = xp.reshape(space_to_depth(xp, x, legacy=False), (-1, c, 4, h // 2, w // 2))
    patch = [t[:, :, k, :, :] for k in range(4)]
    wavelets = [_signed_sum(patch, signs) for signs in HAAR_SIGNS]
    y = _stack(xp, wavelets, 1 if by_wavelet else 2)
    return xp.reshape(y, (-1, 4 * c, h // 2, w // 2)) * factor


def haar_up(xp: Namespace, y: Array, factor: float, by_wavelet: bool) -> Array:
    r"""``(B, 4C, H, W) -> (B, C, 2H, 2W)``: ``H @ (factor * wavelets)`` per channel and
    patch, the wavelets read in :func:`haar_down`'s channel order."""
    c4, h, w = (int(d) for d in y.shape[1:])
    c = c4 // 4
    t = xp.reshape(y * factor, (-1, 4, c, h, w) if by_wavelet else (-1, c, 4, h, w))
    wavelets = [t[:, k, :, :, :] if by_wavelet else t[:, :, k, :, :] for k in range(4)]
    patch = [_signed_sum(wavelets, signs) for signs in HAAR_SIGNS]  # H is symmetric
    return depth_to_space(xp, xp.reshape(_stack(xp, patch, 2), (-1, c4, h, w)), legacy=False)


@dataclasses.dataclass(frozen=True)
class _Haar(SimpleTransform):
    order_by_wavelet: bool = False
    rebalance: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rebalance == 0:
            raise OptionError(f"{self.label}: option rebalance must be != 0, got 0.0")

    def _down(self, ctx: Context, x: Array) -> tuple[Array, Any]:
        y = haar_down(ctx.xp, x, 0.5 * self.rebalance, self.order_by_wavelet)
        return y, self._log_det(ctx, x, 1.0)

    def _up(self, ctx: Context, y: Array) -> tuple[Array, Any]:
        x = haar_up(ctx.xp, y, 0.5 / self.rebalance, self.order_by_wavelet)
        return x, self._log_det(ctx, y, -1.0)

    def _log_det(self, ctx: Context, x: Array, sign: float) -> float:
        if not ctx.jac:
            return 0.0
        numel = math.prod([int(d) for d in x.shape[1:]])  # a list: torch.compile traces it
        return sign * numel * math.log(abs(self.rebalance))


@dataclasses.dataclass(frozen=True)
class HaarDownsampling(_Haar):
    r"""Haar wavelet downsampling: each 2x2 patch :math:`p = (x_{00}, x_{01}, x_{10},
    x_{11})` of a channel becomes its average, vertical, horizontal and diagonal wavelets,
    ``(C, H, W) -> (4C, H/2, W/2)``:

    .. math:: (a, v, h, d) = \tfrac{r}{2} H p, \quad
        H = \begin{pmatrix} 1&1&1&1\\ 1&-1&1&-1\\ 1&1&-1&-1\\ 1&-1&-1&1 \end{pmatrix}

    with :math:`r` = ``rebalance`` (!= 0; FrEIA suggests ``0.5`` for stability). Output
    channels ``a1, v1, h1, d1, a2, ...`` (``order_by_wavelet=False``) or
    ``a1, a2, ..., v1, v2, ..., h1, ..., d1, ...`` (True: the averages are the first
    quarter, so a Split can take them off). Inverse :math:`p = \tfrac{1}{2r} H (a, v, h, d)`.

    Log-det: :math:`N \log|r|` forward, :math:`-N \log|r|` inverse, N = C·H·W (the map is
    :math:`r` times an orthogonal one). No parameters. H and W must be even.

    References: Haar, "Zur Theorie der orthogonalen Funktionensysteme", Math. Ann. 1910;
    Ardizzone et al., "Guided Image Generation with Conditional Invertible Neural Networks",
    2019; FrEIA, ``HaarDownsampling``.
    """

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        return _image(self.label, shape, conditions, up=False)

    def input_shapes(
        self, outputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        return (_image(self.label, outputs[0], conditions, up=True),)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return self._down(ctx, x)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return self._up(ctx, y)


@dataclasses.dataclass(frozen=True)
class HaarUpsampling(_Haar):
    r"""The inverse of :class:`HaarDownsampling`: ``(4C, H, W) -> (C, 2H, 2W)``,
    :math:`p = \tfrac{1}{2r} H (a, v, h, d)` with the wavelets read in the channel order
    ``order_by_wavelet`` names.

    Log-det: :math:`-N \log|r|` forward, :math:`N \log|r|` inverse, N = 4C·H·W. No
    parameters. The input channels must be a multiple of 4.

    References: FrEIA, ``HaarUpsampling``.
    """

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        return _image(self.label, shape, conditions, up=True)

    def input_shapes(
        self, outputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        return (_image(self.label, outputs[0], conditions, up=False),)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return self._up(ctx, x)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return self._down(ctx, y)


# -- Flatten and Reshape ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Flatten(SimpleTransform):
    r"""Flattens each sample to a vector, ``(d_1, ..., d_n) -> (d_1 \cdots d_n,)``, in
    row-major (C) order; the inverse restores the bound input shape.

    Log-det: 0. No parameters.

    References: FrEIA, ``Flatten``.
    """

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        _no_conditions(self.label, conditions)
        return (math.prod(shape),)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return ctx.xp.reshape(x, (-1, *ctx.signature.outputs[0])), 0.0

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return ctx.xp.reshape(y, (-1, *ctx.signature.inputs[0])), 0.0


@dataclasses.dataclass(frozen=True)
class Reshape(SimpleTransform):
    r"""Reshapes each sample to ``output_dims`` (batch axis excluded), in row-major (C)
    order; the inverse restores the bound input shape. The sizes must agree:
    :math:`\prod` ``output_dims`` = :math:`\prod` input shape. Not spatially meaningful
    (``(3, 32, 32) -> (12, 16, 16)`` is no downsampling: use :class:`IRevNetDownsampling` or
    :class:`HaarDownsampling` for that).

    Log-det: 0. No parameters.

    References: FrEIA, ``Reshape``.
    """

    output_dims: tuple[Annotated[int, _COUNT], ...]

    def __post_init__(self) -> None:
        dims = self.output_dims
        if isinstance(dims, Sequence) and not isinstance(dims, str):
            object.__setattr__(self, "output_dims", tuple(_as_int(d) for d in dims))
        super().__post_init__()
        if not self.output_dims:
            raise OptionError(
                f"{self.label}: option output_dims must be a non-empty tuple of positive "
                "ints, got ()"
            )

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        _no_conditions(self.label, conditions)
        if math.prod(shape) != math.prod(self.output_dims):
            raise ShapeError(
                f"{self.label}: option output_dims {self.output_dims} must hold as many "
                f"values as the input: expected {math.prod(shape)} (input {tuple(shape)}), "
                f"got {math.prod(self.output_dims)}"
            )
        return tuple(self.output_dims)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return ctx.xp.reshape(x, (-1, *self.output_dims)), 0.0

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Any]:
        return ctx.xp.reshape(y, (-1, *ctx.signature.inputs[0])), 0.0


def _as_int(value: Any) -> Any:
    """A NumPy integer as an int; anything else as it is (the option check judges it)."""
    try:
        import operator

        return value if isinstance(value, bool) else operator.index(value)
    except TypeError:
        return value


# -- Split and Concat ---------------------------------------------------------------------


def _slice(x: Array, axis: int, start: int, stop: int) -> Array:
    """``x[start:stop]`` on ``axis``, indexing every axis (strict Array API)."""
    index: tuple[Any, ...] = (slice(None),) * axis + (slice(start, stop),)
    if axis < x.ndim - 1:
        index += (Ellipsis,)
    return x[index]


def _split(x: Array, axis: int, sizes: Sequence[int]) -> list[Array]:
    out, start = [], 0
    for size in sizes:
        out.append(_slice(x, axis, start, start + size))
        start += size
    return out


def _axis(label: str, dim: int, shape: Shape) -> None:
    if dim >= len(shape):
        raise ShapeError(
            f"{label}: option dim must be an axis of the input (batch axis excluded): "
            f"expected 0 <= dim < {len(shape)} for shape {tuple(shape)}, got {dim}"
        )


@dataclasses.dataclass(frozen=True)
class Split(Transform):
    r"""Splits its one input along axis ``dim`` into several outputs; the inverse
    concatenates them. ``dim=0`` is the channel axis (the batch axis is not counted).

    Sections, for an input of length L on ``dim``:

    - ``section_sizes`` a tuple: those sizes, which must sum to L;
    - ``section_sizes`` an int s: two sections, ``(s, L - s)`` (FrEIA master);
    - ``section_sizes=None``: ``n_sections`` parts as ``numpy.array_split`` makes them,
      the first ``L % n`` one longer.

    Log-det: 0. No parameters.

    References: FrEIA, ``Split`` (``FrEIA.modules.graph_topology``).
    """

    section_sizes: Annotated[int, _COUNT] | tuple[Annotated[int, _COUNT], ...] | None = None
    n_sections: Annotated[int, Range(2, None)] = 2
    dim: Annotated[int, NON_NEGATIVE] = 0

    def __post_init__(self) -> None:
        sizes = self.section_sizes
        if isinstance(sizes, Sequence) and not isinstance(sizes, str):
            object.__setattr__(self, "section_sizes", tuple(_as_int(s) for s in sizes))
        elif sizes is not None:
            object.__setattr__(self, "section_sizes", _as_int(sizes))
        super().__post_init__()
        if self.section_sizes == ():
            raise OptionError(
                f"{self.label}: option section_sizes must be an int, a non-empty tuple of "
                "ints or None, got ()"
            )

    @property
    def n_outputs(self) -> int:
        """How many outputs it makes (what :class:`~flowcore.Inverse` takes as inputs)."""
        sizes = self.section_sizes
        return self.n_sections if sizes is None else 2 if isinstance(sizes, int) else len(sizes)

    def input_shapes(
        self, outputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        (shape,) = Concat(self.dim).output_shapes(outputs, conditions)
        if tuple(self.output_shapes([shape], conditions)) != tuple(map(tuple, outputs)):
            raise ShapeError(f"{self.label}: cannot make the outputs {list(outputs)}")
        return (shape,)

    def sections(self, length: int) -> tuple[int, ...]:
        """The section sizes for an input of ``length`` on ``dim``."""
        sizes = self.section_sizes
        if sizes is None:
            n = self.n_sections
            if n > length:
                raise ShapeError(
                    f"{self.label}: option n_sections must be at most the length {length} "
                    f"of axis dim={self.dim}, got {n}"
                )
            return (length // n + 1,) * (length % n) + (length // n,) * (n - length % n)
        if isinstance(sizes, int):
            if sizes >= length:
                raise ShapeError(
                    f"{self.label}: option section_sizes as an int must be less than the "
                    f"length {length} of axis dim={self.dim}, got {sizes}"
                )
            return (sizes, length - sizes)
        if sum(sizes) != length:
            raise ShapeError(
                f"{self.label}: option section_sizes must sum to the length of axis "
                f"dim={self.dim}: expected a sum of {length}, got {sizes} (sum {sum(sizes)})"
            )
        return tuple(sizes)

    def output_shapes(
        self, inputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        _no_conditions(self.label, conditions)
        (shape,) = inputs
        _axis(self.label, self.dim, shape)
        d = self.dim
        return tuple((*shape[:d], size, *shape[d + 1 :]) for size in self.sections(shape[d]))

    def forward(
        self, ctx: Context, xs: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Any]:
        (x,) = xs
        sizes = [s[self.dim] for s in ctx.signature.outputs]
        return _split(x, self.dim + 1, sizes), 0.0

    def inverse(
        self, ctx: Context, ys: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Any]:
        return [ctx.xp.concat(list(ys), axis=self.dim + 1)], 0.0


@dataclasses.dataclass(frozen=True)
class Concat(Transform):
    r"""Concatenates two or more inputs along axis ``dim`` into one output; the inverse
    splits it back into the inputs' sizes. ``dim=0`` is the channel axis (the batch axis is
    not counted). The inputs must have the same rank and agree on every other axis.

    Log-det: 0. No parameters.

    References: FrEIA, ``Concat`` (``FrEIA.modules.graph_topology``).
    """

    n_inputs = None

    dim: Annotated[int, NON_NEGATIVE] = 0

    def output_shapes(
        self, inputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        _no_conditions(self.label, conditions)
        if len(inputs) < 2:
            raise ShapeError(f"{self.label}: needs two or more inputs, got {len(inputs)}")
        first = tuple(inputs[0])
        _axis(self.label, self.dim, first)
        d = self.dim
        for i, shape in enumerate(inputs[1:], 1):
            if len(shape) != len(first) or any(
                a != b for j, (a, b) in enumerate(zip(shape, first, strict=True)) if j != d
            ):
                raise ShapeError(
                    f"{self.label}: inputs must agree on every axis but dim={d}: expected "
                    f"input {i} like {first} on the other axes, got {tuple(shape)}"
                )
        return ((*first[:d], sum(s[d] for s in inputs), *first[d + 1 :]),)

    def forward(
        self, ctx: Context, xs: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Any]:
        return [ctx.xp.concat(list(xs), axis=self.dim + 1)], 0.0

    def inverse(
        self, ctx: Context, ys: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Any]:
        (y,) = ys
        sizes = [s[self.dim] for s in ctx.signature.inputs]
        return _split(y, self.dim + 1, sizes), 0.0

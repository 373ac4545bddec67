r"""The array namespace a spec computes with: the Array API plus a few extras.

Specs use only the functions in :data:`ARRAY_API_USED` (a subset of the Array API standard)
and the extras in :data:`EXTRAS`, which the standard lacks:

- ``linear(x, w, b)``: :math:`x w^\top + b` with ``w`` of shape (out, in); ``b`` may be
  None (no bias);
- ``conv2d(x, w, b, padding)``: 2-D cross-correlation, NCHW input, OIHW weight (``kh`` and
  ``kw`` may differ), stride 1, ``padding`` zeros on each side of H and W: an int, or a pair
  ``(ph, pw)`` (``ph`` rows above and below, ``pw`` columns left and right); ``b`` may be
  None;
- ``pad2d(x, padding)``: zeros around the last two axes, ``padding = (left, right, top,
  bottom)`` (non-negative, torch's ``F.pad`` / ``nn.ZeroPad2d`` order);
- ``relu(x)``, ``leaky_relu(x, slope)``, ``sigmoid(x)`` :math:`1 / (1 + e^{-x})`,
  ``elu(x, alpha)`` (:math:`x` where positive, else :math:`\alpha (e^x - 1)`) and
  ``softplus(x, beta, threshold)`` (:math:`\log(1 + e^{\beta x}) / \beta`, and :math:`x`
  where :math:`\beta x` > ``threshold``, as torch's).

Each backend builds its namespace with :func:`extend`, giving ``conv2d`` (which the standard
cannot express efficiently) and, where it has faster ones, any other extra; the rest default
to the Array API implementations in :data:`DEFAULT_EXTRAS`, written with the names in
:data:`ARRAY_API_USED` only, so that every namespace that has those has them. A third-party
backend does the same; ``tests/test_namespace.py`` checks the built-in ones, and
``tests/test_strict.py`` runs every conformance case under :func:`strict_namespace`
(``array-api-strict``, a test-time dependency), which proves the math uses the standard alone.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import BackendError

ARRAY_API_USED: tuple[str, ...] = (
    "abs", "all", "argmax", "argsort", "asarray", "astype", "atan", "broadcast_to", "clip",
    "concat", "cumulative_sum", "exp", "expm1", "float32", "float64", "int64", "isfinite",
    "log", "log1p",
    "logaddexp", "matmul",
    "max", "mean", "ones_like", "permute_dims", "reshape", "sign", "sqrt", "sum", "take", "tanh",
    "tril", "triu", "where", "zeros", "zeros_like",
)  # fmt: skip
EXTRAS: tuple[str, ...] = (
    "linear", "conv2d", "pad2d", "relu", "leaky_relu", "sigmoid", "elu", "softplus",
)  # fmt: skip
#: The extras each namespace must give :func:`extend`: the others have defaults.
REQUIRED_EXTRAS: tuple[str, ...] = ("conv2d",)


def conv_padding(padding: int | Sequence[int]) -> tuple[int, int]:
    """``conv2d``'s ``padding`` as ``(ph, pw)``: zeros above and below, left and right."""
    if isinstance(padding, int):
        return padding, padding
    ph, pw = padding
    return int(ph), int(pw)


def _default_linear(xp: Any) -> Callable[..., Any]:
    def linear(x: Any, w: Any, b: Any = None) -> Any:
        """``x @ w.T + b`` with ``w`` of shape (out, in); no bias when ``b`` is None."""
        y = xp.matmul(x, xp.permute_dims(w, (1, 0)))
        return y if b is None else y + b

    return linear


def _default_pad2d(xp: Any) -> Callable[..., Any]:
    def pad2d(x: Any, padding: Sequence[int]) -> Any:
        """Zeros around the last two axes: ``padding = (left, right, top, bottom)``.

        The zeros are ``zeros_like`` of a one-wide slice of ``x``, so they take its dtype and
        device and need no static batch size (Keras traces with an unknown one).
        """
        left, right, top, bottom = (int(p) for p in padding)
        if top or bottom:
            row = xp.zeros_like(x[..., 0:1, :])
            x = xp.concat([row] * top + [x] + [row] * bottom, axis=-2)
        if left or right:
            column = xp.zeros_like(x[..., 0:1])
            x = xp.concat([column] * left + [x] + [column] * right, axis=-1)
        return x

    return pad2d


def _default_relu(xp: Any) -> Callable[..., Any]:
    def relu(x: Any) -> Any:
        """``x`` where positive, else 0."""
        return xp.where(x > 0, x, xp.zeros_like(x))

    return relu


def _default_leaky_relu(xp: Any) -> Callable[..., Any]:
    def leaky_relu(x: Any, slope: float = 0.01) -> Any:
        """``x`` where positive, else ``slope * x``."""
        return xp.where(x > 0, x, slope * x)

    return leaky_relu


def _default_sigmoid(xp: Any) -> Callable[..., Any]:
    def sigmoid(x: Any) -> Any:
        """``1 / (1 + exp(-x))``, from ``exp(-|x|)`` so that nothing overflows."""
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    return sigmoid


def _default_elu(xp: Any) -> Callable[..., Any]:
    def elu(x: Any, alpha: float = 1.0) -> Any:
        """``x`` where positive, else ``alpha * expm1(x)``; the exponential sees only
        non-positive values, so neither branch nor its gradient overflows."""
        positive = x > 0
        return xp.where(positive, x, alpha * xp.expm1(xp.where(positive, xp.zeros_like(x), x)))

    return elu


def _default_softplus(xp: Any) -> Callable[..., Any]:
    def softplus(x: Any, beta: float = 1.0, threshold: float = 20.0) -> Any:
        """``log1p(exp(beta * x)) / beta``, and ``x`` where ``beta * x > threshold`` (torch's
        definition); the exponential sees at most ``threshold``."""
        scaled = beta * x
        linear = scaled > threshold
        soft = xp.log1p(xp.exp(xp.where(linear, xp.zeros_like(x), scaled))) / beta
        return xp.where(linear, x, soft)

    return softplus


#: Extra name -> ``make(xp)``, its Array API implementation on namespace ``xp``.
DEFAULT_EXTRAS: dict[str, Callable[[Any], Callable[..., Any]]] = {
    "linear": _default_linear,
    "pad2d": _default_pad2d,
    "relu": _default_relu,
    "leaky_relu": _default_leaky_relu,
    "sigmoid": _default_sigmoid,
    "elu": _default_elu,
    "softplus": _default_softplus,
}


def extend(xp: Any, **extras: Callable[..., Any]) -> types.SimpleNamespace:
    """A namespace with every public name of ``xp``, the given extras, and the defaults of
    the others.

    ``conv2d`` must be given (:data:`REQUIRED_EXTRAS`); the other extras may be, to override
    their defaults (:data:`DEFAULT_EXTRAS`). Keyword arguments that are not extras override
    names of ``xp`` (JAX's ``matmul`` at full precision, say); the defaults compute with the
    resulting namespace, so they see those overrides. A flat namespace object (not a wrapper
    with ``__getattr__``) keeps attribute lookups as cheap as on the module itself.
    """
    missing = [name for name in REQUIRED_EXTRAS if name not in extras]
    if missing:
        raise BackendError(f"namespace extras missing: {missing}")
    names = {k: v for k, v in vars(xp).items() if not k.startswith("_")}
    namespace = types.SimpleNamespace(**{**names, **extras})
    for name, make in DEFAULT_EXTRAS.items():
        if name not in extras:
            setattr(namespace, name, make(namespace))
    return namespace


def _numpy_conv2d(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, padding: int | Sequence[int]
) -> np.ndarray:
    ph, pw = conv_padding(padding)
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = w.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    # windows: (B, C, H', W', kh, kw); contract C, kh, kw with w (O, C, kh, kw)
    y = np.einsum("bchwij,ocij->bohw", windows, w, optimize=True)
    return y if b is None else y + b[None, :, None, None]


def numpy_namespace() -> types.SimpleNamespace:
    """The NumPy namespace the float64 reference executor computes with.

    Only ``conv2d`` is NumPy's own; the other extras are the Array API defaults.
    """
    import array_api_compat.numpy as xp

    return extend(xp, conv2d=_numpy_conv2d)


def array_api_conv2d(xp: Any) -> Callable[..., Any]:
    """``conv2d`` written with Array API functions only (``concat``, ``stack``,
    ``tensordot``, slicing): slow, for namespaces without a convolution of their own."""

    def zeros_like_axis(x: Any, axis: int, size: int) -> Any:
        shape = list(x.shape)
        shape[axis] = size
        return xp.zeros(tuple(shape), dtype=x.dtype, device=x.device)

    def pad(x: Any, padding: tuple[int, int]) -> Any:
        for axis, size in zip((2, 3), padding, strict=True):
            if size:
                side = zeros_like_axis(x, axis, size)
                x = xp.concat([side, x, side], axis=axis)
        return x

    def conv2d(x: Any, w: Any, b: Any, padding: int | Sequence[int]) -> Any:
        x = pad(x, conv_padding(padding))
        out_c, in_c, kh, kw = (int(d) for d in w.shape)
        height, width = int(x.shape[2]) - kh + 1, int(x.shape[3]) - kw + 1
        # patches[b, c, u*kw + v, i, j] = x~[b, c, i + u, j + v]
        patches = xp.stack(
            [x[:, :, u : u + height, v : v + width] for u in range(kh) for v in range(kw)],
            axis=2,
        )
        kernel = xp.reshape(w, (out_c, in_c, kh * kw))
        y = xp.tensordot(patches, kernel, axes=([1, 2], [1, 2]))  # (B, H', W', O)
        y = xp.permute_dims(y, (0, 3, 1, 2))
        return y if b is None else y + b[None, :, None, None]

    return conv2d


def restrict(xp: Any, names: Sequence[str] | None = None) -> types.SimpleNamespace:
    """A namespace with only ``names`` of ``xp`` (default: :data:`ARRAY_API_USED` and
    :data:`EXTRAS`): a spec that uses anything else fails with an AttributeError naming it."""
    names = (*ARRAY_API_USED, *EXTRAS) if names is None else names
    return types.SimpleNamespace(**{name: getattr(xp, name) for name in names})


def strict_namespace(only_used: bool = True) -> types.SimpleNamespace:
    """The namespace of ``array-api-strict`` (a test-time dependency, imported here): the
    standard and nothing else, so math that runs on it uses the Array API alone.

    Its ``conv2d`` is :func:`array_api_conv2d`, the other extras the defaults. With
    ``only_used`` the namespace has only the names specs may use (:data:`ARRAY_API_USED`
    and :data:`EXTRAS`). ``array_api_strict.ArrayAPIStrictFlags`` selects the standard's
    version checked (the tests use 2023.12 with no extensions and no data-dependent shapes).
    """
    import array_api_strict

    xp = extend(array_api_strict, conv2d=array_api_conv2d(array_api_strict))
    return restrict(xp) if only_used else xp

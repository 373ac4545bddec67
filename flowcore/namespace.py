r"""The array namespace a spec computes with: the Array API plus a few extras.

Specs use only the functions in :data:`ARRAY_API_USED` (a subset of the Array API standard)
and the extras in :data:`EXTRAS`, which the standard lacks:

- ``linear(x, w, b)``: :math:`x w^\top + b` with ``w`` of shape (out, in);
- ``conv2d(x, w, b, padding)``: 2-D cross-correlation, NCHW input, OIHW weight, stride 1,
  ``padding`` zeros on each side of H and W;
- ``relu(x)``, ``leaky_relu(x, slope)``.

Each backend builds its namespace with :func:`extend`. A third-party backend implements the
same list; ``tests/test_namespace.py`` checks the built-in ones.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np

ARRAY_API_USED: tuple[str, ...] = (
    "abs", "argsort", "asarray", "astype", "atan", "broadcast_to", "concat", "exp", "float32",
    "float64", "int64", "log", "logaddexp", "matmul", "mean", "permute_dims", "reshape",
    "sum", "take", "tanh", "where", "zeros", "zeros_like",
)  # fmt: skip
EXTRAS: tuple[str, ...] = ("linear", "conv2d", "relu", "leaky_relu")


def extend(xp: Any, **extras: Callable[..., Any]) -> types.SimpleNamespace:
    """A namespace with every public name of ``xp`` and the given extras.

    A flat namespace object (not a wrapper with ``__getattr__``) keeps attribute lookups as
    cheap as on the module itself.
    """
    missing = [name for name in EXTRAS if name not in extras]
    if missing:
        raise TypeError(f"namespace extras missing: {missing}")
    names = {k: v for k, v in vars(xp).items() if not k.startswith("_")}
    return types.SimpleNamespace(**{**names, **extras})


def _numpy_conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, padding: int) -> np.ndarray:
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    kh, kw = w.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    # windows: (B, C, H', W', kh, kw); contract C, kh, kw with w (O, C, kh, kw)
    y = np.einsum("bchwij,ocij->bohw", windows, w, optimize=True)
    return y + b[None, :, None, None]


def numpy_namespace() -> types.SimpleNamespace:
    """The NumPy namespace the float64 reference executor computes with."""
    import array_api_compat.numpy as xp

    return extend(
        xp,
        linear=lambda x, w, b: x @ w.T + b,
        conv2d=_numpy_conv2d,
        relu=lambda x: np.maximum(x, 0),
        leaky_relu=lambda x, slope: np.where(x > 0, x, slope * x),
    )

r"""A flow as a density: a standard-normal base pushed through the inverse flow.

With :math:`z = f(x; c)` the flow's output (every output, if it has several),

.. math::

    \log p(x \mid c) = \log \mathcal N(z; 0, I) + \log\lvert\det \partial z / \partial x\rvert,
    \qquad \log \mathcal N(z; 0, I) = -\tfrac12 \lVert z \rVert^2 - \tfrac D2 \log 2\pi,

and a sample at temperature :math:`T` is :math:`x = f^{-1}(T\varepsilon; c)`,
:math:`\varepsilon \sim \mathcal N(0, I)`. A learned diagonal Gaussian base is a flow whose
last step is an elementwise affine map (``fc.ActNorm(data_init=False)``) before this base.
Written once for every backend: the model's own backend runs the flow and its namespace
(:attr:`flowcore.backend.Backend.xp`) the base, so ``log_prob`` is differentiable natively.
References: Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR 2017;
Kingma & Dhariwal, "Glow", NeurIPS 2018 (sampling temperature).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .adapter import as_list
from .api import backend_of, get_params, tree_of
from .errors import ShapeError
from .options import OptionError
from .spec import Namespace, sum_per_sample

Array = Any

LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(xp: Namespace, zs: Sequence[Array]) -> Array:
    r"""Per-sample :math:`-\tfrac12 \lVert z \rVert^2 - \tfrac D2 \log 2\pi` over all of
    ``zs`` (each ``(batch, ...)``), shape ``(batch,)``."""
    total: Array = 0.0
    for z in zs:
        size = math.prod(z.shape[1:])
        total = total - 0.5 * sum_per_sample(xp, z * z) - 0.5 * size * LOG_2PI
    return total


def _arrays(x: Any) -> list[Any]:
    return as_list(x, "input", lambda a: hasattr(a, "shape"))


def log_prob(model: Any, x: Any, c: Any = None) -> Array:
    """``log p(x | c)`` per sample, shape ``(batch,)``, a native array of ``model``'s
    framework that its autodiff differentiates (a torch tensor, a JAX array, a Keras tensor).

    ``model`` is a flowcore model of any backend; ``x`` an array or a list of arrays (a flow
    with several inputs); ``c`` its conditions, as the model takes them.
    """
    backend = backend_of(model)
    zs, log_det = backend.call(model, _arrays(x), _arrays(c), rev=False, jac=True)
    return standard_normal_log_prob(backend.xp, zs) + log_det


def model_dtype(model: Any) -> str:
    """The dtype of a model's float parameters, "float32" without any."""
    for value in get_params(model).values():
        if value.dtype in (np.float32, np.float64):
            return str(value.dtype)
    return "float32"


def sample(
    model: Any,
    n: int,
    c: Any = None,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    dtype: str | None = None,
    device: str | None = None,
) -> Any:
    """``n`` samples ``x = f^{-1}(T ε; c)``: a native array, or a tuple for a flow with several
    inputs.

    ``ε`` is drawn by NumPy from ``seed``, so a seed gives the same samples in every backend.
    ``c`` holds one condition row per sample (``n`` rows). ``dtype`` defaults to the
    model's parameters' (float32 without any); ``device``, where ``ε`` is put, the model's
    (:meth:`flowcore.backend.Backend.device_of`).
    """
    backend = backend_of(model)
    sig = tree_of(model).signature
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise OptionError(f"sample: n must be an int >= 0, got {n!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)) or (
        temperature <= 0
    ):
        raise OptionError(f"sample: temperature must be a finite number > 0, got {temperature!r}")
    cs = _arrays(c)
    if len(cs) != len(sig.conditions):
        raise ShapeError(
            f"sample: the model takes {len(sig.conditions)} condition(s) "
            f"{list(sig.conditions)}, got {len(cs)} in c"
        )
    rows = {int(ci.shape[0]) for ci in cs}
    if rows - {n}:
        raise ShapeError(f"sample: c must have one row per sample (n={n}), got {sorted(rows)}")
    rng = np.random.default_rng(seed)
    dtype = dtype if dtype is not None else model_dtype(model)
    device = device if device is not None else backend.device_of(model)
    zs = [
        backend.to_native(temperature * rng.standard_normal((n, *shape)), dtype, device)
        for shape in sig.outputs
    ]
    xs, _ = backend.call(model, zs, cs, rev=True, jac=False)
    return xs[0] if len(xs) == 1 else tuple(xs)


class Density:
    """``flow.log_prob(x, c)`` and ``flow.sample(n, c, ...)`` on every backend's flow module:
    :func:`log_prob` and :func:`sample` as methods."""

    def log_prob(self, x: Any, c: Any = None) -> Array:
        """``log p(x | c)`` per sample (:func:`flowcore.log_prob`)."""
        return log_prob(self, x, c)

    def sample(
        self,
        n: int,
        c: Any = None,
        *,
        temperature: float = 1.0,
        seed: int = 0,
        dtype: str | None = None,
        device: str | None = None,
    ) -> Any:
        """``n`` samples at ``temperature`` from ``seed`` (:func:`flowcore.sample`)."""
        return sample(self, n, c, temperature=temperature, seed=seed, dtype=dtype, device=device)


__all__ = ["Density", "log_prob", "sample", "standard_normal_log_prob"]

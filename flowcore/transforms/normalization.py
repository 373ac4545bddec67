r"""Normalisation: ActNorm with data-dependent initialisation.

:class:`ActNorm` is a per-channel affine map whose parameters are set from the first batch it
sees. The initialisation is state updated by a call (contract v2): the math always computes
the batch statistics and chooses between them and the stored values with
``xp.where(initialised > 0, stored, computed)`` (never a Python branch on values, so it
traces under ``jax.jit``, ``torch.compile`` and Keras/TensorFlow graphs), then records the
values it used with :meth:`flowcore.Context.update`. The flag ``initialised`` is a parameter,
so it is saved with the weights and a loaded model never re-initialises.

:func:`actnorm_params_from_freia` and :func:`actnorm_params_to_freia` convert between
flowcore's canonical parameters and the two FrEIA parametrisations (PyPI 0.2 and master).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from .. import initializers as init
from ..errors import ParameterError, ShapeError
from ..spec import Array, Context, Namespace, ParamSpec, Shape, Signature, SimpleTransform

__all__ = ["ActNorm", "actnorm_params_from_freia", "actnorm_params_to_freia"]

#: The relative floor of the initialising standard deviation: a channel whose std is at most
#: ``MIN_STD * (1 + |mean|)`` (constant, or a batch of one vector) gets scale 1. The relative
#: term covers float32 rounding of a constant channel, whose computed std is a few ulps of
#: its value rather than exactly zero.
MIN_STD = 1e-6

FreiaVersion = Literal["0.2", "master"]


def finite_statistics(xp: Namespace, x: Array, axes: tuple[int, ...]) -> tuple[Array, Array]:
    r"""Mean and Bessel-corrected variance (divisor :math:`n - 1`, or 1 where :math:`n \le
    1`) over ``axes``, which include the batch axis 0, of the samples whose values are all
    finite: a sample holding a NaN or inf is left out, so it cannot poison the statistics of
    the others (the NaN policy). With no finite sample both are 0."""
    keep = xp.all(xp.isfinite(x), axis=tuple(range(1, x.ndim)), keepdims=True)
    zeros = xp.zeros_like(x)
    n = xp.sum(xp.where(keep, zeros + 1.0, zeros), axis=axes, keepdims=True)
    one = xp.zeros_like(n) + 1.0
    mean = xp.sum(xp.where(keep, x, zeros), axis=axes, keepdims=True) / xp.where(n > 0.0, n, one)
    centred = xp.where(keep, x - mean, zeros)
    divisor = xp.where(n > 1.0, n - 1.0, one)
    return mean, xp.sum(centred * centred, axis=axes, keepdims=True) / divisor


@dataclasses.dataclass(frozen=True)
class ActNorm(SimpleTransform):
    r"""Activation normalisation (Glow's ActNorm): a per-channel affine map.

    .. math::

        y = x \odot e^{s} + b, \qquad x = (y - b) \odot e^{-s}

    with :math:`s` (``log_scale``) and :math:`b` (``loc``) of shape ``(1, C, 1, ...)``,
    broadcast over the batch and the positions of an image.

    Log-det, with :math:`N` the number of positions per channel (1 for vectors):

    .. math::

        \log|\det \partial y / \partial x| = N \sum_c s_c

    forward (a constant, broadcast to shape ``(batch,)``), minus that inverse.

    Data-dependent initialisation (``data_init=True``): the first call, in either direction,
    computes per channel the mean :math:`\mu` and the Bessel-corrected standard deviation
    :math:`\sigma` (divisor ``n - 1``, as ``torch.std`` and FrEIA) of its input over the
    batch and spatial axes, and sets

    .. math::

        s = -\log \sigma, \qquad b = -\mu / \sigma,

    so that the *forward* output of that batch has zero mean and unit standard deviation
    per channel. As in FrEIA, an inverse first call takes its input's statistics the same
    way (the parameters that would normalise that data going forward) and then inverts.
    The values used in the first call are the data-derived ones; they and
    ``initialised = 1`` are written back to the model after the call. Where
    :math:`\sigma \le 10^{-6} (1 + |\mu|)` (a constant channel, a batch of one vector:
    FrEIA gives NaN there) the channel gets :math:`s = 0`, :math:`b = -\mu` instead, so no
    NaN or inf ever appears, and the gradients of the unused branch stay finite. Samples
    holding a NaN or inf are left out of the statistics (:func:`finite_statistics`), so
    one bad sample in the first batch does not initialise the layer to NaN.

    Every call computes the batch statistics (a traced program cannot skip them); once
    ``initialised`` is 1 they are discarded. In the initialising call, gradients flow through
    the batch statistics (FrEIA's assignment to ``.data`` stops them); train after it.

    Parameters: ``log_scale`` and ``loc`` (trainable, shape ``(1, C, 1, ...)``, zero at
    first: the identity); buffer ``initialised`` (float, shape ``(1,)``, 0 or 1; it starts
    at 1 with ``data_init=False``, and then the statistics are not computed at all).

    ActNorm takes no condition. FrEIA's parameters convert with
    :func:`actnorm_params_from_freia`: FrEIA 0.2's ``scale, bias`` are flowcore's
    ``log_scale, loc``; FrEIA master's ``log_scale, loc`` parametrise
    :math:`y = (x - \mathrm{loc})\, e^{-\mathrm{log\_scale}}`.

    References: Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions",
    NeurIPS 2018 (arXiv:1807.03039); Ardizzone et al., FrEIA
    (github.com/vislearn/FrEIA), ``ActNorm``.
    """

    data_init: bool = True

    # -- declarations -------------------------------------------------------------------

    def output_shape(self, shape: Shape, conditions: Sequence[Shape]) -> Shape:
        if conditions:
            raise ShapeError(
                f"ActNorm: takes no condition, got {len(conditions)} condition(s) of shape "
                f"{', '.join(str(tuple(c)) for c in conditions)}"
            )
        if len(shape) < 1:
            raise ShapeError(f"ActNorm: input must have a channel axis (C, ...), got {shape}")
        return tuple(shape)

    def parameters(self, sig: Signature) -> Sequence[ParamSpec]:
        shape = sig.inputs[0]
        affine = (1, shape[0]) + (1,) * (len(shape) - 1)
        flag = 0.0 if self.data_init else 1.0
        return (
            ParamSpec("log_scale", affine, init.zeros(affine)),
            ParamSpec("loc", affine, init.zeros(affine)),
            ParamSpec("initialised", (1,), init.constant((1,), flag), trainable=False),
        )

    # -- math -----------------------------------------------------------------------------

    def _data_init(self, xp: Namespace, x: Array) -> tuple[Array, Array]:
        """``(log_scale, loc)`` that normalise ``x`` per channel (see the class doc)."""
        mean, var = finite_statistics(xp, x, (0, *range(2, x.ndim)))
        floor = MIN_STD * (1.0 + xp.abs(mean))
        usable = var > floor * floor
        one = xp.zeros_like(var) + 1.0
        # log(1) = 0 where the std is floored: both branches keep finite values and gradients
        log_scale = -0.5 * xp.log(xp.where(usable, var, one))
        return log_scale, -mean * xp.exp(log_scale)

    def _affine(self, ctx: Context, x: Array) -> tuple[Array, Array]:
        """The ``(log_scale, loc)`` this call uses, recording the state updates."""
        xp, params = ctx.xp, ctx.params
        if not self.data_init:
            return params["log_scale"], params["loc"]
        flag = params["initialised"]
        log_scale_data, loc_data = self._data_init(xp, x)
        done = flag > 0.0
        log_scale = xp.where(done, params["log_scale"], log_scale_data)
        loc = xp.where(done, params["loc"], loc_data)
        ctx.update("log_scale", log_scale)
        ctx.update("loc", loc)
        ctx.update("initialised", xp.zeros_like(flag) + 1.0)
        return log_scale, loc

    def _log_det(self, ctx: Context, log_scale: Array, x: Array) -> Any:
        if not ctx.jac:
            return 0.0
        # positions per channel; a list, not pieces.pixels' generator, which torch.compile's
        # fullgraph mode cannot trace
        pixels = math.prod([int(d) for d in x.shape[2:]])
        return pixels * ctx.xp.sum(log_scale)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        log_scale, loc = self._affine(ctx, x)
        y = x * ctx.xp.exp(log_scale) + loc
        return y, self._log_det(ctx, log_scale, x)

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        log_scale, loc = self._affine(ctx, y)
        x = (y - loc) * ctx.xp.exp(-log_scale)
        log_det = self._log_det(ctx, log_scale, y)
        return x, -log_det if ctx.jac else 0.0


# -- FrEIA checkpoints --------------------------------------------------------------------

_FREIA_KEYS: dict[str, tuple[str, ...]] = {
    "0.2": ("scale", "bias"),
    "master": ("log_scale", "loc"),
}


def _numpy(value: Any) -> np.ndarray:
    """A float64 copy of a NumPy array, a torch tensor (any device, with grad) or the like."""
    if hasattr(value, "detach"):
        value = value.detach()
    if hasattr(value, "cpu"):
        value = value.cpu()
    return np.array(value, dtype=np.float64, copy=True)


def _detect(state: Mapping[str, Any], prefix: str) -> FreiaVersion:
    found = [v for v, keys in _FREIA_KEYS.items() if all(prefix + k in state for k in keys)]
    if len(found) != 1:
        raise ParameterError(
            f"actnorm_params_from_freia: cannot tell the FrEIA version from the keys "
            f"{sorted(state)}; FrEIA 0.2 has {prefix}scale and {prefix}bias, master "
            f"{prefix}log_scale and {prefix}loc (pass version=)"
        )
    return found[0]  # type: ignore[return-value]


def actnorm_params_from_freia(
    state: Mapping[str, Any], version: FreiaVersion | None = None, prefix: str = ""
) -> dict[str, np.ndarray]:
    r"""flowcore's ``log_scale``, ``loc`` and ``initialised`` from a FrEIA ActNorm state.

    ``state`` maps names to arrays or torch tensors (an ActNorm's ``state_dict()``, or a
    model's with ``prefix`` such as ``"module_list.0."``). ``version`` is ``"0.2"`` or
    ``"master"``; when None it is read from the keys, which differ between the two.

    - FrEIA 0.2 (PyPI): ``y = x e^{scale} + bias``, flowcore's own form: ``log_scale =
      scale``, ``loc = bias``; FrEIA 0.2 never re-initialises a loaded ActNorm, so
      ``initialised = 1``.
    - FrEIA master: ``y = (x - loc) e^{-log\_scale}``: ``log_scale = -log_scale_m``,
      ``loc = -loc_m e^{-log\_scale_m}``; ``initialised`` is its ``is_initialized`` (taken
      as 1 if absent). An uninitialised master ActNorm holds ``torch.empty`` values, so
      ``log_scale`` and ``loc`` are zero then, to be set by the first batch.

    Returns float64 arrays in the state's shapes, ``(1, C, 1, ...)`` in both versions
    (``initialised`` of shape ``(1,)``), ready for :func:`flowcore.set_params` under the
    ActNorm's canonical prefix.
    """
    if version is None:
        version = _detect(state, prefix)
    if version not in _FREIA_KEYS:
        raise ParameterError(
            f"actnorm_params_from_freia: version must be '0.2' or 'master', got {version!r}"
        )
    missing = [prefix + k for k in _FREIA_KEYS[version] if prefix + k not in state]
    if missing:
        raise ParameterError(
            f"actnorm_params_from_freia: a FrEIA {version} ActNorm state needs {missing}; "
            f"got the keys {sorted(state)}"
        )
    first, second = (_numpy(state[prefix + k]) for k in _FREIA_KEYS[version])
    if version == "0.2":
        return {"log_scale": first, "loc": second, "initialised": np.ones(1)}
    flag_key = prefix + "is_initialized"
    flag = float(_numpy(state[flag_key]).reshape(-1)[0]) if flag_key in state else 1.0
    if not flag:
        zeros = np.zeros_like(first)
        return {"log_scale": zeros, "loc": zeros.copy(), "initialised": np.zeros(1)}
    return {"log_scale": -first, "loc": -second * np.exp(-first), "initialised": np.ones(1)}


def actnorm_params_to_freia(
    params: Mapping[str, Any], version: FreiaVersion, prefix: str = ""
) -> dict[str, np.ndarray]:
    r"""A FrEIA ActNorm state (float64 NumPy arrays) from flowcore's canonical parameters
    ``log_scale``, ``loc`` and ``initialised`` (under ``prefix``); the inverse of
    :func:`actnorm_params_from_freia`.

    FrEIA 0.2 has no flag: an uninitialised flowcore ActNorm (``initialised = 0``) would
    initialise again in FrEIA 0.2 only if it never loads this state, so that is an error.
    """
    log_scale = _numpy(params[prefix + "log_scale"])
    loc = _numpy(params[prefix + "loc"])
    done = bool(_numpy(params[prefix + "initialised"]).reshape(-1)[0] > 0)
    if version == "0.2":
        if not done:
            raise ParameterError(
                "actnorm_params_to_freia: FrEIA 0.2 cannot hold an uninitialised ActNorm "
                "(a loaded 0.2 ActNorm never initialises); run a batch through it first"
            )
        return {"scale": log_scale, "bias": loc}
    if version == "master":
        return {
            "log_scale": -log_scale,
            "loc": -loc * np.exp(-log_scale),
            "is_initialized": np.array(done),
        }
    raise ParameterError(
        f"actnorm_params_to_freia: version must be '0.2' or 'master', got {version!r}"
    )

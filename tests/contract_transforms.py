"""Small transforms that exercise contract v2: state updates, randomness and ``jac``.

Not part of the catalogue: they exist so that tests can watch the contract itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

import flowcore as fc
from flowcore.spec import Array

#: How many times :class:`CountsLogDetWork` computed a log-det (Python side effect, eager).
LOG_DET_WORK = {"count": 0}


@dataclasses.dataclass(frozen=True)
class CenterOnFirstBatch(fc.SimpleTransform):
    r"""``y = x - m`` with ``m`` the mean of the first batch it sees (a data-dependent
    initialisation, as ActNorm's); log-det 0. Buffers ``shift`` (1, C) and ``initialised``
    (1,); ``calls`` (1,) counts calls, trainable ``gain`` scales nothing (``y`` uses
    ``gain * 0``) so that gradients flow."""

    def parameters(self, sig: fc.Signature) -> Sequence[fc.ParamSpec]:
        (channels,) = sig.inputs[0]
        return [
            fc.ParamSpec("shift", (1, channels), lambda rng: np.zeros((1, channels))),
            fc.ParamSpec("initialised", (1,), lambda rng: np.zeros(1), trainable=False),
            fc.ParamSpec("calls", (1,), lambda rng: np.zeros(1), trainable=False),
        ]

    def _shift(self, ctx: fc.Context, x: Array) -> Array:
        xp, p = ctx.xp, ctx.params
        shift = xp.where(p["initialised"] > 0, p["shift"], xp.mean(x, axis=0, keepdims=True))
        ctx.update("shift", shift)
        ctx.update("initialised", xp.ones_like(p["initialised"]))
        ctx.update("calls", p["calls"] + 1.0)
        return shift

    def forward(self, ctx: fc.Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        return x - self._shift(ctx, x), 0.0

    def inverse(self, ctx: fc.Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        return y + self._shift(ctx, y), 0.0


@dataclasses.dataclass(frozen=True)
class NoisyLogDet(fc.SimpleTransform):
    """``y = x``, with a log-det that is a sum of standard normal draws (an unbiased
    estimate of 0, as stochastic trace estimators give)."""

    uses_randomness = True

    def forward(self, ctx: fc.Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        noise = ctx.normal((3, *x.shape[1:]), x)
        signs = ctx.rademacher((3,), x)
        return x, ctx.xp.sum(noise) + 0.0 * ctx.xp.sum(signs) + 0.0 * x[:, 0]

    def inverse(self, ctx: fc.Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        return y, 0.0 * y[:, 0]


@dataclasses.dataclass(frozen=True)
class CountsLogDetWork(fc.SimpleTransform):
    """``y = 2 x``; counts (eagerly) how often it computes its log-det."""

    def forward(self, ctx: fc.Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        if not ctx.jac:
            return 2.0 * x, 0.0
        LOG_DET_WORK["count"] += 1
        return 2.0 * x, float(np.log(2.0)) * x.shape[1] + 0.0 * x[:, 0]

    def inverse(self, ctx: fc.Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        return 0.5 * y, -float(np.log(2.0)) * y.shape[1] + 0.0 * y[:, 0]

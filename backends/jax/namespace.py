"""The namespace specs compute with under JAX: ``jax.numpy`` (an Array API namespace) plus
the extras.

Matrix products and convolutions run at :data:`PRECISION` (full float32): JAX's default
lets Ampere and newer GPUs use TF32 (about 1e-3 relative error) and TPUs bfloat16, which
would break the agreement of backends and devices that flowcore promises.
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from flowcore.namespace import conv_padding, extend

PRECISION = jax.lax.Precision.HIGHEST


def _linear(x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    y = jnp.matmul(x, w.T, precision=PRECISION)
    return y if b is None else y + b


def _conv2d(
    x: jax.Array, w: jax.Array, b: jax.Array | None, padding: int | Sequence[int]
) -> jax.Array:
    """Stride-1 cross-correlation, NCHW input, OIHW weight, explicit zero padding."""
    ph, pw = conv_padding(padding)
    y = jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=(1, 1),
        padding=((ph, ph), (pw, pw)),
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        precision=PRECISION,
    )
    return y if b is None else y + b[None, :, None, None]


def _pad2d(x: jax.Array, padding: Sequence[int]) -> jax.Array:
    left, right, top, bottom = padding
    return jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)])


XP = extend(
    jnp,
    matmul=functools.partial(jnp.matmul, precision=PRECISION),
    linear=_linear,
    conv2d=_conv2d,
    pad2d=_pad2d,
    relu=jax.nn.relu,
    leaky_relu=lambda x, slope: jax.nn.leaky_relu(x, negative_slope=slope),
    sigmoid=jax.nn.sigmoid,
    elu=lambda x, alpha=1.0: jax.nn.elu(x, alpha),
)

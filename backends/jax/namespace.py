"""The namespace specs compute with under JAX: ``jax.numpy`` (an Array API namespace) plus
the extras.

Matrix products and convolutions run at :data:`PRECISION` (full float32): JAX's default
lets Ampere and newer GPUs use TF32 (about 1e-3 relative error) and TPUs bfloat16, which
would break the agreement of backends and devices that flowcore promises.
"""

import functools

import jax
import jax.numpy as jnp

from flowcore.namespace import extend

PRECISION = jax.lax.Precision.HIGHEST


def _conv2d(x: jax.Array, w: jax.Array, b: jax.Array, padding: int) -> jax.Array:
    """Stride-1 cross-correlation, NCHW input, OIHW weight, explicit zero padding."""
    y = jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=(1, 1),
        padding=((padding, padding), (padding, padding)),
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        precision=PRECISION,
    )
    return y + b[None, :, None, None]


XP = extend(
    jnp,
    matmul=functools.partial(jnp.matmul, precision=PRECISION),
    linear=lambda x, w, b: jnp.matmul(x, w.T, precision=PRECISION) + b,
    conv2d=_conv2d,
    relu=jax.nn.relu,
    leaky_relu=lambda x, slope: jax.nn.leaky_relu(x, negative_slope=slope),
)

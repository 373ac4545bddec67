"""Float dtypes by name, refusing float64 when JAX would silently compute in float32."""

import jax
import jax.numpy as jnp

from flowcore.errors import BackendError, OptionError
from flowcore.executor import FLOAT_DTYPES, dtype_name


def jax_dtype(dtype: object) -> jnp.dtype:
    """The JAX dtype for ``"float32"``/``"float64"`` (or such a dtype object).

    float64 needs ``jax.config.update("jax_enable_x64", True)`` at start-up; flowcore never
    flips that process-wide flag itself.
    """
    name = dtype_name(dtype)
    if name not in FLOAT_DTYPES:
        raise OptionError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if jax.dtypes.canonicalize_dtype(name) != jnp.dtype(name):
        raise BackendError(
            f"the jax backend was asked for {name} but JAX runs with 64-bit types disabled, "
            "so it would silently compute in float32; call "
            "jax.config.update('jax_enable_x64', True) (or set JAX_ENABLE_X64=1) before "
            "creating any array"
        )
    return jnp.dtype(name)

"""The built-in backends, registered through the ``flowcore.backends`` entry-point group.

Importing this package imports no framework: each :class:`~flowcore.BackendInfo` names the
module to import when the backend is first used.
"""

from flowcore.backend import BackendInfo

TORCH = BackendInfo("torch", "flowcore.backends.torch", ("torch",))
JAX = BackendInfo("jax", "flowcore.backends.jax", ("jax", "flax"))
KERAS = BackendInfo("keras", "flowcore.backends.keras", ("keras",))

"""What Keras leaves to the framework under it: 64-bit support, devices and autodiff.

Each function dispatches on ``keras.backend.backend()`` (TensorFlow, JAX or torch); the rest
of the adapter uses only ``keras``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

Array = Any


def x64_enabled() -> bool:
    """Whether float64 and int64 arrays exist: JAX has them only with ``jax_enable_x64``."""
    if keras.backend.backend() != "jax":
        return True
    import jax

    return bool(jax.config.read("jax_enable_x64"))


def to_numpy(x: Array) -> np.ndarray:
    """A NumPy copy of a tensor, through the framework's own ``.numpy()``: Keras'
    ``convert_to_numpy`` raises NumPy 2's ``__array__(copy=...)`` DeprecationWarning on
    TensorFlow and torch."""
    backend = keras.backend.backend()
    if backend == "tensorflow" and hasattr(x, "numpy"):
        return np.asarray(x.numpy())
    if backend == "torch" and hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return keras.ops.convert_to_numpy(x)


def accelerators() -> list[str]:
    """The accelerators present, named as torch names them (``"cuda"``, ``"tpu"``)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return ["cuda"] if tf.config.list_physical_devices("GPU") else []
    if backend == "jax":
        import jax

        platforms = {d.platform for d in jax.devices()} - {"cpu"}
        return sorted("cuda" if p == "gpu" else p for p in platforms)
    if backend == "torch":
        import torch

        return ["cuda"] if torch.cuda.is_available() else []
    return []


def device_of(array: Array) -> str:
    """The device of a framework array, named as torch names it (``"cpu"``, ``"cuda"``,
    ``"cuda:1"``)."""
    backend = keras.backend.backend()
    if backend == "torch":
        return str(array.device)
    if backend == "jax":
        import jax

        device = next(iter(array.devices()))
        name = "cuda" if device.platform == "gpu" else device.platform
        index = jax.devices(device.platform).index(device)
        return name if index == 0 else f"{name}:{index}"
    # TensorFlow: "/job:localhost/replica:0/task:0/device:GPU:0"
    kind, _, index = array.device.rpartition("device:")[2].partition(":")
    name = "cuda" if kind == "GPU" else kind.lower()
    return name if index in ("", "0") else f"{name}:{index}"


def device_scope(device: Any) -> contextlib.AbstractContextManager[Any]:
    """Keras' scope placing new arrays and weights on ``device`` (``"cuda"`` is its ``"gpu"``);
    no scope for None."""
    if device is None:
        return contextlib.nullcontext()
    return keras.device(device.replace("cuda", "gpu") if isinstance(device, str) else device)


def batch_jacobian(
    f: Callable[[Array, list[Array]], Array], x: Array, cs: Sequence[Array]
) -> np.ndarray:
    """Per-sample Jacobians d f(x, cs)/dx of ``f: (B, *shape) -> (B, D)``, shape (B, D, D).

    Samples must not interact (true of every flow), so the (B, D, B, D) Jacobian is block
    diagonal and only its diagonal blocks are computed; ``cs`` are per-sample conditions.
    """
    backend = keras.backend.backend()
    batch, cs = x.shape[0], list(cs)
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = f(x, cs)
        jac = tape.batch_jacobian(z, x)
    elif backend == "jax":
        import jax

        def one(xi: Array, ci: list[Array]) -> Array:
            # state updates made while tracing stay in the scope instead of leaking tracers
            with keras.StatelessScope():
                return f(xi[None], [c[None] for c in ci])[0]

        # compiled: traced once, instead of dispatching every primitive of the transposed
        # computation one by one (the flow's variables are read as constants)
        jac = jax.jit(jax.vmap(jax.jacrev(one)))(x, cs)
    elif backend == "torch":
        import torch

        full = torch.autograd.functional.jacobian(lambda v: f(v, cs), x)  # (B, D, B, *shape)
        jac = torch.stack([full[b, :, b] for b in range(batch)])
    else:
        raise NotImplementedError(f"no autodiff for the Keras backend {backend!r}")
    jac = to_numpy(jac)
    return jac.reshape(batch, jac.shape[1], -1)


def gradients(variables: Sequence[keras.Variable], loss: Callable[[], Array]) -> list[np.ndarray]:
    """Gradients of the scalar ``loss()`` w.r.t. ``variables``, as NumPy arrays.

    ``loss`` must read the variables through ``variable.value`` (JAX differentiates it
    statelessly, with the values swapped in by a :class:`keras.StatelessScope`).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = loss()
        grads = tape.gradient(
            value,
            [v.value for v in variables],
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
    elif backend == "jax":
        import jax

        def stateless(values: list[Array]) -> Array:
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                return loss()

        grads = jax.jit(jax.grad(stateless))([v.value for v in variables])
    elif backend == "torch":
        import torch

        grads = torch.autograd.grad(
            loss(), [v.value for v in variables], allow_unused=True, materialize_grads=True
        )
    else:
        raise NotImplementedError(f"no autodiff for the Keras backend {backend!r}")
    return [to_numpy(g) for g in grads]


def compile_layer_call(layer: Any, rev: bool, jac: bool) -> Callable[..., Any]:
    """``layer(xs, cs, rev=rev, jac=jac)`` compiled as Keras' ``jit_compile=True`` compiles
    a step on each backend: ``tf.function(jit_compile=True)`` (XLA); ``jax.jit`` of the
    layer's ``stateless_call``, its state updates written back after the call (so nothing
    traced leaks into the variables); ``torch.compile(fullgraph=True)``, dynamo's caches
    reset first (every flowcore layer runs one code object)."""

    def call(xs: list[Any], cs: list[Any]) -> Any:
        ys, log_det = layer(xs, cs, rev=rev, jac=jac)
        return list(ys), log_det

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(call, jit_compile=True)
    if backend == "torch":
        import torch

        torch._dynamo.reset()
        return torch.compile(call, fullgraph=True)
    import jax

    @jax.jit
    def pure(trainable: list[Any], state: list[Any], xs: list[Any], cs: list[Any]) -> Any:
        (ys, log_det), state = layer.stateless_call(trainable, state, xs, cs, rev=rev, jac=jac)
        return list(ys), log_det, state

    def stateful(xs: list[Any], cs: list[Any]) -> Any:
        trainable = [v.value for v in layer.trainable_variables]
        state = [v.value for v in layer.non_trainable_variables]
        ys, log_det, state = pure(trainable, state, xs, cs)
        for variable, value in zip(layer.non_trainable_variables, state, strict=True):
            variable.assign(value)
        return ys, log_det

    return stateful

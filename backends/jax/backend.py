"""The JAX backend object the registry hands out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flowcore.tree import Node

from .dtypes import jax_dtype
from .functional import functional
from .modules import FlowModule, cast_floats, gather
from .namespace import XP
from .native import native_variables


def _variables(module: FlowModule) -> dict[str, nnx.Variable]:
    """Canonical variables and native subnet state of ``module`` by dotted name."""
    variables, natives = gather(module, module.flowcore_tree)
    return {**variables, **native_variables(natives)}


def _device(device: str | jax.Device) -> jax.Device:
    """A device by platform name (``"cpu"``, ``"cuda"``, ``"gpu"``, ``"tpu"``), with an
    index after a colon (``"cuda:1"``), or the device itself."""
    if isinstance(device, jax.Device):
        return device
    platform, _, index = device.partition(":")
    return jax.devices(platform)[int(index or 0)]


def device_name(device: jax.Device) -> str:
    """A JAX device named as torch names it: ``"cpu"``, ``"cuda"`` for JAX's first ``"gpu"``,
    ``"cuda:1"`` for its second (``"rocm"`` on ROCm), ``"tpu"``."""
    platform = device.platform
    if platform == "gpu":
        platform = "rocm" if "rocm" in device.client.platform_version.lower() else "cuda"
    index = jax.devices(device.platform).index(device)
    return platform if index == 0 else f"{platform}:{index}"


def _present(platform: str) -> bool:
    try:
        return bool(jax.devices(platform))
    except RuntimeError:  # JAX raises this for a platform it has no devices of
        return False


class JaxBackend:
    name = "jax"
    xp = XP

    def build(
        self,
        tree: Node,
        params: Mapping[str, np.ndarray],
        dtype: str,
        device: Any,
        seed: int = 0,
    ) -> FlowModule:
        module = FlowModule(tree, params, dtype, seed=seed)
        return self.move(module, dtype, device) if device is not None else module

    def get_params(self, module: Any) -> dict[str, np.ndarray]:
        index = {n for n, p in module.flowcore_tree.param_specs().items() if p.kind == "index"}
        return {
            name: np.asarray(var[...], dtype=np.int64 if name in index else None)
            for name, var in _variables(module).items()
        }

    def set_params(self, module: Any, params: Mapping[str, np.ndarray]) -> None:
        for name, var in _variables(module).items():
            if name in params:
                old = var[...]
                var.set_value(jax.device_put(jnp.asarray(params[name], old.dtype), old.sharding))

    def devices(self) -> Sequence[str]:
        """``"cpu"``, and ``"cuda"`` or ``"rocm"`` (JAX's ``"gpu"`` platform, named as torch
        and the conformance suite name it) and ``"tpu"`` where present."""
        platforms = {d.platform for d in jax.devices()}
        gpus = [name for name in ("cuda", "rocm") if "gpu" in platforms and _present(name)]
        return ["cpu", *gpus, *(["tpu"] if "tpu" in platforms else [])]

    def to_native(self, array: np.ndarray, dtype: str, device: str | jax.Device) -> jax.Array:
        if dtype == "int64":  # an index condition: int32 where JAX runs without x64
            native = jnp.asarray(np.asarray(array, dtype=np.int64))
        else:
            native = jnp.asarray(array, jax_dtype(dtype))
        return jax.device_put(native, _device(device))

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(array)

    def move(self, module: Any, dtype: str, device: str | jax.Device) -> Any:
        cast_floats(module, jax_dtype(dtype), _device(device))
        return module

    def device_of(self, module: Any) -> str:
        """``"cpu"``, ``"cuda"`` (JAX's ``"gpu"``: ``"cuda:1"`` for the second) or ``"tpu"``."""
        arrays = jax.tree.leaves(nnx.state(module))
        return "cpu" if not arrays else device_name(next(iter(arrays[0].devices())))

    def call(
        self, module: Any, xs: Sequence[Any], cs: Sequence[Any], rev: bool, jac: bool
    ) -> tuple[list[Any], Any]:
        return module.run(list(xs), list(cs), rev, jac)

    def compiled(self, module: Any) -> Callable[..., tuple[list[Any], Any]]:
        """``module.run`` under ``nnx.jit`` (the module's state and keys handled by NNX),
        ``rev`` and ``jac`` static."""

        @nnx.jit(static_argnums=(3, 4))
        def run(m: Any, xs: list[Any], cs: list[Any], rev: bool, jac: bool) -> Any:
            return m.run(xs, cs, rev, jac)

        return lambda xs, cs, rev, jac: run(module, list(xs), list(cs), rev, jac)

    def bench_steps(self, config: Any, x: np.ndarray, device: str, threads: int) -> list[Any]:
        """``flowcore bench``'s JAX workloads (:mod:`flowcore.backends.jax.bench`)."""
        from .bench import workloads

        return workloads(config, x, device, threads)

    def jacobian(self, module: Any, x: Any, cs: Sequence[Any]) -> np.ndarray:
        apply, params = functional(module)
        size = int(np.prod(x.shape[1:]))

        def one(sample: jax.Array, *conds: jax.Array) -> jax.Array:
            z, _ = apply(params, sample[None], [c[None] for c in conds])
            return z.reshape(size)

        per_sample = jax.jit(jax.vmap(jax.jacrev(one)))(x, *cs)  # (B, D, *shape)
        return np.asarray(per_sample).reshape(x.shape[0], size, size)

    def gradients(
        self, module: Any, xs: Sequence[Any], cs: Sequence[Any]
    ) -> dict[str, np.ndarray]:
        apply, params = functional(module)

        def loss(p: Mapping[str, jax.Array], xs: list[Any], cs: list[Any]) -> jax.Array:
            zs, log_det = apply(p, xs, cs)
            return sum(0.5 * jnp.sum(z**2) for z in zs) - jnp.sum(log_det)

        grads = jax.jit(jax.grad(loss))(params, list(xs), list(cs))
        return {name: np.asarray(g) for name, g in grads.items()}


BACKEND = JaxBackend()

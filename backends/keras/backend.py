"""The Keras backend object the registry hands out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from flowcore.tree import Node

from . import frameworks
from .layers import FlowLayer, named_weights
from .namespace import XP


class KerasBackend:
    name = "keras"
    xp = XP

    def build(
        self,
        tree: Node,
        params: Mapping[str, np.ndarray],
        dtype: str,
        device: Any,
        seed: int = 0,
    ) -> FlowLayer:
        with frameworks.device_scope(device):
            return FlowLayer(tree, params, dtype=dtype, seed=seed)

    def get_params(self, module: Any) -> dict[str, np.ndarray]:
        out = {}
        for name, v in named_weights(module).items():
            value = frameworks.to_numpy(v.value)
            out[name] = value.astype(np.int64) if value.dtype.kind in "iu" else value
        return out

    def set_params(self, module: Any, params: Mapping[str, np.ndarray]) -> None:
        weights = named_weights(module)
        for name, value in params.items():
            weights[name].assign(value.astype(weights[name].dtype))

    def devices(self) -> Sequence[str]:
        return ["cpu", *frameworks.accelerators()]

    def to_native(self, array: np.ndarray, dtype: str, device: str) -> Any:
        with frameworks.device_scope(device):
            return keras.ops.convert_to_tensor(np.asarray(array, dtype=dtype))

    def to_numpy(self, array: Any) -> np.ndarray:
        return frameworks.to_numpy(array)

    def move(self, module: Any, dtype: str, device: str) -> FlowLayer:
        """A new layer on ``device`` in ``dtype`` (Keras cannot cast weights in place)."""
        with frameworks.device_scope(device):
            moved = FlowLayer(module.flowcore_tree, dtype=dtype)
        self.set_params(moved, self.get_params(module))
        return moved

    def device_of(self, module: Any) -> str:
        weights = module.weights
        return "cpu" if not weights else frameworks.device_of(weights[0].value)

    def call(
        self, module: Any, xs: Sequence[Any], cs: Sequence[Any], rev: bool, jac: bool
    ) -> tuple[list[Any], Any]:
        zs, log_det = module(list(xs), list(cs), rev=rev, jac=jac)
        return list(zs), log_det

    def compiled(self, module: Any) -> Callable[..., tuple[list[Any], Any]]:
        """The layer's call compiled as Keras' ``jit_compile`` compiles on its backend
        (:func:`frameworks.compile_layer_call`), once per ``(rev, jac)``."""
        cache: dict[tuple[bool, bool], Callable[..., Any]] = {}

        def call(xs: Sequence[Any], cs: Sequence[Any], rev: bool, jac: bool) -> Any:
            if (rev, jac) not in cache:
                cache[(rev, jac)] = frameworks.compile_layer_call(module, rev, jac)
            return cache[(rev, jac)](list(xs), list(cs))

        return call

    def bench_steps(self, config: Any, x: np.ndarray, device: str, threads: int) -> list[Any]:
        """``flowcore bench``'s Keras workloads on the Keras backend in use
        (:mod:`flowcore.backends.keras.bench`)."""
        from .bench import workloads

        return workloads(config, x, device, threads)

    def jacobian(self, module: Any, x: Any, cs: Sequence[Any]) -> np.ndarray:
        def flat(v: Any, cs_: list[Any]) -> Any:
            (z,), _ = module.run([v], cs_, False, True)
            return keras.ops.reshape(z, (z.shape[0], -1))

        return frameworks.batch_jacobian(flat, x, cs)

    def gradients(
        self, module: Any, xs: Sequence[Any], cs: Sequence[Any]
    ) -> dict[str, np.ndarray]:
        trainable = {n: v for n, v in named_weights(module).items() if v.trainable}

        def loss() -> Any:
            zs, log_det = module.run(list(xs), list(cs), False, True)
            energy = sum(0.5 * keras.ops.sum(z * z) for z in zs)
            return energy - keras.ops.sum(log_det)

        grads = frameworks.gradients(list(trainable.values()), loss)
        return dict(zip(trainable, grads, strict=True))


BACKEND = KerasBackend()

"""The PyTorch backend object the registry hands out."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from flowcore.tree import Node

from .modules import FlowModule
from .namespace import XP


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def _array_dtype(name: str) -> torch.dtype:
    """The dtype of an input or condition: a float one, or int64 for an index condition."""
    return torch.int64 if name == "int64" else _dtype(name)


class TorchBackend:
    name = "torch"
    xp = XP

    def build(
        self,
        tree: Node,
        params: Mapping[str, np.ndarray],
        dtype: str,
        device: Any,
        seed: int = 0,
    ) -> FlowModule:
        module = FlowModule(tree, params, _dtype(dtype), seed=seed)
        return module.to(device) if device is not None else module

    def get_params(self, module: Any) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}

    def set_params(self, module: Any, params: Mapping[str, np.ndarray]) -> None:
        state = module.state_dict()
        with torch.no_grad():
            for name, value in params.items():
                state[name].copy_(torch.from_numpy(value))  # copy_ converts dtype and device

    def devices(self) -> Sequence[str]:
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]

    def to_native(self, array: np.ndarray, dtype: str, device: str) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=_array_dtype(dtype), device=device)

    def to_numpy(self, array: Any) -> np.ndarray:
        return array.detach().cpu().numpy()

    def move(self, module: Any, dtype: str, device: str) -> Any:
        return module.to(device=device, dtype=_dtype(dtype))

    def device_of(self, module: Any) -> str:
        tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
        return "cpu" if tensor is None else str(tensor.device)

    def call(
        self, module: Any, xs: Sequence[Any], cs: Sequence[Any], rev: bool, jac: bool
    ) -> tuple[list[Any], Any]:
        return module.run(list(xs), list(cs), rev, jac)

    def compiled(self, module: Any) -> Callable[..., tuple[list[Any], Any]]:
        """``module.run`` under ``torch.compile(fullgraph=True)``: a graph break raises.
        Every flowcore module runs one code object, so past dynamo's recompile limit a new
        module would silently run eagerly: dynamo's caches are reset first."""
        torch._dynamo.reset()
        run = torch.compile(module.run, fullgraph=True)
        return lambda xs, cs, rev, jac: run(list(xs), list(cs), rev, jac)

    def bench_steps(self, config: Any, x: np.ndarray, device: str, threads: int) -> list[Any]:
        """``flowcore bench``'s torch workloads (:mod:`flowcore.backends.torch.bench`)."""
        from .bench import workloads

        return workloads(config, x, device, threads)

    def jacobian(self, module: Any, x: Any, cs: Sequence[Any]) -> np.ndarray:
        batch, size = x.shape[0], int(np.prod(tuple(x.shape[1:])))

        def flat(v: torch.Tensor) -> torch.Tensor:
            (z,), _ = module.run([v], list(cs), False, True)
            return z.reshape(batch, size)

        full = torch.autograd.functional.jacobian(flat, x)  # (B, D, B, *shape)
        full = full.reshape(batch, size, batch, size)
        return np.stack([self.to_numpy(full[b, :, b, :]) for b in range(batch)])

    def gradients(
        self, module: Any, xs: Sequence[Any], cs: Sequence[Any]
    ) -> dict[str, np.ndarray]:
        module.zero_grad()
        zs, log_det = module.run(list(xs), list(cs), False, True)
        loss = sum(0.5 * (z**2).sum() for z in zs) - log_det.sum()
        loss.backward()
        # a parameter the loss does not use (global_scale in GIN mode) has gradient zero
        return {
            n: self.to_numpy(p.grad if p.grad is not None else torch.zeros_like(p))
            for n, p in module.named_parameters()
        }


BACKEND = TorchBackend()

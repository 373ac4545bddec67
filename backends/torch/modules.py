"""The one generic PyTorch module: any spec tree as a ``torch.nn.Module``.

Parameters are registered under their canonical names (trainable ones as ``nn.Parameter``,
the rest as buffers) and children as submodules, so ``state_dict()`` keys are the canonical
names and ``.to(device, dtype)``, ``torch.compile`` and DDP work as for any module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from flowcore.errors import ShapeError
from flowcore.spec import NativeSubnet, Subnet
from flowcore.tree import Node, run_transform

from .namespace import XP


def as_tensor_list(x: Any, what: str) -> list[torch.Tensor]:
    if x is None:
        return []
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in x):
        return list(x)
    raise ShapeError(f"expected a tensor or a list of tensors as {what}, got {type(x).__name__}")


def _native(node: Node, dtype: torch.dtype) -> nn.Module:
    spec = node.spec
    assert isinstance(spec, NativeSubnet)
    module = spec.constructor(node.signature.inputs[0][0], node.signature.outputs[0][0])
    if not isinstance(module, nn.Module):
        raise TypeError(f"{node.label}: subnet_constructor must return a torch.nn.Module")
    return module.to(dtype)


class _Holder(nn.Module):
    """Registers a node's parameters and children."""

    def __init__(
        self,
        tree: Node,
        params: Mapping[str, np.ndarray] | None,
        dtype: torch.dtype,
        modules: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.flowcore_tree = tree
        for p in tree.params:
            if params is None:
                value = torch.zeros(p.shape, dtype=torch.int64 if p.kind == "index" else dtype)
            else:
                value = torch.as_tensor(np.asarray(params[tree.full_name(p.name)]))
                value = value.to(torch.int64 if p.kind == "index" else dtype)
            if p.trainable:
                self.register_parameter(p.name, nn.Parameter(value))
            else:
                self.register_buffer(p.name, value)
        for name, child in tree.children.items():
            if modules is not None and name in modules:
                self.add_module(name, modules[name])
            elif child.is_native:
                self.add_module(name, _native(child, dtype))
            elif child.is_transform:
                self.add_module(name, FlowModule(child, params, dtype))
            else:
                self.add_module(name, SubnetModule(child, params, dtype))

    def _params(self) -> dict[str, torch.Tensor]:
        # read nn.Module's registries directly: nn.Module.__getattr__ is slow per call
        return {**self._parameters, **self._buffers}  # type: ignore[dict-item]

    def _subnets(self) -> dict[str, Any]:
        # looked up per call (not cached) so that DataParallel replicas use their own children
        return {
            name: module.run if isinstance(module, FlowModule) else module
            for name, module in self._modules.items()
        }


class SubnetModule(_Holder):
    """A portable subnetwork spec as a module: ``forward(x) -> y``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.flowcore_tree.spec
        assert isinstance(spec, Subnet)
        return spec.apply(XP, self._params(), self._subnets(), x)


class FlowModule(_Holder):
    """A transform spec as a module, called as FrEIA's: ``forward(x, c, rev, jac)``.

    ``x`` is a tensor or a list of tensors; ``c`` a tensor, a list of tensors or None.
    Returns ``(z, log_det)`` with ``z`` a tensor if ``x`` was one, else a tuple, and
    ``log_det`` of shape ``(batch,)``: log|det dz/dx| forward, log|det dx/dz| with ``rev``.
    """

    flowcore_backend = "torch"

    def run(
        self, xs: Sequence[torch.Tensor], cs: Sequence[torch.Tensor], rev: bool, jac: bool
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        return run_transform(
            self.flowcore_tree, XP, self._params(), self._subnets(), xs, cs, rev, jac
        )

    def forward(
        self, x: Any, c: Any = None, rev: bool = False, jac: bool = True
    ) -> tuple[Any, torch.Tensor]:
        ys, log_det = self.run(
            as_tensor_list(x, "input"), as_tensor_list(c, "condition"), rev, jac
        )
        return (ys[0] if isinstance(x, torch.Tensor) and len(ys) == 1 else tuple(ys)), log_det

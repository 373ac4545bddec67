"""The PyTorch glue: any spec tree as a ``torch.nn.Module``.

Parameters are registered under their canonical names (trainable ones as ``nn.Parameter``,
the rest as buffers) and children as submodules, so ``state_dict()`` keys are the canonical
names and ``.to(device, dtype)``, ``torch.compile`` and DDP work as for any module. What a
node does is :class:`flowcore.adapter.NodeModule`'s; this file only makes native things.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from flowcore.adapter import NodeModule
from flowcore.density import Density
from flowcore.errors import ArgumentError
from flowcore.spec import Array, Draw, NativeSubnet, ParamSpec, Shape
from flowcore.tree import Node, path_seed

from .namespace import XP


class _TorchNode(NodeModule, nn.Module):
    """A node's parameters and children as a module."""

    xp = XP
    array_text = "a torch.Tensor (torch.as_tensor(x) makes one)"

    def __init__(
        self,
        tree: Node,
        params: Mapping[str, np.ndarray] | None,
        dtype: torch.dtype,
        modules: Mapping[str, nn.Module] | None = None,
        seed: int = 0,
    ) -> None:
        nn.Module.__init__(self)
        self._dtype = dtype
        self._seed_value = seed
        self._generators: dict[torch.device, torch.Generator] = {}
        self._populate(tree, params, modules)
        self._input_dtype: torch.dtype | None = None
        self._follow_tensors()

    def _follow_tensors(self) -> None:
        """Read the model's float dtype back from its tensors (after ``.to``/``.double``):
        the dtype inputs are cast to, and new blocks are made in. A model without float
        tensors casts nothing."""
        tensors = itertools.chain(self.parameters(), self.buffers())
        first = next((t for t in tensors if t.is_floating_point()), None)
        if first is not None:
            self._dtype = self._input_dtype = first.dtype

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        result = super()._apply(fn, recurse)
        self._follow_tensors()
        return result

    def _convert(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self._input_dtype
        if dtype is not None and x.dtype != dtype and x.is_floating_point():
            return x.to(dtype)
        return x

    def _placement_problem(self, arrays: Any) -> str | None:
        tensor = next(itertools.chain(self.parameters(), self.buffers()), None)
        if tensor is None:
            return None
        elsewhere = sorted({str(a.device) for a in arrays if a.device != tensor.device})
        if not elsewhere:
            return None
        return (
            f"the model is on {tensor.device} but inputs or conditions are on "
            f"{', '.join(elsewhere)}: move them with x.to({str(tensor.device)!r}), or the "
            f"model with flow.to({elsewhere[0]!r})"
        )

    def _add_param(self, p: ParamSpec, value: np.ndarray | None) -> None:
        dtype = torch.int64 if p.kind == "index" else self._dtype
        tensor = (
            torch.zeros(p.shape, dtype=dtype)
            if value is None
            else torch.tensor(np.asarray(value), dtype=dtype)  # a copy, never the caller's
        )
        if p.trainable:
            self.register_parameter(p.name, nn.Parameter(tensor))
        else:
            self.register_buffer(p.name, tensor)

    def _add_child(self, name: str, module: Any) -> None:
        self.add_module(name, module)

    def _children(self) -> Mapping[str, Any]:
        return self._modules

    def _values(self) -> dict[str, torch.Tensor]:
        # read nn.Module's registries directly: nn.Module.__getattr__ is slow per call
        return {**self._parameters, **self._buffers}  # type: ignore[dict-item]

    def _write(self, name: str, value: Array) -> None:
        with torch.no_grad():
            self._values()[name].copy_(value.detach())

    def _make_native(self, node: Node) -> nn.Module:
        spec = node.spec
        assert isinstance(spec, NativeSubnet)
        module = spec.constructor(node.signature.inputs[0][0], node.signature.outputs[0][0])
        if not isinstance(module, nn.Module):
            raise ArgumentError(f"{node.label}: subnet_constructor must return a torch.nn.Module")
        return module.to(self._dtype)

    def _make_module(self, node: Node, params: Mapping[str, np.ndarray] | None) -> nn.Module:
        kind = FlowModule if node.is_transform else SubnetModule
        return kind(node, params, self._dtype, seed=self._seed_value)

    def _is_array(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def _draw(self) -> Draw:
        def draw(kind: str, shape: Shape, like: torch.Tensor) -> torch.Tensor:
            gen = self._generators.get(like.device)
            if gen is None:
                gen = torch.Generator(device=like.device)
                gen.manual_seed(path_seed(self._seed_value, self.flowcore_tree.path))
                self._generators[like.device] = gen
            if kind == "normal":
                return torch.randn(shape, generator=gen, dtype=like.dtype, device=like.device)
            bits = torch.randint(0, 2, shape, generator=gen, device=like.device)
            return bits.to(like.dtype) * 2 - 1

        return draw


class SubnetModule(_TorchNode):
    """A portable subnetwork spec as a module: ``forward(x) -> y``."""

    forward = NodeModule.apply_subnet


class FlowModule(_TorchNode, Density):
    """A transform spec as a module, called as FrEIA's: ``forward(x, c, rev, jac)``.

    ``x`` is a tensor or a list of tensors; ``c`` a tensor, a list of tensors or None.
    Returns ``(z, log_det)`` with ``z`` a tensor if ``x`` was one, else a tuple, and
    ``log_det`` of shape ``(batch,)``: log|det dz/dx| forward, log|det dx/dz| with ``rev``.
    """

    flowcore_backend = "torch"

    def forward(
        self, x: Any, c: Any = None, rev: bool = False, jac: bool = True
    ) -> tuple[Any, torch.Tensor]:
        return self.call_flow(x, c, rev, jac)

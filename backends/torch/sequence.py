"""FrEIA's imperative ``SequenceINN`` for PyTorch: ``SequenceINN(*dims).append(...)``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from flowcore.models import SequenceBuilder
from flowcore.spec import Transform
from flowcore.tree import Node, initial_params

from .modules import FlowModule


class SequenceINN(FlowModule):
    """A sequence of blocks appended one by one, as in FrEIA.

    ``append(block, cond=None, cond_shape=None, **kwargs)`` builds ``block(**kwargs)`` (a
    flowcore transform class such as ``AllInOneBlock``, e.g. with ``subnet_constructor=``)
    for the current output shape; ``cond`` indexes the list of conditions given to forward.
    Initial parameters come from ``seed`` when given (then equal to ``flowcore.build`` of the
    same spec and seed), else from PyTorch's global generator.
    """

    def __init__(
        self,
        *dims: int,
        force_tuple_output: bool = False,
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        builder = SequenceBuilder(*dims)
        super().__init__(builder.tree(), None, dtype)
        self._builder = builder
        self._seed = seed
        self._dtype = dtype
        self.force_tuple_output = force_tuple_output

    def append(
        self,
        module_class: type[Transform] | Transform,
        cond: int | None = None,
        cond_shape: Any = None,
        **kwargs: Any,
    ) -> None:
        seed = self._seed if self._seed is not None else int(torch.randint(0, 2**31 - 1, ()))

        def make(node: Node) -> FlowModule:
            module = FlowModule(node, initial_params(node, seed), self._dtype)
            reference = next(iter(self.parameters()), None)
            return module.to(reference.device) if reference is not None else module

        module = self._builder.add(module_class, cond, cond_shape, kwargs, make)
        self.add_module(str(len(self) - 1), module)
        self.flowcore_tree = self._builder.tree()

    def __len__(self) -> int:
        return len(self._builder.blocks)

    def __iter__(self) -> Iterator[FlowModule]:
        return (getattr(self, str(i)) for i in range(len(self)))

    def __getitem__(self, index: int | slice) -> FlowModule:
        return self._builder.select(
            index, list(self), lambda tree, children: FlowModule(tree, None, self._dtype, children)
        )

    def forward(
        self, x: Any, c: Any = None, rev: bool = False, jac: bool = True
    ) -> tuple[Any, torch.Tensor]:
        z, log_det = super().forward(x, c, rev, jac)
        if self.force_tuple_output and isinstance(z, torch.Tensor):
            z = (z,)
        return z, log_det

"""FrEIA's imperative ``SequenceINN`` for PyTorch: ``SequenceINN(*dims).append(...)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from flowcore.adapter import ImperativeSequence
from flowcore.models import SequenceBuilder
from flowcore.tree import Node

from .modules import FlowModule


class SequenceINN(ImperativeSequence, FlowModule):
    """A sequence of blocks appended one by one, as in FrEIA (see
    :class:`flowcore.adapter.ImperativeSequence`); without ``seed``, initial parameters
    come from PyTorch's global generator."""

    def __init__(
        self,
        *dims: int,
        force_tuple_output: bool = False,
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        builder = SequenceBuilder(*dims)
        FlowModule.__init__(self, builder.tree(), None, dtype)
        self._builder = builder
        self._seed = seed
        self.force_tuple_output = force_tuple_output

    def _new_block(self, node: Node, params: Mapping[str, np.ndarray], seed: int) -> nn.Module:
        module = FlowModule(node, params, self._dtype, seed=seed)
        reference = next(iter(self.parameters()), None)
        return module.to(reference.device) if reference is not None else module

    def _wrap(self, tree: Node, children: dict[str, Any]) -> nn.Module:
        return FlowModule(tree, None, self._dtype, children)

    def _random_seed(self) -> int:
        return int(torch.randint(0, 2**31 - 1, ()))

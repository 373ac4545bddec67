"""FrEIA's imperative ``SequenceINN`` for JAX: ``SequenceINN(*dims).append(...)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from flowcore.adapter import ImperativeSequence
from flowcore.models import SequenceBuilder
from flowcore.tree import Node

from .modules import FlowModule, cast_floats


class SequenceINN(ImperativeSequence, FlowModule):
    """A sequence of blocks appended one by one, as in FrEIA, as a Flax NNX module (see
    :class:`flowcore.adapter.ImperativeSequence`); without ``seed``, initial parameters
    come from NumPy's global generator (``np.random.seed``)."""

    def __init__(
        self,
        *dims: int,
        force_tuple_output: bool = False,
        seed: int | None = None,
        dtype: Any = "float32",
    ) -> None:
        builder = SequenceBuilder(*dims)
        FlowModule.__init__(self, builder.tree(), None, dtype)
        self._builder = builder
        self._seed = seed
        self.force_tuple_output = force_tuple_output

    def _new_block(self, node: Node, params: Mapping[str, np.ndarray], seed: int) -> nnx.Module:
        module = FlowModule(node, params, self._dtype, seed=seed)
        existing = jax.tree.leaves(nnx.state(self, nnx.Param))
        if existing:  # follow the device the sequence was moved to
            cast_floats(module, existing[0].dtype, next(iter(existing[0].devices())))
        return module

    def _wrap(self, tree: Node, children: dict[str, Any]) -> nnx.Module:
        return FlowModule(tree, None, self._dtype, modules=children)

    def _random_seed(self) -> int:
        return int(np.random.randint(2**31 - 1))

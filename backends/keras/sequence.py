"""FrEIA's imperative ``SequenceINN`` for Keras: ``SequenceINN(*dims).append(...)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from flowcore.adapter import ImperativeSequence
from flowcore.models import SequenceBuilder
from flowcore.serialize import spec_from_config
from flowcore.tree import Node

from .layers import FlowLayer


@keras.saving.register_keras_serializable(package="flowcore")
class SequenceINN(ImperativeSequence, FlowLayer):
    """A sequence of blocks appended one by one, as in FrEIA (see
    :class:`flowcore.adapter.ImperativeSequence`); native subnet constructors return Keras
    layers. Without ``seed``, initial parameters come from NumPy's global generator, which
    ``keras.utils.set_random_seed`` seeds.
    """

    def __init__(
        self,
        *dims: int,
        force_tuple_output: bool = False,
        seed: int | None = None,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        builder = SequenceBuilder(*dims)
        FlowLayer.__init__(self, builder.tree(), dtype=dtype, **kwargs)
        self._builder = builder
        self._seed = seed
        self.force_tuple_output = force_tuple_output

    def _new_block(
        self, node: Node, params: Mapping[str, np.ndarray], seed: int
    ) -> keras.layers.Layer:
        with keras.name_scope(self.name, caller=self):
            return FlowLayer(node, params, dtype=self.dtype_policy, name=node.path, seed=seed)

    def _wrap(self, tree: Node, children: dict[str, Any]) -> keras.layers.Layer:
        return FlowLayer(tree, None, children, dtype=self.dtype_policy)

    def _random_seed(self) -> int:
        return int(np.random.randint(2**31 - 1))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "force_tuple_output": self.force_tuple_output}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SequenceINN:
        config = dict(config)
        spec = spec_from_config(config.pop("spec"))
        (dims,) = config.pop("input_shapes")
        cond_shapes = config.pop("cond_shapes")
        sequence = cls(*dims, **config)
        for block, cond in zip(spec.transforms, spec.conditions, strict=True):  # type: ignore[attr-defined]
            sequence.append(block, cond, None if cond is None else cond_shapes[cond])
        return sequence

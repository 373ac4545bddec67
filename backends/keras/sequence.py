"""FrEIA's imperative ``SequenceINN`` for Keras: ``SequenceINN(*dims).append(...)``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from flowcore.models import SequenceBuilder
from flowcore.serialize import spec_from_config
from flowcore.spec import Transform
from flowcore.tree import Node, initial_params

from .layers import FlowLayer


@keras.saving.register_keras_serializable(package="flowcore")
class SequenceINN(FlowLayer):
    """A sequence of blocks appended one by one, as in FrEIA.

    ``append(block, cond=None, cond_shape=None, **kwargs)`` builds ``block(**kwargs)`` (a
    flowcore transform class such as ``AllInOneBlock``, e.g. with ``subnet_constructor=``
    returning a Keras layer) for the current output shape; ``cond`` indexes the list of
    conditions given to ``call``. Initial parameters come from ``seed`` when given (then
    equal to ``flowcore.build`` of the same spec and seed), else from NumPy's global
    generator, which ``keras.utils.set_random_seed`` seeds.
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
        super().__init__(builder.tree(), dtype=dtype, **kwargs)
        self._builder = builder
        self._seed = seed
        self.force_tuple_output = force_tuple_output

    def append(
        self,
        module_class: type[Transform] | Transform,
        cond: int | None = None,
        cond_shape: Any = None,
        **kwargs: Any,
    ) -> None:
        seed = self._seed if self._seed is not None else int(np.random.randint(2**31 - 1))

        def make(node: Node) -> FlowLayer:
            with keras.name_scope(self.name, caller=self):
                return FlowLayer(
                    node, initial_params(node, seed), dtype=self.dtype_policy, name=node.path
                )

        layer = self._builder.add(module_class, cond, cond_shape, kwargs, make)
        self.sublayers[str(len(self) - 1)] = layer
        self.flowcore_tree = self._builder.tree()

    def __len__(self) -> int:
        return len(self._builder.blocks)

    def __iter__(self) -> Iterator[FlowLayer]:
        return (self.sublayers[str(i)] for i in range(len(self)))

    def __getitem__(self, index: int | slice) -> FlowLayer:
        return self._builder.select(
            index,
            list(self),
            lambda tree, children: FlowLayer(tree, None, children, dtype=self.dtype_policy),
        )

    def call(self, x: Any, c: Any = None, rev: bool = False, jac: bool = True) -> tuple[Any, Any]:
        z, log_det = super().call(x, c, rev, jac)
        if self.force_tuple_output and not isinstance(z, tuple):
            z = (z,)
        return z, log_det

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

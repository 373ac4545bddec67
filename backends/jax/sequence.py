"""FrEIA's imperative ``SequenceINN`` for JAX: ``SequenceINN(*dims).append(...)``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from flax import nnx

from flowcore.models import SequenceBuilder
from flowcore.spec import Transform
from flowcore.tree import Node, initial_params

from .modules import FlowModule, cast_floats


class SequenceINN(FlowModule):
    """A sequence of blocks appended one by one, as in FrEIA, as a Flax NNX module.

    ``append(block, cond=None, cond_shape=None, **kwargs)`` builds ``block(**kwargs)`` (a
    flowcore transform class such as ``AllInOneBlock``, e.g. with ``subnet_constructor=``)
    for the current output shape; ``cond`` indexes the list of conditions given to the call.
    Initial parameters come from ``seed`` when given (then equal to ``flowcore.build`` of
    the same spec and seed), else from NumPy's global generator (``np.random.seed``).
    """

    def __init__(
        self,
        *dims: int,
        force_tuple_output: bool = False,
        seed: int | None = None,
        dtype: Any = "float32",
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
        seed = self._seed if self._seed is not None else int(np.random.randint(2**31 - 1))

        def make(node: Node) -> FlowModule:
            module = FlowModule(node, initial_params(node, seed), self._dtype, seed=seed)
            existing = jax.tree.leaves(nnx.state(self, nnx.Param))
            if existing:  # follow the device the sequence was moved to
                cast_floats(module, existing[0].dtype, next(iter(existing[0].devices())))
            return module

        module = self._builder.add(module_class, cond, cond_shape, kwargs, make)
        setattr(self, str(len(self) - 1), module)
        self.flowcore_tree = self._builder.tree()

    def __len__(self) -> int:
        return len(self._builder.blocks)

    def __iter__(self) -> Iterator[FlowModule]:
        return (getattr(self, str(i)) for i in range(len(self)))

    def __getitem__(self, index: int | slice) -> FlowModule:
        return self._builder.select(
            index,
            list(self),
            lambda tree, children: FlowModule(tree, None, self._dtype, modules=children),
        )

    def __call__(
        self, x: Any, c: Any = None, rev: bool = False, jac: bool = True
    ) -> tuple[Any, jax.Array]:
        z, log_det = super().__call__(x, c, rev, jac)
        if self.force_tuple_output and not isinstance(z, tuple):
            z = (z,)
        return z, log_det

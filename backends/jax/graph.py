"""FrEIA's ``GraphINN(node_list)`` for JAX, as a Flax NNX module."""

from __future__ import annotations

from typing import Any

import numpy as np

from flowcore.adapter import ImperativeGraph

from .modules import FlowModule


class GraphINN(ImperativeGraph, FlowModule):
    """A graph of flowcore nodes as a Flax NNX module (see
    :class:`flowcore.adapter.ImperativeGraph`), one child module per node. Without ``seed``,
    initial parameters come from NumPy's global generator (``np.random.seed``)."""

    def __init__(
        self,
        node_list: Any,
        force_tuple_output: bool = False,
        verbose: bool = False,
        *,
        seed: int | None = None,
        dtype: Any = "float32",
    ) -> None:
        tree = self._graph_tree(node_list)
        params, seed = self._initial(tree, seed)
        FlowModule.__init__(self, tree, params, dtype, seed=seed)
        self._graph_init(node_list, tree, force_tuple_output, verbose)

    def _random_seed(self) -> int:
        return int(np.random.randint(2**31 - 1))

    def __call__(  # type: ignore[override]
        self,
        x_or_z: Any,
        c: Any = None,
        rev: bool = False,
        jac: bool = True,
        intermediate_outputs: bool = False,
    ) -> tuple[Any, Any]:
        return self.call_graph(x_or_z, c, rev, jac, intermediate_outputs)

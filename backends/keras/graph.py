"""FrEIA's ``GraphINN(node_list)`` for Keras, one sublayer per node."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from flowcore.adapter import ImperativeGraph
from flowcore.serialize import spec_from_config

from .layers import FlowLayer


@keras.saving.register_keras_serializable(package="flowcore")
class GraphINN(ImperativeGraph, FlowLayer):
    """A graph of flowcore nodes as a Keras layer (see
    :class:`flowcore.adapter.ImperativeGraph`), one sublayer per node. Without ``seed``,
    initial parameters come from NumPy's global generator, which
    ``keras.utils.set_random_seed`` seeds. Its config is the graph spec's, so
    ``model.save("m.keras")`` round-trips it (portable subnets only)."""

    def __init__(
        self,
        node_list: Any,
        force_tuple_output: bool = False,
        verbose: bool = False,
        *,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        tree = self._graph_tree(node_list)
        params, seed = self._initial(tree, seed)
        FlowLayer.__init__(self, tree, params, seed=seed, **kwargs)
        self._graph_init(node_list, tree, force_tuple_output, verbose)

    def _random_seed(self) -> int:
        return int(np.random.randint(2**31 - 1))

    def call(  # type: ignore[override]
        self,
        x_or_z: Any,
        c: Any = None,
        rev: bool = False,
        jac: bool = True,
        intermediate_outputs: bool = False,
    ) -> tuple[Any, Any]:
        return self.call_graph(x_or_z, c, rev, jac, intermediate_outputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "force_tuple_output": self.force_tuple_output}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GraphINN:
        config = dict(config)
        spec = spec_from_config(config.pop("spec"))
        config.pop("input_shapes"), config.pop("cond_shapes")
        return cls(spec.nodes, **config)  # type: ignore[attr-defined]

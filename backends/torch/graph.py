"""FrEIA's ``GraphINN(node_list)`` for PyTorch, every node's module registered."""

from __future__ import annotations

from typing import Any

import torch

from flowcore.adapter import ImperativeGraph

from .modules import FlowModule


class GraphINN(ImperativeGraph, FlowModule):
    """A graph of flowcore nodes as a ``torch.nn.Module`` (see
    :class:`flowcore.adapter.ImperativeGraph`): each node's module is a submodule named
    after the node, so ``.to()``, ``state_dict``, ``DataParallel`` and DDP see them all.
    Without ``seed``, initial parameters come from PyTorch's global generator."""

    def __init__(
        self,
        node_list: Any,
        force_tuple_output: bool = False,
        verbose: bool = False,
        *,
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        tree = self._graph_tree(node_list)
        params, seed = self._initial(tree, seed)
        FlowModule.__init__(self, tree, params, dtype, seed=seed)
        self._graph_init(node_list, tree, force_tuple_output, verbose)

    def _random_seed(self) -> int:
        return int(torch.randint(0, 2**31 - 1, ()))

    def forward(  # type: ignore[override]
        self,
        x_or_z: Any,
        c: Any = None,
        rev: bool = False,
        jac: bool = True,
        intermediate_outputs: bool = False,
    ) -> tuple[Any, Any]:
        return self.call_graph(x_or_z, c, rev, jac, intermediate_outputs)

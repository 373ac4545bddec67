"""The float64 NumPy reference executor: the oracle every backend is compared with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .namespace import numpy_namespace
from .tree import Node, check_params, functional_call


class Reference:
    """Runs a spec tree in float64 NumPy with the given canonical parameters."""

    def __init__(self, tree: Node, params: Mapping[str, np.ndarray]) -> None:
        check_params(tree, params)
        self.tree = tree
        self.params = {
            k: np.asarray(v, dtype=np.int64 if np.asarray(v).dtype.kind in "iu" else np.float64)
            for k, v in params.items()
        }
        self._xp = numpy_namespace()

    def __call__(
        self,
        xs: Sequence[np.ndarray],
        cs: Sequence[np.ndarray] = (),
        rev: bool = False,
        jac: bool = True,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        xs = [np.asarray(x, dtype=np.float64) for x in xs]
        cs = [np.asarray(c, dtype=np.float64) for c in cs]
        return functional_call(self.tree, self._xp, self.params, xs, cs, rev, jac)

"""The float64 NumPy reference executor: the oracle every backend is compared with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .executor import functional_call
from .namespace import numpy_namespace
from .params import validate
from .spec import Array, Shape
from .tree import Node


class Reference:
    """Runs a spec tree in float64 NumPy with the given canonical parameters.

    Like a native model it keeps state: updates a call makes (ActNorm's initialisation) are
    written into :attr:`params`. Random draws come from a NumPy generator seeded by ``seed``.
    """

    def __init__(self, tree: Node, params: Mapping[str, np.ndarray], seed: int = 0) -> None:
        self.tree = tree
        self.params = validate(tree, params)
        self._xp = numpy_namespace()
        self._rng = np.random.default_rng(seed)

    def _draw(self, kind: str, shape: Shape, like: Array) -> np.ndarray:
        if kind == "normal":
            return self._rng.standard_normal(shape)
        return self._rng.integers(0, 2, shape) * 2.0 - 1.0

    def __call__(
        self,
        xs: Sequence[np.ndarray],
        cs: Sequence[np.ndarray] = (),
        rev: bool = False,
        jac: bool = True,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        xs = [np.asarray(x, dtype=np.float64) for x in xs]
        cs = [np.asarray(c, dtype=np.float64) for c in cs]
        ys, log_det, updates = functional_call(
            self.tree, self._xp, self.params, xs, cs, rev, jac, draw=self._draw
        )
        self.params.update({k: np.asarray(v, dtype=np.float64) for k, v in updates.items()})
        return ys, log_det

"""The float64 reference executor: the oracle every backend is compared with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .executor import functional_call
from .namespace import numpy_namespace
from .params import validate
from .spec import Array, Namespace, Shape
from .tree import Node


def _condition(c: np.ndarray) -> np.ndarray:
    """A condition in float64, or int64 if it holds integers (an index condition)."""
    c = np.asarray(c)
    return c.astype(np.int64 if c.dtype.kind in "iu" else np.float64)


class Reference:
    """Runs a spec tree in float64 with the given canonical parameters.

    It computes with NumPy unless given another Array API namespace ``xp`` (built with
    :func:`flowcore.namespace.extend`, e.g. :func:`flowcore.namespace.strict_namespace`):
    inputs, conditions and parameters are handed to the math as ``xp.asarray`` of their
    float64 NumPy values (int64 for index parameters and integer conditions), and the
    results come back as NumPy arrays.

    Like a native model it keeps state: updates a call makes (ActNorm's initialisation) are
    written into :attr:`params`. Random draws come from a NumPy generator seeded by ``seed``.
    """

    def __init__(
        self,
        tree: Node,
        params: Mapping[str, np.ndarray],
        seed: int = 0,
        xp: Namespace | None = None,
    ) -> None:
        self.tree = tree
        self.params = validate(tree, params)
        self._xp = numpy_namespace() if xp is None else xp
        self._rng = np.random.default_rng(seed)

    def _draw(self, kind: str, shape: Shape, like: Array) -> Array:
        if kind == "normal":
            return self._xp.asarray(self._rng.standard_normal(shape))
        return self._xp.asarray(self._rng.integers(0, 2, shape) * 2.0 - 1.0)

    def __call__(
        self,
        xs: Sequence[np.ndarray],
        cs: Sequence[np.ndarray] = (),
        rev: bool = False,
        jac: bool = True,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        xp = self._xp
        xs = [xp.asarray(np.asarray(x, dtype=np.float64)) for x in xs]
        cs = [xp.asarray(_condition(c)) for c in cs]
        params = {k: xp.asarray(v) for k, v in self.params.items()}
        ys, log_det, updates = functional_call(
            self.tree, xp, params, xs, cs, rev, jac, draw=self._draw
        )
        self.params.update(
            {k: np.asarray(v, dtype=self.params[k].dtype) for k, v in updates.items()}
        )
        return [np.asarray(y) for y in ys], np.asarray(log_det)

"""The ``strict`` backend: :class:`StrictFlow` models computing with array-api-strict.

What a backend implements, all of it here: ``build``, ``get_params``/``set_params`` through
flowcore's one parameter policy (:mod:`flowcore.params`), the array conversions, ``call``
(flowcore's executor on the tree with this namespace), and the derivatives the conformance
suite compares: the Jacobian by fourth-order central differences (step 1e-4, error ~1e-12
where the map is smooth) and the loss gradient by second-order central differences (step
1e-5, error ~1e-9), both of the float64 computation with the model's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import array_api_strict
import numpy as np

from flowcore.errors import BackendError
from flowcore.executor import functional_call
from flowcore.namespace import strict_namespace
from flowcore.params import snapshot, validate
from flowcore.spec import Shape
from flowcore.tree import Node

XP = strict_namespace()
DTYPES = {"float32": array_api_strict.float32, "float64": array_api_strict.float64}


class StrictFlow:
    """A flow of the ``strict`` backend: ``flow(x, c=None, rev=False, jac=True)`` returns
    ``(z, log_det)`` (lists for several inputs or outputs) as array-api-strict arrays."""

    flowcore_backend = "strict"

    def __init__(
        self, tree: Node, params: Mapping[str, np.ndarray], dtype: str, seed: int
    ) -> None:
        if tree.native_paths():
            raise BackendError(f"{tree.label}: the strict backend runs no native subnet")
        self.flowcore_tree = tree
        self.dtype = dtype
        self.params = _in_dtype(tree, validate(tree, params), dtype)
        self._rng = np.random.default_rng(seed)

    def _draw(self, kind: str, shape: Shape, like: Any) -> Any:
        values = (
            self._rng.standard_normal(shape)
            if kind == "normal"
            else self._rng.integers(0, 2, shape) * 2.0 - 1.0
        )
        return XP.asarray(values, dtype=DTYPES[self.dtype])

    def run(
        self, xs: Sequence[Any], cs: Sequence[Any], rev: bool, jac: bool
    ) -> tuple[list[Any], Any]:
        params = {k: XP.asarray(v) for k, v in self.params.items()}
        ys, log_det, updates = functional_call(
            self.flowcore_tree, XP, params, list(xs), list(cs), rev, jac, draw=self._draw
        )
        self.params.update(
            {k: np.asarray(v, dtype=self.params[k].dtype) for k, v in updates.items()}
        )
        return list(ys), log_det

    def __call__(self, x: Any, c: Any = None, rev: bool = False, jac: bool = True) -> Any:
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        cs = [] if c is None else list(c) if isinstance(c, (list, tuple)) else [c]
        ys, log_det = self.run(xs, cs, rev, jac)
        return (ys if len(ys) > 1 else ys[0]), log_det


def _in_dtype(tree: Node, params: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """Float parameters in the model's dtype, index ones in int64 (the parameter policy)."""
    specs = tree.param_specs()
    return {
        k: v.astype(dtype if specs[k].kind == "float" else np.int64) for k, v in params.items()
    }


class StrictBackend:
    name = "strict"
    xp = XP

    def build(
        self, tree: Node, params: Mapping[str, np.ndarray], dtype: str, device: Any, seed: int = 0
    ) -> StrictFlow:
        if device not in (None, "cpu"):
            raise BackendError(f"the strict backend runs on the CPU only, not on {device!r}")
        return StrictFlow(tree, params, dtype, seed)

    def get_params(self, module: StrictFlow) -> dict[str, np.ndarray]:
        return snapshot(module.params)

    def set_params(self, module: StrictFlow, params: Mapping[str, np.ndarray]) -> None:
        module.params = _in_dtype(
            module.flowcore_tree, validate(module.flowcore_tree, params), module.dtype
        )

    # -- what the conformance suite drives --------------------------------------------------

    def devices(self) -> Sequence[str]:
        return ["cpu"]

    def to_native(self, array: np.ndarray, dtype: str, device: str) -> Any:
        kind = array_api_strict.int64 if dtype == "int64" else DTYPES[dtype]
        return XP.asarray(np.asarray(array), dtype=kind)

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(array)

    def move(self, module: StrictFlow, dtype: str, device: str) -> StrictFlow:
        if device != "cpu":
            raise BackendError(f"the strict backend runs on the CPU only, not on {device!r}")
        module.dtype = dtype
        module.params = _in_dtype(module.flowcore_tree, module.params, dtype)
        return module

    def device_of(self, module: StrictFlow) -> str:
        return "cpu"

    def call(
        self, module: StrictFlow, xs: Sequence[Any], cs: Sequence[Any], rev: bool, jac: bool
    ) -> tuple[list[Any], Any]:
        return module.run(xs, cs, rev, jac)

    def jacobian(self, module: StrictFlow, x: Any, cs: Sequence[Any]) -> np.ndarray:
        """Per-sample Jacobians by fourth-order central differences, one input element at
        a time for the whole batch (samples do not interact)."""
        run = _float64(module, [np.asarray(c) for c in cs])
        x0 = np.asarray(x, dtype=np.float64)
        batch, size, h = x0.shape[0], x0[0].size, 1e-4
        columns = []
        for d in range(size):

            def at(step: float, d: int = d) -> np.ndarray:
                shifted = x0.reshape(batch, size).copy()
                shifted[:, d] += step
                return run([shifted.reshape(x0.shape)])[0][0].reshape(batch, -1)

            columns.append((at(-2 * h) - 8 * at(-h) + 8 * at(h) - at(2 * h)) / (12 * h))
        return np.stack(columns, axis=-1)

    def gradients(
        self, module: StrictFlow, xs: Sequence[Any], cs: Sequence[Any]
    ) -> dict[str, np.ndarray]:
        """Gradients of ``sum(z**2)/2 - sum(log_det)`` by central differences of the
        float64 loss, one parameter element at a time (step 1e-5)."""
        tree, h = module.flowcore_tree, 1e-5
        inputs = [np.asarray(x, dtype=np.float64) for x in xs]
        conditions = [np.asarray(c) for c in cs]
        base = {
            k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in module.params.items()
        }

        def loss(params: dict[str, np.ndarray]) -> float:
            zs, log_det = _float64(module, conditions, params)(inputs)
            return float(sum(0.5 * np.sum(z**2) for z in zs) - np.sum(log_det))

        grads = {}
        for name, spec in tree.param_specs().items():
            if not spec.trainable:
                continue
            grad = np.zeros(spec.shape)
            for i in np.ndindex(*spec.shape):
                value = base[name].copy()
                value[i] += h
                plus = loss({**base, name: value})
                value[i] -= 2 * h
                grad[i] = (plus - loss({**base, name: value})) / (2 * h)
            grads[name] = grad
        return grads


def _float64(
    module: StrictFlow, cs: Sequence[np.ndarray], params: Mapping[str, np.ndarray] | None = None
) -> Callable[[Sequence[np.ndarray]], tuple[list[np.ndarray], np.ndarray]]:
    """The module's forward in float64 (its parameters, or ``params``), on NumPy arrays."""
    values = {k: XP.asarray(np.asarray(v, dtype=np.float64) if v.dtype.kind == "f" else v)
              for k, v in (module.params if params is None else params).items()}  # fmt: skip
    conds = [XP.asarray(c.astype(np.float64) if c.dtype.kind == "f" else c) for c in cs]

    def run(xs: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        ys, log_det, _ = functional_call(
            module.flowcore_tree, XP, values, [XP.asarray(x) for x in xs], conds, False, True,
            draw=module._draw,
        )  # fmt: skip
        return [np.asarray(y) for y in ys], np.asarray(log_det)

    return run


BACKEND = StrictBackend()

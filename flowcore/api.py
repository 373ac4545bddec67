"""The user-facing entry points: choose a backend, build a model, read and write parameters."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .backend import Backend, installed_backends, load_backend
from .errors import ArgumentError, BackendError
from .options import OptionError
from .params import snapshot, validate
from .reference import Reference
from .spec import Transform
from .tree import Node, build_tree, initial_params, normalize_shapes

_default_backend: str | None = None


def set_backend(name: str | None) -> None:
    """Set the default backend of this process (None clears it); it is checked at once."""
    global _default_backend
    if name is not None:
        load_backend(name)
    _default_backend = name


def get_backend(name: str | None = None) -> Backend:
    """The named backend, else ``FLOWCORE_BACKEND``, else :func:`set_backend`'s, else the
    only installed one."""
    chosen = name or os.environ.get("FLOWCORE_BACKEND") or _default_backend
    if chosen:
        return load_backend(chosen)
    installed = installed_backends()
    if len(installed) == 1:
        return load_backend(installed[0])
    raise BackendError(
        "no flowcore backend chosen: pass backend=..., set FLOWCORE_BACKEND or call "
        f"flowcore.set_backend(...); installed backends: {installed or 'none'}"
    )


def build(
    spec: Transform,
    input_shape: Any = None,
    cond_shapes: Sequence[Sequence[int]] | None = None,
    *,
    backend: str | None = None,
    seed: int = 0,
    dtype: str = "float32",
    device: Any = None,
) -> Any:
    """Build ``spec`` for inputs of ``input_shape`` (batch axis excluded) as a native module.

    ``input_shape`` is one shape ``(8,)`` or a list of shapes; ``cond_shapes`` lists the
    condition shapes. The same ``seed`` gives bit-identical initial parameters in every
    backend. A transform that fixes its own shapes (a :class:`~flowcore.GraphINN`) needs
    neither ``input_shape`` nor ``cond_shapes``.
    """
    if dtype not in ("float32", "float64"):
        raise OptionError(f"build: dtype must be 'float32' or 'float64', got {dtype!r}")
    fixed = spec.default_shapes() if isinstance(spec, Transform) else None
    if input_shape is None and fixed is not None:
        input_shape = fixed[0]
    if cond_shapes is None:
        cond_shapes = fixed[1] if fixed is not None else ()
    tree = build_tree(spec, normalize_shapes(input_shape), cond_shapes)
    chosen = get_backend(backend)
    return chosen.build(tree, initial_params(tree, seed), dtype, device, seed)


def backend_of(model: Any) -> Backend:
    """The backend that built ``model``."""
    name = getattr(model, "flowcore_backend", None)
    if name is None:
        raise ArgumentError(f"{type(model).__name__} is not a flowcore model")
    return load_backend(name)


def tree_of(model: Any) -> Node:
    """The spec tree a flowcore model runs."""
    backend_of(model)
    return model.flowcore_tree


def get_params(model: Any) -> dict[str, np.ndarray]:
    """Canonical parameters of ``model`` as NumPy arrays, by dotted name: copies, which the
    model's later training never changes."""
    return snapshot(backend_of(model).get_params(model))


def set_params(model: Any, params: Mapping[str, np.ndarray]) -> None:
    """Write canonical parameters (all of them, as from :func:`get_params`) into ``model``.

    Every value is checked (:func:`flowcore.params.validate`) before any is written, and the
    model keeps copies, never the caller's arrays.
    """
    backend_of(model).set_params(model, validate(tree_of(model), params))


def reference(model: Any) -> Reference:
    """A float64 NumPy reference of ``model`` with its current parameters."""
    return Reference(tree_of(model), get_params(model))

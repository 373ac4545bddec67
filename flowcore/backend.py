"""What a backend provides, and the registry that finds backends by entry point.

A backend registers a :class:`BackendInfo` under the entry-point group ``flowcore.backends``;
the registry reads those without importing any framework, and imports the backend's module
(which exposes ``BACKEND``, a :class:`Backend`) only when it is asked for.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from .errors import BackendError
from .tree import Node

ENTRY_POINT_GROUP = "flowcore.backends"


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """A backend's name, the module holding its ``BACKEND`` and the modules it needs."""

    name: str
    module: str
    requires: tuple[str, ...]

    def installed(self) -> bool:
        return all(importlib.util.find_spec(req) is not None for req in self.requires)


class Backend(Protocol):
    """One generic adapter turning any spec tree into native modules of one framework."""

    name: str
    #: The array namespace its modules compute with (their ``ctx.xp``): what backend-neutral
    #: code outside a transform, such as :func:`flowcore.log_prob`, applies to their arrays.
    xp: Any

    def build(
        self,
        tree: Node,
        params: Mapping[str, np.ndarray],
        dtype: str,
        device: Any,
        seed: int = 0,
    ) -> Any:
        """A native module running ``tree``, its parameters set from canonical ``params``;
        ``seed`` is the build's seed, for native subnets that take one."""

    def get_params(self, module: Any) -> dict[str, np.ndarray]:
        """Canonical parameters (trainable and buffers) as NumPy arrays by dotted name."""

    def set_params(self, module: Any, params: Mapping[str, np.ndarray]) -> None:
        """Write canonical parameters into ``module`` (all of them, shapes checked)."""

    # -- what the conformance suite drives --------------------------------------------
    def devices(self) -> Sequence[str]:
        """Devices present here, e.g. ``["cpu", "cuda"]``."""

    def to_native(self, array: np.ndarray, dtype: str, device: str) -> Any:
        """``array`` as a native array of ``dtype`` on ``device``: ``"float32"`` or
        ``"float64"``, or ``"int64"`` for an index condition (a backend without 64-bit
        integers, JAX without x64, may hold it as int32)."""

    def to_numpy(self, array: Any) -> np.ndarray: ...

    def move(self, module: Any, dtype: str, device: str) -> Any:
        """The module on ``device`` computing in ``dtype``."""

    def device_of(self, module: Any) -> str:
        """The device the module's parameters are on, as :meth:`devices` names it
        (``"cpu"``, ``"cuda"``, ``"cuda:1"``): where :func:`flowcore.sample` puts its noise."""

    def call(
        self, module: Any, xs: Sequence[Any], cs: Sequence[Any], rev: bool, jac: bool
    ) -> tuple[list[Any], Any]:
        """Run the native module; returns native ``(outputs, log_det)``."""

    def jacobian(self, module: Any, x: Any, cs: Sequence[Any]) -> np.ndarray:
        """Per-sample Jacobian ``d forward(x)/dx`` by the framework's autodiff, shape (B, D, D)
        with D the flattened size of one sample."""

    def gradients(
        self, module: Any, xs: Sequence[Any], cs: Sequence[Any]
    ) -> dict[str, np.ndarray]:
        """Gradients of ``sum(z**2)/2 - sum(log_det)`` w.r.t. every trainable canonical
        parameter, by the framework's autodiff."""

    def compiled(self, module: Any) -> Callable[..., tuple[list[Any], Any]]:
        """``call`` under the framework's compiler, as ``f(xs, cs, rev, jac)``: torch's
        ``torch.compile(fullgraph=True)`` (a graph break is an error), ``jax.jit``, or what
        Keras compiles with on its backend. Optional: the suite's ``compiled`` check is not
        run for a backend without it."""

    def bench_steps(self, config: Any, x: np.ndarray, device: str, threads: int) -> list[Any]:
        """``flowcore bench``'s :class:`~flowcore.bench.Workload` s for a
        :class:`~flowcore.bench.Config` on the float32 batch ``x``, ``threads`` cores: the
        flow, the floor (its subnets alone, as the framework's layers) and the framework's
        peers, eager and compiled. Optional: a backend without it is not benchmarked."""


def _entry_points() -> dict[str, BackendInfo]:
    import importlib.metadata  # costs ~30 ms, so only when backends are looked up

    found: dict[str, BackendInfo] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        info = ep.load()
        if not isinstance(info, BackendInfo):
            raise BackendError(f"entry point {ep.value!r} is not a flowcore BackendInfo")
        found[info.name] = info
    return found


_REGISTERED: dict[str, BackendInfo] = {}
_LOADED: dict[str, Backend] = {}


def register(info: BackendInfo) -> None:
    """Register a backend at run time (entry points are the usual way)."""
    _REGISTERED[info.name] = info


def registered() -> dict[str, BackendInfo]:
    """Every registered backend, installed or not."""
    return {**_entry_points(), **_REGISTERED}


def installed_backends() -> list[str]:
    """Names of the registered backends whose frameworks are installed."""
    return sorted(name for name, info in registered().items() if info.installed())


def load_backend(name: str) -> Backend:
    """Import and return the named backend, with a clear error if it is unknown or missing."""
    if name in _LOADED:
        return _LOADED[name]
    infos = registered()
    if name not in infos:
        raise BackendError(
            f"unknown flowcore backend {name!r}; registered: {sorted(infos)}, "
            f"installed: {installed_backends()}"
        )
    info = infos[name]
    if not info.installed():
        missing = [r for r in info.requires if importlib.util.find_spec(r) is None]
        raise BackendError(
            f"flowcore backend {name!r} needs {missing}, which is not installed "
            f"(pip install 'flowcore[{name}]'); installed backends: {installed_backends()}"
        )
    backend = getattr(importlib.import_module(info.module), "BACKEND", None)
    if backend is None:
        raise BackendError(f"flowcore backend {name!r}: module {info.module} defines no BACKEND")
    _LOADED[name] = backend
    return backend

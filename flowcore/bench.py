"""``flowcore bench``: the same flow timed in every installed backend, in one run, as ratios
to PyTorch.

The flow is ``blocks`` AllInOneBlocks on vectors of ``dim`` with one hidden layer of
``hidden`` (the same spec and seed everywhere), a batch of ``batch``. Two workloads:

- ``apply``: forward then inverse, no gradient: torch eagerly under ``no_grad``, JAX's
  pure ``apply`` under ``jax.jit``, Keras eagerly on the Keras backend of the process;
- ``grad``: the gradient of the negative log-likelihood with respect to every parameter:
  torch's ``backward``, ``jax.jit(jax.grad(...))``, Keras through the backend's own autodiff
  (:meth:`flowcore.backend.Backend.gradients`, which also copies the gradients to NumPy).

Each time is the median over ``repeats`` runs of ``number`` calls, after one warm-up call
(which compiles under jit). Only ratios measured in one run mean anything: the machine's
load moves all of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import timeit
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .api import build
from .backend import installed_backends, load_backend
from .density import log_prob, standard_normal_log_prob
from .models import SequenceINN
from .spec import Transform
from .subnets import MLP
from .transforms import AllInOneBlock

Step = Callable[[], object]
WORKLOADS = ("apply", "grad")


@dataclasses.dataclass(frozen=True)
class Setting:
    """The flow, batch and device benchmarked."""

    blocks: int = 16
    dim: int = 8
    hidden: int = 64
    batch: int = 64
    device: str = "cpu"
    repeats: int = 7
    number: int = 30

    def spec(self) -> Transform:
        block = AllInOneBlock(subnet=MLP(hidden=(self.hidden,)))
        return SequenceINN(*[block] * self.blocks)


def _torch(setting: Setting, x: np.ndarray) -> dict[str, Step]:
    import torch

    flow = build(setting.spec(), (setting.dim,), backend="torch", seed=0, device=setting.device)
    xt = torch.as_tensor(x, device=setting.device)
    sync = torch.cuda.synchronize if setting.device.startswith("cuda") else lambda: None

    def apply() -> object:
        with torch.no_grad():
            z, _ = flow(xt)
            out = flow(z, rev=True)
        sync()
        return out

    def grad() -> object:
        flow.zero_grad()
        (-log_prob(flow, xt).mean()).backward()
        sync()
        return None

    return {"apply": apply, "grad": grad}


def _jax(setting: Setting, x: np.ndarray) -> dict[str, Step]:
    import importlib

    import jax

    functional = importlib.import_module("flowcore.backends.jax").functional
    flow = build(setting.spec(), (setting.dim,), backend="jax", seed=0, device=setting.device)
    run, params = functional(flow)
    xj = load_backend("jax").to_native(x, "float32", setting.device)

    @jax.jit
    def both(p: Any, v: Any) -> Any:
        z, _ = run(p, v)
        return run(p, z, rev=True)

    def nll(p: Any, v: Any) -> Any:
        z, log_det = run(p, v)
        return -(standard_normal_log_prob(jax.numpy, [z]) + log_det).mean()

    gradient = jax.jit(jax.grad(nll))
    return {
        "apply": lambda: jax.block_until_ready(both(params, xj)),
        "grad": lambda: jax.block_until_ready(gradient(params, xj)),
    }


def _keras(setting: Setting, x: np.ndarray) -> dict[str, Step]:
    backend = load_backend("keras")
    flow = build(setting.spec(), (setting.dim,), backend="keras", seed=0, device=setting.device)
    xk = backend.to_native(x, "float32", setting.device)

    def apply() -> object:
        z, _ = flow(xk)
        return flow(z, rev=True)

    return {"apply": apply, "grad": lambda: backend.gradients(flow, [xk], [])}


STEPS: dict[str, Callable[[Setting, np.ndarray], dict[str, Step]]] = {
    "torch": _torch,
    "jax": _jax,
    "keras": _keras,
}


def median_ms(step: Step, repeats: int, number: int) -> float:
    """The median time of one call in milliseconds, after a warm-up call."""
    step()
    times = timeit.repeat(step, repeat=repeats, number=number)
    return sorted(times)[repeats // 2] / number * 1e3


def label(backend: str) -> str:
    if backend == "keras":
        return f"keras on {os.environ.get('KERAS_BACKEND', 'tensorflow')}"
    return backend


def run(setting: Setting, backends: Sequence[str]) -> list[dict[str, Any]]:
    """One row per backend and workload: ``backend``, ``workload``, ``ms`` and
    ``ratio_to_torch`` (None without torch)."""
    x = np.random.default_rng(0).standard_normal((setting.batch, setting.dim)).astype("float32")
    rows: list[dict[str, Any]] = []
    for name in backends:
        for workload, step in STEPS[name](setting, x).items():
            ms = median_ms(step, setting.repeats, setting.number)
            rows.append({"backend": label(name), "workload": workload, "ms": ms})
    base = {r["workload"]: r["ms"] for r in rows if r["backend"] == "torch"}
    for row in rows:
        row["ratio_to_torch"] = row["ms"] / base[row["workload"]] if base else None
    return rows


def table(setting: Setting, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{setting.blocks} AllInOneBlocks, D={setting.dim}, hidden {setting.hidden}, "
        f"batch {setting.batch}, float32, {setting.device}; median of {setting.repeats}x"
        f"{setting.number} calls",
        f"  {'backend':22s} {'workload':8s} {'ms':>9s}  ratio to torch",
    ]
    for r in rows:
        ratio = "-" if r["ratio_to_torch"] is None else f"{r['ratio_to_torch']:.2f}"
        lines.append(f"  {r['backend']:22s} {r['workload']:8s} {r['ms']:9.3f}  {ratio}")
    return "\n".join(lines)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowcore bench", description=__doc__.split("\n")[0])
    defaults = Setting()
    for field in ("blocks", "dim", "hidden", "batch", "repeats", "number"):
        parser.add_argument(f"--{field}", type=_positive, default=getattr(defaults, field))
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    parser.add_argument(
        "--backends", default=None, help="comma-separated (default: every installed one)"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    installed = [b for b in STEPS if b in installed_backends()]
    backends = installed if args.backends is None else args.backends.split(",")
    unknown = [b for b in backends if b not in installed]
    if unknown:
        parser.error(f"backends not installed or unknown: {unknown}; installed: {installed}")
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(Setting)}
    setting = Setting(**fields)
    rows = run(setting, backends)
    print(json.dumps(rows, indent=1) if args.json else table(setting, rows))
    return 0

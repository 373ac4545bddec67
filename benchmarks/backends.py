"""Forward+inverse time of one 16-block AllInOneBlock flow in every installed backend,
as ratios to PyTorch eager, in one run.

Same spec and seed everywhere (D=8, batch 64, MLP 8->64->8), one CPU thread where the
framework allows. JAX runs its pure ``apply`` under ``jax.jit``; Keras runs eagerly on the
Keras backend of the process (``KERAS_BACKEND``). Run: ``python benchmarks/backends.py``.
"""

from __future__ import annotations

import os
import timeit
from collections.abc import Callable

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np  # noqa: E402

import flowcore as fc  # noqa: E402

BLOCKS, DIM, BATCH, HIDDEN = 16, 8, 64, 64
SPEC = fc.SequenceINN(*[fc.AllInOneBlock(subnet=fc.MLP(hidden=(HIDDEN,)))] * BLOCKS)


def torch_step(x: np.ndarray) -> Callable[[], object]:
    import torch

    torch.set_num_threads(1)
    flow = fc.build(SPEC, (DIM,), backend="torch", seed=0)
    xt = torch.as_tensor(x)

    def step() -> object:
        with torch.no_grad():
            z, _ = flow(xt)
            return flow(z, rev=True)

    return step


def jax_step(x: np.ndarray) -> Callable[[], object]:
    import flowcore.backends.jax as fj
    import jax

    apply, params = fj.functional(fc.build(SPEC, (DIM,), backend="jax", seed=0))

    @jax.jit
    def both(p: dict, v: jax.Array) -> jax.Array:
        z, _ = apply(p, v)
        return apply(p, z, rev=True)

    xj = jax.numpy.asarray(x)
    return lambda: jax.block_until_ready(both(params, xj))


def keras_step(x: np.ndarray) -> Callable[[], object]:
    flow = fc.build(SPEC, (DIM,), backend="keras", seed=0)

    def step() -> object:
        z, _ = flow(x)
        return flow(z, rev=True)

    return step


def median_ms(step: Callable[[], object], repeats: int = 7, number: int = 30) -> float:
    step()  # warm up (compiles under jit)
    times = timeit.repeat(step, repeat=repeats, number=number)
    return sorted(times)[repeats // 2] / number * 1e3


def main() -> None:
    x = np.random.default_rng(0).standard_normal((BATCH, DIM)).astype(np.float32)
    makers = {"torch": torch_step, "jax": jax_step, "keras": keras_step}
    times = {n: median_ms(makers[n](x)) for n in fc.installed_backends() if n in makers}
    print(f"{BLOCKS} AllInOneBlocks, D={DIM}, batch {BATCH}, forward+inverse, CPU")
    base = times.get("torch")
    for name, ms in times.items():
        label = (
            f"keras on {os.environ.get('KERAS_BACKEND', 'tensorflow')}"
            if name == "keras"
            else name
        )
        ratio = f"  ratio to torch eager: {ms / base:.2f}" if base else ""
        print(f"  {label:22s} {ms:7.2f} ms{ratio}")


if __name__ == "__main__":
    main()

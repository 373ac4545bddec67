"""The importer's deviations from FrEIA 0.2, per model, backend and dtype, as a table.

The models are those of ``tests/test_freia_import.py`` (FastFlow's, CFLOW's and U-Flow's
flows, and a conditional GLOW block whose subnets differ, with ActNorm and PermuteRandom),
built in FrEIA 0.2 in float64, read with ``from_freia`` into each backend, and run on the
same data; the columns are the largest |z - z_FrEIA|, log-det and inverse differences::

    JAX_ENABLE_X64=1 KERAS_BACKEND=tensorflow \
        python tests/freia_suite/import_deviations.py torch,jax,keras
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))
import FrEIA.modules as Fm  # noqa: E402
import test_freia_import as models  # noqa: E402
from flowcore.backends.torch.freia.importer import from_freia  # noqa: E402


def _glow() -> torch.nn.Module:
    torch.manual_seed(4)
    inn = models.Ff.SequenceINN(5)
    inn.append(
        Fm.GLOWCouplingBlock, subnet_constructor=models._mlp, cond=0, cond_shape=(2,),
        clamp_activation="TANH",
    )  # fmt: skip
    inn.append(Fm.ActNorm)
    inn.append(Fm.PermuteRandom, seed=3)
    flow = models._perturbed(inn)
    flow(models._data((5,))[0], c=models._data((2,)))  # ActNorm initialises
    return flow


#: name -> (builder, input shapes, condition shapes, version)
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], list[tuple[int, ...]], list[Any], Any]] = {
    "FastFlow": (models._fastflow, [(6, 5, 5)], [], None),
    "CFLOW": (models._cflow, [(7,)], [(4,)], "anomalib"),
    "U-Flow": (models._uflow, [(8, 2, 2), (2, 4, 4)], [], None),
    "GLOW, ActNorm, PermuteRandom": (_glow, [(5,)], [(2,)], None),
}


def _numpy(value: Any) -> np.ndarray:
    return np.asarray(value.detach() if hasattr(value, "detach") else value, dtype=np.float64)


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _dtypes(backend: str) -> list[str]:
    if backend == "jax" or (backend == "keras" and os.environ.get("KERAS_BACKEND") == "jax"):
        import jax

        return ["float32", "float64"] if jax.config.jax_enable_x64 else ["float32"]
    return ["float32", "float64"]


def _cast(a: torch.Tensor, backend: str, dtype: str) -> Any:
    a = a.detach()
    return a.to(getattr(torch, dtype)) if backend == "torch" else a.numpy().astype(dtype)


def deviations(name: str, backend: str, dtype: str) -> tuple[float, float, float]:
    """The largest output, log-det and inverse differences of model ``name`` in
    ``backend`` and ``dtype`` from FrEIA 0.2's float64 numbers."""
    make, inputs, conditions, version = MODELS[name]
    theirs = make()
    xs, cs = models._data(*inputs), models._data(*conditions) if conditions else []
    want, want_log_det = theirs(xs if len(xs) > 1 else xs[0], c=cs or None)
    want = _listed(want)
    back_want = _listed(theirs(want if len(want) > 1 else want[0], c=cs or None, rev=True)[0])
    ours = from_freia(theirs, backend=backend, dtype=dtype, version=version)
    xs_, cs_ = [_cast(x, backend, dtype) for x in xs], [_cast(c, backend, dtype) for c in cs]
    got, log_det = ours(xs_, cs_)
    back = _listed(ours([_cast(w, backend, dtype) for w in want], cs_, rev=True)[0])
    pairs = [*zip(_listed(got), want, strict=True)], [*zip(back, back_want, strict=True)]
    d_out, d_back = (max(float(np.abs(_numpy(a) - _numpy(b)).max()) for a, b in p) for p in pairs)
    return d_out, float(np.abs(_numpy(log_det) - _numpy(want_log_det)).max()), d_back


def main(backends: list[str]) -> None:
    torch.set_default_dtype(torch.float64)
    print("| model | backend | dtype | outputs | log-det | inverse |\n|---|---|---|---|---|---|")
    for backend in backends:
        label = f"keras.{os.environ.get('KERAS_BACKEND')}" if backend == "keras" else backend
        for dtype in _dtypes(backend):
            for name in MODELS:
                numbers = " | ".join(f"{d:.1e}" for d in deviations(name, backend, dtype))
                print(f"| {name} | {label} | {dtype} | {numbers} |")


if __name__ == "__main__":
    main(sys.argv[1].split(",") if len(sys.argv) > 1 else ["torch"])

"""float32 against float64 in deep flows: how the round-trip error grows with depth and scale.

The flow is ``depth`` AllInOneBlocks on D=8 (MLP 64-64 subnets, the default soft clamp 2)
with every trainable weight the seed's plus N(0, 0.1^2) noise (``--perturbation``), so that
each block scales and shifts its input. For inputs
``x = s * N(0, I)`` it prints, per depth and scale ``s``, the relative round-trip error
``|f^-1(f(x)) - x| / |x|`` (median and maximum over 256 samples, Euclidean norms) in
float32 and float64, computed in torch on the CPU. Run:
``python benchmarks/precision.py`` (needs torch).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import flowcore as fc

DIM, BATCH = 8, 256


def flow(depth: int, dtype: str, perturbation: float) -> torch.nn.Module:
    spec = fc.SequenceINN(
        *[fc.AllInOneBlock(subnet=fc.MLP(hidden=(64, 64))) for _ in range(depth)]
    )
    model = fc.build(spec, (DIM,), backend="torch", seed=0, dtype="float64")
    tree = fc.tree_of(model)
    params = fc.get_params(model)
    rng = np.random.default_rng(1)
    for name, p in tree.param_specs().items():
        if p.trainable:
            params[name] = params[name] + perturbation * rng.standard_normal(p.shape)
    fc.set_params(model, params)
    return model.to(getattr(torch, dtype))


def round_trip_errors(model: torch.nn.Module, x: np.ndarray, dtype: str) -> np.ndarray:
    """Relative round-trip error per sample, measured in float64."""
    with torch.no_grad():
        xt = torch.as_tensor(x, dtype=getattr(torch, dtype))
        z, _ = model(xt)
        back, _ = model(z, rev=True)
    x64 = xt.double().numpy()
    return np.linalg.norm(back.double().numpy() - x64, axis=1) / np.linalg.norm(x64, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="1,4,16,64")
    parser.add_argument("--scales", default="1,10,100,1000")
    parser.add_argument("--perturbation", type=float, default=0.1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    depths = [int(d) for d in args.depths.split(",")]
    scales = [float(s) for s in args.scales.split(",")]
    x = np.random.default_rng(2).standard_normal((BATCH, DIM))
    print(
        "| blocks | \\|x\\| scale | float32 median | float32 max | float64 median | float64 max |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for depth in depths:
        models = {dtype: flow(depth, dtype, args.perturbation) for dtype in ("float32", "float64")}
        for scale in scales:
            cells = []
            for dtype, model in models.items():
                errors = round_trip_errors(model, scale * x, dtype)
                cells += [f"{np.median(errors):.1e}", f"{errors.max():.1e}"]
            print(f"| {depth} | {scale:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""Glow's flow step (ActNorm, an LU invertible 1x1 convolution, an affine coupling), trained
in PyTorch and loaded into every other installed backend with the same outputs.

ActNorm initialises itself from the first batch (a state update the torch module writes
back); the saved file carries that state, so the loaded models never re-initialise. Run:
``python examples/glow_steps.py`` (needs torch; JAX and Keras are used where installed).
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import flowcore as fc  # noqa: E402

SHAPE, STEPS, BATCH = (4, 8, 8), 3, 32


def glow(steps: int) -> fc.SequenceINN:
    blocks: list[fc.Transform] = []
    for _ in range(steps):
        blocks += [
            fc.ActNorm(),
            fc.InvertibleConv1x1(),
            fc.GLOWCouplingBlock(subnet=fc.ConvNet(hidden=(32,)), clamp=1.0),
        ]
    return fc.SequenceINN(*blocks)


def data(n: int, rng: np.random.Generator) -> np.ndarray:
    """Images with a shared smooth pattern, an offset and a scale far from 0 and 1, so that
    ActNorm's initialisation has something to do."""
    grid = np.linspace(-1.0, 1.0, SHAPE[1])
    pattern = np.sin(3 * grid[:, None]) * np.cos(2 * grid[None, :])
    x = 4.0 + 3.0 * pattern + 0.5 * rng.standard_normal((n, *SHAPE))
    return x.astype(np.float32)


def main() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    flow = fc.build(glow(STEPS), SHAPE, backend="torch", seed=0)
    first = torch.from_numpy(data(BATCH, rng))
    z, _ = flow(first)  # the first call initialises every ActNorm
    print(f"after initialisation: z mean {z.mean():+.3f}, std {z.std():.3f}")
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)
    for step in range(100):
        x = torch.from_numpy(data(BATCH, rng))
        z, log_det = flow(x)
        loss = (0.5 * z.pow(2).flatten(1).sum(1) - log_det).mean() / np.prod(SHAPE)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0 or step == 99:
            print(f"step {step:3d}  negative log-likelihood per dimension {loss.item():.3f}")

    x = data(8, rng)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "glow.fc")
        fc.save(flow, path)
        with torch.no_grad():
            z_torch, ld_torch = (t.numpy() for t in flow(torch.from_numpy(x)))
        for name in fc.installed_backends():
            if name == "torch":
                continue
            other = fc.load(path, backend=name)
            backend = fc.get_backend(name)
            (z,), log_det = backend.call(
                other, [backend.to_native(x, "float32", "cpu")], [], rev=False, jac=True
            )
            dz = np.abs(backend.to_numpy(z) - z_torch).max()
            dld = np.abs(backend.to_numpy(log_det) - ld_torch).max()
            print(f"{name:6s} loaded: |z - z_torch| {dz:.1e}, |log_det - torch's| {dld:.1e}")


if __name__ == "__main__":
    main()

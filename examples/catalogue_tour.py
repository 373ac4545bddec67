"""A tour of the catalogue: a neural-spline and autoregressive flow on two moons, and an
image flow made of reshapes, splines and elementwise maps, each built in PyTorch, trained
briefly, saved, and loaded into every other installed backend with the same outputs.

Run: ``python examples/catalogue_tour.py`` (needs torch; JAX and Keras are used where
installed).
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import flowcore as fc  # noqa: E402


def two_moons(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two interleaved half circles with Gaussian noise of std 0.05."""
    angle = rng.uniform(0.0, np.pi, n)
    upper = rng.integers(0, 2, n).astype(bool)
    x = np.where(upper, np.cos(angle), 1.0 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    return (np.stack([x, y], 1) + 0.05 * rng.standard_normal((n, 2))).astype(np.float32)


def vector_flow() -> fc.SequenceINN:
    """Spline couplings, a rational-quadratic autoregressive block, an i-ResNet layer."""
    return fc.SequenceINN(
        fc.ActNorm(),
        fc.RationalQuadraticSpline(subnet=fc.MLP(hidden=(32, 32)), bins=8),
        fc.PermuteRandom(),
        fc.MaskedAutoregressive(
            fc.MADE(hidden=(32, 32)), transformer="rational_quadratic", bins=8
        ),
        fc.IResNetLayer(internal_size=32, log_det_method="exact"),
    )


def image_flow() -> fc.SequenceINN:
    """Pixels in [0, 1] to R, a Haar squeeze, a spline coupling, an i-RevNet squeeze."""
    return fc.SequenceINN(
        fc.Logit(alpha=0.05),
        fc.HaarDownsampling(),
        fc.RationalQuadraticSpline(subnet=fc.ConvNet(hidden=(16,), kernel_size=1), bins=4),
        fc.IRevNetDownsampling(),
        fc.LearnedElementwiseScaling(),
    )


def train(flow: torch.nn.Module, batches: list[torch.Tensor], dims: int) -> None:
    optimizer = torch.optim.Adam(flow.parameters(), lr=3e-3)
    for step, x in enumerate(batches):
        z, log_det = flow(x)
        loss = (0.5 * z.pow(2).flatten(1).sum(1) - log_det).mean() / dims
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == len(batches) - 1:
            print(f"  step {step:3d}  negative log-likelihood per dimension {loss.item():.3f}")


def compare_everywhere(flow: torch.nn.Module, x: np.ndarray) -> None:
    """Save the torch model, load it in the other backends, compare outputs and inverses."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "flow.fc")
        fc.save(flow, path)
        with torch.no_grad():
            z_torch, ld_torch = (t.numpy() for t in flow(torch.from_numpy(x)))
        for name in fc.installed_backends():
            if name == "torch":
                continue
            other, backend = fc.load(path, backend=name), fc.get_backend(name)
            (z,), log_det = backend.call(
                other, [backend.to_native(x, "float32", "cpu")], [], rev=False, jac=True
            )
            (x_back,), _ = backend.call(other, [z], [], rev=True, jac=True)
            dz = np.abs(backend.to_numpy(z) - z_torch).max()
            dld = np.abs(backend.to_numpy(log_det) - ld_torch).max()
            dx = np.abs(backend.to_numpy(x_back) - x).max()
            print(f"  {name:6s} loaded: |z - torch's| {dz:.1e}, |log_det - torch's| {dld:.1e}, "
                  f"|inverse(z) - x| {dx:.1e}")  # fmt: skip


def main() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    print("two moons: ActNorm, RQ spline coupling, NSF-AR, i-ResNet")
    moons = [two_moons(256, rng) for _ in range(200)]
    flow = fc.build(vector_flow(), (2,), backend="torch", seed=0)
    train(flow, [torch.from_numpy(m) for m in moons], dims=2)
    compare_everywhere(flow, moons[0][:16])

    print("images in [0, 1]: Logit, Haar, RQ spline coupling, i-RevNet, learned scaling")
    images = [rng.uniform(0.0, 1.0, (16, 1, 8, 8)).astype(np.float32) for _ in range(50)]
    flow = fc.build(image_flow(), (1, 8, 8), backend="torch", seed=0)
    train(flow, [torch.from_numpy(i) for i in images], dims=64)
    compare_everywhere(flow, images[0][:4])


if __name__ == "__main__":
    main()

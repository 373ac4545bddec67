"""Train in one framework, load in the others, sample from each: the same density everywhere.

Trains a flow of six AllInOneBlocks on two moons by maximum likelihood in PyTorch (JAX where
torch is absent, Keras where both are), saves it, loads the file in every other installed
backend, checks that each computes the same log-density on held-out points and draws the
same samples from the same seed, and writes ``demo.png``: the data, the learned density and
each backend's samples. Run: ``python examples/demo.py`` (``pip install -e ".[all,examples]"``).
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import flowcore as fc  # noqa: E402

TOLERANCE = 1e-4  # float32 backends against each other: O(1) values through six blocks
SAMPLES, SEED, EPOCHS = 1000, 0, 100


def two_moons(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two interleaved half circles with Gaussian noise (sd 0.1), standardised, float32."""
    t = rng.uniform(0.0, np.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(t), 1.0 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    points = np.stack([x, y], axis=1) + 0.1 * rng.standard_normal((n, 2))
    return ((points - [0.5, 0.25]) / [0.87, 0.5]).astype(np.float32)


def flow_spec() -> fc.SequenceINN:
    return fc.SequenceINN(
        *[fc.AllInOneBlock(subnet=fc.MLP(hidden=(64, 64)), affine_clamping=2.0) for _ in range(6)]
    )


def train(name: str, x: np.ndarray) -> object:
    """The flow built and trained in backend ``name`` (EPOCHS epochs, Adam at 3e-3)."""
    flow = fc.build(flow_spec(), (2,), backend=name, seed=SEED)
    if name == "keras":
        import keras
        from flowcore.backends.keras.training import DensityModel

        model = DensityModel(flow)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        model.fit(x, batch_size=128, epochs=EPOCHS, verbose=2)
        return flow
    if name == "torch":
        import torch

        torch.set_num_threads(1)  # a 2-D flow's small matrices only lose time to more threads
    fit = __import__(f"flowcore.backends.{name}", fromlist=["fit"]).fit
    history = fit(flow, x, epochs=EPOCHS, batch_size=128, learning_rate=3e-3, validation_split=0.1)
    first, last = history.val_loss[0], history.val_loss[-1]
    print(f"trained in {name}: validation NLL {first:.3f} -> {last:.3f} nats")
    return flow


def log_density(flow: object, points: np.ndarray) -> np.ndarray:
    backend = fc.backend_of(flow)
    return backend.to_numpy(fc.log_prob(flow, backend.to_native(points, "float32", "cpu")))


def picture(x: np.ndarray, flows: dict[str, object], samples: dict[str, np.ndarray]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(flows.values()))
    grid = np.linspace(-3.0, 3.0, 200, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    density = np.exp(log_density(first, np.stack([gx.ravel(), gy.ravel()], 1))).reshape(gx.shape)
    panels = 2 + len(samples)
    figure, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 4.0), sharex=True, sharey=True)
    axes[0].scatter(x[:, 0], x[:, 1], s=2, color="0.3")
    axes[0].set_title("data: two moons")
    axes[1].pcolormesh(gx, gy, density, cmap="magma", shading="auto")
    axes[1].set_title(f"density, trained in {next(iter(flows))}")
    for ax, (name, s) in zip(axes[2:], samples.items(), strict=True):
        ax.scatter(s[:, 0], s[:, 1], s=2, color="tab:blue")
        ax.set_title(f"samples in {name}")
    for ax in axes:
        ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal")
    figure.tight_layout()
    figure.savefig("demo.png", dpi=110)
    return "demo.png"


def main() -> int:
    backends = fc.installed_backends()
    print(f"installed backends: {', '.join(backends) or 'none'}")
    if not backends:
        print("install one: pip install 'flowcore[torch]' (or [jax], [tf])")
        return 1
    rng = np.random.default_rng(SEED)
    x, held_out = two_moons(4000, rng), two_moons(500, rng)
    trainer = next(b for b in ("torch", "jax", "keras") if b in backends)
    flows = {trainer: train(trainer, x)}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "moons.fc")
        fc.save(flows[trainer], path)
        for name in backends:
            if name != trainer:
                flows[name] = fc.load(path, backend=name)
                kind = type(flows[name])
                print(f"loaded in {name}: {kind.__module__}.{kind.__qualname__}")
    want = log_density(flows[trainer], held_out)
    print(f"held-out mean log-density: {want.mean():.3f} nats")
    samples = {
        n: fc.backend_of(f).to_numpy(fc.sample(f, SAMPLES, seed=SEED)) for n, f in flows.items()
    }
    ok = True
    for name, flow in flows.items():
        d_log_p = float(np.abs(log_density(flow, held_out) - want).max())
        d_sample = float(np.abs(samples[name] - samples[trainer]).max())
        agree = d_log_p < TOLERANCE and d_sample < TOLERANCE
        ok &= agree
        print(
            f"  {name:6s} max |log p - {trainer}'s| = {d_log_p:.1e}   "
            f"max |sample - {trainer}'s| = {d_sample:.1e}   " + ("agree" if agree else "DIFFER")
        )
    print(f"wrote {picture(x, flows, samples)}")
    print("every backend computes the same density" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

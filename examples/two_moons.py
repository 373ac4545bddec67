"""Two moons in every backend: one spec, trained by each framework's own training loop.

Builds the same flow (eight ``AllInOneBlock`` s with ``fc.MLP`` subnets, from one seed, so the
three start from bit-identical parameters) as a ``torch.nn.Module``, a Flax NNX module and a
``keras.Layer``, and trains each natively by maximum likelihood on scikit-learn's two moons:
``flowcore.backends.torch.fit`` (``torch.optim.Adam``), ``flowcore.backends.jax.fit``
(``optax.adam`` under ``nnx.jit``) and Keras' own ``DensityModel(flow).compile(...).fit(...)``.
Prints each backend's held-out negative log-likelihood next to the best single Gaussian's,
checks that every flow beats it clearly, and writes ``two_moons.png``: the data, the
validation curves, and per backend the learned density and samples drawn with ``fc.sample``.

Run: ``python examples/two_moons.py`` (``pip install -e ".[all,examples]"``; under a minute
on two CPU cores).
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.datasets import make_moons  # noqa: E402

import flowcore as fc  # noqa: E402

SEED, BLOCKS, EPOCHS, BATCH, LEARNING_RATE = 0, 8, 60, 128, 3e-3
TRAIN, HELD_OUT, SAMPLES, NOISE = 3000, 1000, 2000, 0.08
MARGIN = 0.5  # nats each flow must beat the best Gaussian by on held-out points
COLORS = {"torch": "#ee4c2c", "jax": "#3b7dd8", "keras": "#2a9d4b"}
DASHES = {"torch": "-", "jax": "--", "keras": "-"}  # torch's and JAX's curves nearly coincide


def moons() -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out points of two moons (noise ``NOISE``), standardised with the
    training points' mean and standard deviation, float32."""
    points, _ = make_moons(TRAIN + HELD_OUT, noise=NOISE, random_state=SEED)
    train, held_out = points[:TRAIN], points[TRAIN:]
    mean, std = train.mean(0), train.std(0)
    return ((train - mean) / std).astype(np.float32), ((held_out - mean) / std).astype(np.float32)


def flow_spec() -> fc.SequenceINN:
    """Eight affine coupling blocks with 64-64 MLP subnets: the model every backend builds."""
    return fc.SequenceINN(
        *[
            fc.AllInOneBlock(subnet=fc.MLP(hidden=(64, 64)), affine_clamping=2.0)
            for _ in range(BLOCKS)
        ]
    )


def train_torch(x: np.ndarray) -> tuple[Any, list[float]]:
    """A ``torch.nn.Module`` trained by ``flowcore.backends.torch.fit`` (Adam)."""
    import torch
    from flowcore.backends.torch import fit

    torch.set_num_threads(1)  # a 2-D flow's small matrices only lose time to more threads
    flow = fc.build(flow_spec(), (2,), backend="torch", seed=SEED)
    history = fit(
        flow, x, epochs=EPOCHS, batch_size=BATCH, learning_rate=LEARNING_RATE,
        validation_split=0.1, seed=SEED,
    )  # fmt: skip
    return flow, history.val_loss


def train_jax(x: np.ndarray) -> tuple[Any, list[float]]:
    """A Flax NNX module trained by ``flowcore.backends.jax.fit`` (optax's Adam, ``nnx.jit``)."""
    import optax
    from flowcore.backends.jax import fit

    flow = fc.build(flow_spec(), (2,), backend="jax", seed=SEED)
    history = fit(
        flow, x, epochs=EPOCHS, batch_size=BATCH, optimizer=optax.adam(LEARNING_RATE),
        validation_split=0.1, seed=SEED,
    )  # fmt: skip
    return flow, history.val_loss


def train_keras(x: np.ndarray) -> tuple[Any, list[float]]:
    """A ``keras.Layer`` trained by Keras' own ``compile`` / ``fit`` through ``DensityModel``."""
    import keras
    from flowcore.backends.keras.training import DensityModel

    keras.utils.set_random_seed(SEED)  # Keras shuffles the rows itself
    flow = fc.build(flow_spec(), (2,), backend="keras", seed=SEED)
    model = DensityModel(flow)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
    history = model.fit(x, batch_size=BATCH, epochs=EPOCHS, validation_split=0.1, verbose=0)
    return flow, history.history["val_loss"]


def log_density(flow: Any, points: np.ndarray) -> np.ndarray:
    """``log p(x)`` per point as NumPy, whatever the flow's backend."""
    backend = fc.backend_of(flow)
    return backend.to_numpy(fc.log_prob(flow, backend.to_native(points, "float32", "cpu")))


def gaussian_nll(train: np.ndarray, held_out: np.ndarray) -> float:
    """Held-out mean NLL of the maximum-likelihood Gaussian of the training points."""
    mean, cov = train.mean(0), np.cov(train.T, bias=True)
    d = held_out - mean
    mahalanobis = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
    return float(np.mean(0.5 * mahalanobis + 0.5 * np.log(np.linalg.det(2 * np.pi * cov))))


def picture(
    x: np.ndarray,
    flows: dict[str, Any],
    curves: dict[str, list[float]],
    nll: dict[str, float],
) -> str:
    """``two_moons.png``: data and validation curves on the left; per backend (a column
    each) the learned density above and its samples below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim = 2.6
    grid = np.linspace(-lim, lim, 240, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    points = np.stack([gx.ravel(), gy.ravel()], 1)
    columns = 1 + len(flows)
    figure, axes = plt.subplots(2, columns, figsize=(3.3 * columns, 6.8))
    data, loss = axes[0, 0], axes[1, 0]
    data.scatter(x[:, 0], x[:, 1], s=1.5, color="0.25", alpha=0.6, linewidths=0)
    data.set_title(f"data: {len(x)} points")
    for name, curve in curves.items():
        epochs = np.arange(1, len(curve) + 1)
        loss.plot(
            epochs,
            curve,
            DASHES[name],
            color=COLORS[name],
            lw=1.5,
            label=f"{name}  {nll[name]:.2f}",
        )
    loss.set(xlabel="epoch", ylabel="validation NLL (nats)", title="training")
    loss.legend(title="held-out NLL", frameon=False, fontsize=8, title_fontsize=8)
    loss.grid(alpha=0.3)
    for column, (name, flow) in enumerate(flows.items(), start=1):
        density = np.exp(log_density(flow, points)).reshape(gx.shape)
        axes[0, column].pcolormesh(gx, gy, density, cmap="magma", shading="auto", rasterized=True)
        axes[0, column].set_title(f"{name}: density")
        s = fc.backend_of(flow).to_numpy(fc.sample(flow, SAMPLES, seed=SEED))
        axes[1, column].scatter(s[:, 0], s[:, 1], s=1.5, color=COLORS[name], alpha=0.6, lw=0)
        axes[1, column].set_title(f"{name}: {SAMPLES} samples")
    for ax in [data, *axes[:, 1:].ravel()]:
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xticks=[], yticks=[])
    figure.suptitle("one spec, three frameworks, each with its own training loop")
    figure.tight_layout()
    figure.savefig("two_moons.png", dpi=110)
    plt.close(figure)
    return "two_moons.png"


def main() -> int:
    x, held_out = moons()
    trainers = {"torch": train_torch, "jax": train_jax, "keras": train_keras}
    flows: dict[str, Any] = {}
    curves: dict[str, list[float]] = {}
    for name, train in trainers.items():
        start = time.perf_counter()
        flows[name], curves[name] = train(x)
        print(f"trained in {name} ({time.perf_counter() - start:.0f} s)")
    baseline = gaussian_nll(x, held_out)
    print(f"held-out NLL (nats), the best Gaussian: {baseline:.3f}")
    nll, ok = {}, True
    for name, flow in flows.items():
        nll[name] = float(-log_density(flow, held_out).mean())
        better = nll[name] < baseline - MARGIN
        ok &= better
        print(f"  {name:6s} {nll[name]:.3f}  " + ("better" if better else "NOT BETTER"))
    print(f"wrote {picture(x, flows, curves, nll)}")
    print(f"every flow beats the Gaussian by more than {MARGIN} nats" if ok else "TRAINING FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

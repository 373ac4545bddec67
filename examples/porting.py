"""One model, trained in turn by Keras, JAX and PyTorch: save, load, carry on.

A spline flow (three ``RationalQuadraticSpline`` couplings with ``fc.MLP`` subnets) learns
scikit-learn's two circles in three stages, each in another framework and with that
framework's own training: Keras ``DensityModel(flow).compile(...).fit(...)``, then
``flowcore.backends.jax.fit`` (optax, ``nnx.jit``), then ``flowcore.backends.torch.fit``
(``torch.optim``). Between stages the flow is written with ``fc.save`` (the spec as JSON, the
weights as safetensors) and read with ``fc.load(path, backend=...)``; the Keras stage also
saves Keras' own ``.keras`` file and loads it back with ``keras.models.load_model``. At every
hand-over the example checks that the two frameworks compute the same log-density on
held-out points and draw the same samples from one seed (largest differences against a
float32 tolerance), and at the end it carries the torch model back to Keras and JAX. Only the
parameters travel: each framework's optimiser starts afresh, with no Adam moments.

Writes ``porting.png``: the training loss across the three stages coloured by framework,
with the held-out NLL at each hand-over, and the density before training and after each
stage. Run: ``python examples/porting.py`` (``pip install -e ".[all,examples]"``; under a
minute on two CPU cores).
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.datasets import make_circles  # noqa: E402

import flowcore as fc  # noqa: E402

SEED, BLOCKS, BATCH = 0, 3, 128
#: Epochs and Adam's learning rate in each framework, in this order: smaller steps as it goes.
STAGES = {"keras": (20, 3e-3), "jax": (15, 1e-3), "torch": (10, 3e-4)}
TRAIN, HELD_OUT, SAMPLES, NOISE = 3000, 1000, 1000, 0.05
#: The conformance suite's float32 tolerance between two backends: |Δ| <= ATOL + RTOL |value|.
RTOL = ATOL = 2e-4
COLORS = {"keras": "#d00000", "jax": "#3b7dd8", "torch": "#ee8c2c"}
LIM, GRID = 2.5, 220


def circles() -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out points of two concentric circles, standardised with the training
    points' mean and standard deviation, float32."""
    points, _ = make_circles(TRAIN + HELD_OUT, noise=NOISE, factor=0.5, random_state=SEED)
    train, held_out = points[:TRAIN], points[TRAIN:]
    mean, std = train.mean(0), train.std(0)
    return ((train - mean) / std).astype(np.float32), ((held_out - mean) / std).astype(np.float32)


def flow_spec() -> fc.SequenceINN:
    """Rational-quadratic spline couplings (8 bins on [-3, 3]², affine tails outside)."""
    return fc.SequenceINN(
        *[
            fc.RationalQuadraticSpline(
                subnet=fc.MLP(hidden=(64, 64)), bins=8, default_domain=(-3.0, 3.0, -3.0, 3.0)
            )
            for _ in range(BLOCKS)
        ]
    )


def log_density(flow: Any, points: np.ndarray) -> np.ndarray:
    """``log p(x)`` per point as NumPy, whatever the flow's backend."""
    backend = fc.backend_of(flow)
    return backend.to_numpy(fc.log_prob(flow, backend.to_native(points, "float32", "cpu")))


def density_grid(flow: Any) -> np.ndarray:
    """``p(x)`` on a ``GRID`` x ``GRID`` grid over [-LIM, LIM]², as NumPy (rows: y)."""
    gx, gy = np.meshgrid(*[np.linspace(-LIM, LIM, GRID, dtype=np.float32)] * 2)
    points = np.stack([gx.ravel(), gy.ravel()], 1)
    return np.exp(log_density(flow, points)).reshape(gx.shape)


def samples_of(flow: Any) -> np.ndarray:
    """``SAMPLES`` draws from the flow, as NumPy; the same seed in every framework."""
    return fc.backend_of(flow).to_numpy(fc.sample(flow, SAMPLES, seed=SEED))


def train_keras(flow: Any, x: np.ndarray, folder: str) -> tuple[Any, list[float]]:
    """Stage 1: Keras' ``fit``; saves Keras' own ``.keras`` file and returns the flow read
    back from it (it must agree exactly), with the loss per epoch."""
    import keras
    from flowcore.backends.keras.training import DensityModel

    epochs, learning_rate = STAGES["keras"]
    keras.utils.set_random_seed(SEED)  # Keras shuffles the rows itself
    model = DensityModel(flow)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    history = model.fit(x, batch_size=BATCH, epochs=epochs, verbose=0)
    path = os.path.join(folder, "stage1.keras")
    model.save(path)
    return keras.models.load_model(path).flow, history.history["loss"]


def train_jax(flow: Any, x: np.ndarray) -> list[float]:
    """Stage 2: ``flowcore.backends.jax.fit`` with optax's Adam; the loss per epoch."""
    import optax
    from flowcore.backends.jax import fit

    epochs, learning_rate = STAGES["jax"]
    history = fit(
        flow, x, epochs=epochs, batch_size=BATCH, optimizer=optax.adam(learning_rate), seed=SEED
    )
    return history.loss


def train_torch(flow: Any, x: np.ndarray) -> list[float]:
    """Stage 3: ``flowcore.backends.torch.fit`` with ``torch.optim.Adam``; the loss per epoch."""
    import torch
    from flowcore.backends.torch import fit

    epochs, learning_rate = STAGES["torch"]
    torch.set_num_threads(1)  # a 2-D flow's small matrices only lose time to more threads
    optimizer = torch.optim.Adam(flow.parameters(), lr=learning_rate)
    return fit(flow, x, epochs=epochs, batch_size=BATCH, optimizer=optimizer, seed=SEED).loss


def agree(step: str, before: Any, after: Any, held_out: np.ndarray) -> bool:
    """Whether two models (often of two frameworks) give the same log-density on the held-out
    points and the same samples from one seed, within ``RTOL`` and ``ATOL``; prints the
    largest differences."""
    ok = True
    shown = []
    for what, want, got in (
        ("log p", log_density(before, held_out), log_density(after, held_out)),
        ("sample", samples_of(before), samples_of(after)),
    ):
        ok &= bool(np.allclose(got, want, rtol=RTOL, atol=ATOL))
        shown.append(f"max |Δ {what}| = {np.abs(got - want).max():.1e}")
    print(f"  {step:21s} " + "   ".join(shown) + "   " + ("agree" if ok else "DIFFER"))
    return ok


def hand_over(flow: Any, backend: str, folder: str) -> Any:
    """``flow`` written with ``fc.save`` and read into ``backend`` with ``fc.load``."""
    path = os.path.join(folder, f"to_{backend}.fc")
    fc.save(flow, path)
    return fc.load(path, backend=backend)


def label(name: str) -> str:
    """A checkpoint's name: "untrained", or "after <framework>" (its training stage)."""
    return f"after {name}" if name in STAGES else name


def picture(
    x: np.ndarray,
    losses: dict[str, list[float]],
    checkpoints: list[tuple[str, float, np.ndarray]],
) -> str:
    """``porting.png``: the loss across the stages above; the data and the density before
    training and after each stage below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 + len(checkpoints)
    figure = plt.figure(figsize=(3.0 * panels, 6.6))
    rows = figure.add_gridspec(2, panels, height_ratios=(1.0, 1.15))
    curve = figure.add_subplot(rows[0, :])
    start = 0
    for name, loss in losses.items():
        epochs = np.arange(start + 1, start + len(loss) + 1)
        curve.plot(epochs, loss, "o-", ms=3, lw=1.6, color=COLORS[name], label=f"fit in {name}")
        curve.axvspan(start + 0.5, start + len(loss) + 0.5, color=COLORS[name], alpha=0.06)
        start += len(loss)
    ends = np.cumsum([0, *[len(loss) for loss in losses.values()]]) + 0.5
    for (name, nll, _), end in zip(checkpoints, ends, strict=True):
        curve.plot(end, nll, "D", ms=7, mfc="white", mec=COLORS.get(name, "0.3"), mew=1.8)
    curve.plot([], [], "D", ms=7, mfc="white", mec="0.3", mew=1.8, label="held-out NLL")
    for end, name in zip(ends[1:-1], list(losses)[1:], strict=True):
        curve.axvline(end, color="0.4", lw=0.8, ls="--")
        curve.annotate(
            f"fc.save → fc.load(backend='{name}')", (end, 0.96), xytext=(4, 0),
            xycoords=("data", "axes fraction"), textcoords="offset points",
            ha="left", va="top", fontsize=8,
        )  # fmt: skip
    curve.set(xlabel="epoch", ylabel="NLL (nats)", xlim=(0, ends[-1] + 0.5))
    curve.set_title("training loss per epoch, carried across three frameworks")
    curve.legend(frameon=False, fontsize=8, loc="center right")
    curve.grid(alpha=0.3)
    data = figure.add_subplot(rows[1, 0])
    data.scatter(x[:, 0], x[:, 1], s=1.5, color="0.25", alpha=0.6, lw=0)
    data.set_title("data: two circles")
    for column, (name, nll, density) in enumerate(checkpoints, start=1):
        ax = figure.add_subplot(rows[1, column])
        ax.imshow(density, cmap="magma", origin="lower", extent=(-LIM, LIM, -LIM, LIM))
        ax.set_title(f"{label(name)}: NLL {nll:.2f}", fontsize=10)
        for spine in ax.spines.values():
            spine.set(color=COLORS.get(name, "0.3"), lw=2.5)
    for ax in figure.axes[1:]:
        ax.set(xlim=(-LIM, LIM), ylim=(-LIM, LIM), aspect="equal", xticks=[], yticks=[])
    figure.tight_layout()
    figure.savefig("porting.png", dpi=110)
    plt.close(figure)
    return "porting.png"


def main() -> int:
    x, held_out = circles()

    def checkpoint(name: str, flow: Any) -> None:  # the held-out NLL and density, now
        checkpoints.append((name, float(-log_density(flow, held_out).mean()), density_grid(flow)))
        print(f"{label(name) + ':':12s} held-out NLL {checkpoints[-1][1]:.3f} nats")

    print(f"hand-overs must agree to |Δ| <= {ATOL:.0e} + {RTOL:.0e} |value| (float32)")
    checkpoints: list[tuple[str, float, np.ndarray]] = []
    losses: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        kflow = fc.build(flow_spec(), (2,), backend="keras", seed=SEED)
        checkpoint("untrained", kflow)

        reloaded, losses["keras"] = train_keras(kflow, x, folder)
        checkpoint("keras", kflow)
        ok = agree("keras -> .keras file", kflow, reloaded, held_out)

        jflow = hand_over(kflow, "jax", folder)
        ok &= agree("keras -> jax", kflow, jflow, held_out)
        losses["jax"] = train_jax(jflow, x)
        checkpoint("jax", jflow)

        tflow = hand_over(jflow, "torch", folder)
        ok &= agree("jax -> torch", jflow, tflow, held_out)
        losses["torch"] = train_torch(tflow, x)
        checkpoint("torch", tflow)

        for name in ("keras", "jax"):  # and back: the final model in the other two
            ok &= agree(f"torch -> {name}", tflow, hand_over(tflow, name, folder), held_out)
    print(f"wrote {picture(x, losses, checkpoints)}")
    print("every hand-over agrees" if ok else "HAND-OVER MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

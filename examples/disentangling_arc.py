"""gyoza's disentangling tutorial: a flow that turns a noisy arc's position into one latent
dimension, trained on pairs with Keras ``fit``, then read in PyTorch and JAX.

The data is gyoza's tutorial arc, ``x = (S, S²/2) + N(0, 0.1²)`` with ``S ~ N(0, 0.5²)``.
Two factors share the latent ``z̃ = (z̃_0, z̃_1)``: a residual (``z̃_0``) and the arc
position ``S`` (``z̃_1``). Each training pair is a point and a partner whose ``S`` has
correlation 0.9 with it (the nearest point to ``0.9 u + √0.19 ε`` in standardised ``S``,
``u``), and the residual has correlation 0, so ``SupervisedFactorLoss`` (Esser, Rombach &
Ommer 2020) makes ``z̃_1`` carry ``S`` and ``z̃_0`` the rest. The model is gyoza's tutorial
model, layer for layer.

It prints the loss, the correlation of each latent dimension with ``S`` and between pair
partners, saves the flow and loads it in every other installed backend with the same
outputs, and writes ``disentangling_arc.png``: the data, its latent, and the arc traced by
walking ``z̃_1`` with ``z̃_0`` held fixed.

Run: ``python examples/disentangling_arc.py`` (needs Keras on any backend and matplotlib,
``pip install -e ".[all,examples]"``).
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from flowcore.backends.keras.training import DisentanglingFlowModel  # noqa: E402

import flowcore as fc  # noqa: E402

SHAPE, AXES = (2,), (1,)
FACTORS = [1, 1]  # dimensions per factor: the residual z̃_0, then S in z̃_1
CORRELATIONS = np.array([0.0, 0.9])  # of each factor between pair partners
POINTS, BATCH, EPOCHS = 4096, 64, 4


def tutorial_model() -> fc.SequenceINN:
    """gyoza's tutorial flow: ActNorm, then twice [Reflection, coupling, checkerboard
    permutation, coupling, checkerboard permutation, ActNorm], additive couplings with
    gyoza's ``Dense(4n, relu) -> Dense(n)`` net."""
    mask = fc.CheckerBoardMask(SHAPE, AXES)
    layers: list[fc.Transform] = [fc.ActivationNormalization(SHAPE, AXES)]
    for _ in range(2):
        layers += [
            fc.Reflection(SHAPE, AXES, reflection_count=2),
            fc.AdditiveCoupling(SHAPE, AXES, mask),
            fc.CheckerBoardPermutation(SHAPE, AXES),
            fc.AdditiveCoupling(SHAPE, AXES, mask),
            fc.CheckerBoardPermutation(SHAPE, AXES),
            fc.ActivationNormalization(SHAPE, AXES),
        ]
    return fc.FlowModel(*layers)


def arc(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points ``x = (S, S²/2) + N(0, 0.1²)`` (float32) and their positions ``S``."""
    s = rng.normal(0.0, 0.5, n)
    x = np.stack([s, 0.5 * s**2], axis=1) + rng.normal(0.0, 0.1, (n, 2))
    return x.astype(np.float32), s


def partners(s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each point, the index of the point whose standardised ``S`` is nearest to
    ``ρ u + √(1 - ρ²) ε`` (``ρ`` the ``S`` factor's correlation), as gyoza's tutorial pairs
    its data; the residual is left to chance, so its correlation is 0."""
    rho = CORRELATIONS[1]
    u = (s - s.mean()) / s.std()
    target = rho * u + np.sqrt(1.0 - rho**2) * rng.standard_normal(len(u))
    order = np.argsort(u)
    right = np.clip(np.searchsorted(u[order], target), 1, len(u) - 1)
    below, above = order[right - 1], order[right]
    return np.where(np.abs(u[below] - target) <= np.abs(u[above] - target), below, above)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def check_other_backends(flow: keras.layers.Layer, x: np.ndarray) -> None:
    """Save the Keras flow and load it in every other installed backend: same outputs."""
    z_keras, ld_keras = (keras.ops.convert_to_numpy(t) for t in flow(x))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "arc.fc")
        fc.save(flow, path)
        for name in fc.installed_backends():
            if name == "keras":
                continue
            backend = fc.get_backend(name)
            other = fc.load(path, backend=name)
            (z,), log_det = backend.call(
                other, [backend.to_native(x, "float32", "cpu")], [], rev=False, jac=True
            )
            dz = np.abs(backend.to_numpy(z) - z_keras).max()
            dld = np.abs(backend.to_numpy(log_det) - ld_keras).max()
            print(f"{name:6s} loaded: |z - z_keras| {dz:.1e}, |log_det - Keras'| {dld:.1e}")


def plot(flow: keras.layers.Layer, x: np.ndarray, s: np.ndarray, z: np.ndarray) -> str:
    """Data and latent coloured by ``S``; the arc traced by walking ``z̃_1`` from five
    starting points with ``z̃_0`` held."""
    figure, (data_ax, latent_ax, walk_ax) = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, points, title, labels in [
        (data_ax, x, "data x, coloured by S", ("x_0", "x_1")),
        (latent_ax, z, "latent z̃ = flow(x)", ("z̃_0 (residual)", "z̃_1 (S)")),
    ]:
        shown = ax.scatter(points[:, 0], points[:, 1], c=s, s=3, cmap="viridis")
        ax.set(title=title, xlabel=labels[0], ylabel=labels[1])
    figure.colorbar(shown, ax=latent_ax, label="S")
    walk_ax.scatter(x[:, 0], x[:, 1], s=2, color="0.8")
    steps = np.linspace(-2.5, 2.5, 60, dtype=np.float32)
    for start in np.linspace(-1.5, 1.5, 5, dtype=np.float32):
        walk = np.stack([np.full_like(steps, start), steps], axis=1)
        traced, _ = flow(walk, rev=True)
        traced = keras.ops.convert_to_numpy(traced)
        walk_ax.plot(traced[:, 0], traced[:, 1], lw=2, label=f"z̃_0 = {start:+.1f}")
    walk_ax.set(title="inverse of z̃_1 from -2.5 to 2.5", xlabel="x_0", ylabel="x_1")
    walk_ax.legend(fontsize=7)
    figure.tight_layout()
    path = "disentangling_arc.png"
    figure.savefig(path, dpi=120)
    return path


def main() -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, s = arc(POINTS, rng)
    flow = fc.build(tutorial_model(), SHAPE, backend="keras", dtype="float32", seed=0)
    model = DisentanglingFlowModel(flow, FACTORS)
    model.compile(optimizer=keras.optimizers.Adam(0.05))  # gyoza's tutorial rate
    y = np.tile(CORRELATIONS, (POINTS, 1)).astype(np.float32)
    for epoch in range(EPOCHS):
        pair = partners(s, rng)  # fresh partners every epoch
        history = model.fit((x, x[pair]), y, batch_size=BATCH, epochs=1, verbose=0)
        print(f"epoch {epoch}  pair loss {history.history['loss'][-1]:+.3f}")

    z = keras.ops.convert_to_numpy(flow(x)[0])
    pair = partners(s, rng)
    print(
        f"correlation with S: z̃_0 {correlation(z[:, 0], s):+.3f}, "
        f"z̃_1 {correlation(z[:, 1], s):+.3f}"
    )
    print(
        f"correlation between partners (target {CORRELATIONS.tolist()}): "
        f"z̃_0 {correlation(z[:, 0], z[pair, 0]):+.3f}, "
        f"z̃_1 {correlation(z[:, 1], z[pair, 1]):+.3f}"
    )
    check_other_backends(flow, x[:256])
    print(f"wrote {plot(flow, x, s, z)}")


if __name__ == "__main__":
    main()

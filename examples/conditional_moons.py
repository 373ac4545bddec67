"""A conditional flow: one density per moon, chosen by a condition.

Trains ``p(x | c)`` on scikit-learn's two moons in PyTorch with
``flowcore.backends.torch.fit(flow, x, c)``, where the condition ``c`` is the one-hot label of
the moon a point belongs to; every ``AllInOneBlock`` takes it (``conditions=[0, 0, ...]``),
concatenated to its subnet's input. Then it samples each moon alone with
``fc.sample(flow, n, c)``, and checks two things numerically: a k-nearest-neighbour classifier
fitted on the data assigns at least 90% of each condition's samples to that moon, and on
held-out points ``log p(x | true moon)`` is higher than under the other moon for at least 95%
of them (the flow as a generative classifier). Writes ``conditional_moons.png``: the data
coloured by moon, each conditional density, the samples coloured by their condition, and the
log-likelihood ratio that classifies.

Run: ``python examples/conditional_moons.py`` (``pip install -e ".[torch,examples]"``; about
ten seconds on two CPU cores).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flowcore.backends.torch import fit  # noqa: E402
from sklearn.datasets import make_moons  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402

import flowcore as fc  # noqa: E402

SEED, BLOCKS, EPOCHS, BATCH, LEARNING_RATE = 0, 6, 60, 128, 3e-3
TRAIN, HELD_OUT, SAMPLES, NOISE = 3000, 1000, 1000, 0.08
MOONS = ("upper moon", "lower moon")
COLORS, CMAPS = ("#2b6cb0", "#dd6b20"), ("Blues", "Oranges")
MIN_SAMPLE_ACCURACY, MIN_RATIO_ACCURACY = 0.90, 0.95
LIM = 2.6


def one_hot(labels: np.ndarray) -> np.ndarray:
    """Labels 0/1 as rows ``(1, 0)`` / ``(0, 1)``: the condition, float32."""
    return np.eye(len(MOONS), dtype=np.float32)[labels]


def moons() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training points and labels, then held-out points and labels; the points standardised
    with the training points' mean and standard deviation, float32."""
    points, labels = make_moons(TRAIN + HELD_OUT, noise=NOISE, random_state=SEED)
    mean, std = points[:TRAIN].mean(0), points[:TRAIN].std(0)
    points = ((points - mean) / std).astype(np.float32)
    return points[:TRAIN], labels[:TRAIN], points[TRAIN:], labels[TRAIN:]


def flow_spec() -> fc.SequenceINN:
    """Affine coupling blocks with 64-64 MLP subnets, every one taking condition 0."""
    return fc.SequenceINN(
        *[
            fc.AllInOneBlock(subnet=fc.MLP(hidden=(64, 64)), affine_clamping=2.0)
            for _ in range(BLOCKS)
        ],
        conditions=[0] * BLOCKS,
    )


def train(x: np.ndarray, labels: np.ndarray) -> torch.nn.Module:
    """The conditional flow, built in PyTorch and trained by maximum likelihood on ``(x, c)``."""
    torch.set_num_threads(1)  # a 2-D flow's small matrices only lose time to more threads
    flow = fc.build(flow_spec(), (2,), cond_shapes=[(len(MOONS),)], backend="torch", seed=SEED)
    history = fit(
        flow, x, one_hot(labels), epochs=EPOCHS, batch_size=BATCH,
        learning_rate=LEARNING_RATE, validation_split=0.1, seed=SEED,
    )  # fmt: skip
    print(f"validation NLL {history.val_loss[0]:.3f} -> {history.val_loss[-1]:.3f} nats")
    return flow.eval()


def log_p(flow: torch.nn.Module, points: np.ndarray, moon: int) -> np.ndarray:
    """``log p(x | c = moon)`` for every point, as NumPy."""
    c = one_hot(np.full(len(points), moon))
    with torch.no_grad():
        return fc.log_prob(flow, torch.from_numpy(points), torch.from_numpy(c)).numpy()


def samples_of(flow: torch.nn.Module, moon: int) -> np.ndarray:
    """``SAMPLES`` draws of ``x ~ p(x | c = moon)``."""
    c = torch.from_numpy(one_hot(np.full(SAMPLES, moon)))
    with torch.no_grad():
        return fc.sample(flow, SAMPLES, c, seed=SEED + moon).numpy()


def picture(
    x: np.ndarray,
    labels: np.ndarray,
    held_out: np.ndarray,
    flow: torch.nn.Module,
    samples: list[np.ndarray],
    accuracy: list[float],
) -> str:
    """``conditional_moons.png``: data, the two conditional densities, samples per condition,
    and held-out points coloured by the condition under which they are likelier, over the
    regions where each condition wins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    grid = np.linspace(-LIM, LIM, 240, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    points = np.stack([gx.ravel(), gy.ravel()], 1)
    logs = [log_p(flow, points, moon).reshape(gx.shape) for moon in range(len(MOONS))]
    figure, axes = plt.subplots(1, 5, figsize=(17.0, 3.9))
    for moon, name in enumerate(MOONS):
        part = x[labels == moon]
        axes[0].scatter(*part.T, s=1.5, color=COLORS[moon], alpha=0.6, lw=0, label=name)
        axes[1 + moon].pcolormesh(gx, gy, np.exp(logs[moon]), cmap=CMAPS[moon], rasterized=True)
        axes[1 + moon].set_title(f"density p(x | {name})")
        axes[3].scatter(
            *samples[moon].T, s=1.5, color=COLORS[moon], alpha=0.6, lw=0,
            label=f"c = {name}: {accuracy[moon]:.1%} land on it",
        )  # fmt: skip
    axes[0].set_title("data, coloured by the condition")
    axes[3].set_title(r"samples $x \sim p(x \mid c)$ per condition")
    for ax in axes[[0, 3]]:
        ax.legend(loc="lower left", fontsize=7, markerscale=5, frameon=False)
    upper = logs[0] > logs[1]  # where the flow, as a classifier, says "upper moon"
    regions = ListedColormap([COLORS[1], COLORS[0]])
    axes[4].pcolormesh(gx, gy, upper, cmap=regions, alpha=0.18, rasterized=True)
    axes[4].contour(gx, gy, logs[0] - logs[1], levels=[0.0], colors="0.3", linewidths=0.8)
    said = log_p(flow, held_out, 0) > log_p(flow, held_out, 1)
    axes[4].scatter(*held_out.T, s=2, c=np.where(said, COLORS[0], COLORS[1]), lw=0)
    axes[4].set_title(r"held-out points, by $\mathrm{argmax}_c\ p(x \mid c)$")
    for ax in axes:
        ax.set(xlim=(-LIM, LIM), ylim=(-LIM, LIM), aspect="equal", xticks=[], yticks=[])
    figure.tight_layout()
    figure.savefig("conditional_moons.png", dpi=110)
    plt.close(figure)
    return "conditional_moons.png"


def main() -> int:
    x, labels, held_out, held_labels = moons()
    flow = train(x, labels)
    classifier = KNeighborsClassifier(n_neighbors=15).fit(x, labels)
    samples = [samples_of(flow, moon) for moon in range(len(MOONS))]
    accuracy = [float((classifier.predict(s) == moon).mean()) for moon, s in enumerate(samples)]
    ok = True
    for moon, name in enumerate(MOONS):
        good = accuracy[moon] >= MIN_SAMPLE_ACCURACY
        ok &= good
        print(
            f"samples of c = {name}: {accuracy[moon]:.1%} classified to the {name} "
            f"(need {MIN_SAMPLE_ACCURACY:.0%})  " + ("ok" if good else "FAILED")
        )
    right = log_p(flow, held_out, 0) > log_p(flow, held_out, 1)
    ratio_accuracy = float((right == (held_labels == 0)).mean())
    good = ratio_accuracy >= MIN_RATIO_ACCURACY
    ok &= good
    print(
        f"held-out points with log p(x | own moon) > log p(x | other moon): "
        f"{ratio_accuracy:.1%} (need {MIN_RATIO_ACCURACY:.0%})  " + ("ok" if good else "FAILED")
    )
    print(f"wrote {picture(x, labels, held_out, flow, samples, accuracy)}")
    print("each condition gives its own moon" if ok else "CONDITIONING FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

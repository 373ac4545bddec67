"""A multi-scale image flow on scikit-learn's 8x8 digits: bits per dimension and samples.

The flow is a GraphINN in the RealNVP/Glow pattern: each dequantised digit (1, 8, 8) in
[0, 1] goes to logit space, is Haar-squeezed to (4, 4, 4) and transformed by four coupling
blocks with convolutional subnets; half of its channels then leave as an early latent
(after one more coupling conditioned on the half that goes on), and the other half is
squeezed again (i-RevNet's squeeze) to (8, 2, 2) and transformed by four more couplings.
It is trained by maximum likelihood with ``flowcore.backends.torch.fit`` on 1500 digits,
reports bits per pixel of the 297 held-out ones, saves the model and loads it in JAX and
Keras to check that they compute the same log-density, draws samples at temperatures 1.0
and 0.7 (Glow's reduced temperature) and writes ``digits.png``: held-out digits beside the
samples. About 40 s on two CPU cores.

Run: ``python examples/digits.py`` (needs torch, scikit-learn and matplotlib; JAX and
Keras are used where installed).
"""

from __future__ import annotations

import math
import os
import tempfile

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flowcore.backends.torch import fit  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import flowcore as fc  # noqa: E402

SEED = 0
LEVELS = 17  # digit pixels are integers 0..16
DIMS = 64  # 8 x 8 pixels
NOISE_COPIES = 4  # each training digit dequantised with this many independent noise draws
EPOCHS, BATCH, LEARNING_RATE = 25, 128, 2e-3
STEPS_PER_SCALE = 4
TEMPERATURE = 0.7
TOLERANCE = 1e-3  # float32 backends against each other, on log-densities of size ~100 nats
HELD_OUT_BITS = 3.0  # bits per pixel the trained flow must beat (uniform noise: 4.09)


def coupling() -> fc.AllInOneBlock:
    """An affine coupling with a 3x3 conv subnet and a random channel rotation."""
    return fc.AllInOneBlock(
        subnet=fc.ConvNet(hidden=(32, 32)), affine_clamping=1.5, permute_soft=True
    )


def build_graph(steps: int = STEPS_PER_SCALE) -> fc.GraphINN:
    """x (1, 8, 8) -> logit -> Haar squeeze (4, 4, 4) -> ``steps`` couplings -> split:
    z_early (2, 4, 4) after one coupling conditioned on the other half, which is squeezed
    to (8, 2, 2) and goes through ``steps`` more couplings to z_late."""
    x = fc.InputNode(1, 8, 8, name="x")
    logit = fc.Node(x, fc.Logit(alpha=0.05), name="logit")
    nodes: list[object] = [x, logit, fc.Node(logit, fc.HaarDownsampling(), name="squeeze1")]
    for i in range(steps):
        nodes.append(fc.Node(nodes[-1], coupling(), name=f"scale1_{i}"))
    split = fc.Node(nodes[-1], fc.Split(section_sizes=(2, 2)), name="split")
    early = fc.Node(split.out0, coupling(), conditions=split.out1, name="early")
    nodes += [split, early, fc.Node(split.out1, fc.IRevNetDownsampling(), name="squeeze2")]
    for i in range(steps):
        nodes.append(fc.Node(nodes[-1], coupling(), name=f"scale2_{i}"))
    late = nodes[-1]
    nodes += [fc.OutputNode(early, name="z_early"), fc.OutputNode(late, name="z_late")]
    return fc.GraphINN(nodes)


def load(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as (n, 1, 8, 8) integers 0..16, shuffled: 1500 to train, 297 held out."""
    images = load_digits().images.astype(np.int64)
    images = images[rng.permutation(len(images))].reshape(-1, 1, 8, 8)
    return images[:1500], images[1500:]


def dequantise(images: np.ndarray, rng: np.random.Generator, copies: int = 1) -> np.ndarray:
    """(k + uniform noise) / 17, float32: a density on [0, 1] whose likelihood bounds the
    digits' (``copies`` noise draws of each image, stacked)."""
    tiled = np.concatenate([images] * copies)
    return ((tiled + rng.uniform(size=tiled.shape)) / LEVELS).astype(np.float32)


def bits_per_dim(log_p: np.ndarray) -> float:
    """Bits per pixel of the integer digits from log-densities of their dequantised values
    in [0, 1]: each pixel's bin has width 1/17, so by Jensen's inequality over the noise,
    -log P(k) <= -E log p(x) + 64 log 17 (an upper bound, as Real NVP and Glow report)."""
    nats = -float(np.mean(log_p)) + DIMS * math.log(LEVELS)
    return nats / (DIMS * math.log(2.0))


def log_density(flow: object, x: np.ndarray) -> np.ndarray:
    """log p(x) per digit, in the flow's own backend, as NumPy."""
    backend = fc.backend_of(flow)
    return backend.to_numpy(fc.log_prob(flow, backend.to_native(x, "float32", "cpu")))


def train(flow: torch.nn.Module, x_train: np.ndarray, rng: np.random.Generator) -> None:
    x = dequantise(x_train, rng, NOISE_COPIES)
    history = fit(flow, x, epochs=EPOCHS, batch_size=BATCH, learning_rate=LEARNING_RATE, seed=SEED)
    first, last = (bits_per_dim(-np.array(h)) for h in (history.loss[0], history.loss[-1]))
    print(f"trained {EPOCHS} epochs: training digits {first:.3f} -> {last:.3f} bits/pixel")


def compare_backends(flow: torch.nn.Module, x: np.ndarray) -> bool:
    """Save the torch flow, load it in JAX and Keras; their log-densities must agree."""
    want = log_density(flow, x)
    ok = True
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "digits.fc")
        fc.save(flow, path)
        for name in ("jax", "keras"):
            if name not in fc.installed_backends():
                print(f"  {name:6s} not installed")
                continue
            diff = float(np.abs(log_density(fc.load(path, backend=name), x) - want).max())
            agree = diff < TOLERANCE
            ok &= agree
            verdict = "agree" if agree else "DIFFER"
            print(f"  {name:6s} loaded: max |log p - torch's| = {diff:.1e} "
                  f"(|log p| ~ {np.abs(want).mean():.0f})  {verdict}")  # fmt: skip
    return ok


def grid(images: np.ndarray, side: int = 6) -> np.ndarray:
    """The first side * side (1, 8, 8) images tiled with one-pixel white gaps, ink dark."""
    tiles = np.zeros((side, side, 10, 10))
    tiles[:, :, 1:9, 1:9] = np.clip(images[: side * side, 0], 0.0, 1.0).reshape(side, side, 8, 8)
    return 1.0 - tiles.transpose(0, 2, 1, 3).reshape(side * 10, side * 10)


def picture(panels: dict[str, np.ndarray], bits: float, path: str = "digits.png") -> str:
    """One 6x6 grid per panel: held-out digits, then samples at each temperature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 4.1))
    for ax, (title, images) in zip(axes, panels.items(), strict=True):
        ax.imshow(grid(images), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
    figure.suptitle(f"multi-scale flow on 8x8 digits: {bits:.2f} bits/pixel on held-out digits")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main() -> int:
    torch.set_num_threads(1)  # small convolutions: more threads add overhead on shared cores
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    graph = build_graph()
    x_train, x_test = load(rng)
    test = dequantise(x_test, rng)
    flow = fc.build(graph, backend="torch", seed=SEED)
    before = bits_per_dim(log_density(flow, test))
    print(f"held-out digits: {before:.3f} bits/pixel before training")
    train(flow, x_train, rng)
    flow.eval()
    bits = bits_per_dim(log_density(flow, test))
    print(f"held-out digits: {bits:.3f} bits/pixel after training "
          f"(uniform: {math.log2(LEVELS):.3f})")  # fmt: skip
    ok = compare_backends(flow, test[:64])
    panels = {"held-out digits": x_test / (LEVELS - 1.0)}
    for temperature in (1.0, TEMPERATURE):
        with torch.no_grad():
            samples = fc.sample(flow, 36, temperature=temperature, seed=SEED).numpy()
        panels[f"samples, temperature {temperature}"] = samples
    good = bits < HELD_OUT_BITS
    print(f"held-out bits/pixel below {HELD_OUT_BITS}: {good}")
    print(f"wrote {picture(panels, bits)}")
    return 0 if ok and good else 1


if __name__ == "__main__":
    raise SystemExit(main())

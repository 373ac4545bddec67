"""A class-conditional multi-scale flow as a GraphINN, on scikit-learn's 8x8 digits.

The graph squeezes each (1, 8, 8) digit to (4, 4, 4), transforms it, lets half of the
channels leave as an early latent (conditioned on the other half), squeezes the rest to
(8, 2, 2) and transforms it further; a small network turns the one-hot class into the
condition of every coupling. It prints the graph's text picture (and writes
``multiscale_graph.svg`` when Graphviz's ``dot`` is installed), trains it briefly in
PyTorch by maximum likelihood, samples a few digits, saves it, and loads it in JAX and
Keras with the same outputs.

Run: ``python examples/multiscale_graph.py`` (needs torch and scikit-learn; JAX and Keras
are used where installed).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import flowcore as fc  # noqa: E402

LEVELS = 17  # digit pixels are integers 0..16
DIMS = 64


def coupling() -> fc.AllInOneBlock:
    return fc.AllInOneBlock(subnet=fc.ConvNet(hidden=(32,)), affine_clamping=1.5)


def multiscale_graph() -> fc.GraphINN:
    """x (1, 8, 8) in [0, 1] -> logit -> squeeze -> 2 couplings -> split: z_early (2, 4, 4)
    after one coupling conditioned on the other half, which is squeezed to (8, 2, 2) and
    goes through 2 more couplings to z_late. Every coupling but the early one reads the
    class embedding."""
    x = fc.InputNode(1, 8, 8, name="x")
    label = fc.ConditionNode(10, name="label")
    embed = fc.FeedForwardNode(label, (8,), fc.MLP(hidden=(32,)), name="embed")
    logit = fc.Node(x, fc.Logit(alpha=0.05), name="logit")
    down1 = fc.Node(logit, fc.IRevNetDownsampling(), name="down1")
    flow1a = fc.Node(down1, coupling(), conditions=embed, name="flow1a")
    flow1b = fc.Node(flow1a, coupling(), conditions=embed, name="flow1b")
    split = fc.Node(flow1b, fc.Split(section_sizes=(2, 2)), name="split")
    early = fc.Node(split.out0, coupling(), conditions=split.out1, name="early")
    down2 = fc.Node(split.out1, fc.IRevNetDownsampling(), name="down2")
    flow2a = fc.Node(down2, coupling(), conditions=embed, name="flow2a")
    flow2b = fc.Node(flow2a, coupling(), conditions=embed, name="flow2b")
    return fc.GraphINN(
        [x, label, embed, logit, down1, flow1a, flow1b, split, early, down2, flow2a, flow2b,
         fc.OutputNode(early, name="z_early"), fc.OutputNode(flow2b, name="z_late")]
    )  # fmt: skip


def digits(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as (n, 1, 8, 8) integers 0..16 and one-hot labels (n, 10)."""
    data = load_digits()
    order = rng.permutation(len(data.target))
    images = data.images[order].reshape(-1, 1, 8, 8)
    return images, np.eye(10, dtype=np.float32)[data.target[order]]


def dequantise(images: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """(k + uniform noise) / 17: a density on [0, 1] whose likelihood bounds the digits'."""
    return torch.from_numpy(
        ((images + rng.uniform(size=images.shape)) / LEVELS).astype(np.float32)
    )


def nll(flow: torch.nn.Module, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """-log p(x) per sample under a standard-normal base: 0.5 |z|^2 - log|det| + const."""
    (z_early, z_late), log_det = flow([x], c)
    squares = z_early.pow(2).flatten(1).sum(1) + z_late.pow(2).flatten(1).sum(1)
    return 0.5 * squares - log_det + 0.5 * DIMS * math.log(2 * math.pi)


def bits_per_dim(flow: torch.nn.Module, x: torch.Tensor, c: torch.Tensor) -> float:
    """Bits per pixel of the integer digits: the [0, 1] density scaled back by 17 per pixel."""
    with torch.no_grad():
        nats = nll(flow, x, c).mean().item() + DIMS * math.log(LEVELS)
    return nats / (DIMS * math.log(2))


def train(
    flow: torch.nn.Module, x: np.ndarray, c: np.ndarray, rng: np.random.Generator, steps: int
) -> None:
    optimizer = torch.optim.Adam(flow.parameters(), lr=2e-3)
    labels = torch.from_numpy(c)
    for step in range(steps):
        batch = rng.integers(0, len(x), 128)
        loss = nll(flow, dequantise(x[batch], rng), labels[batch]).mean() / DIMS
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"  step {step:3d}  negative log-likelihood per pixel {loss.item():.3f} nats")


def show_samples(flow: torch.nn.Module, graph: fc.GraphINN, rng: np.random.Generator) -> None:
    """One sample of each class 0..9 (base temperature 0.7), drawn in characters."""
    labels = torch.eye(10)
    zs = [torch.from_numpy(0.7 * rng.standard_normal((10, *s)).astype(np.float32))
          for s in graph.output_dims]  # fmt: skip
    with torch.no_grad():
        (images,), _ = flow(zs, labels, rev=True)
    shades = " .:-=+*#%@"
    pixels = (images.clamp(0, 1).numpy()[:, 0] * (len(shades) - 1)).round().astype(int)
    for row in range(8):
        print("  " + "  ".join("".join(shades[v] for v in digit[row]) for digit in pixels))


def compare_everywhere(flow: torch.nn.Module, x: torch.Tensor, c: torch.Tensor) -> None:
    """Save the torch model, load it in JAX and Keras, compare latents and log-dets."""
    with torch.no_grad():
        (early, late), log_det = flow([x], c)
    reference = [early.numpy(), late.numpy(), log_det.numpy()]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "digits.fc")
        fc.save(flow, path)
        for name in ("jax", "keras"):
            if name not in fc.installed_backends():
                print(f"  {name:6s} not installed")
                continue
            other, backend = fc.load(path, backend=name), fc.get_backend(name)
            (o_early, o_late), o_log_det = other([x.numpy()], c.numpy())
            got = [backend.to_numpy(a) for a in (o_early, o_late, o_log_det)]
            dz = max(np.abs(g - r).max() for g, r in zip(got[:2], reference[:2], strict=True))
            dld = np.abs(got[2] - reference[2]).max()
            print(f"  {name:6s} loaded: max |z - torch's| {dz:.1e}, max |log_det - torch's| "
                  f"{dld:.1e} (|log_det| ~ {np.abs(reference[2]).mean():.0f})")  # fmt: skip


def main() -> None:
    torch.set_num_threads(1)  # convolutions on 4x4 and 2x2 images: threads only add overhead
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    graph = multiscale_graph()
    print(fc.graph_text(graph))
    if shutil.which("dot"):
        print(f"wrote {fc.draw_graph(graph, 'multiscale_graph.svg')}")

    images, labels = digits(rng)
    x_train, c_train = images[:1500], labels[:1500]
    x_test, c_test = dequantise(images[1500:], rng), torch.from_numpy(labels[1500:])
    flow = fc.build(graph, backend="torch", seed=0)
    print(f"held-out digits: {bits_per_dim(flow, x_test, c_test):.3f} bits/pixel before training")
    train(flow, x_train, c_train, rng, steps=300)
    print(f"held-out digits: {bits_per_dim(flow, x_test, c_test):.3f} bits/pixel after training "
          f"(uniform noise: {math.log2(LEVELS):.3f})")  # fmt: skip
    print("samples of 0..9 (reverse pass, conditioned on the class):")
    show_samples(flow, graph, rng)
    compare_everywhere(flow, x_test[:32], c_test[:32])


if __name__ == "__main__":
    main()

"""Anomaly detection in the FastFlow style on scikit-learn's digits: an anomaly map per pixel.

FastFlow (Yu et al. 2021, as anomalib builds it) trains a 2-D flow on the feature maps of
defect-free images only: per feature scale, eight AllInOneBlocks with hard channel
permutations, clamp 2 and FrEIA 0.2's soft clamp, whose subnets are two convolutions of
kernels 3 and 1 in turn (zero padding, then Conv2d). At test time the negative
log-likelihood of each position's latent vector, upsampled to the image size, is the
anomaly map, and its maximum the image's anomaly score. This example builds that flow from
flowcore's portable pieces (``fc.AllInOneBlock`` with ``flowcore.layers`` subnets of hidden
width 32, so the trained flow also runs in JAX and Keras) and trains it with
``flowcore.backends.torch.fit``.

Data: the digits 0 are the normal images (8x8, upsampled to 16x16; 118 to train, each
with four copies jittered by Gaussian noise of sd 0.02). The test images are the 60
held-out 0s, once clean and once with a synthetic defect pasted in: a thin bright scratch
or a small blob, whose mask is known. It reports the image-level AUROC (clean against
defective), the pixel-level AUROC of the anomaly maps against the defect masks and, as
another kind of anomaly, the image-level AUROC of clean 0s against other digits; checks
that each is above 0.9; loads the trained flow in JAX and checks that it computes the same
maps; and writes ``anomaly_map.png``: rows of test image, defect mask and anomaly map over
the image. About 20 s on two CPU cores.

Features: FastFlow reads a pretrained CNN's feature maps; with nothing to download here,
the features are the image itself seen at stride 2, a fixed, non-learned map: each 16x16
image is squeezed into (4, 8, 8), so each of the 8x8 positions holds its 2x2 patch of
pixels as its four channels, standardised per channel with the training images' statistics
(FastFlow normalises its backbone's features with a LayerNorm). The squeeze is a bijection
of the pixels, so the features have a proper density. A fixed random convolution with more
than one output channel would not: its features are linear images of the same 256 pixels
in more dimensions, a degenerate density that a flow can only fit by collapsing (and a
ReLU after it would add point masses at 0).

Run: ``python examples/anomaly_map.py`` (needs torch, scikit-learn and matplotlib; JAX
where installed).
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flowcore.backends.torch import fit  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

import flowcore as fc  # noqa: E402
from flowcore.layers import Conv2d, ReLU, Sequential, ZeroPad2d  # noqa: E402

SEED = 0
NORMAL_CLASS = 0
SIZE = 16  # images are upsampled from 8x8 to SIZE x SIZE
FEATURES = (4, SIZE // 2, SIZE // 2)  # each position's 2x2 patch
BLOCKS, HIDDEN = 8, 32
EPOCHS, BATCH, LEARNING_RATE = 60, 32, 1e-3
NOISE = 0.02  # Gaussian jitter on the training pixels: a density, not point masses at 0
MIN_AUROC = 0.9  # each of the three AUROCs
TOLERANCE = 1e-3  # relative, float32 torch against float32 JAX


def subnet(kernel: int) -> Sequential:
    """FastFlow's subnet: ZeroPad2d, Conv2d(k), ReLU, ZeroPad2d, Conv2d(k)."""
    pad = kernel // 2
    return Sequential(
        layers=(
            ZeroPad2d(pad), Conv2d(HIDDEN, kernel, padding=0), ReLU(),
            ZeroPad2d(pad), Conv2d(None, kernel, padding=0),
        )
    )  # fmt: skip


def fastflow(blocks: int = BLOCKS) -> fc.SequenceINN:
    """FastFlow's flow for one feature scale: AllInOneBlocks with kernels 3 and 1 in turn,
    hard permutations, clamp 2, FrEIA 0.2's (anomalib's) soft clamp alpha * tanh(a)."""
    return fc.SequenceINN(
        *[
            fc.AllInOneBlock(
                subnet=subnet(3 if i % 2 == 0 else 1),
                affine_clamping=2.0,
                permute_soft=False,
                soft_clamp="tanh",
            )
            for i in range(blocks)
        ]
    )


def resize(a: np.ndarray, size: int) -> np.ndarray:
    """(n, h, w) to (n, size, size), bilinear between pixel centres (torch's
    ``interpolate(mode="bilinear", align_corners=False)``)."""

    def weights(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        grid = np.maximum((np.arange(size) + 0.5) * n / size - 0.5, 0.0)
        low = np.minimum(np.floor(grid).astype(int), n - 1)
        return low, np.minimum(low + 1, n - 1), grid - low

    r0, r1, tr = weights(a.shape[1])
    c0, c1, tc = weights(a.shape[2])
    rows = a[:, r0] * (1 - tr)[None, :, None] + a[:, r1] * tr[None, :, None]
    return rows[:, :, c0] * (1 - tc)[None, None, :] + rows[:, :, c1] * tc[None, None, :]


def digits_at_size(images: np.ndarray) -> np.ndarray:
    """(n, 8, 8) digits 0..16 as (n, 1, SIZE, SIZE) float32 in [0, 1]."""
    return resize(images / 16.0, SIZE).astype(np.float32)[:, None]


def split_digits(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The normal class's digits, shuffled, upsampled: two thirds to train, the rest held out."""
    data = load_digits()
    images = digits_at_size(data.images[data.target == NORMAL_CLASS])
    images = images[rng.permutation(len(images))]
    cut = 2 * len(images) // 3
    return images[:cut], images[cut:]


def defect(rng: np.random.Generator) -> np.ndarray:
    """A (SIZE, SIZE) bright defect in [0, 1]: a thin scratch (a line segment 5 to 9 pixels
    long, antialiased) or a small Gaussian blob, at a random place."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    centre = rng.uniform(3.0, SIZE - 3.0, size=2)
    if rng.random() < 0.5:
        angle, length = rng.uniform(0, np.pi), rng.uniform(5.0, 9.0)
        direction = np.array([np.sin(angle), np.cos(angle)])
        along = (yy - centre[0]) * direction[0] + (xx - centre[1]) * direction[1]
        across = (yy - centre[0]) * direction[1] - (xx - centre[1]) * direction[0]
        inside = np.clip(length / 2 + 0.5 - np.abs(along), 0.0, 1.0)
        return np.clip(1.2 - np.abs(across), 0.0, 1.0) * inside
    sigma = rng.uniform(0.9, 1.4)
    blob = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2))
    return np.clip(1.3 * blob, 0.0, 1.0)


def with_defects(images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each image with a defect pasted in (the brighter of image and defect) and its mask:
    the pixels the defect brightened by more than 0.25 (at least three of them)."""
    out, masks = images.copy(), np.zeros(images.shape, dtype=bool)
    for k, image in enumerate(images[:, 0]):
        while True:
            pasted = np.maximum(image, defect(rng))
            mask = pasted - image > 0.25
            if mask.sum() >= 3:
                break
        out[k, 0], masks[k, 0] = pasted, mask
    return out, masks


def squeeze(images: np.ndarray) -> np.ndarray:
    """(n, 1, S, S) -> (n, 4, S/2, S/2): each position's 2x2 patch as its channels."""
    n, _, h, w = images.shape
    patches = images.reshape(n, h // 2, 2, w // 2, 2)
    return patches.transpose(0, 2, 4, 1, 3).reshape(n, 4, h // 2, w // 2)


class Standardise:
    """Per-channel standardisation with the training features' mean and std."""

    def __init__(self, features: np.ndarray) -> None:
        self.mean = features.mean(axis=(0, 2, 3), keepdims=True)
        self.std = features.std(axis=(0, 2, 3), keepdims=True)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)


def anomaly_maps(flow: object, features: np.ndarray) -> np.ndarray:
    """The per-position negative log-likelihood of the latents, 0.5 |z_hw|^2 over channels
    (FastFlow's map, which leaves out the log-det: convolutions spread it over positions),
    upsampled to (n, SIZE, SIZE). ``flow`` is a flowcore model of any backend."""
    backend = fc.backend_of(flow)
    z, _ = flow(backend.to_native(features, "float32", "cpu"))
    z = backend.to_numpy(z).astype(np.float64)
    return resize(0.5 * (z**2).sum(axis=1), SIZE)


def train(flow: torch.nn.Module, images: np.ndarray, norm: Standardise) -> None:
    """Maximum likelihood on four jittered copies of the normal images' features."""
    rng = np.random.default_rng([SEED, 1])
    jittered = np.concatenate(
        [images + NOISE * rng.standard_normal(images.shape) for _ in range(4)]
    )
    history = fit(
        flow, norm(squeeze(jittered)), epochs=EPOCHS, batch_size=BATCH,
        learning_rate=LEARNING_RATE, seed=SEED,
    )  # fmt: skip
    dims = np.prod(FEATURES)
    print(f"trained {EPOCHS} epochs on {len(images)} normal digits: NLL per dimension "
          f"{history.loss[0] / dims:.3f} -> {history.loss[-1] / dims:.3f} nats")  # fmt: skip


def picture(
    images: np.ndarray, masks: np.ndarray, maps: np.ndarray, columns: list[int],
    aurocs: tuple[float, float], path: str = "anomaly_map.png",
) -> str:  # fmt: skip
    """Rows of test image, defect mask and anomaly map over the image, one column per test
    image; the map's colours run on a log scale from the clean images' median NLL to the
    99.5th percentile of all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    clean = ~masks.reshape(len(masks), -1).any(axis=1)
    low, high = np.median(maps[clean]), np.percentile(maps, 99.5)
    norm = LogNorm(vmin=low, vmax=high, clip=True)
    figure, axes = plt.subplots(
        3, len(columns), figsize=(1.5 * len(columns) + 0.8, 5.4), layout="constrained"
    )
    for col, k in enumerate(columns):
        axes[0, col].imshow(images[k, 0], cmap="gray", vmin=0, vmax=1)
        axes[1, col].imshow(masks[k, 0], cmap="gray", vmin=0, vmax=1)
        axes[2, col].imshow(images[k, 0], cmap="gray", vmin=0, vmax=1)
        shown = axes[2, col].imshow(maps[k], cmap="jet", alpha=0.5, norm=norm)
        kind = "clean" if clean[k] else "defect"
        axes[0, col].set_title(f"{kind}\nscore {maps[k].max():.0f}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for ax, label in zip(axes[:, 0], ("test image", "defect mask", "anomaly map"), strict=True):
        ax.set_ylabel(label)
    figure.suptitle(
        f"FastFlow-style flow on digits 0: image AUROC {aurocs[0]:.3f}, "
        f"pixel AUROC {aurocs[1]:.3f}", fontsize=10,
    )  # fmt: skip
    bar = figure.colorbar(shown, ax=axes[2, :].tolist(), shrink=0.9, pad=0.01)
    bar.set_label("NLL per position", fontsize=8)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def image_scores(maps: np.ndarray) -> np.ndarray:
    """FastFlow's image score: the anomaly map's maximum."""
    return maps.reshape(len(maps), -1).max(axis=1)


def other_digits(count: int = 300) -> np.ndarray:
    """The first ``count`` digits of the other classes, at SIZE x SIZE."""
    data = load_digits()
    return digits_at_size(data.images[data.target != NORMAL_CLASS][:count])


def same_maps_in_jax(flow: torch.nn.Module, features: np.ndarray, maps: np.ndarray) -> bool:
    """Save the trained flow, load it in JAX (where installed): the same anomaly maps."""
    if "jax" not in fc.installed_backends():
        print("  jax not installed: port check skipped")
        return True
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fastflow.fc")
        fc.save(flow, path)
        jax_maps = anomaly_maps(fc.load(path, backend="jax"), features)
    diff = float(np.max(np.abs(jax_maps - maps) / (1.0 + np.abs(maps))))
    agree = diff < TOLERANCE
    print(f"  jax    loaded: max relative |map - torch's| = {diff:.1e}  "
          + ("agree" if agree else "DIFFER"))  # fmt: skip
    return agree


def main() -> int:
    torch.set_num_threads(1)  # small convolutions: more threads add overhead on shared cores
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    normal, held_out = split_digits(rng)
    defective, masks = with_defects(held_out, rng)
    norm = Standardise(squeeze(normal))
    flow = fc.build(fastflow(), FEATURES, backend="torch", seed=SEED)
    train(flow, normal, norm)
    flow.eval()

    test = np.concatenate([held_out, defective])
    test_masks = np.concatenate([np.zeros_like(masks), masks])
    labels = np.r_[np.zeros(len(held_out)), np.ones(len(defective))]
    features = norm(squeeze(test))
    with torch.no_grad():
        maps = anomaly_maps(flow, features)
        other_scores = image_scores(anomaly_maps(flow, norm(squeeze(other_digits()))))
    image_auroc = roc_auc_score(labels, image_scores(maps))
    pixel_auroc = roc_auc_score(test_masks.ravel(), maps.ravel())
    clean_scores = image_scores(maps[: len(held_out)])
    class_auroc = roc_auc_score(
        np.r_[np.zeros(len(clean_scores)), np.ones(len(other_scores))],
        np.r_[clean_scores, other_scores],
    )
    print(f"image-level AUROC, clean vs defective {NORMAL_CLASS}s: {image_auroc:.3f}")
    print(f"pixel-level AUROC, anomaly map vs defect masks: {pixel_auroc:.3f}")
    print(f"image-level AUROC, clean {NORMAL_CLASS}s vs other digits: {class_auroc:.3f}")
    ported = same_maps_in_jax(flow, features, maps)
    n = len(held_out)
    columns = [0, 1, n, n + 1, n + 2, n + 3, n + 4, n + 5]
    detected = min(image_auroc, pixel_auroc, class_auroc) > MIN_AUROC
    print(f"every AUROC above {MIN_AUROC}: {detected}")
    print(f"wrote {picture(test, test_masks, maps, columns, (image_auroc, pixel_auroc))}")
    return 0 if detected and ported else 1


if __name__ == "__main__":
    raise SystemExit(main())

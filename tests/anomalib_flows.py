"""anomalib's four flow models, rebuilt here for the FrEIA drop-in's acceptance tests.

Nothing of anomalib is vendored or imported: each model's normalizing-flow part is built
again from the structure anomalib's ``torch_model.py`` files give it (read in anomalib
2.7.0, and 2.2.0 for FastFlow's older subnet), with the same module and attribute names,
so that the ``state_dict`` keys are anomalib's. The CNN backbones are left out: the models
take feature maps (random ones in the tests) of the shapes the backbones give.

Each builder is written once against a pair of namespaces ``(Ff, Fm)``: FrEIA 0.2's
``FrEIA.framework`` and ``FrEIA.modules``, or the drop-in's
``flowcore.backends.torch.freia.framework`` and ``.modules``. anomalib builds its flows
with FrEIA's framework (and FrEIA's ``Split``, ``IRevNetUpsampling``, ``Concat`` and
``InvertibleModule``) and its own ``AllInOneBlock``, a copy of FrEIA 0.2's with the same
math (it draws the hard permutation with ``torch.randperm`` instead of NumPy's generator,
which only changes the initial permutation). Here ``Fm.AllInOneBlock`` stands for it:
FrEIA 0.2's own on the FrEIA side, the drop-in's (FrEIA 0.2's behaviour by default) on
the other.

- :class:`FastFlow`: ``fast_flow_blocks``, one ``SequenceINN(C, H, W)`` of AllInOneBlocks
  per feature scale; :func:`fastflow_loss`.
- :class:`Cflow`: ``decoders``, one conditional ``SequenceINN(C)`` per encoder layer, each
  feature vector conditioned on :func:`positional_encoding_2d`; :func:`cflow_log_prob`,
  :func:`cflow_loss`.
- :class:`CsFlow`: ``graph.graph``, a three-input ``GraphINN`` of CS-Flow's own FrEIA
  modules (:func:`csflow_modules`); :func:`csflow_loss`.
- :class:`UFlow`: ``flow``, the U-shaped ``GraphINN`` built from the coarsest scale;
  :func:`uflow_loss`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

# -- FastFlow ---------------------------------------------------------------------------------


def fastflow_subnet(
    kernel_size: int, hidden_ratio: float, explicit_padding: bool = False
) -> Callable[[int, int], nn.Module]:
    """FastFlow's subnet constructor: conv(k) -> ReLU -> conv(k), ``int(c_in * ratio)``
    hidden channels, the spatial size kept. anomalib 2.7 pads in the convolutions
    (``padding="same"``); anomalib up to 2.2 padded with ``nn.ZeroPad2d`` before unpadded
    convolutions (for ONNX export), which is ``explicit_padding=True``: the same function
    for odd kernels, other ``state_dict`` keys (``subnet.1``/``subnet.4``)."""

    def subnet(in_channels: int, out_channels: int) -> nn.Module:
        hidden = int(in_channels * hidden_ratio)
        if not explicit_padding:
            return nn.Sequential(
                nn.Conv2d(in_channels, hidden, kernel_size, padding="same"),
                nn.ReLU(),
                nn.Conv2d(hidden, out_channels, kernel_size, padding="same"),
            )
        # left/top and right/bottom padding; equal for an odd kernel
        before, after = kernel_size // 2 - (kernel_size + 1) % 2, kernel_size // 2
        pad = (before, after, before, after)
        return nn.Sequential(
            nn.ZeroPad2d(pad),
            nn.Conv2d(in_channels, hidden, kernel_size),
            nn.ReLU(),
            nn.ZeroPad2d(pad),
            nn.Conv2d(hidden, out_channels, kernel_size),
        )

    return subnet


def fastflow_block(
    Ff: ModuleType,  # noqa: N803
    Fm: ModuleType,  # noqa: N803
    input_dimensions: Sequence[int],
    conv3x3_only: bool,
    hidden_ratio: float,
    flow_steps: int,
    clamp: float = 2.0,
    explicit_padding: bool = False,
) -> nn.Module:
    """One FastFlow scale: ``flow_steps`` AllInOneBlocks on (C, H, W), hard permutations,
    the subnets' kernels 3, 1, 3, 1, ... (all 3 with ``conv3x3_only``)."""
    flow = Ff.SequenceINN(*input_dimensions)
    for step in range(flow_steps):
        kernel = 1 if step % 2 == 1 and not conv3x3_only else 3
        flow.append(
            Fm.AllInOneBlock,
            subnet_constructor=fastflow_subnet(kernel, hidden_ratio, explicit_padding),
            affine_clamping=clamp,
            permute_soft=False,
        )
    return flow


class FastFlow(nn.Module):
    """FastFlow's flows (anomalib's ``FastflowModel`` without its backbone and norms):
    one :func:`fastflow_block` per feature scale, in ``fast_flow_blocks``.

    ``scales``: the (C, H, W) of each feature map (resnet18 on 256²: (64, 64, 64),
    (128, 32, 32), (256, 16, 16)). ``forward(features)`` returns anomalib's training
    output, the lists of hidden variables and log-dets, one per scale."""

    def __init__(
        self,
        Ff: ModuleType,  # noqa: N803
        Fm: ModuleType,  # noqa: N803
        scales: Sequence[Sequence[int]],
        flow_steps: int = 8,
        conv3x3_only: bool = False,
        hidden_ratio: float = 1.0,
        explicit_padding: bool = False,
    ) -> None:
        super().__init__()
        self.fast_flow_blocks = nn.ModuleList(
            fastflow_block(
                Ff, Fm, dims, conv3x3_only, hidden_ratio, flow_steps,
                explicit_padding=explicit_padding,
            )
            for dims in scales
        )  # fmt: skip

    def forward(
        self, features: Sequence[torch.Tensor], rev: bool = False
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        outs, log_dets = [], []
        for block, feature in zip(self.fast_flow_blocks, features, strict=True):
            out, log_det = block(feature, rev=rev)
            outs.append(out)
            log_dets.append(log_det)
        return outs, log_dets


def fastflow_loss(
    hidden: Sequence[torch.Tensor], log_dets: Sequence[torch.Tensor]
) -> torch.Tensor:
    """FastFlow's loss: over the scales, the sum of the batch means of
    ``0.5·Σz² - log|det J|``."""
    return sum(
        (
            torch.mean(0.5 * torch.sum(z**2, dim=(1, 2, 3)) - ld)
            for z, ld in zip(hidden, log_dets, strict=True)
        ),
        torch.zeros(()),
    )


#: anomalib's FastFlow optimiser: Adam, lr 1e-3, weight decay 1e-5.
FASTFLOW_ADAM = {"lr": 1e-3, "weight_decay": 1e-5}


# -- CFLOW ------------------------------------------------------------------------------------


def cflow_subnet(dims_in: int, dims_out: int) -> nn.Module:
    """CFLOW's subnet: Linear(d, 2d) -> ReLU -> Linear(2d, out)."""
    return nn.Sequential(
        nn.Linear(dims_in, 2 * dims_in), nn.ReLU(), nn.Linear(2 * dims_in, dims_out)
    )


def cflow_head(
    Ff: ModuleType,  # noqa: N803
    Fm: ModuleType,  # noqa: N803
    condition_vector: int,
    coupling_blocks: int,
    clamp_alpha: float,
    n_features: int,
    permute_soft: bool = False,
) -> nn.Module:
    """One CFLOW decoder: ``coupling_blocks`` AllInOneBlocks on C-vectors, each conditioned
    on the ``condition_vector``-long positional encoding (condition 0), SOFTPLUS global
    affine."""
    coder = Ff.SequenceINN(n_features)
    for _ in range(coupling_blocks):
        coder.append(
            Fm.AllInOneBlock,
            cond=0,
            cond_shape=(condition_vector,),
            subnet_constructor=cflow_subnet,
            affine_clamping=clamp_alpha,
            global_affine_type="SOFTPLUS",
            permute_soft=permute_soft,
        )
    return coder


def positional_encoding_2d(condition_vector: int, height: int, width: int) -> torch.Tensor:
    """CFLOW's (P, H, W) sin/cos position code, P a multiple of 4: the first P/2 channels
    code the column, the rest the row, alternating sin and cos of the position times the
    frequencies ``10000^(-2k/(P/2))``, k = 0 .. P/4 - 1."""
    if condition_vector % 4:
        raise ValueError(
            f"the condition vector's length must be a multiple of 4, got {condition_vector}"
        )
    half = condition_vector // 2
    freqs = torch.exp(torch.arange(0.0, half, 2) * (-math.log(1e4) / half))  # (P/4,)
    column = torch.arange(0.0, width)[None, :] * freqs[:, None]  # (P/4, W)
    row = torch.arange(0.0, height)[None, :] * freqs[:, None]  # (P/4, H)
    code = torch.zeros(condition_vector, height, width)
    code[0:half:2] = torch.sin(column)[:, None, :].expand(-1, height, -1)
    code[1:half:2] = torch.cos(column)[:, None, :].expand(-1, height, -1)
    code[half::2] = torch.sin(row)[:, :, None].expand(-1, -1, width)
    code[half + 1 :: 2] = torch.cos(row)[:, :, None].expand(-1, -1, width)
    return code


class Cflow(nn.Module):
    """CFLOW's decoders (anomalib's ``CflowModel`` without its encoder): one
    :func:`cflow_head` per encoder layer, in ``decoders``.

    Each pixel's C-vector of a layer's (B, C, H, W) features is a sample, conditioned on
    the position code of its pixel; :meth:`fibers` makes those rows, and
    ``forward(e_p, c_p, layer)`` runs layer ``layer``'s decoder on a batch of them as
    anomalib does (``decoder(e_p, [c_p])``)."""

    def __init__(
        self,
        Ff: ModuleType,  # noqa: N803
        Fm: ModuleType,  # noqa: N803
        pool_dims: Sequence[int],
        condition_vector: int = 128,
        coupling_blocks: int = 8,
        clamp_alpha: float = 1.9,
        permute_soft: bool = False,
    ) -> None:
        super().__init__()
        self.condition_vector = condition_vector
        self.decoders = nn.ModuleList(
            cflow_head(Ff, Fm, condition_vector, coupling_blocks, clamp_alpha, dim, permute_soft)
            for dim in pool_dims
        )

    def fibers(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`cflow_fibers` with this model's condition length."""
        return cflow_fibers(features, self.condition_vector)

    def forward(
        self, e_p: torch.Tensor, c_p: torch.Tensor, layer: int, rev: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoders[layer](e_p, [c_p], rev=rev)


def cflow_fibers(
    features: torch.Tensor, condition_vector: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's features (B, C, H, W) as CFLOW's rows, one per pixel: (BHW, C), and
    their pixels' position codes (BHW, P), in the same (b, h, w) order."""
    batch, channels, height, width = features.shape
    code = positional_encoding_2d(condition_vector, height, width).permute(1, 2, 0)
    c_r = (
        code.reshape(1, height * width, -1)
        .expand(batch, -1, -1)
        .reshape(batch * height * width, -1)
    )
    e_r = features.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
    return e_r, c_r


def cflow_log_prob(
    dim_feature_vector: int, p_u: torch.Tensor, log_det: torch.Tensor
) -> torch.Tensor:
    """CFLOW's log-likelihood of a row: ``-C·ln√(2π) - ½‖u‖² + log|det J|``."""
    return -dim_feature_vector * 0.5 * math.log(2 * math.pi) - 0.5 * torch.sum(p_u**2, 1) + log_det


def cflow_loss(dim_feature_vector: int, p_u: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
    """CFLOW's training loss on a fiber batch: mean of ``-log σ(log p / C)``."""
    return torch.mean(
        -F.logsigmoid(cflow_log_prob(dim_feature_vector, p_u, log_det) / dim_feature_vector)
    )


#: anomalib's CFLOW optimiser: Adam over all decoders, lr 1e-4.
CFLOW_ADAM = {"lr": 1e-4}


# -- CS-Flow ----------------------------------------------------------------------------------


class CrossConvolutions(nn.Module):
    """CS-Flow's subnet on three scales at once (s0 at H, s1 at H/2, s2 at H/4).

    Per scale, conv(k) -> LeakyReLU -> conv(k); the hidden maps also cross over: each
    scale's output adds the conv of the next coarser hidden map upsampled ×2 (bilinear) and
    the stride-2 conv of the next finer one. Each scale's output is multiplied by its own
    learned ``gamma``, initialised 0, so that a new coupling is the identity."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        channels_hidden: int = 512,
        kernel_size: int = 3,
        leaky_slope: float = 0.1,
        batch_norm: bool = False,
        use_gamma: bool = True,
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        bias = not batch_norm
        self.leaky_slope = leaky_slope
        self.use_gamma = use_gamma
        self.gamma0 = nn.Parameter(torch.zeros(1))
        self.gamma1 = nn.Parameter(torch.zeros(1))
        self.gamma2 = nn.Parameter(torch.zeros(1))

        def conv(c_in: int, c_out: int, bias: bool = bias, stride: int = 1) -> nn.Conv2d:
            return nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=pad, bias=bias)

        self.conv_scale0_0 = conv(in_channels, channels_hidden)
        self.conv_scale1_0 = conv(in_channels, channels_hidden)
        self.conv_scale2_0 = conv(in_channels, channels_hidden)
        self.conv_scale0_1 = conv(channels_hidden, channels)
        self.conv_scale1_1 = conv(channels_hidden, channels)
        self.conv_scale2_1 = conv(channels_hidden, channels)
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.up_conv10 = conv(channels_hidden, channels, bias=True)
        self.up_conv21 = conv(channels_hidden, channels, bias=True)
        self.down_conv01 = conv(channels_hidden, channels, stride=2)
        self.down_conv12 = conv(channels_hidden, channels, stride=2)
        self.leaky_relu = nn.LeakyReLU(leaky_slope)

    def forward(
        self, scale0: torch.Tensor, scale1: torch.Tensor, scale2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h0 = self.leaky_relu(self.conv_scale0_0(scale0))
        h1 = self.leaky_relu(self.conv_scale1_0(scale1))
        h2 = self.leaky_relu(self.conv_scale2_0(scale2))
        out0 = self.conv_scale0_1(h0) + self.up_conv10(self.upsample(h1))
        out1 = self.conv_scale1_1(h1) + self.down_conv01(h0) + self.up_conv21(self.upsample(h2))
        out2 = self.conv_scale2_1(h2) + self.down_conv12(h1)
        if self.use_gamma:
            return out0 * self.gamma0, out1 * self.gamma1, out2 * self.gamma2
        return out0, out1, out2


@functools.cache
def csflow_modules(Fm: ModuleType) -> tuple[type[nn.Module], type[nn.Module]]:  # noqa: N803
    """CS-Flow's own FrEIA modules, ``(ParallelPermute, ParallelGlowCouplingLayer)``, as a
    user writes them: subclasses of ``Fm.InvertibleModule`` (FrEIA's or the drop-in's),
    with FrEIA's calling convention and no condition argument (a GraphINN calls a module
    without ``c`` when it has no conditions)."""

    class ParallelPermute(Fm.InvertibleModule):  # type: ignore[misc, name-defined]
        """A fixed channel permutation of each of its inputs, drawn from NumPy's generator
        seeded ``seed`` (the same one for every input of the same width). Log-det 0."""

        def __init__(self, dims_in: Sequence[Sequence[int]], seed: int | None = None) -> None:
            super().__init__(dims_in)
            self.n_inputs = len(dims_in)
            self.in_channels = [dims[0] for dims in dims_in]
            self.seed = seed
            self.perm, self.perm_inv = [], []
            for channels in self.in_channels:
                perm = np.random.default_rng(seed).permutation(channels)
                self.perm.append(torch.as_tensor(perm, dtype=torch.long))
                self.perm_inv.append(torch.as_tensor(np.argsort(perm), dtype=torch.long))

        def forward(
            self, input_tensor: Sequence[torch.Tensor], rev: bool = False, jac: bool = True
        ) -> tuple[list[torch.Tensor], float]:
            index = self.perm_inv if rev else self.perm
            return [x[:, index[i]] for i, x in enumerate(input_tensor)], 0.0

        @staticmethod
        def output_dims(input_dims: Any) -> Any:
            return input_dims

    class ParallelGlowCouplingLayer(Fm.InvertibleModule):  # type: ignore[misc, name-defined]
        """GLOW's two-sided affine coupling on three scales at once, each half's scales and
        shifts computed from the other half of all three scales by a
        :class:`CrossConvolutions`; log-scale ``α·0.636·atan(s/α)`` (α = ``clamp``).

        As anomalib's: the log-det is one number, summed over the scales and the batch,
        and the same sign in both directions; the outputs are clamped to ±1e6; the reverse
        pass is not the forward's inverse (it takes the second half's shifts from the
        first subnet's output, and splits by the other half's length), kept as it is."""

        def __init__(
            self, dims_in: Sequence[Sequence[int]], subnet_args: dict[str, Any], clamp: float = 5.0
        ) -> None:
            super().__init__(dims_in)
            channels = dims_in[0][0]
            self.ndims = len(dims_in[0])
            self.split_len1 = channels // 2
            self.split_len2 = channels - channels // 2
            self.clamp = clamp
            self.max_s = math.exp(clamp)
            self.min_s = math.exp(-clamp)
            self.cross_convolution1 = CrossConvolutions(
                self.split_len1, self.split_len2 * 2, **subnet_args
            )
            self.cross_convolution2 = CrossConvolutions(
                self.split_len2, self.split_len1 * 2, **subnet_args
            )

        def log_e(self, s: torch.Tensor) -> torch.Tensor:
            return self.clamp * 0.636 * torch.atan(s / self.clamp) if self.clamp > 0 else s

        def exp(self, s: torch.Tensor) -> torch.Tensor:
            return torch.exp(self.log_e(s))

        def forward(
            self, input_tensor: Sequence[torch.Tensor], rev: bool = False, jac: bool = True
        ) -> tuple[list[torch.Tensor], torch.Tensor]:
            n1, n2 = self.split_len1, self.split_len2
            firsts = [x.narrow(1, 0, n1) for x in input_tensor]
            seconds = [x.narrow(1, n1, n2) for x in input_tensor]
            if not rev:
                r2 = self.cross_convolution2(*seconds)
                s2, t2 = [r[:, :n1] for r in r2], [r[:, n1:] for r in r2]
                new_firsts = [self.exp(s) * x + t for s, x, t in zip(s2, firsts, t2, strict=True)]
                r1 = self.cross_convolution1(*new_firsts)
                s1, t1 = [r[:, :n2] for r in r1], [r[:, n2:] for r in r1]
                new_seconds = [
                    self.exp(s) * x + t for s, x, t in zip(s1, seconds, t1, strict=True)
                ]
            else:
                r1 = self.cross_convolution1(*firsts)
                s1, t1 = [r[:, :n2] for r in r1], [r[:, n2:] for r in r1]
                new_seconds = [
                    (x - t) / self.exp(s) for s, x, t in zip(s1, seconds, t1, strict=True)
                ]
                r2 = self.cross_convolution2(*new_seconds)
                # anomalib's reverse: s by the second half's length, t from r1, not r2
                s2 = [r[:, :n2] for r in r2]
                t2 = [r[:, n2:] for r in r1]
                new_firsts = [
                    (x - t) / self.exp(s) for s, x, t in zip(s2, firsts, t2, strict=True)
                ]
            outs = [
                torch.clamp(torch.cat((a, b), 1), -1e6, 1e6)
                for a, b in zip(new_firsts, new_seconds, strict=True)
            ]
            per_scale = [
                torch.sum(self.log_e(a), dim=(1, 2, 3)) + torch.sum(self.log_e(b), dim=(1, 2, 3))
                for a, b in zip(s1, s2, strict=True)
            ]
            return outs, torch.stack(per_scale, dim=1).sum()

        @staticmethod
        def output_dims(input_dims: Any) -> Any:
            return input_dims

    return ParallelPermute, ParallelGlowCouplingLayer


class CrossScaleFlow(nn.Module):
    """CS-Flow's flow: a GraphINN (``graph``) on three inputs, ``channels`` each, of
    ``input_dims``' H and W over 32, 64 and 128 (EfficientNet-B5 features of the image at
    three scales: 304 channels in anomalib), then ``n_coupling_blocks`` pairs of a
    ``ParallelPermute`` seeded with the block's index and a ``ParallelGlowCouplingLayer``
    (kernel 3, the last 5), and three outputs."""

    def __init__(
        self,
        Ff: ModuleType,  # noqa: N803
        Fm: ModuleType,  # noqa: N803
        input_dims: Sequence[int],
        n_coupling_blocks: int,
        clamp: float,
        cross_conv_hidden_channels: int,
        channels: int = 304,
    ) -> None:
        super().__init__()
        permute, coupling = csflow_modules(Fm)
        height, width = input_dims[1], input_dims[2]
        kernel_sizes = [3] * (n_coupling_blocks - 1) + [5]
        nodes: list[Any] = [
            Ff.InputNode(channels, height // 32, width // 32, name="input"),
            Ff.InputNode(channels, height // 64, width // 64, name="input2"),
            Ff.InputNode(channels, height // 128, width // 128, name="input3"),
        ]
        for block in range(n_coupling_blocks):
            if block == 0:
                inputs = [nodes[-3].out0, nodes[-2].out0, nodes[-1].out0]
            else:
                inputs = [nodes[-1].out0, nodes[-1].out1, nodes[-1].out2]
            nodes.append(Ff.Node(inputs, permute, {"seed": block}, name=f"permute_{block}"))
            subnet_args = {
                "channels_hidden": cross_conv_hidden_channels,
                "kernel_size": kernel_sizes[block],
            }
            nodes.append(
                Ff.Node(
                    [nodes[-1].out0, nodes[-1].out1, nodes[-1].out2],
                    coupling,
                    {"clamp": clamp, "subnet_args": subnet_args},
                    name=f"fc1_{block}",
                )
            )
        last = nodes[-1]
        nodes += [
            Ff.OutputNode([last.out0], name="output_end0"),
            Ff.OutputNode([last.out1], name="output_end1"),
            Ff.OutputNode([last.out2], name="output_end2"),
        ]
        self.graph = Ff.GraphINN(nodes)

    def forward(
        self, inputs: Sequence[torch.Tensor], rev: bool = False
    ) -> tuple[Any, torch.Tensor]:
        return self.graph(inputs, rev=rev)


class CsFlow(nn.Module):
    """CS-Flow's flow part (anomalib's ``CsFlowModel`` without its feature extractor):
    the :class:`CrossScaleFlow` in ``graph``; anomalib's defaults: 4 blocks, clamp 3."""

    def __init__(
        self,
        Ff: ModuleType,  # noqa: N803
        Fm: ModuleType,  # noqa: N803
        input_size: tuple[int, int],
        cross_conv_hidden_channels: int,
        n_coupling_blocks: int = 4,
        clamp: float = 3,
        num_channels: int = 3,
        channels: int = 304,
    ) -> None:
        super().__init__()
        self.input_dims = (num_channels, *input_size)
        self.graph = CrossScaleFlow(
            Ff, Fm, self.input_dims, n_coupling_blocks, clamp, cross_conv_hidden_channels, channels
        )

    def forward(
        self, features: Sequence[torch.Tensor], rev: bool = False
    ) -> tuple[Any, torch.Tensor]:
        return self.graph(features, rev=rev)


def csflow_loss(z_dist: Sequence[torch.Tensor], log_det: torch.Tensor) -> torch.Tensor:
    """CS-Flow's loss: the batch mean of ``0.5·Σz² - log_det`` over all scales' outputs,
    divided by their total size per sample."""
    flat = torch.cat([z.reshape(z.shape[0], -1) for z in z_dist], dim=1)
    return torch.mean(0.5 * torch.sum(flat**2, dim=1) - log_det) / flat.shape[1]


#: anomalib's CS-Flow optimiser.
CSFLOW_ADAM = {"lr": 2e-4, "eps": 1e-4, "weight_decay": 1e-5, "betas": (0.5, 0.9)}


# -- U-Flow -----------------------------------------------------------------------------------


class AffineCouplingSubnet:
    """U-Flow's subnet constructor: conv(k, "same") -> ReLU -> conv(k, "same"), the hidden
    channels ``int(c_in * subnet_channels_ratio)``."""

    def __init__(self, kernel_size: int, subnet_channels_ratio: float) -> None:
        self.kernel_size = kernel_size
        self.subnet_channels_ratio = subnet_channels_ratio

    def __call__(self, in_channels: int, out_channels: int) -> nn.Module:
        hidden = int(in_channels * self.subnet_channels_ratio)
        return nn.Sequential(
            nn.Conv2d(in_channels, hidden, self.kernel_size, padding="same"),
            nn.ReLU(),
            nn.Conv2d(hidden, out_channels, self.kernel_size, padding="same"),
        )


class UFlow(nn.Module):
    """U-Flow's flow (anomalib's ``UflowModel`` without its feature extractor): the
    U-shaped GraphINN in ``flow``.

    ``channels`` and ``scale_factors``: the feature maps' channels and reductions, finest
    first (resnet18: (64, 128, 256) at 4, 8, 16; anomalib's default MCaiT: (768, 384) at
    16, 32). From the coarsest: a stage of ``flow_steps`` AllInOneBlocks (kernels 3, 1,
    ...); a ``Split`` whose first ``C // 8 * 4`` channels go on, the rest an output; those
    ``IRevNetUpsampling`` to twice the size, a ``Concat`` with the next finer features; and
    so on; the finest stage's output is the last output. ``forward(features)`` returns the
    outputs, finest first, and the log-det."""

    def __init__(
        self,
        Ff: ModuleType,  # noqa: N803
        Fm: ModuleType,  # noqa: N803
        input_size: tuple[int, int],
        channels: Sequence[int],
        scale_factors: Sequence[int],
        flow_steps: int = 4,
        affine_clamp: float = 2.0,
        affine_subnet_channels_ratio: float = 1.0,
        permute_soft: bool = False,
    ) -> None:
        super().__init__()
        self.namespaces = (Ff, Fm)
        self.affine_clamp = affine_clamp
        self.affine_subnet_channels_ratio = affine_subnet_channels_ratio
        self.permute_soft = permute_soft
        inputs = [
            Ff.InputNode(c, input_size[0] // s, input_size[1] // s, name=f"cond_{c}")
            for c, s in zip(channels, scale_factors, strict=True)
        ]
        nodes: list[Any] = []
        outputs: list[Any] = []
        last = inputs[-1]
        for i in reversed(range(1, len(inputs))):
            flows = self.build_flow_stage(last, flow_steps)
            volume = flows[-1].output_dims[0][0]
            sections = (volume // 8 * 4, volume - volume // 8 * 4)
            split = Ff.Node(
                flows[-1], Fm.Split, {"section_sizes": sections, "dim": 0}, name=f"split_{i + 1}"
            )
            outputs.append(Ff.OutputNode(split.out1, name=f"output_scale_{i + 1}"))
            up = Ff.Node(split.out0, Fm.IRevNetUpsampling, {}, name=f"up_{i + 1}")
            last = Ff.Node([inputs[i - 1].out0, up.out0], Fm.Concat, {"dim": 0}, name=f"cat_{i}")
            nodes += [*flows, split, up, last]
        flows = self.build_flow_stage(last, flow_steps)
        outputs.append(Ff.OutputNode(flows[-1], name="output_scale_1"))
        nodes += flows
        self.flow = Ff.GraphINN(inputs + nodes + outputs[::-1])

    def build_flow_stage(
        self, in_node: Any, flow_steps: int, condition_node: Any = None
    ) -> list[Any]:
        """``flow_steps`` AllInOneBlock nodes after ``in_node``, kernels 3, 1, 3, ..."""
        Ff, Fm = self.namespaces  # noqa: N806
        size = in_node.output_dims[0][-1]
        nodes = []
        for step in range(flow_steps):
            subnet = AffineCouplingSubnet(
                3 if step % 2 == 0 else 1, self.affine_subnet_channels_ratio
            )
            nodes.append(
                Ff.Node(
                    in_node,
                    Fm.AllInOneBlock,
                    module_args={
                        "subnet_constructor": subnet,
                        "affine_clamping": self.affine_clamp,
                        "permute_soft": self.permute_soft,
                    },
                    conditions=condition_node,
                    name=f"flow{size}_step{step}",
                )
            )
            in_node = nodes[-1]
        return nodes

    def forward(
        self, features: Sequence[torch.Tensor], rev: bool = False
    ) -> tuple[Any, torch.Tensor]:
        return self.flow(list(features), rev=rev)


def uflow_loss(hidden: Sequence[torch.Tensor], log_det: torch.Tensor) -> torch.Tensor:
    """U-Flow's loss as anomalib computes it: ``0.5·Σz²`` summed over the scales and the
    batch, minus the batch mean of ``log|det J|``."""
    lpz = torch.sum(torch.stack([0.5 * torch.sum(z**2, dim=(1, 2, 3)) for z in hidden], dim=0))
    return torch.mean(lpz - log_det)


#: anomalib's U-Flow optimiser: Adam, lr 1e-3, weight decay 1e-5 (with a linear schedule).
UFLOW_ADAM = {"lr": 1e-3, "weight_decay": 1e-5}

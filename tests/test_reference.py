"""The float64 reference's AllInOneBlock against two oracles written apart from it.

1. A hand-written NumPy transcription of FrEIA's formulas (shared/anchors/freia.md §3):
   dense permutation matrices instead of index gathers, a loop convolution, explicit
   Householder products. Same operations up to order, so 1e-12.
2. FrEIA 0.2's own AllInOneBlock in float64 with the weights copied in (0.2 clamps with
   ``clamp * tanh(a)``, flowcore's ``soft_clamp="tanh"``; it cannot broadcast a vector
   condition over pixels, so it is given the broadcast condition).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import flowcore as fc
from flowcore.tree import build_tree, initial_params

ATOL = 1e-12

OPTIONS = {
    "default": {},
    "clamp_scaled_tanh": {"affine_clamping": 0.7},
    "clamp_tanh": {"affine_clamping": 1.3, "soft_clamp": "tanh"},
    "gin": {"gin_block": True},
    "softplus": {"global_affine_init": 0.6},
    "sigmoid": {"global_affine_type": "SIGMOID", "global_affine_init": 2.5},
    "exp": {"global_affine_type": "EXP", "global_affine_init": 1.4},
    "soft": {"permute_soft": True},
    "householder_soft": {"permute_soft": True, "learned_householder_permutation": 2},
    "householder_hard": {"learned_householder_permutation": 3},
    "reverse": {"reverse_permutation": True},
    "reverse_soft_householder": {
        "reverse_permutation": True, "permute_soft": True, "learned_householder_permutation": 1,
    },
}  # fmt: skip

SHAPES = {  # name -> (input shape, condition shapes)
    "vec": ((5,), ()),
    "vec_condition": ((6,), ((3,),)),
    "img": ((3, 4, 5), ()),
    "img_matching_condition": ((4, 3, 3), ((2, 3, 3),)),
    "img_vector_condition": ((3, 4, 4), ((2,),)),
}


def _block(shape: tuple[int, ...], **options) -> fc.AllInOneBlock:
    subnet = (
        fc.MLP(hidden=(7,), zero_init_last=False)
        if len(shape) == 1
        else fc.ConvNet(hidden=(5,), zero_init_last=False)
    )
    return fc.AllInOneBlock(subnet=subnet, **options)


def _setup(options: dict, shape_name: str, seed: int = 0):
    shape, conds = SHAPES[shape_name]
    spec = _block(shape, **options)
    tree = build_tree(spec, [shape], conds)
    params = initial_params(tree, seed)
    rng = np.random.default_rng(seed + 100)
    for name, p in tree.param_specs().items():
        if p.trainable:  # perturb so that no part of the block is the identity
            params[name] = params[name] + 0.3 * rng.standard_normal(p.shape)
    x = rng.standard_normal((4, *shape))
    cs = [rng.standard_normal((4, *c)) for c in conds]
    return spec, tree, params, x, cs


# -- 1. an independent NumPy transcription of FrEIA's formulas ----------------------------


def _conv_loop(x, w, b):
    """'same' cross-correlation with zero padding, by explicit loops over the kernel."""
    k = w.shape[-1]
    pad = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((x.shape[0], w.shape[0], x.shape[2], x.shape[3]))
    for i in range(x.shape[2]):
        for j in range(x.shape[3]):
            patch = xp[:, :, i : i + k, j : j + k]  # (B, C, k, k)
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return out + b[None, :, None, None]


def _subnet(params, x):
    """Layer 0, ReLU, layer 1: an MLP on vectors, a 3x3 ConvNet on images."""
    w0, b0 = params["subnet.0.weight"], params["subnet.0.bias"]
    w1, b1 = params["subnet.1.weight"], params["subnet.1.bias"]
    if x.ndim == 2:
        return np.maximum(x @ w0.T + b0, 0) @ w1.T + b1
    return _conv_loop(np.maximum(_conv_loop(x, w0, b0), 0), w1, b1)


def _matrix(params, options, channels):
    """The dense channel matrix P of the block: FrEIA's w_perm, or w_0 times reflections."""
    k = options.get("learned_householder_permutation", 0)
    if k:
        w = params["w_0"]
        for v in params["vk_householder"]:
            w = w @ (np.eye(channels) - 2 * np.outer(v, v) / np.dot(v, v))
        return w
    if options.get("permute_soft"):
        return params["w_perm"]
    dense = np.zeros((channels, channels))
    dense[np.arange(channels), params["w_perm"]] = 1.0  # w[i, perm[i]] = 1
    return dense


def _channels(matrix, x):
    return np.einsum("ij,bj...->bi...", matrix, x)


def _psi(options, g):
    kind = options.get("global_affine_type", "SOFTPLUS")
    if kind == "SOFTPLUS":
        return 0.1 * (1 / 0.5) * np.log1p(np.exp(0.5 * g))  # 0.1 * Softplus(beta=0.5)
    if kind == "SIGMOID":
        return 10 / (1 + np.exp(-(g - 2)))
    return np.exp(g)


def _freia_formulas(params, options, x, cs, rev):
    """FrEIA master's AllInOneBlock, forward or reverse, on float64 arrays."""
    channels = x.shape[1]
    len2 = channels // 2
    len1 = channels - len2
    axes = tuple(range(1, x.ndim))
    pixels = math.prod(x.shape[2:])
    w = _matrix(params, options, channels)
    clamp = options.get("affine_clamping", 2.0)
    gin = options.get("gin_block", False)
    psi = np.ones_like(params["global_scale"]) if gin else _psi(options, params["global_scale"])
    offset = params["global_offset"]

    def coefficients(x1):
        conds = [c.reshape(c.shape + (1,) * (x1.ndim - c.ndim)) for c in cs]
        conds = [np.broadcast_to(c, (x1.shape[0], c.shape[1], *x1.shape[2:])) for c in conds]
        a = 0.1 * _subnet(params, np.concatenate([x1, *conds], axis=1))
        raw = a[:, :len2]
        if options.get("soft_clamp") == "tanh":
            s = clamp * np.tanh(raw)
        else:
            s = clamp * np.tanh(raw / clamp)
        if gin:
            s = s - s.mean(axis=axes, keepdims=True)
        return s, a[:, len2:]

    global_log_det = pixels * np.sum(np.log(psi))
    if not rev:
        if options.get("reverse_permutation"):
            x = _channels(w.T, x)
        s, t = coefficients(x[:, :len1])
        u = np.concatenate([x[:, :len1], x[:, len1:] * np.exp(s) + t], axis=1)
        return _channels(w, u * psi + offset), s.sum(axis=axes) + global_log_det
    u = (_channels(w.T, x) - offset) / psi
    s, t = coefficients(u[:, :len1])
    out = np.concatenate([u[:, :len1], (u[:, len1:] - t) * np.exp(-s)], axis=1)
    if options.get("reverse_permutation"):
        out = _channels(w, out)
    return out, -s.sum(axis=axes) - global_log_det


@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("option_name", OPTIONS)
def test_reference_matches_freia_formulas(option_name, shape_name):
    options = OPTIONS[option_name]
    _, tree, params, x, cs = _setup(options, shape_name)
    reference = fc.Reference(tree, params)
    (y,), log_det = reference([x], cs)
    y_want, log_det_want = _freia_formulas(params, options, x, cs, rev=False)
    np.testing.assert_allclose(y, y_want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, log_det_want, rtol=0, atol=ATOL)
    (x_back,), log_det_back = reference([y], cs, rev=True)
    x_want, log_det_back_want = _freia_formulas(params, options, y, cs, rev=True)
    np.testing.assert_allclose(x_back, x_want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det_back, log_det_back_want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-10)
    if options.get("gin_block"):  # GIN blocks preserve volume
        np.testing.assert_allclose(log_det, 0.0, rtol=0, atol=ATOL)
    else:  # and no other block does by accident
        assert np.abs(log_det).min() > 1e-3


@pytest.mark.parametrize("kind", ["SOFTPLUS", "SIGMOID", "EXP"])
@pytest.mark.parametrize("value", [0.3, 1.0, 2.7])
def test_global_affine_init_gives_that_scale(kind, value):
    """A fresh block (zero last subnet layer, zero offset) scales by exactly the init."""
    spec = fc.AllInOneBlock(
        subnet=fc.MLP(hidden=(4,)), global_affine_type=kind, global_affine_init=value
    )
    tree = build_tree(spec, [(4,)])
    params = initial_params(tree, 0)
    x = np.random.default_rng(0).standard_normal((3, 4))
    (y,), log_det = fc.Reference(tree, params)([x])
    np.testing.assert_allclose(y, value * x[:, params["w_perm"]], rtol=1e-12)
    np.testing.assert_allclose(log_det, 4 * np.log(value), rtol=1e-12, atol=1e-12)


# -- 2. FrEIA 0.2 itself ------------------------------------------------------------------


@pytest.fixture
def freia_block():
    """A factory of FrEIA 0.2 AllInOneBlocks in float64 with flowcore's parameters."""
    torch = pytest.importorskip("torch", reason="FrEIA 0.2 as oracle needs torch")
    pytest.importorskip("FrEIA", reason="FrEIA 0.2 as oracle: pip install 'flowcore[freia]'")
    from FrEIA.modules import AllInOneBlock

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # 0.2 builds Householder eyes in the default dtype

    def make(options, shape, cond_shapes, params):
        hidden = params["subnet.0.bias"].shape[0]

        def constructor(c_in, c_out):
            if len(shape) == 1:
                layers = [
                    torch.nn.Linear(c_in, hidden),
                    torch.nn.ReLU(),
                    torch.nn.Linear(hidden, c_out),
                ]
            else:
                layers = [
                    torch.nn.Conv2d(c_in, hidden, 3, padding=1),
                    torch.nn.ReLU(),
                    torch.nn.Conv2d(hidden, c_out, 3, padding=1),
                ]
            return torch.nn.Sequential(*layers)

        kwargs = {k: v for k, v in options.items() if k != "soft_clamp"}
        block = AllInOneBlock(
            [shape], dims_c=list(cond_shapes), subnet_constructor=constructor, **kwargs
        )
        block = block.double()
        state = block.state_dict()
        tensor = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
        ones = (1,) * (len(shape) - 1)
        state["global_scale"] = tensor(params["global_scale"])
        state["global_offset"] = tensor(params["global_offset"])
        if options.get("learned_householder_permutation"):
            state["w_0"] = tensor(params["w_0"])
            state["vk_householder"] = tensor(params["vk_householder"])
        else:
            w = _matrix(params, options, shape[0])
            state["w_perm"] = tensor(w).reshape(*w.shape, *ones)
            state["w_perm_inv"] = tensor(w.T).reshape(*w.shape, *ones)
        for layer, index in (("0", "0"), ("1", "2")):
            state[f"subnet.{index}.weight"] = tensor(params[f"subnet.{layer}.weight"])
            state[f"subnet.{index}.bias"] = tensor(params[f"subnet.{layer}.bias"])
        block.load_state_dict(state)
        return block

    yield make
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("option_name", OPTIONS)
def test_reference_matches_freia_0_2(freia_block, option_name, shape_name):
    import torch

    options = {**OPTIONS[option_name], "soft_clamp": "tanh"}
    _, tree, params, x, cs = _setup(options, shape_name)
    shape, cond_shapes = SHAPES[shape_name]
    # FrEIA 0.2 takes conditions of the input's spatial shape only: broadcast vectors here.
    spatial = shape[1:]
    freia_cs = [
        np.broadcast_to(c.reshape(c.shape + (1,) * len(spatial)), c.shape + spatial)
        if c.ndim == 2 and spatial
        else c
        for c in cs
    ]
    freia_cond_shapes = [tuple(c.shape[1:]) for c in freia_cs]
    block = freia_block(options, shape, freia_cond_shapes, params)
    reference = fc.Reference(tree, params)
    c_torch = [torch.as_tensor(np.ascontiguousarray(c)) for c in freia_cs]
    with torch.no_grad():
        (y,), log_det = block([torch.as_tensor(x)], c=c_torch, rev=False)
        (y_ref,), log_det_ref = reference([x], cs)
        np.testing.assert_allclose(y.numpy(), y_ref, rtol=0, atol=ATOL)
        np.testing.assert_allclose(log_det.numpy(), log_det_ref, rtol=0, atol=ATOL)
        (x_back,), log_det_back = block([torch.as_tensor(y_ref)], c=c_torch, rev=True)
        (x_ref,), log_det_back_ref = reference([y_ref], cs, rev=True)
        np.testing.assert_allclose(x_back.numpy(), x_ref, rtol=0, atol=ATOL)
        np.testing.assert_allclose(log_det_back.numpy(), log_det_back_ref, rtol=0, atol=ATOL)

"""Hypothesis-driven fuzzing of transform configurations and shapes: random options, odd
channel counts and image sides, tiny and large (64 to 384) dimensions, random parameters
(the seed's plus N(0, 0.1^2) noise, as a trained flow's). Each drawn block must invert in
the float64 reference: every value finite, and ``f^-1(f(x))`` within what its conditioning
allows of ``x``,

    |f^-1(f(x)) - x| <= 1e-10 + 100 eps cond(J(x)) (1 + |x|),

``eps`` = 2.2e-16 and ``cond(J)`` the condition number of the sample's Jacobian (central
differences): a correct inverse loses ~cond ulps (random weights make some blocks nearly
singular, cond up to 1e10), a wrong one is off by O(1). The log-dets of both ways sum to 0
within the same bound. Blocks are drawn one at a time: a sequence of correct blocks inverts
by the sequence's own logic (the conformance suite checks it), while its rounding compounds
through each block's sensitivity to the one before, beyond any bound cond(J) gives.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowcore as fc

PERTURBATION = 0.1
EPS = np.finfo(np.float64).eps

widths = st.lists(st.integers(1, 9), min_size=1, max_size=2).map(tuple)
activations = st.sampled_from(["relu", "tanh", "leaky_relu"])
subnets = st.builds(
    lambda h, a: fc.MLP(hidden=h, activation=a, zero_init_last=False), widths, activations
)


@st.composite
def all_in_one(draw: st.DrawFn) -> fc.Transform:
    return fc.AllInOneBlock(
        subnet=draw(subnets),
        affine_clamping=draw(st.floats(0.1, 5.0)),
        gin_block=draw(st.booleans()),
        global_affine_init=draw(st.floats(0.2, 3.0)),
        global_affine_type=draw(st.sampled_from(["SIGMOID", "SOFTPLUS", "EXP"])),
        permute_soft=draw(st.booleans()),
        learned_householder_permutation=draw(st.integers(0, 3)),
        reverse_permutation=draw(st.booleans()),
    )


@st.composite
def coupling(draw: st.DrawFn) -> fc.Transform:
    kind = draw(st.sampled_from(["NICE", "RNVP", "GLOW", "GIN"]))
    split = draw(st.sampled_from([0.5, 0.3, 0.7]))
    if kind == "NICE":
        return fc.NICECouplingBlock(subnet=draw(subnets), split_len=split)
    block = {
        "RNVP": fc.RNVPCouplingBlock,
        "GLOW": fc.GLOWCouplingBlock,
        "GIN": fc.GINCouplingBlock,
    }
    return block[kind](subnet=draw(subnets), split_len=split, clamp=draw(st.floats(0.2, 5.0)))


@st.composite
def spline(draw: st.DrawFn) -> fc.Transform:
    bound = draw(st.floats(1.0, 5.0))
    return fc.RationalQuadraticSpline(
        subnet=draw(subnets),
        bins=draw(st.integers(2, 9)),
        default_domain=(-bound, bound, -bound, bound),
        identity_tails=draw(st.booleans()),
    )


simple = st.sampled_from([fc.ActNorm(data_init=False), fc.PermuteRandom(), fc.InvertibleLinear()])
blocks = st.one_of(all_in_one(), coupling(), spline(), simple)


conv_subnets = st.builds(
    lambda h, k, a: fc.ConvNet(hidden=h, kernel_size=k, activation=a, zero_init_last=False),
    st.lists(st.integers(1, 5), min_size=1, max_size=2).map(tuple),
    st.sampled_from([1, 3]),
    activations,
)


@st.composite
def image_block(draw: st.DrawFn, even: bool) -> fc.Transform:
    """A block on (C, H, W) images, C >= 2; on even H and W, a downsampling may come first
    (it is exact, so the pair inverts as well as the block after it)."""
    subnet = draw(conv_subnets)
    kinds = {
        "all_in_one": lambda: fc.AllInOneBlock(
            subnet=subnet,
            affine_clamping=draw(st.floats(0.1, 5.0)),
            gin_block=draw(st.booleans()),
            permute_soft=draw(st.booleans()),
        ),
        "glow": lambda: fc.GLOWCouplingBlock(subnet=subnet, clamp=draw(st.floats(0.2, 5.0))),
        "rnvp": lambda: fc.RNVPCouplingBlock(
            subnet=subnet, split_len=draw(st.sampled_from([0.3, 0.5]))
        ),
        "nice": lambda: fc.NICECouplingBlock(subnet=subnet),
        "conv1x1": fc.InvertibleConv1x1,
        "actnorm": lambda: fc.ActNorm(data_init=False),
        "permute": fc.PermuteRandom,
    }
    block = kinds[draw(st.sampled_from(list(kinds)))]()
    if even and draw(st.booleans()):
        down = draw(st.sampled_from([fc.IRevNetDownsampling(), fc.HaarDownsampling()]))
        return fc.SequenceINN(down, block)
    return block


@st.composite
def image_shapes(draw: st.DrawFn) -> tuple[tuple[int, int, int], bool]:
    even = draw(st.booleans())
    side = st.sampled_from([2, 4, 6]) if even else st.integers(1, 7)
    return (draw(st.integers(2, 5)), draw(side), draw(side)), even


def _perturbed(tree: fc.Node, seed: int) -> dict[str, np.ndarray]:
    params = fc.initial_params(tree, seed)
    rng = np.random.default_rng(seed)
    for name, spec in tree.param_specs().items():
        if spec.trainable:
            params[name] = params[name] + PERTURBATION * rng.standard_normal(spec.shape)
    return params


def _assert_inverts(
    spec: fc.Transform, shape: tuple[int, ...], batch: int, scale: float, seed: int
):
    tree = fc.build_tree(spec, [shape])
    ref = fc.Reference(tree, _perturbed(tree, seed))
    x = scale * np.random.default_rng(seed + 1).standard_normal((batch, *shape))
    (z,), log_det = ref([x])
    (back,), log_det_back = ref([z], rev=True)
    assert np.isfinite(z).all() and np.isfinite(log_det).all(), tree.spec
    flat = x.reshape(batch, -1)
    allowed = 1e-10 + 100 * EPS * _condition(ref, x) * (1 + np.abs(flat).max(axis=1))
    error = np.abs(back - x).reshape(batch, -1).max(axis=1)
    assert (error <= allowed).all(), (error, allowed, tree.spec)
    assert (np.abs(log_det + log_det_back) <= allowed * (1 + np.abs(log_det))).all()


FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
scales = st.sampled_from([0.1, 1.0, 2.0])
seeds = st.integers(0, 2**16)


@settings(FUZZ, max_examples=300)
@given(spec=blocks, dim=st.integers(2, 17), batch=st.integers(1, 5), scale=scales, seed=seeds)
def test_every_drawn_block_inverts(spec, dim, batch, scale, seed):
    _assert_inverts(spec, (dim,), batch, scale, seed)


@settings(FUZZ, max_examples=25)
@given(
    spec=st.one_of(all_in_one(), coupling(), simple),
    dim=st.integers(64, 384),
    scale=scales,
    seed=seeds,
)
def test_every_drawn_block_inverts_in_large_dimensions(spec, dim, scale, seed):
    """Splines are left out here: in large dimensions the fuzz found two failures of the
    identity-tail spline, kept as strict xfails below until they are fixed."""
    _assert_inverts(spec, (dim,), 2, scale, seed)


def _identity_tail_spline(bound: float) -> fc.Transform:
    return fc.RationalQuadraticSpline(
        subnet=fc.MLP(hidden=(4,), zero_init_last=False),
        bins=5,
        min_bin_sizes=(0.1, 0.1),
        default_domain=(-bound, bound, -bound, bound),
        identity_tails=True,
    )


@pytest.mark.xfail(
    strict=True,
    reason="found by the large-dimension fuzz: with learned domains and identity tails an "
    "input a little outside the default domain does not invert (error 2.1 at D=337), and the "
    "inverse's discriminant b^2 - 4ac rounds below 0 (NaN); not fixed yet",
)
@pytest.mark.parametrize("bound", [3.0, 4.0])
def test_identity_tail_splines_invert_in_large_dimensions(bound):
    with np.errstate(invalid="ignore"):
        _assert_inverts(_identity_tail_spline(bound), (337,), 2, 2.0, 128)


@settings(FUZZ, max_examples=150)
@given(data=st.data(), shape_even=image_shapes(), batch=st.integers(1, 3), seed=seeds)
def test_every_drawn_image_block_inverts(data, shape_even, batch, seed):
    """Odd channel counts, odd and unequal sides down to 1x1, 1x1 and 3x3 kernels."""
    shape, even = shape_even
    _assert_inverts(data.draw(image_block(even)), shape, batch, 1.0, seed)


def _condition(ref: fc.Reference, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """cond(J) per sample, J by central differences of every element in one batched call
    (samples do not interact: ActNorm's data initialisation is off)."""
    batch, dim = x.shape[0], int(np.prod(x.shape[1:]))
    steps = h * np.eye(dim).reshape((dim, 1, *x.shape[1:]))
    probes = np.concatenate([x + steps, x - steps]).reshape((2 * dim * batch, *x.shape[1:]))
    out = ref([probes])[0][0].reshape((2, dim, batch, dim))
    jacobian = (out[0] - out[1]).transpose(1, 2, 0) / (2 * h)  # (batch, out, in)
    return np.linalg.cond(jacobian)


def test_a_nearly_flat_spline_bin_gives_a_finite_inverse_log_det():
    """Found by the fuzz over sequences: the inverse's theta came out a rounding error past
    1 next to a knot of derivative ~1e-12, and the log-det took the log of a negative
    number. theta is clamped into [0, 1] now."""
    mlp = fc.MLP(hidden=(1,), zero_init_last=False)
    tree = fc.build_tree(
        fc.SequenceINN(
            fc.AllInOneBlock(subnet=mlp, affine_clamping=1.0, global_affine_type="SIGMOID"),
            fc.RNVPCouplingBlock(subnet=mlp, clamp=5.0),
            fc.RationalQuadraticSpline(
                subnet=mlp, bins=2, default_domain=(-1.0, 1.0, -1.0, 1.0), identity_tails=True
            ),
        ),
        [(16,)],
    )
    ref = fc.Reference(tree, _perturbed(tree, 0))
    x = np.random.default_rng(1).standard_normal((1, 16))
    with np.errstate(all="raise"):
        (z,), _ = ref([x])
        (back,), log_det_back = ref([z], rev=True)
    assert np.isfinite(back).all() and np.isfinite(log_det_back).all()

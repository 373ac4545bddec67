"""Hypothesis-driven fuzzing of transform configurations and shapes: random options, odd
channel counts, tiny and larger dimensions, random parameters (the seed's plus N(0, 0.1^2)
noise, as a trained flow's). Each drawn block must invert in the float64 reference: every
value finite, and ``f^-1(f(x))`` within what its conditioning allows of ``x``,

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


def _perturbed(tree: fc.Node, seed: int) -> dict[str, np.ndarray]:
    params = fc.initial_params(tree, seed)
    rng = np.random.default_rng(seed)
    for name, spec in tree.param_specs().items():
        if spec.trainable:
            params[name] = params[name] + PERTURBATION * rng.standard_normal(spec.shape)
    return params


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=blocks,
    dim=st.integers(2, 17),
    batch=st.integers(1, 5),
    scale=st.sampled_from([0.1, 1.0, 2.0]),
    seed=st.integers(0, 2**16),
)
def test_every_drawn_block_inverts(spec, dim, batch, scale, seed):
    tree = fc.build_tree(spec, [(dim,)])
    ref = fc.Reference(tree, _perturbed(tree, seed))
    x = scale * np.random.default_rng(seed + 1).standard_normal((batch, dim))
    (z,), log_det = ref([x])
    (back,), log_det_back = ref([z], rev=True)
    assert np.isfinite(z).all() and np.isfinite(log_det).all(), tree.spec
    allowed = 1e-10 + 100 * EPS * _condition(ref, x) * (1 + np.abs(x).max(axis=1))
    error = np.abs(back - x).max(axis=1)
    assert (error <= allowed).all(), (error, allowed, tree.spec)
    assert (np.abs(log_det + log_det_back) <= allowed * (1 + np.abs(log_det))).all()


def _condition(ref: fc.Reference, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """cond(J) per sample, J by central differences (an element of every sample at once:
    samples do not interact)."""
    columns = []
    for j in range(x.shape[1]):
        step = np.zeros_like(x)
        step[:, j] = h
        columns.append((ref([x + step])[0][0] - ref([x - step])[0][0]) / (2 * h))
    return np.linalg.cond(np.stack(columns, axis=-1))


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

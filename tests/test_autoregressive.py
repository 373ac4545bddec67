"""The autoregressive family: MADE and MaskedAutoregressive (MAF, NSF-AR, IAF).

- The autoregressive property: the Jacobian dy/dx (torch autograd, float64) is triangular in
  the MADE's ordering, for every ordering, transformer and direction, with conditions; its
  log|det| is the returned log-det.
- nflows 0.14 as the oracle, float64, weights copied in: MaskedAffineAutoregressiveTransform
  and MaskedPiecewiseRationalQuadraticAutoregressiveTransform (``tails="linear"``) with
  feed-forward blocks (``use_residual_blocks=False``), no context; the degrees and masks
  equal nflows' buffers, and forward, inverse and log-dets agree to 1e-12.
- Round trips, IAF as the inverse of MAF, ``jac=False``, the seeded random ordering, refused
  parameter values, bad options and shapes, and the inverse traced under ``jax.jit``.
"""

from __future__ import annotations

import numpy as np
import pytest
from selected_backends import subject

import flowcore as fc
from flowcore.errors import FlowError, ShapeError
from flowcore.namespace import numpy_namespace
from flowcore.options import OptionError
from flowcore.serialize import spec_from_config, spec_to_config
from flowcore.transforms.autoregressive import MADE, MaskedAutoregressive, made_degrees
from flowcore.tree import build_tree, initial_params

ATOL = 1e-12


def _reference(spec, shape, conds=(), seed=0, params=None):
    tree = build_tree(spec, [shape], conds)
    values = initial_params(tree, seed) if params is None else params
    return tree, values, fc.Reference(tree, values)


def _perturbed(tree, seed=0, scale=0.5):
    params = initial_params(tree, seed)
    rng = np.random.default_rng([seed, 9])
    for name, p in tree.param_specs().items():
        if p.trainable:
            params[name] = params[name] + scale * rng.standard_normal(p.shape)
    return params


def _run(reference, x, cs=(), rev=False, jac=True):
    (y,), log_det = reference([x], list(cs), rev=rev, jac=jac)
    return y, log_det


SPECS = {
    "maf": lambda order: MaskedAutoregressive(MADE(hidden=(7, 7), order=order, seed=None)),
    "maf_exp": lambda order: MaskedAutoregressive(
        MADE(hidden=(6,), order=order, activation="tanh"), affine_scale="exp", clamp=1.5
    ),
    "nsf": lambda order: MaskedAutoregressive(
        MADE(hidden=(8,), order=order), transformer="rational_quadratic", bins=5, tail_bound=2.5
    ),
    "iaf": lambda order: MaskedAutoregressive(
        MADE(hidden=(6,), order=order), inverse_autoregressive=True
    ),
}


# -- the autoregressive property ----------------------------------------------------------


@pytest.mark.parametrize("kind", list(SPECS))
@pytest.mark.parametrize("order", ["natural", "reversed", "random"])
@pytest.mark.parametrize("rev", [False, True])
def test_jacobian_is_triangular_in_the_ordering(kind, order, rev):
    torch = pytest.importorskip("torch", reason="autodiff Jacobians with the torch backend")
    spec = SPECS[kind](order)
    features = 5
    flow = fc.build(spec, (features,), [(2,)], backend="torch", seed=1, dtype="float64")
    tree = fc.tree_of(flow)
    fc.set_params(flow, _perturbed(tree, seed=1))
    pi = fc.get_params(flow)["subnet.order"]
    rng = np.random.default_rng(3)
    seen = np.zeros((features, features), bool)
    for _ in range(3):
        x = torch.as_tensor(rng.standard_normal((1, features)))
        c = torch.as_tensor(rng.standard_normal((1, 2)))
        jac = torch.autograd.functional.jacobian(lambda v, c=c: flow(v, c, rev=rev)[0][0], x)[:, 0]
        jac = jac.numpy()
        later = pi[None, :] > pi[:, None]  # (i, j): j comes after i
        np.testing.assert_array_equal(jac[later], 0.0)
        assert np.all(np.abs(np.diag(jac)) > 0)
        seen |= jac != 0
        log_det = flow(x, c, rev=rev)[1].detach().numpy()
        np.testing.assert_allclose(log_det, np.linalg.slogdet(jac)[1], rtol=0, atol=1e-10)
    earlier = pi[None, :] < pi[:, None]
    assert seen[earlier].any()  # dependencies exist (dead relu units and tails hide some)


def test_made_output_block_depends_only_on_earlier_inputs_and_all_conditions():
    pytest.importorskip("torch", reason="autodiff Jacobians with the torch backend")
    spec = MaskedAutoregressive(MADE(hidden=(9, 9), order="random", seed=4), bins=3)
    flow = fc.build(spec, (4,), [(3,)], backend="torch", seed=0, dtype="float64")
    params = fc.get_params(flow)
    pi = params["subnet.order"]
    tree = fc.tree_of(flow).children["subnet"]
    xp = numpy_namespace()
    local = {p.name: params[f"subnet.{p.name}"] for p in tree.params}
    masks = tree.spec.masks(xp, local)
    reach = masks[0]
    for m in masks[1:]:
        reach = (m @ reach > 0).astype(float)
    # output o (variable o // 2) reaches input j only if pi[j] < pi[o // 2]; conditions always
    for o in range(reach.shape[0]):
        i = o // 2
        allowed = np.concatenate([pi < pi[i], np.ones(3, bool)])
        assert not np.any(reach[o][~allowed]), o
        assert np.all(reach[o][4:] > 0)


# -- nflows as the oracle -----------------------------------------------------------------


@pytest.fixture
def nflows_f64():
    torch = pytest.importorskip("torch", reason="nflows as oracle needs torch")
    pytest.importorskip("nflows", reason="nflows 0.14 as oracle: pip install nflows")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(previous)


def _nflows_layers(made):
    """nflows' MADE layers in order: initial, feed-forward blocks, final."""
    return [made.initial_layer, *[b.linear for b in made.blocks], made.final_layer]


def _copy_from_nflows(transform, spec, features):
    tree = build_tree(spec, [(features,)])
    params = initial_params(tree, 0)
    layers = _nflows_layers(transform.autoregressive_net)
    for k, layer in enumerate(layers):
        params[f"subnet.weight_{k}"] = layer.weight.detach().numpy().copy()
        params[f"subnet.bias_{k}"] = layer.bias.detach().numpy().copy()
    # the degrees and masks are nflows' own
    local = {p.name: params[f"subnet.{p.name}"] for p in tree.children["subnet"].params}
    masks = tree.children["subnet"].spec.masks(numpy_namespace(), local)
    for k, (layer, mask) in enumerate(zip(layers, masks, strict=True)):
        np.testing.assert_array_equal(mask, layer.mask.numpy(), err_msg=f"mask {k}")
        if k < len(layers) - 1:
            np.testing.assert_array_equal(
                local.get(f"degrees_{k + 1}"), layer.degrees.numpy(), err_msg=f"degrees {k}"
            )
    return tree, params


def _agree_with_nflows(torch, transform, spec, features, scale=1.0, atol=ATOL):
    tree, params = _copy_from_nflows(transform, spec, features)
    reference = fc.Reference(tree, params)
    x = scale * np.random.default_rng(5).standard_normal((7, features))
    with torch.no_grad():
        y_want, ld_want = (v.numpy() for v in transform(torch.as_tensor(x)))
        x_want, ld_back_want = (v.numpy() for v in transform.inverse(torch.as_tensor(y_want)))
    y, log_det = _run(reference, x)
    np.testing.assert_allclose(y, y_want, rtol=0, atol=atol)
    np.testing.assert_allclose(log_det, ld_want, rtol=0, atol=atol)
    x_back, log_det_back = _run(reference, y_want, rev=True)
    np.testing.assert_allclose(x_back, x_want, rtol=0, atol=atol)
    np.testing.assert_allclose(log_det_back, ld_back_want, rtol=0, atol=atol)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("features", "hidden", "blocks"), [(5, 8, 1), (3, 4, 0), (1, 3, 1)])
def test_maf_matches_nflows(nflows_f64, features, hidden, blocks):
    from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform

    torch = nflows_f64
    torch.manual_seed(features)
    transform = MaskedAffineAutoregressiveTransform(
        features=features, hidden_features=hidden, num_blocks=blocks, use_residual_blocks=False
    )
    spec = MaskedAutoregressive(MADE(hidden=(hidden,) * (blocks + 1)))
    _agree_with_nflows(torch, transform, spec, features)


@pytest.mark.parametrize(("features", "bins", "bound"), [(4, 5, 2.0), (3, 1, 1.0)])
def test_nsf_ar_matches_nflows(nflows_f64, features, bins, bound):
    from nflows.transforms.autoregressive import (
        MaskedPiecewiseRationalQuadraticAutoregressiveTransform as NflowsRQ,
    )

    torch = nflows_f64
    torch.manual_seed(10 + bins)
    transform = NflowsRQ(
        features=features,
        hidden_features=6,
        num_bins=bins,
        tails="linear",
        tail_bound=bound,
        num_blocks=1,
        use_residual_blocks=False,
    )
    spec = MaskedAutoregressive(
        MADE(hidden=(6, 6)), transformer="rational_quadratic", bins=bins, tail_bound=bound
    )
    # inputs of scale 1.5 visit the spline and both tails
    _agree_with_nflows(torch, transform, spec, features, scale=1.5, atol=1e-11)


# -- directions, round trips, options -----------------------------------------------------


@pytest.mark.parametrize("kind", list(SPECS))
def test_round_trip_with_conditions(kind):
    spec = SPECS[kind]("random")
    tree = build_tree(spec, [(6,)], [(2,), (1,)])
    reference = fc.Reference(tree, _perturbed(tree))
    rng = np.random.default_rng(0)
    x = 1.5 * rng.standard_normal((8, 6))
    cs = [rng.standard_normal((8, 2)), rng.standard_normal((8, 1))]
    y, log_det = _run(reference, x, cs)
    x_back, log_det_back = _run(reference, y, cs, rev=True)
    # a spline's inverse solves a quadratic: in a bin of slope near min_derivative an error
    # of an ulp in y is one of ~1e3 ulps in x, passed on to the later variables
    atol = 1e-8 if kind == "nsf" else 1e-10
    np.testing.assert_allclose(x_back, x, rtol=0, atol=atol)
    np.testing.assert_allclose(log_det + log_det_back, 0.0, rtol=0, atol=atol)
    y_nojac, zeros = _run(reference, x, cs, jac=False)
    np.testing.assert_array_equal(y_nojac, y)
    np.testing.assert_array_equal(zeros, 0.0)
    # the conditions matter
    other = _run(reference, x, [cs[0] + 1.0, cs[1]])[0]
    assert np.abs(other - y).max() > 1e-3


@pytest.mark.parametrize("transformer", ["affine", "rational_quadratic"])
def test_iaf_is_the_inverse_of_maf(transformer):
    made = MADE(hidden=(7,), order="reversed")
    maf = MaskedAutoregressive(made, transformer=transformer, bins=4)
    iaf = MaskedAutoregressive(made, transformer=transformer, bins=4, inverse_autoregressive=True)
    tree = build_tree(maf, [(4,)], [(3,)])
    params = _perturbed(tree)
    a = fc.Reference(tree, params)
    b = fc.Reference(build_tree(iaf, [(4,)], [(3,)]), params)
    rng = np.random.default_rng(1)
    x, c = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    for rev in (False, True):
        y, log_det = _run(b, x, [c], rev=rev)
        y_want, log_det_want = _run(a, x, [c], rev=not rev)
        np.testing.assert_allclose(y, y_want, rtol=0, atol=ATOL)
        np.testing.assert_allclose(log_det, log_det_want, rtol=0, atol=ATOL)


def test_exp_scale_is_soft_clamped():
    spec = MaskedAutoregressive(MADE(hidden=(3,)), affine_scale="exp", clamp=0.5)
    tree = build_tree(spec, [(2,)])
    params = initial_params(tree, 0)
    params["subnet.bias_1"] = np.array([50.0, 0.0, -50.0, 0.0])  # a of both variables
    y, log_det = _run(fc.Reference(tree, params), np.zeros((1, 2)) + 1.0)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-12)  # +0.5 and -0.5 (nearly)
    assert 0.0 < np.exp(-0.5) - 1e-9 < y[0, 1] < np.exp(0.5) + 1e-9


def test_random_order_is_seeded():
    def order(made, seed):
        tree = build_tree(MaskedAutoregressive(made), [(9,)])
        return initial_params(tree, seed)["subnet.order"]

    seeded = MADE(hidden=(9,), order="random", seed=7)
    np.testing.assert_array_equal(order(seeded, 0), order(seeded, 1))
    np.testing.assert_array_equal(order(seeded, 0), np.random.default_rng(7).permutation(9))
    drawn = MADE(hidden=(9,), order="random")
    assert not np.array_equal(order(drawn, 0), order(drawn, 1))
    np.testing.assert_array_equal(
        order(MADE(hidden=(9,), order="reversed"), 0), np.arange(9)[::-1]
    )
    ins, hidden, outs = made_degrees(np.arange(4), (5,), 2)
    np.testing.assert_array_equal(hidden[0], [1, 2, 3, 1, 2])
    np.testing.assert_array_equal(outs, [1, 1, 2, 2, 3, 3, 4, 4])


def test_parameters_and_serialisation():
    spec = MaskedAutoregressive(MADE(hidden=(5, 4), order="random", seed=2), bins=3)
    tree = build_tree(spec, [(4,)], [(2,)])
    specs = tree.param_specs()
    assert specs["subnet.weight_0"].shape == (5, 6)  # D + K inputs
    assert specs["subnet.weight_2"].shape == (8, 4)  # D * 2 outputs
    assert specs["subnet.order"].constraint == "permutation"
    assert not specs["subnet.degrees_1"].trainable
    again = spec_from_config(spec_to_config(spec))
    assert again == spec
    nsf = MaskedAutoregressive(transformer="rational_quadratic", bins=4)
    assert build_tree(nsf, [(3,)]).param_specs()["subnet.weight_2"].shape == (3 * 11, 64)


def test_set_params_refuses_an_order_that_is_not_a_permutation():
    pytest.importorskip("torch", reason="set_params on a torch model")
    flow = fc.build(MaskedAutoregressive(MADE(hidden=(4,))), (3,), backend="torch")
    params = fc.get_params(flow)
    with pytest.raises(FlowError, match="order"):
        fc.set_params(flow, {**params, "subnet.order": np.array([0, 0, 2])})


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: MaskedAutoregressive(bins=0), "bins"),
        (lambda: MaskedAutoregressive(transformer="cubic"), "transformer"),
        (lambda: MaskedAutoregressive(subnet=fc.MLP()), "subnet"),
        (lambda: MaskedAutoregressive(affine_scale="sigmoid"), "affine_scale"),
        (lambda: MaskedAutoregressive(bins=10, min_bin_width=0.1), "min_bin_width"),
        (lambda: MaskedAutoregressive(tail_bound=0.0), "tail_bound"),
        (lambda: MADE(order="random", seed=-1), "seed"),
        (lambda: MADE(order="natural", seed=3), "seed"),
        (lambda: MADE(order="sorted"), "order"),
        (lambda: MADE(hidden=(0,)), "hidden"),
    ],
)
def test_bad_options(make, match):
    with pytest.raises(OptionError, match=match) as info:
        make()
    assert "MaskedAutoregressive" in str(info.value) or "MADE" in str(info.value)


def test_bad_shapes():
    with pytest.raises(OptionError, match=r"hidden.*D - 1 = 4.*got \(8, 3\)"):
        build_tree(MaskedAutoregressive(MADE(hidden=(8, 3))), [(5,)])
    with pytest.raises(ShapeError, match="vector"):
        build_tree(MaskedAutoregressive(MADE(hidden=(4,))), [(2, 3, 3)])
    with pytest.raises(ShapeError, match="condition 0"):
        build_tree(MaskedAutoregressive(MADE(hidden=(4,))), [(3,)], [(2, 3, 3)])


# -- tracing ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["maf", "nsf", "iaf"])
@subject("jax")
def test_sequential_direction_traces_under_jax_jit(kind):
    jax = pytest.importorskip("jax", reason="jit with the jax backend")
    import flowcore.backends.jax as fj

    spec = SPECS[kind]("random")
    apply, params = fj.init(spec, (4,), [(2,)], seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    c = rng.standard_normal((6, 2)).astype(np.float32)
    jitted = jax.jit(apply, static_argnames=("rev",))
    y, log_det = jitted(params, x, c)
    x_back, log_det_back = jitted(params, y, c, rev=True)
    np.testing.assert_allclose(np.asarray(x_back), x, rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(log_det + log_det_back), 0.0, rtol=0, atol=1e-4)
    eager = apply(params, y, c, rev=True)[0]
    np.testing.assert_allclose(np.asarray(x_back), np.asarray(eager), rtol=1e-5, atol=1e-5)


# -- zuko's MaskedMLP: the same degrees, with and without conditions ---------------------


@pytest.mark.parametrize("order", ["natural", "reversed"])
@pytest.mark.parametrize("context", [0, 3])
def test_made_matches_zukos_masked_mlp(order, context):
    """zuko's MADE derives its hidden units from the outputs' dependency sets; for the
    natural and reversed orderings these are the degrees flowcore assigns (a random
    ordering gives zuko's units in another order), and with conditions both have units
    that see the conditions only, which feed the first variable."""
    torch = pytest.importorskip("torch", reason="zuko as oracle needs torch")
    pytest.importorskip("zuko", reason="zuko as oracle: pip install zuko")
    from zuko.flows.autoregressive import MaskedAutoregressiveTransform

    features, hidden = 4, (5, 6)
    pi = np.arange(features) if order == "natural" else np.arange(features)[::-1].copy()
    torch.manual_seed(0)
    zuko_maf = MaskedAutoregressiveTransform(
        features, context, order=torch.as_tensor(pi), hidden_features=hidden
    ).double()
    layers = [m for m in zuko_maf.hyper if hasattr(m, "mask")]
    spec = MaskedAutoregressive(MADE(hidden=hidden, order=order))
    conds = [(context,)] if context else []
    tree = build_tree(spec, [(features,)], conds)
    made = tree.children["subnet"]
    params = initial_params(tree, 0)
    local = {p.name: params[f"subnet.{p.name}"] for p in made.params}
    for k, layer in enumerate(layers):
        local[f"weight_{k}"] = layer.weight.detach().numpy().copy()
        local[f"bias_{k}"] = layer.bias.detach().numpy().copy()
    xp = numpy_namespace()
    for k, (layer, mask) in enumerate(zip(layers, made.spec.masks(xp, local), strict=True)):
        np.testing.assert_array_equal(mask, layer.mask.numpy().astype(float), err_msg=str(k))
    rng = np.random.default_rng(0)
    u = rng.standard_normal((5, features + context))
    want = zuko_maf.hyper(torch.as_tensor(u)).detach().numpy()
    np.testing.assert_allclose(made.spec.apply(xp, local, {}, u), want, rtol=0, atol=ATOL)

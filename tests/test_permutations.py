"""The permutations and linear maps family against FrEIA 0.2 and dense NumPy linear algebra.

- FrEIA 0.2 in float64 with its weights copied into flowcore's parameters (PermuteRandom,
  FixedLinearTransform, Fixed1x1Conv, HouseholderPerm, OrthogonalTransform): forward,
  inverse and log-dets of the float64 reference agree to 1e-12.
- The LU-parametrised maps (FrEIA has none) against the dense ``W = P L (U + diag s)``,
  ``slogdet(W)`` and ``inv(W)`` in NumPy, and their initialiser against ``scipy.linalg.lu``.
- Bad options and shapes raise FlowErrors naming the spec and the option; index buffers
  that are not permutations are refused by ``set_params``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import flowcore as fc
from flowcore import initializers as init
from flowcore.options import OptionError
from flowcore.serialize import spec_from_config, spec_to_config
from flowcore.transforms import permutations as perms
from flowcore.transforms.permutations import (
    Fixed1x1Conv,
    FixedLinearTransform,
    HouseholderPerm,
    InvertibleConv1x1,
    InvertibleLinear,
    OrthogonalTransform,
    PermuteRandom,
    orthogonal_correction,
)
from flowcore.tree import build_tree, initial_params

ATOL = 1e-12


def _matrix(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((size, size)) + 2.0 * np.eye(size)


def _reference(spec, shape, conds=(), params=None, seed=0):
    tree = build_tree(spec, [shape], conds)
    values = initial_params(tree, seed) if params is None else params
    return tree, values, fc.Reference(tree, values)


def _run(reference, x, cs=(), rev=False):
    (y,), log_det = reference([x], list(cs), rev=rev)
    return y, log_det


def _round_trip(reference, x, cs=()):
    y, log_det = _run(reference, x, cs)
    x_back, log_det_back = _run(reference, y, cs, rev=True)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-10)
    np.testing.assert_allclose(log_det + log_det_back, 0.0, rtol=0, atol=ATOL)
    return y, log_det


def _jacobian_log_det(reference, x0, cs=()):
    """log|det| of the Jacobian at one sample, by central differences."""
    flat = x0.ravel()
    step = 1e-6
    columns = []
    for e in np.eye(flat.size):
        plus = _run(reference, (flat + step * e).reshape(1, *x0.shape), [c[:1] for c in cs])[0]
        minus = _run(reference, (flat - step * e).reshape(1, *x0.shape), [c[:1] for c in cs])[0]
        columns.append((plus - minus).ravel() / (2 * step))
    return np.linalg.slogdet(np.stack(columns, axis=1))[1]


# -- FrEIA 0.2 as the oracle (the `freia` fixture: conftest.py) ---------------------------


def _freia_call(module, x, cs=(), rev=False):
    import torch

    c = [torch.as_tensor(np.ascontiguousarray(v)) for v in cs]
    with torch.no_grad():
        kwargs = {"c": c} if c else {}
        (y,), log_det = module([torch.as_tensor(x)], rev=rev, **kwargs)
    log_det = log_det.numpy() if hasattr(log_det, "numpy") else np.asarray(log_det)
    return y.numpy(), np.broadcast_to(log_det, (x.shape[0],))


def _agree_with_freia(module, reference, x, cs=()):
    y_want, log_det_want = _freia_call(module, x, cs)
    y, log_det = _round_trip(reference, x, cs)
    np.testing.assert_allclose(y, y_want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, log_det_want, rtol=0, atol=ATOL)
    x_want, log_det_back_want = _freia_call(module, y_want, cs, rev=True)
    x_back, log_det_back = _run(reference, y_want, cs, rev=True)
    np.testing.assert_allclose(x_back, x_want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det_back, log_det_back_want, rtol=0, atol=ATOL)


@pytest.mark.parametrize("shape", [(6,), (4, 3, 5)])
@pytest.mark.parametrize("seed", [None, 11])
def test_permute_random_matches_freia(freia, shape, seed):
    module = freia.PermuteRandom([shape], seed=seed)
    spec = PermuteRandom(seed=seed)
    tree, params, _ = _reference(spec, shape)
    if seed is not None:  # the same seed gives FrEIA's permutation, whatever the build seed
        np.testing.assert_array_equal(params["perm"], module.perm.numpy())
    params = {"perm": module.perm.numpy().copy()}
    reference = fc.Reference(tree, params)
    x = np.random.default_rng(1).standard_normal((3, *shape))
    _agree_with_freia(module, reference, x)


def test_permute_random_seed_is_independent_of_the_build_seed():
    a = _reference(PermuteRandom(seed=5), (9,), seed=0)[1]["perm"]
    b = _reference(PermuteRandom(seed=5), (9,), seed=1)[1]["perm"]
    c = _reference(PermuteRandom(), (9,), seed=0)[1]["perm"]
    d = _reference(PermuteRandom(), (9,), seed=1)[1]["perm"]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, np.random.RandomState(5).permutation(9))
    assert not np.array_equal(c, d)
    assert sorted(c) == list(range(9))


@pytest.mark.parametrize("with_bias", [False, True])
def test_fixed_linear_transform_matches_freia(freia, with_bias):
    import torch

    m = _matrix(5, 1)
    b = np.linspace(-1, 2, 5) if with_bias else None
    module = freia.FixedLinearTransform(
        [(5,)], M=torch.as_tensor(m), b=None if b is None else torch.as_tensor(b)
    )
    spec = FixedLinearTransform(m, b=b)
    _, params, reference = _reference(spec, (5,))
    np.testing.assert_array_equal(params["M"], m)
    np.testing.assert_allclose(params["M_inv"] @ m, np.eye(5), atol=ATOL)
    x = np.random.default_rng(2).standard_normal((4, 5))
    _agree_with_freia(module, reference, x)
    y, log_det = _run(reference, x)
    np.testing.assert_allclose(y, x @ m.T + (0 if b is None else b), rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, np.linalg.slogdet(m)[1], rtol=0, atol=ATOL)


def test_fixed_1x1_conv_is_freias_with_the_transposed_matrix(freia):
    """FrEIA 0.2's Fixed1x1Conv(M) convolves with M.t(), i.e. computes y = M^T x; flowcore's
    Fixed1x1Conv(M) computes y = M x, so Fixed1x1Conv(M.T) gives FrEIA's numbers."""
    import torch

    m = _matrix(3, 2)
    shape = (3, 4, 5)
    x = np.random.default_rng(3).standard_normal((2, *shape))
    module = freia.Fixed1x1Conv([shape], M=torch.as_tensor(m))
    _, _, reference = _reference(Fixed1x1Conv(m.T), shape)
    _agree_with_freia(module, reference, x)
    _, _, ours = _reference(Fixed1x1Conv(m), shape)
    y, log_det = _round_trip(ours, x)
    np.testing.assert_allclose(y, np.einsum("ij,bjhw->bihw", m, x), rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, 20 * np.linalg.slogdet(m)[1], rtol=0, atol=1e-11)
    np.testing.assert_allclose(log_det, _jacobian_log_det(ours, x[0]), atol=1e-6)


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("n_reflections", [2, 3, 7])
def test_householder_perm_matches_freia(freia, n_reflections, fixed):
    width = 5
    module = freia.HouseholderPerm([(width,)], n_reflections=n_reflections, fixed=fixed)
    tree = build_tree(HouseholderPerm(n_reflections, fixed=fixed), [(width,)])
    p = tree.param_specs()["Vs"]
    assert p.shape == (n_reflections, width) and p.trainable is not fixed
    reference = fc.Reference(tree, {"Vs": module.Vs.detach().numpy().copy()})
    x = np.random.default_rng(4).standard_normal((4, width))
    _agree_with_freia(module, reference, x)


def test_householder_perm_conditional_matches_freia(freia):
    """FrEIA 0.2's conditional HouseholderPerm crashes (``x.mm`` of a batch of matrices), so
    its per-sample matrices ``_fast_h(c.reshape(-1, C, K).transpose(-1, -2))`` are applied
    here as its forward means to: ``y_b = x_b W_b``, ``x_b = y_b W_b^T``."""
    import torch
    from FrEIA.modules.orthogonal import _fast_h

    width, k = 4, 3
    module = freia.HouseholderPerm([(width,)], dims_c=[(width * k,)], n_reflections=k)
    with pytest.raises(RuntimeError):
        _freia_call(module, np.zeros((2, width)), [np.ones((2, width * k))])
    _, params, reference = _reference(HouseholderPerm(k), (width,), ((width * k,),))
    assert params == {}
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, width))
    c = rng.standard_normal((3, width * k))
    w = _fast_h(torch.as_tensor(c).reshape(-1, width, k).transpose(-1, -2)).numpy()
    y, log_det = _round_trip(reference, x, [c])
    np.testing.assert_allclose(y, np.einsum("bi,bij->bj", x, w), rtol=0, atol=ATOL)
    np.testing.assert_array_equal(log_det, 0.0)
    x_back, _ = _run(reference, y, [c], rev=True)
    np.testing.assert_allclose(x_back, np.einsum("bj,bij->bi", y, w), rtol=0, atol=ATOL)


def test_householder_perm_on_images_reflects_each_pixel():
    shape = (3, 2, 4)
    tree, params, reference = _reference(HouseholderPerm(2), shape)
    w = np.eye(3)
    for v in params["Vs"]:
        w = w @ (np.eye(3) - 2 * np.outer(v, v) / (v @ v))
    x = np.random.default_rng(6).standard_normal((2, *shape))
    y, log_det = _round_trip(reference, x)
    np.testing.assert_allclose(y, np.einsum("ji,bjhw->bihw", w, x), rtol=0, atol=ATOL)
    np.testing.assert_array_equal(log_det, 0.0)


def test_householder_perm_initialisation_follows_freia():
    trained = initial_params(build_tree(HouseholderPerm(3), [(5,)]), 0)["Vs"]
    np.testing.assert_allclose(trained, np.eye(5, 3).T, atol=0.6)  # unit vectors + 0.1 noise
    wide = initial_params(build_tree(HouseholderPerm(4), [(2,)]), 0)["Vs"]
    assert np.abs(wide[2:]).max() < 0.6  # eye(C, K) has zero rows past C


def test_orthogonal_transform_matches_freia(freia):
    width = 6
    module = freia.OrthogonalTransform([(width,)], clamp=1.7)
    tree = build_tree(OrthogonalTransform(clamp=1.7), [(width,)])
    params = {
        "weights": module.weights.detach().numpy().copy(),
        "bias": module.bias.detach().numpy().copy(),
        "scaling": 3.0 * module.scaling.detach().numpy(),  # large enough for the clamp to bend
    }
    module.scaling.data = torch_tensor(params["scaling"])
    reference = fc.Reference(tree, params)
    x = np.random.default_rng(7).standard_normal((4, width))
    _agree_with_freia(module, reference, x)
    _, log_det = _run(reference, x)
    np.testing.assert_allclose(log_det, _jacobian_log_det(reference, x[0]), atol=1e-7)


def torch_tensor(a):
    import torch

    return torch.as_tensor(np.array(a))


def test_orthogonal_correction_matches_freia(freia):
    from FrEIA.modules.orthogonal import orth_correction

    r = _matrix(5, 8)
    want = torch_tensor(r)
    orth_correction(want)
    got = orthogonal_correction(r)
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=ATOL)
    np.testing.assert_allclose(got @ got.T, np.eye(5), rtol=0, atol=ATOL)


def test_orthogonal_transform_initialisation():
    params = initial_params(build_tree(OrthogonalTransform(), [(7,)]), 0)
    np.testing.assert_allclose(params["weights"] @ params["weights"].T, np.eye(7), atol=ATOL)
    assert params["bias"].shape == params["scaling"].shape == (1, 7)


# -- the LU-parametrised maps against dense NumPy -----------------------------------------


def _dense_lu(params):
    c = params["log_s"].shape[0]
    lower = np.tril(params["lower"], -1) + np.eye(c)
    upper = np.triu(params["upper"], 1) + np.diag(params["sign_s"] * np.exp(params["log_s"]))
    return np.eye(c)[params["perm"]] @ lower @ upper


def _perturbed(tree, seed=0, scale=0.4):
    params = initial_params(tree, seed)
    rng = np.random.default_rng([seed, 9])
    for name, p in tree.param_specs().items():
        if p.trainable:
            params[name] = params[name] + scale * rng.standard_normal(p.shape)
    return params


@pytest.mark.parametrize(
    ("cls", "shape"),
    [
        (InvertibleLinear, (6,)),
        (InvertibleLinear, (3, 4, 2)),
        (InvertibleConv1x1, (5, 3, 3)),
        (InvertibleLinear, (24,)),
    ],
)
def test_lu_maps_match_dense_numpy(cls, shape):
    tree = build_tree(cls(), [shape])
    params = _perturbed(tree)
    reference = fc.Reference(tree, params)
    w = _dense_lu(params)
    pixels = math.prod(shape[1:])
    x = np.random.default_rng(10).standard_normal((3, *shape))
    y, log_det = _round_trip(reference, x)
    np.testing.assert_allclose(y, np.einsum("ij,bj...->bi...", w, x), rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, pixels * np.linalg.slogdet(w)[1], rtol=0, atol=ATOL)
    x_back, _ = _run(reference, y, rev=True)
    want = np.einsum("ij,bj...->bi...", np.linalg.inv(w), y)
    # Triangular solves against a dense inverse: each is off by about cond(W) eps |y|
    # (cond(W) is about 4e3 for the 24-channel case), so the bound scales with it.
    inverse_atol = max(ATOL, 10 * np.linalg.cond(w) * np.finfo(np.float64).eps * np.abs(y).max())
    np.testing.assert_allclose(x_back, want, rtol=0, atol=inverse_atol)
    if x[0].size <= 24:
        np.testing.assert_allclose(log_det[0], _jacobian_log_det(reference, x[0]), atol=1e-6)


def test_lu_inverse_weight_is_exact_to_round_off():
    """The substitution inverse of a large, far-from-initial W is as exact as NumPy's."""
    c = 40
    tree = build_tree(InvertibleLinear(), [(c,)])
    params = _perturbed(tree, scale=0.5)
    from flowcore.namespace import numpy_namespace
    from flowcore.spec import Context

    xp = numpy_namespace()
    ctx = Context(xp, params, {}, jac=True)
    spec = InvertibleLinear()
    w = spec.weight(ctx)
    w_inv = spec.inverse_weight(ctx)
    np.testing.assert_allclose(w, _dense_lu(params), rtol=0, atol=ATOL)
    residual = np.abs(w_inv @ w - np.eye(c)).max()
    numpy_residual = np.abs(np.linalg.inv(w) @ w - np.eye(c)).max()
    assert residual <= max(10 * numpy_residual, 1e-13)
    np.testing.assert_allclose(w_inv, np.linalg.inv(w), rtol=0, atol=1e-12 * np.linalg.cond(w))


def test_lu_starts_as_a_rotation_and_matches_scipy():
    linalg = pytest.importorskip("scipy.linalg", reason="scipy.linalg.lu as an oracle")
    for c in (1, 2, 5, 9):
        params = initial_params(build_tree(InvertibleLinear(), [(c,)]), 3)
        w = _dense_lu(params)
        np.testing.assert_allclose(w @ w.T, np.eye(c), rtol=0, atol=ATOL)
        assert set(params["sign_s"]) <= {-1.0, 1.0}
        # the parts against scipy's LU of the rotation they were taken from
        rng = np.random.default_rng(c)
        parts = {name: part(rng) for name, part in init.lu_rotation(c).items()}
        rotation = init.special_orthogonal(c)(np.random.default_rng(c))
        np.testing.assert_allclose(_dense_lu(parts), rotation, rtol=0, atol=ATOL)
        p, lower, upper = linalg.lu(rotation)
        np.testing.assert_array_equal(np.eye(c)[parts["perm"]], p)
        np.testing.assert_allclose(parts["lower"], lower, rtol=0, atol=ATOL)
        np.testing.assert_allclose(parts["upper"], np.triu(upper, 1), rtol=0, atol=ATOL)
        s = parts["sign_s"] * np.exp(parts["log_s"])
        np.testing.assert_allclose(s, np.diag(upper), rtol=0, atol=ATOL)


def test_lu_decomposition_matches_scipy():
    linalg = pytest.importorskip("scipy.linalg", reason="scipy.linalg.lu as an oracle")
    rng = np.random.default_rng(12)
    for n in (1, 3, 8, 30):
        a = rng.standard_normal((n, n))
        perm, lower, upper = init.lu_decomposition(a)
        p, lower_want, upper_want = linalg.lu(a)
        np.testing.assert_array_equal(np.eye(n)[perm], p)
        np.testing.assert_allclose(lower, lower_want, rtol=0, atol=1e-12)
        np.testing.assert_allclose(upper, upper_want, rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.eye(n)[perm] @ lower @ upper, a, rtol=0, atol=1e-12)


def test_lu_parts_share_one_rotation_and_advance_the_generator_once():
    parts = init.lu_rotation(4)
    rng = np.random.default_rng(0)
    values = {name: part(rng) for name, part in parts.items()}
    after = rng.standard_normal()
    rng2 = np.random.default_rng(0)
    init.special_orthogonal(4)(rng2)
    assert after == rng2.standard_normal()
    w = _dense_lu(values)
    np.testing.assert_allclose(w, init.special_orthogonal(4)(np.random.default_rng(0)), atol=ATOL)


# -- specs: JSON, bad options, bad shapes ---------------------------------------------------


def test_fixed_matrices_are_json_ready():
    spec = FixedLinearTransform(_matrix(3), b=[1, 2, 3])
    assert isinstance(spec.M, tuple) and isinstance(spec.M[0], tuple)
    assert all(isinstance(v, float) for v in spec.b)
    config = json.loads(json.dumps(spec_to_config(spec)))
    assert spec_from_config(config) == spec
    conv = Fixed1x1Conv(_matrix(2).tolist())
    assert spec_from_config(json.loads(json.dumps(spec_to_config(conv)))) == conv


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FixedLinearTransform(np.ones((2, 3))), r"FixedLinearTransform: option M .*sq"),
        (lambda: FixedLinearTransform(np.ones(3)), r"FixedLinearTransform: option M .*square"),
        (lambda: FixedLinearTransform([[1, 2], [3]]), r"FixedLinearTransform: option M"),
        (lambda: FixedLinearTransform(np.ones((2, 2))), r"option M must be invertible"),
        (lambda: Fixed1x1Conv([[1.0, 2.0], [2.0, 4.0]]), r"Fixed1x1Conv: option M .*invertible"),
        (lambda: Fixed1x1Conv([[1.0, np.nan], [0, 1]]), r"Fixed1x1Conv: option M must be finite"),
        (lambda: FixedLinearTransform(np.eye(2), b=[1.0]), r"option b must have length 2"),
        (
            lambda: FixedLinearTransform(np.eye(2), b=np.eye(2)),
            r"option b must be a finite vector",
        ),
        (lambda: FixedLinearTransform(np.eye(2), b=[1.0, np.inf]), r"option b must be"),
        (lambda: HouseholderPerm(1), r"HouseholderPerm: option n_reflections must be int >= 2"),
        (lambda: HouseholderPerm(0), r"HouseholderPerm: option n_reflections"),
        (lambda: HouseholderPerm(2.0), r"HouseholderPerm: option n_reflections"),
        (lambda: HouseholderPerm(2, fixed=1), r"HouseholderPerm: option fixed must be bool"),
        (lambda: OrthogonalTransform(clamp=0.0), r"OrthogonalTransform: option clamp"),
        (lambda: PermuteRandom(seed=-1), r"PermuteRandom: option seed"),
        (lambda: PermuteRandom(seed=1.5), r"PermuteRandom: option seed"),
    ],
)
def test_bad_options_raise_option_errors(make, message):
    with pytest.raises(OptionError, match=message) as error:
        make()
    assert isinstance(error.value, fc.FlowError)


@pytest.mark.parametrize(
    ("spec", "shape", "conds", "message"),
    [
        (FixedLinearTransform(np.eye(3)), (4,), (), r"FixedLinearTransform: input .*\(3,\)"),
        (FixedLinearTransform(np.eye(3)), (3, 2, 2), (), r"FixedLinearTransform: input"),
        (Fixed1x1Conv(np.eye(3)), (3,), (), r"Fixed1x1Conv: input must be an image"),
        (Fixed1x1Conv(np.eye(3)), (2, 4, 4), (), r"Fixed1x1Conv: input .*\(3, H, W\)"),
        (OrthogonalTransform(), (3, 4, 4), (), r"OrthogonalTransform: input must be a vector"),
        (InvertibleConv1x1(), (3,), (), r"InvertibleConv1x1: input must be an image"),
        (PermuteRandom(), (3,), ((2,),), r"PermuteRandom: takes no conditions"),
        (InvertibleLinear(), (3,), ((2,),), r"InvertibleLinear: takes no conditions"),
        (HouseholderPerm(2), (3,), ((5,),), r"C \* n_reflections = 3 \* 2 = 6 values"),
        (HouseholderPerm(2), (3,), ((6,), (6,)), r"at most one condition"),
        (HouseholderPerm(2, fixed=True), (3,), ((6,),), r"option fixed=True cannot be cond"),
    ],
)
def test_bad_shapes_raise_shape_errors(spec, shape, conds, message):
    with pytest.raises(fc.ShapeError, match=message):
        build_tree(spec, [shape], conds)


def test_jac_false_gives_zero_log_dets():
    for spec, shape in ((Fixed1x1Conv(_matrix(2)), (2, 3, 3)), (InvertibleLinear(), (4,))):
        tree, params, reference = _reference(spec, shape)
        x = np.random.default_rng(0).standard_normal((2, *shape))
        (y,), log_det = reference([x], jac=False)
        np.testing.assert_array_equal(log_det, 0.0)
        (x_back,), log_det = reference([y], rev=True, jac=False)
        np.testing.assert_allclose(x_back, x, atol=1e-12)
        np.testing.assert_array_equal(log_det, 0.0)


# -- the permutation constraint, in a backend -----------------------------------------------


@pytest.mark.parametrize(
    ("spec", "shape"), [(PermuteRandom(), (4,)), (InvertibleConv1x1(), (3, 2, 2))]
)
def test_set_params_refuses_a_permutation_with_a_duplicate_index(spec, shape):
    pytest.importorskip("torch", reason="a torch model to set parameters on")
    flow = fc.build(spec, input_shape=shape, backend="torch", seed=0)
    params = fc.get_params(flow)
    bad = dict(params)
    bad["perm"] = params["perm"].copy()
    bad["perm"][0] = bad["perm"][1]
    with pytest.raises(fc.ParameterError, match=r"'perm' must be a permutation of range"):
        fc.set_params(flow, bad)
    assert np.array_equal(fc.get_params(flow)["perm"], params["perm"])  # nothing written
    fc.set_params(flow, {**params, "perm": params["perm"][::-1].copy()})


def test_every_public_name_is_listed():
    assert set(perms.__all__) == {
        "Fixed1x1Conv",
        "FixedLinearTransform",
        "HouseholderPerm",
        "InvertibleConv1x1",
        "InvertibleLinear",
        "OrthogonalTransform",
        "PermuteRandom",
        "orthogonal_correction",
    }

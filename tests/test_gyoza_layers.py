"""gyoza's layers (flowcore.transforms.gyoza) against NumPy transcriptions of gyoza 0.3.0.

gyoza itself needs Python >= 3.12 and TensorFlow (a later slice tests against it), so the
oracle here is a float64 NumPy transcription of each of its formulas
(shared/anchors/gyoza.md), written on its own code path: gyoza's plain reshape of the
contiguous chosen axes into ``axes[0]``, broadcasting by ``expand_dims``, explicit loops,
and for non-contiguous axes a direct loop over the swept positions. The spec's path
(``permute_dims`` to ``(batch, M, n)``) computes the same values with the same operations in
another order, so float64 results agree to 1e-12 (a few ulps of sums over <= 30 terms).

Also: gyoza's three "rope" examples; the AffineCoupling log-det against torch autograd's
log|det J|; the data-dependent initialisation of ActivationNormalization in the reference
and its write-back in each selected backend; the masks' arrange / re_arrange; and the
bad-input errors, matched by message.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from selected_backends import BACKENDS

import flowcore as fc
from flowcore.backend import load_backend
from flowcore.errors import ShapeError
from flowcore.layers import Linear, ReLU, Sequential
from flowcore.namespace import numpy_namespace
from flowcore.options import OptionError
from flowcore.serialize import spec_from_config, spec_to_config
from flowcore.transforms.axes import AxesLayout
from flowcore.transforms.gyoza import (
    ActivationNormalization,
    AdditiveCoupling,
    AffineCoupling,
    CheckerBoardMask,
    CheckerBoardPermutation,
    HeavisideMask,
    HeavisidePermutation,
    Mask,
    Reflection,
    ShufflePermutation,
    checkerboard_permutation,
    heaviside_permutation,
    rope_indices,
)
from flowcore.tree import build_tree, initial_params

TOL = {"rtol": 1e-12, "atol": 1e-12}
INPUT = (3, 4, 2)  # batch excluded
CONTIGUOUS = ((4, 2), (2, 3))
NONCONTIGUOUS = ((3, 2), (1, 3))


def _data(shape, batch=5, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, *shape))


def _reference(spec, shape=INPUT, seed=0, perturb=True):
    tree = build_tree(spec, [shape], [])
    params = initial_params(tree, seed)
    if perturb:  # so that no check passes at the identity
        rng = np.random.default_rng([seed, 1])
        for name, p in tree.param_specs().items():
            if p.trainable:
                params[name] = params[name] + 0.25 * rng.standard_normal(p.shape)
    return fc.Reference(tree, params), params


def _run(reference, x, rev=False):
    (y,), log_det = reference([x], rev=rev)
    return y, log_det


# -- gyoza's formulas in NumPy (contiguous axes: gyoza's own reshape) ---------------------


def _gyoza_flatten(x, shape, axes):
    """gyoza's FlowLayer flattening: a plain reshape of the (contiguous) axes into axes[0]."""
    a0 = axes[0]
    return x.reshape(x.shape[:a0] + (math.prod(shape),) + x.shape[axes[-1] + 1 :])


def _gyoza_unflatten(x_flat, shape, axes):
    a0 = axes[0]
    return x_flat.reshape(x_flat.shape[:a0] + tuple(shape) + x_flat.shape[a0 + 1 :])


def _expand(values, x, axes):
    """gyoza's broadcast of a tensor of ``shape`` over the other axes of ``x``."""
    out = values
    for axis in range(x.ndim):
        if axis not in axes:
            out = np.expand_dims(out, axis)
    return out


def _gyoza_permutation(x, shape, axes, perm):
    flat = _gyoza_flatten(x, shape, axes)
    return _gyoza_unflatten(np.take(flat, perm, axis=axes[0]), shape, axes)


def _gyoza_actnorm(x, shape, axes, location, scale):
    s = np.maximum(scale, 1e-6)
    y = (x - _expand(location, x, axes)) / _expand(s, x, axes)
    others = math.prod(d for a, d in enumerate(x.shape) if a not in (0, *axes))
    return y, np.full(x.shape[0], -others * np.sum(np.log(s)))


def _gyoza_reflection(x, shape, axes, normals, inverse=False):
    flat = np.moveaxis(_gyoza_flatten(x, shape, axes), axes[0], -1)
    order = range(len(normals) - 1, -1, -1) if inverse else range(len(normals))
    for r in order:
        v = normals[r] / np.linalg.norm(normals[r])
        flat = flat - 2.0 * np.einsum("...i,i->...", flat, v)[..., None] * v
    return _gyoza_unflatten(np.moveaxis(flat, -1, axes[0]), shape, axes)


def _numpy_net(params, prefix, u):
    """Linear -> ReLU -> Linear on the last axis, torch layout (out, in)."""
    h = u @ params[f"{prefix}.0.weight"].T + params[f"{prefix}.0.bias"]
    h = np.maximum(h, 0.0)
    return h @ params[f"{prefix}.2.weight"].T + params[f"{prefix}.2.bias"]


def _gyoza_coupling(x, shape, axes, mask, params, affine, clamp=None, inverse=False):
    """gyoza's Coupling on an input whose axes cover every non-batch axis (the case where
    gyoza's g, which sees the whole masked tensor, is a net on the flattened entries)."""
    n = math.prod(shape)
    m = _expand(mask.reshape(shape), x, axes)
    x1 = m * x
    p = _numpy_net(params, "compute_coupling_parameters", x1.reshape(x.shape[0], n))
    if not affine:
        t = p.reshape(x.shape)
        return x1 + (1 - m) * (x - t if inverse else x + t), np.zeros(x.shape[0])
    a, t = p[:, :n].reshape(x.shape), p[:, n:].reshape(x.shape)
    s = a if clamp is None else clamp * 0.636 * np.arctan(a)
    y2 = (x - t) * np.exp(-s) if inverse else x * np.exp(s) + t
    log_det = np.sum(((1 - m) * s).reshape(x.shape[0], -1), axis=1)
    return x1 + (1 - m) * y2, -log_det if inverse else log_det


# -- the rope -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "want"),
    [
        ([4], [1, 0, 3, 2]),
        ([2, 4], [1, 0, 3, 2, 5, 4, 7, 6]),
        ([3, 5], [1, 0, 3, 2, 9, 6, 5, 8, 7, 4, 11, 10, 13, 12, 14]),
    ],
)
def test_checkerboard_permutation_is_gyozas_rope_order(shape, want):
    perm = checkerboard_permutation(shape)
    assert perm.tolist() == want
    assert perm[perm].tolist() == list(range(len(want)))  # its own inverse


def test_the_rope_is_a_snake_path():
    assert list(rope_indices([2, 4])) == [
        (0, 0), (0, 1), (0, 2), (0, 3), (1, 3), (1, 2), (1, 1), (1, 0),
    ]  # fmt: skip
    path = list(rope_indices([3, 2, 3]))
    assert len(set(path)) == 18
    steps = [
        sum(abs(a - b) for a, b in zip(p, q, strict=True))
        for p, q in zip(path, path[1:], strict=False)
    ]
    assert set(steps) == {1}


def test_checkerboard_permutation_swaps_the_checkerboard_mask_when_n_is_even():
    for shape in ([4], [2, 4], [3, 4], [2, 2, 3]):
        m = CheckerBoardMask(tuple(shape), tuple(range(1, len(shape) + 1))).values()
        np.testing.assert_array_equal(m[checkerboard_permutation(shape)], 1 - m)


def test_heaviside_permutation():
    assert heaviside_permutation(5).tolist() == [2, 3, 4, 0, 1]
    assert heaviside_permutation(4).tolist() == [2, 3, 0, 1]


# -- layers against gyoza's formulas, contiguous axes -------------------------------------


@pytest.mark.parametrize(
    "make", [ShufflePermutation, HeavisidePermutation, CheckerBoardPermutation]
)
def test_permutations_match_gyoza(make):
    shape, axes = CONTIGUOUS
    reference, params = _reference(make(shape, axes))
    perm = params["permutation"]
    x = _data(INPUT)
    y, log_det = _run(reference, x)
    want = _gyoza_permutation(x, shape, axes, perm)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(log_det, 0.0)
    x_back, _ = _run(reference, y, rev=True)
    np.testing.assert_array_equal(x_back, x)
    np.testing.assert_array_equal(
        _gyoza_permutation(x, shape, axes, np.argsort(perm)), _run(reference, x, rev=True)[0]
    )


def test_fixed_permutations_hold_gyozas_indices_and_shuffle_follows_the_seed():
    shape, axes = (3, 5), (1, 2)
    _, p = _reference(CheckerBoardPermutation(shape, axes), (3, 5))
    assert p["permutation"].tolist() == [1, 0, 3, 2, 9, 6, 5, 8, 7, 4, 11, 10, 13, 12, 14]
    _, p = _reference(HeavisidePermutation(shape, axes), (3, 5))
    assert p["permutation"].tolist() == list(range(7, 15)) + list(range(7))
    draws = [_reference(ShufflePermutation(shape, axes), (3, 5), seed=s)[1] for s in (0, 0, 1)]
    perms = [d["permutation"] for d in draws]
    np.testing.assert_array_equal(perms[0], perms[1])
    assert not np.array_equal(perms[0], perms[2])
    assert sorted(perms[2].tolist()) == list(range(15))


def test_activation_normalization_matches_gyoza():
    shape, axes = CONTIGUOUS
    reference, params = _reference(ActivationNormalization(shape, axes))
    params["scale"][0, 0] = -3.0  # gyoza's clip to 1e-6 (a scale out of its constraint)
    reference = fc.Reference(reference.tree, params)
    x = _data(INPUT)
    y, log_det = _run(reference, x)
    want, want_log_det = _gyoza_actnorm(x, shape, axes, params["location"], params["scale"])
    np.testing.assert_allclose(y, want, **TOL)
    np.testing.assert_allclose(log_det, want_log_det, **TOL)
    x_back, log_det_back = _run(reference, y, rev=True)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-10)
    np.testing.assert_allclose(log_det_back, -want_log_det, **TOL)
    # M = 3 swept positions: log-det = -3 * sum(log s)
    assert abs(want_log_det[0] + 3 * np.sum(np.log(np.maximum(params["scale"], 1e-6)))) < 1e-12


def test_activation_normalization_starts_as_the_identity():
    reference, params = _reference(ActivationNormalization(*CONTIGUOUS), perturb=False)
    assert not params["location"].any() and (params["scale"] == 1).all()
    x = _data(INPUT)
    y, log_det = _run(reference, x)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(log_det, 0.0)


def test_reflection_matches_gyoza_and_normalises_its_normals_in_the_map():
    shape, axes = CONTIGUOUS
    reference, params = _reference(Reflection(shape, axes, reflection_count=3))
    assert params["normals"].shape == (3, 8)
    x = _data(INPUT)
    y, log_det = _run(reference, x)
    np.testing.assert_allclose(y, _gyoza_reflection(x, shape, axes, params["normals"]), **TOL)
    np.testing.assert_array_equal(log_det, 0.0)
    x_back, _ = _run(reference, y, rev=True)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        _gyoza_reflection(y, shape, axes, params["normals"], inverse=True), x_back, **TOL
    )
    # norms are kept per sample (orthogonal), and scaled normals give the same map
    norms = [np.linalg.norm(v.reshape(5, -1), axis=1) for v in (y, x)]
    np.testing.assert_allclose(norms[0], norms[1], **TOL)
    scaled = fc.Reference(reference.tree, {"normals": 3.0 * params["normals"]})
    np.testing.assert_allclose(_run(scaled, x)[0], y, **TOL)


def test_reflection_initial_normals_are_unit_rows():
    _, params = _reference(Reflection((6,), (1,), reflection_count=4), (6,), perturb=False)
    np.testing.assert_allclose(np.linalg.norm(params["normals"], axis=1), 1.0, **TOL)
    assert np.abs(params["normals"]).max() <= 1.0


@pytest.mark.parametrize("mask_type", [CheckerBoardMask, HeavisideMask])
@pytest.mark.parametrize("affine", [False, True])
def test_couplings_match_gyoza(mask_type, affine):
    # the axes cover every non-batch axis (gyoza's g then sees what flowcore's g sees)
    shape, axes = (3, 2), (1, 2)
    mask = mask_type(shape, axes)
    net = Sequential(layers=(Linear(7), ReLU(), Linear()))
    spec = (
        AffineCoupling(shape, axes, mask, net)
        if affine
        else AdditiveCoupling(shape, axes, mask, net)
    )
    reference, params = _reference(spec, shape)
    x = _data(shape)
    y, log_det = _run(reference, x)
    want, want_log_det = _gyoza_coupling(
        x, shape, axes, mask.values(), params, affine, 2.0 if affine else None
    )
    np.testing.assert_allclose(y, want, **TOL)
    np.testing.assert_allclose(log_det, want_log_det, **TOL)
    # the masked (m = 1) entries pass unchanged
    m = mask.values().reshape(shape).astype(bool)
    np.testing.assert_array_equal(y[:, m], x[:, m])
    x_back, log_det_back = _run(reference, y, rev=True)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-10)
    np.testing.assert_allclose(log_det_back, -log_det, **TOL)
    want_back, _ = _gyoza_coupling(
        y, shape, axes, mask.values(), params, affine, 2.0 if affine else None, inverse=True
    )
    np.testing.assert_allclose(x_back, want_back, rtol=0, atol=1e-10)
    if affine:
        assert np.abs(log_det).min() > 1e-3


def test_affine_coupling_unclamped_uses_the_raw_log_scale():
    shape, axes = (4,), (1,)
    mask = HeavisideMask(shape, axes)
    net = Sequential(layers=(Linear(5), ReLU(), Linear()))
    reference, params = _reference(AffineCoupling(shape, axes, mask, net, clamp=None), shape)
    x = _data(shape)
    y, log_det = _run(reference, x)
    want, want_log_det = _gyoza_coupling(x, shape, axes, mask.values(), params, True, None)
    np.testing.assert_allclose(y, want, **TOL)
    np.testing.assert_allclose(log_det, want_log_det, **TOL)


def test_the_default_subnet_is_gyozas_tutorial_net():
    spec = AdditiveCoupling((2,), (1,), CheckerBoardMask((2,), (1,)))
    _, params = _reference(spec, (2,))
    assert params["compute_coupling_parameters.0.weight"].shape == (8, 2)
    assert params["compute_coupling_parameters.2.weight"].shape == (2, 8)
    assert params["mask"].tolist() == [0.0, 1.0]


# -- non-contiguous axes against a loop over the swept positions ---------------------------


def _swept_loop(x, axes, per_position):
    """Apply ``per_position(v)`` (v: (batch, n)) at each position of the other axes, by a
    loop with explicit indexing: the selection at a swept index is ``x[:, i, :, k]``-style."""
    out = np.empty_like(x)
    others = [a for a in range(1, x.ndim) if a not in axes]
    for pos in np.ndindex(*[x.shape[a] for a in others]):
        index = [slice(None)] * x.ndim
        for a, i in zip(others, pos, strict=True):
            index[a] = i
        block = x[tuple(index)]  # (batch, *shape), the chosen axes in order
        flat = block.reshape(x.shape[0], -1)
        out[tuple(index)] = per_position(flat).reshape(block.shape)
    return out


def _noncontiguous(spec_for):
    shape, axes = NONCONTIGUOUS
    spec = spec_for(shape, axes)
    reference, params = _reference(spec)
    x = _data(INPUT)
    y, log_det = _run(reference, x)
    return shape, axes, params, x, y, log_det, reference


def test_layout_moves_non_contiguous_axes_together():
    layout = AxesLayout.bind("test", INPUT, *NONCONTIGUOUS)
    assert (layout.m, layout.n, layout.others) == (4, 6, (2,))
    x = _data(INPUT)
    z = layout.flatten(numpy_namespace(), x)
    assert z.shape == (5, 4, 6)
    np.testing.assert_array_equal(z[:, 2, :], x[:, :, 2, :].reshape(5, 6))
    np.testing.assert_array_equal(layout.unflatten(numpy_namespace(), z), x)


@pytest.mark.parametrize(
    "make", [ShufflePermutation, HeavisidePermutation, CheckerBoardPermutation]
)
def test_permutations_on_non_contiguous_axes(make):
    shape, axes, params, x, y, _, _ = _noncontiguous(make)
    perm = params["permutation"]
    np.testing.assert_array_equal(y, _swept_loop(x, axes, lambda v: v[:, perm]))


def test_activation_normalization_on_non_contiguous_axes():
    shape, axes, params, x, y, log_det, _ = _noncontiguous(ActivationNormalization)
    loc, s = params["location"].reshape(-1), np.maximum(params["scale"].reshape(-1), 1e-6)
    np.testing.assert_allclose(y, _swept_loop(x, axes, lambda v: (v - loc) / s), **TOL)
    np.testing.assert_allclose(log_det, -4 * np.sum(np.log(s)), **TOL)  # 4 swept positions


def test_reflection_on_non_contiguous_axes():
    def make(shape, axes):
        return Reflection(shape, axes, reflection_count=2)

    shape, axes, params, x, y, _, _ = _noncontiguous(make)

    def reflect(v):
        for normal in params["normals"]:
            u = normal / np.linalg.norm(normal)
            v = v - 2.0 * (v @ u)[:, None] * u
        return v

    np.testing.assert_allclose(y, _swept_loop(x, axes, reflect), **TOL)


@pytest.mark.parametrize("mask_type", [CheckerBoardMask, HeavisideMask])
@pytest.mark.parametrize("affine", [False, True])
def test_couplings_on_non_contiguous_axes(mask_type, affine):
    def make(shape, axes):
        net = Sequential(layers=(Linear(5), ReLU(), Linear()))
        kind = AffineCoupling if affine else AdditiveCoupling
        return kind(shape, axes, mask_type(shape, axes), net)

    shape, axes, params, x, y, log_det, reference = _noncontiguous(make)
    m, n = mask_type(shape, axes).values(), math.prod(shape)
    total = np.zeros(x.shape[0])

    def couple(v):
        nonlocal total
        p = _numpy_net(params, "compute_coupling_parameters", m * v)
        if not affine:
            return m * v + (1 - m) * (v + p)
        s = 2.0 * 0.636 * np.arctan(p[:, :n])
        total = total + np.sum((1 - m) * s, axis=1)
        return m * v + (1 - m) * (v * np.exp(s) + p[:, n:])

    np.testing.assert_allclose(y, _swept_loop(x, axes, couple), **TOL)
    np.testing.assert_allclose(log_det, total, **TOL)
    x_back, _ = _run(reference, y, rev=True)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-10)


# -- the affine log-det against autodiff ---------------------------------------------------


@pytest.mark.parametrize("selection", [CONTIGUOUS, NONCONTIGUOUS], ids=["contiguous", "non"])
def test_affine_coupling_log_det_is_torch_autograds(selection):
    torch = pytest.importorskip("torch")
    shape, axes = selection
    spec = AffineCoupling(
        shape,
        axes,
        CheckerBoardMask(shape, axes),
        Sequential(layers=(Linear(6), ReLU(), Linear())),
    )
    model = fc.build(spec, INPUT, backend="torch", dtype="float64", seed=3)
    _, params = _reference(spec, seed=3)
    fc.set_params(model, params)
    x = torch.as_tensor(_data(INPUT, batch=2, seed=4))
    with torch.no_grad():
        _, log_det = model(x)
    for b in range(2):
        jac = torch.autograd.functional.jacobian(lambda v: model(v[None])[0][0], x[b])
        jac = jac.reshape(math.prod(INPUT), math.prod(INPUT))
        want = torch.linalg.slogdet(jac)[1]
        assert abs(float(log_det[b]) - float(want)) < 1e-10
        assert abs(float(want)) > 1e-2


# -- data-dependent initialisation ---------------------------------------------------------


@pytest.mark.parametrize("selection", [CONTIGUOUS, NONCONTIGUOUS], ids=["contiguous", "non"])
@pytest.mark.parametrize("rev", [False, True])
def test_data_init_sets_location_and_scale_from_the_first_batch(selection, rev):
    shape, axes = selection
    reference, params = _reference(
        ActivationNormalization(shape, axes, data_init=True), perturb=False
    )
    assert params["initialised"].tolist() == [0.0]
    x = 3.0 + 2.0 * _data(INPUT, batch=6)
    layout = AxesLayout.bind("test", INPUT, shape, axes)
    z = np.moveaxis(x, [0, *layout.others], list(range(1 + len(layout.others))))
    z = z.reshape(-1, math.prod(shape))  # (batch * M, n)
    mean, std = z.mean(axis=0), z.std(axis=0, ddof=1)
    y, log_det = _run(reference, x, rev=rev)
    np.testing.assert_allclose(reference.params["location"].reshape(-1), mean, **TOL)
    np.testing.assert_allclose(reference.params["scale"].reshape(-1), std, **TOL)
    assert reference.params["initialised"].tolist() == [1.0]
    want_log_det = -layout.m * np.sum(np.log(std))
    np.testing.assert_allclose(log_det, -want_log_det if rev else want_log_det, **TOL)
    if not rev:  # a first forward batch is normalised per entry
        out = np.moveaxis(y, [0, *layout.others], list(range(1 + len(layout.others))))
        out = out.reshape(-1, math.prod(shape))
        np.testing.assert_allclose(out.mean(axis=0), 0.0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(out.std(axis=0, ddof=1), 1.0, **TOL)
    stored = {k: v.copy() for k, v in reference.params.items()}
    _run(reference, _data(INPUT, seed=9))  # later batches change nothing
    for k, v in stored.items():
        np.testing.assert_array_equal(reference.params[k], v)


def test_data_init_of_a_constant_entry_gives_scale_one():
    reference, _ = _reference(
        ActivationNormalization((3,), (1,), data_init=True), (3,), perturb=False
    )
    x = _data((3,), batch=4)
    x[:, 1] = 2.5
    y, log_det = _run(reference, x)
    assert reference.params["scale"][1] == 1.0
    assert np.isfinite(y).all() and np.isfinite(log_det).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_data_init_is_written_back_in_each_backend(backend):
    impl = load_backend(backend)
    spec = ActivationNormalization(*NONCONTIGUOUS, data_init=True)
    model = fc.build(spec, INPUT, backend=backend, seed=0)
    reference = fc.Reference(fc.tree_of(model), fc.get_params(model))
    x = (1.0 + 2.0 * _data(INPUT, batch=6)).astype(np.float32).astype(np.float64)
    ys, _ = impl.call(model, [impl.to_native(x, "float32", "cpu")], [], False, True)
    (want,), _ = reference([x])
    got = fc.get_params(model)
    assert got["initialised"].tolist() == [1.0]
    for k in ("location", "scale"):
        np.testing.assert_allclose(got[k], reference.params[k], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(impl.to_numpy(ys[0]), want, rtol=1e-5, atol=1e-5)
    impl.call(model, [impl.to_native(_data(INPUT, seed=9), "float32", "cpu")], [], False, True)
    again = fc.get_params(model)
    for k, v in got.items():
        np.testing.assert_array_equal(again[k], v)


# -- masks ---------------------------------------------------------------------------------


def test_mask_patterns():
    np.testing.assert_array_equal(
        CheckerBoardMask((3, 2), (1, 2)).values().reshape(3, 2), [[0, 1], [1, 0], [0, 1]]
    )
    np.testing.assert_array_equal(HeavisideMask((5,), (1,)).values(), [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(HeavisideMask((2, 3), (1, 2)).values(), [0, 0, 0, 1, 1, 1])
    given = Mask((2, 2), (1, 2), mask=[[1, 0], [0, 1]])
    assert given.mask == (1, 0, 0, 1)


@pytest.mark.parametrize("selection", [CONTIGUOUS, NONCONTIGUOUS], ids=["contiguous", "non"])
def test_mask_call_arrange_and_re_arrange(selection):
    shape, axes = selection
    xp = numpy_namespace()
    mask = CheckerBoardMask(shape, axes)
    x = _data(INPUT)
    m = mask.values()
    want = _swept_loop(x, axes, lambda v: v * m)
    np.testing.assert_array_equal(mask.call(xp, x), want)
    np.testing.assert_array_equal(mask.call(xp, x, is_positive=False), x - want)
    arranged = mask.arrange(xp, x)
    n, half = math.prod(shape), int(m.sum())
    assert arranged.shape[axes[0]] == n and arranged.ndim == 3
    # the 1 entries first: at every swept position the first `half` values are the kept ones
    flat = np.moveaxis(arranged, axes[0], -1).reshape(-1, n)
    kept = np.moveaxis(np.asarray(mask.arrange(xp, mask.call(xp, x))), axes[0], -1).reshape(-1, n)
    np.testing.assert_array_equal(kept[:, :half], flat[:, :half])
    np.testing.assert_array_equal(kept[:, half:], 0.0)
    np.testing.assert_array_equal(mask.re_arrange(xp, arranged), x)


def test_contiguous_arrange_is_gyozas_flatten_then_order():
    shape, axes = CONTIGUOUS
    mask = HeavisideMask(shape, axes)
    x = _data(INPUT)
    got = mask.arrange(numpy_namespace(), x)
    order = np.concatenate(
        [np.flatnonzero(mask.values() == 1), np.flatnonzero(mask.values() == 0)]
    )
    np.testing.assert_array_equal(
        got, np.take(_gyoza_flatten(x, shape, axes), order, axis=axes[0])
    )


def test_coupling_spec_with_its_mask_saves_as_json():
    spec = AffineCoupling((3, 2), (1, 3), CheckerBoardMask((3, 2), (1, 3)), clamp=1.5)
    again = spec_from_config(json.loads(json.dumps(spec_to_config(spec))))
    assert again == spec
    assert isinstance(again.mask, CheckerBoardMask)


# -- bad input -----------------------------------------------------------------------------


def test_a_mask_whose_shape_does_not_match_the_layer_is_refused():
    with pytest.raises(
        OptionError,
        match=r"AdditiveCoupling: option mask must have the layer's shape \(4, 2\) and axes "
        r"\(2, 3\), got a CheckerBoardMask of shape \(4,\)",
    ):
        AdditiveCoupling((4, 2), (2, 3), CheckerBoardMask((4,), (2,)))
    with pytest.raises(OptionError, match=r"AffineCoupling: option mask .* and axes \(1, 3\)"):
        AffineCoupling((4, 2), (2, 3), HeavisideMask((4, 2), (1, 3)))
    with pytest.raises(OptionError, match=r"Mask: option mask must have the shape \(2, 2\)"):
        Mask((2, 2), (1, 2), mask=[1, 0, 1])
    with pytest.raises(OptionError, match=r"Mask: option mask must hold only 0 and 1"):
        Mask((2,), (1,), mask=[1, 2])


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        (
            (0, 1),
            r"Reflection: option axes must be >= 1 \(axis 0 is the batch axis\), got \(0, 1\)",
        ),
        ((2, 2), r"Reflection: option axes must not repeat an axis, got \(2, 2\)"),
        ((3, 1), r"Reflection: option axes must be strictly ascending, got \(3, 1\)"),
        ((1,), r"Reflection: options shape and axes must have the same length"),
    ],
)
def test_bad_axes_are_refused(axes, message):
    with pytest.raises(OptionError, match=message):
        Reflection((3, 2), axes, reflection_count=1)


def test_axes_out_of_range_or_a_shape_that_does_not_fit_the_input():
    with pytest.raises(
        ShapeError,
        match=r"ShufflePermutation: axes \(2, 4\) out of range for an input of shape "
        r"\(3, 4, 2\).*1\.\.3",
    ):
        build_tree(ShufflePermutation((4, 5), (2, 4)), [INPUT], [])
    with pytest.raises(
        ShapeError,
        match=r"ActivationNormalization: option shape \(4, 3\) does not match the input's "
        r"sizes \(4, 2\) on axes \(2, 3\)",
    ):
        build_tree(ActivationNormalization((4, 3), (2, 3)), [INPUT], [])
    with pytest.raises(ShapeError, match="CheckerBoardPermutation: takes no conditions"):
        build_tree(CheckerBoardPermutation((4, 2), (2, 3)), [INPUT], [(2,)])


def test_a_reflection_count_below_one_is_refused():
    with pytest.raises(
        OptionError, match=r"Reflection: option reflection_count must be int >= 1, got 0"
    ):
        Reflection((3,), (1,), reflection_count=0)

"""The reshapes and topology family against FrEIA 0.2, explicit index formulas and autodiff.

- FrEIA 0.2 in float64 (``FrEIA.modules``): IRevNetDownsampling / IRevNetUpsampling in both
  channel orders, HaarDownsampling / HaarUpsampling (both orders, several ``rebalance``),
  Flatten, Reshape, Split and Concat give exactly FrEIA's outputs, both directions, and its
  log-dets to 1e-12. FrEIA 0.2's ``reshapes.py`` is the same as master's; its Split breaks on
  an int ``section_sizes`` (and on sizes summing to less than the axis), where master splits
  ``(s, L - s)``: flowcore follows master for the int and refuses sizes that do not sum to L.
- The channel orders by explicit indexing, independently of FrEIA.
- Haar's log-det ``N log|r|`` against slogdet of each backend's autodiff Jacobian.
- No call writes to its input: FrEIA's Haar inverse (HaarUpsampling's forward) scales the
  caller's tensor in place; flowcore's torch module leaves it alone.
- Bad options and shapes raise FlowErrors naming the transform and the option.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import Iterator

import numpy as np
import pytest
from selected_backends import BACKENDS

import flowcore as fc
from flowcore.errors import FlowError, ShapeError
from flowcore.options import OptionError
from flowcore.serialize import spec_from_config, spec_to_config
from flowcore.transforms.reshapes import (
    Concat,
    Flatten,
    HaarDownsampling,
    HaarUpsampling,
    IRevNetDownsampling,
    IRevNetUpsampling,
    Reshape,
    Split,
)
from flowcore.tree import build_tree

ATOL = 1e-12


def _reference(spec, shapes):
    return fc.Reference(build_tree(spec, shapes), {})


def _data(*shapes, seed=0, batch=3):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, *s)) for s in shapes]


def _round_trip(reference, xs):
    ys, log_det = reference(xs, [])
    back, log_det_back = reference(ys, [], rev=True)
    for x, b in zip(xs, back, strict=True):
        np.testing.assert_allclose(b, x, rtol=0, atol=1e-13)
    np.testing.assert_allclose(log_det + log_det_back, 0.0, rtol=0, atol=ATOL)
    return ys, log_det


# -- FrEIA 0.2 as the oracle (the `freia` fixture: conftest.py) ---------------------------


def _freia_call(module, xs, rev=False):
    import torch

    with torch.no_grad():  # FrEIA may scale its input in place: hand it copies
        ys, log_det = module([torch.as_tensor(x.copy()) for x in xs], rev=rev)
    log_det = np.broadcast_to(np.asarray(log_det, dtype=np.float64), (xs[0].shape[0],))
    return [y.numpy() for y in ys], log_det


def _agree_with_freia(module, spec, xs):
    """Outputs exactly FrEIA's in both directions, log-dets to 1e-12."""
    reference = _reference(spec, [x.shape[1:] for x in xs])
    ys_want, log_det_want = _freia_call(module, xs)
    ys, log_det = _round_trip(reference, xs)
    assert len(ys) == len(ys_want)
    for y, want in zip(ys, ys_want, strict=True):
        np.testing.assert_array_equal(y, want)
    np.testing.assert_allclose(log_det, log_det_want, rtol=0, atol=ATOL)
    xs_want, log_det_back_want = _freia_call(module, ys_want, rev=True)
    back, log_det_back = reference(ys_want, [], rev=True)
    for x, want in zip(back, xs_want, strict=True):
        np.testing.assert_array_equal(x, want)
    np.testing.assert_allclose(log_det_back, log_det_back_want, rtol=0, atol=ATOL)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("shape", [(3, 4, 6), (1, 2, 2)])
def test_irevnet_downsampling_matches_freia(freia, legacy, shape):
    module = freia.IRevNetDownsampling([shape], legacy_backend=legacy)
    _agree_with_freia(module, IRevNetDownsampling(legacy_backend=legacy), _data(shape))


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("shape", [(8, 2, 3), (4, 1, 1)])
def test_irevnet_upsampling_matches_freia(freia, legacy, shape):
    module = freia.IRevNetUpsampling([shape], legacy_backend=legacy)
    _agree_with_freia(module, IRevNetUpsampling(legacy_backend=legacy), _data(shape))


@pytest.mark.parametrize("rebalance", [1.0, 0.5, 1.7])
@pytest.mark.parametrize("by_wavelet", [False, True])
def test_haar_downsampling_matches_freia(freia, by_wavelet, rebalance):
    shape = (3, 4, 6)
    module = freia.HaarDownsampling([shape], order_by_wavelet=by_wavelet, rebalance=rebalance)
    spec = HaarDownsampling(order_by_wavelet=by_wavelet, rebalance=rebalance)
    _agree_with_freia(module, spec, _data(shape))


@pytest.mark.parametrize("rebalance", [1.0, 0.5, 1.7])
@pytest.mark.parametrize("by_wavelet", [False, True])
def test_haar_upsampling_matches_freia(freia, by_wavelet, rebalance):
    shape = (8, 2, 3)
    module = freia.HaarUpsampling([shape], order_by_wavelet=by_wavelet, rebalance=rebalance)
    spec = HaarUpsampling(order_by_wavelet=by_wavelet, rebalance=rebalance)
    _agree_with_freia(module, spec, _data(shape))


@pytest.mark.parametrize("shape", [(3, 4, 6), (5,), (2, 3)])
def test_flatten_matches_freia(freia, shape):
    _agree_with_freia(freia.Flatten([shape]), Flatten(), _data(shape))


@pytest.mark.parametrize(("shape", "target"), [((3, 4, 6), (6, 12)), ((12,), (3, 2, 2))])
def test_reshape_matches_freia(freia, shape, target):
    module = freia.Reshape([shape], output_dims=target)
    _agree_with_freia(module, Reshape(target), _data(shape))


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((6,), {"section_sizes": [1, 3, 2]}),
        ((3, 4, 6), {"section_sizes": [2, 1]}),
        ((3, 4, 6), {"n_sections": 3, "dim": 2}),
        ((7, 2), {"n_sections": 3}),  # array_split: 3, 2, 2
        ((3, 5, 2), {"n_sections": 2, "dim": 1}),
    ],
)
@pytest.mark.filterwarnings("ignore:Split will create sections of unequal size")
def test_split_matches_freia(freia, shape, kwargs):
    module = freia.Split([shape], **kwargs)
    _agree_with_freia(module, Split(**kwargs), _data(shape))


def test_split_by_an_int_is_freia_masters_two_sections(freia):
    """FrEIA 0.2 builds ``Split(section_sizes=2)`` but then cannot infer its output shapes
    (it iterates over the int); master splits it into ``(2, L - 2)``, as flowcore does,
    which is FrEIA 0.2's ``Split(section_sizes=[2, L - 2])``."""
    shape = (5, 2, 2)
    with pytest.raises(TypeError):
        freia.Split([shape], section_sizes=2).output_dims([shape])
    assert build_tree(Split(section_sizes=2), [shape]).signature.outputs == (
        (2, 2, 2),
        (3, 2, 2),
    )
    _agree_with_freia(
        freia.Split([shape], section_sizes=[2, 3]), Split(section_sizes=2), _data(shape)
    )


def test_split_sizes_summing_short_break_freia_and_are_refused():
    """FrEIA 0.2 means to add a section taking the slack, but its ``list.append`` returns
    None; master adds the section. flowcore refuses sizes that do not sum to the axis."""
    pytest.importorskip("FrEIA", reason="FrEIA 0.2 as oracle")
    import FrEIA.modules as fm

    with pytest.warns(UserWarning), pytest.raises(TypeError):
        fm.Split([(5,)], section_sizes=[2, 1]).output_dims([(5,)])
    with pytest.raises(ShapeError, match=r"Split.*section_sizes.*expected a sum of 5"):
        build_tree(Split(section_sizes=(2, 1)), [(5,)])


@pytest.mark.parametrize(
    ("shapes", "dim"), [([(2, 4, 3), (3, 4, 3)], 0), ([(2, 1), (2, 3), (2, 2)], 1)]
)
def test_concat_matches_freia(freia, shapes, dim):
    module = freia.Concat(shapes, dim=dim)
    _agree_with_freia(module, Concat(dim=dim), _data(*shapes))


# -- the channel orders, independently of FrEIA --------------------------------------------


def test_irevnet_channel_orders_by_index():
    c, h, w = 3, 4, 6
    (x,) = _data((c, h, w), batch=2)
    (y,), _ = _reference(IRevNetDownsampling(), [(c, h, w)])([x])
    (y_legacy,), _ = _reference(IRevNetDownsampling(legacy_backend=True), [(c, h, w)])([x])
    for k in range(c):
        for i in range(2):
            for j in range(2):
                patch = x[:, k, i::2, j::2]
                np.testing.assert_array_equal(y[:, 4 * k + 2 * i + j], patch)
                np.testing.assert_array_equal(y_legacy[:, (2 * i + j) * c + k], patch)


def test_haar_wavelets_by_formula():
    c, rebalance = 2, 0.7
    (x,) = _data((c, 4, 4), batch=2)
    a, b, d, e = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]
    want = 0.5 * rebalance * np.stack([a + b + d + e, a - b + d - e, a + b - d - e, a - b - d + e])
    (y,), log_det = _reference(HaarDownsampling(rebalance=rebalance), [(c, 4, 4)])([x])
    (y_w,), _ = _reference(
        HaarDownsampling(order_by_wavelet=True, rebalance=rebalance), [(c, 4, 4)]
    )([x])
    for k in range(4):
        for ch in range(c):
            np.testing.assert_allclose(y[:, 4 * ch + k], want[k][:, ch], rtol=0, atol=ATOL)
            np.testing.assert_allclose(y_w[:, k * c + ch], want[k][:, ch], rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, c * 16 * np.log(rebalance), rtol=0, atol=ATOL)


def test_haar_negative_rebalance_has_log_abs():
    """FrEIA's ``np.log`` of a negative factor gives NaN; the map is invertible and its
    log|det| is N log|r|."""
    (x,) = _data((1, 2, 2))
    ref = _reference(HaarDownsampling(rebalance=-2.0), [(1, 2, 2)])
    _, log_det = _round_trip(ref, [x])
    np.testing.assert_allclose(log_det, 4 * np.log(2.0), rtol=0, atol=ATOL)


def test_round_trips_and_sequences():
    spec = fc.SequenceINN(
        HaarDownsampling(rebalance=0.5),
        IRevNetDownsampling(legacy_backend=True),
        IRevNetUpsampling(),
        HaarUpsampling(order_by_wavelet=True),
        Reshape((4, 8, 2)),
        Flatten(),
    )
    tree = build_tree(spec, [(2, 4, 8)])
    assert tree.signature.outputs == ((64,),)
    (x,) = _data((2, 4, 8))
    _, log_det = _round_trip(fc.Reference(tree, {}), [x])
    np.testing.assert_allclose(log_det, 64 * np.log(0.5), rtol=0, atol=ATOL)
    for spec, shapes in [
        (Split(n_sections=3, dim=1), [(2, 7, 2)]),
        (Split(section_sizes=(1, 1, 2)), [(4, 3)]),
        (Concat(dim=2), [(2, 3, 1), (2, 3, 4)]),
        (Concat(), [(1,), (2,), (3,)]),
    ]:
        _round_trip(_reference(spec, shapes), _data(*shapes))


def test_jac_false_gives_zero_log_det():
    (x,) = _data((2, 4, 4))
    ref = _reference(HaarDownsampling(rebalance=3.0), [(2, 4, 4)])
    (y,), log_det = ref([x], [], jac=False)
    (y_jac,), _ = ref([x], [])
    np.testing.assert_array_equal(log_det, np.zeros(3))
    np.testing.assert_array_equal(y, y_jac)


# -- every backend: autodiff Jacobians, inputs not written to -----------------------------


@contextlib.contextmanager
def _float64(name: str) -> Iterator[None]:
    """64-bit JAX while a float64 test runs on JAX or Keras (which may run on JAX); the
    process-wide flag is restored after."""
    if name not in ("jax", "keras") or importlib.util.find_spec("jax") is None:
        yield
        return
    import jax

    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(
    "spec",
    [
        HaarDownsampling(rebalance=0.5),
        HaarDownsampling(order_by_wavelet=True, rebalance=1.8),
        HaarUpsampling(rebalance=0.3),
    ],
    ids=["down", "down_by_wavelet", "up"],
)
def test_haar_log_det_is_the_autodiff_jacobians(name, spec):
    with _float64(name):
        _haar_log_det_is_the_autodiff_jacobians(name, spec)


def _haar_log_det_is_the_autodiff_jacobians(name, spec):
    shape = (4, 2, 2) if isinstance(spec, HaarUpsampling) else (2, 4, 2)
    backend = fc.get_backend(name)
    model = fc.build(spec, shape, backend=name, dtype="float64")
    (x,) = _data(shape)
    native = backend.to_native(x, "float64", "cpu")
    jac = np.asarray(backend.jacobian(model, native, []), dtype=np.float64)
    _, log_abs = np.linalg.slogdet(jac)
    _, log_det = backend.call(model, [native], [], rev=False, jac=True)
    np.testing.assert_allclose(backend.to_numpy(log_det), log_abs, rtol=0, atol=1e-10)
    rebalance = spec.rebalance if isinstance(spec, HaarDownsampling) else 1 / spec.rebalance
    np.testing.assert_allclose(log_abs, 16 * np.log(rebalance), rtol=0, atol=1e-10)


def test_freia_haar_inverse_scales_its_input_in_place_flowcore_does_not(freia):
    """FrEIA's HaarDownsampling(rev=True), hence HaarUpsampling's forward, multiplies the
    caller's tensor by ``0.5 / rebalance`` in place; flowcore's torch module never writes to
    its input."""
    import torch

    shape = (4, 2, 2)
    (x,) = _data(shape)
    theirs = torch.as_tensor(x.copy())
    with torch.no_grad():
        freia.HaarUpsampling([shape], rebalance=2.0)([theirs])
    np.testing.assert_array_equal(theirs.numpy(), x * 0.25)  # 0.5 / rebalance, in place
    model = fc.build(HaarUpsampling(rebalance=2.0), shape, backend="torch", dtype="float64")
    ours = torch.as_tensor(x.copy())
    y, _ = model(ours)
    np.testing.assert_array_equal(ours.numpy(), x)
    y_kept = y.detach().clone()
    back, _ = model(y, rev=True)
    np.testing.assert_array_equal(y.detach().numpy(), y_kept.numpy())
    np.testing.assert_allclose(back.detach().numpy(), x, rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", BACKENDS)
def test_no_backend_writes_to_its_inputs(name):
    with _float64(name):
        _no_backend_writes_to_its_inputs(name)


def _no_backend_writes_to_its_inputs(name):
    backend = fc.get_backend(name)
    cases = [
        (HaarUpsampling(rebalance=2.0), [(4, 2, 2)], True),
        (HaarDownsampling(rebalance=2.0), [(1, 4, 4)], True),
        (IRevNetDownsampling(), [(1, 4, 4)], True),
        (Split(section_sizes=1), [(3, 2, 2)], False),
        (Concat(), [(1, 2), (2, 2)], False),
    ]
    for spec, shapes, both in cases:
        model = fc.build(spec, shapes, backend=name, dtype="float64")
        xs = _data(*shapes)
        native = [backend.to_native(x, "float64", "cpu") for x in xs]
        ys, _ = backend.call(model, native, [], rev=False, jac=True)
        kept = [backend.to_numpy(y).copy() for y in ys]
        for x, n in zip(xs, native, strict=True):
            np.testing.assert_array_equal(backend.to_numpy(n), x)
        back, _ = backend.call(model, list(ys), [], rev=True, jac=True)
        for y, k in zip(ys, kept, strict=True):
            np.testing.assert_array_equal(backend.to_numpy(y), k)
        for b, x in zip(back, xs, strict=True):
            np.testing.assert_allclose(backend.to_numpy(b), x, rtol=0, atol=1e-13 if both else 0)


# -- options and shapes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "shapes", "match"),
    [
        (
            Split(section_sizes=(2, 2)),
            [(5,)],
            r"Split: option section_sizes must sum .* 5, got \(2, 2\)",
        ),
        (Split(section_sizes=(4, 2)), [(5, 3)], r"Split: option section_sizes .*sum 6"),
        (
            Split(section_sizes=5),
            [(5,)],
            r"Split: option section_sizes as an int .* less than the length 5 .*got 5",
        ),
        (Split(n_sections=4), [(3,)], r"Split: option n_sections .* at most the length 3 .*got 4"),
        (Split(dim=1), [(4,)], r"Split: option dim .* 0 <= dim < 1 .*got 1"),
        (Reshape((3, 3)), [(2, 4)], r"Reshape: option output_dims \(3, 3\) .* expected 8 .*got 9"),
        (HaarDownsampling(), [(2, 3, 4)], r"HaarDownsampling: .*even, got H=3, W=4"),
        (HaarDownsampling(), [(2, 4, 5)], r"HaarDownsampling: .*even, got H=4, W=5"),
        (IRevNetDownsampling(), [(1, 4, 3)], r"IRevNetDownsampling: .*even, got H=4, W=3"),
        (
            HaarDownsampling(),
            [(8,)],
            r"HaarDownsampling: input must be an image \(C, H, W\), got shape \(8,\)",
        ),
        (IRevNetDownsampling(), [(2, 4, 4, 4)], r"IRevNetDownsampling: input must be an image"),
        (IRevNetUpsampling(), [(6, 2, 2)], r"IRevNetUpsampling: .*multiple of 4, got C=6"),
        (HaarUpsampling(), [(4, 2)], r"HaarUpsampling: input must be an image"),
        (Concat(), [(2,)], r"Concat: needs two or more inputs, got 1"),
        (Concat(), [(2, 3), (2, 4)], r"Concat: inputs must agree .* got \(2, 4\)"),
        (Concat(dim=1), [(2, 3), (2,)], r"Concat: inputs must agree"),
        (Concat(dim=2), [(2, 3), (2, 3)], r"Concat: option dim"),
    ],
)
def test_bad_shapes_are_shape_errors(spec, shapes, match):
    with pytest.raises(ShapeError, match=match):
        build_tree(spec, shapes)


def test_conditions_are_refused():
    with pytest.raises(ShapeError, match="Flatten: takes no conditions"):
        build_tree(Flatten(), [(4,)], [(2,)])
    with pytest.raises(ShapeError, match="Split: takes no conditions"):
        build_tree(Split(), [(4,)], [(2,)])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: HaarDownsampling(rebalance=0.0),
            r"HaarDownsampling: option rebalance must be != 0",
        ),
        (lambda: HaarUpsampling(rebalance=float("nan")), r"HaarUpsampling: option rebalance"),
        (lambda: IRevNetDownsampling(legacy_backend=1), r"option legacy_backend must be bool"),
        (lambda: Reshape((2, 0)), r"Reshape: option output_dims"),
        (lambda: Reshape(()), r"Reshape: option output_dims must be a non-empty"),
        (lambda: Reshape("ab"), r"Reshape: option output_dims"),
        (lambda: Split(section_sizes=(2, -1)), r"Split: option section_sizes"),
        (lambda: Split(section_sizes=0), r"Split: option section_sizes"),
        (lambda: Split(section_sizes=()), r"Split: option section_sizes must be"),
        (lambda: Split(n_sections=1), r"Split: option n_sections must be int >= 2, got 1"),
        (lambda: Split(dim=-1), r"Split: option dim must be int >= 0, got -1"),
        (lambda: Concat(dim=0.5), r"Concat: option dim"),
    ],
)
def test_bad_options_are_option_errors(make, match):
    with pytest.raises(OptionError, match=match):
        make()


def test_options_normalised_and_saved():
    split = Split(section_sizes=[np.int64(1), 2])
    assert split.section_sizes == (1, 2) and type(split.section_sizes[0]) is int
    assert Reshape([2, np.int32(3)]).output_dims == (2, 3)
    for spec in (
        split,
        Split(section_sizes=3, dim=1),
        Reshape((2, 3)),
        HaarUpsampling(order_by_wavelet=True, rebalance=0.5),
        IRevNetDownsampling(legacy_backend=True),
        Concat(dim=1),
        Flatten(),
    ):
        config = json.loads(json.dumps(spec_to_config(spec)))
        assert spec_from_config(config) == spec


def test_a_signature_is_needed_where_the_shape_is_not_in_the_array():
    from flowcore.spec import Context

    ctx = Context(np, {}, {}, jac=True)
    with pytest.raises(FlowError, match="no bound signature"):
        Flatten().inverse(ctx, np.zeros((2, 4)), [])

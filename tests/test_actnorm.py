"""ActNorm: the data-dependent initialisation, its write-back in every backend, FrEIA.

The conformance cases (``conformance/cases/normalization.py``) see ActNorm as a fixed affine
map (marked initialised); this file tests the initialisation itself:

- in the float64 NumPy reference: the first batch, in either direction, sets ``log_scale``
  and ``loc`` to the closed form (mean and Bessel-corrected std per channel over the batch and
  spatial axes), later batches change nothing, a batch of one or a constant channel gives no
  NaN or inf;
- in torch (eager and ``torch.compile``), JAX (the NNX module, eager and under ``nnx.jit``,
  and the pure ``apply`` under ``jax.jit``) and Keras (eager, then ``fit``): after one call
  ``flowcore.get_params`` shows ``initialised = 1`` and the reference's data-derived values,
  and a second call with other data changes nothing; a model saved after the initialisation
  and loaded in any backend never initialises again;
- against FrEIA 0.2 (installed) in float64 with the weights converted, and against a NumPy
  transcription of FrEIA master's ActNorm (shared/anchors/freia.md; vislearn/FrEIA 4212496).

Tolerances: float64 results agree with the reference to 1e-12 (the same operations up to
summation order); float32 ones to 1e-5 relative (a mean, a variance and a log over ~100
values, each a few float32 ulps).
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from selected_backends import require, subject

import flowcore as fc
from flowcore.errors import ParameterError, ShapeError
from flowcore.options import OptionError
from flowcore.transforms.normalization import (
    ActNorm,
    actnorm_params_from_freia,
    actnorm_params_to_freia,
)
from flowcore.tree import build_tree, initial_params

ATOL = 1e-12
TOL = {"float32": {"rtol": 1e-5, "atol": 1e-5}, "float64": {"rtol": 0.0, "atol": 1e-12}}
SHAPES = {"vec": (4,), "img": (3, 4, 5), "seq": (5, 6)}
BACKENDS = ("torch", "jax", "keras")


def _data(shape, batch=16, seed=0):
    """Float64 data with a per-channel offset and spread far from (0, 1)."""
    rng = np.random.default_rng(seed)
    channels = shape[0]
    loc = rng.uniform(-3, 3, channels).reshape((1, channels) + (1,) * (len(shape) - 1))
    spread = rng.uniform(0.2, 4, channels).reshape(loc.shape)
    return loc + spread * rng.standard_normal((batch, *shape))


def _expected(x):
    """The closed form of the initialisation: (log_scale, loc) normalising ``x``."""
    axes = (0, *range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True, ddof=1)
    return -np.log(std), -mean / std


def _reference(shape, data_init=True, seed=0):
    tree = build_tree(ActNorm(data_init=data_init), [shape])
    return tree, fc.Reference(tree, initial_params(tree, seed))


def _moments(y):
    axes = (0, *range(2, y.ndim))
    return y.mean(axis=axes), y.std(axis=axes, ddof=1)


# -- the spec ------------------------------------------------------------------------------


def test_declarations_and_options():
    tree = build_tree(ActNorm(), [(3, 4, 4)])
    specs = tree.param_specs()
    assert specs["log_scale"].shape == specs["loc"].shape == (1, 3, 1, 1)
    assert specs["initialised"].shape == (1,) and not specs["initialised"].trainable
    assert specs["log_scale"].trainable and specs["loc"].trainable
    params = initial_params(tree, 0)
    assert params["initialised"].tolist() == [0.0]
    assert not params["log_scale"].any() and not params["loc"].any()
    assert initial_params(build_tree(ActNorm(data_init=False), [(3,)]), 0)["initialised"] == 1
    with pytest.raises(OptionError, match="data_init"):
        ActNorm(data_init=1)  # type: ignore[arg-type]


def test_a_condition_is_a_shape_error_at_bind_time():
    with pytest.raises(ShapeError, match="ActNorm: takes no condition"):
        build_tree(ActNorm(), [(3,)], [(2,)])
    with pytest.raises(ShapeError, match="ActNorm"):
        build_tree(fc.SequenceINN(ActNorm(), conditions=[0]), [(3,)], [(2,)])


def test_the_spec_serialises():
    from flowcore.serialize import spec_from_config, spec_to_config

    spec = ActNorm(data_init=False)
    assert spec_from_config(spec_to_config(spec)) == spec


# -- the initialisation in the reference ---------------------------------------------------


@pytest.mark.parametrize("shape_name", SHAPES)
def test_first_forward_batch_initialises(shape_name):
    shape = SHAPES[shape_name]
    _, ref = _reference(shape)
    x = _data(shape)
    (y,), log_det = ref([x])
    log_scale, loc = _expected(x)
    np.testing.assert_allclose(ref.params["log_scale"], log_scale, rtol=0, atol=ATOL)
    np.testing.assert_allclose(ref.params["loc"], loc, rtol=0, atol=ATOL)
    assert ref.params["initialised"].tolist() == [1.0]
    mean, std = _moments(y)
    np.testing.assert_allclose(mean, 0.0, atol=ATOL)
    np.testing.assert_allclose(std, 1.0, atol=ATOL)
    pixels = math.prod(shape[1:])
    np.testing.assert_allclose(log_det, np.full(len(x), pixels * log_scale.sum()), atol=ATOL)
    # later batches use the stored values and change nothing
    stored = {k: v.copy() for k, v in ref.params.items()}
    x2 = _data(shape, seed=5)
    (y2,), log_det2 = ref([x2])
    for k, v in stored.items():
        np.testing.assert_array_equal(ref.params[k], v)
    np.testing.assert_allclose(y2, x2 * np.exp(log_scale) + loc, rtol=0, atol=ATOL)
    (x_back,), log_det_back = ref([y2], rev=True)
    np.testing.assert_allclose(x_back, x2, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det_back, -log_det2, atol=ATOL)


def test_first_inverse_batch_initialises_as_freia_does():
    """The first call's input sets the parameters that would normalise it going forward,
    whichever way the call runs."""
    shape = SHAPES["img"]
    _, ref = _reference(shape)
    y = _data(shape)
    (x,), log_det = ref([y], rev=True)
    log_scale, loc = _expected(y)
    np.testing.assert_allclose(ref.params["log_scale"], log_scale, rtol=0, atol=ATOL)
    np.testing.assert_allclose(ref.params["loc"], loc, rtol=0, atol=ATOL)
    np.testing.assert_allclose(x, (y - loc) * np.exp(-log_scale), rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, -20 * log_scale.sum(), atol=ATOL)


def test_jac_false_gives_zero_log_det_and_still_initialises():
    _, ref = _reference((3,))
    x = _data((3,))
    _, log_det = ref([x], jac=False)
    assert log_det.shape == (len(x),) and not log_det.any()
    assert ref.params["initialised"].tolist() == [1.0]


def test_batch_of_one_vector_is_finite():
    """A single sample has std 0 (FrEIA's README example gives NaN): scale 1, centred."""
    _, ref = _reference((4,))
    x = _data((4,), batch=1)
    (y,), log_det = ref([x])
    assert np.isfinite(y).all() and np.isfinite(log_det).all()
    np.testing.assert_array_equal(ref.params["log_scale"], np.zeros((1, 4)))
    np.testing.assert_allclose(ref.params["loc"], -x, rtol=0, atol=ATOL)
    np.testing.assert_allclose(y, 0.0, atol=ATOL)
    np.testing.assert_array_equal(log_det, [0.0])


def test_batch_of_one_image_uses_its_pixels():
    _, ref = _reference((2, 3, 3))
    x = _data((2, 3, 3), batch=1)
    (y,), _ = ref([x])
    log_scale, loc = _expected(x)
    np.testing.assert_allclose(ref.params["log_scale"], log_scale, rtol=0, atol=ATOL)
    mean, std = _moments(y)
    np.testing.assert_allclose(std, 1.0, atol=ATOL)


def test_a_constant_channel_gets_scale_one():
    _, ref = _reference((3, 2, 2))
    x = _data((3, 2, 2))
    x[:, 1] = 100.0
    (y,), log_det = ref([x])
    assert np.isfinite(y).all() and np.isfinite(log_det).all()
    assert ref.params["log_scale"][0, 1, 0, 0] == 0.0
    np.testing.assert_allclose(ref.params["loc"][0, 1, 0, 0], -100.0, rtol=0, atol=ATOL)
    log_scale, _ = _expected(x[:, [0, 2]])
    np.testing.assert_allclose(ref.params["log_scale"][:, [0, 2]], log_scale, atol=ATOL)


def test_no_data_init_starts_as_the_identity_and_stays():
    _, ref = _reference((3, 2, 2), data_init=False)
    x = _data((3, 2, 2))
    (y,), log_det = ref([x])
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(log_det, np.zeros(len(x)))
    assert not ref.params["log_scale"].any() and ref.params["initialised"].tolist() == [1.0]


def test_a_loaded_flag_is_honoured():
    """set_params with initialised = 1 keeps the given values: nothing re-initialises."""
    tree, _ = _reference((3,))
    params = initial_params(tree, 0)
    params.update(log_scale=np.full((1, 3), 0.3), loc=np.full((1, 3), -0.2))
    params["initialised"] = np.ones(1)
    ref = fc.Reference(tree, params)
    x = _data((3,))
    (y,), _ = ref([x])
    np.testing.assert_allclose(y, x * np.exp(0.3) - 0.2, rtol=0, atol=ATOL)
    np.testing.assert_array_equal(ref.params["log_scale"], np.full((1, 3), 0.3))


def test_reference_runs_under_array_api_strict():
    xps = pytest.importorskip("array_api_strict", reason="checks strict Array API use")
    from flowcore.executor import functional_call
    from flowcore.namespace import extend

    xp = extend(
        xps,
        linear=lambda x, w, b: x @ xps.matrix_transpose(w) + b,
        conv2d=None,
        relu=None,
        leaky_relu=None,
    )
    for shape, batch in (((3,), 1), ((3, 4, 5), 2)):
        tree = build_tree(ActNorm(), [shape])
        params = {k: xps.asarray(v) for k, v in initial_params(tree, 0).items()}
        x = _data(shape, batch=batch)
        (y,), log_det, updates = functional_call(tree, xp, params, [xps.asarray(x)])
        want = fc.Reference(tree, initial_params(tree, 0))([x])[0][0]
        np.testing.assert_allclose(np.asarray(y), want, rtol=0, atol=ATOL)
        assert set(updates) == {"log_scale", "loc", "initialised"}


# -- FrEIA parametrisations ------------------------------------------------------------------


def _freia_master(state, x, rev=False):
    """FrEIA master's ActNorm (vislearn/FrEIA 4212496, FrEIA/modules/invertible_resnet.py)
    transcribed in NumPy: returns the output, the log-det and the state after the call."""
    state = dict(state)
    if not state["is_initialized"]:
        axes = (0, *range(2, x.ndim))
        state["loc"] = x.mean(axis=axes, keepdims=True)
        state["log_scale"] = np.log(x.std(axis=axes, keepdims=True, ddof=1))
        state["is_initialized"] = np.array(True)
    scale, pixels = np.exp(state["log_scale"]), math.prod(x.shape[2:])
    log_det = state["log_scale"].sum() * pixels
    if rev:
        return scale * x + state["loc"], np.full(len(x), log_det), state
    return (x - state["loc"]) / scale, np.full(len(x), -log_det), state


def test_conversions_round_trip():
    rng = np.random.default_rng(3)
    canonical = {
        "log_scale": rng.standard_normal((1, 3, 1, 1)),
        "loc": rng.standard_normal((1, 3, 1, 1)),
        "initialised": np.ones(1),
    }
    for version in ("0.2", "master"):
        state = actnorm_params_to_freia(canonical, version)
        back = actnorm_params_from_freia(state, version)
        detected = actnorm_params_from_freia(state)  # the version read from the keys
        for k, v in canonical.items():
            np.testing.assert_allclose(back[k], v, rtol=0, atol=ATOL)
            np.testing.assert_array_equal(detected[k], back[k])
    state = actnorm_params_to_freia(canonical, "0.2")
    np.testing.assert_array_equal(state["scale"], canonical["log_scale"])  # the same form
    prefixed = {f"module_list.2.{k}": v for k, v in state.items()}
    got = actnorm_params_from_freia(prefixed, prefix="module_list.2.")
    np.testing.assert_array_equal(got["loc"], canonical["loc"])


def test_conversion_errors():
    with pytest.raises(ParameterError, match="cannot tell the FrEIA version"):
        actnorm_params_from_freia({"weight": np.zeros(3)})
    with pytest.raises(ParameterError, match="needs"):
        actnorm_params_from_freia({"scale": np.zeros((1, 3))}, "0.2")
    with pytest.raises(ParameterError, match="version"):
        state = {"scale": np.zeros(1), "bias": np.zeros(1)}
        actnorm_params_from_freia(state, "1.0")  # type: ignore[arg-type]
    uninitialised = {
        "log_scale": np.zeros((1, 2)),
        "loc": np.zeros((1, 2)),
        "initialised": np.zeros(1),
    }
    with pytest.raises(ParameterError, match="uninitialised"):
        actnorm_params_to_freia(uninitialised, "0.2")
    assert not actnorm_params_to_freia(uninitialised, "master")["is_initialized"]


def test_uninitialised_master_state_initialises_on_the_first_batch():
    garbage = {  # what torch.empty may hold
        "log_scale": np.full((1, 3), 1e30),
        "loc": np.full((1, 3), np.nan),
        "is_initialized": np.array(False),
    }
    params = actnorm_params_from_freia(garbage)
    assert params["initialised"].tolist() == [0.0] and np.isfinite(params["loc"]).all()
    tree, _ = _reference((3,))
    ref = fc.Reference(tree, params)
    x = _data((3,))
    (y,), log_det = ref([x])
    want, want_log_det, _ = _freia_master(garbage, x)
    np.testing.assert_allclose(y, want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, want_log_det, rtol=0, atol=ATOL)


@pytest.mark.parametrize("shape_name", ["vec", "img"])
@pytest.mark.parametrize("rev", [False, True], ids=["forward", "inverse"])
def test_against_freia_master_transcription(shape_name, rev):
    shape = SHAPES[shape_name]
    rng = np.random.default_rng(4)
    affine = (1, shape[0]) + (1,) * (len(shape) - 1)
    state = {
        "log_scale": 0.5 * rng.standard_normal(affine),
        "loc": rng.standard_normal(affine),
        "is_initialized": np.array(True),
    }
    tree, _ = _reference(shape)
    ref = fc.Reference(tree, actnorm_params_from_freia(state, "master"))
    x = _data(shape)
    (y,), log_det = ref([x], rev=rev)
    want, want_log_det, _ = _freia_master(state, x, rev)
    np.testing.assert_allclose(y, want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, want_log_det, rtol=0, atol=ATOL)
    # and the initialisation from the same first batch
    _, fresh = _reference(shape)
    empty = {**state, "is_initialized": np.array(False)}
    (y,), log_det = fresh([x], rev=rev)
    want, want_log_det, after = _freia_master(empty, x, rev)
    np.testing.assert_allclose(y, want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, want_log_det, rtol=0, atol=ATOL)
    converted = actnorm_params_from_freia(after, "master")
    for k in ("log_scale", "loc"):
        np.testing.assert_allclose(fresh.params[k], converted[k], rtol=0, atol=ATOL)


def _freia_02(shape, scale=None, bias=None):
    torch = pytest.importorskip("torch", reason="FrEIA runs on PyTorch")
    pytest.importorskip("FrEIA", reason="compares with FrEIA 0.2, the release on PyPI")
    import FrEIA.modules as Fm

    module = Fm.ActNorm([shape]).double()
    if scale is not None:
        module.load_state_dict(  # loading marks it initialised, as a checkpoint does
            {"scale": torch.tensor(scale), "bias": torch.tensor(bias)}
        )
    return torch, module


@pytest.mark.parametrize("shape_name", ["vec", "img"])
@pytest.mark.parametrize("rev", [False, True], ids=["forward", "inverse"])
def test_against_freia_02_with_weights_copied(shape_name, rev):
    shape = SHAPES[shape_name]
    rng = np.random.default_rng(6)
    affine = (1, shape[0]) + (1,) * (len(shape) - 1)
    torch, module = _freia_02(
        shape, 0.5 * rng.standard_normal(affine), rng.standard_normal(affine)
    )
    tree, _ = _reference(shape)
    ref = fc.Reference(tree, actnorm_params_from_freia(module.state_dict(), "0.2"))
    x = _data(shape)
    (y,), log_det = ref([x], rev=rev)
    with torch.no_grad():
        (want,), want_log_det = module([torch.tensor(x)], rev=rev)
    np.testing.assert_allclose(y, want.numpy(), rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, want_log_det.numpy(), rtol=0, atol=ATOL)


@pytest.mark.parametrize("shape_name", ["vec", "img"])
@pytest.mark.parametrize("rev", [False, True], ids=["forward", "inverse"])
def test_initialisation_matches_freia_02(shape_name, rev):
    shape = SHAPES[shape_name]
    torch, module = _freia_02(shape)
    _, ref = _reference(shape)
    x = _data(shape)
    (y,), log_det = ref([x], rev=rev)
    with torch.no_grad():
        (want,), want_log_det = module([torch.tensor(x)], rev=rev)
    np.testing.assert_allclose(y, want.numpy(), rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, want_log_det.numpy(), rtol=0, atol=ATOL)
    converted = actnorm_params_from_freia(module.state_dict())
    for k in ("log_scale", "loc"):
        np.testing.assert_allclose(ref.params[k], converted[k], rtol=0, atol=ATOL)


def test_freia_02_gives_nan_on_a_batch_of_one_where_flowcore_does_not():
    torch, module = _freia_02((3,))
    x = _data((3,), batch=1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # FrEIA's own std() of one sample
        (want,), _ = module([torch.tensor(x)])
    assert torch.isnan(want).all()  # FrEIA's README example (issues #76, #89, #113)
    _, ref = _reference((3,))
    assert np.isfinite(ref([x])[0][0]).all()


# -- the write-back in each backend ----------------------------------------------------------


def _uses_jax(backend):
    if backend == "jax":
        return True
    if backend == "keras":
        keras = pytest.importorskip("keras", reason="the keras backend needs keras")
        return bool(keras.backend.backend() == "jax")
    return False


@pytest.fixture
def x64_for(request) -> Iterator[tuple[tuple[str, ...], str]]:
    """``(backends, dtype)``, with 64-bit JAX enabled meanwhile for a float64 test that runs
    on JAX (the jax backend or Keras on JAX), as tests/test_jax_backend.py does; the
    process-wide flag is restored after."""
    backends, dtype = request.param
    if dtype != "float64" or not any(_uses_jax(b) for b in backends):
        yield request.param
        return
    jax = pytest.importorskip("jax", reason="64-bit JAX for a float64 test needs jax")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield request.param
    finally:
        jax.config.update("jax_enable_x64", before)


def _cases(pairs=False):
    dtypes = ("float32", "float64")
    if pairs:
        return [((a, b), d) for a in BACKENDS for b in BACKENDS for d in dtypes]
    return [((b,), d) for b in BACKENDS for d in dtypes]


def _ids(case):
    backends, dtype = case
    return "-".join((*backends, dtype))


def _rounded(x, dtype):
    return x.astype(dtype).astype(np.float64)


def _spec(shape):
    """An ActNorm with a coupling after it, so that initialisation of a nested block and
    the flag's canonical name under its path ("0.initialised") are exercised."""
    subnet = fc.MLP(hidden=(8,)) if len(shape) == 1 else fc.ConvNet(hidden=(4,))
    return fc.SequenceINN(ActNorm(), fc.AllInOneBlock(subnet=subnet))


def _check_params(got, want, dtype):
    assert got["0.initialised"].tolist() == [1.0]
    for k in ("0.log_scale", "0.loc"):
        np.testing.assert_allclose(got[k], want[k], **TOL[dtype])


def _check_initialised_by_one_call(backend, dtype, shape, rev):
    impl = require(backend)
    model = fc.build(_spec(shape), shape, backend=backend, dtype=dtype, seed=0)
    tree = fc.tree_of(model)
    ref = fc.Reference(tree, fc.get_params(model))
    x = _rounded(_data(shape), dtype)
    ys, log_det = impl.call(model, [impl.to_native(x, dtype, "cpu")], [], rev, True)
    (want,), want_log_det = ref([x], rev=rev)
    after = fc.get_params(model)
    _check_params(after, ref.params, dtype)
    np.testing.assert_allclose(impl.to_numpy(ys[0]), want, **TOL[dtype])
    np.testing.assert_allclose(impl.to_numpy(log_det), want_log_det, **TOL[dtype])
    # other data: the stored values are used and stay
    x2 = _rounded(_data(shape, seed=9), dtype)
    impl.call(model, [impl.to_native(x2, dtype, "cpu")], [], rev, True)
    again = fc.get_params(model)
    for k, v in after.items():
        np.testing.assert_array_equal(again[k], v)


@pytest.mark.parametrize("x64_for", _cases(), ids=_ids, indirect=True)
@pytest.mark.parametrize("shape_name", ["vec", "img"])
def test_one_forward_call_initialises_each_backend(x64_for, shape_name):
    (backend,), dtype = x64_for
    _check_initialised_by_one_call(backend, dtype, SHAPES[shape_name], rev=False)


@pytest.mark.parametrize("x64_for", _cases(), ids=_ids, indirect=True)
def test_one_inverse_call_initialises_each_backend(x64_for):
    (backend,), dtype = x64_for
    impl = require(backend)
    shape = SHAPES["img"]
    model = fc.build(ActNorm(), shape, backend=backend, dtype=dtype)
    ref = fc.Reference(fc.tree_of(model), fc.get_params(model))
    y = _rounded(_data(shape), dtype)
    xs, _ = impl.call(model, [impl.to_native(y, dtype, "cpu")], [], True, True)
    np.testing.assert_allclose(impl.to_numpy(xs[0]), ref([y], rev=True)[0][0], **TOL[dtype])
    got = fc.get_params(model)
    assert got["initialised"].tolist() == [1.0]
    np.testing.assert_allclose(got["log_scale"], ref.params["log_scale"], **TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_of_one_and_constant_channel_are_finite_in_float32(backend):
    impl = require(backend)
    model = fc.build(ActNorm(), (3, 2, 2), backend=backend)
    x = _data((3, 2, 2), batch=1).astype("float32")
    x[:, 1] = 100.0  # float32 rounding leaves its computed std a few ulps above zero
    ys, log_det = impl.call(model, [impl.to_native(x, "float32", "cpu")], [], False, True)
    assert np.isfinite(impl.to_numpy(ys[0])).all() and np.isfinite(impl.to_numpy(log_det)).all()
    params = fc.get_params(model)
    assert params["log_scale"][0, 1, 0, 0] == 0.0 and np.isfinite(params["loc"]).all()
    vector = fc.build(ActNorm(), (3,), backend=backend)
    x = _data((3,), batch=1).astype("float32")
    ys, log_det = impl.call(vector, [impl.to_native(x, "float32", "cpu")], [], False, True)
    np.testing.assert_allclose(impl.to_numpy(ys[0]), 0.0, atol=1e-6)
    assert not fc.get_params(vector)["log_scale"].any()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_sample_is_left_out_of_the_initialisation(backend, bad):
    """The NaN policy in the initialising call: the bad sample's outputs are non-finite,
    the others' are those of the batch without it (float32 rounding), and the stored
    parameters are those of the finite samples alone."""
    impl = require(backend)
    shape = (3, 2, 2)
    x = _data(shape, batch=6).astype("float32")
    x[2, 1, 0, 1] = bad
    model = fc.build(ActNorm(), shape, backend=backend)
    ys, log_det = impl.call(model, [impl.to_native(x, "float32", "cpu")], [], False, True)
    y, log_det = impl.to_numpy(ys[0]), impl.to_numpy(log_det)
    assert not np.isfinite(y[2]).all()
    finite = np.delete(x, 2, axis=0).astype(np.float64)
    log_scale, loc = _expected(finite)
    params = fc.get_params(model)
    np.testing.assert_allclose(params["log_scale"], log_scale, **TOL["float32"])
    np.testing.assert_allclose(params["loc"], loc, **TOL["float32"])
    want = finite * np.exp(log_scale) + loc
    np.testing.assert_allclose(np.delete(y, 2, axis=0), want, **TOL["float32"])
    assert np.isfinite(log_det).all()  # ActNorm's log-det is the same for every sample


def test_a_batch_with_no_finite_sample_initialises_to_the_identity():
    _, ref = _reference((3,))
    (y,), log_det = ref([np.full((4, 3), np.nan)])
    assert np.isnan(y).all()
    assert not ref.params["log_scale"].any() and not ref.params["loc"].any()


@pytest.mark.parametrize("x64_for", _cases(pairs=True), ids=_ids, indirect=True)
def test_saved_after_init_never_reinitialises(x64_for, tmp_path):
    pytest.importorskip("safetensors", reason="flowcore.save writes safetensors")
    (saver, loader), dtype = x64_for
    a, b = require(saver), require(loader)
    shape = SHAPES["img"]
    model = fc.build(_spec(shape), shape, backend=saver, dtype=dtype, seed=0)
    a.call(model, [a.to_native(_rounded(_data(shape), dtype), dtype, "cpu")], [], False, True)
    saved = fc.get_params(model)
    assert saved["0.initialised"].tolist() == [1.0]
    fc.save(model, tmp_path / "actnorm.fc")
    loaded = fc.load(tmp_path / "actnorm.fc", backend=loader)
    x2 = _rounded(_data(shape, seed=11), dtype)
    ys, _ = b.call(loaded, [b.to_native(x2, dtype, "cpu")], [], False, True)
    after = fc.get_params(loaded)
    for k, v in saved.items():
        np.testing.assert_array_equal(after[k], v)
    want = fc.Reference(fc.tree_of(model), saved)([x2])[0][0]
    np.testing.assert_allclose(b.to_numpy(ys[0]), want, **TOL[dtype])


# -- torch ------------------------------------------------------------------------------------


@subject("torch")
def test_torch_trains_from_the_initialising_call():
    torch = pytest.importorskip("torch", reason="the torch backend needs PyTorch")
    shape = SHAPES["vec"]
    model = fc.build(_spec(shape), shape, backend="torch", dtype="float64", seed=0)
    x = torch.tensor(_data(shape, batch=64), requires_grad=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(20):
        z, log_det = model(x)  # the first call initialises, then writes in place
        loss = torch.mean(0.5 * torch.sum(z**2, dim=1) - log_det)
        optimizer.zero_grad()
        loss.backward()
        assert torch.isfinite(x.grad).all()
        if step == 0:
            initialised = fc.get_params(model)
            assert initialised["0.initialised"].tolist() == [1.0]
        optimizer.step()
        losses.append(float(loss.detach()))
    trained = fc.get_params(model)
    assert not np.array_equal(trained["0.log_scale"], initialised["0.log_scale"])
    assert trained["0.initialised"].tolist() == [1.0]
    assert losses[-1] < losses[1]


@subject("torch")
def test_torch_gradients_of_a_batch_of_one_are_finite():
    torch = pytest.importorskip("torch", reason="the torch backend needs PyTorch")
    model = fc.build(ActNorm(), (3,), backend="torch", dtype="float64")
    x = torch.tensor(_data((3,), batch=1), requires_grad=True)
    z, log_det = model(x)
    (torch.sum(z**2) - log_det.sum()).backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("nested", [False, True], ids=["actnorm", "in_sequence"])
@subject("torch")
def test_torch_compile_writes_back(nested):
    """The in-place write-back of the state under ``torch.compile``, for ActNorm alone and
    under a sequence path."""
    torch = pytest.importorskip("torch", reason="the torch backend needs PyTorch")
    shape = SHAPES["img"]
    spec = _spec(shape) if nested else ActNorm()
    model = fc.build(spec, shape, backend="torch", dtype="float64", seed=0)
    ref = fc.Reference(fc.tree_of(model), fc.get_params(model))
    compiled = torch.compile(model)
    x = _data(shape)
    z, log_det = compiled(torch.tensor(x))
    (want,), want_log_det = ref([x])
    np.testing.assert_allclose(z.detach().numpy(), want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det.detach().numpy(), want_log_det, rtol=0, atol=ATOL)
    after = fc.get_params(model)
    prefix = "0." if nested else ""
    assert after[prefix + "initialised"].tolist() == [1.0]
    for k in ("log_scale", "loc"):
        np.testing.assert_allclose(after[prefix + k], ref.params[prefix + k], rtol=0, atol=ATOL)
    compiled(torch.tensor(_data(shape, seed=3)))
    for k, v in fc.get_params(model).items():
        np.testing.assert_array_equal(v, after[k])


# -- JAX ------------------------------------------------------------------------------------


@pytest.fixture
def x64():
    jax = pytest.importorskip("jax", reason="the jax backend needs JAX")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def test_nnx_jit_writes_back(x64):
    require("jax")
    import jax.numpy as jnp
    from flax import nnx

    shape = SHAPES["img"]
    model = fc.build(_spec(shape), shape, backend="jax", dtype="float64", seed=0)
    ref = fc.Reference(fc.tree_of(model), fc.get_params(model))
    step = nnx.jit(lambda m, x: m(x))
    x = _data(shape)
    z, log_det = step(model, jnp.asarray(x))
    (want,), want_log_det = ref([x])
    np.testing.assert_allclose(np.asarray(z), want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(np.asarray(log_det), want_log_det, rtol=0, atol=ATOL)
    after = fc.get_params(model)
    _check_params(after, ref.params, "float64")
    step(model, jnp.asarray(_data(shape, seed=3)))
    for k, v in fc.get_params(model).items():
        np.testing.assert_array_equal(v, after[k])


def test_jax_pure_apply_returns_the_updates(x64):
    require("jax")
    import jax
    import jax.numpy as jnp
    from flowcore.backends.jax import functional

    shape = SHAPES["img"]
    model = fc.build(_spec(shape), shape, backend="jax", dtype="float64", seed=0)
    ref = fc.Reference(fc.tree_of(model), fc.get_params(model))
    apply, params, state = functional(model, with_state=True)
    assert "0.initialised" in state and "0.log_scale" in params
    jitted = jax.jit(apply, static_argnames=("rev", "jac", "mutable"))
    x = _data(shape)
    (z, log_det), updates = jitted(params, jnp.asarray(x), state=state, mutable=True)
    (want,), want_log_det = ref([x])
    np.testing.assert_allclose(np.asarray(z), want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(np.asarray(log_det), want_log_det, rtol=0, atol=ATOL)
    assert set(updates) == {"0.log_scale", "0.loc", "0.initialised"}
    _check_params({k: np.asarray(v) for k, v in updates.items()}, ref.params, "float64")
    # merged back, a second call with other data returns the same values
    params = {**params, **{k: v for k, v in updates.items() if k in params}}
    state = {**state, **{k: v for k, v in updates.items() if k in state}}
    _, again = jitted(params, jnp.asarray(_data(shape, seed=3)), state=state, mutable=True)
    for k, v in updates.items():
        np.testing.assert_array_equal(np.asarray(again[k]), np.asarray(v))
    # without mutable the result alone; the model itself is untouched by the pure form
    z2, _ = jitted(params, jnp.asarray(x), state=state)
    assert z2.shape == z.shape
    assert fc.get_params(model)["0.initialised"].tolist() == [0.0]


def test_jax_gradients_of_the_initialising_call_are_finite(x64):
    require("jax")
    import jax
    import jax.numpy as jnp
    from flowcore.backends.jax import functional

    apply, params, state = functional(
        fc.build(ActNorm(), (3,), backend="jax", dtype="float64"), with_state=True
    )

    def loss(p, x):
        z, log_det = apply(p, x, state=state)
        return jnp.sum(z**2) - jnp.sum(log_det)

    x = jnp.asarray(_data((3,), batch=1))
    grads = jax.grad(loss, argnums=(0, 1))(params, x)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


def test_nnx_training_step_initialises_then_trains():
    require("jax")
    optax = pytest.importorskip("optax", reason="trains with optax")
    import jax.numpy as jnp
    from flax import nnx

    shape = SHAPES["vec"]
    model = fc.build(_spec(shape), shape, backend="jax", seed=0)
    x = jnp.asarray(_data(shape, batch=64), jnp.float32)
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    def loss(m):
        z, log_det = m(x)
        return jnp.mean(0.5 * jnp.sum(z**2, axis=1) - log_det)

    @nnx.jit
    def step(m, o):
        value, grads = nnx.value_and_grad(loss)(m)
        o.update(m, grads)
        return value

    first = float(step(model, optimizer))
    assert fc.get_params(model)["0.initialised"].tolist() == [1.0]
    for _ in range(20):
        last = float(step(model, optimizer))
    assert math.isfinite(first) and last < first


# -- Keras -------------------------------------------------------------------------------------


def test_keras_fit_trains_after_a_first_call():
    require("keras")
    import flowcore.backends.keras as fk
    import keras

    keras.utils.set_random_seed(0)
    shape = SHAPES["vec"]
    flow = fc.build(_spec(shape), shape, backend="keras", seed=0)
    x = _data(shape, batch=256).astype("float32")
    flow(x[:64])  # the data-dependent initialisation, eagerly
    initialised = fc.get_params(flow)
    assert initialised["0.initialised"].tolist() == [1.0]
    model = fk.DensityModel(flow)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x, batch_size=64, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    trained = fc.get_params(flow)
    assert trained["0.initialised"].tolist() == [1.0]
    assert not np.array_equal(trained["0.log_scale"], initialised["0.log_scale"])
    assert np.isfinite(trained["0.log_scale"]).all()


@pytest.mark.parametrize("how", ["fit", "predict"])
@subject("keras")
def test_keras_compiled_first_call_initialises(how):
    """``fit``/``predict`` as the very first call initialise as an eager call does (under
    Keras' JAX backend, DensityModel runs the first batch eagerly: its compiled steps would
    drop the assignments to trainable weights)."""
    require("keras")
    import flowcore.backends.keras as fk
    import keras

    x = _data((3,), batch=64).astype("float32")
    flow = fc.build(ActNorm(), (3,), backend="keras")
    ref = fc.Reference(fc.tree_of(flow), fc.get_params(flow))
    ref([_rounded(x, "float32")])
    model = fk.DensityModel(flow)
    if how == "fit":
        model.compile(optimizer=keras.optimizers.SGD(0.0))  # lr 0: only the init moves them
        model.fit(x, batch_size=64, epochs=1, shuffle=False, verbose=0)
    else:
        model.predict(x, batch_size=64, verbose=0)
    got = fc.get_params(flow)
    assert got["initialised"].tolist() == [1.0]
    np.testing.assert_allclose(got["log_scale"], ref.params["log_scale"], **TOL["float32"])


def test_module_names_are_exported():
    module = importlib.import_module("flowcore.transforms.normalization")
    assert set(module.__all__) == {
        "ActNorm",
        "actnorm_params_from_freia",
        "actnorm_params_to_freia",
    }

"""Contract v2 in every installed backend: state written back by a call, random draws from
a generator the backend owns, ``jac=False``, bool flags, and the short form.

Backends: ``FLOWCORE_TEST_BACKENDS`` (comma-separated), default torch, jax and keras, each
skipped with the reason when it is not installed. The transforms here shift, copy or double
their input, so float32 results match the float64 reference to 1e-6 relative (one rounding
of O(1) values).
"""

from __future__ import annotations

import numpy as np
import pytest
from contract_transforms import LOG_DET_WORK, CenterOnFirstBatch, CountsLogDetWork, NoisyLogDet
from selected_backends import BACKENDS, subject

import flowcore as fc

TOL = {"rtol": 1e-6, "atol": 1e-6}


def _call(name, model, x, rev=False, jac=True):
    backend = fc.get_backend(name)
    (y,), log_det = backend.call(model, [backend.to_native(x, "float32", "cpu")], [], rev, jac)
    return backend.to_numpy(y), backend.to_numpy(log_det)


def _batches():
    rng = np.random.default_rng(0)
    return rng.normal(3.0, 2.0, (16, 4)), rng.normal(-1.0, 1.0, (16, 4))


# -- state written back -------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
def test_a_call_initialises_state_once_and_the_reference_agrees(name):
    model = fc.build(CenterOnFirstBatch(), (4,), backend=name, seed=0)
    reference = fc.reference(model)
    first, second = _batches()
    y, _ = _call(name, model, first)
    (y_ref,), _ = reference([first])
    np.testing.assert_allclose(y, y_ref, **TOL)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-5)  # centred on its own batch
    params = fc.get_params(model)
    np.testing.assert_allclose(params["shift"], first.mean(axis=0, keepdims=True), **TOL)
    assert params["initialised"].tolist() == [1.0] and params["calls"].tolist() == [1.0]
    y2, _ = _call(name, model, second)  # the shift stays the first batch's
    np.testing.assert_allclose(y2, second - params["shift"], **TOL)
    assert fc.get_params(model)["calls"].tolist() == [2.0]


@pytest.mark.parametrize("name", BACKENDS)
def test_state_inside_a_sequence_is_written_back_at_every_depth(name):
    spec = fc.SequenceINN(CenterOnFirstBatch(), fc.Inverse(CenterOnFirstBatch()))
    model = fc.build(spec, (4,), backend=name, seed=0)
    first, _ = _batches()
    _call(name, model, first)
    params = fc.get_params(model)
    assert params["0.initialised"].tolist() == params["1.inner.initialised"].tolist() == [1.0]
    # the second block saw the first block's centred output
    np.testing.assert_allclose(params["1.inner.shift"], 0.0, atol=1e-5)


@pytest.mark.parametrize("name", BACKENDS)
def test_a_loaded_checkpoint_keeps_its_state(name, tmp_path):
    model = fc.build(CenterOnFirstBatch(), (4,), backend=name, seed=0)
    first, second = _batches()
    _call(name, model, first)
    fc.save(model, tmp_path / "m.fc")
    loaded = fc.load(tmp_path / "m.fc", backend=name)
    y, _ = _call(name, loaded, second)  # not re-initialised from `second`
    np.testing.assert_allclose(y, second - first.mean(axis=0, keepdims=True), **TOL)


@subject("jax")
def test_jax_state_under_nnx_jit_and_in_the_pure_form():
    jax = pytest.importorskip("jax", reason="needs JAX")
    nnx = pytest.importorskip("flax.nnx", reason="needs Flax NNX")
    import flowcore.backends.jax as fj

    first, second = (jax.numpy.asarray(b, dtype="float32") for b in _batches())
    model = fc.build(CenterOnFirstBatch(), (4,), backend="jax", seed=0)
    apply, params, state = fj.functional(model, with_state=True)
    step = jax.jit(apply, static_argnames=("rev", "jac", "mutable"))
    (z, _), updates = step(params, first, state=state, mutable=True)
    np.testing.assert_allclose(np.asarray(updates["shift"]), first.mean(0, keepdims=True), **TOL)
    assert float(updates["initialised"][0]) == 1.0
    assert fc.get_params(model)["initialised"].tolist() == [0.0]  # the pure form wrote nothing
    state = {**state, **{k: v for k, v in updates.items() if k in state}}
    params = {**params, **{k: v for k, v in updates.items() if k in params}}
    (z2, _), _ = step(params, second, state=state, mutable=True)
    np.testing.assert_allclose(np.asarray(z2), second - first.mean(0, keepdims=True), **TOL)

    @nnx.jit
    def call(m, x):
        return m(x)

    call(model, first)
    np.testing.assert_allclose(
        fc.get_params(model)["shift"], np.asarray(first).mean(0, keepdims=True), **TOL
    )


@subject("torch")
def test_torch_state_under_compile():
    torch = pytest.importorskip("torch", reason="needs PyTorch")
    model = fc.build(CenterOnFirstBatch(), (4,), backend="torch", seed=0)
    compiled = torch.compile(model, backend="eager")
    first, second = (torch.tensor(b, dtype=torch.float32) for b in _batches())
    compiled(first)
    z, _ = compiled(second)
    want = second - first.mean(0, keepdim=True)
    np.testing.assert_allclose(z.detach().numpy(), want.numpy(), **TOL)


# -- randomness ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
def test_random_draws_are_reproducible_from_the_build_seed(name):
    x = np.zeros((2, 3))
    draws = []
    for seed in (5, 5, 6):
        model = fc.build(NoisyLogDet(), (3,), backend=name, seed=seed)
        draws.append([_call(name, model, x)[1][0] for _ in range(2)])
    assert draws[0] == draws[1]  # same seed, same sequence
    assert draws[0][0] != draws[0][1]  # a fresh draw per call
    assert draws[0] != draws[2]  # another seed, another sequence


@subject("jax")
def test_the_jax_pure_form_draws_from_the_key_it_is_given():
    jax = pytest.importorskip("jax", reason="needs JAX")
    import flowcore.backends.jax as fj

    apply, params = fj.init(NoisyLogDet(), (3,), seed=0)
    x = jax.numpy.zeros((2, 3))
    with pytest.raises(fc.FlowError, match="key="):
        apply(params, x)
    a = apply(params, x, key=jax.random.key(1))[1]
    b = apply(params, x, key=jax.random.key(1))[1]
    c = apply(params, x, key=jax.random.key(2))[1]
    assert float(a[0]) == float(b[0]) != float(c[0])


def test_the_reference_draws_from_its_seed():
    tree = fc.build_tree(NoisyLogDet(), [(3,)])
    x = np.zeros((2, 3))
    runs = [fc.Reference(tree, {}, seed=s)([x])[1][0] for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]


# -- jac and flags ------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
def test_jac_false_gives_zeros_and_skips_the_log_det_work(name):
    model = fc.build(fc.SequenceINN(CountsLogDetWork(), CountsLogDetWork()), (3,), backend=name)
    x = np.ones((2, 3))
    before = LOG_DET_WORK["count"]
    y, log_det = _call(name, model, x, jac=False)
    assert LOG_DET_WORK["count"] == before  # neither block computed a log-det
    np.testing.assert_array_equal(log_det, np.zeros(2))
    np.testing.assert_allclose(y, 4 * x)
    _, log_det = _call(name, model, x, jac=True)
    np.testing.assert_allclose(log_det, 6 * np.log(2.0) * np.ones(2), **TOL)
    assert LOG_DET_WORK["count"] == before + 2


def test_jac_false_gives_zeros_for_a_coupling_block_too():
    spec = fc.AllInOneBlock(subnet=fc.MLP(hidden=(4,), zero_init_last=False))
    ref = fc.Reference(
        fc.build_tree(spec, [(4,)]), fc.initial_params(fc.build_tree(spec, [(4,)]), 0)
    )
    x = np.random.default_rng(0).standard_normal((3, 4))
    (y,), log_det = ref([x], jac=False)
    (y_jac,), log_det_jac = ref([x])
    np.testing.assert_array_equal(y, y_jac)
    np.testing.assert_array_equal(log_det, np.zeros(3))
    assert np.abs(log_det_jac).min() > 0


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(("rev", "jac"), [("False", True), (False, 1), (0, True), (None, True)])
def test_rev_and_jac_must_be_bools(name, rev, jac):
    model = fc.build(CountsLogDetWork(), (3,), backend=name)
    with pytest.raises(TypeError, match="must be a bool"):
        _call(name, model, np.ones((2, 3)), rev=rev, jac=jac)


def test_the_reference_refuses_non_bool_flags():
    tree = fc.build_tree(CountsLogDetWork(), [(3,)])
    with pytest.raises(TypeError, match="rev must be a bool, got str 'False'"):
        fc.Reference(tree, {})([np.ones((2, 3))], rev="False")

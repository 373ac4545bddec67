"""gyoza's disentangling training: SupervisedFactorLoss, disentangling_loss and Keras'
DisentanglingFlowModel, in every selected backend.

The oracle is a float64 NumPy transcription of gyoza 0.3.0's ``SupervisedFactorLoss.call``
(its loop over factors, its clip, its terms in its order). Every backend computes the same
float64 operations in the same order up to the summation order of a reduction over at most
a dozen terms, so they agree to ~1e-15 relative; 1e-12 leaves room for that and nothing else.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from selected_backends import BACKENDS, subject

import flowcore as fc
from flowcore.backend import load_backend
from flowcore.errors import ShapeError
from flowcore.options import OptionError

# gyoza's unit test (unit_tests/modelling/losses_test.py::test_compute), float32 (Keras floatx)
GYOZA_DIMS = [2, 1, 3]
GYOZA_INPUTS = {
    "z_a": [[3, 6, 8, 4, 6, 2], [4, 8, 7, 6, 5, 9], [6, 8, 5, 6, 3, 2]],
    "z_b": [[3, 6, 5, 7, 8, 4], [9, 7, 8, 5, 7, 4], [9, 7, 2, 5, 3, 6]],
    "j_a": [4, 6, 7],
    "j_b": [8, 4, 2],
    "y": [[0, 1, 0], [0, 0, 1], [1, 0, 1]],
}
GYOZA_VALUE = 5428047.5  # float32: y = 1 clips to float32(1 - 1e-6), var ~ 1.9e-6
GYOZA_VALUE_F64 = 5500127.566261735  # the same inputs in float64

SELECTED = [p.values[0] for p in BACKENDS]


def gyoza_loss(dims, z_a, z_b, j_a, j_b, y, dtype=np.float64):
    """gyoza 0.3.0's SupervisedFactorLoss.call, transcribed to NumPy."""
    z_a, z_b, j_a, j_b, y = (np.asarray(a, dtype) for a in (z_a, z_b, j_a, j_b, y))
    masks = np.zeros((len(dims), sum(dims)), dtype)
    total = 0
    for u, count in enumerate(dims):
        masks[u, total : total + count] = 1
        total += count
    y_n = np.zeros_like(z_a)
    for f in range(y.shape[1]):
        y_n += masks[f : f + 1] * y[:, f : f + 1]
    y_n = np.clip(y_n, dtype(-1 + 1e-6), dtype(1 - 1e-6))
    var = dtype(1.0) - np.square(y_n)
    diff = z_b - y_n * z_a
    term_1 = dtype(0.5) * np.sum(np.square(z_a), axis=1)
    term_2 = dtype(0.5) * np.sum(np.square(diff) / var + np.log(var), axis=1)
    return np.mean(term_1 + term_2 - (j_a + j_b))


@pytest.fixture
def x64():
    """64-bit JAX (also under Keras-on-JAX) for one test, restored afterwards."""
    try:
        import jax
    except ImportError:
        yield
        return
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def _xp(backend: str):
    return importlib.import_module(f"flowcore.backends.{backend}.namespace").XP


def _random_inputs(seed: int = 0, batch: int = 7, dims=(2, 1, 3)):
    rng = np.random.default_rng(seed)
    d = sum(dims)
    y = rng.uniform(-1, 1, (batch, len(dims)))
    y[0, 0], y[1, 1], y[2, 2], y[3, :] = 1.0, -1.0, 1.0, 0.0  # exactly ±1: clipped
    return {
        "z_a": rng.standard_normal((batch, d)),
        "z_b": rng.standard_normal((batch, d)),
        "j_a": rng.standard_normal(batch),
        "j_b": rng.standard_normal(batch),
        "y": y,
    }


def _args(inputs):
    return [inputs[k] for k in ("z_a", "z_b", "j_a", "j_b", "y")]


# -- the loss --------------------------------------------------------------------------------


def test_factor_masks_are_gyozas():
    loss = fc.SupervisedFactorLoss([1, 2, 3])
    want = [[1, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]]
    np.testing.assert_array_equal(loss.factor_masks, want)
    assert (loss.dimension, loss.factor_count) == (6, 3)
    assert loss == fc.SupervisedFactorLoss((1, 2, 3)) and "[1, 2, 3]" in repr(loss)


def test_the_transcription_reproduces_gyozas_unit_test():
    got = gyoza_loss(GYOZA_DIMS, *_args(GYOZA_INPUTS), dtype=np.float32)
    assert got.dtype == np.float32 and float(got) == GYOZA_VALUE
    np.testing.assert_allclose(gyoza_loss(GYOZA_DIMS, *_args(GYOZA_INPUTS)), GYOZA_VALUE_F64)


def test_numpy_namespace_matches_the_transcription():
    import array_api_compat.numpy as xnp

    loss = fc.SupervisedFactorLoss(GYOZA_DIMS)
    inputs = _random_inputs()
    got = loss(xnp, *(np.asarray(a) for a in _args(inputs)))
    np.testing.assert_allclose(got, gyoza_loss(GYOZA_DIMS, *_args(inputs)), rtol=1e-12)
    f32 = loss(xnp, *(np.asarray(a, np.float32) for a in _args(GYOZA_INPUTS)))
    assert f32.dtype == np.float32 and float(f32) == GYOZA_VALUE


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_loss_matches_gyoza(backend, x64):
    impl, xp = load_backend(backend), _xp(backend)
    loss = fc.SupervisedFactorLoss(GYOZA_DIMS)
    for seed in range(3):
        inputs = _random_inputs(seed)
        native = [impl.to_native(np.asarray(a), "float64", "cpu") for a in _args(inputs)]
        got = float(impl.to_numpy(loss(xp, *native)))
        np.testing.assert_allclose(got, gyoza_loss(GYOZA_DIMS, *_args(inputs)), rtol=1e-12)
    for dtype, want, rtol in (("float32", GYOZA_VALUE, 1e-6), ("float64", GYOZA_VALUE_F64, 1e-12)):
        native = [impl.to_native(np.asarray(a, dtype), dtype, "cpu") for a in _args(GYOZA_INPUTS)]
        np.testing.assert_allclose(float(impl.to_numpy(loss(xp, *native))), want, rtol=rtol)


def test_clipping_keeps_y_of_one_finite_and_matches_gyoza():
    import array_api_compat.numpy as xnp

    loss = fc.SupervisedFactorLoss([2, 2])
    rng = np.random.default_rng(1)
    z_a, z_b = rng.standard_normal((2, 3, 4))
    j = np.zeros(3)
    for value in (1.0, -1.0, 1.5):
        y = np.full((3, 2), value)
        rho = loss.correlations(xnp, z_a, y)
        np.testing.assert_array_equal(np.abs(rho), 1 - 1e-6)
        got = loss(xnp, z_a, z_b, j, j, y)
        assert np.isfinite(got)
        np.testing.assert_allclose(got, gyoza_loss([2, 2], z_a, z_b, j, j, y), rtol=1e-12)


@pytest.mark.parametrize(
    ("dims", "shapes", "match"),
    [
        ([2, 3], [(4, 6), (4, 6), (4,), (4,), (4, 2)], r"\[2, 3\] sum to 5, but the latent has 6"),
        ([3, 3], [(4, 6), (4, 5), (4,), (4,), (4, 2)], r"same shape, got z_a \(4, 6\) and z_b"),
        ([3, 3], [(4, 2, 3), (4, 2, 3), (4,), (4,), (4, 2)], r"must be 2-D .* \(4, 2, 3\)"),
        ([3, 3], [(4, 6), (4, 6), (4,), (4,), (4, 3)], r"y_true must have shape .* got \(4, 3\)"),
        ([3, 3], [(4, 6), (4, 6), (4, 1), (4,), (4, 2)], r"j_a must have shape .* got \(4, 1\)"),
    ],
)
def test_bad_inputs_are_named(dims, shapes, match):
    import array_api_compat.numpy as xnp

    arrays = [np.zeros(s) for s in shapes]
    with pytest.raises(ShapeError, match=match):
        fc.SupervisedFactorLoss(dims)(xnp, *arrays)


@pytest.mark.parametrize("dims", [[], [2, 0], [1.5, 2], "ab", None])
def test_bad_factor_sizes_are_named(dims):
    with pytest.raises(OptionError, match="dimensions_per_factor"):
        fc.SupervisedFactorLoss(dims)


def test_pair_halves_of_different_shapes_are_named():
    with pytest.raises(ShapeError, match=r"z_a \(3, 4\) and z_b \(3, 5\)"):
        fc.disentangling_loss(None, (np.zeros((3, 4)), np.zeros((3, 5))), np.zeros((3, 2)), [2, 2])
    with pytest.raises(ShapeError, match="tuple"):
        fc.disentangling_loss(None, np.zeros((3, 4)), np.zeros((3, 2)), [2, 2])


# -- training -------------------------------------------------------------------------------

D, DIMS = 4, [2, 2]


def _spec() -> fc.SequenceINN:
    shape, axes = (D,), (1,)
    mask = fc.CheckerBoardMask(shape, axes)
    return fc.FlowModel(
        fc.ActivationNormalization(shape, axes),
        fc.AdditiveCoupling(shape, axes, mask),
        fc.CheckerBoardPermutation(shape, axes),
        fc.AdditiveCoupling(shape, axes, mask),
    )


def _pairs(n: int = 64, seed: int = 0, dtype: str = "float32"):
    """Pairs correlated 0.9 on factor 1 (dims 2, 3), independent on the residual (0, 1)."""
    rng = np.random.default_rng(seed)
    z_a = rng.standard_normal((n, D))
    z_b = rng.standard_normal((n, D))
    z_b[:, 2:] = 0.9 * z_a[:, 2:] + np.sqrt(1 - 0.81) * z_b[:, 2:]
    y = np.tile([0.0, 0.9], (n, 1))
    return (2.0 * z_a + 1.0).astype(dtype), (2.0 * z_b + 1.0).astype(dtype), y.astype(dtype)


def _loss_of(backend, flow, z_a, z_b, y):
    impl = load_backend(backend)
    xp = _xp(backend) if backend == "keras" else None
    pair = tuple(impl.to_native(a, str(a.dtype), "cpu") for a in (z_a, z_b))
    return fc.disentangling_loss(flow, pair, impl.to_native(y, str(y.dtype), "cpu"), DIMS, xp=xp)


def test_flow_model_is_sequence_inn():
    assert fc.FlowModel is fc.SequenceINN and isinstance(_spec(), fc.SequenceINN)


@pytest.mark.parametrize("backend", BACKENDS)
def test_disentangling_loss_equals_the_transcription_on_a_flow(backend, x64):
    flow = fc.build(_spec(), (D,), backend=backend, seed=0, dtype="float64")
    z_a, z_b, y = _pairs(dtype="float64")
    ref = fc.reference(flow)
    (ya,), ja = ref([z_a])
    (yb,), jb = ref([z_b])
    got = float(load_backend(backend).to_numpy(_loss_of(backend, flow, z_a, z_b, y)))
    np.testing.assert_allclose(got, gyoza_loss(DIMS, ya, yb, ja, jb, y), rtol=1e-12)


@subject("torch")
def test_torch_training_step_lowers_the_loss():
    if "torch" not in SELECTED:
        pytest.skip("torch is not selected")
    torch = pytest.importorskip("torch")
    flow = fc.build(_spec(), (D,), backend="torch", seed=0)
    z_a, z_b, y = (torch.as_tensor(a) for a in _pairs())
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = fc.disentangling_loss(flow, (z_a, z_b), y, DIMS)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[2] < losses[1] < losses[0], losses


@subject("jax")
def test_jax_training_steps_lower_the_loss():
    if "jax" not in SELECTED:
        pytest.skip("jax is not selected")
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax", reason="trains with optax")
    import flowcore.backends.jax as Fj
    from flax import nnx

    z_a, z_b, y = (jax.numpy.asarray(a) for a in _pairs())
    flow = fc.build(_spec(), (D,), backend="jax", seed=0)
    optimizer = nnx.Optimizer(flow, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        value, grads = nnx.value_and_grad(lambda m: fc.disentangling_loss(m, (z_a, z_b), y, DIMS))(
            model
        )
        optimizer.update(model, grads)
        return value

    nnx_losses = [float(step(flow, optimizer)) for _ in range(3)]
    assert nnx_losses[2] < nnx_losses[1] < nnx_losses[0], nnx_losses

    apply, params = Fj.functional(fc.build(_spec(), (D,), backend="jax", seed=0))
    opt = optax.adam(1e-2)
    state = opt.init(params)

    @jax.jit
    def fstep(p, s):
        value, grads = jax.value_and_grad(
            lambda q: fc.disentangling_loss(lambda x: apply(q, x), (z_a, z_b), y, DIMS)
        )(p)
        updates, s = opt.update(grads, s)
        return optax.apply_updates(p, updates), s, value

    functional_losses = []
    for _ in range(3):
        params, state, value = fstep(params, state)
        functional_losses.append(float(value))
    np.testing.assert_allclose(functional_losses, nnx_losses, rtol=1e-5)


def _torch_and_jax_gradients(z_a, z_b, y):
    torch = pytest.importorskip("torch")
    pytest.importorskip("jax")
    import flowcore.backends.jax as Fj
    import jax

    tflow = fc.build(_spec(), (D,), backend="torch", seed=3, dtype="float64")
    rng = np.random.default_rng(5)
    trainable = dict(tflow.named_parameters())  # not the masks, which the spec fixes
    params = {k: v + 0.1 * rng.standard_normal(v.shape) if k in trainable else v
              for k, v in fc.get_params(tflow).items()}  # fmt: skip
    fc.set_params(tflow, params)
    loss = fc.disentangling_loss(tflow, tuple(map(torch.as_tensor, (z_a, z_b))),
                                 torch.as_tensor(y), DIMS)  # fmt: skip
    loss.backward()
    tgrads = {k: p.grad.numpy() for k, p in tflow.named_parameters()}

    jflow = fc.build(_spec(), (D,), backend="jax", seed=3, dtype="float64")
    fc.set_params(jflow, params)
    apply, jparams = Fj.functional(jflow)

    def jloss(p):
        return fc.disentangling_loss(lambda x: apply(p, x), (z_a, z_b), y, DIMS)

    jgrads = jax.grad(jloss)(jparams)
    return float(loss.detach()), tgrads, jax.jit(jloss), jparams, jgrads


def test_torch_and_jax_gradients_agree_and_match_central_differences(x64):
    if not {"torch", "jax"} <= set(SELECTED):
        pytest.skip("needs torch and jax selected")
    pytest.importorskip("jax")
    import jax

    z_a, z_b, y = _pairs(16, seed=2, dtype="float64")
    tloss, tgrads, jloss, jparams, jgrads = _torch_and_jax_gradients(z_a, z_b, y)
    assert sorted(tgrads) == sorted(jgrads)
    np.testing.assert_allclose(float(jloss(jparams)), tloss, rtol=1e-12)
    for k in tgrads:
        np.testing.assert_allclose(np.asarray(jgrads[k]), tgrads[k], rtol=1e-9, atol=1e-9)
    rng, h = np.random.default_rng(7), 1e-6
    for _ in range(3):  # directional derivatives along random directions of every parameter
        v = {k: rng.standard_normal(np.shape(p)) for k, p in jparams.items()}
        plus = jax.tree.map(lambda p, d: p + h * d, jparams, v)
        minus = jax.tree.map(lambda p, d: p - h * d, jparams, v)
        numeric = (float(jloss(plus)) - float(jloss(minus))) / (2 * h)
        analytic = sum(float(np.sum(tgrads[k] * v[k])) for k in v)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6)


# -- Keras: DisentanglingFlowModel with fit ---------------------------------------------------


@pytest.fixture
def keras_training():
    if "keras" not in SELECTED:
        pytest.skip("keras is not selected")
    keras = pytest.importorskip("keras")
    from flowcore.backends.keras.training import DisentanglingFlowModel

    return keras, DisentanglingFlowModel


def test_keras_fit_trains_on_pairs_and_the_model_reloads(keras_training, tmp_path):
    keras, Model = keras_training
    keras.utils.set_random_seed(0)
    z_a, z_b, y = _pairs(96)
    model = Model(fc.build(_spec(), (D,), backend="keras", seed=0), DIMS)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = float(keras.ops.convert_to_numpy(model.compute_loss(y=y, y_pred=model((z_a, z_b)))))
    history = model.fit((z_a, z_b), y, batch_size=32, epochs=3, verbose=0)
    after = float(keras.ops.convert_to_numpy(model.compute_loss(y=y, y_pred=model((z_a, z_b)))))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert after < before, (before, after)
    out, log_det = model(z_a)  # inference on one batch: the flow's (z, log_det)
    assert tuple(out.shape) == (96, D) and tuple(log_det.shape) == (96,)

    model.save(tmp_path / "pairs.keras")
    loaded = keras.models.load_model(tmp_path / "pairs.keras")
    assert isinstance(loaded, Model) and loaded.factor_loss == model.factor_loss
    for got, want in zip(loaded(z_a), model(z_a), strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got),
                                      keras.ops.convert_to_numpy(want))  # fmt: skip


def test_keras_loss_equals_the_shared_loss(keras_training):
    keras, Model = keras_training
    z_a, z_b, y = _pairs(8)
    flow = fc.build(_spec(), (D,), backend="keras", seed=1)
    model = Model(flow, DIMS)
    got = keras.ops.convert_to_numpy(model.compute_loss(y=y, y_pred=model((z_a, z_b))))
    ref = fc.reference(flow)
    (ya,), ja = ref([z_a.astype("float64")])
    (yb,), jb = ref([z_b.astype("float64")])
    np.testing.assert_allclose(got, gyoza_loss(DIMS, ya, yb, ja, jb, y), rtol=1e-5)


def test_keras_bad_pair_data_is_named(keras_training):
    keras, Model = keras_training
    model = Model(fc.build(_spec(), (D,), backend="keras", seed=0), DIMS)
    z_a, _, y = _pairs(8)
    with pytest.raises(ShapeError, match=r"DisentanglingFlowModel: .* z_a \(8, 4\) and z_b"):
        model((z_a, z_a[:, :3]))
    with pytest.raises(ValueError, match=r"fit\(\(z_a, z_b\), y\)"):
        model.compute_loss(y=None, y_pred=model((z_a, z_a)))
    with pytest.raises(OptionError, match="dimensions_per_factor"):
        Model(fc.build(_spec(), (D,), backend="keras", seed=0), [0, 4])

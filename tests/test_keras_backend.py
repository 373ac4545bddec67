"""The Keras 3 adapter against the float64 NumPy reference, under the process' Keras backend.

KERAS_BACKEND is process-wide, so run this file once per backend::

    KERAS_BACKEND=tensorflow pytest tests/test_keras_backend.py
    KERAS_BACKEND=jax pytest tests/test_keras_backend.py
    KERAS_BACKEND=torch pytest tests/test_keras_backend.py

Tolerances: float32 results are compared with the float64 reference at 1e-4 absolute and
relative. Float32 carries ~1e-7 relative error per op; a few blocks of exp, tanh and matmul
with perturbed weights amplify that to ~1e-6, and log-dets sum D such terms. float64 results
agree to ~1e-13; 1e-9 leaves room for summation order without hiding a float32 step (which
would show as ~1e-7).
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras", reason="the Keras backend tests need keras")

import flowcore.backends.keras as fk  # noqa: E402
from selected_backends import subject  # noqa: E402

import flowcore as fc  # noqa: E402

pytestmark = subject("keras")
from flowcore.errors import BackendError, FlowError, ShapeError  # noqa: E402
from flowcore.namespace import ARRAY_API_USED, EXTRAS, numpy_namespace  # noqa: E402
from flowcore.tree import build_tree, initial_params  # noqa: E402

KERAS_BACKEND = keras.backend.backend()
TOL = {"float32": 1e-4, "float64": 1e-9}

# name -> (spec, input shape, condition shapes)
CASES = {
    "sequence_mlp": (
        fc.SequenceINN(
            fc.AllInOneBlock(subnet=fc.MLP(hidden=(16,))),
            fc.AllInOneBlock(subnet=fc.MLP(hidden=(16,)), permute_soft=True),
            conditions=[None, 0],
        ),
        (5,),
        [(3,)],
    ),
    "householder": (
        fc.AllInOneBlock(
            subnet=fc.MLP(hidden=(8,), activation="tanh"),
            learned_householder_permutation=2,
            reverse_permutation=True,
            global_affine_type="SIGMOID",
        ),
        (4,),
        [],
    ),
    "gin": (
        fc.AllInOneBlock(
            subnet=fc.MLP(hidden=(8,), activation="leaky_relu"),
            gin_block=True,
            soft_clamp="tanh",
        ),
        (6,),
        [],
    ),
    # an image with a vector condition, broadcast over the pixels
    "image": (
        fc.SequenceINN(
            fc.AllInOneBlock(subnet=fc.ConvNet(hidden=(4,))),
            fc.AllInOneBlock(subnet=fc.ConvNet(hidden=(4,)), permute_soft=True),
            conditions=[0, 0],
        ),
        (3, 4, 4),
        [(2,)],
    ),
}


@pytest.fixture
def dtype(request: pytest.FixtureRequest):
    """The model dtype; float64 under Keras' JAX backend turns on 64-bit JAX meanwhile."""
    if request.param == "float64" and KERAS_BACKEND == "jax":
        import jax

        previous = jax.config.read("jax_enable_x64")
        jax.config.update("jax_enable_x64", True)
        yield request.param
        jax.config.update("jax_enable_x64", previous)
    else:
        yield request.param


def data(shape, cond_shapes, batch=7, seed=1, dtype="float32"):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *shape)).astype(dtype)
    return x, [rng.standard_normal((batch, *s)).astype(dtype) for s in cond_shapes]


def perturb(flow, seed=2, scale=0.3):
    """Random trainable parameters, so that no block is the identity it starts as (buffers
    such as rotations stay as they are: the math relies on them being orthogonal)."""
    rng = np.random.default_rng(seed)
    specs = flow.flowcore_tree.param_specs()
    params = fc.get_params(flow)
    for name, p in specs.items():
        if p.trainable:
            params[name] = params[name] + scale * rng.standard_normal(p.shape)
    fc.set_params(flow, params)
    return flow


def build(name, dtype="float32", seed=0):
    spec, shape, conds = CASES[name]
    return perturb(fc.build(spec, shape, conds, backend="keras", seed=seed, dtype=dtype))


def numpy(x):
    return fk.BACKEND.to_numpy(x)


# -- outputs against the reference ------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"], indirect=True)
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(name, dtype):
    flow = build(name, dtype)
    _, shape, conds = CASES[name]
    x, cs = data(shape, conds, dtype=dtype)
    ref = fc.reference(flow)
    (z_ref,), ld_ref = ref([x], cs)
    z, ld = flow(x, cs or None)
    assert keras.backend.standardize_dtype(z.dtype) == dtype
    assert keras.backend.standardize_dtype(ld.dtype) == dtype
    assert tuple(ld.shape) == (x.shape[0],)
    np.testing.assert_allclose(numpy(z), z_ref, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(numpy(ld), ld_ref, rtol=TOL[dtype], atol=TOL[dtype])
    (x_ref,), ld_rev_ref = ref([z_ref], cs, rev=True)
    x_back, ld_rev = flow(z_ref.astype(dtype), cs or None, rev=True)
    np.testing.assert_allclose(numpy(x_back), x_ref, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(numpy(ld_rev), ld_rev_ref, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("name", sorted(CASES))
def test_inverse_round_trip(name):
    flow = build(name)
    _, shape, conds = CASES[name]
    x, cs = data(shape, conds)
    z, ld = flow(x, cs or None)
    x_back, ld_rev = flow(z, cs or None, rev=True)
    # float32 through a forward and an inverse pass: a few ulps of values of order 1
    np.testing.assert_allclose(numpy(x_back), x, atol=1e-5)
    np.testing.assert_allclose(numpy(ld) + numpy(ld_rev), 0.0, atol=1e-5)


def test_list_input_gives_tuple_output():
    flow = build("householder")
    x, _ = data((4,), [])
    z, _ = flow([x])
    assert isinstance(z, tuple) and len(z) == 1
    np.testing.assert_array_equal(numpy(z[0]), numpy(flow(x)[0]))


def test_same_seed_same_initial_parameters():
    spec, shape, conds = CASES["sequence_mlp"]
    flow = fc.build(spec, shape, conds, backend="keras", seed=3)
    expected = initial_params(build_tree(spec, [shape], conds), 3)
    got = fc.get_params(flow)
    assert sorted(got) == sorted(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k], v.astype(np.float32) if v.dtype.kind == "f" else v)
    assert got["0.w_perm"].dtype == np.int64


def test_weights_are_keras_weights():
    flow = build("sequence_mlp")
    specs = flow.flowcore_tree.param_specs()
    assert len(flow.trainable_weights) == sum(p.trainable for p in specs.values())
    assert len(flow.non_trainable_weights) == sum(not p.trainable for p in specs.values())
    paths = {w.path.split("/", 1)[1] for w in flow.weights}
    assert paths == {name.replace(".", "/") for name in specs}  # paths follow the tree


def test_wrong_shape_is_a_clear_error():
    flow = build("householder")
    with pytest.raises(ShapeError, match=r"should have shape \(batch, 4\)"):
        flow(np.zeros((3, 5), "float32"))


@pytest.mark.skipif(KERAS_BACKEND != "jax", reason="only JAX lacks float64 by default")
def test_float64_without_x64_is_a_clear_error():
    import jax

    previous = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", False)  # the conformance suite may have turned it on
    try:
        with pytest.raises(BackendError, match="jax_enable_x64"):
            build("householder", "float64")
    finally:
        jax.config.update("jax_enable_x64", previous)


# -- the namespace ------------------------------------------------------------------------


def _namespace_calls(rng, dtype):
    a = rng.standard_normal((3, 4)).astype(dtype)
    b = rng.standard_normal((3, 4)).astype(dtype)
    sq = rng.standard_normal((4, 4)).astype(dtype)
    img = rng.standard_normal((2, 3, 5, 5)).astype(dtype)
    kernel = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    idx = np.array([2, 0, 3, 1])
    return {
        "abs": lambda xp, t: xp.abs(t(a)),
        "all": lambda xp, t: xp.all(t(img) > -1.0, axis=(1, 2), keepdims=True),
        "argmax": lambda xp, t: xp.argmax(t(a), axis=1),
        "argsort": lambda xp, t: xp.argsort(t(idx)),
        "asarray": lambda xp, t: xp.asarray(a),
        "astype": lambda xp, t: xp.astype(t(idx), getattr(xp, dtype)),
        "atan": lambda xp, t: xp.atan(t(a)),
        "broadcast_to": lambda xp, t: xp.broadcast_to(t(a[:1]), (3, 4)),
        "clip": lambda xp, t: xp.clip(t(a), -0.5, 0.7),
        "concat": lambda xp, t: xp.concat([t(a), t(b)], axis=1),
        "cumulative_sum": lambda xp, t: xp.cumulative_sum(t(a), axis=-1),
        "exp": lambda xp, t: xp.exp(t(a)),
        "expm1": lambda xp, t: xp.expm1(t(a)),
        "isfinite": lambda xp, t: xp.isfinite(t(np.where(a > 0, a, np.nan).astype(dtype))),
        "log": lambda xp, t: xp.log(xp.abs(t(a))),
        "log1p": lambda xp, t: xp.log1p(xp.abs(t(a))),
        "logaddexp": lambda xp, t: xp.logaddexp(t(a), t(b)),
        "matmul": lambda xp, t: xp.matmul(t(sq), xp.reshape(t(img[:, :1, :4, :4]), (2, 4, 4))),
        "max": lambda xp, t: xp.max(t(img), axis=1, keepdims=True),
        "mean": lambda xp, t: xp.mean(t(img), axis=(1, 3), keepdims=True),
        "ones_like": lambda xp, t: xp.ones_like(t(a)),
        "permute_dims": lambda xp, t: xp.permute_dims(t(img), (0, 2, 3, 1)),
        "reshape": lambda xp, t: xp.reshape(t(img), (-1, 3, 25)),
        "sign": lambda xp, t: xp.sign(t(a)),
        "sqrt": lambda xp, t: xp.sqrt(xp.abs(t(a))),
        "sum": lambda xp, t: xp.sum(t(img), axis=(1, 2, 3)),
        "take": lambda xp, t: xp.take(t(a), t(idx), axis=1),
        "tanh": lambda xp, t: xp.tanh(t(a)),
        "tril": lambda xp, t: xp.tril(t(sq), k=-1),
        "triu": lambda xp, t: xp.triu(t(sq), k=1),
        "where": lambda xp, t: xp.where(t(a) > 0, t(a), t(b)),
        "zeros": lambda xp, t: xp.zeros((2, 3), dtype=getattr(xp, dtype)),
        "zeros_like": lambda xp, t: xp.zeros_like(t(a)),
        "linear": lambda xp, t: xp.linear(t(a), t(sq[:2]), t(sq[0, :2])),
        "conv2d": lambda xp, t: xp.conv2d(t(img), t(kernel), t(sq[0]), 1),
        "relu": lambda xp, t: xp.relu(t(a)),
        "leaky_relu": lambda xp, t: xp.leaky_relu(t(a), 0.1),
        "pad2d": lambda xp, t: xp.pad2d(t(img), (1, 0, 2, 3)),
        "sigmoid": lambda xp, t: xp.sigmoid(t(a)),
        "elu": lambda xp, t: xp.elu(t(a), 0.7),
        "softplus": lambda xp, t: xp.softplus(t(a), 1.5, 0.5),
    }


@pytest.mark.parametrize("dtype", ["float32", "float64"], indirect=True)
def test_namespace_matches_numpy_and_keeps_dtype(dtype):
    calls = _namespace_calls(np.random.default_rng(0), dtype)
    names = set(ARRAY_API_USED + EXTRAS) - {"float32", "float64", "int64"}
    assert set(calls) == names
    xp, ref = fk.namespace.XP, numpy_namespace()
    for name, call in calls.items():
        got = call(xp, keras.ops.convert_to_tensor)
        want = call(ref, np.asarray)
        if want.dtype.kind == "f":  # Keras 3.15 demotes float64 in some ops: we must not
            assert keras.backend.standardize_dtype(got.dtype) == dtype, name
        np.testing.assert_allclose(
            numpy(got), want, rtol=TOL[dtype], atol=TOL[dtype], err_msg=name
        )


@pytest.mark.parametrize("dtype", ["float32", "float64"], indirect=True)
def test_namespace_dtypes_compare_with_array_dtypes(dtype):
    xp = fk.namespace.XP
    assert keras.ops.convert_to_tensor(np.zeros(2, dtype)).dtype == getattr(xp, dtype)
    assert xp.zeros((2,), dtype=getattr(xp, dtype)).dtype == getattr(xp, dtype)


# -- symbolic and compiled use ------------------------------------------------------------


def test_functional_model_with_unknown_batch():
    flow = build("sequence_mlp")
    x, cs = data((5,), [(3,)])
    x_in, c_in = keras.Input((5,)), keras.Input((3,))
    z, ld = flow(x_in, c_in)
    assert tuple(z.shape) == (None, 5) and tuple(ld.shape) == (None,)
    model = keras.Model([x_in, c_in], [z, ld])
    z_pred, ld_pred = model.predict([x, cs[0]], verbose=0)  # compiled by TF and JAX
    z_eager, ld_eager = flow(x, cs)
    np.testing.assert_allclose(z_pred, numpy(z_eager), atol=1e-6)
    np.testing.assert_allclose(ld_pred, numpy(ld_eager), atol=1e-6)


def test_compiled_call():
    flow = build("image")
    x, cs = data((3, 4, 4), [(2,)])
    if KERAS_BACKEND == "tensorflow":
        import tensorflow as tf

        spec = [tf.TensorSpec((None, 3, 4, 4)), tf.TensorSpec((None, 2))]
        compiled = tf.function(lambda x, c: flow(x, c, rev=True), input_signature=spec)
    elif KERAS_BACKEND == "jax":
        import jax

        compiled = jax.jit(lambda x, c: flow(x, c, rev=True))
    else:
        pytest.skip(f"Keras' {KERAS_BACKEND} backend runs eagerly")
    x_c, ld_c = compiled(x, cs[0])
    x_e, ld_e = flow(x, cs, rev=True)
    np.testing.assert_allclose(numpy(x_c), numpy(x_e), atol=1e-6)
    np.testing.assert_allclose(numpy(ld_c), numpy(ld_e), atol=1e-5)


# -- saving -------------------------------------------------------------------------------


def test_keras_save_load_round_trip(tmp_path):
    flow = build("image")
    x, cs = data((3, 4, 4), [(2,)])
    x_in, c_in = keras.Input((3, 4, 4)), keras.Input((2,))
    model = keras.Model([x_in, c_in], flow(x_in, c_in))
    model.save(tmp_path / "flow.keras")
    loaded = keras.models.load_model(tmp_path / "flow.keras")
    before, after = model.predict([x, cs[0]], verbose=0), loaded.predict([x, cs[0]], verbose=0)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)  # same weights, same computation
    loaded_flow = next(layer for layer in loaded.layers if isinstance(layer, fk.FlowLayer))
    for k, v in fc.get_params(flow).items():
        np.testing.assert_array_equal(fc.get_params(loaded_flow)[k], v)


@pytest.mark.parametrize("dtype", ["float32", "float64"], indirect=True)
def test_density_model_save_load_keeps_dtype(tmp_path, dtype):
    model = fk.DensityModel(build("gin", dtype))
    x, _ = data((6,), [], dtype=dtype)
    model.save(tmp_path / "density.keras")
    loaded = keras.models.load_model(tmp_path / "density.keras")
    assert loaded.flow.compute_dtype == dtype
    np.testing.assert_array_equal(numpy(loaded(x)[0]), numpy(model(x)[0]))


@pytest.mark.parametrize("dtype", ["float32", "float64"], indirect=True)
def test_native_subnet_runs_in_the_flow_dtype_but_does_not_save(tmp_path, dtype):
    def subnet(c_in, c_out):
        return keras.Sequential(
            [keras.layers.Dense(8, activation="relu"), keras.layers.Dense(c_out)]
        )

    inn = fk.SequenceINN(4, seed=0, dtype=dtype)
    inn.append(fk.AllInOneBlock, subnet_constructor=subnet)
    perturb(inn)
    x, _ = data((4,), [], dtype=dtype)
    z, ld = inn(x)
    x_back, ld_rev = inn(z, rev=True)
    assert keras.backend.standardize_dtype(z.dtype) == dtype
    np.testing.assert_allclose(numpy(x_back), x, atol=1e-5)
    np.testing.assert_allclose(numpy(ld) + numpy(ld_rev), 0.0, atol=1e-5)
    params = fc.get_params(inn)  # the native Dense weights follow as <path>.<i>.<name>
    assert params["0.subnet.0.kernel"].dtype == dtype and "0.global_scale" in params
    x_in = keras.Input((4,))
    model = keras.Model(x_in, inn(x_in))
    with pytest.raises(FlowError, match="subnet_constructor"):
        model.save(tmp_path / "native.keras")


# -- training -----------------------------------------------------------------------------


def _nll(model, x):
    return float(np.mean(numpy(fk.negative_log_likelihood(*model(x)))))


def test_fit_lowers_the_negative_log_likelihood():
    keras.utils.set_random_seed(0)
    spec, shape, conds = CASES["householder"]
    flow = fc.build(spec, shape, conds, backend="keras", seed=0)
    rng = np.random.default_rng(0)
    x = (3.0 + 2.0 * rng.standard_normal((256, 4)) @ rng.standard_normal((4, 4))).astype("float32")
    model = fk.DensityModel(flow)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = _nll(model, x)
    history = model.fit(x, batch_size=64, epochs=5, verbose=0)
    after = _nll(model, x)
    assert after < before - 1.0, (before, after)
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize("dtype", ["float64"], indirect=True)  # 64-bit JAX turned on
def test_the_loss_is_minus_log_prob_the_number_torch_and_jax_fit_report(dtype):
    spec, shape, conds = CASES["householder"]
    flow = fc.build(spec, shape, conds, backend="keras", seed=0, dtype=dtype)
    x = np.random.default_rng(1).standard_normal((8, 4))
    got = numpy(fk.negative_log_likelihood(*flow(x)))
    # the same float64 arithmetic up to the order of sums: a few ulps of O(10) values
    np.testing.assert_allclose(got, -numpy(fc.log_prob(flow, x)), rtol=0, atol=1e-12)
    # and the full constant is there: a standard normal's NLL at z, not its energy alone
    z, log_det = flow(x)
    energy = 0.5 * (numpy(z) ** 2).sum(1) - numpy(log_det)
    np.testing.assert_allclose(got - energy, 2 * np.log(2 * np.pi), rtol=1e-12)


def test_fit_with_a_condition():
    keras.utils.set_random_seed(0)
    spec, shape, conds = CASES["sequence_mlp"]
    model = fk.DensityModel(fc.build(spec, shape, conds, backend="keras", seed=0))
    rng = np.random.default_rng(0)
    c = rng.standard_normal((256, 3)).astype("float32")
    x = (4.0 * c[:, :1] + 0.5 * rng.standard_normal((256, 5))).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit({"x": x, "c": c}, batch_size=64, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] - 1.0


# -- the imperative SequenceINN -----------------------------------------------------------


def test_sequence_inn_equals_build_with_the_same_seed():
    inn = fk.SequenceINN(5, seed=4)
    inn.append(fk.AllInOneBlock, subnet=fc.MLP(hidden=(16,)))
    inn.append(
        fk.AllInOneBlock, cond=0, cond_shape=(3,), subnet=fc.MLP(hidden=(16,)), permute_soft=True
    )
    spec, shape, conds = CASES["sequence_mlp"]
    built = fc.build(spec, shape, conds, backend="keras", seed=4)
    want = fc.get_params(built)
    got = fc.get_params(inn)
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    perturb(inn)
    fc.set_params(built, fc.get_params(inn))
    x, cs = data(shape, conds)
    np.testing.assert_allclose(numpy(inn(x, cs)[0]), numpy(built(x, cs)[0]), atol=1e-6)


def test_sequence_inn_indexing_and_slicing():
    inn = fk.SequenceINN(4, seed=0)
    for _ in range(3):
        inn.append(fk.AllInOneBlock, subnet=fc.MLP(hidden=(8,)))
    perturb(inn)
    x, _ = data((4,), [])
    assert len(inn) == 3 and list(inn) == [inn[0], inn[1], inn[2]] and inn[-1] is inn[2]
    z, ld = inn(x)
    z_head, ld_head = inn[:2](x)
    z_tail, ld_tail = inn[2:](z_head)
    np.testing.assert_allclose(numpy(z_tail), numpy(z), atol=1e-6)
    np.testing.assert_allclose(numpy(ld_head) + numpy(ld_tail), numpy(ld), atol=1e-5)
    x_back, ld_back = inn[::-1](z)  # a negative step inverts
    np.testing.assert_allclose(numpy(x_back), x, atol=1e-5)
    np.testing.assert_allclose(numpy(ld_back), -numpy(ld), atol=1e-5)


def test_sequence_inn_save_load(tmp_path):
    inn = fk.SequenceINN(3, 4, 4, seed=0, force_tuple_output=True)
    inn.append(fk.AllInOneBlock, cond=0, cond_shape=(2,), subnet=fc.ConvNet(hidden=(4,)))
    perturb(inn)
    x, cs = data((3, 4, 4), [(2,)])
    model = fk.DensityModel(inn)
    model.save(tmp_path / "inn.keras")
    loaded = keras.models.load_model(tmp_path / "inn.keras")
    assert isinstance(loaded.flow, fk.SequenceINN) and len(loaded.flow) == 1
    (z,), _ = loaded({"x": x, "c": cs[0]})
    np.testing.assert_array_equal(numpy(z), numpy(model({"x": x, "c": cs[0]})[0][0]))


# -- the Backend hooks the conformance suite drives ----------------------------------------


def test_backend_jacobian_matches_log_det():
    flow = build("sequence_mlp")
    x, cs = data((5,), [(3,)])
    b = fk.BACKEND
    x_n, cs_n = b.to_native(x, "float32", "cpu"), [b.to_native(c, "float32", "cpu") for c in cs]
    jac = b.jacobian(flow, x_n, cs_n)
    assert jac.shape == (7, 5, 5)
    _, ld = b.call(flow, [x_n], cs_n, False, True)
    # log|det| of a float32 Jacobian: relative error ~1e-6 of entries of order 1
    np.testing.assert_allclose(np.linalg.slogdet(jac.astype(np.float64))[1], numpy(ld), atol=1e-4)


@pytest.mark.parametrize("dtype", ["float64"], indirect=True)
def test_backend_gradients_match_finite_differences(dtype):
    flow = build("image", dtype)
    x, cs = data((3, 4, 4), [(2,)], batch=3, dtype=dtype)
    b = fk.BACKEND
    grads = b.gradients(
        flow, [b.to_native(x, dtype, "cpu")], [b.to_native(c, dtype, "cpu") for c in cs]
    )
    specs = flow.flowcore_tree.param_specs()
    assert sorted(grads) == sorted(k for k, p in specs.items() if p.trainable)
    params = fc.get_params(flow)
    rng = np.random.default_rng(5)
    direction = {k: rng.standard_normal(g.shape) for k, g in grads.items()}

    def loss(eps):
        moved = {k: v + eps * direction[k] if k in direction else v for k, v in params.items()}
        (z,), ld = fc.Reference(flow.flowcore_tree, moved)([x], cs)
        return 0.5 * np.sum(z**2) - np.sum(ld)

    eps = 1e-6  # central differences in float64: error ~eps**2 + 1e-16 / eps
    numeric = (loss(eps) - loss(-eps)) / (2 * eps)
    analytic = sum(np.sum(grads[k] * direction[k]) for k in grads)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float64"], indirect=True)
def test_backend_move_and_conversions(dtype):
    b = fk.BACKEND
    assert "cpu" in b.devices()
    flow = build("householder")
    moved = b.move(flow, dtype, "cpu")
    assert moved.compute_dtype == dtype
    for k, v in fc.get_params(moved).items():
        np.testing.assert_allclose(v, fc.get_params(flow)[k], rtol=1e-7)
    x, _ = data((4,), [], dtype=dtype)
    x_n = b.to_native(x, dtype, "cpu")
    np.testing.assert_array_equal(b.to_numpy(x_n), x)
    (z,), ld = b.call(moved, [x_n], [], False, True)
    assert keras.backend.standardize_dtype(z.dtype) == dtype
    (z_ref,), ld_ref = fc.reference(moved)([x])
    np.testing.assert_allclose(b.to_numpy(z), z_ref, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"], indirect=True)
def test_namespace_covers_the_standard_beyond_what_flowcore_uses(dtype):
    """The shim is the Array API over keras.ops, not a list of the names in use today."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 4)).astype(dtype)
    calls = {
        "sqrt": lambda xp, t: xp.sqrt(xp.abs(t(a))),
        "expm1": lambda xp, t: xp.expm1(t(a)),
        "isfinite": lambda xp, t: xp.isfinite(t(np.where(a > 0, a, np.nan).astype(dtype))),
        "log1p": lambda xp, t: xp.log1p(xp.abs(t(a))),
        "sort": lambda xp, t: xp.sort(t(a), axis=1, descending=True),
        "std": lambda xp, t: xp.std(t(a), axis=0, correction=1),
        "var": lambda xp, t: xp.var(t(a), axis=(0, 1), keepdims=True),
        "cumulative_sum": lambda xp, t: xp.cumulative_sum(t(a), axis=1),
        "pow": lambda xp, t: xp.pow(xp.abs(t(a)), 1.5),
        "acos": lambda xp, t: xp.acos(xp.tanh(t(a))),
        "full": lambda xp, t: xp.full((2, 2), 0.5, dtype=getattr(xp, dtype)),
        "ones": lambda xp, t: xp.ones((2,), dtype=getattr(xp, dtype)),
        "vecdot": lambda xp, t: xp.vecdot(t(a), t(a)),
        "matrix_transpose": lambda xp, t: xp.matrix_transpose(t(a)),
        "prod": lambda xp, t: xp.prod(t(a), axis=1),
    }
    import array_api_compat.numpy as ref

    for name, call in calls.items():
        got = call(fk.namespace.XP, keras.ops.convert_to_tensor)
        want = np.asarray(call(ref, np.asarray))
        np.testing.assert_allclose(
            numpy(got), want, rtol=TOL[dtype], atol=TOL[dtype], err_msg=name
        )

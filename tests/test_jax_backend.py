"""The JAX adapter: the pure ``apply`` under jit/grad/vmap, the Flax NNX module, FrEIA's
imperative API, native nnx subnets, images, float64 and training with optax.

Tolerances: in float32 two shallow blocks on O(1) inputs agree with the float64 NumPy
reference to about 1e-5 relative (a few ulps of float32 per operation); in float64 the
backend runs the same operations in the same order up to BLAS/XLA summation order, so 1e-10
holds with room to spare. Two float32 runs of the same graph (eager and jit, whose XLA
fusion may reorder sums) agree to a few ulps: 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest

import flowcore as fc
from flowcore.namespace import ARRAY_API_USED, EXTRAS, numpy_namespace

jax = pytest.importorskip("jax", reason="the jax backend needs JAX")
nnx = pytest.importorskip("flax.nnx", reason="the jax backend needs Flax NNX")
jnp = jax.numpy

import flowcore.backends.jax as Fj  # noqa: E402  (with JAX present, a broken import must fail)
from selected_backends import subject  # noqa: E402

pytestmark = subject("jax")

F32 = {"rtol": 1e-5, "atol": 1e-5}
F64 = {"rtol": 0, "atol": 1e-10}


@pytest.fixture
def x64():
    """64-bit JAX for one test; the process-wide flag is restored afterwards."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


@pytest.fixture
def no_x64():
    """32-bit JAX for one test (the conformance suite may have enabled x64 for the session)."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def _spec() -> fc.SequenceINN:
    return fc.SequenceINN(
        fc.AllInOneBlock(subnet=fc.MLP(hidden=(16,), zero_init_last=False)),
        fc.AllInOneBlock(subnet=fc.MLP(hidden=(16,), zero_init_last=False), permute_soft=True),
        conditions=[None, 0],
    )


def _inputs(batch: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.standard_normal((batch, 5)), rng.standard_normal((batch, 3))


def _f32(*arrays: np.ndarray) -> list[jax.Array]:
    return [jnp.asarray(a, jnp.float32) for a in arrays]


def _nll(z, log_det):
    """Mean negative log-likelihood under a standard normal latent (constant dropped)."""
    return jnp.mean(0.5 * jnp.sum(z**2, axis=1) - log_det)


def _assert_close_f32_runs(got, want):
    """Two float32 runs of one graph, differently fused: a few ulps apart."""
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


# -- namespace ----------------------------------------------------------------------------


def test_namespace_has_every_name_specs_use():
    missing = [n for n in ARRAY_API_USED + EXTRAS if not hasattr(Fj.XP, n)]
    assert not missing


def test_conv2d_matches_numpy_reference():
    rng = np.random.default_rng(0)
    x, w, b = (
        rng.standard_normal((2, 3, 5, 6)),
        rng.standard_normal((4, 3, 3, 3)),
        rng.standard_normal(4),
    )
    want = numpy_namespace().conv2d(x, w, b, 1)
    got = Fj.XP.conv2d(*_f32(x, w, b), 1)
    assert got.shape == (2, 4, 5, 6)
    np.testing.assert_allclose(np.asarray(got), want, **F32)


# -- the Flax NNX module ------------------------------------------------------------------


def test_build_returns_nnx_module_with_canonical_names():
    flow = fc.build(_spec(), (5,), [(3,)], backend="jax", seed=0)
    assert isinstance(flow, nnx.Module) and isinstance(flow, Fj.FlowModule)
    assert fc.backend_of(flow) is Fj.BACKEND
    names = {".".join(map(str, k)) for k, _ in nnx.to_flat_state(nnx.state(flow))}
    assert names == set(fc.tree_of(flow).param_specs())
    trainable = {".".join(map(str, k)) for k, _ in nnx.to_flat_state(nnx.state(flow, nnx.Param))}
    assert "0.global_scale" in trainable and "0.w_perm" not in trainable
    assert isinstance(getattr(flow, "0").w_perm, Fj.Buffer)
    assert fc.get_params(flow)["0.w_perm"].dtype == np.int64


def test_matches_reference_and_torch_float32():
    flow = fc.build(_spec(), (5,), [(3,)], backend="jax", seed=0)
    x, c = _inputs()
    z, log_det = flow(*_f32(x, c))
    (z_ref,), log_det_ref = fc.reference(flow)([x], [c])
    np.testing.assert_allclose(np.asarray(z), z_ref, **F32)
    np.testing.assert_allclose(np.asarray(log_det), log_det_ref, **F32)
    assert log_det.shape == (6,)
    x_back, log_det_back = flow(z, jnp.asarray(c, jnp.float32), rev=True)
    np.testing.assert_allclose(np.asarray(x_back), x, **F32)
    np.testing.assert_allclose(np.asarray(log_det_back), -log_det_ref, **F32)

    torch = pytest.importorskip("torch", reason="compares with the torch backend")
    tflow = fc.build(_spec(), (5,), [(3,)], backend="torch", seed=0)
    tz, tlog_det = tflow(
        torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(c, dtype=torch.float32)
    )
    np.testing.assert_allclose(np.asarray(z), tz.detach().numpy(), **F32)
    np.testing.assert_allclose(np.asarray(log_det), tlog_det.detach().numpy(), **F32)


def test_get_set_params_round_trip():
    a = fc.build(_spec(), (5,), [(3,)], backend="jax", seed=0)
    b = fc.build(_spec(), (5,), [(3,)], backend="jax", seed=1)
    assert not np.array_equal(
        fc.get_params(a)["0.subnet.0.weight"], fc.get_params(b)["0.subnet.0.weight"]
    )
    fc.set_params(b, fc.get_params(a))
    for name, value in fc.get_params(a).items():
        np.testing.assert_array_equal(fc.get_params(b)[name], value)
    x, c = _f32(*_inputs())
    np.testing.assert_array_equal(np.asarray(a(x, c)[0]), np.asarray(b(x, c)[0]))
    with pytest.raises(fc.ParameterError, match="missing"):
        fc.set_params(b, {"0.global_scale": np.zeros((1, 5))})


def test_clear_errors_for_bad_input():
    flow = fc.build(_spec(), (5,), [(3,)], backend="jax", seed=0)
    x, c = _f32(*_inputs())
    with pytest.raises(
        fc.ShapeError, match=r"SequenceINN.*input 0 should have shape \(batch, 5\)"
    ):
        flow(jnp.zeros((2, 4)), c)
    with pytest.raises(fc.ShapeError, match="expected 1 condition"):
        flow(x)
    with pytest.raises(fc.ShapeError, match="float32 or float64"):
        flow(x.astype(jnp.int32), c)
    with pytest.raises(fc.ShapeError, match="list of arrays"):
        flow({"x": x}, c)


# -- the pure functional form -------------------------------------------------------------


def test_init_equals_build_and_holds_only_trainables():
    apply, params = Fj.init(_spec(), (5,), [(3,)], seed=0)
    flow = fc.build(_spec(), (5,), [(3,)], backend="jax", seed=0)
    specs = fc.tree_of(flow).param_specs()
    assert set(params) == {n for n, p in specs.items() if p.trainable}
    x, c = _f32(*_inputs())
    np.testing.assert_array_equal(np.asarray(apply(params, x, c)[0]), np.asarray(flow(x, c)[0]))
    z, log_det = apply(params, [x], [c])  # a list in, a tuple out
    assert isinstance(z, tuple) and len(z) == 1


def test_jit_equals_eager():
    apply, params = Fj.init(_spec(), (5,), [(3,)], seed=0)
    x, c = _f32(*_inputs())
    z, log_det = apply(params, x, c)
    _assert_close_f32_runs(jax.jit(apply)(params, x, c), (z, log_det))
    inverse = jax.jit(apply, static_argnames=("rev", "jac"))
    x_back, log_det_back = inverse(params, z, c, rev=True)
    np.testing.assert_allclose(np.asarray(x_back), np.asarray(x), **F32)
    np.testing.assert_allclose(np.asarray(log_det_back), -np.asarray(log_det), **F32)
    with pytest.raises(fc.FlowError, match="static_argnames"):
        jax.jit(apply)(params, z, c, rev=True)
    flow = fc.build(_spec(), (5,), [(3,)], backend="jax", seed=0)
    _assert_close_f32_runs(nnx.jit(lambda m, x, c: m(x, c))(flow, x, c), (z, log_det))


def test_grad_matches_torch(x64):
    torch = pytest.importorskip("torch", reason="compares gradients with the torch backend")
    x, c = _inputs()
    flow = fc.build(_spec(), (5,), [(3,)], backend="jax", seed=0, dtype="float64")
    apply, params = Fj.functional(flow)
    grads = jax.grad(lambda p: _nll(*apply(p, jnp.asarray(x), jnp.asarray(c))))(params)
    tflow = fc.build(_spec(), (5,), [(3,)], backend="torch", seed=0, dtype="float64")
    tz, tlog_det = tflow(torch.as_tensor(x), torch.as_tensor(c))
    (0.5 * (tz**2).sum(dim=1) - tlog_det).mean().backward()
    tgrads = {n: p.grad.numpy() for n, p in tflow.named_parameters()}
    assert set(grads) == set(tgrads)
    for name, g in grads.items():
        np.testing.assert_allclose(np.asarray(g), tgrads[name], err_msg=name, **F64)


def test_vmap_over_inputs_and_stacked_params():
    apply, params = Fj.init(_spec(), (5,), [(3,)], seed=0)
    one = jax.jit(apply)
    rng = np.random.default_rng(2)
    xs = jnp.asarray(rng.standard_normal((3, 4, 5)), jnp.float32)  # 3 batches of 4
    cs = jnp.asarray(rng.standard_normal((3, 4, 3)), jnp.float32)
    z, log_det = jax.jit(jax.vmap(apply, in_axes=(None, 0, 0)))(params, xs, cs)
    for i in range(3):
        _assert_close_f32_runs((z[i], log_det[i]), one(params, xs[i], cs[i]))

    ensemble = [jax.tree.map(lambda p, k=k: p + 0.05 * k, params) for k in range(3)]
    stacked = jax.tree.map(lambda *ps: jnp.stack(ps), *ensemble)
    z, log_det = jax.jit(jax.vmap(apply, in_axes=(0, None, None)))(stacked, xs[0], cs[0])
    assert z.shape == (3, 4, 5) and log_det.shape == (3, 4)
    for k, member in enumerate(ensemble):
        _assert_close_f32_runs((z[k], log_det[k]), one(member, xs[0], cs[0]))


def test_optax_training_lowers_nll():
    optax = pytest.importorskip("optax", reason="trains with optax")
    rng = np.random.default_rng(3)
    mixing = np.array(
        [[1.0, 0.0, 0.0, 0.0], [0.9, 0.4, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 1.5, 0.3]]
    )
    data = jnp.asarray(rng.standard_normal((256, 4)) @ mixing.T + 1.0, jnp.float32)
    spec = fc.SequenceINN(*(fc.AllInOneBlock(subnet=fc.MLP(hidden=(32,))) for _ in range(3)))
    flow = fc.build(spec, (4,), backend="jax", seed=0)
    apply, params = Fj.functional(flow)

    def loss(p):
        return _nll(*apply(p, data))

    opt = optax.adam(1e-2)
    state = opt.init(params)

    @jax.jit
    def step(p, s):
        value, grads = jax.value_and_grad(loss)(p)
        updates, s = opt.update(grads, s)
        return optax.apply_updates(p, updates), s, value

    start = float(loss(params))
    for _ in range(100):
        params, state, _ = step(params, state)
    trained = float(loss(params))
    assert trained < start - 0.5
    fc.set_params(flow, {**fc.get_params(flow), **params})  # back into the module
    np.testing.assert_allclose(float(_nll(*flow(data))), trained, rtol=1e-5)


def test_nnx_optimizer_trains_trainables_only():
    optax = pytest.importorskip("optax", reason="trains with optax")
    flow = fc.build(_spec(), (5,), [(3,)], backend="jax", seed=0)
    before = fc.get_params(flow)
    x, c = _f32(*_inputs(64))
    optimizer = nnx.Optimizer(flow, optax.adam(1e-2), wrt=nnx.Param)

    def loss(model):
        return _nll(*model(x, c))

    @nnx.jit
    def step(model, optimizer):
        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    start = float(loss(flow))
    for _ in range(30):
        step(flow, optimizer)
    after = fc.get_params(flow)
    assert float(loss(flow)) < start
    np.testing.assert_array_equal(after["0.w_perm"], before["0.w_perm"])  # buffers stay
    np.testing.assert_array_equal(after["1.w_perm"], before["1.w_perm"])
    assert not np.array_equal(after["0.global_scale"], before["0.global_scale"])


# -- float64 ------------------------------------------------------------------------------


def test_float64_with_x64_matches_reference(x64):
    flow = fc.build(_spec(), (5,), [(3,)], backend="jax", seed=0, dtype="float64")
    assert getattr(flow, "0").global_scale[...].dtype == jnp.float64
    x, c = _inputs()
    z, log_det = flow(jnp.asarray(x), jnp.asarray(c))
    assert z.dtype == jnp.float64
    (z_ref,), log_det_ref = fc.reference(flow)([x], [c])
    np.testing.assert_allclose(np.asarray(z), z_ref, **F64)
    np.testing.assert_allclose(np.asarray(log_det), log_det_ref, **F64)
    apply, params = Fj.init(_spec(), (5,), [(3,)], seed=0, dtype="float64")
    z_jit, _ = jax.jit(apply)(params, jnp.asarray(x), jnp.asarray(c))
    np.testing.assert_allclose(np.asarray(z_jit), z_ref, **F64)


def test_float64_without_x64_is_a_clear_error(no_x64):
    assert not jax.config.jax_enable_x64
    with pytest.raises(fc.BackendError, match="jax_enable_x64"):
        fc.build(_spec(), (5,), [(3,)], backend="jax", dtype="float64")
    with pytest.raises(fc.BackendError, match="jax_enable_x64"):
        Fj.init(_spec(), (5,), [(3,)], dtype="float64")
    with pytest.raises(fc.BackendError, match="jax_enable_x64"):
        Fj.SequenceINN(5, dtype="float64")
    with pytest.raises(fc.BackendError, match="jax_enable_x64"):
        Fj.BACKEND.to_native(np.zeros(3), "float64", "cpu")
    assert not jax.config.jax_enable_x64  # never flipped behind the user's back


def test_move_casts_floats_and_keeps_indices(x64):
    flow = fc.build(_spec(), (5,), [(3,)], backend="jax", seed=0)
    moved = Fj.BACKEND.move(flow, "float64", "cpu")
    assert getattr(moved, "1").w_perm[...].dtype == jnp.float64
    assert jnp.issubdtype(getattr(moved, "0").w_perm[...].dtype, jnp.integer)
    x, c = _inputs()
    (z,), _ = Fj.BACKEND.call(moved, [jnp.asarray(x)], [jnp.asarray(c)], False, True)
    (z_ref,), _ = fc.reference(moved)([x], [c])
    np.testing.assert_allclose(np.asarray(z), z_ref, **F64)  # same weights, now in float64


# -- FrEIA's imperative API ---------------------------------------------------------------


def _imperative(seed: int | None = 0) -> Fj.SequenceINN:
    seq = Fj.SequenceINN(5, seed=seed)
    seq.append(fc.AllInOneBlock, subnet=fc.MLP(hidden=(16,), zero_init_last=False))
    seq.append(
        fc.AllInOneBlock, cond=0, cond_shape=(3,),
        subnet=fc.MLP(hidden=(16,), zero_init_last=False), permute_soft=True,
    )  # fmt: skip
    return seq


def test_imperative_sequence_equals_build_with_same_seed():
    seq = _imperative()
    flow = fc.build(_spec(), (5,), [(3,)], backend="jax", seed=0)
    x, c = _f32(*_inputs())
    np.testing.assert_array_equal(np.asarray(seq(x, [c])[0]), np.asarray(flow(x, c)[0]))
    assert fc.get_params(seq).keys() == fc.get_params(flow).keys()
    assert len(seq) == 2 and isinstance(seq[1], Fj.FlowModule) and seq[-1] is seq[1]
    assert list(seq) == [seq[0], seq[1]]
    z, _ = seq[0](x)
    assert seq[1](z, [c])[0].shape == (6, 5)


def test_unseeded_sequence_follows_numpy_global_seed():
    np.random.seed(5)
    a = fc.get_params(_imperative(seed=None))
    np.random.seed(5)
    b = fc.get_params(_imperative(seed=None))
    for name, value in a.items():
        np.testing.assert_array_equal(b[name], value)


def test_slicing_and_negative_step_inverts():
    seq = Fj.SequenceINN(5, seed=3, force_tuple_output=True)
    for _ in range(3):
        seq.append(fc.AllInOneBlock, subnet=fc.MLP(hidden=(8,), zero_init_last=False))
    x, _ = _f32(*_inputs())
    (z,), log_det = seq(x)
    head, _ = seq[:2](x)
    tail, _ = seq[2:](head)
    np.testing.assert_array_equal(np.asarray(tail), np.asarray(z))
    x_back, log_det_back = seq[::-1](z)
    np.testing.assert_allclose(np.asarray(x_back), np.asarray(x), **F32)
    np.testing.assert_allclose(np.asarray(log_det_back), -np.asarray(log_det), **F32)
    assert getattr(seq[::-1], "0").inner is seq[2]  # parameters are shared, not copied
    apply, params = Fj.functional(seq[::-1])
    assert "2.global_scale" in params  # canonical names of the original blocks
    _assert_close_f32_runs(apply(params, z), (x_back, log_det_back))


# -- native nnx subnets -------------------------------------------------------------------


class _Net(nnx.Module):
    """A user's own subnet: the constructor takes ``rngs`` and flowcore passes it."""

    def __init__(self, c_in: int, c_out: int, *, rngs: nnx.Rngs) -> None:
        self.hidden = nnx.Linear(c_in, 16, rngs=rngs)
        self.out = nnx.Linear(16, c_out, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(nnx.relu(self.hidden(x)))


def test_native_nnx_subnet():
    seq = Fj.SequenceINN(5, seed=0)
    seq.append(fc.AllInOneBlock, subnet_constructor=_Net)
    seq.append(fc.AllInOneBlock, subnet_constructor=_Net, cond=0, cond_shape=(3,))
    x, c = _f32(*_inputs())
    z, log_det = seq(x, [c])
    x_back, log_det_back = seq(z, [c], rev=True)
    np.testing.assert_allclose(np.asarray(x_back), np.asarray(x), **F32)
    np.testing.assert_allclose(np.asarray(log_det + log_det_back), 0.0, atol=1e-5)
    jac = Fj.BACKEND.jacobian(seq, x, [c])
    np.testing.assert_allclose(np.linalg.slogdet(jac)[1], np.asarray(log_det), **F32)

    params = fc.get_params(seq)
    assert "1.subnet.hidden.kernel" in params and params["1.subnet.hidden.kernel"].shape == (6, 16)
    again = Fj.SequenceINN(5, seed=0)  # the seed fixes the native weights too
    again.append(fc.AllInOneBlock, subnet_constructor=_Net)
    np.testing.assert_array_equal(
        fc.get_params(again)["0.subnet.out.kernel"], params["0.subnet.out.kernel"]
    )

    apply, trainable = Fj.functional(seq)
    grads = jax.jit(jax.grad(lambda p: _nll(*apply(p, x, [c]))))(trainable)
    assert np.any(np.asarray(grads["1.subnet.hidden.kernel"]) != 0)
    nnx_grads = nnx.jit(nnx.grad(lambda m: _nll(*m(x, [c]))))(seq)
    np.testing.assert_allclose(
        np.asarray(nnx_grads["1"]["subnet"]["hidden"]["kernel"][...]),
        np.asarray(grads["1.subnet.hidden.kernel"]), rtol=1e-5, atol=1e-6,
    )  # fmt: skip


def test_native_subnet_constructor_with_own_rngs_and_bad_return():
    rngs = nnx.Rngs(0)
    seq = Fj.SequenceINN(4, seed=0)
    seq.append(fc.AllInOneBlock, subnet_constructor=lambda i, o: nnx.Linear(i, o, rngs=rngs))
    x = jnp.ones((2, 4))
    assert seq(x)[0].shape == (2, 4)
    with pytest.raises(TypeError, match="must return a flax.nnx.Module"):
        Fj.SequenceINN(4).append(fc.AllInOneBlock, subnet_constructor=lambda i, o: None)


# -- images -------------------------------------------------------------------------------


def test_images_with_convnet_and_vector_condition():
    spec = fc.SequenceINN(
        fc.AllInOneBlock(subnet=fc.ConvNet(hidden=(8,), zero_init_last=False)),
        fc.AllInOneBlock(subnet=fc.ConvNet(hidden=(8,), zero_init_last=False), permute_soft=True),
        conditions=[0, 0],
    )
    flow = fc.build(spec, (4, 6, 6), [(2,)], backend="jax", seed=0)
    rng = np.random.default_rng(4)
    x, c = rng.standard_normal((3, 4, 6, 6)), rng.standard_normal((3, 2))
    z, log_det = flow(*_f32(x, c))
    assert z.shape == (3, 4, 6, 6) and log_det.shape == (3,)
    (z_ref,), log_det_ref = fc.reference(flow)([x], [c])
    np.testing.assert_allclose(np.asarray(z), z_ref, **F32)
    # the log-det sums 144 per-pixel terms of float32 rounding error each
    np.testing.assert_allclose(np.asarray(log_det), log_det_ref, rtol=1e-5, atol=1e-4)
    x_back, _ = flow(z, jnp.asarray(c, jnp.float32), rev=True)
    np.testing.assert_allclose(np.asarray(x_back), x, **F32)
    jac = Fj.BACKEND.jacobian(
        flow, jnp.asarray(x[:1], jnp.float32), [jnp.asarray(c[:1], jnp.float32)]
    )
    assert jac.shape == (1, 144, 144)
    np.testing.assert_allclose(
        np.linalg.slogdet(jac.astype(np.float64))[1], log_det_ref[:1], rtol=1e-4
    )


# -- the conformance hooks ----------------------------------------------------------------


def test_backend_hooks():
    assert "cpu" in Fj.BACKEND.devices()
    tree = fc.build_tree(_spec(), [(5,)], [(3,)])
    flow = Fj.BACKEND.build(tree, fc.initial_params(tree, 0), "float32", "cpu")
    x, c = _inputs()
    xj = Fj.BACKEND.to_native(x, "float32", "cpu")
    cj = Fj.BACKEND.to_native(c, "float32", "cpu")
    (z,), log_det = Fj.BACKEND.call(flow, [xj], [cj], False, True)
    assert isinstance(Fj.BACKEND.to_numpy(z), np.ndarray)
    jac = Fj.BACKEND.jacobian(flow, xj, [cj])
    assert jac.shape == (6, 5, 5)
    np.testing.assert_allclose(np.linalg.slogdet(jac)[1], np.asarray(log_det), **F32)
    grads = Fj.BACKEND.gradients(flow, [xj], [cj])
    specs = fc.tree_of(flow).param_specs()
    assert set(grads) == {n for n, p in specs.items() if p.trainable}


def test_gradients_match_finite_differences(x64):
    """A torch-free check: float64 central differences along one random direction per
    parameter (truncation O(eps**2) ~ 1e-12, rounding ~ 1e-16 * loss / eps ~ 1e-9)."""
    flow = fc.build(_spec(), (5,), [(3,)], backend="jax", seed=0, dtype="float64")
    x, c = (jnp.asarray(a) for a in _inputs())
    grads = Fj.BACKEND.gradients(flow, [x], [c])
    apply, params = Fj.functional(flow)

    def loss(p):
        z, log_det = apply(p, x, c)
        return float(0.5 * jnp.sum(z**2) - jnp.sum(log_det))

    rng, eps = np.random.default_rng(5), 1e-6
    for name, value in params.items():
        direction = rng.standard_normal(value.shape)
        up, down = (dict(params, **{name: value + s * eps * direction}) for s in (1, -1))
        numeric = (loss(up) - loss(down)) / (2 * eps)
        np.testing.assert_allclose(numeric, np.sum(grads[name] * direction), rtol=1e-6, atol=1e-7)


def test_build_seed_reaches_native_subnets():
    spec = fc.AllInOneBlock(subnet_constructor=_Net)

    def weights(seed: int) -> np.ndarray:
        flow = fc.build(spec, (4,), backend="jax", seed=seed)
        return fc.get_params(flow)["subnet.hidden.kernel"]

    np.testing.assert_array_equal(weights(3), weights(3))
    assert not np.array_equal(weights(3), weights(4))

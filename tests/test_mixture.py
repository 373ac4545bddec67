"""GaussianMixtureModel against FrEIA master's formula, computed here independently.

FrEIA master's ``GaussianMixtureModel`` is not installable (FrEIA 0.2, on the package
index, lacks it), so the oracle is its formula written out in float64 NumPy with none of the
spec's code: each packed factor filled into a dense matrix element by element in FrEIA's
order (diagonal ``exp(U[:D])``, then the upper triangle row by row), ``z = U (x - mu)``,
``x = mu + solve(U, z)`` by LAPACK and the log-det by ``slogdet``; the densities by
``scipy.stats.multivariate_normal`` with the covariance ``inv(U^T U)``.

- The float64 reference and every selected backend (float64 and float32) against it, one
  component per sample and every component at once.
- The helpers on NumPy, torch and JAX arrays; the FrEIA drop-in's calling conventions
  (``i`` a tensor, an int seed, None; FrEIA's torch draw of components; per-component
  log-dets); gradients through the conditions (an MDN trains through them).
- Bad inputs: wrong K, U not D(D+1)/2 wide, i of the wrong shape or dtype, an index out of
  range, conditions of disagreeing kinds in a graph.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from selected_backends import BACKENDS, subject

import flowcore as fc
from flowcore.backend import load_backend
from flowcore.errors import FlowError, ShapeError
from flowcore.executor import check_call
from flowcore.spec import SimpleTransform
from flowcore.transforms.mixture import GaussianMixtureModel as GMM
from flowcore.tree import build_tree

K, D, B = 3, 4, 6
P = D * (D + 1) // 2
MIX = [(K,), (K, D), (K, P)]
#: Spec (float64 NumPy) vs the dense NumPy oracle: the same float64 arithmetic in another
#: order (row-by-row matmul vs ``@``, back substitution vs LAPACK's LU solve, a sum of
#: log-diagonals vs LU's slogdet): a few ulps times cond(U) <= ~1e2 for these factors on
#: outputs of size ~10 (measured 1.8e-15, every backend too).
ATOL = 1e-12
#: A backend in float32 vs the float64 oracle (inputs and conditions rounded to float32):
#: eps 6e-8 through exp, D-term products and the substitution, outputs of size ~10
#: (measured 1.1e-6 in torch, JAX and Keras on each of its backends).
FLOAT32 = {"rtol": 1e-5, "atol": 1e-5}


def _data(seed: int = 0, batch: int = B) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    packed = rng.standard_normal((batch, K, P))
    packed[..., D:] *= 0.5  # the factors' off-diagonal entries: cond(U) stays ~1e2
    return {
        "x": rng.standard_normal((batch, D)),
        "w": rng.standard_normal((batch, K)),
        "mu": rng.standard_normal((batch, K, D)),
        "U": packed,
        "i": rng.permutation(np.arange(batch) % K),  # every component, in random order
    }


# -- the oracle: FrEIA master's formula, written out ------------------------------------------


def _factor(packed: np.ndarray) -> np.ndarray:
    """FrEIA's dense U from D(D+1)/2 numbers: exp of the first D on the diagonal, the rest
    above it in row-major order (its ``mask_upper`` filled by boolean indexing)."""
    m = np.zeros((D, D))
    for r in range(D):
        m[r, r] = math.exp(packed[r])
    n = D
    for r in range(D):
        for c in range(r + 1, D):
            m[r, c] = packed[n]
            n += 1
    return m


def _oracle(x, mu, packed, rev=False):
    """One component: z = U (x - mu) and log|det U| forward; the inverse and minus that."""
    m = _factor(packed)
    y = mu + np.linalg.solve(m, x) if rev else m @ (x - mu)
    log_det = np.linalg.slogdet(m)[1]
    return y, -log_det if rev else log_det


def _oracle_fixed(d, xs, rev=False):
    pairs = [_oracle(xs[b], d["mu"][b, k], d["U"][b, k], rev) for b, k in enumerate(d["i"])]
    return np.stack([y for y, _ in pairs]), np.array([ld for _, ld in pairs])


def _oracle_all(d, xs, rev=False):
    """Every component: xs (batch, K, D); per-component log-dets (batch, K)."""
    out = [
        [_oracle(xs[b, k], d["mu"][b, k], d["U"][b, k], rev) for k in range(K)]
        for b in range(len(xs))
    ]
    return np.array([[y for y, _ in row] for row in out]), np.array(
        [[ld for _, ld in row] for row in out]
    )


def _conds(d, with_index=True):
    return [d["w"], d["mu"], d["U"], *([d["i"]] if with_index else [])]


def _reference(with_index=True):
    shape = (D,) if with_index else (K, D)
    return fc.Reference(build_tree(GMM(), [shape], MIX + ([()] if with_index else [])), {})


# -- the float64 reference against the oracle -------------------------------------------------


def test_one_component_per_sample_is_freias_formula():
    d = _data()
    z_want, ld_want = _oracle_fixed(d, d["x"])
    (z,), log_det = _reference()([d["x"]], _conds(d))
    np.testing.assert_allclose(z, z_want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, ld_want, rtol=0, atol=ATOL)
    x_want, ld_back_want = _oracle_fixed(d, z_want, rev=True)
    (x_back,), log_det_back = _reference()([z_want], _conds(d), rev=True)
    np.testing.assert_allclose(x_back, x_want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(x_back, d["x"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det_back, ld_back_want, rtol=0, atol=ATOL)
    assert len(set(d["i"].tolist())) == K  # every component is used by some sample


def test_every_component_at_once_maps_each_copy_and_sums_the_log_dets():
    d = _data(1)
    xs = np.random.default_rng(2).standard_normal((B, K, D))
    z_want, ld_want = _oracle_all(d, xs)
    (z,), log_det = _reference(with_index=False)([xs], _conds(d, False))
    np.testing.assert_allclose(z, z_want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, ld_want.sum(axis=1), rtol=0, atol=ATOL)
    (back,), log_det_back = _reference(with_index=False)([z_want], _conds(d, False), rev=True)
    np.testing.assert_allclose(back, xs, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det_back, -ld_want.sum(axis=1), rtol=0, atol=ATOL)
    per_component = GMM.component_log_dets(d["U"])
    np.testing.assert_allclose(per_component, ld_want, rtol=0, atol=ATOL)


def test_the_latent_gives_each_components_gaussian_density():
    """-|z|²/2 + log det U - (D/2) log 2π is log N(x; mu_k, inv(U^T U)): U factors the
    precision, as FrEIA's docstring says."""
    from scipy.stats import multivariate_normal

    d = _data(3)
    xs = np.repeat(d["x"][:, None, :], K, axis=1)
    (z,), _ = _reference(with_index=False)([xs], _conds(d, False))
    got = (
        -0.5 * np.sum(z**2, axis=-1)
        + GMM.component_log_dets(d["U"])
        - D / 2 * math.log(2 * math.pi)
    )

    def gaussian(b: int, k: int):
        m = _factor(d["U"][b, k])
        return multivariate_normal(d["mu"][b, k], np.linalg.inv(m.T @ m))

    want = np.array([[gaussian(b, k).logpdf(d["x"][b]) for k in range(K)] for b in range(B)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    weights = GMM.normalize_weights(d["w"])
    mixture = np.log(np.sum(weights * np.exp(want), axis=1))
    nll = GMM.nll_loss(weights, z, GMM.component_log_dets(d["U"]))
    np.testing.assert_allclose(nll + D / 2 * math.log(2 * math.pi), -mixture, rtol=0, atol=1e-10)


# -- every backend against the oracle ---------------------------------------------------------


@pytest.fixture(params=["float32", "float64"])
def dtype(request) -> Iterator[str]:
    """The dtype, with 64-bit JAX on meanwhile for float64 (restored after)."""
    if request.param == "float64":
        try:
            import jax
        except ImportError:
            yield request.param
            return
        before = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", True)
        try:
            yield request.param
        finally:
            jax.config.update("jax_enable_x64", before)
    else:
        yield request.param


def _native(impl, arrays, dtype):
    return [impl.to_native(a, "int64" if a.dtype.kind == "i" else dtype, "cpu") for a in arrays]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_index", [True, False], ids=["one_component", "all_components"])
def test_each_backend_computes_freias_formula(backend, dtype, with_index):
    impl = load_backend(backend)
    d = _data(4)
    shape = (D,) if with_index else (K, D)
    conds = MIX + ([()] if with_index else [])
    model = fc.build(GMM(), shape, conds, backend=backend, dtype=dtype)
    rounded = {
        k: v if v.dtype.kind == "i" else v.astype(dtype).astype(float) for k, v in d.items()
    }
    xs = rounded["x"] if with_index else np.repeat(rounded["x"][:, None], K, axis=1)
    oracle = _oracle_fixed if with_index else _oracle_all
    cs = _native(impl, _conds(rounded, with_index), dtype)
    tol = {"rtol": 0, "atol": ATOL} if dtype == "float64" else FLOAT32
    for rev, given in ((False, xs), (True, oracle(rounded, xs)[0])):
        want, ld_want = oracle(rounded, given, rev)
        (y,), log_det = impl.call(model, _native(impl, [given], dtype), cs, rev, True)
        assert str(impl.to_numpy(y).dtype) == dtype
        np.testing.assert_allclose(impl.to_numpy(y), want, **tol)
        ld_want = ld_want if with_index else ld_want.sum(axis=1)
        np.testing.assert_allclose(impl.to_numpy(log_det), ld_want, **tol)


@subject("jax")
def test_the_map_traces_under_jax_jit_with_the_index_a_traced_argument():
    """No Python branch on values: jit compiles once and gives the eager numbers, for
    indices it has not seen while tracing too."""
    jax = pytest.importorskip("jax")
    from flowcore.backends.jax import init

    apply, params = init(GMM(), (D,), MIX + [()])
    step = jax.jit(lambda p, x, c: apply(p, x, c))
    d = _data(18)
    for shift in (0, 1):
        d["i"] = (d["i"] + shift) % K
        (z, log_det), (z_eager, ld_eager) = (
            step(params, d["x"], _conds(d)),
            apply(params, d["x"], _conds(d)),
        )
        np.testing.assert_allclose(np.asarray(z), np.asarray(z_eager), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(log_det), np.asarray(ld_eager), atol=1e-6)
        z_want, ld_want = _oracle_fixed(d, d["x"])
        np.testing.assert_allclose(np.asarray(z), z_want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(log_det), ld_want, rtol=1e-5, atol=1e-5)
    assert getattr(step, "_cache_size", lambda: 1)() == 1  # traced once


# -- gradients through the conditions ---------------------------------------------------------


@subject("torch")
def test_torch_gradients_through_mu_and_u_match_central_differences():
    """An MDN learns mu and U: autograd of the negative log-likelihood through the map
    against central differences of the float64 reference."""
    torch = pytest.importorskip("torch")
    d = _data(5)
    model = fc.build(GMM(), (D,), MIX + [()], backend="torch", dtype="float64")
    mu, u = (torch.tensor(d[k], requires_grad=True) for k in ("mu", "U"))
    w, x, i = torch.tensor(d["w"]), torch.tensor(d["x"]), torch.tensor(d["i"])
    z, log_det = model(x, c=[w, mu, u, i])
    (0.5 * (z**2).sum() - log_det.sum()).backward()

    def loss(mu_, u_):
        (z_,), ld = _reference()([d["x"]], [d["w"], mu_, u_, d["i"]])
        return 0.5 * np.sum(z_**2) - np.sum(ld)

    rng, h = np.random.default_rng(6), 1e-6
    for _ in range(3):
        v_mu, v_u = rng.standard_normal(d["mu"].shape), rng.standard_normal(d["U"].shape)
        want = (
            loss(d["mu"] + h * v_mu, d["U"] + h * v_u) - loss(d["mu"] - h * v_mu, d["U"] - h * v_u)
        ) / (2 * h)
        got = float((mu.grad.numpy() * v_mu).sum() + (u.grad.numpy() * v_u).sum())
        assert abs(got - want) < 1e-6 * max(1.0, abs(want))
    unused = np.ones(K, bool)
    unused[np.unique(d["i"])] = False
    assert not unused.any() or np.all(mu.grad.numpy()[:, unused] == 0)


# -- the helpers --------------------------------------------------------------------------


def test_normalize_weights_is_the_softmax_on_numpy_torch_and_jax():
    w = np.random.default_rng(7).standard_normal((4, K)) * 30.0
    want = np.exp(w - w.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(GMM.normalize_weights(w), want, rtol=1e-14, atol=0)
    torch = pytest.importorskip("torch")
    got = GMM.normalize_weights(torch.tensor(w))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), torch.softmax(torch.tensor(w), -1).numpy(), atol=1e-15)
    jnp = pytest.importorskip("jax.numpy")
    got_jax = GMM.normalize_weights(jnp.asarray(w, dtype=jnp.float32))
    assert got_jax.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got_jax), want, rtol=1e-5, atol=1e-7)


def test_pick_mixture_component_counts_the_cumulative_weights_below_each_draw():
    w = GMM.normalize_weights(np.random.default_rng(8).standard_normal((50, K)))
    u = np.random.default_rng(9).random(50)
    want = np.minimum((u[:, None] > np.cumsum(w, axis=1)).sum(axis=1), K - 1)
    got = GMM.pick_mixture_component(w, uniform=u)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64
    seeded = GMM.pick_mixture_component(w, seed=12345)
    np.testing.assert_array_equal(seeded, GMM.pick_mixture_component(w, seed=12345))
    assert len(set(seeded.tolist())) == K  # 50 draws pick every component
    # weights summing to a little less than one: a draw above them picks the last one
    assert GMM.pick_mixture_component(w * (1 - 1e-3), uniform=np.full(50, 0.9999)).max() == K - 1
    with pytest.raises(TypeError, match="seed must be an int, None or a numpy.random.Generator"):
        GMM.pick_mixture_component(w, seed=1.5)
    with pytest.raises(ShapeError, match=r"w must have shape \(batch, K\), got \(3,\)"):
        GMM.pick_mixture_component(w[0])


def test_nll_loss_is_freias_and_stays_finite_where_freias_underflows():
    d = _data(10)
    w = GMM.normalize_weights(d["w"])
    z = np.random.default_rng(11).standard_normal((B, K, D))
    log_jac = GMM.component_log_dets(d["U"])
    freia = -np.log((np.exp(-0.5 * (z**2).sum(-1) + log_jac) * w).sum(-1))  # FrEIA's formula
    np.testing.assert_allclose(GMM.nll_loss(w, z, log_jac), freia, rtol=1e-13, atol=1e-13)
    bound = -(np.log(w) - 0.5 * (z**2).sum(-1) + log_jac).sum(-1)
    np.testing.assert_allclose(GMM.nll_upper_bound(w, z, log_jac), bound, rtol=1e-14)
    far = 60.0 * z / np.linalg.norm(z, axis=-1, keepdims=True)  # exp(-1800) underflows to 0
    with np.errstate(divide="ignore"):
        assert np.isinf(-np.log((np.exp(-0.5 * (far**2).sum(-1) + log_jac) * w).sum(-1))).all()
    nll = GMM.nll_loss(w, far, log_jac)
    nearest = np.min(0.5 * (far**2).sum(-1) - log_jac - np.log(w), axis=1)
    assert np.all(np.isfinite(nll)) and np.all(nll <= nearest)
    assert np.all(nll >= nearest - math.log(K))


def test_component_log_dets_needs_a_triangular_width():
    with pytest.raises(ShapeError, match=r"D\(D\+1\)/2 numbers .* got 7"):
        GMM.component_log_dets(np.zeros((2, K, 7)))


# -- bad inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "conditions", "message"),
    [
        ((D,), [(K,), (K, D)], r"takes the conditions \(w, mu, U, i\), .* got 2"),
        ((D,), [(K,), (K + 1, D), (K, P), ()], r"mu .* K = 3 components of w, got \(4, 4\)"),
        (
            (D,),
            [(K,), (K, D), (K + 1, P), ()],
            r"U .* = \(3, 10\) for K = 3 and D = 4, got \(4, 10\)",
        ),
        ((D,), [(K,), (K, D), (K, P - 1), ()], r"\(K, D\(D\+1\)/2\) = \(3, 10\) .* got \(3, 9\)"),
        ((D,), [(K, 1), (K, D), (K, P), ()], r"w \(the weights\) must have shape \(K,\), got"),
        (
            (D,),
            [(K,), (K, D), (K, P), (1,)],
            r"i .* one integer per sample, shape \(\), got \(1,\)",
        ),
        (
            (D + 1,),
            [(K,), (K, D), (K, P), ()],
            r"input must have shape \(D,\) = \(4,\), got \(5,\)",
        ),
        ((D,), [(K,), (K, D), (K, P)], r"input, of shape \(K, D\) = \(3, 4\); got \(4,\)"),
    ],
)
def test_bad_shapes_are_named(shape, conditions, message):
    with pytest.raises(ShapeError, match=f"GaussianMixtureModel: .*{message}"):
        build_tree(GMM(), [shape], conditions)


def test_the_index_must_be_an_integer_array_and_floats_stay_floats():
    d = _data(12)
    ref = _reference()
    floats = [*_conds(d)[:3], d["i"].astype(np.float64)]
    with pytest.raises(ShapeError, match=r"condition 3 should be an integer index \(int32 or"):
        check_call(ref.tree, [d["x"]], floats, False, True)
    with pytest.raises(ShapeError, match="condition 1 should be float32 or float64, got int64"):
        ref([d["x"]], [d["w"], d["mu"].astype(np.int64), d["U"], d["i"]])
    with pytest.raises(ShapeError, match=r"condition 3 should be an array of shape \(batch,\)"):
        check_call(ref.tree, [d["x"]], [*_conds(d)[:3], None], False, True)
    check_call(ref.tree, [d["x"]], [*_conds(d)[:3], d["i"].astype(np.int32)], False, True)


def test_an_index_out_of_range_gives_nan_for_that_sample_only():
    d = _data(13)
    d["i"][:2] = [K, -1]
    (z,), log_det = _reference()([d["x"]], _conds(d))
    assert np.isnan(z[:2]).all() and np.isnan(log_det[:2]).all()
    assert np.isfinite(z[2:]).all() and np.isfinite(log_det[2:]).all()


def test_a_graph_condition_read_as_an_index_and_as_a_float_is_refused():
    x = fc.InputNode(D, name="x")
    w, mu, u = (fc.ConditionNode(*s) for s in MIX)
    i = fc.ConditionNode(name="i")
    assert i.output_dims == [()]
    gmm = fc.Node(x, GMM(), conditions=[w, mu, u, i], name="gmm")
    graph = fc.GraphINN([x, w, mu, u, i, gmm, fc.OutputNode(gmm)])
    assert graph.condition_kinds(graph.condition_dims) == ("float", "float", "float", "index")
    x2, y = fc.InputNode(D, name="x"), fc.InputNode(D, name="y")
    gmm2 = fc.Node(x2, GMM(), conditions=[w, mu, u, i], name="gmm")
    shifted = fc.Node(y, _Shift(), conditions=[i], name="shift")
    nodes = [x2, y, w, mu, u, i, gmm2, shifted, fc.OutputNode(gmm2), fc.OutputNode(shifted)]
    kinds = "Node 'gmm' as 'index', Node 'shift' as 'float'"
    with pytest.raises(
        ShapeError, match=f"ConditionNode 'i' is read as different kinds of value: {kinds}"
    ):
        fc.GraphINN(nodes)
    sequence = fc.SequenceINN(_Shift(), _Shift(), conditions=[0, 0])
    assert sequence.condition_kinds([()]) == ("float",)


class _Shift(SimpleTransform):
    """y = x + c, one float c per sample: a reader of a scalar condition as a float."""

    def forward(self, ctx, x, cs):
        return x + cs[0][:, None], 0.0

    def inverse(self, ctx, y, cs):
        return y - cs[0][:, None], 0.0


# -- the FrEIA drop-in's calling conventions -------------------------------------------------


@pytest.fixture
def drop_in():
    pytest.importorskip("torch")
    return pytest.importorskip("flowcore.backends.torch.freia.modules")


def _torch(d):
    import torch

    return {k: torch.tensor(v) for k, v in d.items()}


def test_drop_in_picks_freias_components_from_an_int_seed(drop_in):
    import torch

    d = _torch(_data(14, batch=40))
    w = drop_in.GaussianMixtureModel.normalize_weights(d["w"])
    u = torch.rand(40, 1, generator=torch.Generator().manual_seed(12345))  # FrEIA's draw
    want = (u.double().numpy() > np.cumsum(w.numpy(), axis=1)).sum(axis=1)
    picked = drop_in.GaussianMixtureModel.pick_mixture_component(w, 12345)
    assert picked.dtype == torch.int32
    np.testing.assert_array_equal(picked.numpy(), want)
    module = drop_in.GaussianMixtureModel([(D,)], [(K,), (K, D), (K, P), (0,)])
    (z,), log_det = module([d["x"]], c=[w, d["mu"], d["U"], 12345])
    (z_want,), ld_want = module([d["x"]], c=[w, d["mu"], d["U"], picked.long()])
    assert torch.equal(z, z_want) and torch.equal(log_det, ld_want)
    (back,), log_det_back = module([z], c=[w, d["mu"], d["U"], np.int64(12345)], rev=True)
    np.testing.assert_allclose(back.numpy(), d["x"].numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose((log_det + log_det_back).numpy(), 0.0, atol=1e-12)
    with pytest.raises(TypeError, match="must be a tensor of indices, an int .* or None"):
        module([d["x"]], c=[w, d["mu"], d["U"], 1.5])


def test_drop_in_with_i_none_maps_x_through_every_component(drop_in):
    d = _data(15)
    t = _torch(d)
    module = drop_in.GaussianMixtureModel([(D,)], [(K,), (K, D), (K, P), (0,)])
    (z,), log_det = module([t["x"]], c=[t["w"], t["mu"], t["U"], None])
    xs = np.repeat(d["x"][:, None], K, axis=1)
    z_want, ld_want = _oracle_all(d, xs)
    np.testing.assert_allclose(z.numpy(), z_want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det.numpy(), ld_want, rtol=0, atol=ATOL)  # (batch, K)
    (back,), log_det_back = module([z], c=[t["w"], t["mu"], t["U"], None], rev=True)
    np.testing.assert_allclose(back.numpy(), xs, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det_back.numpy(), -ld_want, rtol=0, atol=ATOL)
    (_,), no_jac = module([t["x"]], c=[t["w"], t["mu"], t["U"], None], jac=False)
    assert tuple(no_jac.shape) == (B,) and not no_jac.any()


def test_drop_in_refuses_an_index_out_of_range(drop_in):
    t = _torch(_data(16))
    module = drop_in.GaussianMixtureModel([(D,)], [(K,), (K, D), (K, P), (0,)])
    t["i"][1] = K
    with pytest.raises(
        FlowError, match=r"component indices must be in 0..2 \(3 components\), got \[3\]"
    ):
        module([t["x"]], c=[t["w"], t["mu"], t["U"], t["i"]])


def test_drop_in_graph_with_a_size_0_condition_node(drop_in):
    import torch

    Ff = pytest.importorskip("flowcore.backends.torch.freia.framework")
    x = Ff.InputNode(D, name="x")
    conds = [Ff.ConditionNode(*s) for s in [*MIX, (0,)]]
    gmm = Ff.Node(x, drop_in.GaussianMixtureModel, {}, conditions=conds, name="gmm")
    net = Ff.GraphINN([x, *conds, gmm, Ff.OutputNode(gmm)])
    assert net.dims_c[-1] == ()
    d = _data(17)
    t = _torch(d)
    z, log_det = net(t["x"], c=[t["w"], t["mu"], t["U"], t["i"]])
    z_want, ld_want = _oracle_fixed(d, d["x"])
    np.testing.assert_allclose(z.numpy(), z_want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det.numpy(), ld_want, rtol=0, atol=ATOL)
    z_all, ld_all = net(t["x"], c=[t["w"], t["mu"], t["U"], None])
    assert tuple(z_all.shape) == (B, K, D) and tuple(ld_all.shape) == (B, K)
    x_all, _ = net(z_all, c=[t["w"], t["mu"], t["U"], None], rev=True, jac=False)
    np.testing.assert_allclose(x_all.numpy(), np.repeat(d["x"][:, None], K, 1), atol=ATOL)
    with pytest.raises(ShapeError, match="expected 4 condition"):
        net(t["x"], c=[t["w"], t["mu"], None])
    assert isinstance(z, torch.Tensor)

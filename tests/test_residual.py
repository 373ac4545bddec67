"""IResNetLayer: the residual flow against autodiff, dense NumPy linear algebra and FrEIA 0.2.

- Options and shapes: bad ones are FlowErrors naming the transform and the option.
- The initial power-iteration vectors are the weights' top right singular vectors.
- The exact log-det against ``slogdet`` of the autodiff Jacobian (torch.autograd and
  ``jax.jacfwd``, float64); the inverse log-det is evaluated at the reconstructed input.
- The fixed-point inverse converges as ``q**n`` (q the Lipschitz bound).
- The Hutchinson power series, averaged over many draws, against the exact log-det within
  the series' truncation bound plus five standard errors (the exact variance of the
  Rademacher estimator, from the dense Jacobian).
- The power-iteration update is written back in torch (eager and ``torch.compile``), JAX
  (NNX eager and ``nnx.jit``, the pure ``apply`` returns it) and Keras; the inverse writes
  nothing; a converged vector stays bit for bit.
- The series' draws are reproducible from the build seed in each backend.
- FrEIA 0.2 (weights copied, spectral norms below ``spectral_norm_max`` so that both
  compute the same map): forward and inverse to 1e-12, FrEIA's stochastic log-det within its
  Monte-Carlo error of flowcore's exact one.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import numpy as np
import pytest
from selected_backends import BACKENDS

import flowcore as fc
from flowcore.backend import load_backend
from flowcore.errors import ShapeError
from flowcore.options import OptionError
from flowcore.serialize import spec_from_config, spec_to_config
from flowcore.transforms.residual import (
    IResNetLayer,
    iresnet_params_from_freia,
    power_vectors,
    series_truncation_bound,
)
from flowcore.tree import build_tree, initial_params

ATOL = 1e-12
FRAMEWORKS = {"torch": ("torch",), "jax": ("jax", "flax.nnx"), "keras": ("keras",)}


def _params(spec, dim, seed=0, noise=0.3, converged=True):
    """Initial parameters with the trainable ones perturbed; vectors converged or random."""
    tree = build_tree(spec, [(dim,)])
    params = initial_params(tree, seed)
    rng = np.random.default_rng([seed, 1])
    for name, p in tree.param_specs().items():
        if p.trainable:
            params[name] = params[name] + noise * rng.standard_normal(p.shape)
    n = spec.n_internal_layers + 2
    if converged:
        vectors = power_vectors([params[f"weight_{i}"] for i in range(n)])
    else:
        vectors = [rng.standard_normal(params[f"vector_{i}"].shape) for i in range(n)]
        vectors = [v / np.linalg.norm(v) for v in vectors]
    params.update({f"vector_{i}": v for i, v in enumerate(vectors)})
    return tree, params


def _dense(spec, params, x):
    """An independent NumPy transcription: g(x) and the per-sample Jacobian J (B, D, D),
    the weights normalised with their true spectral norms."""
    n = spec.n_internal_layers + 2
    c = spec.spectral_norm_max
    ws = []
    for i in range(n):
        w = params[f"weight_{i}"]
        ws.append(w / max(1.0, np.linalg.norm(w, 2) / c))
    h, jac = x, np.broadcast_to(np.eye(x.shape[1]), (len(x), x.shape[1], x.shape[1]))
    for i, w in enumerate(ws):
        pre = h @ w.T + params[f"bias_{i}"]
        jac = w @ jac
        if i < n - 1:
            h = np.where(pre > 0, pre, np.expm1(np.minimum(pre, 0)))
            jac = np.where(pre > 0, 1.0, np.exp(np.minimum(pre, 0)))[:, :, None] * jac
        else:
            h = pre
    return h, jac


def _data(dim, batch=4, seed=2):
    return np.random.default_rng(seed).standard_normal((batch, dim))


# -- options and shapes --------------------------------------------------------------------


@pytest.mark.parametrize("value", [1.0, 0.0, -0.5, 1.5])
def test_spectral_norm_max_outside_0_1_is_an_option_error(value):
    with pytest.raises(OptionError, match=r"IResNetLayer: option spectral_norm_max .*> 0.*< 1"):
        IResNetLayer(spectral_norm_max=value)


@pytest.mark.parametrize(
    "option",
    [
        "jacobian_iterations",
        "hutchinson_samples",
        "fixed_point_iterations",
        "lipschitz_iterations",
    ],
)
def test_iterations_below_one_are_option_errors(option):
    with pytest.raises(OptionError, match=rf"IResNetLayer: option {option} must be int >= 1"):
        IResNetLayer(**{option: 0})
    with pytest.raises(OptionError, match=option):
        IResNetLayer(**{option: 2.0})  # type: ignore[arg-type]


def test_other_bad_options():
    with pytest.raises(OptionError, match="internal_size"):
        IResNetLayer(internal_size=0)
    with pytest.raises(OptionError, match="n_internal_layers"):
        IResNetLayer(n_internal_layers=-1)
    with pytest.raises(OptionError, match="log_det_method"):
        IResNetLayer(log_det_method="autodiff")  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="probe_distribution"):
        IResNetLayer(probe_distribution="uniform")  # type: ignore[arg-type]


def test_conditions_and_images_are_shape_errors():
    with pytest.raises(ShapeError, match="IResNetLayer: takes no condition"):
        build_tree(IResNetLayer(), [(3,)], [(2,)])
    with pytest.raises(ShapeError, match="IResNetLayer: takes vectors"):
        build_tree(IResNetLayer(), [(3, 4, 4)])


def test_the_spec_serialises_and_says_when_it_draws():
    spec = IResNetLayer(internal_size=7, log_det_method="exact", spectral_norm_max=0.5)
    assert spec_from_config(spec_to_config(spec)) == spec
    assert not spec.uses_randomness
    assert IResNetLayer().uses_randomness


def test_declarations_and_initial_vectors():
    spec = IResNetLayer(n_internal_layers=2)
    tree = build_tree(spec, [(3,)])
    specs = tree.param_specs()
    sizes = [(6, 3), (6, 6), (6, 6), (3, 6)]  # internal_size defaults to 2 D
    for i, (out, inp) in enumerate(sizes):
        assert specs[f"weight_{i}"].shape == (out, inp) and specs[f"weight_{i}"].trainable
        assert specs[f"bias_{i}"].shape == (out,) and specs[f"bias_{i}"].trainable
        assert specs[f"vector_{i}"].shape == (inp,) and not specs[f"vector_{i}"].trainable
    params = initial_params(tree, 0)
    for i, (_out, inp) in enumerate(sizes):
        w = params[f"weight_{i}"]
        assert np.abs(w).max() <= 1 / np.sqrt(inp)  # PyTorch's Linear default
        _, s, vt = np.linalg.svd(w)
        np.testing.assert_allclose(np.abs(params[f"vector_{i}"] @ vt[0]), 1.0, atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(w @ params[f"vector_{i}"]), s[0], atol=1e-12)
    again = initial_params(tree, 0)
    assert all(np.array_equal(again[k], v) for k, v in params.items())
    # the weights are drawn as without the vectors' trick: all differ from each other
    assert not np.array_equal(params["weight_1"], params["weight_2"])


def test_module_names_are_exported():
    module = importlib.import_module("flowcore.transforms.residual")
    assert set(module.__all__) == {
        "IResNetLayer",
        "iresnet_params_from_freia",
        "power_vectors",
        "series_truncation_bound",
    }


# -- the map and its log-det in the reference ---------------------------------------------


@pytest.mark.parametrize("layers", [0, 1, 2])
def test_reference_against_a_dense_transcription(layers):
    spec = IResNetLayer(internal_size=5, n_internal_layers=layers, log_det_method="exact")
    tree, params = _params(spec, 4)
    x = _data(4)
    (y,), log_det = fc.Reference(tree, params)([x])
    g, jac = _dense(spec, params, x)
    np.testing.assert_allclose(y, x + g, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, np.linalg.slogdet(np.eye(4) + jac)[1], rtol=0, atol=ATOL)
    assert (np.linalg.norm(jac, 2, axis=(1, 2)) <= spec.lipschitz_bound() + 1e-12).all()


def test_inverse_log_det_is_at_the_reconstructed_input():
    spec = IResNetLayer(internal_size=6, log_det_method="exact", spectral_norm_max=0.9)
    tree, params = _params(spec, 3)
    y = 2.0 * _data(3)
    (x,), log_det = fc.Reference(tree, params)([y], rev=True)
    _, jac_x = _dense(spec, params, x)
    _, jac_y = _dense(spec, params, y)
    at_x = np.linalg.slogdet(np.eye(3) + jac_x)[1]
    np.testing.assert_allclose(log_det, -at_x, rtol=0, atol=ATOL)
    assert np.abs(at_x - np.linalg.slogdet(np.eye(3) + jac_y)[1]).max() > 1e-3  # not at y


def test_inverse_converges_geometrically():
    spec = IResNetLayer(internal_size=6, n_internal_layers=0, spectral_norm_max=0.9)
    tree, params = _params(spec, 3, noise=1.0)  # every weight normalised to c
    q = spec.lipschitz_bound()
    x = _data(3)
    (y,), _ = fc.Reference(tree, params)([x], jac=False)
    g_y, _ = _dense(spec, params, y)
    errors = []
    for n in (1, 5, 10, 20, 40, 80):
        inverse = IResNetLayer(
            internal_size=6, n_internal_layers=0, spectral_norm_max=0.9, fixed_point_iterations=n
        )
        (x_n,), _ = fc.Reference(build_tree(inverse, [(3,)]), params)([y], rev=True, jac=False)
        error = np.abs(x_n - x).max()
        # x_0 = y is g(y)-close to x after -g: |x_n - x| <= q^n |x_0 - x| <= q^n |g(x)|/(1-q)
        assert error <= q**n * np.abs(g_y).sum(axis=1).max() / (1 - q) + 1e-14
        errors.append(error)
    assert errors[0] > 1e-3 and errors[-1] < 1e-13
    assert all(b <= a for a, b in zip(errors, errors[1:], strict=False))


@pytest.mark.parametrize("terms", [2, 6, 20])
def test_series_estimate_is_within_the_truncation_bound(terms):
    dim, draws = 3, 4000
    spec = IResNetLayer(
        internal_size=6, jacobian_iterations=terms, hutchinson_samples=draws, spectral_norm_max=0.9
    )
    tree, params = _params(spec, dim, noise=1.0)
    x = _data(dim)
    exact_spec = IResNetLayer(internal_size=6, log_det_method="exact", spectral_norm_max=0.9)
    (_,), exact = fc.Reference(build_tree(exact_spec, [(dim,)]), params)([x])
    (_,), estimate = fc.Reference(tree, params, seed=0)([x])
    # the exact variance of one Rademacher probe of A = sum_k (-1)^(k+1) J^k / k
    _, jac = _dense(spec, params, x)
    power, series = np.broadcast_to(np.eye(dim), jac.shape), np.zeros_like(jac)
    for k in range(1, terms + 1):
        power = power @ jac
        series = series + (-1) ** (k + 1) * power / k
    sym = 0.5 * (series + np.swapaxes(series, 1, 2))
    variance = 2 * ((sym**2).sum(axis=(1, 2)) - (np.diagonal(sym, axis1=1, axis2=2) ** 2).sum(1))
    stderr = np.sqrt(variance / draws)
    bound = series_truncation_bound(dim, spec.lipschitz_bound(), terms)
    truncated = np.trace(series, axis1=1, axis2=2)
    assert (np.abs(exact - truncated) <= bound).all()
    assert (np.abs(estimate - exact) <= bound + 5 * stderr + 1e-12).all()
    if terms == 2:  # the bound is not vacuous: the truncation is visible at 2 terms
        assert np.abs(exact - truncated).max() > 1e-4


def test_series_with_normal_probes_is_unbiased_too():
    spec = IResNetLayer(
        internal_size=6,
        hutchinson_samples=20000,
        probe_distribution="normal",
        jacobian_iterations=30,
    )
    tree, params = _params(spec, 3)
    x = _data(3)
    (_,), estimate = fc.Reference(tree, params, seed=1)([x])
    _, jac = _dense(spec, params, x)
    exact = np.linalg.slogdet(np.eye(3) + jac)[1]
    np.testing.assert_allclose(estimate, exact, atol=0.05)


def test_series_bound_rejects_a_non_contraction():
    with pytest.raises(ValueError, match="lipschitz"):
        series_truncation_bound(3, 1.0, 5)


# -- backends: autodiff, write-back, randomness ----------------------------------------------


def _require(backend):
    for module in FRAMEWORKS[backend]:
        pytest.importorskip(module, reason=f"the {backend} backend needs {module}")
    return load_backend(backend)


@pytest.fixture
def x64() -> Iterator[None]:
    jax = pytest.importorskip("jax", reason="the jax backend needs JAX")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def _model(backend, spec, params, dtype="float64"):
    model = fc.build(spec, (params["weight_0"].shape[1],), backend=backend, dtype=dtype, seed=0)
    fc.set_params(model, params)
    return model


def test_exact_log_det_against_torch_autograd():
    torch = pytest.importorskip("torch", reason="the torch backend needs PyTorch")
    spec = IResNetLayer(internal_size=5, n_internal_layers=2, log_det_method="exact")
    _, params = _params(spec, 4)  # converged: every call below normalises the same way
    model = _model("torch", spec, params)
    x = torch.tensor(_data(4))
    jac = torch.stack(
        [torch.autograd.functional.jacobian(lambda v: model(v[None])[0][0], s) for s in x]
    )
    _, log_det = model(x)
    want = torch.linalg.slogdet(jac)[1]
    np.testing.assert_allclose(log_det.detach().numpy(), want.numpy(), rtol=0, atol=1e-12)
    # the inverse: minus the log-det at the reconstructed x, with a parameter gradient
    y, _ = model(x)
    x_back, inv_log_det = model(y.detach(), rev=True)
    np.testing.assert_allclose(x_back.detach().numpy(), x.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(inv_log_det.detach().numpy(), -want.numpy(), rtol=0, atol=1e-10)
    inv_log_det.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_exact_log_det_against_jax_jacfwd(x64):
    _require("jax")
    import jax
    import jax.numpy as jnp
    from flowcore.backends.jax import functional

    spec = IResNetLayer(internal_size=5, log_det_method="exact")
    _, params = _params(spec, 3, converged=False)
    apply, trainable, state = functional(_model("jax", spec, params), with_state=True)
    x = jnp.asarray(_data(3))

    def one(v):
        return apply(trainable, v[None], state=state)[0][0]

    jac = jax.vmap(jax.jacfwd(one))(x)
    (_, log_det), updates = jax.jit(apply, static_argnames=("mutable",))(
        trainable, x, state=state, mutable=True
    )
    want = np.linalg.slogdet(np.asarray(jac))[1]
    np.testing.assert_allclose(np.asarray(log_det), want, rtol=0, atol=1e-12)
    assert set(updates) == {"vector_0", "vector_1", "vector_2"}


def _one_step(params, spec):
    """The vectors after one forward call, by NumPy: a step of the power iteration."""
    out = {}
    for i in range(spec.n_internal_layers + 2):
        w, v = params[f"weight_{i}"], params[f"vector_{i}"]
        for _ in range(spec.lipschitz_iterations):
            v = w.T @ (w @ v) + 1e-12 * v
            v = v / np.linalg.norm(v)
        out[f"vector_{i}"] = v
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_writes_the_power_step_back_and_inverse_does_not(backend):
    impl = _require(backend)
    spec = IResNetLayer(internal_size=5, log_det_method="exact", lipschitz_iterations=2)
    tree, params = _params(spec, 3, converged=False)
    model = _model(backend, spec, params, dtype="float32")
    start = {k: v.astype(np.float64) for k, v in fc.get_params(model).items()}
    ref = fc.Reference(tree, start)
    x = _data(3).astype("float32").astype(np.float64)
    ys, log_det = impl.call(model, [impl.to_native(x, "float32", "cpu")], [], False, True)
    (want,), want_log_det = ref([x])
    after = fc.get_params(model)
    for name, v in _one_step(start, spec).items():
        np.testing.assert_allclose(after[name], v, rtol=0, atol=1e-5)
        np.testing.assert_allclose(ref.params[name], v, rtol=0, atol=1e-12)
        assert not np.allclose(after[name], start[name], atol=1e-3)  # it moved
    np.testing.assert_allclose(impl.to_numpy(ys[0]), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(impl.to_numpy(log_det), want_log_det, rtol=1e-5, atol=1e-5)
    # the inverse uses the stored vectors, writes nothing, and undoes that forward
    back, _ = impl.call(model, [ys[0]], [], True, True)
    np.testing.assert_allclose(impl.to_numpy(back[0]), x, rtol=0, atol=1e-5)
    for k, v in fc.get_params(model).items():
        np.testing.assert_array_equal(v, after[k])


@pytest.mark.parametrize("backend", BACKENDS)
def test_converged_vectors_stay_bit_for_bit(backend):
    impl = _require(backend)
    spec = IResNetLayer(internal_size=5, log_det_method="exact")
    _, params = _params(spec, 3)
    model = _model(backend, spec, params, dtype="float32")
    start = fc.get_params(model)
    for seed in range(3):
        x = _data(3, seed=seed).astype("float32")
        impl.call(model, [impl.to_native(x, "float32", "cpu")], [], False, True)
    for k, v in fc.get_params(model).items():
        np.testing.assert_array_equal(v, start[k])


def test_torch_compile_writes_back():
    torch = pytest.importorskip("torch", reason="the torch backend needs PyTorch")
    spec = IResNetLayer(internal_size=5, log_det_method="exact")
    tree, params = _params(spec, 3, converged=False)
    model = _model("torch", spec, params)
    ref = fc.Reference(tree, fc.get_params(model))
    x = _data(3)
    z, log_det = torch.compile(model)(torch.tensor(x))
    (want,), want_log_det = ref([x])
    np.testing.assert_allclose(z.detach().numpy(), want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det.detach().numpy(), want_log_det, rtol=0, atol=ATOL)
    after = fc.get_params(model)
    for name in ("vector_0", "vector_1", "vector_2"):
        np.testing.assert_allclose(after[name], ref.params[name], rtol=0, atol=ATOL)


def test_nnx_jit_writes_back(x64):
    _require("jax")
    import jax.numpy as jnp
    from flax import nnx

    spec = IResNetLayer(internal_size=5, log_det_method="exact")
    tree, params = _params(spec, 3, converged=False)
    model = _model("jax", spec, params)
    ref = fc.Reference(tree, fc.get_params(model))
    x = _data(3)
    z, log_det = nnx.jit(lambda m, v: m(v))(model, jnp.asarray(x))
    (want,), want_log_det = ref([x])
    np.testing.assert_allclose(np.asarray(z), want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(np.asarray(log_det), want_log_det, rtol=0, atol=ATOL)
    after = fc.get_params(model)
    for name in ("vector_0", "vector_1", "vector_2"):
        np.testing.assert_allclose(after[name], ref.params[name], rtol=0, atol=ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_series_draws_are_reproducible_from_the_seed(backend):
    impl = _require(backend)
    spec = IResNetLayer(internal_size=5, hutchinson_samples=2)
    x = _data(3).astype("float32")

    def log_dets(seed):
        model = fc.build(spec, (3,), backend=backend, seed=seed)
        return [
            impl.to_numpy(
                impl.call(model, [impl.to_native(x, "float32", "cpu")], [], False, True)[1]
            )
            for _ in range(2)
        ]

    first, again, other = log_dets(0), log_dets(0), log_dets(1)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])  # the generator moves on
    assert not np.array_equal(first[0], other[0])


def test_jax_pure_apply_draws_from_its_key():
    _require("jax")
    import jax
    from flowcore.backends.jax import functional

    apply, params, state = functional(
        fc.build(IResNetLayer(internal_size=5), (3,), backend="jax", seed=0), with_state=True
    )
    x = _data(3).astype("float32")
    one = apply(params, x, state=state, key=jax.random.key(0))[1]
    two = apply(params, x, state=state, key=jax.random.key(0))[1]
    three = apply(params, x, state=state, key=jax.random.key(1))[1]
    np.testing.assert_array_equal(np.asarray(one), np.asarray(two))
    assert not np.array_equal(np.asarray(one), np.asarray(three))
    with pytest.raises(fc.FlowError, match="key"):
        apply(params, x, state=state)


# -- FrEIA 0.2 --------------------------------------------------------------------------------


def _freia(dim, hidden, layers, **options):
    torch = pytest.importorskip("torch", reason="FrEIA 0.2 as oracle needs torch")
    pytest.importorskip("FrEIA", reason="FrEIA 0.2 as oracle: pip install 'flowcore[freia]'")
    import FrEIA.modules as fm

    torch.manual_seed(0)
    module = fm.IResNetLayer(
        [(dim,)], internal_size=hidden, n_internal_layers=layers, **options
    ).double()
    with torch.no_grad():  # spectral norms 0.6 < c = 0.8: flowcore's normalisation is inactive
        for i in range(layers + 2):
            w = module.residual[2 * i].weight
            w *= 0.6 / torch.linalg.matrix_norm(w, ord=2)
    return torch, module


def test_freia_02_forward_inverse_and_log_det():
    dim, hidden, layers, n = 3, 6, 1, 30
    draws, terms = 400, 20
    torch, module = _freia(
        dim,
        hidden,
        layers,
        fixed_point_iterations=n,
        hutchinson_samples=draws,
        jacobian_iterations=terms,
    )
    params = iresnet_params_from_freia(module.state_dict(), n_internal_layers=layers)
    # FrEIA's n iterations end with one more evaluation of g: n + 1 steps of x <- y - g(x)
    spec = IResNetLayer(
        internal_size=hidden,
        n_internal_layers=layers,
        log_det_method="exact",
        fixed_point_iterations=n + 1,
    )
    tree = build_tree(spec, [(dim,)])
    x = 2.0 * _data(dim)
    (y,), log_det = fc.Reference(tree, params)([x])
    (want,), freia_log_det = module([torch.tensor(x)])
    np.testing.assert_allclose(y, want.detach().numpy(), rtol=0, atol=ATOL)
    (x_back,), inv_log_det = fc.Reference(tree, params)([y], rev=True)
    (freia_back,), freia_inv = module([torch.tensor(y)], rev=True)
    np.testing.assert_allclose(x_back, freia_back.detach().numpy(), rtol=0, atol=ATOL)
    # FrEIA's log-det is the Hutchinson series: within its Monte-Carlo error of the exact one
    _, jac = _dense(spec, params, x)
    spread = np.sqrt(2 * (jac**2).sum(axis=(1, 2)) / draws)  # a generous stderr
    bound = series_truncation_bound(dim, 0.6**3, terms)
    assert (np.abs(freia_log_det.detach().numpy() - log_det) <= bound + 6 * spread).all()
    # FrEIA's inverse evaluates its log-det at y; flowcore's at the reconstructed x
    _, jac_y = _dense(spec, params, y)
    at_y = np.linalg.slogdet(np.eye(dim) + jac_y)[1]
    np.testing.assert_allclose(inv_log_det, -log_det, rtol=0, atol=1e-10)
    assert (np.abs(freia_inv.detach().numpy() + at_y) <= bound + 6 * spread).all()


def test_freia_state_with_missing_keys_is_an_error():
    with pytest.raises(fc.FlowError, match=r"residual\.4\.weight"):
        iresnet_params_from_freia({"residual.0.weight": np.zeros((2, 2))})

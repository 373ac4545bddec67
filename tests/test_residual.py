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
- Images (3x3 convolutions, H != W): the map and exact log-det against a dense NumPy
  transcription and torch autograd, the power iteration against the SVD of the dense
  convolution operator (and the initial vectors, by SVD and by subspace iteration), the
  series within its truncation bound, the write-back in each backend, FrEIA 0.2 to 1e-12.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Iterator

import numpy as np
import pytest
from selected_backends import BACKENDS, require, subject

import flowcore as fc
from flowcore.errors import ShapeError
from flowcore.options import OptionError
from flowcore.serialize import spec_from_config, spec_to_config
from flowcore.transforms import residual
from flowcore.transforms.residual import (
    IResNetLayer,
    iresnet_params_from_freia,
    power_vectors,
    series_truncation_bound,
)
from flowcore.tree import build_tree, initial_params

ATOL = 1e-12


def _params(spec, dim, seed=0, noise=0.3, converged=True):
    """Initial parameters with the trainable ones perturbed; vectors converged or random.
    ``dim``: a vector size, or an image shape (C, H, W)."""
    shape = (dim,) if isinstance(dim, int) else dim
    tree = build_tree(spec, [shape])
    params = initial_params(tree, seed)
    rng = np.random.default_rng([seed, 1])
    for name, p in tree.param_specs().items():
        if p.trainable:
            params[name] = params[name] + noise * rng.standard_normal(p.shape)
    n = spec.n_internal_layers + 2
    if converged:
        vectors = power_vectors([params[f"weight_{i}"] for i in range(n)], shape[1:] or None)
    else:
        vectors = [rng.standard_normal(params[f"vector_{i}"].shape) for i in range(n)]
        vectors = [v / np.linalg.norm(v) for v in vectors]
    params.update({f"vector_{i}": v for i, v in enumerate(vectors)})
    return tree, params


def _dense(spec, params, x):
    """An independent NumPy transcription: g(x) and the per-sample Jacobian J (B, D, D),
    the weights normalised with their true spectral norms."""
    n = spec.n_internal_layers + 2
    weights = [params[f"weight_{i}"] for i in range(n)]
    return _dense_chain(spec, weights, [params[f"bias_{i}"] for i in range(n)], x)


def _dense_chain(spec, operators, biases, x):
    """g(x) = A_L elu(... elu(A_1 x + b_1) ...) + b_L and its Jacobian (B, D, D) for dense
    operators ``A_i`` (each divided by max(1, ||A_i|| / c)) and biases (flat, per output)."""
    c = spec.spectral_norm_max
    h, jac = x, np.broadcast_to(np.eye(x.shape[1]), (len(x), x.shape[1], x.shape[1]))
    for i, (a, b) in enumerate(zip(operators, biases, strict=True)):
        a = a / max(1.0, np.linalg.norm(a, 2) / c)
        pre = h @ a.T + b
        jac = a @ jac
        if i < len(operators) - 1:
            h = np.where(pre > 0, pre, np.expm1(np.minimum(pre, 0)))
            jac = np.where(pre > 0, 1.0, np.exp(np.minimum(pre, 0)))[:, :, None] * jac
        else:
            h = pre
    return h, jac


def _series_and_probe_variance(jac, terms):
    """The truncated series A = sum_{k<=terms} (-1)^(k+1) J^k / k per sample, and the exact
    variance of one Rademacher probe u^T A u (2 * the off-diagonal sum of sym(A)^2)."""
    power, series = np.broadcast_to(np.eye(jac.shape[1]), jac.shape), np.zeros_like(jac)
    for k in range(1, terms + 1):
        power = power @ jac
        series = series + (-1) ** (k + 1) * power / k
    sym = 0.5 * (series + np.swapaxes(series, 1, 2))
    variance = 2 * ((sym**2).sum(axis=(1, 2)) - (np.diagonal(sym, axis1=1, axis2=2) ** 2).sum(1))
    return series, variance


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


def test_conditions_and_other_ranks_are_shape_errors():
    with pytest.raises(ShapeError, match="IResNetLayer: takes no condition"):
        build_tree(IResNetLayer(), [(3,)], [(2,)])
    with pytest.raises(ShapeError, match="IResNetLayer: takes no condition"):
        build_tree(IResNetLayer(), [(2, 4, 4)], [(2,)])
    for shape in [(3, 4), (1, 2, 4, 4)]:
        with pytest.raises(
            ShapeError, match=rf"IResNetLayer: takes vectors .*{re.escape(str(shape))}"
        ):
            build_tree(IResNetLayer(), [shape])


def test_exact_log_det_on_large_images_is_refused():
    build_tree(IResNetLayer(log_det_method="exact"), [(4, 8, 8)])  # 256 entries: the limit
    with pytest.raises(ShapeError, match=r"IResNetLayer: log_det_method='exact' .*256.*257"):
        build_tree(IResNetLayer(log_det_method="exact"), [(1, 1, 257)])
    build_tree(IResNetLayer(), [(1, 1, 257)])  # the series takes any size


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
    series, variance = _series_and_probe_variance(jac, terms)
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


# -- images: 3x3 convolutions -----------------------------------------------------------------

IMAGE = (2, 3, 4)  # H != W: a transposed spatial axis would show
SIZE = 24  # C * H * W


def _numpy_conv(x, w):
    """The bias-free padding-1 3x3 cross-correlation, a sum of shifted slices (independent
    of the NumPy namespace's sliding windows)."""
    height, width = x.shape[2:]
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    return sum(
        np.einsum("oc,bchw->bohw", w[:, :, u, v], padded[:, :, u : u + height, v : v + width])
        for u in range(3)
        for v in range(3)
    )


def _operator(w, spatial):
    """The dense (out*H*W, in*H*W) matrix of the padding-1 convolution by ``w``."""
    n = w.shape[1] * spatial[0] * spatial[1]
    return _numpy_conv(np.eye(n).reshape(n, w.shape[1], *spatial), w).reshape(n, -1).T


def _dense_image(spec, params, x):
    """``_dense`` on images (B, C, H, W): g(x) and the Jacobian (B, D, D), D = C*H*W, from
    the dense operators normalised with their true spectral norms."""
    n = spec.n_internal_layers + 2
    spatial = x.shape[2:]
    operators = [_operator(params[f"weight_{i}"], spatial) for i in range(n)]
    biases = [np.repeat(params[f"bias_{i}"], spatial[0] * spatial[1]) for i in range(n)]
    h, jac = _dense_chain(spec, operators, biases, x.reshape(len(x), -1))
    return h.reshape(x.shape), jac


def _image_data(shape=IMAGE, batch=3, seed=2):
    return np.random.default_rng(seed).standard_normal((batch, *shape))


def _top_vector(w, spatial):
    """The top right singular vector of the dense operator, as an image, and its value."""
    _, s, vt = np.linalg.svd(_operator(w, spatial))
    return vt[0].reshape(w.shape[1], *spatial), s[0]


def test_image_declarations_and_initial_vectors():
    spec = IResNetLayer(n_internal_layers=2)
    params = initial_params(build_tree(spec, [IMAGE]), 0)
    channels = [(4, 2), (4, 4), (4, 4), (2, 4)]  # internal_size defaults to 2 C
    for i, (out, inp) in enumerate(channels):
        w, v = params[f"weight_{i}"], params[f"vector_{i}"]
        assert w.shape == (out, inp, 3, 3) and params[f"bias_{i}"].shape == (out,)
        assert v.shape == (inp, 3, 4)
        assert np.abs(w).max() <= 1 / np.sqrt(9 * inp)  # PyTorch's Conv2d default
        top, sigma = _top_vector(w, IMAGE[1:])
        np.testing.assert_allclose(np.abs((v * top).sum()), 1.0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(_numpy_conv(v[None], w)), sigma, atol=1e-12)


def test_image_vectors_above_the_dense_limit_start_from_power_steps(monkeypatch):
    monkeypatch.setattr(residual, "DENSE_INIT_LIMIT", 0)
    w = initial_params(build_tree(IResNetLayer(), [IMAGE]), 0)["weight_1"]
    (v,) = power_vectors([w], IMAGE[1:])
    top, sigma = _top_vector(w, IMAGE[1:])
    # 100 steps on 8 vectors contract the rest by (sigma_9 / sigma_1)^200 < 1e-20
    np.testing.assert_allclose(np.linalg.norm(_numpy_conv(v[None], w)), sigma, rtol=1e-12)
    np.testing.assert_allclose(np.abs((v * top).sum()), 1.0, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match=r"power_vectors: a kernel \(4, 4, 3, 3\) needs spatial"):
        power_vectors([w])


@pytest.mark.parametrize("layers", [0, 1])
def test_image_reference_against_a_dense_transcription(layers):
    spec = IResNetLayer(n_internal_layers=layers, log_det_method="exact", spectral_norm_max=0.7)
    tree, params = _params(spec, IMAGE)
    x = _image_data()
    (y,), log_det = fc.Reference(tree, params)([x])
    g, jac = _dense_image(spec, params, x)
    np.testing.assert_allclose(y, x + g, rtol=0, atol=ATOL)
    np.testing.assert_allclose(
        log_det, np.linalg.slogdet(np.eye(SIZE) + jac)[1], rtol=0, atol=ATOL
    )
    assert (np.linalg.norm(jac, 2, axis=(1, 2)) <= spec.lipschitz_bound() + 1e-12).all()
    # q = 0.7^3 = 0.34: 50 fixed-point steps reach float64 rounding
    (x_back,), inv_log_det = fc.Reference(tree, params)([y], rev=True)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=ATOL)
    np.testing.assert_allclose(inv_log_det, -log_det, rtol=0, atol=ATOL)


def test_image_power_iteration_converges_to_the_top_singular_vector():
    steps = 400
    spec = IResNetLayer(log_det_method="exact", lipschitz_iterations=steps)
    tree, params = _params(spec, IMAGE, converged=False)
    ref = fc.Reference(tree, params)
    ref([_image_data()], jac=False)  # one call: its steps move the vector, it is written back
    for i in range(3):
        w, start, v = params[f"weight_{i}"], params[f"vector_{i}"], ref.params[f"vector_{i}"]
        s = np.linalg.svd(_operator(w, IMAGE[1:]), compute_uv=False)
        top, sigma = _top_vector(w, IMAGE[1:])
        # power iteration on A^T A: tan(angle to the top vector) shrinks at least by
        # (s_2^2 + eps) / (s_1^2 + eps) a step (the two top values of a conv can be close)
        rate = (s[1] ** 2 + 1e-12) / (s[0] ** 2 + 1e-12)
        cos0, cos = np.abs((start * top).sum()), np.abs((v * top).sum())
        tan0, tan = np.sqrt(1 - cos0**2) / cos0, np.sqrt(max(1 - cos**2, 0.0)) / cos
        assert tan <= rate**steps * tan0 + 1e-7 and tan0 > 0.5  # it started elsewhere
        # the estimate sigma-hat = |A v| is within tan^2 (relative) of the spectral norm
        sigma_hat = np.linalg.norm(_numpy_conv(v[None], w))
        assert sigma * (1 - tan**2) - 1e-12 <= sigma_hat <= sigma + 1e-12


def test_image_series_estimate_is_within_the_truncation_bound():
    terms, draws = 6, 1000
    spec = IResNetLayer(jacobian_iterations=terms, hutchinson_samples=draws)
    tree, params = _params(spec, IMAGE, noise=1.0)
    x = _image_data()
    (_,), estimate = fc.Reference(tree, params, seed=0)([x])
    _, jac = _dense_image(spec, params, x)
    exact = np.linalg.slogdet(np.eye(SIZE) + jac)[1]
    # the exact variance of one Rademacher probe of A = sum_k (-1)^(k+1) J^k / k
    series, variance = _series_and_probe_variance(jac, terms)
    bound = series_truncation_bound(SIZE, spec.lipschitz_bound(), terms)
    assert (np.abs(exact - np.trace(series, axis1=1, axis2=2)) <= bound).all()
    assert (np.abs(estimate - exact) <= bound + 5 * np.sqrt(variance / draws) + 1e-12).all()


# -- backends: autodiff, write-back, randomness ----------------------------------------------


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
    shape = params["vector_0"].shape  # (D,) or (C, H, W): the input's
    model = fc.build(spec, shape, backend=backend, dtype=dtype, seed=0)
    fc.set_params(model, params)
    return model


@pytest.mark.parametrize("kind", ["vector", "image"])
@subject("torch")
def test_exact_log_det_against_torch_autograd(kind):
    torch = pytest.importorskip("torch", reason="the torch backend needs PyTorch")
    if kind == "vector":
        spec = IResNetLayer(internal_size=5, n_internal_layers=2, log_det_method="exact")
        shape, data, size = 4, _data(4), 4
    else:
        spec = IResNetLayer(log_det_method="exact", spectral_norm_max=0.7)
        shape, data, size = IMAGE, _image_data(), SIZE
    _, params = _params(spec, shape)  # converged: every call below normalises the same way
    model = _model("torch", spec, params)
    x = torch.tensor(data)

    def one(v):
        return model(v[None], jac=False)[0][0]

    jac = torch.stack([torch.autograd.functional.jacobian(one, s).reshape(size, size) for s in x])
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
    require("jax")
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_image_forward_writes_the_power_step_back(backend):
    impl = require(backend)
    spec = IResNetLayer(log_det_method="exact", lipschitz_iterations=2)
    _, params = _params(spec, IMAGE, converged=False)
    model = _model(backend, spec, params, dtype="float32")
    start = {k: v.astype(np.float64) for k, v in fc.get_params(model).items()}
    x = _image_data().astype("float32")
    impl.call(model, [impl.to_native(x, "float32", "cpu")], [], False, False)
    after = fc.get_params(model)
    for i in range(3):
        a, v = _operator(start[f"weight_{i}"], IMAGE[1:]), start[f"vector_{i}"].reshape(-1)
        for _ in range(2):  # the conv's adjoint is A^T
            v = a.T @ (a @ v) + 1e-12 * v
            v = v / np.linalg.norm(v)
        got = after[f"vector_{i}"]
        assert got.shape == start[f"vector_{i}"].shape
        np.testing.assert_allclose(got.reshape(-1), v, rtol=0, atol=1e-5)  # float32
        assert not np.allclose(got, start[f"vector_{i}"], atol=1e-3)  # it moved


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
    impl = require(backend)
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
    impl = require(backend)
    spec = IResNetLayer(internal_size=5, log_det_method="exact")
    _, params = _params(spec, 3)
    model = _model(backend, spec, params, dtype="float32")
    start = fc.get_params(model)
    for seed in range(3):
        x = _data(3, seed=seed).astype("float32")
        impl.call(model, [impl.to_native(x, "float32", "cpu")], [], False, True)
    for k, v in fc.get_params(model).items():
        np.testing.assert_array_equal(v, start[k])


@subject("torch")
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
    require("jax")
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
    impl = require(backend)
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
    require("jax")
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


def test_freia_02_on_images():
    """Forward and inverse to 1e-12 (float64, the same operations). FrEIA's stochastic
    log-det (autograd, the same code for any shape) is checked on vectors above; on images
    its autograd probes cost seconds."""
    shape, hidden, layers, n = IMAGE, 4, 1, 3  # few steps, so the off-by-one shows
    torch = pytest.importorskip("torch", reason="FrEIA 0.2 as oracle needs torch")
    pytest.importorskip("FrEIA", reason="FrEIA 0.2 as oracle: pip install 'flowcore[freia]'")
    import FrEIA.modules as fm

    torch.manual_seed(0)
    module = fm.IResNetLayer(
        [shape],
        internal_size=hidden,
        n_internal_layers=layers,
        fixed_point_iterations=n,
    ).double()
    with torch.no_grad():  # conv spectral norms 0.6 < c = 0.8: flowcore's normalisation idle
        for i in range(layers + 2):
            w = module.residual[2 * i].weight
            w *= 0.6 / np.linalg.norm(_operator(w.numpy(), shape[1:]), 2)
    params = iresnet_params_from_freia(module.state_dict(), layers, spatial=shape[1:])
    # FrEIA's n iterations end with one more evaluation of g: n + 1 steps of x <- y - g(x)
    spec = IResNetLayer(
        internal_size=hidden,
        n_internal_layers=layers,
        log_det_method="exact",
        fixed_point_iterations=n + 1,
    )
    tree = build_tree(spec, [shape])
    x = 2.0 * _image_data()
    (y,), _ = fc.Reference(tree, params)([x], jac=False)
    (want,), _ = module([torch.tensor(x)], jac=False)
    np.testing.assert_allclose(y, want.detach().numpy(), rtol=0, atol=ATOL)
    (x_back,), _ = fc.Reference(tree, params)([y], rev=True, jac=False)
    (freia_back,), _ = module([torch.tensor(y)], rev=True, jac=False)
    np.testing.assert_allclose(x_back, freia_back.detach().numpy(), rtol=0, atol=ATOL)
    short = build_tree(dataclasses.replace(spec, fixed_point_iterations=n), [shape])
    (x_short,), _ = fc.Reference(short, params)([y], rev=True, jac=False)
    # flowcore's n steps stop one short of FrEIA's n: far outside the 1e-12 agreement
    assert np.abs(x_short - freia_back.detach().numpy()).max() > 1e3 * ATOL
    with pytest.raises(ShapeError, match=r"iresnet_params_from_freia: .*spatial=\(H, W\)"):
        iresnet_params_from_freia(module.state_dict(), layers)


def test_freia_state_with_missing_keys_is_an_error():
    with pytest.raises(fc.FlowError, match=r"residual\.4\.weight"):
        iresnet_params_from_freia({"residual.0.weight": np.zeros((2, 2))})

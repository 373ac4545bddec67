"""The spline kernels and transforms: against nflows, against a NumPy transcription of FrEIA
master's parametrisation, at special inputs in every backend, and their option errors.

- ``unconstrained_rational_quadratic`` against nflows 0.14's
  ``unconstrained_rational_quadratic_spline`` (tails="linear") in float64, forward and
  inverse, outputs and log-dets: equal to 1e-12 (measured 2e-14 in the outputs and 2.3e-13 in
  the log-dets, from an ulp of difference in torch's fused softmax amplified by the narrowest
  bins; with torch's own softmax swapped in, 2e-15).
- FrEIA master's binned RQ spline (its formula is nflows', its parametrisation its own): the
  knots against a NumPy transcription of FrEIA master's ``constrain_parameters`` (1e-13), the
  spline inside the domain against nflows' ``rational_quadratic_spline`` given those knots
  and derivatives (1e-12), the affine tails against their closed form.
- Special inputs, exactly on the knots, on the domain's bounds, at |x| = 1e4 and 1e30: finite
  outputs, log-dets and gradients (torch autograd, ``jax.grad``; wrt inputs and parameters),
  the identity (or the affine tail) outside; the transforms built with ``flowcore.build`` in
  every installed backend at those inputs, float32 and float64, against the float64
  reference.
- The couplings' log-det against the autodiff Jacobian, round trips, option errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from selected_backends import BACKENDS, subject

import flowcore as fc
from flowcore.backend import load_backend
from flowcore.errors import FlowError
from flowcore.namespace import numpy_namespace
from flowcore.options import OptionError
from flowcore.transforms import rational_quadratic as rq
from flowcore.transforms.splines import (
    ElementwiseRationalQuadraticSpline,
    LinearSpline,
    RationalQuadraticSpline,
)
from flowcore.tree import build_tree, initial_params

XP = numpy_namespace()
FAR = (1e4, -1e4, 1e30, -1e30)


def _raw(rng, n, k, scale=1.0):
    return (
        rng.normal(size=(n, k)) * scale,
        rng.normal(size=(n, k)) * scale,
        rng.normal(size=(n, k - 1)) * scale,
    )


# -- the nflows kernel -----------------------------------------------------------------------


@pytest.mark.parametrize("bins", [1, 2, 5, 8])
@pytest.mark.parametrize("bound", [1.0, 3.0])
@pytest.mark.parametrize("inverse", [False, True])
def test_kernel_matches_nflows(bins, bound, inverse):
    torch = pytest.importorskip("torch")
    nf = pytest.importorskip("nflows.transforms.splines.rational_quadratic", reason="oracle")
    rng = np.random.default_rng(bins)
    n = 500
    x = rng.normal(size=n) * bound * 1.2
    uw, uh, ud = _raw(rng, n, bins)
    t = [torch.tensor(a, dtype=torch.float64) for a in (x, uw, uh, ud)]
    y0, ld0 = nf.unconstrained_rational_quadratic_spline(
        *t, inverse=inverse, tails="linear", tail_bound=bound
    )
    y1, ld1 = rq.unconstrained_rational_quadratic(
        XP, x, uw, uh, ud, inverse=inverse, tail_bound=bound
    )
    np.testing.assert_allclose(y1, y0.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ld1, ld0.numpy(), rtol=0, atol=1e-12)
    assert y1.shape == x.shape and ld1.shape == x.shape


def _nflows_knots(uw, bound, minimum=1e-3):
    """The knots nflows puts on [-B, B], computed here in NumPy."""
    e = np.exp(uw - uw.max(-1, keepdims=True))
    w = minimum + (1 - minimum * uw.shape[-1]) * e / e.sum(-1, keepdims=True)
    cum = np.concatenate([np.zeros_like(w[..., :1]), np.cumsum(w, -1)], -1)
    knots = 2 * bound * cum - bound
    knots[..., 0], knots[..., -1] = -bound, bound
    return knots


def test_kernel_on_knots_and_bounds():
    torch = pytest.importorskip("torch")
    nf = pytest.importorskip("nflows.transforms.splines.rational_quadratic", reason="oracle")
    rng = np.random.default_rng(1)
    bins, bound = 4, 2.0
    uw, uh, ud = _raw(rng, 1, bins)
    for inverse, knots in ((False, _nflows_knots(uw, bound)), (True, _nflows_knots(uh, bound))):
        x = knots[0]  # every knot, the bounds included
        n = x.shape[0]
        args = [np.repeat(a, n, axis=0) for a in (uw, uh, ud)]
        y, ld = rq.unconstrained_rational_quadratic(
            XP, x, *args, inverse=inverse, tail_bound=bound
        )
        y0, ld0 = nf.unconstrained_rational_quadratic_spline(
            *(torch.tensor(a) for a in (x, *args)), inverse=inverse, tail_bound=bound
        )
        np.testing.assert_allclose(y, y0.numpy(), atol=1e-12)
        np.testing.assert_allclose(ld, ld0.numpy(), atol=1e-12)
        other = _nflows_knots(uh if not inverse else uw, bound)[0]
        np.testing.assert_allclose(y, other, atol=1e-12)  # knots map onto knots
        assert abs(y[0] + bound) < 1e-15 and abs(y[-1] - bound) < 1e-15


def test_kernel_far_outside_is_identity():
    rng = np.random.default_rng(2)
    x = np.array([*FAR, 3.0000001, -3.0000001])
    uw, uh, ud = _raw(rng, x.size, 5, scale=3.0)
    for inverse in (False, True):
        y, ld = rq.unconstrained_rational_quadratic(
            XP, x, uw, uh, ud, inverse=inverse, tail_bound=3.0
        )
        assert np.array_equal(y, x) and np.array_equal(ld, np.zeros_like(x))


def test_kernel_large_raw_values_finite():
    """Raw values of +-50 (softmax and softplus far from 0) give no NaN or inf."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=200) * 2
    uw, uh, ud = _raw(rng, 200, 6, scale=50.0)
    y, ld = rq.unconstrained_rational_quadratic(XP, x, uw, uh, ud, inverse=False, tail_bound=3)
    x2, ld2 = rq.unconstrained_rational_quadratic(XP, y, uw, uh, ud, inverse=True, tail_bound=3)
    assert np.isfinite(y).all() and np.isfinite(ld).all()
    np.testing.assert_allclose(x2, x, atol=1e-8)
    np.testing.assert_allclose(ld2, -ld, atol=1e-6)


def _special_inputs(bound, knots):
    return np.concatenate([knots, [bound, -bound], FAR, [0.3, -1.1]])


@pytest.mark.parametrize("inverse", [False, True])
@subject("torch")
def test_kernel_gradients_torch(inverse):
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xt

    rng = np.random.default_rng(4)
    bound, bins = 2.0, 4
    uw, uh, ud = _raw(rng, 1, bins)
    x = _special_inputs(bound, _nflows_knots(uh if inverse else uw, bound)[0])
    args = [np.repeat(a, x.size, axis=0) for a in (uw, uh, ud)]
    for dtype in (torch.float32, torch.float64):
        tx, *tp = (torch.tensor(a, dtype=dtype, requires_grad=True) for a in (x, *args))
        y, ld = rq.unconstrained_rational_quadratic(xt, tx, *tp, inverse=inverse, tail_bound=bound)
        assert torch.isfinite(y).all() and torch.isfinite(ld).all()
        (y.sum() + ld.sum()).backward()
        for g in (tx.grad, *(p.grad for p in tp)):
            assert torch.isfinite(g).all()
        far = slice(x.size - 6, x.size - 2)
        assert torch.all(tx.grad[far] == 1.0)  # identity tails: dy/dx = 1, no log-det term
        assert all(torch.all(p.grad[far] == 0.0) for p in tp)


@pytest.mark.parametrize("inverse", [False, True])
@subject("jax")
def test_kernel_gradients_jax(inverse):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import array_api_compat
    import jax.numpy as jnp

    xj = array_api_compat.array_namespace(jnp.zeros(()))
    rng = np.random.default_rng(5)
    bound, bins = 2.0, 4
    uw, uh, ud = _raw(rng, 1, bins)
    x = _special_inputs(bound, _nflows_knots(uh if inverse else uw, bound)[0])
    args = [np.repeat(a, x.size, axis=0) for a in (uw, uh, ud)]

    def loss(*a):
        y, ld = rq.unconstrained_rational_quadratic(xj, *a, inverse=inverse, tail_bound=bound)
        return jnp.sum(y) + jnp.sum(ld)

    for dtype in (jnp.float32, jnp.float64):
        grads = jax.grad(loss, argnums=(0, 1, 2, 3))(*(jnp.asarray(a, dtype) for a in (x, *args)))
        assert all(bool(jnp.isfinite(g).all()) for g in grads)
        assert bool(jnp.all(grads[0][x.size - 6 : x.size - 2] == 1.0))
    # on a bound (inside the closed domain) the derivative is the spline's, from inside:
    # jnp.clip's derivative there is 1/2, which a where-clamp avoids
    on_bounds = np.array([bound, -bound])
    at = [a[: on_bounds.size] for a in args]
    grad = jax.grad(loss)(jnp.asarray(on_bounds), *(jnp.asarray(a) for a in at))

    def numpy_loss(v):
        y, ld = rq.unconstrained_rational_quadratic(XP, v, *at, inverse=inverse, tail_bound=bound)
        return y + ld

    h = 1e-7
    step = h * np.sign(on_bounds)  # towards the inside
    inside = (numpy_loss(on_bounds) - numpy_loss(on_bounds - step)) / step
    np.testing.assert_allclose(np.asarray(grad), inside, rtol=1e-5, atol=1e-5)


def test_kernel_errors():
    x = np.zeros(3)
    with pytest.raises(FlowError, match="min_bin_width"):
        rq.unconstrained_rational_quadratic(
            XP, x, np.zeros((3, 4)), np.zeros((3, 4)), np.zeros((3, 3)),
            inverse=False, tail_bound=1.0, min_bin_width=0.3,
        )  # fmt: skip
    with pytest.raises(FlowError, match="K - 1"):
        rq.unconstrained_rational_quadratic(
            XP, x, np.zeros((3, 4)), np.zeros((3, 4)), np.zeros((3, 4)),
            inverse=False, tail_bound=1.0,
        )  # fmt: skip


# -- FrEIA master's parametrisation and binned splines ----------------------------------------


def _softplus(a):
    return np.log1p(np.exp(a))


def _freia_transcription(raw, bins, mins, dom, identity, clamping):
    """FrEIA master's ``constrain_parameters`` (binned.py, rational_quadratic.py) in NumPy,
    one element at a time: (left, bottom, widths, heights, deltas)."""
    clamp = (lambda v: clamping * math.tanh(v / clamping)) if clamping else (lambda v: v)
    w, h = raw["widths"], raw["heights"]
    if identity:
        total = clamp((dom[1] - dom[0]) * _softplus(raw["total_width"][0] + np.log(np.e - 1)))
        left = bottom = -total / 2
        w = total * np.exp(w) / np.exp(w).sum()
        h = total * np.exp(h) / np.exp(h).sum()
    else:
        left, bottom = raw["left"][0] + dom[0], raw["bottom"][0] + dom[2]
        xs = np.log(np.exp((dom[1] - dom[0]) / bins - mins[0]) - 1)
        ys = np.log(np.exp((dom[3] - dom[2]) / bins - mins[1]) - 1)
        w, h = mins[0] + _softplus(w + xs), mins[1] + _softplus(h + ys)
        rw, rh = clamp(w.sum()) / w.sum(), clamp(h.sum()) / h.sum()
        w, h, left, bottom = w * rw, h * rh, left * rw, bottom * rh
    scale = h.sum() / w.sum()
    deltas = np.concatenate([[scale], _softplus(raw["deltas"] + np.log(np.e - 1)), [scale]])
    return left, bottom, w, h, deltas


FREIA_OPTIONS = [
    {"bins": 4, "identity": False, "clamping": None, "mins": (0.1, 0.1)},
    {"bins": 3, "identity": False, "clamping": 2.5, "mins": (0.05, 0.2)},
    {"bins": 5, "identity": True, "clamping": None, "mins": (0.1, 0.1)},
    {"bins": 2, "identity": True, "clamping": 3.0, "mins": (0.0, 0.0)},
    {"bins": 1, "identity": False, "clamping": None, "mins": (0.0, 0.3)},
]


def _freia_raw(rng, n, bins, identity):
    keys = [("widths", bins), ("heights", bins)]
    keys += [("total_width", 1)] if identity else [("bottom", 1), ("left", 1)]
    keys += [("deltas", bins - 1)]
    return {k: rng.normal(size=(n, c)) for k, c in keys}


@pytest.mark.parametrize("opt", FREIA_OPTIONS, ids=lambda o: f"K{o['bins']}")
def test_freia_knots_and_spline(opt):
    torch = pytest.importorskip("torch")
    nf = pytest.importorskip("nflows.transforms.splines.rational_quadratic", reason="oracle")
    rng = np.random.default_rng(opt["bins"])
    n, bins, dom = 40, opt["bins"], (-2.0, 1.0, -1.0, 3.0)
    raw = _freia_raw(rng, n, bins, opt["identity"])
    kx, ky, d = rq.freia_knots(
        XP, raw, bins=bins, min_bin_sizes=opt["mins"], default_domain=dom,
        identity_tails=opt["identity"], domain_clamping=opt["clamping"], derivatives=True,
    )  # fmt: skip
    for i in range(n):
        left, bottom, w, h, deltas = _freia_transcription(
            {k: v[i] for k, v in raw.items()}, bins, opt["mins"], dom, opt["identity"],
            opt["clamping"],
        )  # fmt: skip
        np.testing.assert_allclose(
            kx[i], np.concatenate([[left], left + np.cumsum(w)]), atol=1e-13
        )
        np.testing.assert_allclose(
            ky[i], np.concatenate([[bottom], bottom + np.cumsum(h)]), atol=1e-13
        )
        np.testing.assert_allclose(d[i], deltas, atol=1e-13)
    # the spline inside the domain vs nflows' bounded spline given the same knots and
    # derivatives (nflows checks an inverse's inputs against the x domain, so the inverse is
    # checked as the inverse of nflows' forward)
    u = rng.uniform(0.001, 0.999, size=n)
    x = kx[:, 0] + u * (kx[:, -1] - kx[:, 0])
    y, ld = rq.binned_rational_quadratic(XP, x, kx, ky, d, inverse=False)
    for i in range(n):
        y0, ld0 = nf.rational_quadratic_spline(
            torch.tensor(x[i : i + 1]),
            torch.tensor(np.log(np.diff(kx[i])))[None],
            torch.tensor(np.log(np.diff(ky[i])))[None],
            torch.tensor(np.log(np.expm1(d[i])))[None],
            left=kx[i, 0], right=kx[i, -1], bottom=ky[i, 0], top=ky[i, -1],
            min_bin_width=0.0, min_bin_height=0.0, min_derivative=0.0,
        )  # fmt: skip
        np.testing.assert_allclose(y[i], y0.item(), atol=1e-12)
        np.testing.assert_allclose(ld[i], ld0.item(), atol=1e-12)
    x2, ld2 = rq.binned_rational_quadratic(XP, y, kx, ky, d, inverse=True)
    np.testing.assert_allclose(x2, x, atol=1e-12)
    np.testing.assert_allclose(ld2, -ld, atol=1e-12)
    # the affine tails, and exactly on the knots and the bounds
    scale = np.diff(ky).sum(-1) / np.diff(kx).sum(-1)
    for inverse in (False, True):
        for far in FAR:
            x = np.full(n, far)
            y, ld = rq.binned_rational_quadratic(XP, x, kx, ky, d, inverse=inverse)
            shift = ky[:, 0] - scale * kx[:, 0]
            want = (x - shift) / scale if inverse else scale * x + shift
            np.testing.assert_allclose(y, want, rtol=1e-15)
            np.testing.assert_allclose(
                ld, -np.log(scale) if inverse else np.log(scale), atol=1e-15
            )
    for j in range(bins + 1):
        y, _ = rq.binned_rational_quadratic(XP, kx[:, j], kx, ky, d, inverse=False)
        np.testing.assert_allclose(y, ky[:, j], atol=1e-12)
        x, _ = rq.binned_rational_quadratic(XP, ky[:, j], kx, ky, d, inverse=True)
        np.testing.assert_allclose(x, kx[:, j], atol=1e-12)


def test_binned_linear():
    rng = np.random.default_rng(7)
    raw = _freia_raw(rng, 30, 4, False)
    kx, ky, _ = rq.freia_knots(
        XP, raw, bins=4, min_bin_sizes=(0.1, 0.1), default_domain=(-3.0, 3.0, -3.0, 3.0),
        identity_tails=False, domain_clamping=None, derivatives=False,
    )  # fmt: skip
    x = rng.uniform(kx[:, 0], kx[:, -1])
    y, ld = rq.binned_linear(XP, x, kx, ky, inverse=False)
    want = np.array([np.interp(x[i], kx[i], ky[i]) for i in range(30)])
    np.testing.assert_allclose(y, want, atol=1e-13)
    k = np.array([np.searchsorted(kx[i], x[i]) - 1 for i in range(30)])
    slopes = np.diff(ky, axis=-1) / np.diff(kx, axis=-1)
    np.testing.assert_allclose(ld, np.log(slopes[np.arange(30), k]), atol=1e-13)
    x2, ld2 = rq.binned_linear(XP, y, kx, ky, inverse=True)
    np.testing.assert_allclose(x2, x, atol=1e-13)
    np.testing.assert_allclose(ld2, -ld, atol=1e-13)


def test_binned_gradients_far_outside():
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xt

    rng = np.random.default_rng(8)
    n, bins = 8, 3
    for identity in (False, True):
        raw = {k: torch.tensor(v, requires_grad=True) for k, v in
               _freia_raw(rng, n, bins, identity).items()}  # fmt: skip
        for inverse in (False, True):
            for derivatives in (True, False):
                kx, ky, d = rq.freia_knots(
                    xt, raw, bins=bins, min_bin_sizes=(0.1, 0.1),
                    default_domain=(-3.0, 3.0, -3.0, 3.0), identity_tails=identity,
                    domain_clamping=None, derivatives=derivatives,
                )  # fmt: skip
                x = torch.tensor([*FAR, 0.1, kx[0, 0].item(), kx[1, -1].item(), 2.0],
                                 requires_grad=True)  # fmt: skip
                if derivatives:
                    y, ld = rq.binned_rational_quadratic(xt, x, kx, ky, d, inverse=inverse)
                else:
                    y, ld = rq.binned_linear(xt, x, kx, ky, inverse=inverse)
                assert torch.isfinite(y).all() and torch.isfinite(ld).all()
                grads = torch.autograd.grad(
                    (y / (1 + y.abs().detach())).sum() + ld.sum(), [x, *raw.values()],
                    allow_unused=True,
                )  # fmt: skip
                assert all(g is None or torch.isfinite(g).all() for g in grads)


# -- the transforms ------------------------------------------------------------------------

#: A bounded subnet: in a coupling the far inputs are the next step's subnet inputs, and an
#: unbounded (relu) subnet turns 1e30 into raw spline values of 1e30 (domains of 1e30, slopes
#: of 1e31): no spline can stay finite then. tanh keeps the raw values, and so the splines,
#: moderate, so these tests exercise the splines' tails.
NET = fc.MLP(hidden=(6,), activation="tanh")
SPECS = {
    "rqs": lambda: RationalQuadraticSpline(subnet=NET, bins=4),
    "rqs_identity": lambda: RationalQuadraticSpline(subnet=NET, bins=3, identity_tails=True),
    "linear": lambda: LinearSpline(subnet=NET, bins=4),
    "elementwise": lambda: ElementwiseRationalQuadraticSpline(bins=4),
    "elementwise_cond": lambda: ElementwiseRationalQuadraticSpline(subnet=NET, bins=3),
}


def _bound(name, seed=0, perturb=0.3, shape=(4,)):
    spec = SPECS[name]()
    conds = ((2,),) if name == "elementwise_cond" else ()
    tree = build_tree(spec, [shape], conds)
    params = initial_params(tree, seed)
    rng = np.random.default_rng(seed)
    for k, s in tree.param_specs().items():
        params[k] = params[k] + perturb * rng.standard_normal(s.shape)
    return spec, tree, params, conds


def _special_batch(shape=(4,)):
    """Rows: the default domain's knots and bounds (bins=4 on (-3, 3)), +-1e4, +-1e30."""
    rows = [
        [-3.0, -1.5, 0.0, 1.5],
        [3.0, -3.0, 1.5, -1.5],
        [1e4, -1e4, 0.5, -0.5],
        [1e30, -1e30, 2.0, 1e4],
    ]
    return np.array(rows)


@pytest.mark.parametrize("name", list(SPECS))
def test_zero_raw_is_identity(name):
    """Raw zeros (a zero last layer, free parameters zero) give the default domain with equal
    bins and slopes 1: the identity, on the knots, on the bounds and far outside too."""
    spec = SPECS[name]()
    conds = ((2,),) if name == "elementwise_cond" else ()
    tree = build_tree(spec, [(4,)], conds)
    ref = fc.Reference(tree, initial_params(tree, 0))
    x = _special_batch()
    cs = [np.ones((4, 2))] if conds else []
    (y,), ld = ref([x], cs)
    np.testing.assert_allclose(y, x, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(ld, 0.0, atol=1e-13)


@pytest.mark.parametrize("name", list(SPECS))
def test_round_trip_and_log_det_vs_autodiff(name):
    pytest.importorskip("torch")
    spec, tree, params, conds = _bound(name)
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(6, 4)) * 2, _special_batch()[:3]])
    cs = [rng.normal(size=(x.shape[0], 2))] if conds else []
    ref = fc.Reference(tree, params)
    (y,), ld = ref([x], cs)
    (x2,), ld2 = ref([y], cs, rev=True)
    np.testing.assert_allclose(x2, x, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(ld2, -ld, atol=1e-10)
    backend = load_backend("torch")
    model = fc.build(spec, (4,), [c for c in conds], backend="torch", dtype="float64")
    fc.set_params(model, params)
    jac = backend.jacobian(
        model, backend.to_native(x, "float64", "cpu"),
        [backend.to_native(c, "float64", "cpu") for c in cs],
    )  # fmt: skip
    np.testing.assert_allclose(np.linalg.slogdet(jac)[1], ld, atol=1e-9)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(SPECS))
def test_special_inputs_in_backends(backend_name, dtype, name):
    """Inputs on the knots, on the bounds and far outside in every backend: finite outputs,
    log-dets, input Jacobians and parameter gradients, and the reference's values."""
    spec, tree, params, conds = _bound(name)
    backend = load_backend(backend_name)
    model = fc.build(spec, (4,), [c for c in conds], backend=backend_name, dtype=dtype)
    fc.set_params(model, params)
    x = _special_batch()
    cs = [np.linspace(-1, 1, 8).reshape(4, 2)] if conds else []
    (want,), want_ld = fc.Reference(tree, params)([x], cs)
    nat = lambda a: backend.to_native(a, dtype, "cpu")  # noqa: E731
    (y,), ld = backend.call(model, [nat(x)], [nat(c) for c in cs], False, True)
    y, ld = backend.to_numpy(y), backend.to_numpy(ld)
    assert np.isfinite(y).all() and np.isfinite(ld).all()
    tol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(ld, want_ld, rtol=tol, atol=tol * 10)
    (x2,), _ = backend.call(model, [nat(want)], [nat(c) for c in cs], True, True)
    np.testing.assert_allclose(backend.to_numpy(x2), x, rtol=tol * 10, atol=tol * 10)
    jac = backend.jacobian(model, nat(x), [nat(c) for c in cs])
    assert np.isfinite(jac).all()
    small = x[:3] if dtype == "float32" else x  # sum(z**2) overflows float32 at 1e30
    grads = backend.gradients(model, [nat(small)], [nat(c[: len(small)]) for c in cs])
    assert grads and all(np.isfinite(g).all() for g in grads.values())


def test_image_round_trip():
    spec = RationalQuadraticSpline(subnet=fc.ConvNet(hidden=(4,), zero_init_last=False), bins=3)
    tree = build_tree(spec, [(3, 4, 5)], [(2,)])
    ref = fc.Reference(tree, initial_params(tree, 0))
    rng = np.random.default_rng(0)
    x, c = rng.normal(size=(2, 3, 4, 5)) * 2, rng.normal(size=(2, 2))
    (y,), ld = ref([x], [c])
    (x2,), ld2 = ref([y], [c], rev=True)
    np.testing.assert_allclose(x2, x, atol=1e-10)
    np.testing.assert_allclose(ld2, -ld, atol=1e-10)


def test_elementwise_image_free_parameters():
    spec = ElementwiseRationalQuadraticSpline(bins=3)
    tree = build_tree(spec, [(2, 3, 3)])
    assert tree.param_specs()["spline_parameters"].shape == (2 * 10, 3, 3)
    rng = np.random.default_rng(0)
    params = {"spline_parameters": rng.normal(size=(20, 3, 3))}
    ref = fc.Reference(tree, params)
    x = rng.normal(size=(2, 2, 3, 3))
    (y,), ld = ref([x])
    (x2,), _ = ref([y], rev=True)
    np.testing.assert_allclose(x2, x, atol=1e-12)


# -- option errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"bins": 0}, "option bins must be int > 0"),
        ({"default_domain": (1.0, -1.0, -3.0, 3.0)}, "increasing x domain"),
        ({"default_domain": (-3.0, 3.0, 2.0, 2.0)}, "increasing y domain"),
        ({"min_bin_sizes": (0.6, 0.1), "bins": 10}, "must fit 10 bins into the x domain"),
        ({"min_bin_sizes": (0.1, 1.5), "bins": 4}, "must fit 4 bins into the y domain"),
        ({"min_bin_sizes": (-0.1, 0.1)}, "option min_bin_sizes must be"),
        ({"domain_clamping": 0.0}, "option domain_clamping must be"),
    ],
)
@pytest.mark.parametrize("cls", [RationalQuadraticSpline, LinearSpline])
def test_option_errors(cls, options, match):
    with pytest.raises(OptionError, match=match) as info:
        cls(subnet=fc.MLP(), **options)
    assert cls.__name__ in str(info.value)


def test_elementwise_errors():
    with pytest.raises(OptionError, match="ElementwiseRationalQuadraticSpline.*bins"):
        ElementwiseRationalQuadraticSpline(bins=0)
    with pytest.raises(OptionError, match="at most one"):
        ElementwiseRationalQuadraticSpline(subnet=fc.MLP(), subnet_constructor=lambda a, b: 0)
    with pytest.raises(OptionError, match="with conditions"):
        build_tree(ElementwiseRationalQuadraticSpline(), [(3,)], [(2,)])
    with pytest.raises(OptionError, match="without conditions"):
        build_tree(ElementwiseRationalQuadraticSpline(subnet=fc.MLP()), [(3,)])


def test_coupling_needs_a_subnet():
    with pytest.raises(OptionError, match="exactly one of the options subnet"):
        RationalQuadraticSpline()

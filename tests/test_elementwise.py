"""The elementwise family against FrEIA 0.2, autodiff, and its own closed forms.

- FrEIA 0.2 in float64 with its weights copied into flowcore's parameters (InvertibleSigmoid,
  LearnedElementwiseScaling, InvAutoAct, InvAutoActFixed, InvAutoActTwoSided): outputs and
  log-dets of the float64 reference agree to 1e-12 forward and inverse, and where FrEIA is
  wrong the corrected value is asserted along with FrEIA differing by exactly its bug
  (InvertibleSigmoid's log-det summed over axis 1 only; LearnedElementwiseScaling's reverse
  log-det sign and FrEIA 0.2's ignored ``init_scale``).
- Log-dets against the slogdet of torch's autodiff Jacobian, on vectors and images.
- Round trips, inputs at the kink x = 0, large |x| (finite outputs, log-dets, gradients),
  the Logit's closed form and endpoints, bad options.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import pytest

import flowcore as fc
from flowcore.options import OptionError
from flowcore.serialize import spec_from_config, spec_to_config
from flowcore.transforms import elementwise as ew
from flowcore.transforms.elementwise import (
    InvAutoAct,
    InvAutoActFixed,
    InvAutoActTwoSided,
    InvertibleSigmoid,
    LearnedElementwiseScaling,
    Logit,
)
from flowcore.tree import build_tree, initial_params

ATOL = 1e-12
VEC, IMG = (5,), (3, 2, 4)


def _reference(spec, shape, params=None, seed=0):
    tree = build_tree(spec, [shape])
    values = initial_params(tree, seed) if params is None else params
    return tree, values, fc.Reference(tree, values)


def _perturbed(tree, seed=0, scale=0.5):
    params = initial_params(tree, seed)
    rng = np.random.default_rng([seed, 3])
    for name, p in tree.param_specs().items():
        params[name] = params[name] + scale * rng.standard_normal(p.shape)
    return params


def _run(reference, x, rev=False, jac=True):
    (y,), log_det = reference([x], rev=rev, jac=jac)
    return y, log_det


def _round_trip(reference, x, atol=1e-12):
    y, log_det = _run(reference, x)
    x_back, log_det_back = _run(reference, y, rev=True)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=atol)
    np.testing.assert_allclose(log_det + log_det_back, 0.0, rtol=0, atol=ATOL)
    return y, log_det


def _data(shape, seed=1, batch=4, zeros=False):
    x = np.random.default_rng(seed).standard_normal((batch, *shape))
    if zeros:  # the kink of the leaky maps
        x.reshape(batch, -1)[:, ::3] = 0.0
    return x


# -- FrEIA 0.2 as the oracle (the `freia` fixture: conftest.py) ---------------------------


def _freia_call(module, x, rev=False):
    import torch

    with torch.no_grad():
        (y,), log_det = module([torch.as_tensor(x)], rev=rev)
    return y.numpy(), np.asarray(log_det.numpy() if hasattr(log_det, "numpy") else log_det)


def _copy_into(module, params):
    import torch

    for name, value in params.items():
        getattr(module, name).data = torch.as_tensor(value.copy())


def _agree_with_freia(module, reference, x):
    """Outputs and log-dets, forward and inverse, to 1e-12 (the log-dets broadcast)."""
    y_want, log_det_want = _freia_call(module, x)
    y, log_det = _round_trip(reference, x)
    np.testing.assert_allclose(y, y_want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, np.broadcast_to(log_det_want, log_det.shape), atol=ATOL)
    x_want, log_det_back_want = _freia_call(module, y_want, rev=True)
    x_back, log_det_back = _run(reference, y_want, rev=True)
    np.testing.assert_allclose(x_back, x_want, rtol=0, atol=ATOL)
    want = np.broadcast_to(log_det_back_want, log_det_back.shape)
    np.testing.assert_allclose(log_det_back, want, rtol=0, atol=ATOL)


@pytest.mark.parametrize("shape", [VEC, (7,)])
def test_sigmoid_matches_freia_on_vectors(freia, shape):
    module = freia.InvertibleSigmoid([shape])
    _, _, reference = _reference(InvertibleSigmoid(), shape)
    x = 3.0 * _data(shape)
    _agree_with_freia(module, reference, x)


@pytest.mark.parametrize("shape", [IMG, (2, 3), (2, 2, 3, 2)])
def test_sigmoid_on_images_is_freias_summed_over_every_axis(freia, shape):
    """FrEIA sums the log-det over axis 1 only (PRs #176/#177): on a (C, *spatial) input it
    returns per-position sums of shape (batch, *spatial). flowcore's log-det is those summed
    over the remaining axes, and the outputs agree."""
    module = freia.InvertibleSigmoid([shape])
    _, _, reference = _reference(InvertibleSigmoid(), shape)
    x = 3.0 * _data(shape)
    y, log_det = _round_trip(reference, x)
    y_want, log_det_freia = _freia_call(module, x)
    assert log_det_freia.shape == (x.shape[0], *shape[1:])  # the bug: not (batch,)
    np.testing.assert_allclose(y, y_want, rtol=0, atol=ATOL)
    summed = log_det_freia.reshape(x.shape[0], -1).sum(axis=1)
    np.testing.assert_allclose(log_det, summed, rtol=0, atol=ATOL)
    x_want, log_det_back_freia = _freia_call(module, y_want, rev=True)
    x_back, log_det_back = _run(reference, y_want, rev=True)
    np.testing.assert_allclose(x_back, x_want, rtol=0, atol=1e-11)
    summed = log_det_back_freia.reshape(x.shape[0], -1).sum(axis=1)
    np.testing.assert_allclose(log_det_back, summed, rtol=0, atol=ATOL)
    # the exact value: sum of log sigma'(x) over every element
    s = 1.0 / (1.0 + np.exp(-x))
    np.testing.assert_allclose(log_det, np.log(s * (1 - s)).reshape(len(x), -1).sum(1), atol=ATOL)


@pytest.mark.parametrize("shape", [VEC, IMG])
def test_scaling_matches_freia_up_to_its_reverse_sign(freia, shape):
    """FrEIA returns +sum(s) in reverse too; flowcore returns -sum(s). Outputs agree."""
    module = freia.LearnedElementwiseScaling([shape])
    tree = build_tree(LearnedElementwiseScaling(), [shape])
    params = _perturbed(tree)
    assert tuple(module.s.shape) == params["s"].shape == (1, *shape)
    _copy_into(module, params)
    reference = fc.Reference(tree, params)
    x = _data(shape)
    y, log_det = _round_trip(reference, x)
    y_want, log_det_want = _freia_call(module, x)
    np.testing.assert_allclose(y, y_want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, np.broadcast_to(log_det_want, (len(x),)), atol=ATOL)
    np.testing.assert_allclose(log_det, params["s"].sum(), rtol=0, atol=ATOL)
    x_want, log_det_back_freia = _freia_call(module, y_want, rev=True)
    x_back, log_det_back = _run(reference, y_want, rev=True)
    np.testing.assert_allclose(x_back, x_want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det_back, -params["s"].sum(), rtol=0, atol=ATOL)
    # FrEIA's reverse log-det is exactly the negative of the correct one
    np.testing.assert_allclose(log_det_back_freia, -log_det_back[:1], rtol=0, atol=ATOL)


def test_scaling_init_scale_is_used_where_freia_02_ignores_it(freia):
    module = freia.LearnedElementwiseScaling([VEC], init_scale=3.0)
    np.testing.assert_array_equal(module.s.detach().numpy(), 0.0)  # FrEIA 0.2: log(3) * zeros
    _, params, _ = _reference(LearnedElementwiseScaling(init_scale=3.0), VEC)
    np.testing.assert_allclose(params["s"], np.full((1, *VEC), math.log(3.0)), atol=0)
    _, params, _ = _reference(LearnedElementwiseScaling(), IMG)
    np.testing.assert_array_equal(params["s"], 0.0)


AUTO_ACTS = {  # name -> (flowcore factory, FrEIA 0.2 factory, options both take)
    "invautoact": (InvAutoAct, "InvAutoAct", {"slope_init": 1.7}),
    "invautoact_fixed": (InvAutoActFixed, "InvAutoActFixed", {"slope_init": 2.5}),
    "two_sided": (InvAutoActTwoSided, "InvAutoActTwoSided", {"init_pos": 1.8, "init_neg": 0.4}),
}


@pytest.mark.parametrize("shape", [VEC, IMG, (2, 5)])
@pytest.mark.parametrize("name", list(AUTO_ACTS))
def test_auto_acts_match_freia(freia, name, shape):
    ours, theirs, options = AUTO_ACTS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # InvAutoActFixed's deprecation
        module = getattr(freia, theirs)([shape], **options)
    tree = build_tree(ours(**options), [shape])
    initial = initial_params(tree, 0)
    for key, value in initial.items():  # the same initial values and layout as FrEIA
        np.testing.assert_allclose(getattr(module, key).detach().numpy(), value, atol=ATOL)
    params = _perturbed(tree)
    _copy_into(module, params)
    reference = fc.Reference(tree, params)
    _agree_with_freia(module, reference, _data(shape, zeros=True))


@pytest.mark.parametrize("name", list(AUTO_ACTS))
def test_auto_acts_trainability(name):
    ours, _, options = AUTO_ACTS[name]
    specs = build_tree(ours(**options), [IMG]).param_specs()
    assert all(p.trainable is (name != "invautoact_fixed") for p in specs.values())
    assert all(p.shape == (1, 3, 1, 1) for p in specs.values())
    if name != "invautoact_fixed":
        frozen = build_tree(ours(**options, learnable=False), [IMG]).param_specs()
        assert not any(p.trainable for p in frozen.values())


def test_auto_acts_at_the_kink():
    """At x = 0 the output is 0 and the log-slope is the mean of the one-sided ones, in both
    directions: InvAutoAct contributes 0, InvAutoActTwoSided (alpha_+ + alpha_-) / 2."""
    x = np.zeros((2, 3))
    for spec, per_element in (
        (InvAutoAct(slope_init=3.0), 0.0),
        (InvAutoActTwoSided(init_pos=3.0, init_neg=0.25), 0.5 * math.log(0.75)),
    ):
        _, _, reference = _reference(spec, (3,))
        y, log_det = _round_trip(reference, x)
        np.testing.assert_array_equal(y, 0.0)
        np.testing.assert_allclose(log_det, 3 * per_element, rtol=0, atol=ATOL)


def test_auto_act_closed_forms():
    tree = build_tree(InvAutoActTwoSided(), [IMG])
    params = _perturbed(tree)
    reference = fc.Reference(tree, params)
    x = _data(IMG)
    y, log_det = _round_trip(reference, x)
    log_slope = np.where(x > 0, params["alpha_pos"], params["alpha_neg"])
    np.testing.assert_allclose(y, x * np.exp(log_slope), rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, log_slope.reshape(len(x), -1).sum(1), atol=ATOL)


# -- Logit ----------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.3])
@pytest.mark.parametrize("shape", [VEC, IMG])
def test_logit_closed_form(alpha, shape):
    _, _, reference = _reference(Logit(alpha=alpha), shape)
    x = np.random.default_rng(2).uniform(0.01, 0.99, (4, *shape))
    y, log_det = _round_trip(reference, x)
    u = alpha + (1 - 2 * alpha) * x
    np.testing.assert_allclose(y, np.log(u / (1 - u)), rtol=0, atol=ATOL)
    want = np.log((1 - 2 * alpha) / (u * (1 - u))).reshape(len(x), -1).sum(1)
    np.testing.assert_allclose(log_det, want, rtol=0, atol=1e-11)
    x_back, _ = _run(reference, y, rev=True)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=ATOL)


def test_logit_is_finite_at_the_ends_of_its_domain():
    _, _, reference = _reference(Logit(alpha=1e-3), (4,))
    x = np.array([[0.0, 1.0, 0.5, 1.0 - 1e-16]])
    y, log_det = _round_trip(reference, x)
    assert np.isfinite(y).all() and np.isfinite(log_det).all()
    np.testing.assert_allclose(y[0, :2], [-math.log(999.0), math.log(999.0)], atol=1e-12)
    np.testing.assert_allclose(y[0, 1], -y[0, 0], rtol=0, atol=0)  # x -> 1 - x is y -> -y


def test_logit_after_sigmoid_is_an_affine_map():
    """logit(alpha + (1 - 2 alpha) sigmoid(x)) is exact to round-off in a sequence: checked
    against its closed form and log-det."""
    alpha = 0.1
    spec = fc.SequenceINN(InvertibleSigmoid(), Logit(alpha=alpha))
    _, _, reference = _reference(spec, VEC)
    x = _data(VEC)
    y, log_det = _round_trip(reference, x)
    s = 1 / (1 + np.exp(-x))
    u = alpha + (1 - 2 * alpha) * s
    np.testing.assert_allclose(y, np.log(u / (1 - u)), rtol=0, atol=ATOL)
    want = np.log((1 - 2 * alpha) * s * (1 - s) / (u * (1 - u))).sum(1)
    np.testing.assert_allclose(log_det, want, rtol=0, atol=ATOL)


# -- autodiff, large |x|, gradients -------------------------------------------------------

ALL_SPECS = {
    "sigmoid": (InvertibleSigmoid, {}),
    "scaling": (LearnedElementwiseScaling, {"init_scale": 1.3}),
    "invautoact": (InvAutoAct, {}),
    "invautoact_fixed": (InvAutoActFixed, {"slope_init": 0.6}),
    "two_sided": (InvAutoActTwoSided, {}),
    "logit": (Logit, {"alpha": 0.05}),
}


def _torch_flow(spec, shape, dtype="float64", perturb=True):
    pytest.importorskip("torch", reason="torch autodiff")
    flow = fc.build(spec, input_shape=shape, backend="torch", dtype=dtype, seed=0)
    if perturb:
        params = fc.get_params(flow)
        rng = np.random.default_rng(4)
        fc.set_params(flow, {k: v + 0.4 * rng.standard_normal(v.shape) for k, v in params.items()})
    return flow


@pytest.mark.parametrize("shape", [VEC, IMG])
@pytest.mark.parametrize("name", list(ALL_SPECS))
@pytest.mark.parametrize("rev", [False, True])
def test_log_det_matches_autodiff(name, shape, rev):
    torch = pytest.importorskip("torch", reason="autodiff Jacobians with the torch backend")

    cls, options = ALL_SPECS[name]
    flow = _torch_flow(cls(**options), shape)
    x = _data(shape, seed=5, batch=3)
    if (name == "logit") != rev:  # the logit's forward input and the sigmoid's inverse one
        x = 1.0 / (1.0 + np.exp(-x))
    xt = torch.as_tensor(x)
    _, log_det = flow(xt, rev=rev)
    for b in range(len(x)):

        def one(v, b=b):
            out, _ = flow(v.reshape(1, *shape), rev=rev)
            return out.reshape(-1)

        jac = torch.autograd.functional.jacobian(one, xt[b])
        jac = jac.reshape(math.prod(shape), math.prod(shape)).numpy()
        want = np.linalg.slogdet(jac)[1]
        np.testing.assert_allclose(log_det[b].detach().numpy(), want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(ALL_SPECS))
def test_large_inputs_give_finite_outputs_log_dets_and_gradients(name, dtype):
    """|x| up to 1e4 (far past where exp overflows): nothing is inf or NaN, forward for every
    transform but the Logit (whose forward domain is [0, 1]), inverse for the Logit and the
    sign-agnostic maps; the sigmoid's log-det is exact there (-|x| to round-off)."""
    torch = pytest.importorskip("torch", reason="autodiff gradients with the torch backend")

    cls, options = ALL_SPECS[name]
    flow = _torch_flow(cls(**options), (6,), dtype=dtype)
    values = np.array([[1e4, -1e4, 800.0, -800.0, 95.0, -95.0], [60.0, -60.0, 0.0, 1e-30, 3, -3]])
    directions = {"sigmoid": [False], "logit": [True]}.get(name, [False, True])
    for rev in directions:
        x = torch.tensor(values, dtype=getattr(torch, dtype), requires_grad=True)
        out, log_det = flow(x, rev=rev)
        loss = (out**2).sum() - log_det.sum()
        grads = torch.autograd.grad(loss, [x, *flow.parameters()], allow_unused=True)
        assert torch.isfinite(out).all() and torch.isfinite(log_det).all(), (rev, out, log_det)
        for g in grads:
            assert g is None or torch.isfinite(g).all(), (rev, grads)
    if name == "sigmoid":
        # log sigma'(x) = -|x| - 2 log(1 + e^-|x|)
        a = np.abs(values)
        want = (-a - 2 * np.log1p(np.exp(-a))).sum(1)
        rtol = 1e-6 if dtype == "float32" else 1e-14
        np.testing.assert_allclose(log_det.detach().numpy(), want, rtol=rtol)


def test_freia_sigmoid_overflows_where_flowcores_does_not(freia):
    """FrEIA's log-det is -inf at |x| = 800 in float64 (and its gradient NaN); flowcore's is
    -800 - 2 log(1 + e^-800) = -800."""
    x = np.array([[800.0, -800.0]])
    _, log_det_freia = _freia_call(freia.InvertibleSigmoid([(2,)]), x)
    assert np.isneginf(log_det_freia).all()
    _, _, reference = _reference(InvertibleSigmoid(), (2,))
    _, log_det = _run(reference, x)
    np.testing.assert_allclose(log_det, [-1600.0], rtol=0, atol=0)


# -- jac=False, options, shapes, serialisation ---------------------------------------------


@pytest.mark.parametrize("name", list(ALL_SPECS))
def test_jac_false_gives_zero_log_dets(name):
    cls, options = ALL_SPECS[name]
    _, _, reference = _reference(cls(**options), IMG)
    x = np.random.default_rng(0).uniform(0.1, 0.9, (2, *IMG))
    y, log_det = _run(reference, x, jac=False)
    np.testing.assert_array_equal(log_det, np.zeros(2))
    x_back, log_det = _run(reference, y, rev=True, jac=False)
    np.testing.assert_allclose(x_back, x, atol=1e-12)
    np.testing.assert_array_equal(log_det, np.zeros(2))


NOT_A_BOOL: Any = 1
NOT_A_FLOAT: Any = "0.1"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: InvAutoAct(slope_init=0.0), r"InvAutoAct: option slope_init must be float > 0"),
        (lambda: InvAutoAct(slope_init=-2), r"InvAutoAct: option slope_init .*got -2"),
        (lambda: InvAutoAct(slope_init=math.inf), r"InvAutoAct: option slope_init"),
        (lambda: InvAutoAct(learnable=NOT_A_BOOL), r"InvAutoAct: option learnable must be bool"),
        (lambda: InvAutoActFixed(slope_init=0), r"InvAutoActFixed: option slope_init .*> 0"),
        (lambda: InvAutoActFixed(learnable=True), r"InvAutoActFixed: option learnable must be"),
        (lambda: InvAutoActTwoSided(init_pos=0.0), r"InvAutoActTwoSided: option init_pos .*> 0"),
        (lambda: InvAutoActTwoSided(init_neg=-0.5), r"InvAutoActTwoSided: option init_neg .*0"),
        (
            lambda: LearnedElementwiseScaling(init_scale=0),
            r"LearnedElementwiseScaling: option init_scale must be float > 0, got 0",
        ),
        (lambda: LearnedElementwiseScaling(init_scale=-1.0), r"option init_scale .*got -1"),
        (lambda: Logit(alpha=0.5), r"Logit: option alpha must be float >= 0 and < 0.5, got 0.5"),
        (lambda: Logit(alpha=-0.01), r"Logit: option alpha .*got -0.01"),
        (lambda: Logit(alpha=0.7), r"Logit: option alpha"),
        (lambda: Logit(alpha=NOT_A_FLOAT), r"Logit: option alpha"),
    ],
)
def test_bad_options_raise_option_errors(make, message):
    with pytest.raises(OptionError, match=message) as error:
        make()
    assert isinstance(error.value, fc.FlowError)


@pytest.mark.parametrize("name", list(ALL_SPECS))
def test_conditions_are_refused(name):
    cls, options = ALL_SPECS[name]
    with pytest.raises(fc.ShapeError, match=rf"{cls.__name__}: takes no conditions, got 1"):
        build_tree(cls(**options), [VEC], [(2,)])


def test_auto_acts_need_a_channel_axis():
    with pytest.raises(fc.ShapeError, match=r"InvAutoAct: input must be \(C,\)"):
        build_tree(InvAutoAct(), [()])


@pytest.mark.parametrize("name", list(ALL_SPECS))
def test_specs_are_json_ready(name):
    cls, options = ALL_SPECS[name]
    spec = cls(**options)
    config = json.loads(json.dumps(spec_to_config(spec)))
    assert spec_from_config(config) == spec


def test_every_public_name_is_listed():
    assert set(ew.__all__) == {
        "InvAutoAct",
        "InvAutoActFixed",
        "InvAutoActTwoSided",
        "InvertibleSigmoid",
        "LearnedElementwiseScaling",
        "Logit",
    }

"""``fc.log_prob`` and ``fc.sample``: a flow with a standard-normal base in every backend.

Models compute in float32 (Keras on JAX and torch runs some float64 ops in float32), so
their values are compared with the float64 reference (``fc.reference``) and SciPy's normal
log-density to 1e-5 relative and 2e-5 absolute: a few float32 ulps on O(1) values through
two shallow blocks. The density's integral is a trapezoid sum over a fine grid, good to
about 1e-6 for these smooth tails, so 1e-4 leaves room for float32.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from selected_backends import BACKENDS, require, selected, subject

import flowcore as fc
from flowcore.errors import ShapeError
from flowcore.options import OptionError
from flowcore.transforms.splines import ElementwiseRationalQuadraticSpline

F32 = {"rtol": 1e-5, "atol": 2e-5}


def _perturb(model, scale: float = 0.3, seed: int = 0) -> None:
    """Every trainable float parameter moved off its initial value."""
    rng = np.random.default_rng(seed)
    specs = fc.tree_of(model).param_specs()
    params = fc.get_params(model)
    for name, spec in specs.items():
        if spec.trainable:
            params[name] = params[name] + scale * rng.standard_normal(spec.shape)
    fc.set_params(model, params)


def _conditional(backend: str):
    spec = fc.SequenceINN(
        fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,), zero_init_last=False)),
        fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,), zero_init_last=False)),
        fc.ActNorm(data_init=False),  # the learned diagonal Gaussian
        conditions=[0, 0, None],
    )
    model = fc.build(spec, (3,), [(2,)], backend=backend, seed=0)
    _perturb(model)
    return model


def _data(n: int = 6, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)), rng.standard_normal((n, 2))


@pytest.mark.parametrize("name", BACKENDS)
def test_log_prob_is_the_base_density_plus_the_log_det(name):
    backend = require(name)
    model = _conditional(name)
    x, c = _data()
    nat = lambda a: backend.to_native(a, "float32", "cpu")  # noqa: E731
    got = backend.to_numpy(fc.log_prob(model, nat(x), nat(c)))
    (z,), log_det = fc.reference(model)([x], [c])
    want = norm.logpdf(z).sum(axis=1) + log_det
    assert got.shape == (6,)
    np.testing.assert_allclose(got, want, **F32)


@pytest.mark.parametrize("name", BACKENDS)
def test_log_prob_integrates_to_one(name):
    backend = require(name)
    spec = fc.SequenceINN(ElementwiseRationalQuadraticSpline(bins=4), fc.ActNorm(data_init=False))
    model = fc.build(spec, (1,), backend=name, seed=0)
    _perturb(model, scale=0.5)
    grid = np.linspace(-15.0, 15.0, 30001)[:, None]
    density = np.exp(
        backend.to_numpy(fc.log_prob(model, backend.to_native(grid, "float32", "cpu")))
    )
    assert np.trapezoid(density, grid[:, 0]) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name", BACKENDS)
def test_samples_are_the_inverse_flow_of_seeded_noise(name):
    backend = require(name)
    model = _conditional(name)
    _, c = _data(n=5)
    c_native = backend.to_native(c, "float32", "cpu")
    got = backend.to_numpy(fc.sample(model, 5, c_native, temperature=0.7, seed=3))
    noise = 0.7 * np.random.default_rng(3).standard_normal((5, 3))
    (want,), _ = fc.reference(model)([noise], [c], rev=True)
    np.testing.assert_allclose(got, want, **F32)
    again = backend.to_numpy(fc.sample(model, 5, c_native, temperature=0.7, seed=3))
    np.testing.assert_array_equal(again, got)
    other = backend.to_numpy(fc.sample(model, 5, c_native, temperature=0.7, seed=4))
    assert np.abs(other - got).min() > 0
    assert fc.sample(model, 0, c_native[:0]).shape == (0, 3)


@subject("torch")
def test_torch_log_prob_gradients_reach_every_parameter():
    require("torch")
    model = _conditional("torch")
    x, c = _data()
    import torch

    loss = -fc.log_prob(model, *(torch.tensor(a, dtype=torch.float32) for a in (x, c))).mean()
    loss.backward()
    grads = {k: p.grad for k, p in model.named_parameters() if p.requires_grad}
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert all(g.abs().sum() > 0 for g in grads.values())


@subject("torch")
def test_samples_follow_the_model_to_its_device():
    # torch's "meta" device holds shapes without data: a model moved there samples there
    # only if sample puts its noise where the model is, not on the CPU
    require("torch")
    model = _conditional("torch").to("meta")
    import torch

    c = torch.zeros((5, 2), device="meta")
    assert fc.get_backend("torch").device_of(model) == "meta"
    x = fc.sample(model, 5, c, seed=0, dtype="float32")  # meta parameters have no values
    assert x.device.type == "meta" and tuple(x.shape) == (5, 3)


@pytest.mark.parametrize("name", BACKENDS)
def test_device_of_names_where_the_parameters_are(name):
    backend = require(name)
    model = _conditional(name)
    assert backend.device_of(model) == "cpu"
    assert backend.device_of(backend.move(model, "float32", "cpu")) == "cpu"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n": -1}, OptionError, "n must be an int >= 0, got -1"),
        ({"n": 2.5}, OptionError, "n must be an int >= 0, got 2.5"),
        ({"n": True}, OptionError, "n must be an int >= 0, got True"),
        ({"temperature": 0.0}, OptionError, "temperature must be a finite number > 0, got 0.0"),
        ({"temperature": -1}, OptionError, "temperature must be a finite number > 0, got -1"),
        ({"temperature": float("nan")}, OptionError, "finite number > 0, got nan"),
        ({"c": None}, ShapeError, r"takes 1 condition\(s\) \[\(2,\)\], got 0 in c"),
        ({"c": np.zeros((3, 2))}, ShapeError, r"one row per sample \(n=4\), got \[3\]"),
    ],
)
def test_bad_sample_arguments_are_named(kwargs, error, message):
    usable = [b for b in ("torch", "jax", "keras") if selected(b) and b in fc.installed_backends()]
    if not usable:
        pytest.skip("no backend selected and installed")
    name = usable[0]
    backend = fc.get_backend(name)
    model = _conditional(name)
    args = {"n": 4, "c": np.zeros((4, 2)), **kwargs}
    c = args.pop("c")
    c = backend.to_native(c, "float32", "cpu") if c is not None else None
    with pytest.raises(error, match=message):
        fc.sample(model, args.pop("n"), c, **args)


@pytest.mark.parametrize("name", BACKENDS)
def test_flow_methods_are_the_functions(name):
    backend = require(name)
    model = _conditional(name)
    x, c = (backend.to_native(a, "float32", "cpu") for a in _data(n=4))
    np.testing.assert_array_equal(
        backend.to_numpy(model.log_prob(x, c)), backend.to_numpy(fc.log_prob(model, x, c))
    )
    np.testing.assert_array_equal(
        backend.to_numpy(model.sample(4, c, temperature=0.5, seed=2)),
        backend.to_numpy(fc.sample(model, 4, c, temperature=0.5, seed=2)),
    )

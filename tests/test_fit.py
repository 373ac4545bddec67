"""The torch and JAX ``fit``: maximum likelihood with validation, early stopping and history.

The data is a correlated, shifted 2-D Gaussian, whose entropy is the lowest mean negative
log-likelihood any density reaches on it (1.55 nats); an untrained flow starts above 3.
The loss checks are relative to where training starts, not timings. Early stopping is
checked on a fixed schedule: with a learning rate of 0 no epoch improves on the first, so
``patience`` epochs later it stops and the first epoch's parameters are the ones kept.
"""

from __future__ import annotations

import numpy as np
import pytest
from selected_backends import require, selected, subject

import flowcore as fc
from flowcore.errors import ShapeError
from flowcore.options import OptionError
from flowcore.training import check_data

COVARIANCE = np.array([[1.0, 0.8], [0.8, 1.0]]) * 0.25
ENTROPY = 0.5 * np.log(np.linalg.det(2 * np.pi * np.e * COVARIANCE))  # about 1.55 nats


def _data(n: int = 512, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.multivariate_normal([2.0, -1.0], COVARIANCE, size=n).astype(np.float32)


def _spec() -> fc.SequenceINN:
    return fc.SequenceINN(
        fc.ActNorm(data_init=False),
        fc.AllInOneBlock(subnet=fc.MLP(hidden=(16,))),
        fc.AllInOneBlock(subnet=fc.MLP(hidden=(16,))),
    )


def _fit(name: str):
    require(name)
    if name == "torch":
        from flowcore.backends.torch import fit
    else:
        from flowcore.backends.jax import fit
    return fit


def _nll(model, x: np.ndarray) -> float:
    backend = fc.backend_of(model)
    return float(
        -backend.to_numpy(fc.log_prob(model, backend.to_native(x, "float32", "cpu"))).mean()
    )


TRAINERS = [pytest.param(name, marks=subject(name)) for name in ("torch", "jax")]


@pytest.mark.parametrize("name", TRAINERS)
def test_fit_lowers_the_nll_towards_the_entropy(name):
    fit = _fit(name)
    model = fc.build(_spec(), (2,), backend=name, seed=0)
    x = _data()
    start = _nll(model, x)
    history = fit(
        model,
        x,
        epochs=30,
        batch_size=64,
        learning_rate=1e-2,
        validation_split=0.2,
        progress=False,
    )
    assert len(history.loss) == len(history.val_loss) == 30
    assert start > ENTROPY + 1.0
    assert history.loss[-1] < start - 1.0 and history.val_loss[-1] < start - 1.0
    assert _nll(model, x) < ENTROPY + 0.5  # within half a nat of the best any density does
    assert history.best_epoch == int(np.argmin(history.val_loss)) and not history.stopped_early


@pytest.mark.parametrize("name", TRAINERS)
def test_early_stopping_restores_the_best_epoch(name):
    fit = _fit(name)
    model = fc.build(_spec(), (2,), backend=name, seed=0)
    x = _data(128)
    first = fit(model, x, epochs=1, batch_size=32, learning_rate=1e-2, progress=False)
    assert len(first.loss) == 1
    kept = fc.get_params(model)
    history = fit(
        model, x, epochs=50, batch_size=32, learning_rate=1e-30, validation_split=0.25,
        patience=3, min_delta=1.0, progress=False,
    )  # fmt: skip
    assert history.stopped_early and len(history.loss) == 4 and history.best_epoch == 0
    for key, value in fc.get_params(model).items():
        np.testing.assert_allclose(value, kept[key], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", TRAINERS)
def test_conditional_fit_runs_and_the_progress_bar_counts_steps(name, capsys):
    fit = _fit(name)
    spec = fc.SequenceINN(fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,))), conditions=[0])
    model = fc.build(spec, (2,), [(1,)], backend=name, seed=0)
    x = _data(100)
    c = (x[:, :1] > 2.0).astype(np.float32)
    history = fit(model, x, c, epochs=2, batch_size=40, progress=True)
    assert len(history.loss) == 2 and np.isfinite(history.loss).all()
    assert "6/6" in capsys.readouterr().err  # 3 batches of 100 rows, 2 epochs


@pytest.mark.parametrize(
    ("x", "c", "message"),
    [
        (np.zeros((4, 3)), None, r"x\[0\] has shape \(4, 3\), the flow expects \(n, \*\(2,\)\)"),
        (np.zeros((0, 2)), None, "x has no rows"),
        (np.array([[0.0, np.nan], [1.0, 1.0]]), None, r"x\[0\] holds 1 NaN or infinite"),
        (np.zeros((4, 2)), np.zeros((4, 1)), r"takes 0 array\(s\) in c"),
        ([np.zeros((4, 2)), np.zeros((4, 2))], None, r"takes 1 array\(s\) in x"),
        ("text", None, "expected an array or a list of arrays as input, got str"),
    ],
)
def test_bad_data_is_refused_before_any_step(x, c, message):
    tree = fc.build_tree(_spec(), [(2,)])
    with pytest.raises(ShapeError, match=message):
        check_data(tree, x, c)


def test_rows_of_x_and_c_must_agree():
    spec = fc.SequenceINN(fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,))), conditions=[0])
    tree = fc.build_tree(spec, [(2,)], [(1,)])
    with pytest.raises(ShapeError, match=r"same number of rows, got \[3, 4\]"):
        check_data(tree, np.zeros((4, 2)), np.zeros((3, 1)))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, "epochs must be an int >= 1, got 0"),
        ({"batch_size": 2.5}, "batch_size must be an int >= 1, got 2.5"),
        ({"validation_split": 1.0}, r"validation_split must be in \[0, 1\), got 1.0"),
        ({"patience": 2}, "patience needs a validation_split > 0"),
        ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0, got 0.0"),
    ],
)
def test_bad_options_are_named(options, message):
    name = next((b for b in ("torch", "jax") if selected(b)), None)
    if name is None:
        pytest.skip("neither torch nor jax is selected")
    fit = _fit(name)
    model = fc.build(_spec(), (2,), backend=name, seed=0)
    with pytest.raises(OptionError, match=message):
        fit(model, _data(16), progress=False, **options)

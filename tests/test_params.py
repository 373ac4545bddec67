"""The one parameter policy (flowcore.params), held in every installed backend:
``get_params`` returns copies, ``set_params`` checks every value before writing any and
never keeps the caller's arrays, and values that would break invertibility are refused."""

from __future__ import annotations

import numpy as np
import pytest
from selected_backends import BACKENDS, subject

import flowcore as fc


def _model(name, **options):
    spec = fc.SequenceINN(
        fc.AllInOneBlock(subnet=fc.MLP(hidden=(4,)), **options),
        fc.AllInOneBlock(subnet=fc.MLP(hidden=(4,)), permute_soft=True),
    )
    return fc.build(spec, (4,), backend=name, seed=0)


def _same(a, b):
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("name", BACKENDS)
def test_get_params_returns_copies(name):
    model = _model(name)
    snapshot = fc.get_params(model)
    kept = {k: v.copy() for k, v in snapshot.items()}
    snapshot["0.global_offset"] += 5.0  # writing into the snapshot ...
    _same(fc.get_params(model), kept)  # ... does not write the model
    fc.set_params(model, {**kept, "0.global_offset": kept["0.global_offset"] + 1.0})
    np.testing.assert_array_equal(snapshot["0.global_offset"], kept["0.global_offset"] + 5.0)


@pytest.mark.parametrize("name", BACKENDS)
def test_set_params_never_keeps_the_callers_arrays(name):
    model = _model(name)
    params = fc.get_params(model)
    params["0.global_offset"] = np.full_like(params["0.global_offset"], 0.5)
    fc.set_params(model, params)
    params["0.global_offset"][...] = 9.0  # the caller changes its array afterwards
    np.testing.assert_array_equal(fc.get_params(model)["0.global_offset"], 0.5)


BAD_VALUES = {
    "a shape": ("0.global_offset", lambda v: np.zeros((1, 5)), "has shape"),
    "a dtype": ("0.global_offset", lambda v: v.astype(np.int64), "must be floating point"),
    "NaN": ("0.subnet.0.weight", lambda v: np.where(v > 0, np.nan, v), "non-finite"),
    "inf": ("0.global_scale", lambda v: v + np.inf, "non-finite"),
    "a duplicate index": ("0.w_perm", lambda v: np.array([0, 0, 1, 2]), "permutation"),
    "a float index": ("0.w_perm", lambda v: v.astype(np.float64), "must hold integers"),
    "a non-orthogonal rotation": ("1.w_perm", lambda v: 1.1 * v, "must be orthogonal"),
}


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("bad", list(BAD_VALUES))
def test_set_params_refuses_a_bad_value_and_writes_nothing(name, bad):
    model = _model(name)
    before = fc.get_params(model)
    key, change, message = BAD_VALUES[bad]
    # every other value differs, so a partial write would show
    params = {
        k: v + 1.0 if v.dtype.kind == "f" and k != "1.w_perm" else v for k, v in before.items()
    }
    params[key] = change(before[key])
    with pytest.raises(fc.ParameterError, match=message):
        fc.set_params(model, params)
    _same(fc.get_params(model), before)


@pytest.mark.parametrize("name", BACKENDS)
def test_missing_and_surplus_names_write_nothing(name):
    model = _model(name)
    before = fc.get_params(model)
    shifted = {k: v + 1.0 if v.dtype.kind == "f" else v for k, v in before.items()}
    with pytest.raises(fc.ParameterError, match=r"missing \['0.global_offset'\]"):
        fc.set_params(model, {k: v for k, v in shifted.items() if k != "0.global_offset"})
    with pytest.raises(fc.ParameterError, match=r"unexpected \['0.extra'\]"):
        fc.set_params(model, {**shifted, "0.extra": np.zeros(1)})
    _same(fc.get_params(model), before)


@subject("torch")
def test_a_torch_snapshot_does_not_follow_training():
    torch = pytest.importorskip("torch", reason="needs PyTorch")
    model = _model("torch")
    snapshot = fc.get_params(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    z, log_det = model(torch.randn(8, 4))
    (0.5 * (z**2).sum() - log_det.sum()).backward()
    optimizer.step()
    after = fc.get_params(model)
    assert not np.array_equal(after["0.global_scale"], snapshot["0.global_scale"])
    np.testing.assert_array_equal(
        snapshot["0.global_scale"],
        fc.reference(_model("torch")).params["0.global_scale"].astype(np.float32),
    )


@subject("jax")
def test_a_jax_model_filled_from_numpy_does_not_follow_the_source():
    pytest.importorskip("jax", reason="needs JAX")
    model = _model("jax")
    source = fc.get_params(model)
    source["0.global_offset"] = np.full((1, 4), 0.25, dtype=np.float32)
    fc.set_params(model, source)
    source["0.global_offset"] += 1.0  # e.g. a torch model training on in place
    np.testing.assert_array_equal(fc.get_params(model)["0.global_offset"], 0.25)


def _structured(name):
    """A model holding spec-derived structure: a gyoza coupling's mask, a MADE's degrees,
    a BatchNorm's running variance."""
    spec = fc.SequenceINN(
        fc.AdditiveCoupling((4,), (1,), fc.CheckerBoardMask((4,), (1,))),
        fc.MaskedAutoregressive(fc.MADE(hidden=(8,))),
        fc.AllInOneBlock(subnet=fc.Sequential((fc.Linear(8), fc.layers.BatchNorm(), fc.Linear()))),
    )
    return fc.build(spec, (4,), backend=name, seed=0)


STRUCTURE = {
    "a changed coupling mask": ("0.mask", lambda v: 1.0 - v, "structure the spec derives"),
    "a half mask": ("0.mask", lambda v: 0.5 + 0 * v, r"at \(0,\) it is 0.5"),
    "changed degrees": ("1.subnet.degrees_1", lambda v: v[::-1].copy(), "cannot be set"),
    "a negative running variance": (
        "2.subnet.1.running_var",
        lambda v: v - 2.0,
        "must be >= 0, reaches -1",
    ),
}


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("bad", list(STRUCTURE))
def test_structure_derived_from_the_spec_cannot_be_overwritten(name, bad):
    """A mask of 1 - m or a MADE's reversed degrees would still run: silently another
    model than the spec (and the saved file) says, or no longer autoregressive."""
    model = _structured(name)
    before = fc.get_params(model)
    key, change, message = STRUCTURE[bad]
    assert key in before, sorted(before)
    with pytest.raises(fc.ParameterError, match=message):
        fc.set_params(model, {**before, key: change(before[key])})
    _same(fc.get_params(model), before)
    fc.set_params(model, before)  # the spec's own values are accepted

"""NaN and inf: the documented policy without ``check_finite`` (the result carries them, per
sample, nothing raises), and ``check_finite``, which names the block at fault, in every
selected backend and in the NumPy reference. The policy per transform is the conformance
suite's ``nonfinite`` check.
"""

from __future__ import annotations

import numpy as np
import pytest
from selected_backends import BACKENDS, require, subject

import flowcore as fc

#: exp(99) overflows float32 (max 3.4e38): a block clamped near 100 whose subnet gives a
#: large scale sends finite inputs to inf.
CLAMP = 100.0


def _spec():
    return fc.SequenceINN(
        *[fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,)), affine_clamping=CLAMP) for _ in range(3)]
    )


def _overflowing(name: str):
    """Three blocks; the second's subnet puts out 1e4 everywhere (its last layer has zero
    weights and bias 1e4): the soft clamp gives a scale of 0.636 * 100 * atan(100) = 99,
    and exp(99) overflows."""
    flow = fc.build(_spec(), (4,), backend=name, seed=0, dtype="float32")
    params = fc.get_params(flow)
    weights = [k for k in params if k.startswith("1.subnet.") and k.endswith(".weight")]
    last = max(weights).rsplit(".", 1)[0]
    params[f"{last}.weight"] = np.zeros_like(params[f"{last}.weight"])
    params[f"{last}.bias"] = np.full_like(params[f"{last}.bias"], 1e4)
    fc.set_params(flow, params)
    return flow


def _call(name: str, flow, x: np.ndarray, rev: bool = False):
    impl = fc.get_backend(name)
    ys, log_det = impl.call(flow, [impl.to_native(x, "float32", "cpu")], [], rev, True)
    return impl.to_numpy(ys[0]), impl.to_numpy(log_det)


def _data(batch: int = 5) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, 4)).astype(np.float32)


@pytest.mark.parametrize("name", BACKENDS)
def test_without_check_finite_an_overflow_is_the_documented_result(name):
    require(name)
    y, log_det = _call(name, _overflowing(name), _data())
    assert not np.isfinite(y).all()  # carried, not raised and not hidden


@pytest.mark.parametrize("name", BACKENDS)
def test_check_finite_names_the_block_that_overflowed(name):
    require(name)
    flow = _overflowing(name)
    with fc.check_finite(), pytest.raises(fc.NonFiniteError) as err:
        _call(name, flow, _data())
    message = str(err.value)
    assert "AllInOneBlock at '1' (forward) produced NaN or inf from finite inputs" in message
    assert "in 5 of 5 samples (first: sample 0)" in message
    assert "clamp" in message


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("rev", [False, True], ids=["forward", "inverse"])
def test_check_finite_blames_the_data_when_it_holds_nan(name, rev):
    require(name)
    flow = fc.build(_spec(), (4,), backend=name, seed=0, dtype="float32")
    x = _data()
    x[3, 2] = np.nan
    way, what = ("inverse", "output") if rev else ("forward", "input")
    with fc.check_finite(), pytest.raises(fc.NonFiniteError, match=(
        rf"SequenceINN \({way}\) was given non-finite values, before it ran: {what} 0 holds "
        r"NaN or inf in 1 of 5 samples \(first: sample 3\)"
    )):  # fmt: skip
        _call(name, flow, x, rev)
    y, _ = _call(name, flow, x, rev)  # outside the block: no check, the NaN is carried
    assert np.isnan(y[3]).any() and np.isfinite(np.delete(y, 3, axis=0)).all()


@pytest.mark.parametrize("name", BACKENDS)
def test_check_finite_passes_finite_calls_and_can_be_turned_off_inside(name):
    require(name)
    flow = _overflowing(name)
    good = fc.build(_spec(), (4,), backend=name, seed=0, dtype="float32")
    with fc.check_finite():
        y, log_det = _call(name, good, _data())
        assert np.isfinite(y).all() and np.isfinite(log_det).all()
        with fc.check_finite(False):
            _call(name, flow, _data())
        with pytest.raises(fc.NonFiniteError):
            _call(name, flow, _data())
    _call(name, flow, _data())  # off again after the block


def test_check_finite_in_the_reference_names_a_condition():
    spec = fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,)))
    tree = fc.build_tree(spec, [(4,)], [(2,)])
    ref = fc.Reference(tree, fc.initial_params(tree, 0))
    c = np.ones((5, 2))
    c[4, 1] = np.inf
    with (
        fc.check_finite(),
        pytest.raises(
            fc.NonFiniteError,
            match=r"condition 0 holds NaN or inf in 1 of 5 samples \(first: sample 4",
        ),
    ):
        ref([np.ones((5, 4))], [c])


def test_a_non_finite_error_is_a_flow_error_and_a_floating_point_error():
    assert issubclass(fc.NonFiniteError, fc.FlowError)
    assert issubclass(fc.NonFiniteError, FloatingPointError)


@subject("jax")
def test_check_finite_under_jax_jit_says_it_needs_eager_calls():
    import flowcore.backends.jax as fj
    import jax

    flow = fc.build(_spec(), (4,), backend="jax", seed=0, dtype="float32")
    apply, params = fj.functional(flow)
    with fc.check_finite(), pytest.raises(fc.FlowError, match="runs on eager calls only"):
        jax.jit(lambda p, x: apply(p, x))(params, _data())

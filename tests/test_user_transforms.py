"""Acceptance tests of the contract: FrEIA's guide examples, written once, run everywhere.

The user transforms live in examples/custom_transforms.py. Each installed backend (chosen by
FLOWCORE_TEST_BACKENDS) must match the float64 NumPy reference; the transforms multiply by 1
or 2 and select values, so float32 results are exact.
"""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest
from selected_backends import BACKENDS

import flowcore as fc

_path = pathlib.Path(__file__).parents[1] / "examples" / "custom_transforms.py"
_spec = importlib.util.spec_from_file_location("custom_transforms", _path)
assert _spec is not None and _spec.loader is not None
custom = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(custom)


def _run(name, model, xs, cs=(), rev=False):
    backend = fc.get_backend(name)
    ys, log_det = backend.call(
        model,
        [backend.to_native(x, "float32", "cpu") for x in xs],
        [backend.to_native(c, "float32", "cpu") for c in cs],
        rev=rev,
        jac=True,
    )
    return [backend.to_numpy(y) for y in ys], backend.to_numpy(log_det)


@pytest.mark.parametrize("name", BACKENDS)
def test_sequence_of_fixed_random_multiplies(name):
    spec = fc.SequenceINN(
        custom.FixedRandomElementwiseMultiply(), custom.FixedRandomElementwiseMultiply()
    )
    net = fc.build(spec, (2,), backend=name, seed=3)
    x = np.random.default_rng(0).standard_normal((10, 2)).astype(np.float32)
    (z,), log_det = _run(name, net, [x])
    (z_ref,), log_det_ref = fc.reference(net)([x])
    np.testing.assert_allclose(z, z_ref, rtol=1e-6)
    np.testing.assert_allclose(log_det, log_det_ref, rtol=1e-6)
    assert log_det.shape == (10,)
    (x_back,), log_det_back = _run(name, net, [z], rev=True)
    np.testing.assert_allclose(x_back, x, rtol=1e-6)
    np.testing.assert_allclose(log_det_back, -log_det, rtol=1e-6)
    factors = fc.get_params(net)["0.random_factor"]
    assert set(np.unique(factors)) <= {1.0, 2.0}


@pytest.mark.parametrize("name", BACKENDS)
def test_conditional_swap_selects_per_sample(name):
    net = fc.build(custom.ConditionalSwap(), [(2,), (2,)], [(1,)], backend=name)
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((2, 8, 2)).astype(np.float32)
    c = np.array([1, -1, 2, -3, 0, 1, -1, 5], dtype=np.float32)[:, None]
    (y1, y2), log_det = _run(name, net, [x1, x2], [c])
    swap = c[:, 0] > 0
    np.testing.assert_array_equal(y1, np.where(swap[:, None], x2, x1))
    np.testing.assert_array_equal(y2, np.where(swap[:, None], x1, x2))
    np.testing.assert_array_equal(log_det, np.zeros(8))
    (b1, b2), _ = _run(name, net, [y1, y2], [c], rev=True)
    np.testing.assert_array_equal(b1, x1)
    np.testing.assert_array_equal(b2, x2)


def test_conditional_swap_rejects_a_missing_condition():
    with pytest.raises(fc.ShapeError, match="ConditionalSwap"):
        fc.build_tree(custom.ConditionalSwap(), [(2,), (2,)], [])

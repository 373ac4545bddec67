"""Every option is checked when a spec is made, and every shape when it is bound: a clear
FlowError naming the option and the value, never a Python or NumPy error from inside.

No backend is needed: specs and trees are backend-neutral.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import flowcore as fc

SUBNET = fc.MLP(hidden=(8,))


BAD_OPTIONS = {
    "clamp-str": (
        lambda: fc.AllInOneBlock(subnet=SUBNET, affine_clamping="2"),
        "affine_clamping must be float > 0, got '2'",
    ),
    "hidden-negative": (lambda: fc.MLP(hidden=(-4,)), r"a tuple of int > 0, got \(-4,\)"),
    "hidden-zero": (lambda: fc.MLP(hidden=(0,)), r"a tuple of int > 0, got \(0,\)"),
    "householder-fraction": (
        lambda: fc.HouseholderPerm(n_reflections=2.5),
        "n_reflections must be int >= 2, got 2.5",
    ),
    "conditions-str": (
        lambda: fc.SequenceINN(fc.ActNorm(), conditions="0"),
        "conditions must be a list of condition indices",
    ),
    "condition-negative": (
        lambda: fc.SequenceINN(fc.ActNorm(), conditions=[-1]),
        r"index int >= 0 or None; got \[-1\]",
    ),
    "condition-bool": (
        lambda: fc.SequenceINN(fc.ActNorm(), conditions=[True]),
        r"got \[True\]",
    ),
}


@pytest.mark.parametrize(("make", "message"), BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_bad_options_are_option_errors_naming_the_option(make, message):
    with pytest.raises(fc.OptionError, match=message):
        make()


@pytest.mark.parametrize("shapes", [[3], [(-3,)], [(0,)], "abc", [(2.5,)]])
def test_bad_condition_shapes_are_shape_errors(shapes):
    spec = fc.AllInOneBlock(subnet=SUBNET)
    with pytest.raises(fc.ShapeError, match="condition shapes must be a list of shapes"):
        fc.build_tree(spec, [(4,)], shapes)
    with pytest.raises(fc.ShapeError, match="condition shapes must be a list of shapes"):
        fc.build(spec, (4,), shapes, backend="never-reached")  # checked before the backend


def test_a_dtype_other_than_float32_or_float64_is_an_option_error():
    with pytest.raises(
        fc.OptionError, match="dtype must be 'float32' or 'float64', got 'float16'"
    ):
        fc.build(fc.AllInOneBlock(subnet=SUBNET), (4,), dtype="float16", backend="never-reached")


@pytest.mark.parametrize("init", [0.5, 1.0, 150.0, 1000.0])
def test_a_large_softplus_global_affine_init_is_exact_not_an_overflow(init):
    """With the subnet's last layer at zero the coupling is the identity, so the block's
    log-det is D log(init): the global scale starts at ``init`` however large. float64
    reference; the start is computed as ``y + log(1 - e^-y)``, exact to rounding."""
    spec = fc.AllInOneBlock(subnet=SUBNET, global_affine_type="SOFTPLUS", global_affine_init=init)
    tree = fc.build_tree(spec, [(4,)], [])
    x = np.random.default_rng(0).standard_normal((3, 4))
    _, log_det = fc.Reference(tree, fc.initial_params(tree, seed=0))([x], [])
    np.testing.assert_allclose(log_det, 4 * math.log(init), rtol=1e-12)

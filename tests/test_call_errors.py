"""A call with bad inputs is refused in flowcore's words, naming the culprit, in every
backend; float inputs of another dtype follow one rule everywhere (cast to the model's).

Each test runs in every selected backend (skipped, with the reason, where one is not
installed or not selected).
"""

from __future__ import annotations

import numpy as np
import pytest
from selected_backends import BACKENDS, require

import flowcore as fc


def _flow(name: str, dtype: str = "float32"):
    spec = fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,), zero_init_last=False))
    return fc.build(spec, (4,), [(2,)], backend=name, seed=0, dtype=dtype)


def _native(name: str, a: np.ndarray, dtype: str):
    return fc.get_backend(name).to_native(a, dtype, "cpu")


def _numpy(name: str, a):
    return fc.get_backend(name).to_numpy(a)


@pytest.mark.parametrize("name", BACKENDS)
def test_a_condition_of_another_batch_size_is_named(name):
    flow = _flow(name)
    x = _native(name, np.ones((3, 4)), "float32")
    for rows in (1, 5):  # one row is not broadcast over the batch either
        c = _native(name, np.ones((rows, 2)), "float32")
        with pytest.raises(
            fc.ShapeError, match=f"condition 0 has batch size {rows}, but input 0 has 3"
        ):
            flow(x, c)


@pytest.mark.parametrize("name", BACKENDS)
def test_float64_inputs_to_a_float32_model_are_cast_to_float32(name):
    """The one rule (Keras' own): the float32 result, bit for bit, whichever float dtype
    the input came in. JAX without x64 has no float64 arrays; NumPy's float64 stands in."""
    flow = _flow(name)
    rng = np.random.default_rng(0)
    x, c = rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    z32, ld32 = flow(_native(name, x, "float32"), _native(name, c, "float32"))
    if name == "jax":
        x64, c64 = x, c  # np.float64, given to a float32 JAX model
    else:
        x64, c64 = _native(name, x, "float64"), _native(name, c, "float64")
    z, ld = flow(x64, c64)
    assert _numpy(name, z).dtype == np.float32 and _numpy(name, ld).dtype == np.float32
    np.testing.assert_array_equal(_numpy(name, z), _numpy(name, z32))
    np.testing.assert_array_equal(_numpy(name, ld), _numpy(name, ld32))


@pytest.mark.parametrize("name", BACKENDS)
def test_python_lists_of_numbers_are_named(name):
    flow = _flow(name)
    with pytest.raises(fc.ShapeError, match="as input, got list holding list"):
        flow([[0.0, 1.0, 2.0, 3.0]])


def test_torch_float64_conditions_follow_a_model_moved_to_float64():
    require("torch")
    import torch

    flow = _flow("torch")
    flow.double()  # the cast follows .to()/.double(): inputs now go to float64
    z, _ = flow(torch.ones(3, 4), torch.ones(3, 2))
    assert z.dtype == torch.float64


def test_torch_inputs_on_another_device_say_where_and_what_to_do():
    require("torch")
    import torch

    flow = _flow("torch")
    x, c = torch.ones(3, 4, device="meta"), torch.ones(3, 2, device="meta")  # no GPU needed
    with pytest.raises(fc.BackendError, match=r"the model is on cpu but inputs .* on meta"):
        flow(x, c)


def _wrong_width(name: str):
    """A subnet constructor whose module returns one feature too many."""
    if name == "torch":
        import torch

        return lambda c_in, c_out: torch.nn.Linear(c_in, c_out + 1)
    if name == "jax":
        from flax import nnx

        return lambda c_in, c_out, *, rngs: nnx.Linear(c_in, c_out + 1, rngs=rngs)
    import keras

    return lambda c_in, c_out: keras.layers.Dense(c_out + 1)


@pytest.mark.parametrize("name", BACKENDS)
def test_a_native_subnet_of_the_wrong_width_is_named(name):
    spec = fc.AllInOneBlock(subnet_constructor=_wrong_width(name))
    flow = fc.build(spec, (4,), backend=name, seed=0)
    with pytest.raises(fc.ShapeError, match=r"native subnet maps input \(3, 2\) to \(3, 5\), "):
        flow(_native(name, np.ones((3, 4)), "float32"))

"""The NumPy namespace the reference computes with: every name specs use, and its extras;
:func:`extend` and the extras' Array API defaults."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import array_api_compat.numpy as np_compat
import numpy as np
import pytest

from flowcore.errors import BackendError
from flowcore.namespace import (
    ARRAY_API_USED,
    DEFAULT_EXTRAS,
    EXTRAS,
    REQUIRED_EXTRAS,
    extend,
    numpy_namespace,
    restrict,
)


def test_numpy_namespace_has_every_name_specs_use():
    xp = numpy_namespace()
    missing = [name for name in (*ARRAY_API_USED, *EXTRAS) if not hasattr(xp, name)]
    assert missing == []
    assert all(callable(getattr(xp, name)) for name in EXTRAS)


def test_extend_refuses_a_namespace_without_conv2d():
    assert REQUIRED_EXTRAS == ("conv2d",)
    assert set(DEFAULT_EXTRAS) | set(REQUIRED_EXTRAS) == set(EXTRAS)
    with pytest.raises(BackendError, match=r"namespace extras missing: \[.conv2d.\]"):
        extend(np_compat, linear=np.dot)


def _conv(x, w, b, padding):
    raise AssertionError("not called")


def test_extend_gives_the_defaults_and_keeps_overrides():
    xp = extend(np_compat, conv2d=_conv)
    assert xp.conv2d is _conv
    assert all(callable(getattr(xp, name)) for name in DEFAULT_EXTRAS)
    own = extend(np_compat, conv2d=_conv, relu=np.abs)
    assert own.relu is np.abs
    assert own.linear is not np.abs and own.leaky_relu is not np.abs


def test_defaults_compute_with_the_extended_namespace():
    """They see the namespace's overrides (JAX's full-precision matmul)."""
    calls = []

    def matmul(a, b):
        calls.append(a.shape)
        return np.matmul(a, b)

    xp = extend(np_compat, conv2d=_conv, matmul=matmul)
    xp.linear(np.ones((2, 3)), np.ones((4, 3)), np.zeros(4))
    assert calls == [(2, 3)]


def test_defaults_use_only_the_listed_names():
    """So every backend namespace with :data:`ARRAY_API_USED` (the Keras shim) has them."""
    listed = restrict(np_compat, ARRAY_API_USED)
    xp = extend(listed, conv2d=_conv)
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2)
    np.testing.assert_allclose(xp.linear(x, w, b), x @ w.T + b, rtol=1e-12)
    np.testing.assert_array_equal(xp.relu(x), np.maximum(x, 0))
    np.testing.assert_array_equal(xp.leaky_relu(x, 0.3), np.where(x > 0, x, 0.3 * x))


def test_core_imports_without_array_api_strict():
    code = """
        import sys
        sys.modules["array_api_strict"] = None
        import numpy as np
        import flowcore as fc
        from flowcore.namespace import strict_namespace

        tree = fc.build_tree(fc.AllInOneBlock(subnet=fc.MLP(hidden=(4,))), [(3,)])
        fc.Reference(tree, fc.initial_params(tree, 0))([np.ones((2, 3))])
        try:
            strict_namespace()
        except ImportError:
            print("lazy")
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "lazy"


def _conv_loop(x, w, b, padding):
    """Cross-correlation by the definition: y[o,i,j] = b[o] + sum x~[c,i+u,j+v] w[o,c,u,v]."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    batch, _, height, width = x.shape
    out_c, _, kh, kw = w.shape
    y = np.empty((batch, out_c, height - kh + 1, width - kw + 1))
    for n in range(batch):
        for o in range(out_c):
            for i in range(y.shape[2]):
                for j in range(y.shape[3]):
                    y[n, o, i, j] = b[o] + np.sum(x[n, :, i : i + kh, j : j + kw] * w[o])
    return y


@pytest.mark.parametrize(("kernel", "padding"), [(1, 0), (3, 1), (3, 0), (5, 2), (3, 2)])
def test_conv2d_matches_a_direct_loop(kernel, padding):
    rng = np.random.default_rng(kernel + 10 * padding)
    x = rng.standard_normal((2, 3, 5, 6))  # H != W catches transposed axes
    w = rng.standard_normal((4, 3, kernel, kernel))
    b = rng.standard_normal(4)
    y = numpy_namespace().conv2d(x, w, b, padding)
    np.testing.assert_allclose(y, _conv_loop(x, w, b, padding), rtol=1e-12, atol=1e-12)


def test_conv2d_matches_scipy_correlate():
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 7))
    w = rng.standard_normal((2, 3, 3, 3))
    b = np.zeros(2)
    y = numpy_namespace().conv2d(x, w, b, 1)
    for n in range(2):
        for o in range(2):
            # 'same' correlation over (C, H, W) with a C-deep kernel keeps the middle channel
            want = signal.correlate(x[n], w[o], mode="same")[1]
            np.testing.assert_allclose(y[n, o], want, rtol=1e-12, atol=1e-12)


def test_linear_relu_and_leaky_relu():
    xp = numpy_namespace()
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2)
    np.testing.assert_allclose(xp.linear(x, w, b), np.einsum("bi,oi->bo", x, w) + b, rtol=1e-12)
    v = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(xp.relu(v), [0.0, 0.0, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(xp.leaky_relu(v, 0.1), [-0.2, -0.05, 0.0, 0.5, 2.0])

"""The namespace is the Array API: every conformance case runs under ``array-api-strict``.

``array-api-strict`` implements the standard and nothing else: no NumPy-style flat indexing
(``x[:, :k]`` on a 3-D array), no Python scalars where the standard wants arrays, no mixed
float32/float64 arithmetic, no names outside the standard. The reference executor runs every
registered case (:data:`flowcore.conformance.cases.CASES`, so each family's new cases are
covered as they are registered) with :func:`flowcore.namespace.strict_namespace`, checked at
the 2023.12 standard with no extensions (``linalg`` is not available to specs) and no
data-dependent shapes (which tracing forbids), and must agree with the NumPy reference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest

array_api_strict = pytest.importorskip(
    "array_api_strict",
    reason="array-api-strict is not installed (a test dependency: pip install 'flowcore[test]')",
)

from flowcore.conformance.cases import CASES, Case  # noqa: E402

import flowcore as fc  # noqa: E402
from flowcore.executor import functional_call  # noqa: E402
from flowcore.namespace import (  # noqa: E402
    ARRAY_API_USED,
    EXTRAS,
    numpy_namespace,
    strict_namespace,
)
from flowcore.spec import Array, Context, Shape  # noqa: E402

#: Strict namespace vs NumPy reference, float64: the same operations in another order.
TOL = {"rtol": 1e-12, "atol": 1e-12}
#: inverse(forward(x)) - x: the conformance suite's float64 round-trip tolerance.
ROUND_TRIP = {"rtol": 1e-10, "atol": 1e-10}
#: float32 under strict vs the float64 reference: the suite's float32 reference tolerance.
FLOAT32 = {"rtol": 1e-4, "atol": 1e-4}


@pytest.fixture(autouse=True)
def strict_flags():
    """The 2023.12 standard (no Python scalars in functions), no linalg, no data-dependent
    shapes."""
    with array_api_strict.ArrayAPIStrictFlags(
        api_version="2023.12",
        boolean_indexing=False,
        data_dependent_shapes=False,
        enabled_extensions=(),
    ):
        yield


@pytest.fixture(scope="module")
def xp():
    return strict_namespace()


def _references(case: Case, xp):
    tree = case.tree()
    params = case.params(tree)
    return fc.Reference(tree, params), fc.Reference(tree, params, xp=xp)


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_runs_under_array_api_strict(name, xp):
    case = CASES[name]
    xs, cs = case.data()
    numpy_ref, strict_ref = _references(case, xp)

    ys, log_det = numpy_ref(xs, cs)
    ys_strict, log_det_strict = strict_ref(xs, cs)
    assert len(ys_strict) == len(ys)
    for got, want in zip(ys_strict, ys, strict=True):
        np.testing.assert_allclose(got, want, **TOL, err_msg=f"{name}: forward outputs")
    np.testing.assert_allclose(log_det_strict, log_det, **TOL, err_msg=f"{name}: forward log-det")
    assert log_det_strict.shape == (case.batch,)

    # the inverse of the reference's outputs, both ways
    back, inv_log_det = numpy_ref(ys, cs, rev=True)
    back_strict, inv_log_det_strict = strict_ref(ys, cs, rev=True)
    for got, want in zip(back_strict, back, strict=True):
        np.testing.assert_allclose(got, want, **TOL, err_msg=f"{name}: inverse outputs")
    np.testing.assert_allclose(
        inv_log_det_strict, inv_log_det, **TOL, err_msg=f"{name}: inverse log-det"
    )

    # the round trip entirely under strict
    back_strict, inv_log_det_strict = strict_ref(ys_strict, cs, rev=True)
    for got, want in zip(back_strict, xs, strict=True):
        np.testing.assert_allclose(got, want, **ROUND_TRIP, err_msg=f"{name}: round trip")
    np.testing.assert_allclose(
        inv_log_det_strict, -log_det_strict, **ROUND_TRIP, err_msg=f"{name}: round-trip log-det"
    )


def _to_strict(xp, arrays: Sequence[np.ndarray], dtype) -> list[Array]:
    """Float arrays in ``dtype``; integer ones (index conditions) stay int64."""
    return [xp.asarray(a, dtype=xp.int64 if a.dtype.kind in "iu" else dtype) for a in arrays]


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_keeps_float32_and_skips_the_log_det(name, xp):
    """float32 stays float32 (a constant made float64 would promote the outputs), and
    ``jac=False`` gives zeros of shape (batch,), both ways."""
    case = CASES[name]
    tree = case.tree()
    params = case.params(tree)
    xs, cs = case.data()
    ys, log_det = fc.Reference(tree, params)(xs, cs)
    back, inv_log_det = fc.Reference(tree, params)(ys, cs, rev=True)  # from the same state
    random = any(getattr(n.spec, "uses_randomness", False) for n in tree.walk())
    p32 = {
        k: xp.asarray(v, dtype=xp.int64 if v.dtype.kind == "i" else xp.float32)
        for k, v in params.items()
    }
    rng = np.random.default_rng(0)

    def draw(kind: str, shape: Shape, like: Array) -> Array:
        if kind == "normal":
            return xp.asarray(rng.standard_normal(shape), dtype=like.dtype)
        return xp.asarray(rng.integers(0, 2, shape) * 2.0 - 1.0, dtype=like.dtype)

    ways = ((False, xs, ys, log_det), (True, ys, back, inv_log_det))
    for rev, inputs, want, want_log_det in ways:
        for jac in (True, False):
            out, got_log_det, _ = functional_call(
                tree,
                xp,
                p32,
                _to_strict(xp, inputs, xp.float32),
                _to_strict(xp, cs, xp.float32),
                rev,
                jac,
                draw=draw,
            )
            where = f"{name}: rev={rev} jac={jac}"
            assert all(o.dtype == xp.float32 for o in out), where
            assert got_log_det.dtype == xp.float32, where
            assert tuple(got_log_det.shape) == (case.batch,), where
            if random:
                continue  # different draws than the reference's
            for o, w in zip(out, want, strict=True):
                np.testing.assert_allclose(np.asarray(o), w, **FLOAT32, err_msg=where)
            want_ld = want_log_det if jac else np.zeros(case.batch)
            np.testing.assert_allclose(np.asarray(got_log_det), want_ld, **FLOAT32, err_msg=where)


# -- the strict namespace really is strict ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _FlatIndexing(fc.SimpleTransform):
    """Adds its first channel to the others with ``x[:, :1]``: NumPy's flat indexing."""

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        return ctx.xp.concat([x[:, :1], x[:, 1:] + x[:, :1]], axis=1), 0.0

    def inverse(self, ctx: Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        return ctx.xp.concat([y[:, :1], y[:, 1:] - y[:, :1]], axis=1), 0.0


@dataclasses.dataclass(frozen=True)
class _Unlisted(fc.SimpleTransform):
    """Uses a standard function the contract does not list (``square``)."""

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        return x + ctx.xp.square(ctx.xp.tanh(x)) * 0.0, 0.0


@dataclasses.dataclass(frozen=True)
class _IntegerShift(fc.SimpleTransform):
    """Shifts by an integer array: NumPy promotes, the standard does not mix kinds."""

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        return x + ctx.xp.zeros(x.shape[1:], dtype=ctx.xp.int64), 0.0


def test_strict_namespace_refuses_flat_indexing(xp):
    tree = fc.build_tree(_FlatIndexing(), [(3, 2)])
    x = np.random.default_rng(0).standard_normal((2, 3, 2))
    (y,), _ = fc.Reference(tree, {})([x])  # NumPy allows it
    with pytest.raises(IndexError, match="trailing ellipsis"):
        fc.Reference(tree, {}, xp=xp)([x])
    assert y.shape == x.shape


def test_strict_namespace_has_only_the_listed_names(xp):
    assert sorted(vars(xp)) == sorted({*ARRAY_API_USED, *EXTRAS})
    tree = fc.build_tree(_Unlisted(), [(3,)])
    x = np.zeros((2, 3))
    fc.Reference(tree, {})([x])
    with pytest.raises(AttributeError, match="square"):
        fc.Reference(tree, {}, xp=xp)([x])


def test_strict_namespace_refuses_mixed_kinds(xp):
    tree = fc.build_tree(_IntegerShift(), [(3,)])
    x = np.zeros((2, 3))
    fc.Reference(tree, {})([x])
    with pytest.raises(TypeError, match="int64"):
        fc.Reference(tree, {}, xp=xp)([x])


# -- the strict-only conv2d and the default extras ---------------------------------------------


@pytest.mark.parametrize(("kernel", "padding"), [(1, 0), (3, 1), (3, 0), (5, 2), (3, 2)])
def test_strict_conv2d_matches_numpy(kernel, padding, xp):
    rng = np.random.default_rng(kernel + 10 * padding)
    x = rng.standard_normal((2, 3, 5, 6))
    w = rng.standard_normal((4, 3, kernel, kernel))
    b = rng.standard_normal(4)
    want = numpy_namespace().conv2d(x, w, b, padding)
    got = xp.conv2d(*(xp.asarray(a) for a in (x, w, b)), padding)
    np.testing.assert_allclose(np.asarray(got), want, **TOL)
    got32 = xp.conv2d(*(xp.asarray(a, dtype=xp.float32) for a in (x, w, b)), padding)
    assert got32.dtype == xp.float32


def test_default_extras_under_strict(xp):
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2)
    got = xp.linear(xp.asarray(x), xp.asarray(w), xp.asarray(b))
    np.testing.assert_allclose(np.asarray(got), x @ w.T + b, **TOL)
    v = xp.asarray([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(np.asarray(xp.relu(v)), [0.0, 0.0, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(np.asarray(xp.leaky_relu(v, 0.1)), [-0.2, -0.05, 0.0, 0.5, 2.0])
    v32 = xp.asarray(v, dtype=xp.float32)
    assert xp.relu(v32).dtype == xp.leaky_relu(v32, 0.1).dtype == xp.float32

"""The one parameter policy: validation and copies of canonical parameters.

Every backend's ``get_params``/``set_params`` goes through :func:`snapshot` and
:func:`validate`, so that the policy is decided here once:

- canonical names are the tree's dotted paths (``"0.subnet.1.weight"``); native subnets'
  own weights follow under their path;
- ``kind="float"`` parameters are stored in the model's float dtype, ``kind="index"`` ones
  as int64 (int32 where a framework has no 64-bit integers);
- values are checked, all of them before any is written: names, shapes, dtypes, finiteness,
  and the :class:`~flowcore.spec.ParamSpec` constraints that invertibility rests on (an
  index buffer must be a permutation; a matrix whose inverse is taken as its transpose must
  be orthogonal; structure derived from the spec, such as a coupling mask, must be the
  spec's own);
- what ``get_params`` returns and what ``set_params`` keeps are fresh copies: a snapshot
  never changes with the model, and the model never follows the caller's arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import ParameterError
from .spec import ParamSpec
from .tree import Node

#: Largest ``|W W^T - I|`` entry an ``"orthogonal"`` parameter may have. float32 rounding of
#: an orthogonal C x C matrix leaves ~sqrt(C) * 6e-8 (FrEIA's float32 soft permutations show
#: 2e-7), so 1e-5 admits every float32 checkpoint up to C ~ 10^4, while a matrix further off
#: than that no longer inverts to the float32 tolerance of the conformance suite.
ORTHOGONAL_ATOL = 1e-5


def snapshot(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Fresh NumPy copies of a backend's parameter values (never views of live memory)."""
    return {name: np.array(value, copy=True) for name, value in params.items()}


def _check_value(label: str, name: str, p: ParamSpec, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != p.shape:
        raise ParameterError(
            f"{label}: parameter {name!r} has shape {array.shape}, expected {p.shape}"
        )
    if p.kind == "index":
        if array.dtype.kind not in "iu":
            raise ParameterError(
                f"{label}: index parameter {name!r} must hold integers, got {array.dtype}"
            )
        out = array.astype(np.int64, copy=True)
    else:
        if array.dtype.kind != "f":
            raise ParameterError(
                f"{label}: parameter {name!r} must be floating point, got {array.dtype}"
            )
        out = array.astype(np.float64, copy=True)
        if not np.isfinite(out).all():
            bad = int((~np.isfinite(out)).sum())
            raise ParameterError(
                f"{label}: parameter {name!r} has {bad} non-finite value(s) (NaN or inf)"
            )
    _check_constraint(label, name, p, out)
    return out


def _check_constraint(label: str, name: str, p: ParamSpec, value: np.ndarray) -> None:
    if p.constraint == "permutation":
        n = value.shape[-1]
        rows = value.reshape(-1, n)
        if not (np.sort(rows, axis=-1) == np.arange(n)).all():
            raise ParameterError(
                f"{label}: parameter {name!r} must be a permutation of range({n}) "
                "(each index once), or the transform no longer inverts"
            )
    elif p.constraint == "orthogonal":
        error = float(np.abs(value @ value.T - np.eye(value.shape[0])).max())
        if not error <= ORTHOGONAL_ATOL:
            raise ParameterError(
                f"{label}: parameter {name!r} must be orthogonal (its inverse is its "
                f"transpose); |W W^T - I| reaches {error:.3g} > {ORTHOGONAL_ATOL:g}"
            )
    elif p.constraint == "fixed":
        own = p.init(np.random.default_rng(0))
        if not np.array_equal(value, own):
            where = tuple(int(i) for i in np.argwhere(value != own)[0])
            raise ParameterError(
                f"{label}: parameter {name!r} is structure the spec derives (a mask or "
                f"degrees) and cannot be set to another value: at {where} it is "
                f"{value[where]:g}, the spec's is {own[where]:g}; change the spec's options "
                "instead"
            )
    elif p.constraint == "nonnegative" and not (value >= 0).all():
        raise ParameterError(
            f"{label}: parameter {name!r} must be >= 0, reaches {float(value.min()):g}"
        )


def validate(tree: Node, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Check a full set of canonical parameters for ``tree``; return float64/int64 copies.

    Native subnet weights (names under a native subnet's path) pass with only a copy: their
    backend checks them against its own modules.
    """
    specs = tree.param_specs()
    native = tuple(f"{p}." for p in tree.native_paths())
    missing = sorted(set(specs) - set(params))
    surplus = sorted(k for k in set(params) - set(specs) if not k.startswith(native))
    if missing or surplus:
        raise ParameterError(
            f"{tree.label}: parameters do not match; missing {missing}, unexpected {surplus}"
        )
    out = {name: _check_value(tree.label, name, p, params[name]) for name, p in specs.items()}
    out.update({k: np.array(v, copy=True) for k, v in params.items() if k not in specs})
    return out

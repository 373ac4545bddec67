"""The namespace specs compute with under Keras 3: an Array-API-shaped shim over ``keras.ops``.

It covers the Array API standard generically (every function keras.ops can express, by
name, by a renaming table or by a small adapter for the standard's keywords), not only the
names flowcore uses today, and runs on every Keras backend (TensorFlow, JAX, torch), eagerly
and traced (the batch axis may be unknown). Its dtypes are the backend's own dtype objects,
so ``x.dtype == xp.float32`` holds as in the Array API; ``keras.ops`` takes those and dtype
names alike.

Keras 3.15 computes some ops (``arctan``, ``arccos``, ``logaddexp``, ``matmul``, ``mean``,
``tanh``, ...) in float32 when given float64 on every backend but TensorFlow (its
``result_type`` demotes 64-bit types: keras-team/keras#23223, #23704). So where the Keras
backend's arrays have an Array API namespace of their own (JAX and torch, through
array-api-compat), every standard function comes from it, and keras.ops serves TensorFlow,
whose arrays have none (and which keeps float64).
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

import array_api_compat
from keras import ops

from flowcore.namespace import conv_padding, extend

Array = Any


def _own_namespace() -> Any:
    """The Array API namespace of the Keras backend's arrays, None if they have none."""
    try:
        return array_api_compat.array_namespace(ops.zeros(()))
    except TypeError:
        return None


_OWN = _own_namespace()


def _dtype(name: str) -> Any:
    return getattr(_OWN, name) if _OWN is not None else ops.zeros((), dtype=name).dtype


def argsort(x: Array, axis: int = -1, descending: bool = False, stable: bool = True) -> Array:
    return ops.argsort(-x if descending else x, axis=axis)


def asarray(obj: Any, dtype: Any = None, device: Any = None, copy: bool | None = None) -> Array:
    return ops.convert_to_tensor(obj, dtype=dtype)


def astype(x: Array, dtype: Any, copy: bool = True, device: Any = None) -> Array:
    return ops.cast(x, dtype)


def concat(arrays: Sequence[Array], axis: int | None = 0) -> Array:
    if axis is None:
        return ops.concatenate([ops.reshape(a, (-1,)) for a in arrays], axis=0)
    return ops.concatenate(list(arrays), axis=axis)


def sum_(x: Array, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Array:
    return ops.sum(x if dtype is None else ops.cast(x, dtype), axis=axis, keepdims=keepdims)


def take(x: Array, indices: Array, axis: int | None = None) -> Array:
    return ops.take(x, indices, axis=axis)


def conv2d(x: Array, w: Array, b: Array | None, padding: int | Sequence[int]) -> Array:
    """NCHW cross-correlation with an OIHW kernel, stride 1, ``padding`` zeros per side (an
    int, or ``(ph, pw)``); no bias when ``b`` is None.

    Computed channels-last, the one layout TensorFlow's CPU convolution supports. An odd
    kernel padded by half its size on each side is Keras' ``same`` padding, which
    ``torch.compile`` traces whole (``ops.pad`` on Keras' torch backend breaks its graph).
    """
    ph, pw = conv_padding(padding)
    x = ops.transpose(x, (0, 2, 3, 1))
    kh, kw = w.shape[2], w.shape[3]
    same = (kh % 2, kw % 2, ph, pw) == (1, 1, kh // 2, kw // 2)
    if (ph or pw) and not same:
        x = ops.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    mode = "same" if same else "valid"
    y = ops.conv(x, ops.transpose(w, (2, 3, 1, 0)), padding=mode, data_format="channels_last")
    return ops.transpose(y if b is None else y + b, (0, 3, 1, 2))


def pad2d(x: Array, padding: Sequence[int]) -> Array:
    """Zeros around the last two axes, ``padding = (left, right, top, bottom)``."""
    left, right, top, bottom = padding
    return ops.pad(x, [(0, 0)] * (len(x.shape) - 2) + [(top, bottom), (left, right)])


#: Array API functions keras.ops has under the same name and the same positional order.
_SAME_NAME = (
    "abs", "add", "all", "any", "argmax", "argmin", "bitwise_and", "bitwise_invert",
    "bitwise_left_shift", "bitwise_or", "bitwise_right_shift", "bitwise_xor", "broadcast_to",
    "ceil", "clip", "conj", "cos", "cosh", "count_nonzero", "diff", "divide", "equal", "exp",
    "expand_dims", "expm1", "flip", "floor", "floor_divide", "greater", "greater_equal",
    "hypot", "imag", "isfinite", "isin", "isinf", "isnan", "less", "less_equal", "log", "log10",
    "log1p", "log2", "logical_and", "logical_not", "logical_or", "logical_xor", "max",
    "maximum", "meshgrid", "min", "minimum", "moveaxis", "multiply", "negative", "nextafter",
    "not_equal", "real", "reciprocal", "repeat", "reshape", "roll", "round", "searchsorted",
    "sign", "signbit", "sin", "sinh", "sqrt", "square", "squeeze", "stack", "subtract",
    "take_along_axis", "tan", "tensordot", "tile", "tril", "triu", "trunc", "unstack", "where",
)  # fmt: skip
#: Array API names keras.ops spells differently.
_RENAMED = {
    "acos": "arccos", "acosh": "arccosh", "asin": "arcsin", "asinh": "arcsinh",
    "atan2": "arctan2", "atanh": "arctanh", "permute_dims": "transpose", "pow": "power",
    "remainder": "mod", "cumulative_sum": "cumsum", "cumulative_prod": "cumprod",
}  # fmt: skip


def _creation(name: str) -> Any:
    """A creation function taking the Array API's ``dtype=`` and ``device=`` keywords; a
    64-bit dtype is applied by a cast, since keras.ops on JAX demotes it (exact for
    these values)."""
    op = getattr(ops, name)

    def create(*args: Any, dtype: Any = None, device: Any = None, **kwargs: Any) -> Array:
        out = op(*args, **kwargs)
        return out if dtype is None else ops.cast(out, dtype)

    create.__name__ = name
    return create


def sort(x: Array, axis: int = -1, descending: bool = False, stable: bool = True) -> Array:
    return -ops.sort(-x, axis=axis) if descending else ops.sort(x, axis=axis)


def prod(x: Array, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Array:
    return ops.prod(x if dtype is None else ops.cast(x, dtype), axis=axis, keepdims=keepdims)


def std(x: Array, axis: Any = None, correction: float = 0.0, keepdims: bool = False) -> Array:
    return ops.sqrt(var(x, axis=axis, correction=correction, keepdims=keepdims))


def var(x: Array, axis: Any = None, correction: float = 0.0, keepdims: bool = False) -> Array:
    centred = x - ops.mean(x, axis=axis, keepdims=True)
    count = ops.size(x) if axis is None else _count(x, axis)
    return sum_(centred * centred, axis=axis, keepdims=keepdims) / (count - correction)


def _count(x: Array, axis: Any) -> int:
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    n = 1
    for a in axes:
        n *= int(x.shape[a])
    return n


def matrix_transpose(x: Array) -> Array:
    return ops.swapaxes(x, -1, -2)


def vecdot(x1: Array, x2: Array, axis: int = -1) -> Array:
    return sum_(x1 * x2, axis=axis)


_KERAS = types.SimpleNamespace(
    **{name: getattr(ops, name) for name in _SAME_NAME},
    **{name: getattr(ops, keras_name) for name, keras_name in _RENAMED.items()},
    **{
        name: _creation(name)
        for name in ("zeros", "ones", "empty", "full", "arange", "eye", "linspace")
    },
    **{name: _creation(name) for name in ("zeros_like", "ones_like", "empty_like", "full_like")},
    argsort=argsort,
    asarray=asarray,
    astype=astype,
    atan=ops.arctan,
    concat=concat,
    logaddexp=ops.logaddexp,
    matmul=ops.matmul,
    matrix_transpose=matrix_transpose,
    mean=ops.mean,
    positive=lambda x: x,
    prod=prod,
    sort=sort,
    std=std,
    sum=sum_,
    take=take,
    tanh=ops.tanh,
    var=var,
    vecdot=vecdot,
    float32=_dtype("float32"),
    float64=_dtype("float64"),
    int32=_dtype("int32"),
    int64=_dtype("int64"),
    bool=_dtype("bool"),
)
if _OWN is not None:  # the arrays' own namespace, which keeps float64
    for _name in list(vars(_KERAS)):
        if hasattr(_OWN, _name):
            setattr(_KERAS, _name, getattr(_OWN, _name))

XP = extend(_KERAS, conv2d=conv2d, pad2d=pad2d, relu=ops.relu)

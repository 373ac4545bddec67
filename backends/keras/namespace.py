"""The namespace specs compute with under Keras 3: an Array-API-shaped shim over ``keras.ops``.

It runs on every Keras backend (TensorFlow, JAX, torch), eagerly and traced (the batch axis
may be unknown). Its dtypes are the backend's own dtype objects, so ``x.dtype == xp.float32``
holds as in the Array API; ``keras.ops`` takes those and dtype names alike.

Keras 3.15 computes ``atan``, ``logaddexp``, ``matmul``, ``mean`` and ``tanh`` in float32
when given float64 on every backend but TensorFlow (its ``result_type`` demotes 64-bit types:
keras-team/keras#23223, #23704). Those five come from the arrays' own Array API namespace
where they have one (torch, JAX and NumPy arrays; TensorFlow's have none and need none).
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

import array_api_compat
from keras import ops

from flowcore.namespace import extend

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


def _keeping_float64(name: str, keras_op: Any) -> Any:
    """``keras_op``, or the arrays' own ``name`` where Keras would demote float64."""
    return getattr(_OWN, name) if _OWN is not None else keras_op


atan = _keeping_float64("atan", ops.arctan)
logaddexp = _keeping_float64("logaddexp", ops.logaddexp)
matmul = _keeping_float64("matmul", ops.matmul)
mean = _keeping_float64("mean", ops.mean)
tanh = _keeping_float64("tanh", ops.tanh)


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


def zeros(shape: Any, dtype: Any = None, device: Any = None) -> Array:
    # cast, since Keras' zeros on JAX demotes a float64 dtype (casting zeros is exact)
    return ops.zeros(shape) if dtype is None else ops.cast(ops.zeros(shape), dtype)


def zeros_like(x: Array, dtype: Any = None, device: Any = None) -> Array:
    return ops.zeros_like(x, dtype=dtype)


def linear(x: Array, w: Array, b: Array) -> Array:
    """``x @ w.T + b`` with ``w`` of shape (out, in)."""
    return matmul(x, ops.transpose(w)) + b


def conv2d(x: Array, w: Array, b: Array, padding: int) -> Array:
    """NCHW cross-correlation with an OIHW kernel, stride 1, ``padding`` zeros per side.

    Computed channels-last, the one layout TensorFlow's CPU convolution supports.
    """
    x = ops.transpose(x, (0, 2, 3, 1))
    if padding:
        x = ops.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    y = ops.conv(x, ops.transpose(w, (2, 3, 1, 0)), padding="valid", data_format="channels_last")
    return ops.transpose(y + b, (0, 3, 1, 2))


def leaky_relu(x: Array, slope: float = 0.01) -> Array:
    """``x`` where positive, else ``slope * x`` (TensorFlow's own op rounds ``slope`` to
    float32)."""
    return ops.where(x > 0, x, slope * x)


_KERAS = types.SimpleNamespace(
    abs=ops.abs,
    argsort=argsort,
    asarray=asarray,
    astype=astype,
    atan=atan,
    broadcast_to=ops.broadcast_to,
    concat=concat,
    exp=ops.exp,
    float32=_dtype("float32"),
    float64=_dtype("float64"),
    int64=_dtype("int64"),
    log=ops.log,
    logaddexp=logaddexp,
    matmul=matmul,
    mean=mean,
    permute_dims=ops.transpose,
    reshape=ops.reshape,
    sum=sum_,
    take=take,
    tanh=tanh,
    where=ops.where,
    zeros=zeros,
    zeros_like=zeros_like,
)
XP = extend(_KERAS, linear=linear, conv2d=conv2d, relu=ops.relu, leaky_relu=leaky_relu)

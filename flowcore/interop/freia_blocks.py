r"""How each flowcore transform's parameters look in a FrEIA checkpoint, block by block.

A FrEIA module's ``state_dict`` holds the same numbers as flowcore's canonical parameters,
mostly under the same names (the coupling blocks' subnets, ``global_scale``, ``alpha``...).
Where they differ, a :class:`BlockFormat` converts one block's entries both ways:

- ``AllInOneBlock``: a hard permutation is a (C, C[, 1, 1]) 0/1 matrix ``w_perm`` and its
  transpose ``w_perm_inv`` in FrEIA 0.2 and anomalib, and an int64 index ``w_perm`` with its
  ``argsort`` in master; flowcore keeps the index, ``y = x[:, w_perm]``, which is the matrix
  with ``W[i, w_perm[i]] = 1``. A soft permutation is the matrix in both, (C, C) here.
  FrEIA 0.2 clamps with ``α·tanh(a)``, master with ``α·tanh(a/α)``: the spec's
  ``soft_clamp`` must be the checkpoint version's.
- ``ActNorm``: FrEIA 0.2's ``scale, bias``, master's ``log_scale, loc, is_initialized``
  (:func:`flowcore.transforms.actnorm_params_from_freia`).
- ``PermuteRandom``: FrEIA adds ``perm_inv``, the ``argsort`` of ``perm``.
- ``Fixed1x1Conv``: FrEIA's kernel ``M`` (C, C, 1, 1) is flowcore's ``M``; ``logDetM`` is
  checked. ``FixedLinearTransform``: FrEIA's ``M`` is flowcore's ``M.T`` and ``b`` (1, d).
- ``IResNetLayer``: FrEIA's ``residual.{2i}.weight`` (the ELUs hold nothing) is
  ``weight_i``; the power-iteration vectors, not in FrEIA's state, are converged from them.
- ``IRevNetDownsampling``, ``IRevNetUpsampling``: without ``legacy_backend``, FrEIA keeps
  its fixed (4C, 1, 2, 2) reshape kernel ``downsample_kernel`` (C the channels on the
  full-size side) as a frozen parameter; flowcore has no parameter: checked, and made.
- ``HaarDownsampling``, ``HaarUpsampling``: FrEIA keeps its fixed ±1 kernel
  ``haar_weights`` (4C, 1, 2, 2), checked and dropped (written on saving).
- A user's own FrEIA module (:class:`flowcore.models.NativeTransform`): its own entries.
- Splines (master only): the ``bins``, ``min_bin_sizes``, ``default_domain``,
  ``identity_tails`` and ``default_width`` buffers are the spec's options, checked.

Every other block's entries are flowcore's, name for name. Entries are NumPy arrays or
anything with ``.detach().cpu()`` (torch tensors).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from ..errors import ParameterError
from ..models.native import NativeTransform
from ..spec import Transform
from ..transforms import (
    ActNorm,
    AllInOneBlock,
    ElementwiseRationalQuadraticSpline,
    Fixed1x1Conv,
    FixedLinearTransform,
    HaarDownsampling,
    HaarUpsampling,
    IResNetLayer,
    IRevNetDownsampling,
    IRevNetUpsampling,
    LinearSpline,
    PermuteRandom,
    RationalQuadraticSpline,
    actnorm_params_from_freia,
    actnorm_params_to_freia,
    iresnet_params_from_freia,
)
from ..tree import Node

FreiaVersion = Literal["0.2", "master"]
VERSIONS: tuple[FreiaVersion, ...] = ("0.2", "master")

#: float32 checkpoints store the splines' options and ``logDetM`` rounded to float32.
OPTION_RTOL = 1e-6

Entries = dict[str, np.ndarray]


def as_numpy(value: Any) -> np.ndarray:
    """A NumPy copy of an array or a torch tensor (any device, with grad), dtype kept."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.array(value, copy=True)


def _float(value: Any) -> np.ndarray:
    return as_numpy(value).astype(np.float64)


@dataclasses.dataclass(frozen=True)
class BlockFormat:
    """One transform's FrEIA form: which version its entries show, and the conversions.

    ``from_freia(node, entries, version, where)`` takes a block's FrEIA entries (names
    relative to the block) and returns its flowcore parameters (relative names);
    ``to_freia(node, params, version, where)`` is the inverse. ``where`` names the block
    in errors. ``detect`` returns the version the entries show, or None.
    ``version_matters`` says whether the block computes or stores differently in the two.
    """

    from_freia: Callable[[Node, Entries, FreiaVersion, str], Entries]
    to_freia: Callable[[Node, Entries, FreiaVersion, str], Entries]
    detect: Callable[[Node, Entries], FreiaVersion | None] = lambda node, entries: None
    version_matters: bool = False


def check_keys(
    where: str, entries: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]]
) -> None:
    """Refuse missing, surplus or misshaped entries, naming them."""
    missing = sorted(set(expected) - set(entries))
    surplus = sorted(set(entries) - set(expected))
    if missing or surplus:
        raise ParameterError(
            f"{where}: the checkpoint's keys do not match the block: missing {missing}, "
            f"unexpected {surplus}"
        )
    for name, shape in expected.items():
        got = tuple(np.shape(as_numpy(entries[name])))
        if got != tuple(shape):
            raise ParameterError(
                f"{where}: key {name!r} has shape {got}, but the block needs {tuple(shape)}"
            )


def _same(node: Node, entries: Entries, version: FreiaVersion, where: str) -> Entries:
    expected = {name: p.shape for name, p in node.param_specs().items()}
    native = tuple(f"{p}." for p in node.native_paths())
    own = {k: v for k, v in entries.items() if not k.startswith(native)}
    check_keys(where, own, expected)
    return {k: as_numpy(v) for k, v in entries.items()}


def _same_out(node: Node, params: Entries, version: FreiaVersion, where: str) -> Entries:
    return {k: as_numpy(v) for k, v in params.items()}


SAME = BlockFormat(_same, _same_out)


def _split(entries: Entries, names: tuple[str, ...]) -> tuple[Entries, Entries]:
    """The entries named ``names``, and the rest."""
    return {k: v for k, v in entries.items() if k in names}, {
        k: v for k, v in entries.items() if k not in names
    }


def _is_permutation_matrix(w: np.ndarray) -> bool:
    return bool(
        np.isin(w, (0.0, 1.0)).all() and (w.sum(axis=0) == 1).all() and (w.sum(axis=1) == 1).all()
    )


def _index_from_matrix(where: str, key: str, w: np.ndarray) -> np.ndarray:
    if not _is_permutation_matrix(w):
        raise ParameterError(
            f"{where}: {key!r} must be a 0/1 permutation matrix (one 1 in each row and "
            "column), as FrEIA 0.2 stores a hard permutation"
        )
    return np.argmax(w, axis=1).astype(np.int64)


def _check_index(where: str, key: str, index: np.ndarray, n: int) -> np.ndarray:
    if index.dtype.kind not in "iu" or not (np.sort(index) == np.arange(n)).all():
        raise ParameterError(f"{where}: {key!r} must be a permutation of range({n})")
    return index.astype(np.int64)


def _check_inverse(where: str, key: str, got: np.ndarray, want: np.ndarray) -> None:
    if got.shape != want.shape or not np.array_equal(got.astype(want.dtype), want):
        raise ParameterError(
            f"{where}: {key!r} is not the inverse of the permutation it goes with"
        )


# -- AllInOneBlock ---------------------------------------------------------------------------

_CLAMP_OF: dict[FreiaVersion, str] = {"0.2": "tanh", "master": "scaled_tanh"}


def _check_clamp(node: Node, version: FreiaVersion, where: str) -> None:
    spec = node.spec
    assert isinstance(spec, AllInOneBlock)
    if spec.soft_clamp != _CLAMP_OF[version]:
        formula = "α·tanh(a)" if version == "0.2" else "α·tanh(a/α)"
        raise ParameterError(
            f"{where}: a FrEIA {version} AllInOneBlock clamps with {formula}, but this block "
            f"has soft_clamp={spec.soft_clamp!r}: build it with "
            f"soft_clamp={_CLAMP_OF[version]!r} to compute what the checkpoint's model does"
        )


def _aio_hard(node: Node) -> bool:
    spec = node.spec
    assert isinstance(spec, AllInOneBlock)
    return not spec.permute_soft and not spec.learned_householder_permutation


def _aio_detect(node: Node, entries: Entries) -> FreiaVersion | None:
    if not _aio_hard(node) or "w_perm" not in entries:
        return None
    w = as_numpy(entries["w_perm"])
    return "master" if w.ndim == 1 else "0.2"


def _aio_from(node: Node, entries: Entries, version: FreiaVersion, where: str) -> Entries:
    _check_clamp(node, version, where)
    spec = node.spec
    assert isinstance(spec, AllInOneBlock)
    if spec.learned_householder_permutation:
        return _same(node, entries, version, where)
    channels = node.signature.inputs[0][0]
    rank = len(node.signature.inputs[0]) - 1
    perm, rest = _split(entries, ("w_perm", "w_perm_inv"))
    for key in ("w_perm", "w_perm_inv"):
        if key not in perm:
            raise ParameterError(f"{where}: the checkpoint has no {key!r}")
    w, w_inv = as_numpy(perm["w_perm"]), as_numpy(perm["w_perm_inv"])
    if spec.permute_soft or version == "0.2":
        kernel = (channels, channels, *([1] * rank))
        for key, value in (("w_perm", w), ("w_perm_inv", w_inv)):
            if value.shape != kernel:
                raise ParameterError(
                    f"{where}: key {key!r} has shape {value.shape}, but a FrEIA {version} "
                    f"{'soft' if spec.permute_soft else 'hard'} permutation is {kernel}"
                )
        matrix = w.reshape(channels, channels).astype(np.float64)
        inverse = w_inv.reshape(channels, channels).astype(np.float64)
        converted = matrix if spec.permute_soft else _index_from_matrix(where, "w_perm", matrix)
        _check_inverse(where, "w_perm_inv", inverse, matrix.T)
    else:
        if w.shape != (channels,):
            raise ParameterError(
                f"{where}: key 'w_perm' has shape {w.shape}, but FrEIA master stores a hard "
                f"permutation as an index of shape ({channels},)"
            )
        converted = _check_index(where, "w_perm", w, channels)
        _check_inverse(where, "w_perm_inv", w_inv, np.argsort(converted))
    return _same(node, {**rest, "w_perm": converted}, version, where)


def _aio_to(node: Node, params: Entries, version: FreiaVersion, where: str) -> Entries:
    _check_clamp(node, version, where)
    spec = node.spec
    assert isinstance(spec, AllInOneBlock)
    out = _same_out(node, params, version, where)
    if spec.learned_householder_permutation:
        return out
    channels = node.signature.inputs[0][0]
    rank = len(node.signature.inputs[0]) - 1
    w = as_numpy(params["w_perm"])
    if spec.permute_soft or version == "0.2":
        if spec.permute_soft:
            matrix = w.astype(np.float64)
        else:
            matrix = np.zeros((channels, channels))
            matrix[np.arange(channels), w] = 1.0
        kernel = (channels, channels, *([1] * rank))
        out["w_perm"] = matrix.reshape(kernel)
        out["w_perm_inv"] = np.ascontiguousarray(matrix.T).reshape(kernel)
    else:
        out["w_perm"] = w.astype(np.int64)
        out["w_perm_inv"] = np.argsort(w).astype(np.int64)
    return out


ALL_IN_ONE = BlockFormat(_aio_from, _aio_to, _aio_detect, version_matters=True)


# -- ActNorm ---------------------------------------------------------------------------------

_ACTNORM_KEYS: dict[FreiaVersion, tuple[str, ...]] = {
    "0.2": ("scale", "bias"),
    "master": ("log_scale", "loc", "is_initialized"),
}


def _actnorm_detect(node: Node, entries: Entries) -> FreiaVersion | None:
    if "scale" in entries and "bias" in entries:
        return "0.2"
    if "log_scale" in entries and "loc" in entries:
        return "master"
    return None


def _actnorm_from(node: Node, entries: Entries, version: FreiaVersion, where: str) -> Entries:
    shape = node.param("log_scale").shape
    keys = _ACTNORM_KEYS[version]
    expected = {k: shape for k in keys[:2]}
    if version == "master":
        expected["is_initialized"] = np.shape(as_numpy(entries.get("is_initialized", False)))
    check_keys(where, entries, expected)
    return actnorm_params_from_freia(entries, version)


def _actnorm_to(node: Node, params: Entries, version: FreiaVersion, where: str) -> Entries:
    return actnorm_params_to_freia(params, version)


ACTNORM = BlockFormat(_actnorm_from, _actnorm_to, _actnorm_detect, version_matters=True)


# -- PermuteRandom ---------------------------------------------------------------------------


def _permute_from(node: Node, entries: Entries, version: FreiaVersion, where: str) -> Entries:
    (channels,) = node.param("perm").shape
    check_keys(where, entries, {"perm": (channels,), "perm_inv": (channels,)})
    perm = _check_index(where, "perm", as_numpy(entries["perm"]), channels)
    _check_inverse(where, "perm_inv", as_numpy(entries["perm_inv"]), np.argsort(perm))
    return {"perm": perm}


def _permute_to(node: Node, params: Entries, version: FreiaVersion, where: str) -> Entries:
    perm = as_numpy(params["perm"]).astype(np.int64)
    return {"perm": perm, "perm_inv": np.argsort(perm).astype(np.int64)}


PERMUTE_RANDOM = BlockFormat(_permute_from, _permute_to)


# -- fixed linear maps -----------------------------------------------------------------------


def _check_option(where: str, key: str, got: np.ndarray, want: np.ndarray, option: str) -> None:
    if got.shape != want.shape or not np.allclose(got, want, rtol=OPTION_RTOL, atol=OPTION_RTOL):
        raise ParameterError(
            f"{where}: the checkpoint's {key!r} is not what this block's option {option} "
            f"gives: build the block with the checkpoint's value"
        )


def _fixed_from(transpose: bool) -> Callable[[Node, Entries, FreiaVersion, str], Entries]:
    def convert(node: Node, entries: Entries, version: FreiaVersion, where: str) -> Entries:
        (n, _) = node.param("M").shape
        kernel = (n, n) if transpose else (n, n, 1, 1)
        expected: dict[str, tuple[int, ...]] = {"M": kernel, "M_inv": kernel, "logDetM": ()}
        if transpose:
            expected["b"] = np.shape(as_numpy(entries.get("b", np.zeros((1, n)))))
            if expected["b"] not in ((1, n), ()):
                expected["b"] = (1, n)
        check_keys(where, entries, expected)
        m = _float(entries["M"]).reshape(n, n)
        m_inv = _float(entries["M_inv"]).reshape(n, n)
        if transpose:
            m, m_inv = m.T, m_inv.T
        spec_m = np.asarray(node.spec.M, dtype=np.float64)  # type: ignore[union-attr]
        _check_option(where, "M", m, spec_m, "M")
        _check_option(
            where, "logDetM", _float(entries["logDetM"]), np.asarray(np.linalg.slogdet(m)[1]), "M"
        )
        out: Entries = {"M": m, "M_inv": m_inv}
        if transpose:
            b = _float(entries["b"])
            spec_b = np.asarray(node.spec.b if node.spec.b is not None else np.zeros(n))  # type: ignore[union-attr]
            _check_option(where, "b", np.broadcast_to(b, (1, n)).reshape(n), spec_b, "b")
            out["b"] = np.broadcast_to(b, (1, n)).reshape(n).copy()
        return _same(node, out, version, where)

    return convert


def _fixed_to(transpose: bool) -> Callable[[Node, Entries, FreiaVersion, str], Entries]:
    def convert(node: Node, params: Entries, version: FreiaVersion, where: str) -> Entries:
        m, m_inv = _float(params["M"]), _float(params["M_inv"])
        n = m.shape[0]
        out = {
            "M": (m.T if transpose else m.reshape(n, n, 1, 1)).copy(),
            "M_inv": (m_inv.T if transpose else m_inv.reshape(n, n, 1, 1)).copy(),
            "logDetM": np.asarray(np.linalg.slogdet(m)[1]),
        }
        if transpose:
            out["b"] = _float(params["b"]).reshape(1, n)
        return out

    return convert


FIXED_1X1_CONV = BlockFormat(_fixed_from(False), _fixed_to(False))
FIXED_LINEAR = BlockFormat(_fixed_from(True), _fixed_to(True))


# -- IResNetLayer ----------------------------------------------------------------------------


def _iresnet_layers(node: Node) -> int:
    spec = node.spec
    assert isinstance(spec, IResNetLayer)
    return spec.n_internal_layers


def _iresnet_from(node: Node, entries: Entries, version: FreiaVersion, where: str) -> Entries:
    n = _iresnet_layers(node) + 2
    expected = {
        f"residual.{2 * i}.{k}": node.param(f"{k}_{i}").shape
        for i in range(n)
        for k in ("weight", "bias")
    }
    check_keys(where, entries, expected)
    shape = node.signature.inputs[0]
    spatial = tuple(shape[1:]) if len(shape) == 3 else None
    return iresnet_params_from_freia(entries, _iresnet_layers(node), spatial=spatial)


def _iresnet_to(node: Node, params: Entries, version: FreiaVersion, where: str) -> Entries:
    n = _iresnet_layers(node) + 2
    return {
        f"residual.{2 * i}.{k}": _float(params[f"{k}_{i}"])
        for i in range(n)
        for k in ("weight", "bias")
    }


IRESNET = BlockFormat(_iresnet_from, _iresnet_to)


# -- splines (FrEIA master) ------------------------------------------------------------------


def _spline_options(spec: Any) -> dict[str, np.ndarray]:
    domain = np.asarray(spec.default_domain, dtype=np.float64)
    return {
        "bins": np.asarray(spec.bins),
        "min_bin_sizes": np.asarray(spec.min_bin_sizes, dtype=np.float64),
        "default_domain": domain,
        "identity_tails": np.asarray(spec.identity_tails),
        "default_width": np.asarray(domain[1] - domain[0]),
    }


def _spline_format(prefix: str) -> BlockFormat:
    def from_freia(node: Node, entries: Entries, version: FreiaVersion, where: str) -> Entries:
        if version == "0.2":
            raise ParameterError(f"{where}: FrEIA 0.2 has no {type(node.spec).__name__}")
        options = _spline_options(node.spec)
        config, rest = _split(entries, tuple(prefix + k for k in options))
        missing = sorted(prefix + k for k in options if prefix + k not in config)
        if missing:
            raise ParameterError(f"{where}: the checkpoint has no {missing}")
        for key, want in options.items():
            got = as_numpy(config[prefix + key]).astype(want.dtype)
            _check_option(
                where, prefix + key, got.astype(np.float64), want.astype(np.float64), key
            )
        return _same(node, rest, version, where)

    def to_freia(node: Node, params: Entries, version: FreiaVersion, where: str) -> Entries:
        if version == "0.2":
            raise ParameterError(f"{where}: FrEIA 0.2 has no {type(node.spec).__name__}")
        options = _spline_options(node.spec)
        return {
            **_same_out(node, params, version, where),
            **{prefix + k: v for k, v in options.items()},
        }

    return BlockFormat(from_freia, to_freia, version_matters=True)


# -- IRevNet reshapes -------------------------------------------------------------------------


def _irevnet_kernel(node: Node) -> np.ndarray | None:
    """FrEIA's ``downsample_kernel`` for the block, or None (``legacy_backend``: none):
    row ``4c + 2i + j`` is 1 at patch position (i, j), flowcore's channel order."""
    spec = node.spec
    assert isinstance(spec, (IRevNetDownsampling, IRevNetUpsampling))
    if spec.legacy_backend:
        return None
    (shape,) = node.signature.inputs
    channels = shape[0] if isinstance(spec, IRevNetDownsampling) else shape[0] // 4
    kernel = np.zeros((channels, 4, 1, 2, 2))
    for k, (i, j) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        kernel[:, k, 0, i, j] = 1.0
    return kernel.reshape(4 * channels, 1, 2, 2)


def _irevnet_from(node: Node, entries: Entries, version: FreiaVersion, where: str) -> Entries:
    kernel = _irevnet_kernel(node)
    check_keys(where, entries, {} if kernel is None else {"downsample_kernel": kernel.shape})
    if kernel is not None and not np.array_equal(_float(entries["downsample_kernel"]), kernel):
        raise ParameterError(
            f"{where}: 'downsample_kernel' is not FrEIA's fixed i-RevNet reshape kernel"
        )
    return {}


def _irevnet_to(node: Node, params: Entries, version: FreiaVersion, where: str) -> Entries:
    kernel = _irevnet_kernel(node)
    return {} if kernel is None else {"downsample_kernel": kernel}


IREVNET = BlockFormat(_irevnet_from, _irevnet_to)


# -- Haar wavelets ---------------------------------------------------------------------------


def _haar_kernel(node: Node) -> np.ndarray:
    """FrEIA's fixed ``haar_weights`` (4C, 1, 2, 2): per channel the average, vertical,
    horizontal and diagonal ±1 patterns (C the channels on the image side)."""
    (shape,) = node.signature.inputs
    channels = shape[0] if isinstance(node.spec, HaarDownsampling) else shape[0] // 4
    one = np.ones((4, 1, 2, 2))
    for k, (i, j) in (
        (1, (0, 1)),
        (1, (1, 1)),
        (2, (1, 0)),
        (2, (1, 1)),
        (3, (1, 0)),
        (3, (0, 1)),
    ):
        one[k, 0, i, j] = -1.0
    return np.concatenate([one] * channels, axis=0)


def _haar_from(node: Node, entries: Entries, version: FreiaVersion, where: str) -> Entries:
    kernel = _haar_kernel(node)
    check_keys(where, entries, {"haar_weights": kernel.shape})
    if not np.array_equal(_float(entries["haar_weights"]), kernel):
        raise ParameterError(f"{where}: 'haar_weights' is not FrEIA's fixed Haar kernel")
    return {}


def _haar_to(node: Node, params: Entries, version: FreiaVersion, where: str) -> Entries:
    return {"haar_weights": _haar_kernel(node)}


HAAR = BlockFormat(_haar_from, _haar_to)


# -- a user's own FrEIA module ----------------------------------------------------------------


def _native_from(node: Node, entries: Entries, version: FreiaVersion, where: str) -> Entries:
    return {f"module.{k}": v for k, v in entries.items()}


def _native_to(node: Node, params: Entries, version: FreiaVersion, where: str) -> Entries:
    return {k.removeprefix("module."): v for k, v in params.items()}


#: A user's FrEIA module keeps its own entries (flowcore holds it as the child ``module``).
NATIVE = BlockFormat(_native_from, _native_to)


#: The FrEIA form of each transform whose entries differ from flowcore's; others: SAME.
FORMATS: dict[type[Transform], BlockFormat] = {
    AllInOneBlock: ALL_IN_ONE,
    ActNorm: ACTNORM,
    PermuteRandom: PERMUTE_RANDOM,
    Fixed1x1Conv: FIXED_1X1_CONV,
    FixedLinearTransform: FIXED_LINEAR,
    IResNetLayer: IRESNET,
    IRevNetDownsampling: IREVNET,
    IRevNetUpsampling: IREVNET,
    RationalQuadraticSpline: _spline_format("spline_base."),
    LinearSpline: _spline_format("spline_base."),
    ElementwiseRationalQuadraticSpline: _spline_format(""),
    NativeTransform: NATIVE,
    HaarDownsampling: HAAR,
    HaarUpsampling: HAAR,
}


def format_of(node: Node) -> BlockFormat:
    """The FrEIA form of the transform at ``node`` (that of its class or the nearest base
    class listed, e.g. :class:`NativeTransform` for a subclass of it)."""
    for cls in type(node.spec).__mro__:
        if cls in FORMATS:
            return FORMATS[cls]
    return SAME

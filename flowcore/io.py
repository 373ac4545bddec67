"""Save a model as one file — its spec as JSON plus its weights as safetensors — and load it
into any backend. No pickle: loading runs no code from the file.

The file carries checksums of its header and of every tensor (:mod:`flowcore.file_format`);
a save writes a temporary file beside the target and moves it into place with
``os.replace``, so an interrupted save never leaves a half-written model. Every failure to
read a file is a :class:`~flowcore.FileError` naming the path and the fault.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .api import build, get_params, set_params, tree_of
from .errors import FileError, FlowError
from .file_format import (
    CHECKSUMS,
    FLOAT_DTYPES,
    FORMAT,
    VERSION,
    checksums,
    validate_header,
    verify,
)
from .params import validate
from .serialize import spec_from_config, spec_to_config
from .spec import Shape, Transform
from .tree import Node, build_tree


def _safetensors() -> Any:
    try:
        import safetensors.numpy
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise FlowError(
            "saving and loading need safetensors: pip install 'flowcore[weights]'"
        ) from err
    return safetensors.numpy


def save(model: Any, path: str | os.PathLike[str]) -> None:
    """Write ``model``'s spec, shapes and canonical parameters to ``path``."""
    tree = tree_of(model)
    if tree.native_paths():
        raise FlowError(
            f"{tree.label}: models with a native subnet_constructor cannot be saved portably; "
            "use flowcore.MLP or flowcore.ConvNet subnets"
        )
    if not isinstance(tree.spec, Transform):
        raise FlowError(f"{tree.label}: only a transform can be saved, got {tree.spec!r}")
    params = get_params(model)
    dtype = next((str(v.dtype) for v in params.values() if v.dtype.kind == "f"), "float32")
    write(path, tree.spec, tree.signature.inputs, tree.signature.conditions, dtype, params)


def write(
    path: str | os.PathLike[str],
    spec: Transform,
    inputs: Sequence[Shape],
    conditions: Sequence[Shape],
    dtype: str,
    params: Mapping[str, np.ndarray],
) -> None:
    """Write a flowcore file from its parts: what :func:`save` writes for a model of
    ``spec`` on ``inputs`` and ``conditions`` holding ``params`` in ``dtype``."""
    header_text = json.dumps(
        {
            "format": FORMAT,
            "version": VERSION,
            "spec": spec_to_config(spec),
            "inputs": [list(shape) for shape in inputs],
            "conditions": [list(shape) for shape in conditions],
            "dtype": dtype,
        }
    )
    # np.require keeps 0-d arrays (BatchNorm's num_batches_tracked); ascontiguousarray would
    # make them 1-d
    tensors = {k: np.require(v, requirements="C") for k, v in params.items()}
    metadata = {FORMAT: header_text, CHECKSUMS: checksums(header_text, tensors)}
    _write_atomically(path, _safetensors().save(tensors, metadata=metadata))


def _write_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then move it onto ``path``."""
    target = os.path.abspath(os.fspath(path))
    if os.path.isdir(target):
        raise FileError(f"{path}: is a directory; give a file name such as flow.fc")
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileError(f"{path}: the folder {folder} does not exist")
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise


def _open(path: str | os.PathLike[str]) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """The safetensors metadata and tensors of ``path``, or a FileError saying why not."""
    name = os.fspath(path)
    if os.path.isdir(name):
        raise FileError(f"{path}: is a directory, not a flowcore file")
    if not os.path.exists(name):
        raise FileError(f"{path}: no such file")
    if os.path.getsize(name) == 0:
        raise FileError(f"{path}: the file is empty")
    from safetensors import safe_open

    _safetensors()
    try:
        with safe_open(name, framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors' own errors: truncated, garbage, bad offsets
        raise FileError(f"{path}: not a readable safetensors file ({err})") from err
    return metadata, tensors


def read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and canonical parameters stored in a flowcore file, checked: the header
    against its schema, header and tensors against their checksums."""
    metadata, tensors = _open(path)
    if FORMAT not in metadata:
        raise FileError(f"{path}: not a flowcore file (no '{FORMAT}' header)")
    if CHECKSUMS in metadata:  # corruption first: a damaged header is reported as such
        verify(str(path), metadata[FORMAT], metadata[CHECKSUMS], tensors)
    try:
        header = json.loads(metadata[FORMAT])
    except ValueError as err:
        raise FileError(f"{path}: the header is not valid JSON ({err})") from err
    header = validate_header(str(path), header)
    if header["version"] >= 2 and CHECKSUMS not in metadata:
        raise FileError(f"{path}: the file has no checksums ('{CHECKSUMS}' is missing)")
    for name, value in tensors.items():
        if value.dtype.kind == "f" and str(value.dtype) != header["dtype"]:
            raise FileError(
                f"{path}: tensor {name!r} is stored as {value.dtype} in a "
                f"{header['dtype']} model; flowcore writes every float tensor in the model's "
                f"dtype ({' or '.join(FLOAT_DTYPES)}), so this file was altered"
            )
    return header, tensors


def read_tree(path: str | os.PathLike[str]) -> tuple[Node, dict[str, np.ndarray]]:
    """The model a flowcore file holds, checked without building it in any backend: its
    spec bound to the saved shapes, and its parameters validated against that spec."""
    _, tree, params = _read_model(path)
    return tree, params


def _read_model(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Any], Node, dict[str, np.ndarray]]:
    header, params = read(path)
    try:
        spec = spec_from_config(header["spec"])
        if not isinstance(spec, Transform):
            raise FlowError(f"the top-level spec is a {type(spec).__name__}, not a transform")
        tree = build_tree(spec, header["inputs"], header["conditions"])
        validate(tree, params)
    except FlowError as err:
        raise FileError(f"{path}: {err}") from err
    return header, tree, params


def load(
    path: str | os.PathLike[str],
    *,
    backend: str | None = None,
    dtype: str | None = None,
    device: Any = None,
) -> Any:
    """Build the saved model in ``backend`` (default: as :func:`flowcore.build` chooses) with
    the saved parameters; ``dtype`` defaults to the saved one."""
    header, tree, params = _read_model(path)
    model = build(
        tree.spec,  # type: ignore[arg-type]  # read_tree checked that it is a transform
        header["inputs"],
        header["conditions"],
        backend=backend,
        dtype=dtype or header["dtype"],
        device=device,
    )
    set_params(model, params)
    return model

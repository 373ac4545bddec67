"""Save a model as one file — its spec as JSON plus its weights as safetensors — and load it
into any backend. No pickle: loading runs no code from the file."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .api import build, get_params, set_params, tree_of
from .errors import FlowError
from .serialize import spec_from_config, spec_to_config
from .spec import Shape, Transform

FORMAT = "flowcore"
VERSION = 1


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
    assert isinstance(tree.spec, Transform)
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
    header = {
        "format": FORMAT,
        "version": VERSION,
        "spec": spec_to_config(spec),
        "inputs": [list(shape) for shape in inputs],
        "conditions": [list(shape) for shape in conditions],
        "dtype": dtype,
    }
    # np.require keeps 0-d arrays (BatchNorm's num_batches_tracked); ascontiguousarray would
    # make them 1-d
    tensors = {k: np.require(v, requirements="C") for k, v in params.items()}
    _safetensors().save_file(tensors, os.fspath(path), metadata={FORMAT: json.dumps(header)})


def read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and canonical parameters stored in a flowcore file."""
    from safetensors import safe_open

    _safetensors()
    with safe_open(os.fspath(path), framework="np") as f:
        metadata = f.metadata() or {}
        params = {k: f.get_tensor(k) for k in f.keys()}
    if FORMAT not in metadata:
        raise FlowError(f"{path}: not a flowcore file (no '{FORMAT}' header)")
    header = json.loads(metadata[FORMAT])
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise FlowError(f"{path}: unsupported flowcore file version {header.get('version')!r}")
    return header, params


def load(
    path: str | os.PathLike[str],
    *,
    backend: str | None = None,
    dtype: str | None = None,
    device: Any = None,
) -> Any:
    """Build the saved model in ``backend`` (default: as :func:`flowcore.build` chooses) with
    the saved parameters; ``dtype`` defaults to the saved one."""
    header, params = read(path)
    spec = spec_from_config(header["spec"])
    assert isinstance(spec, Transform)
    model = build(
        spec,
        header["inputs"],
        header["conditions"],
        backend=backend,
        dtype=dtype or header["dtype"],
        device=device,
    )
    set_params(model, params)
    return model

"""The flowcore file's header: its schema and its checksums.

A flowcore file is a safetensors file whose metadata holds two JSON strings:

- ``"flowcore"``, the header: ``format``, ``version``, ``spec`` (a spec config),
  ``inputs`` and ``conditions`` (shapes without the batch axis) and ``dtype``;
- ``"flowcore.sha256"`` (version 2): the SHA-256 of the header string itself and of every
  tensor (its dtype, shape and bytes), so that a flipped bit anywhere in the file is found
  on load instead of loading another model.

Version 1 files (before checksums) still load, without the integrity check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import FileError

FORMAT = "flowcore"
CHECKSUMS = "flowcore.sha256"
VERSION = 2
READABLE_VERSIONS = (1, 2)
#: the float dtypes a model is built in, and so the dtypes a file's float tensors may have
FLOAT_DTYPES = ("float32", "float64")


def tensor_digest(array: np.ndarray) -> str:
    """SHA-256 of a tensor's dtype, shape and C-ordered bytes."""
    h = hashlib.sha256(f"{array.dtype.str}{list(array.shape)}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def checksums(header_text: str, tensors: Mapping[str, np.ndarray]) -> str:
    """The ``"flowcore.sha256"`` metadata entry for a header string and its tensors."""
    return json.dumps(
        {
            "header": text_digest(header_text),
            "tensors": {name: tensor_digest(v) for name, v in sorted(tensors.items())},
        }
    )


def verify(where: str, header_text: str, checksum_text: str, tensors: Mapping[str, Any]) -> None:
    """Raise :class:`FileError` unless the header and every tensor match their checksums."""
    try:
        stored = json.loads(checksum_text)
        header_sum, tensor_sums = stored["header"], dict(stored["tensors"])
    except (ValueError, KeyError, TypeError) as err:
        raise FileError(f"{where}: its checksum entry is damaged ({err})") from err
    if header_sum != text_digest(header_text):
        raise FileError(f"{where}: the header (spec, shapes, dtype) does not match its checksum")
    if set(tensor_sums) != set(tensors):
        lost = sorted(set(tensor_sums) - set(tensors))
        extra = sorted(set(tensors) - set(tensor_sums))
        raise FileError(
            f"{where}: the tensors' names do not match their checksums (corrupted or "
            f"altered): missing {lost}, unexpected {extra}"
        )
    for name in sorted(tensors):
        if tensor_sums[name] != tensor_digest(tensors[name]):
            raise FileError(f"{where}: tensor {name!r} does not match its checksum (corrupted)")


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(
        type(n) is int and n > 0
        for n in value  # bool is not a dimension
    )


def validate_header(where: str, header: Any) -> dict[str, Any]:
    """Check the header's schema before anything is built from it; return it."""

    def bad(what: str) -> FileError:
        return FileError(f"{where}: {what}")

    if not isinstance(header, dict):
        raise bad(f"the header must be a JSON object, got {type(header).__name__}")
    if header.get("format") != FORMAT:
        raise bad(f"not a flowcore file (format {header.get('format')!r})")
    version = header.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise bad(f"unsupported flowcore file version {version!r} (this flowcore reads 1, 2)")
    missing = sorted({"spec", "inputs", "conditions", "dtype"} - set(header))
    if missing:
        raise bad(f"the header lacks {missing}")
    spec = header["spec"]
    if not (isinstance(spec, dict) and isinstance(spec.get("type"), str)):
        raise bad("'spec' must be an object with a 'type' string")
    if not isinstance(spec.get("config", {}), dict):
        raise bad("'spec.config' must be an object")
    for key in ("inputs", "conditions"):
        shapes = header[key]
        if not (isinstance(shapes, list) and all(_is_shape(s) for s in shapes)):
            raise bad(f"{key!r} must be a list of shapes of positive ints, got {shapes!r}")
    if not header["inputs"]:
        raise bad("'inputs' names no input")
    if header["dtype"] not in FLOAT_DTYPES:
        raise bad(f"'dtype' must be one of {FLOAT_DTYPES}, got {header['dtype']!r}")
    return header

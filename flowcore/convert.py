"""Convert a model between a flowcore file and each framework's own formats.

A file's suffix names its format:

- ``.fc``: a flowcore file (:func:`flowcore.save`): spec, shapes and parameters;
- ``.keras``: a Keras archive: flowcore's Keras model saved with ``model.save`` (written as
  a :class:`~flowcore.backends.keras.DensityModel`), or a model saved by gyoza 0.3.0;
- ``.pt`` / ``.pth``: a PyTorch ``state_dict`` (``torch.save(flow.state_dict())``);
- ``.msgpack``: Flax's msgpack of the parameters by canonical name
  (``flax.serialization.msgpack_serialize``), what the JAX functional form trains.

A ``state_dict`` or a msgpack holds parameters only: reading one needs the architecture,
``like``, a flowcore file (or any of the formats above) of the same model. Reading checks
that the names and shapes match it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import pathlib
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .api import build, get_params, set_params, tree_of
from .errors import FlowError
from .io import read, write
from .serialize import spec_from_config
from .spec import Shape, Transform

Path = str | os.PathLike[str]


class ConvertError(FlowError, ValueError):
    """A file that cannot be converted: unknown suffix, missing architecture, mismatch."""


@dataclasses.dataclass(frozen=True)
class Stored:
    """A model as files hold it: its spec, shapes, dtype and canonical parameters."""

    spec: Transform
    inputs: tuple[Shape, ...]
    conditions: tuple[Shape, ...]
    dtype: str
    params: dict[str, np.ndarray]

    @classmethod
    def of(cls, model: Any) -> Stored:
        """What a flowcore model of any backend holds."""
        tree = tree_of(model)
        assert isinstance(tree.spec, Transform)
        params = get_params(model)
        dtype = next((str(v.dtype) for v in params.values() if v.dtype.kind == "f"), "float32")
        sig = tree.signature
        return cls(tree.spec, tuple(sig.inputs), tuple(sig.conditions), dtype, params)

    def build(self, backend: str) -> Any:
        """The model as a native module of ``backend`` holding these parameters."""
        model = build(
            self.spec, list(self.inputs), list(self.conditions), backend=backend, dtype=self.dtype
        )
        set_params(model, self.params)
        return model

    def with_params(self, params: Mapping[str, np.ndarray], source: Path) -> Stored:
        """The same model holding ``params`` read from ``source``, names and shapes checked."""
        missing, extra = (
            sorted(set(self.params) - set(params)),
            sorted(set(params) - set(self.params)),
        )
        if missing or extra:
            raise ConvertError(
                f"{os.fspath(source)}: parameters do not match the architecture: "
                f"missing {missing}, unexpected {extra}"
            )
        for name, value in params.items():
            if tuple(value.shape) != tuple(self.params[name].shape):
                raise ConvertError(
                    f"{os.fspath(source)}: {name} has shape {tuple(value.shape)}, the "
                    f"architecture's is {tuple(self.params[name].shape)}"
                )
        return dataclasses.replace(self, params={k: np.asarray(v) for k, v in params.items()})


# -- readers --------------------------------------------------------------------------------


def _read_flowcore(path: Path, like: Stored | None) -> Stored:
    header, params = read(path)
    spec = spec_from_config(header["spec"])
    assert isinstance(spec, Transform)
    shapes = lambda key: tuple(tuple(s) for s in header[key])  # noqa: E731
    return Stored(spec, shapes("inputs"), shapes("conditions"), header["dtype"], params)


def _saved_by_flowcore(path: Path) -> bool:
    """Whether a ``.keras`` archive's model is one of flowcore's Keras classes (else it is
    read as gyoza's)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as error:
        raise ConvertError(f"{os.fspath(path)}: not a Keras .keras archive ({error})") from None
    return str(config.get("module", "")).startswith("flowcore")


def _flows(layer: Any) -> list[Any]:
    """The flowcore flows in a Keras layer or model: itself, a DensityModel's ``flow``, or
    those among its layers."""
    if hasattr(layer, "flowcore_tree"):
        return [layer]
    children = [getattr(layer, "flow", None), *getattr(layer, "layers", ())]
    return [flow for child in children if child is not None for flow in _flows(child)]


def _read_keras(path: Path, like: Stored | None) -> Stored:
    if not _saved_by_flowcore(path):
        from .interop.gyoza import read_gyoza

        imported = read_gyoza(path)
        return Stored(imported.spec, (imported.input_shape,), (), imported.dtype, imported.params)
    import keras

    # flowcore's Keras classes register themselves with Keras when their module is imported
    importlib.import_module("flowcore.backends.keras")
    flows = list({id(f): f for f in _flows(keras.models.load_model(os.fspath(path)))}.values())
    if len(flows) != 1:
        raise ConvertError(
            f"{os.fspath(path)}: the Keras model holds {len(flows)} flowcore flows, not one"
        )
    return Stored.of(flows[0])


def _needs_like(path: Path, like: Stored | None, what: str) -> Stored:
    if like is None:
        raise ConvertError(
            f"{os.fspath(path)}: a {what} holds parameters only; give the architecture as "
            "like= (--like on the command line), a flowcore file of the same model"
        )
    return like


def _read_torch(path: Path, like: Stored | None) -> Stored:
    import torch

    like = _needs_like(path, like, "PyTorch state_dict")
    state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ConvertError(f"{os.fspath(path)}: not a state_dict (a {type(state).__name__})")
    return like.with_params({k: v.numpy() for k, v in state.items()}, path)


def _read_msgpack(path: Path, like: Stored | None) -> Stored:
    from flax import serialization

    like = _needs_like(path, like, "msgpack of parameters")
    restored = serialization.msgpack_restore(pathlib.Path(path).read_bytes())
    if not isinstance(restored, Mapping):
        raise ConvertError(f"{os.fspath(path)}: not a msgpack of parameters by name")
    return like.with_params({k: np.asarray(v) for k, v in restored.items()}, path)


# -- writers --------------------------------------------------------------------------------


def _write_flowcore(stored: Stored, path: Path) -> None:
    write(path, stored.spec, stored.inputs, stored.conditions, stored.dtype, stored.params)


def _write_keras(stored: Stored, path: Path) -> None:
    density_model = importlib.import_module("flowcore.backends.keras").DensityModel
    density_model(stored.build("keras")).save(os.fspath(path))


def _write_torch(stored: Stored, path: Path) -> None:
    import torch

    torch.save(stored.build("torch").state_dict(), os.fspath(path))


def _write_msgpack(stored: Stored, path: Path) -> None:
    from flax import serialization

    pathlib.Path(path).write_bytes(serialization.msgpack_serialize(dict(stored.params)))


Reader = Callable[[Path, "Stored | None"], Stored]
Writer = Callable[[Stored, Path], None]
#: Each format's reader and writer by suffix.
FORMATS: dict[str, tuple[Reader, Writer]] = {
    ".fc": (_read_flowcore, _write_flowcore),
    ".keras": (_read_keras, _write_keras),
    ".pt": (_read_torch, _write_torch),
    ".pth": (_read_torch, _write_torch),
    ".msgpack": (_read_msgpack, _write_msgpack),
}


def _format(path: Path) -> tuple[Reader, Writer]:
    suffix = pathlib.Path(path).suffix
    if suffix not in FORMATS:
        raise ConvertError(
            f"{os.fspath(path)}: unknown format {suffix!r}; flowcore converts {sorted(FORMATS)}"
        )
    return FORMATS[suffix]


def read_any(path: Path, like: Path | None = None) -> Stored:
    """The model a file of any of :data:`FORMATS` holds; ``like`` is the architecture a
    parameters-only file (``.pt``, ``.msgpack``) needs."""
    if not pathlib.Path(path).is_file():
        raise ConvertError(f"{os.fspath(path)}: no such file")
    architecture = None if like is None else read_any(like)
    return _format(path)[0](path, architecture)


def convert(source: Path, target: Path, *, like: Path | None = None) -> Stored:
    """Read ``source`` and write ``target``, each in the format its suffix names; returns
    the model converted."""
    writer = _format(target)[1]
    stored = read_any(source, like)
    writer(stored, target)
    return stored


def main(argv: Sequence[str] | None = None) -> int:
    """``flowcore convert SOURCE TARGET [--like ARCHITECTURE]``."""
    parser = argparse.ArgumentParser(
        prog="flowcore convert",
        description="Convert a model between file formats, each named by its suffix: "
        + ", ".join(sorted(FORMATS)),
    )
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument(
        "--like", help="the architecture (a flowcore file) a .pt or .msgpack source needs"
    )
    args = parser.parse_args(argv)
    try:
        stored = convert(args.source, args.target, like=args.like)
    except FlowError as error:
        print(f"flowcore convert: {error}", file=sys.stderr)
        return 2
    count = sum(int(v.size) for v in stored.params.values())
    print(
        f"wrote {args.target}: {type(stored.spec).__name__} on {list(stored.inputs)}, "
        f"{len(stored.params)} tensors ({count} values), {stored.dtype}"
    )
    return 0


__all__ = ["FORMATS", "ConvertError", "Stored", "convert", "main", "read_any"]

"""Specs to and from JSON-ready configs. Loading only looks classes up; it imports nothing.

A config is ``{"type": "<module>:<qualname>", "config": {...}}``; nested specs are configs
themselves and tuples become lists. Every :class:`~flowcore.Spec` subclass registers itself
when its class is defined, so a user's own transform loads once its module is imported.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import FlowError
from .spec import Spec

_CLASSES: dict[str, type[Spec]] = {}


def spec_type(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_spec(cls: type[Spec]) -> type[Spec]:
    """Make ``cls`` loadable from configs (done for every Spec subclass automatically)."""
    _CLASSES[spec_type(cls)] = cls
    return cls


def _encode(value: Any, where: str) -> Any:
    if isinstance(value, Spec):
        return spec_to_config(value)
    if isinstance(value, (list, tuple)):
        return [_encode(v, where) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if where.endswith(".subnet_constructor"):
        hint = "a native subnet_constructor is not portable, use a portable subnet such as "
        hint += "flowcore.MLP or flowcore.ConvNet"
    else:
        hint = "code (a callable) is not portable, use one of the option's named choices"
    raise FlowError(f"{where}: {type(value).__name__} values cannot be saved; {hint}")


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"type", "config"}:
        return spec_from_config(value)
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def spec_to_config(spec: Spec) -> dict[str, Any]:
    """A JSON-ready description of ``spec``."""
    if dataclasses.is_dataclass(spec):
        fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    else:
        fields = spec.get_config()
    where = spec.label
    return {
        "type": spec_type(type(spec)),
        "config": {k: _encode(v, f"{where}.{k}") for k, v in fields.items()},
    }


def spec_from_config(config: dict[str, Any]) -> Spec:
    """Rebuild a spec from :func:`spec_to_config`'s output.

    Every fault of the config (its form, an unknown type, an option the class does not
    take or refuses) is a :class:`~flowcore.FlowError`.
    """
    if not (
        isinstance(config, dict)
        and isinstance(config.get("type"), str)
        and isinstance(config.get("config", {}), dict)
    ):
        raise FlowError(
            f"a spec config is {{'type': '<module>:<class>', 'config': {{...}}}}, got {config!r}"
        )
    name = config["type"]
    cls = _CLASSES.get(name)
    if cls is None:
        raise FlowError(
            f"unknown spec type {name!r}: import the module defining it before loading "
            "(flowcore never imports code named in a file)"
        )
    kwargs = {k: _decode(v) for k, v in config.get("config", {}).items()}
    try:
        if dataclasses.is_dataclass(cls):
            return cls(**kwargs)
        return cls.from_config(kwargs)
    except FlowError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise FlowError(f"{cls.__name__}: its config cannot be built ({err})") from err

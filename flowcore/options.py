"""Checking a spec's options once, from its annotations, when it is constructed.

A dataclass spec's fields are checked against their type hints by :func:`check_fields`
(called from :meth:`flowcore.spec.Spec.__post_init__`): bools must be bools, ints ints,
floats finite real numbers, ``Literal`` fields one of their choices, ``X | None`` either,
spec-typed fields instances. Bounds are ``Annotated`` markers: ``Annotated[float,
Range(0, None, low_open=True)]`` is a float > 0. Errors are :class:`flowcore.FlowError`
naming the spec, the option, what it expected and what it got.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import types
import typing
from typing import Any

from .errors import OptionError


@dataclasses.dataclass(frozen=True)
class Range:
    """A bound on a number: ``low <= x <= high`` (``<`` where open; None: unbounded)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, x: float) -> bool:
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return not (
            self.high is not None and (x >= self.high if self.high_open else x > self.high)
        )

    def __str__(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return " and ".join(parts)


POSITIVE = Range(0, None, low_open=True)
NON_NEGATIVE = Range(0, None)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is typing.Annotated:
        base, *marks = typing.get_args(hint)
        return f"{_describe(base)} {' '.join(str(m) for m in marks)}"
    if hint is type(None):
        return "None"
    if origin is collections.abc.Callable or hint is collections.abc.Callable:
        return "a callable"
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of {_describe(args[0])}"
        return "a tuple"
    return getattr(hint, "__name__", str(hint))


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin is typing.Annotated:
        base, *marks = typing.get_args(hint)
        return _matches(value, base) and all(m.holds(value) for m in marks if isinstance(m, Range))
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is collections.abc.Callable or hint is collections.abc.Callable:
        return callable(value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
        )
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        if len(args) != len(value):
            return False
        return all(_matches(v, a) for v, a in zip(value, args, strict=True))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint this checker does not know: the spec checks it itself


def _plain(hint: Any) -> Any:
    """The hint with ``Annotated`` removed."""
    if typing.get_origin(hint) is typing.Annotated:
        return typing.get_args(hint)[0]
    return hint


def check_fields(spec: Any) -> None:
    """Check every dataclass field of ``spec`` against its annotation (see the module doc).

    An int given for a float field is stored as a float, a list for a tuple as a tuple.
    """
    if not dataclasses.is_dataclass(spec):
        return
    hints = typing.get_type_hints(type(spec), include_extras=True)
    for field in dataclasses.fields(spec):
        hint = hints.get(field.name, Any)
        value = getattr(spec, field.name)
        if isinstance(value, list) and typing.get_origin(_plain(hint)) is tuple:
            value = tuple(value)
            object.__setattr__(spec, field.name, value)
        if not _matches(value, hint):
            label = getattr(spec, "label", type(spec).__name__)
            raise OptionError(
                f"{label}: option {field.name} must be {_describe(hint)}, got {value!r}"
            )
        if _plain(hint) is float and isinstance(value, int):
            object.__setattr__(spec, field.name, float(value))

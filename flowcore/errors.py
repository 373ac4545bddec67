"""Errors raised by flowcore: each names the transform, what it expected and what it got."""

from __future__ import annotations


class FlowError(Exception):
    """Base class of every error flowcore raises on purpose."""


class OptionError(FlowError, ValueError):
    """A spec, a declaration or a function was given a bad option or value."""


class ArgumentError(FlowError, TypeError):
    """An argument of the wrong kind: a flag that is not a bool, a module where a spec is
    expected, a subnet constructor that is not callable."""


class ShapeError(FlowError, ValueError):
    """An input, condition or declaration has the wrong shape, rank or count."""


class BackendError(FlowError, RuntimeError):
    """A backend is missing, not installed, or cannot run the request."""


class ParameterError(FlowError, KeyError):
    """Canonical parameters are missing, surplus, or of the wrong shape."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class FileError(FlowError, ValueError):
    """A file is missing, unreadable, corrupted or not a model flowcore can load."""


class NonFiniteError(FlowError, FloatingPointError):
    """:func:`flowcore.check_finite` found a NaN or inf: names the block, the array and the
    samples."""

"""Which FrEIA the drop-in reproduces: 0.2 (the default) or master, one switch."""

from __future__ import annotations

from typing import cast

from flowcore.errors import OptionError
from flowcore.interop.freia_blocks import VERSIONS, FreiaVersion

#: The FrEIA versions the drop-in reproduces.
FREIA_VERSIONS = VERSIONS

_current: list[FreiaVersion] = ["0.2"]


def freia_version() -> FreiaVersion:
    """The FrEIA version whose behaviour blocks built now reproduce."""
    return _current[0]


class use_freia:  # noqa: N801 (used as a function)
    """``use_freia("master")``: blocks built from now on reproduce FrEIA master; as a
    context manager (``with use_freia("master"): ...``) only within the block."""

    def __init__(self, version: str) -> None:
        if version not in FREIA_VERSIONS:
            raise OptionError(
                f"use_freia: version must be one of {FREIA_VERSIONS}, got {version!r}"
            )
        self._previous = _current[0]
        _current[0] = cast(FreiaVersion, version)

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        _current[0] = self._previous

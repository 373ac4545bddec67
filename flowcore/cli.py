"""``flowcore``: the command line. ``flowcore info`` says what is installed and where it can
run; ``flowcore conformance`` runs the conformance suite, ``flowcore bench`` times one flow in
every backend and ``flowcore convert`` moves a model between file formats (each with
``--help``)."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import sys
from collections.abc import Sequence

from .backend import load_backend, registered

#: The distributions each built-in backend runs on, whose versions ``info`` shows.
FRAMEWORKS = {"torch": ("torch",), "jax": ("jax", "flax"), "keras": ("keras",)}
KERAS_ENGINES = {"tensorflow": "tensorflow-cpu", "jax": "jax", "torch": "torch"}


def _version(distribution: str) -> str:
    for name in (distribution, distribution.removesuffix("-cpu")):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def info_lines() -> list[str]:
    """What ``flowcore info`` prints: versions, then each registered backend with its
    frameworks' versions and its devices, or why it is unavailable."""
    lines = [
        f"flowcore {_version('flowcore')} on Python {platform.python_version()}",
        f"  numpy {_version('numpy')}, array-api-compat {_version('array-api-compat')}",
        "backends:",
    ]
    for name, entry in sorted(registered().items()):
        if not entry.installed():
            lines.append(f"  {name:6s} not installed")
            continue
        versions = [f"{d} {_version(d)}" for d in FRAMEWORKS.get(name, ())]
        if name == "keras":
            engine = os.environ.get("KERAS_BACKEND", "tensorflow")
            versions.append(f"on {engine} {_version(KERAS_ENGINES.get(engine, engine))}")
        try:
            devices = ", ".join(load_backend(name).devices())
        except Exception as exc:  # a broken install is reported, not raised
            lines.append(f"  {name:6s} {'; '.join(versions)}: fails to load ({exc})")
            continue
        lines.append(f"  {name:6s} {', '.join(versions) or '-'}; devices: {devices}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowcore", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="installed backends, versions and devices")
    commands.add_parser("conformance", help="the conformance suite", add_help=False)
    commands.add_parser("bench", help="one flow timed in every backend", add_help=False)
    commands.add_parser("convert", help="a model from one file format to another", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command in ("bench", "convert"):
        return int(importlib.import_module(f"flowcore.{args.command}").main(rest))
    if args.command == "conformance":
        # flowcore.conformance is mapped from the repository's conformance/ folder
        conformance = importlib.import_module("flowcore.conformance.cli")
        return int(conformance.main(rest))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    print("\n".join(info_lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

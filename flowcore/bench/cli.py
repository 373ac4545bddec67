"""The ``flowcore bench`` command."""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import installed_backends, load_backend
from . import report
from .configs import CONFIGS, Config
from .timing import MODES, TASKS, Workload, measure, pin_threads


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text}")
    return value


def _choices(known: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {list(known)}, got {text!r}")
        return names

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowcore bench", description=__doc__)
    parser.add_argument(
        "--configs", type=_choices(list(CONFIGS)), default=["tiny"],
        help=f"comma-separated, of {list(CONFIGS)} (default tiny)",
    )  # fmt: skip
    parser.add_argument(
        "--backends", help="comma-separated (default: every installed one with a bench hook)"
    )
    parser.add_argument("--modes", type=_choices(MODES), default=list(MODES))
    parser.add_argument("--tasks", type=_choices(TASKS), default=list(TASKS))
    parser.add_argument("--blocks", type=_positive, help="override each config's depth")
    parser.add_argument("--batch", type=_positive, help="override each config's batch")
    parser.add_argument("--rounds", type=_positive, default=7, help="interleaved rounds")
    parser.add_argument("--number", type=_positive, help="calls per round (default: ~50 ms)")
    parser.add_argument("--threads", type=_positive, default=1, help="cores (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    parser.add_argument("--plot", type=Path, help="write a bar chart of the ratios here")
    return parser


def workloads(name: str, config: Config, args: argparse.Namespace) -> list[Workload]:
    """The backend's workloads of ``config`` that the run asks for."""
    hook = load_backend(name).bench_steps
    shape = (config.batch, *config.shape)
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    chosen = hook(config, x, args.device, args.threads)
    return [w for w in chosen if w.mode in args.modes and w.task in args.tasks]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    installed = installed_backends()
    names = installed if args.backends is None else args.backends.split(",")
    unknown = [n for n in names if n not in installed]
    if unknown:
        parser.error(f"backends not installed or unknown: {unknown}; installed: {installed}")
    pin_threads(args.threads)  # before any framework is imported
    for name in [n for n in names if not hasattr(load_backend(n), "bench_steps")]:
        print(f"not benchmarked: backend {name!r} has no bench_steps hook")
        names.remove(name)
    all_rows: list[dict[str, Any]] = []
    for config_name in args.configs:
        sizes = {k: getattr(args, k) for k in ("blocks", "batch") if getattr(args, k)}
        config = CONFIGS[config_name].resized(**sizes)
        chosen = [w for name in names for w in workloads(name, config, args)]
        all_rows += report.rows(config.name, measure(chosen, args.rounds, args.number))
    header = (
        f"flowcore bench on {platform.processor() or platform.machine()}, {args.device}, "
        f"{args.threads} thread(s), float32; median of {args.rounds} interleaved rounds"
    )
    print(report.table(all_rows, header))
    if args.json:
        args.json.write_text(json.dumps(all_rows, indent=1))
    if args.plot:
        report.plot(all_rows, args.plot)
    return 0

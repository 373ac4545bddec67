"""``flowcore conformance`` (also ``flowcore-conformance``): the conformance suite without
pytest, as a readable report.

Prints, per backend, dtype and device, the checks passed, failed, expected to fail
(``xfails.txt``) and not run, with the largest deviation each check measured; the same for
the cross-backend checks; a transform x check table; the reasons for what was not run and
every failure. ``--json`` and ``--markdown`` write the report to files as well. Exits 1 when
a check failed or nothing ran.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import cases, checks, plan, report


def _names(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="flowcore conformance", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--backends", "--backend",
        help=f"comma-separated (default: ${plan.ENV_BACKENDS}, else all installed)",
    )  # fmt: skip
    parser.add_argument(
        "--dtypes", "--dtype", default=",".join(plan.DTYPES),
        help="comma-separated, or 'alternate': each case in one, float32 and float64 in turn",
    )  # fmt: skip
    parser.add_argument(
        "--devices", "--device",
        help=f"comma-separated (default: every device, known ones {list(plan.KNOWN_DEVICES)} "
        "reported as not run where absent)",
    )  # fmt: skip
    parser.add_argument(
        "--checks",
        "--check",
        help=f"comma-separated, of {[*checks.SINGLE_CHECKS, *checks.PAIR_CHECKS]}",
    )
    parser.add_argument(
        "--cases",
        help="only cases whose name contains this (or matches a glob); 'representative': "
        "each transform with and without conditions once",
    )
    parser.add_argument(
        "--sliced-checks",
        choices=plan.SLICED_SCOPES,
        help=f"where {list(checks.SLICED_CHECKS)} run: 'slice' (each transform once, the "
        f"default, or ${plan.ENV_SLICED}) or 'all' (every case and dtype: the full matrix)",
    )
    parser.add_argument(
        "--xfails", type=Path, action="append", default=[], help="more xfail files"
    )
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--markdown", type=Path, help="also write the report as Markdown here")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every outcome")
    args = parser.parse_args(argv)
    args.dtypes = _names(args.dtypes) or list(plan.DTYPES)
    unknown = sorted(set(args.dtypes) - {*plan.DTYPES, "alternate"})
    if unknown:
        parser.error(f"unknown dtypes {unknown}; choose from {[*plan.DTYPES, 'alternate']}")
    args.checks = _names(args.checks)
    known = {*checks.SINGLE_CHECKS, *checks.PAIR_CHECKS}
    if args.checks and not set(args.checks) <= known:
        parser.error(
            f"unknown checks {sorted(set(args.checks) - known)}; choose from {sorted(known)}"
        )
    args.backends, args.devices = _names(args.backends), _names(args.devices)
    return args


def _items(args: argparse.Namespace, selection: plan.Selection) -> list[plan.Item]:
    return plan.items(
        selection,
        cases.select(args.cases),
        ",".join(args.dtypes),
        plan.load_xfails(args.xfails),
        args.devices,
        args.checks,
        sliced=args.sliced_checks,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; returns the exit status (0: no failure and something ran)."""
    args = _parse(argv)
    if not cases.select(args.cases):
        print(f"no case matches {args.cases!r}; cases: {sorted(cases.CASES)}", file=sys.stderr)
        return 2
    selection = plan.select_backends(args.backends)
    start = time.perf_counter()
    outcomes = []
    for item in _items(args, selection):
        outcome = plan.run_item(item)
        if args.verbose:
            deviation = "" if outcome.deviation is None else f"{outcome.deviation:.1e}"
            print(f"{outcome.status:8s} {deviation:8s} {item.key} {outcome.message}", flush=True)
        outcomes.append(outcome)
    seconds = time.perf_counter() - start
    print(report.text(selection, outcomes, seconds))
    command = shlex.join(["flowcore", "conformance", *(sys.argv[1:] if argv is None else argv)])
    if args.json:
        args.json.write_text(report.as_json(selection, outcomes, seconds, command))
    if args.markdown:
        args.markdown.write_text(report.markdown(selection, outcomes, seconds, command))
    failed = any(o.status == "failed" for o in outcomes) or bool(selection.problems())
    ran = any(o.status in ("passed", "failed", "xfailed") for o in outcomes)
    return 1 if failed or not ran else 0

"""``flowcore-conformance``: the conformance suite without pytest, as a readable report.

Prints, per backend, dtype and device, the cases' checks passed, failed, expected to fail
(``xfails.txt``) and not run, with the largest deviation each check measured, then the same
for the cross-backend checks, the reasons for what was not run and every failure. Exits 1
when a check failed or nothing ran.
"""

from __future__ import annotations

import argparse
import collections
import math
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import cases, plan

STATUSES: tuple[plan.Status, ...] = ("passed", "failed", "xfailed", "not run")
#: Checks whose deviation the tables show (the others are exact or have none).
SINGLE_COLUMNS = ("forward", "inverse", "roundtrip", "jacobian", "gradients")
PAIR_COLUMNS = ("port", "save_load", "gradients_agree")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="flowcore-conformance", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--backends", help=f"comma-separated (default: ${plan.ENV_BACKENDS}, else all installed)"
    )
    parser.add_argument("--dtypes", default=",".join(plan.DTYPES), help="comma-separated")
    parser.add_argument(
        "--cases",
        help="only cases whose name contains this (or matches a glob); 'representative': "
        "each transform with and without conditions once",
    )
    parser.add_argument(
        "--xfails", type=Path, action="append", default=[], help="more xfail files"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every outcome")
    args = parser.parse_args(argv)
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    unknown = sorted(set(args.dtypes) - set(plan.DTYPES))
    if unknown:
        parser.error(f"unknown dtypes {unknown}; choose from {list(plan.DTYPES)}")
    args.backends = [b.strip() for b in args.backends.split(",")] if args.backends else None
    return args


def _cell(outcomes: Sequence[plan.Outcome], check: str) -> str:
    devs = [o.deviation for o in outcomes if o.item.check == check and o.deviation is not None]
    if not devs:
        return "-"
    worst = max(devs, key=lambda d: math.inf if math.isnan(d) else d)
    return f"{worst:.1e}"


def _table(title: str, head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(head), *map(list, rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([title, lines[0], "-" * len(lines[0]), *lines[1:]])


def _grouped(outcomes: Sequence[plan.Outcome], columns: Sequence[str]) -> list[list[str]]:
    """One row per backend (or pair), dtype and device: counts, then worst deviations."""
    groups: dict[tuple[str, str, str], list[plan.Outcome]] = collections.defaultdict(list)
    for o in outcomes:
        groups[("+".join(o.item.labels) or "none", o.item.dtype, o.item.device)].append(o)
    rows = []
    for (backend, dtype, device), group in groups.items():
        counts = collections.Counter(o.status for o in group)
        rows.append(
            [backend, dtype, device, *(str(counts[s]) for s in STATUSES)]
            + [_cell(group, c) for c in columns]
        )
    return rows


#: Checks against the float64 reference that the per-transform table summarises.
TRANSFORM_CHECKS = ("forward", "inverse", "roundtrip")
#: Composite transforms: a case's row goes to the transforms they hold instead.
CONTAINERS = ("SequenceINN", "Inverse", "GraphINN")


def _transforms(case: str) -> list[str]:
    names = sorted(t.__name__ for t in cases.transforms_in(cases.CASES[case]))
    return [n for n in names if n not in CONTAINERS] or names


def _by_transform(outcomes: Sequence[plan.Outcome]) -> tuple[list[str], list[list[str]]]:
    """Per transform, the largest forward/inverse/round-trip deviation from the reference,
    a column per backend, dtype and device, over every case whose tree holds it."""
    worst: dict[tuple[str, str], float] = {}
    columns: list[str] = []
    names = {c: _transforms(c) for c in {o.item.case for o in outcomes} if c in cases.CASES}
    for o in outcomes:
        if o.item.check not in TRANSFORM_CHECKS or o.deviation is None:
            continue
        column = f"{o.item.labels[0]} {o.item.dtype} {o.item.device}"
        if column not in columns:
            columns.append(column)
        for name in names[o.item.case]:
            key = (name, column)
            worst[key] = max(worst.get(key, 0.0), o.deviation)
    rows = [
        [name, *(f"{worst[(name, c)]:.1e}" if (name, c) in worst else "-" for c in columns)]
        for name in sorted({n for n, _ in worst})
    ]
    return columns, rows


def report(selection: plan.Selection, outcomes: Sequence[plan.Outcome], seconds: float) -> str:
    """The whole report as text."""
    single = [o for o in outcomes if not o.item.is_pair]
    pairs = [o for o in outcomes if o.item.is_pair]
    head = ["backend", "dtype", "device", *STATUSES]
    parts = [
        "flowcore conformance: backends "
        + (", ".join(selection.labels.values()) or "none")
        + f"; {len(outcomes)} checks in {seconds:.1f} s",
        "deviation columns: largest |backend - float64 reference| (pairs: |b - a|) per check",
        _table("\nper backend", [*head, *SINGLE_COLUMNS], _grouped(single, SINGLE_COLUMNS)),
        _table("\ncross-backend", [*head, *PAIR_COLUMNS], _grouped(pairs, PAIR_COLUMNS)),
    ]
    columns, rows = _by_transform(single)
    if rows:
        parts.append(
            _table(
                "\nper transform: largest forward, inverse or round-trip deviation over its cases",
                ["transform", *columns],
                rows,
            )
        )
    skipped = collections.Counter(o.message for o in outcomes if o.status == "not run")
    reasons = [f"  {n:5d}  {why}" for why, n in skipped.items()]
    reasons += [f"  backend  {why}" for why in selection.not_run.values()]
    if reasons:
        parts.append("\nnot run:\n" + "\n".join(reasons))
    expected = collections.Counter(o.item.xfail for o in outcomes if o.status == "xfailed")
    if expected:
        lines = [f"  {n:5d}  {why}" for why, n in expected.items()]
        parts.append("\nexpected failures (xfails.txt):\n" + "\n".join(lines))
    failures = [f"  {p}" for p in selection.problems()]
    failures += [f"  {o.item.key}: {o.message}" for o in outcomes if o.status == "failed"]
    if failures:
        parts.append("\nFAILED:\n" + "\n".join(failures))
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; returns the exit status (0: no failure and something ran)."""
    args = _parse(argv)
    selection = plan.select_backends(args.backends)
    xfails = plan.load_xfails(args.xfails)
    chosen = cases.select(args.cases)
    if not chosen:
        print(f"no case matches {args.cases!r}; cases: {sorted(cases.CASES)}", file=sys.stderr)
        return 2
    items = [
        *plan.single_items(selection, chosen, args.dtypes, xfails),
        *plan.absent_device_items(selection),
        *plan.pair_items(selection, chosen, args.dtypes, xfails),
    ]
    start = time.perf_counter()
    outcomes = []
    for item in items:
        outcome = plan.run_item(item)
        if args.verbose:
            deviation = "" if outcome.deviation is None else f"{outcome.deviation:.1e}"
            print(f"{outcome.status:8s} {deviation:8s} {item.key} {outcome.message}", flush=True)
        outcomes.append(outcome)
    print(report(selection, outcomes, time.perf_counter() - start))
    failed = any(o.status == "failed" for o in outcomes) or bool(selection.problems())
    ran = any(o.status in ("passed", "failed", "xfailed") for o in outcomes)
    return 1 if failed or not ran else 0

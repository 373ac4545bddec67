"""The suite's report, from its outcomes: as text (the command line), Markdown and JSON.

Tables: per backend, dtype and device the checks passed, failed, expected to fail and not
run with the largest deviation of each numeric check; the same for the cross-backend checks;
and transform x check (over every case holding the transform, every backend, dtype and
device): ``ok`` with the largest deviation, ``FAILED n`` with it, or ``not run``. Then the
reasons for what was not run, and every failure.
"""

from __future__ import annotations

import collections
import datetime
import json
import math
import platform
from collections.abc import Iterable, Sequence
from typing import Any

import flowcore as fc

from . import cases, checks, plan

STATUSES: tuple[plan.Status, ...] = ("passed", "failed", "xfailed", "not run")
#: Checks whose deviation the per-backend tables show (the others are exact or have none).
SINGLE_COLUMNS = ("forward", "inverse", "roundtrip", "jacobian", "gradients", "batch")
PAIR_COLUMNS = ("port", "save_load", "gradients_agree")
#: Composite transforms: a case's row goes to the transforms they hold instead.
CONTAINERS = ("SequenceINN", "Inverse", "GraphINN")

Table = tuple[str, list[str], list[list[str]]]  # title, head, rows


def _worst(deviations: Iterable[float]) -> float | None:
    devs = list(deviations)
    return max(devs, key=lambda d: math.inf if math.isnan(d) else d) if devs else None


def _cell(outcomes: Sequence[plan.Outcome], check: str) -> str:
    worst = _worst(
        o.deviation for o in outcomes if o.item.check == check and o.deviation is not None
    )
    return "-" if worst is None else f"{worst:.1e}"


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


def _transforms(case: str) -> list[str]:
    names = sorted(t.__name__ for t in cases.transforms_in(cases.CASES[case]))
    return [n for n in names if n not in CONTAINERS] or names


def transform_checks(outcomes: Sequence[plan.Outcome]) -> Table:
    """Transform x check: every case holding the transform, in every backend (pair), dtype
    and device."""
    names = {c: _transforms(c) for c in {o.item.case for o in outcomes} if c in cases.CASES}
    by_key: dict[tuple[str, str], list[plan.Outcome]] = collections.defaultdict(list)
    for o in outcomes:
        for name in names.get(o.item.case, ()):
            by_key[(name, o.item.check)].append(o)
    order = [*checks.SINGLE_CHECKS, *checks.PAIR_CHECKS]
    present = [c for c in order if any(check == c for _, check in by_key)]
    rows = []
    for name in sorted({n for n, _ in by_key}):
        row = [name]
        for check in present:
            group = by_key.get((name, check), [])
            counts = collections.Counter(o.status for o in group)
            worst = _worst(o.deviation for o in group if o.deviation is not None)
            dev = "" if worst is None else f" {worst:.0e}"
            if counts["failed"]:
                row.append(f"FAILED {counts['failed']}{dev}")
            elif counts["passed"] or counts["xfailed"]:
                row.append(f"ok{dev}")
            else:
                row.append("not run")
        rows.append(row)
    title = "per transform and check: ok (largest deviation), FAILED n, or not run"
    return title, ["transform", *present], rows


def tables(outcomes: Sequence[plan.Outcome]) -> list[Table]:
    single = [o for o in outcomes if not o.item.is_pair]
    pairs = [o for o in outcomes if o.item.is_pair]
    head = ["backend", "dtype", "device", *STATUSES]
    return [
        ("per backend", [*head, *SINGLE_COLUMNS], _grouped(single, SINGLE_COLUMNS)),
        ("cross-backend", [*head, *PAIR_COLUMNS], _grouped(pairs, PAIR_COLUMNS)),
        transform_checks(outcomes),
    ]


def _reasons(selection: plan.Selection, outcomes: Sequence[plan.Outcome]) -> list[str]:
    skipped = collections.Counter(o.message for o in outcomes if o.status == "not run")
    return [f"{n:5d}  {why}" for why, n in skipped.items()] + [
        f"backend  {why}" for why in selection.not_run.values()
    ]


def _failures(selection: plan.Selection, outcomes: Sequence[plan.Outcome]) -> list[str]:
    return [*selection.problems()] + [
        f"{o.item.key}: {o.message}" for o in outcomes if o.status == "failed"
    ]


def _expected(outcomes: Sequence[plan.Outcome]) -> list[str]:
    counts = collections.Counter(o.item.xfail for o in outcomes if o.status == "xfailed")
    return [f"{n:5d}  {why}" for why, n in counts.items()]


def _summary(selection: plan.Selection, outcomes: Sequence[plan.Outcome], seconds: float) -> str:
    counts = collections.Counter(o.status for o in outcomes)
    tally = ", ".join(f"{counts[s]} {s}" for s in STATUSES)
    backends = ", ".join(selection.labels.values()) or "none"
    return (
        f"flowcore conformance: backends {backends}; {len(outcomes)} checks ({tally}) "
        f"in {seconds:.1f} s"
    )


def _text_table(title: str, head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    rows = [list(head), *map(list, rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([title, lines[0], "-" * len(lines[0]), *lines[1:]])


def text(selection: plan.Selection, outcomes: Sequence[plan.Outcome], seconds: float) -> str:
    """The report as plain text."""
    parts = [
        _summary(selection, outcomes, seconds),
        "deviation columns: largest |backend - float64 reference| (pairs: |b - a|) per check",
    ]
    parts += ["\n" + _text_table(*t) for t in tables(outcomes) if t[2]]
    for title, lines in (
        ("not run", _reasons(selection, outcomes)),
        ("expected failures (xfails.txt)", _expected(outcomes)),
        ("FAILED", _failures(selection, outcomes)),
    ):
        if lines:
            parts.append(f"\n{title}:\n" + "\n".join(f"  {line}" for line in lines))
    return "\n".join(parts)


def _markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _environment() -> str:
    return (
        f"flowcore {fc.__version__}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    )


def markdown(
    selection: plan.Selection, outcomes: Sequence[plan.Outcome], seconds: float, command: str
) -> str:
    """The report as a Markdown page."""
    parts = [
        "# Conformance report",
        f"`{command}` on {_environment()}.",
        _summary(selection, outcomes, seconds).replace("flowcore conformance: ", "").capitalize()
        + ". Deviations are the largest |backend − float64 reference| (pairs: |b − a|).",
    ]
    for title, head, rows in tables(outcomes):
        if rows:
            parts += [f"## {title[0].upper()}{title[1:]}", _markdown_table(head, rows)]
    for title, lines in (
        ("Not run", _reasons(selection, outcomes)),
        ("Expected failures", _expected(outcomes)),
        ("Failed", _failures(selection, outcomes)),
    ):
        if lines:
            parts += [f"## {title}", "\n".join(f"- {line.strip()}" for line in lines)]
    return "\n\n".join(parts) + "\n"


def as_json(
    selection: plan.Selection, outcomes: Sequence[plan.Outcome], seconds: float, command: str
) -> str:
    """Every outcome, the selection and the environment, as JSON."""
    counts = collections.Counter(o.status for o in outcomes)

    def entry(o: plan.Outcome) -> dict[str, Any]:
        item = o.item
        return {
            "check": item.check, "backends": list(item.labels), "case": item.case,
            "dtype": item.dtype, "device": item.device, "status": o.status,
            "deviation": None if o.deviation is None or math.isnan(o.deviation) else o.deviation,
            "message": o.message,
        }  # fmt: skip

    return json.dumps(
        {
            "command": command,
            "environment": _environment(),
            "seconds": round(seconds, 2),
            "backends": selection.labels,
            "backends_not_run": selection.not_run,
            "problems": selection.problems(),
            "counts": {s: counts[s] for s in STATUSES},
            "outcomes": [entry(o) for o in outcomes],
        },
        indent=1,
    )

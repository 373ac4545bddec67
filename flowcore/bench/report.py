"""What ``flowcore bench`` reports: per configuration, backend, mode and task, flowcore's
median time, its ratio to the floor and to each peer (median of per-round ratios; a peer is
compared in the same mode, or eager when it has no compiled form) and the warm-up time of the
compiled forms (their compile time)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .timing import Measurement, median_ratio


def rows(config: str, measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    by_key = {m.workload.key: m for m in measurements}
    out = []
    for m in measurements:
        backend, subject, mode, task = m.workload.key
        if subject != "flowcore":
            continue
        row: dict[str, Any] = {
            "config": config, "backend": backend, "mode": mode, "task": task,
            "ms": m.median_ms, "warmup_s": m.warmup_s, "vs_floor": None, "vs": {},
        }  # fmt: skip
        floor = by_key.get((backend, "floor", mode, task))
        if floor is not None:
            row["vs_floor"] = median_ratio(m, floor)
        peers = {k[1] for k in by_key if k[0] == backend and k[1] not in ("flowcore", "floor")}
        for peer in sorted(peers):
            other = by_key.get((backend, peer, mode, task)) or by_key.get(
                (backend, peer, "eager", task)
            )
            if other is not None:
                row["vs"][peer] = median_ratio(m, other)
        out.append(row)
    return out


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(all_rows: Sequence[dict[str, Any]], header: str) -> str:
    peers = sorted({p for r in all_rows for p in r["vs"]})
    columns = ["config", "backend", "mode", "task", "ms", "vs floor", *[f"vs {p}" for p in peers]]
    lines = [header, "  " + " ".join(f"{c:>10s}" for c in columns) + "   warm-up s"]
    for r in all_rows:
        cells = [
            r["config"], r["backend"], r["mode"], r["task"], f"{r['ms']:.3f}",
            _ratio(r["vs_floor"]), *[_ratio(r["vs"].get(p)) for p in peers],
        ]  # fmt: skip
        lines.append("  " + " ".join(f"{c:>10s}" for c in cells) + f"   {r['warmup_s']:.2f}")
    return "\n".join(lines)


def plot(all_rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Bars of flowcore's time over the floor's, one group per configuration and task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({(r["backend"], r["mode"]) for r in all_rows if r["vs_floor"] is not None})
    groups = list(dict.fromkeys((r["config"], r["task"]) for r in all_rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(groups)), 4.0))
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        values = [
            next(
                (r["vs_floor"] for r in all_rows
                 if (r["config"], r["task"]) == g and (r["backend"], r["mode"]) == label),
                None,
            )
            for g in groups
        ]  # fmt: skip
        xs = [j + i * width for j, v in enumerate(values) if v is not None]
        ax.bar(xs, [v for v in values if v is not None], width, label=" ".join(label))
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))])
    ax.set_xticklabels([f"{c}\n{t}" for c, t in groups])
    ax.set_ylabel("time / floor's time")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

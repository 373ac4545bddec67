"""Interleaved timing: every workload of a configuration, round by round, after a warm-up.

A round times ``number`` calls of each workload, in an order rotated by one each round, so
that drift in the machine's speed (heat, a neighbour's load) reaches every workload alike;
ratios are taken round by round and their median reported. The warm-up call's time is kept:
for a compiled workload it is the compile time.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable, Sequence

Step = Callable[[], object]
TASKS = ("forward", "inverse", "train")
MODES = ("eager", "compiled")


@dataclasses.dataclass(frozen=True)
class Workload:
    """One thing timed: ``task`` of ``subject`` (``flowcore``, ``floor`` or a peer) in
    ``mode`` on ``backend``; ``step`` runs it once and waits for its result."""

    backend: str
    subject: str
    mode: str
    task: str
    step: Step

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.backend, self.subject, self.mode, self.task


@dataclasses.dataclass
class Measurement:
    workload: Workload
    warmup_s: float
    round_ms: list[float] = dataclasses.field(default_factory=list)  # ms per call, per round

    @property
    def median_ms(self) -> float:
        return statistics.median(self.round_ms)


def pin_threads(threads: int) -> None:
    """One process on ``threads`` cores: the thread pools of OpenMP, MKL, XLA and
    TensorFlow sized before any framework starts them, and the process bound to the first
    ``threads`` of the cores it may use (torch's pool is sized by its bench hook)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cores[:threads])


def measure(
    workloads: Sequence[Workload], rounds: int, number: int | None = None, round_s: float = 0.05
) -> list[Measurement]:
    """Warm each workload up once, then ``rounds`` interleaved rounds of ``number`` calls
    each (by default as many as take about ``round_s``, from a second call's time)."""
    measurements: list[Measurement] = []
    numbers: list[int] = []
    for workload in workloads:
        start = time.perf_counter()
        workload.step()
        warmup = time.perf_counter() - start
        start = time.perf_counter()
        workload.step()
        once = time.perf_counter() - start
        measurements.append(Measurement(workload, warmup))
        numbers.append(number or max(1, min(100, round(round_s / max(once, 1e-9)))))
    for r in range(rounds if measurements else 0):
        shift = r % len(measurements)
        for i in [*range(shift, len(measurements)), *range(shift)]:
            step = measurements[i].workload.step
            start = time.perf_counter()
            for _ in range(numbers[i]):
                step()
            measurements[i].round_ms.append((time.perf_counter() - start) / numbers[i] * 1e3)
    return measurements


def median_ratio(top: Measurement, bottom: Measurement) -> float:
    """The median over rounds of ``top``'s time over ``bottom``'s in the same round."""
    return statistics.median(a / b for a, b in zip(top.round_ms, bottom.round_ms, strict=True))

"""What the suite runs: the selected backends, the items (check x backends x case x dtype x
device), the known failures (data, not code) and the running of one item.

pytest (``test_conformance.py``) and the command line (``cli.py``) run the same items.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import importlib.util
import itertools
import os
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from flowcore.backend import Backend, installed_backends, load_backend, registered

from . import cases as cases_module
from . import checks
from .cases import Case

ENV_BACKENDS = "FLOWCORE_TEST_BACKENDS"
ENV_XFAILS = "FLOWCORE_CONFORMANCE_XFAILS"
#: The cases the pytest suite runs: a name pattern, ``all`` (the default) or
#: ``representative`` (:func:`flowcore.conformance.cases.representative`).
ENV_CASES = "FLOWCORE_CONFORMANCE_CASES"
#: The dtypes each case runs in: comma-separated (default both), or ``alternate``.
ENV_DTYPES = "FLOWCORE_CONFORMANCE_DTYPES"
DTYPES = ("float32", "float64")
#: Where the :data:`~.checks.SLICED_CHECKS` run: ``slice`` (the default: each transform once,
#: float32 and float64 in turn) or ``all`` (every case and dtype the run has: the full matrix).
ENV_SLICED = "FLOWCORE_CONFORMANCE_SLICED_CHECKS"
SLICED_SCOPES = ("slice", "all")
#: Devices every backend is asked about; one it lacks is reported once as not run.
KNOWN_DEVICES = ("cpu", "cuda", "tpu")
#: The device cross-backend checks run on.
PAIR_DEVICE = "cpu"
XFAILS_FILE = Path(__file__).with_name("xfails.txt")


def prepare_environment(names: Sequence[str]) -> None:
    """Quiet TensorFlow and give JAX float64, before any framework is imported."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if {"jax", "keras"} & set(names) and importlib.util.find_spec("jax") is not None:
        import jax

        jax.config.update("jax_enable_x64", True)


def backend_label(name: str) -> str:
    """The name reports use: Keras says which Keras backend runs it (``keras.jax``)."""
    if name != "keras":
        return name
    import keras

    return f"keras.{keras.backend.backend()}"


#: The :class:`~flowcore.backend.Backend` methods the suite calls.
HOOKS = (
    "build", "get_params", "set_params", "devices", "to_native", "to_numpy", "move", "call",
    "jacobian", "gradients",
)  # fmt: skip


@dataclasses.dataclass
class Selection:
    """The backends asked for: loaded ones, and the reason each other one is not run."""

    loaded: dict[str, Backend]
    not_run: dict[str, str]
    broken: dict[str, str]  # installed, but importing its backend failed: a failure
    labels: dict[str, str]

    @property
    def names(self) -> list[str]:
        return [*self.loaded, *self.broken, *self.not_run]

    def problems(self) -> list[str]:
        """Why each loaded or broken backend cannot run the suite (a failure each)."""
        return [p for name in [*self.loaded, *self.broken] if (p := self.problem(name))]

    def problem(self, name: str) -> str | None:
        """Why a loaded or broken backend cannot run the suite; None when it can."""
        if name in self.broken:
            return f"loading backend {name!r} failed: {self.broken[name]}"
        backend = self.loaded[name]
        missing = [h for h in HOOKS if not callable(getattr(backend, h, None))]
        if missing:
            return f"backend {name!r} lacks the conformance hooks {missing}"
        if getattr(backend, "name", None) != name:
            return f"backend {name!r} calls itself {getattr(backend, 'name', None)!r}"
        return None


def requested_backends(names: Sequence[str] | None = None) -> list[str]:
    """``names``, else ``$FLOWCORE_TEST_BACKENDS`` (comma-separated; set but empty: none),
    else every installed backend."""
    if names is not None:
        return list(names)
    env = os.environ.get(ENV_BACKENDS)
    if env is None:
        return installed_backends()
    return [n.strip() for n in env.split(",") if n.strip()]


def select_backends(names: Sequence[str] | None = None) -> Selection:
    """Load the requested backends; unknown or uninstalled ones are not run, with the reason."""
    names = requested_backends(names)
    prepare_environment(names)
    known, installed = registered(), installed_backends()
    selection = Selection({}, {}, {}, {})
    for name in names:
        if name not in known:
            selection.not_run[name] = f"backend {name!r} is not registered ({sorted(known)} are)"
        elif name not in installed:
            missing = [r for r in known[name].requires if importlib.util.find_spec(r) is None]
            selection.not_run[name] = f"backend {name!r} is not installed (missing {missing})"
        else:
            try:
                selection.loaded[name] = load_backend(name)
                selection.labels[name] = backend_label(name)
            except Exception as exc:  # a broken backend fails its load check
                selection.broken[name] = f"{type(exc).__name__}: {exc}"
    return selection


@dataclasses.dataclass(frozen=True)
class Item:
    """One check of one case, dtype and device, for one backend or a pair."""

    check: str
    backends: tuple[str, ...]
    labels: tuple[str, ...]
    case: str
    dtype: str
    device: str
    not_run: str | None = None
    xfail: str | None = None

    @property
    def key(self) -> str:
        """``check-backend(s)-case-dtype-device``: the test id and what xfail globs match."""
        return "-".join((self.check, "+".join(self.labels), self.case, self.dtype, self.device))

    @property
    def is_pair(self) -> bool:
        return self.check in checks.PAIR_CHECKS


def load_xfails(paths: Sequence[Path] = ()) -> dict[str, str]:
    """Known failures: ``glob  # reason`` lines of ``xfails.txt`` and of ``paths``/``$ENV``."""
    extra = [Path(p) for p in os.environ.get(ENV_XFAILS, "").split(os.pathsep) if p]
    xfails: dict[str, str] = {}
    for path in (XFAILS_FILE, *paths, *extra):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            pattern, _, reason = line.partition("#")
            if not reason.strip():
                raise ValueError(f"{path}:{number}: an xfail entry needs '# reason'")
            xfails[pattern.strip()] = reason.strip()
    return xfails


def _with_xfail(item: Item, xfails: dict[str, str]) -> Item:
    for pattern, reason in xfails.items():
        if fnmatch.fnmatchcase(item.key, pattern):
            return dataclasses.replace(item, xfail=reason)
    return item


def case_dtypes(cases: Sequence[Case], spec: str | None) -> list[tuple[Case, tuple[str, ...]]]:
    """Each case with the dtypes it runs in: ``spec`` comma-separated dtypes (default
    :data:`DTYPES`), or ``alternate``: float32 and float64 in turn, case by case, so that a
    slice of the cases halves its time and still runs each dtype."""
    if spec == "alternate":
        return [(case, (DTYPES[i % len(DTYPES)],)) for i, case in enumerate(cases)]
    dtypes = tuple(d.strip() for d in spec.split(",") if d.strip()) if spec else DTYPES
    unknown = sorted(set(dtypes) - set(DTYPES))
    if unknown:
        raise ValueError(f"${ENV_DTYPES}: unknown dtypes {unknown}; known: {list(DTYPES)}")
    return [(case, dtypes) for case in cases]


@functools.cache
def _slice(registered: tuple[str, ...]) -> dict[str, str]:
    """The cases of :data:`~.checks.SLICED_CHECKS` with their dtype: of the ``registered``
    cases, each that adds a transform not yet covered, float32 and float64 in turn."""
    chosen = cases_module.each_transform_once([cases_module.CASES[n] for n in registered])
    return {case.name: DTYPES[i % len(DTYPES)] for i, case in enumerate(chosen)}


def _devices(
    backend: Backend, known: Sequence[str] = KNOWN_DEVICES
) -> tuple[list[str], list[str]]:
    """``(present, absent)``: the devices the backend has, and those of ``known`` it lacks."""
    present = list(backend.devices())
    return present, [d for d in known if d not in present]


def sliced_scope(spec: str | None = None) -> str:
    """``spec``, else ``$FLOWCORE_CONFORMANCE_SLICED_CHECKS``, else ``slice``; checked."""
    scope = spec or os.environ.get(ENV_SLICED) or "slice"
    if scope not in SLICED_SCOPES:
        raise ValueError(f"${ENV_SLICED}: {scope!r} is not one of {list(SLICED_SCOPES)}")
    return scope


def single_items(
    selection: Selection,
    cases: Sequence[Case],
    dtypes: Sequence[str],
    xfails: dict[str, str],
    sliced: str = "slice",
) -> Iterator[Item]:
    """Every single-backend check on every case, dtype and device the backend has; the
    :data:`~.checks.SLICED_CHECKS` on their slice only, unless ``sliced`` is ``all``."""
    chosen = _slice(tuple(cases_module.CASES))
    for name, backend in selection.loaded.items():
        label = (selection.labels[name],)
        present, _ = _devices(backend)
        for device, case, dtype, check in itertools.product(
            present, cases, dtypes, checks.SINGLE_CHECKS
        ):
            in_slice = sliced == "all" or chosen.get(case.name) == dtype
            if check in checks.SLICED_CHECKS and not in_slice:
                continue
            yield _with_xfail(Item(check, (name,), label, case.name, dtype, device), xfails)


def absent_device_items(
    selection: Selection, devices: Sequence[str] = KNOWN_DEVICES
) -> Iterator[Item]:
    """One not-run item per backend and device of ``devices`` it lacks (not one per check)."""
    for name, backend in selection.loaded.items():
        label = selection.labels[name]
        for device in _devices(backend, devices)[1]:
            reason = f"no {device} device for {label} here"
            yield Item("all", (name,), (label,), "all", "all", device, reason)


def pair_items(
    selection: Selection, cases: Sequence[Case], dtypes: Sequence[str], xfails: dict[str, str]
) -> Iterator[Item]:
    """Cross-backend checks on CPU; with fewer than two backends one not-run item each."""
    names = list(selection.loaded)
    if len(names) < 2:
        reason: str | None = (
            f"cross-backend checks need two loaded backends; loaded: {names or 'none'}"
        )
        labels = tuple(selection.labels.values())
        for check in checks.PAIR_CHECKS:
            yield Item(check, tuple(names), labels, "all", "all", PAIR_DEVICE, reason)
        return
    for check in checks.PAIR_CHECKS:
        pairs = (
            itertools.permutations(names, 2)
            if check in checks.ORDERED_PAIR_CHECKS
            else itertools.combinations(names, 2)
        )
        for pair, case, dtype in itertools.product(list(pairs), cases, dtypes):
            if dtype != "float64" and check in checks.FLOAT64_ONLY:
                continue
            labels = tuple(selection.labels[n] for n in pair)
            reason = None
            if not all(PAIR_DEVICE in selection.loaded[n].devices() for n in pair):
                reason = f"cross-backend checks run on {PAIR_DEVICE}, which one of {labels} lacks"
            yield _with_xfail(
                Item(check, pair, labels, case.name, dtype, PAIR_DEVICE, reason), xfails
            )


Kind = Literal["single", "pair"]


def items(
    selection: Selection,
    cases: Sequence[Case],
    dtypes: str | None,
    xfails: dict[str, str],
    devices: Sequence[str] | None = None,
    check_names: Sequence[str] | None = None,
    kinds: Sequence[Kind] = ("single", "pair"),
    sliced: str | None = None,
) -> list[Item]:
    """Everything a run asks for, in order: the single-backend checks case by case, one
    not-run item per device a backend lacks, then the cross-backend checks (one not-run each
    with fewer than two backends). ``dtypes`` as :func:`case_dtypes` reads it; ``devices``
    and ``check_names`` filter (an absent device's item is kept for every check); ``sliced``
    as :func:`sliced_scope` reads it."""
    planned, scope = case_dtypes(cases, dtypes), sliced_scope(sliced)
    chosen: list[Item] = []
    if "single" in kinds:
        chosen += [
            i for case, d in planned for i in single_items(selection, [case], d, xfails, scope)
        ]
        chosen += absent_device_items(selection, devices or KNOWN_DEVICES)
    if "pair" in kinds:
        if len(selection.loaded) < 2:
            chosen += pair_items(selection, [], DTYPES, xfails)
        else:
            chosen += [i for case, d in planned for i in pair_items(selection, [case], d, xfails)]
    if devices:
        chosen = [i for i in chosen if i.device in devices]
    if check_names:
        chosen = [i for i in chosen if i.check in check_names or i.check == "all"]
    return chosen


Status = Literal["passed", "failed", "not run", "xfailed"]


@dataclasses.dataclass(frozen=True)
class Outcome:
    item: Item
    status: Status
    deviation: float | None
    message: str = ""


def execute(item: Item) -> float | None:
    """Run the item's check; raises :class:`~.checks.CheckFailed` or :class:`~.checks.NotRun`."""
    subjects = [checks.subject(b, item.case, item.dtype, item.device) for b in item.backends]
    if item.is_pair:
        return checks.PAIR_CHECKS[item.check](*subjects)
    return checks.SINGLE_CHECKS[item.check](*subjects)


def run_item(item: Item) -> Outcome:
    """Run one item and classify it (a strict xfail that passes is a failure)."""
    if item.not_run:
        return Outcome(item, "not run", None, item.not_run)
    try:
        deviation = execute(item)
    except checks.NotRun as exc:
        return Outcome(item, "not run", None, str(exc))
    except Exception as exc:  # a crash fails the check as a wrong value does
        status: Status = "xfailed" if item.xfail else "failed"
        if isinstance(exc, checks.CheckFailed):
            return Outcome(item, status, exc.deviation, str(exc))
        summary = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return Outcome(item, status, None, summary)
    if item.xfail:
        return Outcome(item, "failed", deviation, f"passed but listed as xfail: {item.xfail}")
    return Outcome(item, "passed", deviation)

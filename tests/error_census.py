"""The census of issue 11: every kind of bad input and fault, tried as a user would, in the
core (files, specs) and in every installed backend (calls, parameters, numbers).

Each try ends as one of
- ``clear``: a :class:`flowcore.FlowError` whose message names the culprit;
- ``documented``: no error, and the result the guide documents (a cast, NaN carried);
- ``unclear``: any other exception, a FlowError not naming the culprit, or a silent result.

Run ``python tests/error_census.py`` (prints one line per try, then the counts); the tests
of each kind live in ``test_file_integrity``, ``test_call_errors``, ``test_spec_errors``,
``test_params`` and ``test_nonfinite``.
"""

from __future__ import annotations

import collections
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import flowcore as fc
from flowcore.io import write
from flowcore.serialize import spec_from_config

Outcome = tuple[str, str]  # (status, what happened)


def _text(err: BaseException) -> str:
    """The message on one line, without Keras' call-context wrapping and colours."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    text = " ".join(line for line in lines if "Exception encountered" not in line)
    return text.replace("\x1b[1m", "").replace("\x1b[0m", "")[:100]


def _raises(culprit: str, action: Callable[[], Any]) -> Outcome:
    try:
        action()
    except fc.FlowError as err:
        if culprit.lower() in str(err).lower():
            return "clear", f"{type(err).__name__}: {_text(err)}"
        return "unclear", f"{type(err).__name__} not naming {culprit!r}: {_text(err)}"
    except Exception as err:  # noqa: BLE001  (the census records every other error)
        return "unclear", f"{type(err).__name__}: {_text(err)}"
    return "unclear", "no error"


def _documented(check: Callable[[], bool], what: str) -> Outcome:
    try:
        ok = check()
    except Exception as err:  # noqa: BLE001
        return "unclear", f"{type(err).__name__}: {_text(err)}"
    return ("documented", what) if ok else ("unclear", f"not {what}")


# -- files --------------------------------------------------------------------------------


def _spec() -> fc.SequenceINN:
    return fc.SequenceINN(
        fc.ActNorm(), fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,))), fc.PermuteRandom()
    )


def _good(folder: Path) -> Path:
    path = folder / "flow.fc"
    tree = fc.build_tree(_spec(), [(3,)])
    params = {
        k: v.astype("float32") if v.dtype.kind == "f" else v
        for k, v in fc.initial_params(tree, 0).items()
    }
    write(path, _spec(), [(3,)], [], "float32", params)
    return path


def _load(path: Path) -> Any:
    return fc.load(path, backend=_any_backend())


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def _file_faults() -> dict[str, Callable[[Path], Outcome]]:
    def damaged(change: Callable[[Path], None]) -> Callable[[Path], Outcome]:
        def run(folder: Path) -> Outcome:
            path = _good(folder)
            change(path)
            return _raises(str(path), lambda: _load(path))

        return run

    def header_digit(path: Path) -> None:
        data = path.read_bytes()
        at = data.index(b'hidden\\": [8]') + len('hidden\\": [')
        path.write_bytes(data[:at] + b"9" + data[at + 1 :])

    def not_a_transform(folder: Path) -> Outcome:
        path = folder / "subnet.fc"
        try:
            write(path, fc.MLP(hidden=(4,)), [(3,)], [], "float32", {})
        except fc.FlowError as err:
            return "clear", f"refused on save: {err}"[:100]
        return _raises(str(path), lambda: _load(path))

    def stored_as(dtype: str) -> Callable[[Path], Outcome]:
        def run(folder: Path) -> Outcome:
            path = folder / "f.fc"
            tree = fc.build_tree(_spec(), [(3,)])
            params = {
                k: v.astype(dtype) if v.dtype.kind == "f" else v
                for k, v in fc.initial_params(tree, 0).items()
            }
            try:
                write(path, _spec(), [(3,)], [], "float32", params)
            except fc.FlowError as err:
                return "clear", f"refused on save: {err}"[:100]
            return _raises(str(path), lambda: _load(path))

        return run

    def interrupted_save(folder: Path) -> Outcome:
        path = _good(folder)
        before = path.read_bytes()
        replace = os.replace

        def fail(*args: Any) -> None:
            raise KeyboardInterrupt

        os.replace = fail  # type: ignore[assignment]
        try:
            fc.save(fc.build(_spec(), (3,), backend=_any_backend(), seed=1), path)
        except KeyboardInterrupt:
            pass
        finally:
            os.replace = replace
        whole = path.read_bytes() == before and os.listdir(folder) == ["flow.fc"]
        return ("documented", "old file whole, no temporary") if whole else ("unclear", "torn")

    return {
        "a bit flipped in a weight": damaged(lambda p: _flip_byte(p, p.stat().st_size - 3)),
        "a digit changed in the spec": damaged(header_digit),
        "a truncated file": damaged(lambda p: p.write_bytes(p.read_bytes()[:100])),
        "an empty file": damaged(lambda p: p.write_bytes(b"")),
        "a garbage file": damaged(lambda p: p.write_bytes(os.urandom(500))),
        "a directory as the path": lambda folder: _raises(str(folder), lambda: _load(folder)),
        "a missing file": lambda folder: _raises(
            "no such file", lambda: _load(folder / "none.fc")
        ),
        "a top-level spec that is not a transform": not_a_transform,
        "weights stored as float16": stored_as("float16"),
        "weights stored as int8": stored_as("int8"),
        "a save interrupted over an old file": interrupted_save,
    }


# -- specs --------------------------------------------------------------------------------


SPEC_FAULTS: dict[str, tuple[str, Callable[[], Any]]] = {
    "a clamp given as a string": (
        "affine_clamping",
        lambda: fc.AllInOneBlock(subnet=fc.MLP(), affine_clamping="2"),
    ),
    "MLP(hidden=(-4,))": ("hidden", lambda: fc.MLP(hidden=(-4,))),
    "MLP(hidden=(0,))": ("hidden", lambda: fc.MLP(hidden=(0,))),
    "a fractional Householder count": (
        "learned_householder_permutation",
        lambda: fc.AllInOneBlock(subnet=fc.MLP(), learned_householder_permutation=1.5),
    ),
    "cond_shapes=[3]": (
        "condition",
        lambda: fc.build_tree(fc.AllInOneBlock(subnet=fc.MLP()), [(4,)], [3]),
    ),
    "cond_shapes=[(-3,)]": (
        "condition",
        lambda: fc.build_tree(fc.AllInOneBlock(subnet=fc.MLP()), [(4,)], [(-3,)]),
    ),
    "a dtype other than float32/64": (
        "dtype",
        lambda: fc.build(
            fc.AllInOneBlock(subnet=fc.MLP()), (4,), backend=_any_backend(), dtype="float16"
        ),
    ),
    "a bad SequenceINN condition index": (
        "condition is an index",
        lambda: fc.SequenceINN(fc.AllInOneBlock(subnet=fc.MLP()), conditions=[-1]),
    ),
    "a malformed spec config": ("spec", lambda: spec_from_config({"class": 3})),
}


def _softplus_init() -> Outcome:
    def exact() -> bool:
        spec = fc.AllInOneBlock(
            subnet=fc.MLP(), global_affine_type="SOFTPLUS", global_affine_init=1000.0
        )
        tree = fc.build_tree(spec, [(4,)])
        _, log_det = fc.Reference(tree, fc.initial_params(tree, 0))([np.zeros((2, 4))])
        return bool(np.allclose(log_det, 4 * np.log(1000.0), rtol=1e-12))

    return _documented(exact, "exact scale 1000")


# -- calls, parameters and numbers, per backend --------------------------------------------


def _any_backend() -> str:
    return fc.installed_backends()[0]


def _flow(name: str, conditioned: bool = True) -> Any:
    spec = fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,), zero_init_last=False))
    return fc.build(spec, (4,), [(2,)] if conditioned else [], backend=name, seed=0)


def _backend_faults(name: str) -> dict[str, Callable[[], Outcome]]:
    impl = fc.get_backend(name)

    def native(a: np.ndarray, dtype: str = "float32") -> Any:
        return impl.to_native(a, dtype, "cpu")

    def numpy(a: Any) -> np.ndarray:
        return impl.to_numpy(a)

    flow = _flow(name)
    x, c = native(np.ones((3, 4))), native(np.ones((3, 2)))

    def cast() -> bool:
        x64 = np.ones((3, 4)) if name == "jax" else native(np.ones((3, 4)), "float64")
        c64 = np.ones((3, 2)) if name == "jax" else native(np.ones((3, 2)), "float64")
        return numpy(flow(x64, c64)[0]).dtype == np.float32

    def nan_carried(value: float) -> Callable[[], bool]:
        def check() -> bool:
            bad = np.random.default_rng(0).standard_normal((3, 4))
            bad[1, 0] = value
            clean = numpy(flow(native(np.where(np.isfinite(bad), bad, 0.0)), c)[0])
            y = numpy(flow(native(bad), c)[0])
            return bool(not np.isfinite(y[1]).all() and np.array_equal(y[[0, 2]], clean[[0, 2]]))

        return check

    def overflow() -> Any:
        spec = fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,)), affine_clamping=100.0)
        model = fc.build(fc.SequenceINN(spec, spec), (4,), backend=name, seed=0)
        params = fc.get_params(model)
        params["1.subnet.1.bias"] = np.full_like(params["1.subnet.1.bias"], 1e4)
        fc.set_params(model, params)
        return model

    def overflow_carried() -> bool:
        return not np.isfinite(numpy(overflow()(native(np.ones((3, 4))))[0])).all()

    def overflow_named() -> None:
        model = overflow()
        with fc.check_finite():
            model(native(np.ones((3, 4))))

    def params_with(key: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[], None]:
        def run() -> None:
            model = fc.build(
                fc.SequenceINN(
                    fc.AdditiveCoupling((4,), (1,), fc.CheckerBoardMask((4,), (1,))),
                    fc.MaskedAutoregressive(fc.MADE(hidden=(8,))),
                    fc.AllInOneBlock(subnet=fc.MLP(hidden=(4,))),
                ),
                (4,),
                backend=name,
                seed=0,
            )
            params = fc.get_params(model)
            fc.set_params(model, {**params, key: change(params[key])})

        return run

    faults: dict[str, Callable[[], Outcome]] = {
        "a batch-1 condition": lambda: _raises(
            "condition 0 has batch size 1", lambda: flow(x, native(np.ones((1, 2))))
        ),
        "another batch mismatch": lambda: _raises(
            "condition 0 has batch size 5", lambda: flow(x, native(np.ones((5, 2))))
        ),
        "float64 input to a float32 model": lambda: _documented(cast, "cast to float32"),
        "a native subnet of the wrong width": lambda: _raises(
            "native subnet", lambda: _wrong_native(name)
        ),
        "a Python list as input": lambda: _raises("list", lambda: flow([[1.0] * 4] * 3, c)),
        "a wrong input shape": lambda: _raises(
            "input 0 should have shape", lambda: flow(native(np.ones((3, 5))), c)
        ),
        "a missing condition": lambda: _raises("condition", lambda: _flow(name)(x)),
        "rev given as a string": lambda: _raises(
            "rev must be a bool", lambda: impl.call(flow, [x], [c], "False", True)
        ),
        "a changed coupling mask": lambda: _raises(
            "'0.mask'", params_with("0.mask", lambda v: 1.0 - v)
        ),
        "changed MADE degrees": lambda: _raises(
            "degrees_1", params_with("1.subnet.degrees_1", lambda v: v[::-1].copy())
        ),
        "a permutation with a duplicate": lambda: _raises(
            "permutation", params_with("2.w_perm", lambda v: np.zeros_like(v))
        ),
        "NaN parameters": lambda: _raises(
            "non-finite", params_with("2.global_scale", lambda v: v + np.nan)
        ),
        "a NaN input": lambda: _documented(nan_carried(np.nan), "carried in its sample only"),
        "an inf input": lambda: _documented(nan_carried(np.inf), "carried in its sample only"),
        "an exp overflow": lambda: _documented(overflow_carried, "inf carried"),
        "an exp overflow under check_finite": lambda: _raises(
            "AllInOneBlock at '1'", overflow_named
        ),
    }
    if name == "torch":
        faults["an input on another device"] = lambda: _raises(
            "are on meta", lambda: flow(x.to("meta"), c.to("meta"))
        )
    return faults


def _wrong_native(name: str) -> Any:
    from test_call_errors import _wrong_width

    flow = fc.build(fc.AllInOneBlock(subnet_constructor=_wrong_width(name)), (4,), backend=name)
    return flow(fc.get_backend(name).to_native(np.ones((3, 4)), "float32", "cpu"))


def census() -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()

    def record(where: str, kind: str, outcome: Outcome) -> None:
        counts[outcome[0]] += 1
        print(f"{outcome[0]:<10} {where:<6} {kind:<40} {outcome[1]}")

    with tempfile.TemporaryDirectory() as folder:
        for kind, run in _file_faults().items():
            sub = Path(folder) / str(len(counts) + sum(counts.values()))
            sub.mkdir()
            record("file", kind, run(sub))
    for kind, (culprit, make) in SPEC_FAULTS.items():
        record("spec", kind, _raises(culprit, make))
    record("spec", "a SOFTPLUS global_affine_init of 1000", _softplus_init())
    for name in fc.installed_backends():
        for kind, run in _backend_faults(name).items():
            record(name, kind, run())
    return counts


if __name__ == "__main__":
    totals = census()
    print(dict(totals), "of", sum(totals.values()), "tries")

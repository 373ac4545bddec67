"""The NaN policy, and ``check_finite``: the opt-in mode that names the block at fault.

Policy (every backend, every transform; checked per transform by the conformance suite's
``nonfinite`` check): a NaN or inf in a sample never raises and never reaches another
sample. That sample's outputs and log-det carry it (at least one of them is non-finite;
it is never replaced by a finite value), every other sample's are as without it. The
batch statistics of data-dependent initialisation (ActNorm) leave such samples out. A
subnet computing batch statistics (``BatchNorm(track_running_stats=False)``) mixes the
batch by design, NaN included.

``with flowcore.check_finite():`` checks, in every block a call runs, the inputs before
the block and its outputs and log-det after, and raises :class:`NonFiniteError` at the
first block whose outputs are non-finite from finite inputs, or at the first call given
non-finite data. It reads the values, so it runs on eager calls only (not under
``jax.jit``, ``tf.function`` or a compiled Keras ``fit``); each check costs a device
synchronisation, so it is a debugging mode, off by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from .errors import FlowError, NonFiniteError
from .spec import Array, Namespace

__all__ = ["check_finite", "checking_finite"]

#: Whether calls are checked: a plain module global (process-wide), which torch.compile
#: traces as a guarded constant (a ContextVar would break its graph).
_checking = False


@contextlib.contextmanager
def check_finite(enabled: bool = True) -> Iterator[None]:
    """Within the block, every flowcore call (in any thread) checks each of its blocks for
    NaN and inf (see the module doc); ``check_finite(False)`` turns the checks off again
    inside."""
    global _checking
    previous, _checking = _checking, bool(enabled)
    try:
        yield
    finally:
        _checking = previous


def checking_finite() -> bool:
    """Whether calls are checked now (:func:`check_finite`)."""
    return _checking


def _value(node_label: str, x: Any) -> int:
    try:
        return int(x)
    except Exception as err:  # a tracer, a symbolic tensor: no value to read
        raise FlowError(
            f"{node_label}: check_finite reads values, so it runs on eager calls only; this "
            "call is traced (jax.jit, tf.function, a compiled Keras fit). Leave check_finite "
            "off here, or run the same call eagerly to find the block"
        ) from err


def bad_samples(xp: Namespace, node_label: str, a: Array) -> tuple[int, int]:
    """``(count, first)``: how many samples of ``a`` hold a NaN or inf, and the first."""
    rows = xp.reshape(a, (a.shape[0], -1))
    # in the array's float dtype: JAX without x64 has no int64 (counts are exact to 2^24)
    bad = 1.0 - xp.astype(xp.all(xp.isfinite(rows), axis=1), rows.dtype)
    count = _value(node_label, xp.sum(bad))
    return count, (_value(node_label, xp.argmax(bad)) if count else -1)


def _raise_first_bad(
    xp: Namespace, label: str, named: Sequence[tuple[str, Array]], message: str
) -> None:
    """Raise :class:`NonFiniteError` for the first of ``named`` holding a NaN or inf, with
    ``message`` formatted with the block's ``label`` (braces in it kept) and the array's
    ``name``, ``count``, ``batch`` and ``first`` sample."""
    message = message.replace("{label}", label.replace("{", "{{").replace("}", "}}"))
    for name, a in named:
        count, first = bad_samples(xp, label, a)
        if count:
            batch = int(a.shape[0])
            raise NonFiniteError(message.format(name=name, count=count, batch=batch, first=first))


def check_inputs(
    xp: Namespace, label: str, way: str, xs: Sequence[Array], cs: Sequence[Array]
) -> None:
    """Raise :class:`NonFiniteError` when an input or (float) condition of a block is not
    finite: the data (or a container's own math) is at fault, not the block."""
    what = "output" if way == "inverse" else "input"
    named = [(f"{what} {i}", x) for i, x in enumerate(xs)]
    named += [(f"condition {i}", c) for i, c in enumerate(cs)]
    _raise_first_bad(xp, label, named, (
        f"check_finite: {{label}} ({way}) was given non-finite values, before it ran: "
        "{name} holds NaN or inf in {count} of {batch} samples (first: sample {first}). "
        "Check the data (and conditions) passed in"
    ))  # fmt: skip


def check_outputs(
    xp: Namespace, label: str, way: str, ys: Sequence[Array], log_det: Array | None
) -> None:
    """Raise :class:`NonFiniteError` when a block made non-finite values from finite ones."""
    named = [(f"output {i}", y) for i, y in enumerate(ys)]
    if log_det is not None:
        named.append(("log_det", log_det))
    _raise_first_bad(xp, label, named, (
        f"check_finite: {{label}} ({way}) produced NaN or inf from finite inputs: its "
        "{name} in {count} of {batch} samples (first: sample {first}). Typical causes: "
        "an exp overflowing (clamp the coupling's scale, lower the learning rate), "
        "inputs far outside the range the flow was trained on, or float32 in a deep "
        "flow (see the guide's Numerics section)"
    ))  # fmt: skip

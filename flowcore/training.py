r"""Maximum-likelihood training, written once: checks, batching, validation, early stopping,
history and progress, around one framework's optimiser step.

Each epoch shuffles the training rows (a NumPy generator from ``seed``), takes a step per
batch on :math:`-\tfrac1B \sum_b \log p(x_b \mid c_b)` (:func:`flowcore.log_prob`, nats per
sample), and, with a validation split, computes the validation rows' mean negative
log-likelihood. With ``patience``, training stops when the validation loss has not improved
by more than ``min_delta`` for ``patience`` epochs, and the best epoch's parameters are
restored. The backends' ``fit`` functions (:func:`flowcore.backends.torch.fit`,
:func:`flowcore.backends.jax.fit`) supply the step; Keras has ``DensityModel.fit``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .adapter import as_list
from .errors import ShapeError
from .options import OptionError
from .tree import Node


@dataclasses.dataclass
class History:
    """What a ``fit`` did: the mean training loss per epoch, the validation loss per epoch
    (empty without validation), the best epoch (by validation loss, else the last) and
    whether early stopping ended it."""

    loss: list[float] = dataclasses.field(default_factory=list)
    val_loss: list[float] = dataclasses.field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False


@dataclasses.dataclass(frozen=True)
class Data:
    """Checked training data: float64 NumPy inputs and conditions with ``n`` rows."""

    xs: list[np.ndarray]
    cs: list[np.ndarray]

    @property
    def n(self) -> int:
        return int(self.xs[0].shape[0])

    def rows(self, index: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return [x[index] for x in self.xs], [c[index] for c in self.cs]


def _numpy(name: str, a: Any) -> np.ndarray:
    try:
        array = np.asarray(a.cpu().detach() if hasattr(a, "detach") else a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"fit: {name} is not an array of numbers ({exc})") from None
    return array


def check_data(tree: Node, x: Any, c: Any = None) -> Data:
    """``x`` and ``c`` against the flow's signature, before any step: their count, shapes
    (batch axis first), rows (at least one, the same in all) and finiteness; each error
    names the argument."""
    sig = tree.signature
    is_array = lambda a: hasattr(a, "shape")  # noqa: E731
    xs = [_numpy(f"x[{i}]", a) for i, a in enumerate(as_list(x, "input", is_array))]
    cs = [_numpy(f"c[{i}]", a) for i, a in enumerate(as_list(c, "condition", is_array))]
    for what, arrays, shapes in (("x", xs, sig.inputs), ("c", cs, sig.conditions)):
        if len(arrays) != len(shapes):
            raise ShapeError(
                f"fit: the flow takes {len(shapes)} array(s) in {what} of shapes "
                f"{list(shapes)}, got {len(arrays)}"
            )
        for i, (a, shape) in enumerate(zip(arrays, shapes, strict=True)):
            if tuple(a.shape[1:]) != tuple(shape):
                raise ShapeError(
                    f"fit: {what}[{i}] has shape {a.shape}, the flow expects (n, *{shape})"
                )
            if not np.isfinite(a).all():
                bad = int(np.count_nonzero(~np.isfinite(a)))
                raise ShapeError(f"fit: {what}[{i}] holds {bad} NaN or infinite value(s)")
    rows = {a.shape[0] for a in (*xs, *cs)}
    if len(rows) != 1:
        raise ShapeError(f"fit: x and c must have the same number of rows, got {sorted(rows)}")
    if rows == {0}:
        raise ShapeError("fit: x has no rows (an empty dataset)")
    return Data(xs, cs)


def split(data: Data, validation_split: float, seed: int) -> tuple[Data, Data | None]:
    """A random ``validation_split`` fraction of the rows held out (at least one row each)."""
    if not (isinstance(validation_split, (int, float)) and 0.0 <= validation_split < 1.0):
        raise OptionError(f"fit: validation_split must be in [0, 1), got {validation_split!r}")
    held = math.ceil(validation_split * data.n) if validation_split > 0 else 0
    if held and held >= data.n:
        raise OptionError(
            f"fit: validation_split={validation_split} leaves no training row of {data.n}"
        )
    order = np.random.default_rng([seed, 1]).permutation(data.n)
    train = Data(*data.rows(order[held:]))
    return train, (Data(*data.rows(order[:held])) if held else None)


def batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Shuffled row indices in batches of ``batch_size`` (the last one smaller)."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise OptionError(f"fit: {name} must be an int >= 1, got {value!r}")
    return int(value)


Step = Callable[[list[np.ndarray], list[np.ndarray]], float]


def run(
    data: Data,
    step: Step,
    evaluate: Step,
    snapshot: Callable[[], Any],
    restore: Callable[[Any], None],
    *,
    epochs: int,
    batch_size: int,
    validation_split: float = 0.0,
    patience: int | None = None,
    min_delta: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> History:
    """The loop: ``step(xs, cs)`` trains on one batch and returns its loss; ``evaluate(xs,
    cs)`` returns a batch's summed negative log-likelihood; ``snapshot()`` / ``restore(s)``
    keep and bring back the best parameters for early stopping."""
    epochs, batch_size = _positive_int("epochs", epochs), _positive_int("batch_size", batch_size)
    if patience is not None:
        patience = _positive_int("patience", patience)
    train, held = split(data, validation_split, seed)
    if patience is not None and held is None:
        raise OptionError("fit: patience needs a validation_split > 0 to watch")
    rng = np.random.default_rng([seed, 2])
    history, best, best_state, waited = History(), math.inf, None, 0
    bar = _progress(epochs * math.ceil(train.n / batch_size), progress)
    try:
        for epoch in range(epochs):
            losses: list[float] = []
            for index in batches(train.n, batch_size, rng):
                losses.append(step(*train.rows(index)))
                bar.update(1)
            history.loss.append(float(np.mean(losses)))
            shown = {"loss": f"{history.loss[-1]:.4f}"}
            if held is not None:
                total = sum(evaluate(*held.rows(i)) for i in batches(held.n, batch_size, rng))
                history.val_loss.append(float(total) / held.n)
                shown["val_loss"] = f"{history.val_loss[-1]:.4f}"
                if history.val_loss[-1] < best - min_delta:
                    best, waited, history.best_epoch = history.val_loss[-1], 0, epoch
                    if patience is not None:
                        best_state = snapshot()
                else:
                    waited += 1
            bar.set_postfix(shown)
            if patience is not None and waited >= patience:
                history.stopped_early = True
                break
    finally:
        bar.close()
    if best_state is not None:
        restore(best_state)
    if history.best_epoch is None:
        history.best_epoch = len(history.loss) - 1
    return history


class _Silent:
    def update(self, n: int) -> None: ...

    def set_postfix(self, shown: dict[str, str]) -> None: ...

    def close(self) -> None: ...


def _progress(total: int, shown: bool) -> Any:
    if not shown:
        return _Silent()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="fit")


def check_options(values: Sequence[tuple[str, Any]]) -> None:
    """Numbers that must be finite and > 0 (a learning rate), by name."""
    for name, value in values:
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise OptionError(f"fit: {name} must be a finite number > 0, got {value!r}")


__all__ = ["Data", "History", "batches", "check_data", "check_options", "run", "split"]

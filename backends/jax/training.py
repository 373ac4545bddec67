"""Maximum-likelihood ``fit`` for a Flax NNX flow, with an optax optimiser."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from flax import nnx

from flowcore.api import tree_of
from flowcore.density import log_prob, model_dtype
from flowcore.training import History, check_data, check_options, run

from .dtypes import jax_dtype

if TYPE_CHECKING:
    import optax


def fit(
    flow: nnx.Module,
    x: Any,
    c: Any = None,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 1e-3,
    validation_split: float = 0.0,
    patience: int | None = None,
    min_delta: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> History:
    """Train ``flow`` in place by maximum likelihood; returns the :class:`History`.

    Each step, under ``nnx.jit``, minimises ``-fc.log_prob(flow, x, c).mean()`` over a batch
    with ``optimizer`` (an optax transformation, default ``optax.adam(learning_rate)``) on the
    flow's ``nnx.Param`` s; state a call writes (ActNorm's initialisation) is kept. ``x`` and
    ``c`` are NumPy or JAX arrays (a list for several). Validation, early stopping
    (``patience``, restoring the best parameters) and the progress bar are
    :func:`flowcore.training.run`'s. Bad data (wrong shapes, no rows, NaN) is refused before
    any step.
    """
    import optax  # Flax's dependency, imported only to train

    data = check_data(tree_of(flow), x, c)
    check_options([("learning_rate", learning_rate)])
    dtype = jax_dtype(model_dtype(flow))
    trainer = nnx.Optimizer(flow, optimizer or optax.adam(learning_rate), wrt=nnx.Param)

    def loss(model: nnx.Module, xs: list[jax.Array], cs: list[jax.Array]) -> jax.Array:
        return -log_prob(model, xs, cs).mean()

    @nnx.jit
    def train_step(model: nnx.Module, opt: nnx.Optimizer, xs: Any, cs: Any) -> jax.Array:
        value, grads = nnx.value_and_grad(loss)(model, xs, cs)
        opt.update(model, grads)
        return value

    @nnx.jit
    def summed(model: nnx.Module, xs: Any, cs: Any) -> jax.Array:
        return -log_prob(model, xs, cs).sum()

    def native(arrays: list[np.ndarray]) -> list[jax.Array]:
        return [jax.numpy.asarray(a, dtype) for a in arrays]

    def step(xs: list[np.ndarray], cs: list[np.ndarray]) -> float:
        return float(train_step(flow, trainer, native(xs), native(cs)))

    def evaluate(xs: list[np.ndarray], cs: list[np.ndarray]) -> float:
        return float(summed(flow, native(xs), native(cs)))

    return run(
        data, step, evaluate,
        lambda: nnx.state(flow),
        lambda state: nnx.update(flow, state),
        epochs=epochs, batch_size=batch_size, validation_split=validation_split,
        patience=patience, min_delta=min_delta, seed=seed, progress=progress,
    )  # fmt: skip

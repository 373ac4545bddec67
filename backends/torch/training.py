"""Maximum-likelihood ``fit`` for a torch flow, with a ``torch.optim`` optimiser."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from flowcore.api import tree_of
from flowcore.density import log_prob
from flowcore.training import History, check_data, check_options, run


def fit(
    flow: torch.nn.Module,
    x: Any,
    c: Any = None,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    optimizer: torch.optim.Optimizer | None = None,
    learning_rate: float = 1e-3,
    validation_split: float = 0.0,
    patience: int | None = None,
    min_delta: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> History:
    """Train ``flow`` in place by maximum likelihood; returns the :class:`History`.

    Each step minimises ``-fc.log_prob(flow, x, c).mean()`` over a batch with ``optimizer``
    (default ``torch.optim.Adam(flow.parameters(), lr=learning_rate)``). ``x`` and ``c``
    are NumPy arrays or tensors (a list for several); batches are moved to the flow's
    device and dtype. Validation, early stopping (``patience``, restoring the best
    parameters) and the progress bar are :func:`flowcore.training.run`'s. Bad data (wrong
    shapes, no rows, NaN) is refused before any step.
    """
    data = check_data(tree_of(flow), x, c)
    check_options([("learning_rate", learning_rate)])
    first = next(iter(flow.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None else torch.float32
    optimizer = optimizer or torch.optim.Adam(flow.parameters(), lr=learning_rate)

    def native(arrays: list[np.ndarray]) -> list[torch.Tensor]:
        return [torch.as_tensor(a, dtype=dtype, device=device) for a in arrays]

    def step(xs: list[np.ndarray], cs: list[np.ndarray]) -> float:
        flow.train()
        loss = -log_prob(flow, native(xs), native(cs)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def evaluate(xs: list[np.ndarray], cs: list[np.ndarray]) -> float:
        flow.eval()
        with torch.no_grad():
            return float(-log_prob(flow, native(xs), native(cs)).sum())

    return run(
        data, step, evaluate,
        lambda: copy.deepcopy(flow.state_dict()),
        flow.load_state_dict,
        epochs=epochs, batch_size=batch_size, validation_split=validation_split,
        patience=patience, min_delta=min_delta, seed=seed, progress=progress,
    )  # fmt: skip

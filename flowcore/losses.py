r"""gyoza's disentangling loss, written once against the array namespace.

:class:`SupervisedFactorLoss` is the loss of Esser, Rombach & Ommer's disentangling flows as
gyoza 0.3.0 computes it, and :func:`disentangling_loss` runs a flow on a pair batch and
applies it; both work with any backend's arrays (torch, JAX, Keras tensors). The Keras
``compile``/``fit`` form is ``flowcore.backends.keras.DisentanglingFlowModel``.

References:
    Esser, P., Rombach, R. & Ommer, B. (2020). "A Disentangling Invertible Interpretation
    Network for Explaining Latent Representations". CVPR 2020, arXiv:2004.13166.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import ArgumentError, ShapeError
from .options import OptionError

Array = Any
Namespace = Any

#: gyoza's clip of the per-dimension correlation to ``[-1 + EPS, 1 - EPS]``.
EPS = 1e-6


def _shape(x: Array) -> tuple[int | None, ...]:
    """The static shape of ``x``, ``None`` for a size a trace does not know."""
    return tuple(None if d is None else int(d) for d in x.shape)


def _same(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


class SupervisedFactorLoss:
    r"""The supervised factor loss of disentangling flows, exactly as gyoza computes it.

    The latent :math:`\tilde z \in \mathbb{R}^D` is cut into factors of
    ``dimensions_per_factor`` consecutive dimensions (factor 0 is the residual, by gyoza's
    convention), with block masks :math:`M \in \{0, 1\}^{F \times D}`. A pair
    :math:`(\tilde z^a, \tilde z^b) = (T(z^a), T(z^b))` with log-dets :math:`j_a, j_b` and
    per-factor correlations :math:`y \in [-1, 1]^F` costs

    .. math::
        \rho = \operatorname{clip}(y M, -1 + 10^{-6}, 1 - 10^{-6}) \in \mathbb{R}^D

        \ell = \tfrac12 \lVert \tilde z^a \rVert^2
             + \tfrac12 \sum_{d=1}^{D} \Big[ \frac{(\tilde z^b_d - \rho_d \tilde z^a_d)^2}
               {1 - \rho_d^2} + \log(1 - \rho_d^2) \Big] - (j_a + j_b),

    the negative log-likelihood (up to the constant :math:`D \log 2\pi`) of the pair under a
    standard normal :math:`\tilde z^a` and :math:`\tilde z^b \mid \tilde z^a \sim
    \mathcal{N}(\rho \tilde z^a, 1 - \rho^2)`; the loss is the batch mean of :math:`\ell`.
    The clip keeps :math:`y = \pm 1` finite (a variance of about :math:`2 \cdot 10^{-6}`).
    This is gyoza 0.3.0's code; its docstring's formula differs from it.

    ``loss(xp, z_a, z_b, j_a, j_b, y_true)`` returns the mean (a 0-d array of ``z_a``'s
    dtype), :meth:`per_pair` the :math:`\ell` of each pair, shape ``(batch,)``. ``z_a`` and
    ``z_b`` have shape ``(batch, D)``, ``j_a`` and ``j_b`` ``(batch,)``, ``y_true``
    ``(batch, F)``, cast to ``z_a``'s dtype. :math:`yM` is computed as gyoza does, each
    factor's :math:`y` times ones over its block, so :math:`\rho` is exact.

    References:
        Esser, P., Rombach, R. & Ommer, B. (2020). "A Disentangling Invertible
        Interpretation Network for Explaining Latent Representations". CVPR 2020,
        arXiv:2004.13166.
    """

    def __init__(self, dimensions_per_factor: Sequence[int]) -> None:
        try:
            dims = tuple(int(d) for d in dimensions_per_factor)
            exact = all(int(d) == d for d in dimensions_per_factor)
        except (TypeError, ValueError):
            raise OptionError(
                "SupervisedFactorLoss: dimensions_per_factor must be a sequence of positive "
                f"ints, got {dimensions_per_factor!r}"
            ) from None
        if not dims or not exact or any(d < 1 for d in dims):
            raise OptionError(
                "SupervisedFactorLoss: dimensions_per_factor must be a non-empty sequence of "
                f"positive ints, got {dimensions_per_factor!r}"
            )
        self.dimensions_per_factor: tuple[int, ...] = dims

    def __repr__(self) -> str:
        return f"SupervisedFactorLoss({list(self.dimensions_per_factor)})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SupervisedFactorLoss)
            and self.dimensions_per_factor == other.dimensions_per_factor
        )

    def __hash__(self) -> int:
        return hash(self.dimensions_per_factor)

    @property
    def dimension(self) -> int:
        """:math:`D`, the latent dimension: the sum of ``dimensions_per_factor``."""
        return sum(self.dimensions_per_factor)

    @property
    def factor_count(self) -> int:
        """:math:`F`, the number of factors (the residual factor included)."""
        return len(self.dimensions_per_factor)

    @property
    def factor_masks(self) -> np.ndarray:
        """:math:`M`, shape ``(F, D)``: row ``f`` is 1 on factor ``f``'s dimensions."""
        masks = np.zeros((self.factor_count, self.dimension))
        start = 0
        for f, size in enumerate(self.dimensions_per_factor):
            masks[f, start : start + size] = 1.0
            start += size
        return masks

    def check(self, z_a: Array, z_b: Array, j_a: Array, j_b: Array, y_true: Array) -> None:
        """Raise :class:`flowcore.ShapeError`, naming the values, for inputs of wrong shape."""
        name = "SupervisedFactorLoss"
        sa, sb = _shape(z_a), _shape(z_b)
        if len(sa) != 2:
            raise ShapeError(
                f"{name}: the latent must be 2-D (batch, dimension), got z_a of shape {sa}; "
                "flatten a flow's output (or end the flow with a reshape) first"
            )
        if len(sb) != 2 or not all(_same(a, b) for a, b in zip(sa, sb, strict=True)):
            raise ShapeError(
                f"{name}: the pair halves must have the same shape, got z_a {sa} and z_b {sb}"
            )
        if not _same(sa[1], self.dimension):
            raise ShapeError(
                f"{name}: dimensions_per_factor {list(self.dimensions_per_factor)} sum to "
                f"{self.dimension}, but the latent has {sa[1]} dimensions (z_a of shape {sa})"
            )
        for label, j in (("j_a", j_a), ("j_b", j_b)):
            sj = _shape(j)
            if len(sj) != 1 or not _same(sj[0], sa[0]):
                raise ShapeError(
                    f"{name}: {label} must have shape (batch,) = ({sa[0]},), got {sj}"
                )
        sy = _shape(y_true)
        if len(sy) != 2 or not _same(sy[1], self.factor_count) or not _same(sy[0], sa[0]):
            raise ShapeError(
                f"{name}: y_true must have shape (batch, factors) = ({sa[0]}, "
                f"{self.factor_count}) for dimensions_per_factor "
                f"{list(self.dimensions_per_factor)}, got {sy}"
            )

    def correlations(self, xp: Namespace, z_a: Array, y_true: Array) -> Array:
        r""":math:`\rho`, shape ``(batch, D)``: ``clip(y_true @ M, -1 + 1e-6, 1 - 1e-6)``."""
        y = xp.astype(y_true, z_a.dtype)
        blocks, start = [], 0
        for f, size in enumerate(self.dimensions_per_factor):
            blocks.append(y[:, f : f + 1] * xp.ones_like(z_a[:, start : start + size]))
            start += size
        rho = xp.concat(blocks, axis=1) if len(blocks) > 1 else blocks[0]
        return xp.clip(rho, -1.0 + EPS, 1.0 - EPS)

    def per_pair(
        self, xp: Namespace, z_a: Array, z_b: Array, j_a: Array, j_b: Array, y_true: Array
    ) -> Array:
        r"""The loss :math:`\ell` of each pair, shape ``(batch,)``."""
        self.check(z_a, z_b, j_a, j_b, y_true)
        rho = self.correlations(xp, z_a, y_true)
        var = 1.0 - rho * rho
        diff = z_b - rho * z_a
        term_1 = 0.5 * xp.sum(z_a * z_a, axis=1)
        term_2 = 0.5 * xp.sum(diff * diff / var + xp.log(var), axis=1)
        return term_1 + term_2 - (j_a + j_b)

    def __call__(
        self, xp: Namespace, z_a: Array, z_b: Array, j_a: Array, j_b: Array, y_true: Array
    ) -> Array:
        """The batch mean of :meth:`per_pair`: gyoza's loss value."""
        return xp.mean(self.per_pair(xp, z_a, z_b, j_a, j_b, y_true))


def check_pair(label: str, pair: Any) -> tuple[Array, Array]:
    """``pair`` as ``(z_a, z_b)``: two arrays of the same shape, else a ShapeError naming it."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ShapeError(
            f"{label}: pair data must be a tuple (z_a, z_b) of two batches, got "
            f"{type(pair).__name__}"
            + (f" of {len(pair)}" if isinstance(pair, (tuple, list)) else "")
        )
    z_a, z_b = pair
    sa, sb = _shape(z_a), _shape(z_b)
    if len(sa) != len(sb) or not all(_same(a, b) for a, b in zip(sa, sb, strict=True)):
        raise ShapeError(
            f"{label}: the pair halves must have the same shape, got z_a {sa} and z_b {sb}"
        )
    return z_a, z_b


def _namespace(x: Array) -> Namespace:
    try:
        import array_api_compat

        return array_api_compat.array_namespace(x)
    except (ImportError, TypeError):
        raise ArgumentError(
            f"disentangling_loss: no array namespace for a {type(x).__name__}; pass xp= (for "
            "Keras tensors flowcore.backends.keras.namespace.XP, or use "
            "flowcore.backends.keras.DisentanglingFlowModel)"
        ) from None


def disentangling_loss(
    model: Callable[[Array], tuple[Array, Array]],
    pair: tuple[Array, Array],
    y_true: Array,
    dimensions_per_factor: Sequence[int] | SupervisedFactorLoss,
    xp: Namespace | None = None,
) -> Array:
    r"""gyoza's ``DisentanglingFlowModel`` training loss, for a plain training loop.

    Runs ``model`` on both halves of ``pair = (z_a, z_b)``, as gyoza's ``train_step`` does
    (``z̃_a, j_a = model(z_a)``, ``z̃_b, j_b = model(z_b)``), and returns the
    :class:`SupervisedFactorLoss` of the outputs with the correlations ``y_true``
    ``(batch, F)``: a 0-d array to differentiate. ``model`` is anything called as
    ``model(x) -> (z, log_det)``: a torch module, a Flax NNX module, a Keras layer, or a
    closure over the JAX functional form (``lambda x: apply(params, x)``). The flow's output
    must be 2-D ``(batch, D)``. ``xp`` defaults to the outputs' array-api-compat namespace.
    """
    loss = (
        dimensions_per_factor
        if isinstance(dimensions_per_factor, SupervisedFactorLoss)
        else SupervisedFactorLoss(dimensions_per_factor)
    )
    z_a, z_b = check_pair("disentangling_loss", pair)
    out_a, j_a = model(z_a)
    out_b, j_b = model(z_b)
    return loss(xp if xp is not None else _namespace(out_a), out_a, out_b, j_a, j_b, y_true)


__all__ = ["SupervisedFactorLoss", "check_pair", "disentangling_loss"]

"""Conformance cases of flowcore.transforms.gyoza: gyoza's layers on channels-last inputs.

Each layer runs on an input ``(3, 4, 2)`` (batch excluded) acting on contiguous axes
``(2, 3)`` and on non-contiguous axes ``(1, 3)`` (gyoza counts the batch as axis 0), the
couplings with both masks, plus gyoza's tutorial model on 2-D vectors. The data-initialised
ActivationNormalization is marked initialised by ``prepare`` (as ActNorm's cases are); its
initialisation is tested in ``tests/test_gyoza_layers.py``. ``Reflection(normalize=False)``
(what gyoza imports use) runs on rows renormalised after the perturbation, as gyoza keeps
them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

import flowcore as fc
from flowcore.layers import Linear, ReLU, Sequential
from flowcore.spec import Shape, Transform
from flowcore.transforms.gyoza import (
    ActivationNormalization,
    AdditiveCoupling,
    AffineCoupling,
    CheckerBoardMask,
    CheckerBoardPermutation,
    HeavisideMask,
    HeavisidePermutation,
    Reflection,
    ShufflePermutation,
)

from . import Case, register
from .normalization import initialised

#: The image-like input and its two selections: (shape, axes) and a name.
INPUT: Shape = (3, 4, 2)
SELECTIONS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "contiguous": ((4, 2), (2, 3)),
    "noncontiguous": ((3, 2), (1, 3)),
}


def _net() -> Sequential:
    return Sequential(layers=(Linear(8), ReLU(), Linear()))


def _case(name: str, make: Callable[[], Transform], shape: Shape = INPUT, **kw: object) -> None:
    register(Case(f"gyoza_{name}", make, (shape,), **kw))  # type: ignore[arg-type]


def unit_normals(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every Reflection's perturbed rows scaled back to norm 1, as gyoza's ``UnitNorm``
    keeps them: only then is ``Reflection(normalize=False)`` a reflection."""
    return {
        k: v / np.linalg.norm(v, axis=1, keepdims=True) if k.rsplit(".", 1)[-1] == "normals" else v
        for k, v in params.items()
    }


for where, (shape, axes) in SELECTIONS.items():
    _case(f"actnorm_{where}", partial(ActivationNormalization, shape, axes))
    _case(
        f"actnorm_data_init_{where}",
        partial(ActivationNormalization, shape, axes, data_init=True),
        prepare=initialised,
    )
    _case(f"reflection_{where}", partial(Reflection, shape, axes, reflection_count=3))
    _case(
        f"reflection_as_stored_{where}",
        partial(Reflection, shape, axes, reflection_count=3, normalize=False),
        prepare=unit_normals,
    )
    _case(f"shuffle_{where}", partial(ShufflePermutation, shape, axes))
    _case(f"heaviside_perm_{where}", partial(HeavisidePermutation, shape, axes))
    _case(f"checkerboard_perm_{where}", partial(CheckerBoardPermutation, shape, axes))
    for mask_name, mask in (("checkerboard", CheckerBoardMask), ("heaviside", HeavisideMask)):
        for kind, coupling in (("additive", AdditiveCoupling), ("affine", AffineCoupling)):
            _case(
                f"{kind}_{mask_name}_{where}",
                partial(coupling, shape, axes, mask(shape, axes), _net()),
            )

# one axis of a 1-D selection inside an image, the default (gyoza tutorial) subnet
_case(
    "additive_default_subnet_axis",
    lambda: AdditiveCoupling((4,), (2,), CheckerBoardMask((4,), (2,))),
)
_case(
    "affine_unclamped_axis",
    lambda: AffineCoupling((3,), (1,), HeavisideMask((3,), (1,)), _net(), clamp=None),
)


def _tutorial() -> Transform:
    """gyoza's tutorial model on 2-D vectors (one of its two blocks)."""
    shape, axes = (2,), (1,)
    mask = CheckerBoardMask(shape, axes)
    return fc.SequenceINN(
        ActivationNormalization(shape, axes),
        Reflection(shape, axes, reflection_count=2),
        AdditiveCoupling(shape, axes, mask),
        CheckerBoardPermutation(shape, axes),
        AdditiveCoupling(shape, axes, mask),
        CheckerBoardPermutation(shape, axes),
        ActivationNormalization(shape, axes),
    )


_case("tutorial_sequence_vec", _tutorial, (2,))

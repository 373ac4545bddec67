"""Conformance cases of flowcore.transforms.permutations: vectors and images, fixed and
learned channel maps, the conditional Householder form, and a Glow-style sequence.

Fixed matrices are drawn here from their own seeds (well conditioned: a Gaussian matrix
plus twice the identity), so each spec is the same on every call of ``make``.
OrthogonalTransform's inverse is the transpose of its (trainable, hence perturbed) weight,
so its case re-orthogonalises the perturbed weight in ``prepare``, as training does with
:func:`~flowcore.transforms.permutations.orthogonal_correction`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import flowcore as fc
from flowcore.spec import Shape, Transform
from flowcore.transforms.permutations import (
    Fixed1x1Conv,
    FixedLinearTransform,
    HouseholderPerm,
    InvertibleConv1x1,
    InvertibleLinear,
    OrthogonalTransform,
    PermuteRandom,
    orthogonal_correction,
)

from . import Case, conv, register


def _matrix(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 7])
    return rng.standard_normal((size, size)) + 2.0 * np.eye(size)


def orthogonalised(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every OrthogonalTransform ``weights`` (names ``weights`` or ``*.weights``) projected
    back to an orthogonal matrix."""
    return {
        k: orthogonal_correction(v) if k.rsplit(".", 1)[-1] == "weights" else v
        for k, v in params.items()
    }


def _case(
    name: str,
    make: Callable[[], Transform],
    shape: Shape,
    conditions: tuple[Shape, ...] = (),
    prepare: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
) -> Case:
    return register(Case(name, make, (shape,), conditions, prepare=prepare))


_case("permutations_random_vec", lambda: PermuteRandom(), (6,))
_case("permutations_random_img_seeded", lambda: PermuteRandom(seed=3), (4, 3, 5))
_case(
    "permutations_fixed_linear_vec",
    lambda: FixedLinearTransform(_matrix(5, 0), b=np.linspace(-1.0, 1.0, 5)),
    (5,),
)
_case("permutations_fixed_linear_vec_no_bias", lambda: FixedLinearTransform(_matrix(3, 1)), (3,))
_case("permutations_fixed_1x1conv_img", lambda: Fixed1x1Conv(_matrix(3, 2)), (3, 4, 5))
_case("permutations_householder_vec", lambda: HouseholderPerm(3), (6,))
_case("permutations_householder_img_fixed", lambda: HouseholderPerm(2, fixed=True), (3, 4, 4))
# conditional: the C * K = 5 * 2 reflection entries come from the condition
_case("permutations_householder_vec_cond", lambda: HouseholderPerm(2), (5,), ((10,),))
_case(
    "permutations_orthogonal_vec",
    lambda: OrthogonalTransform(clamp=2.0),
    (6,),
    prepare=orthogonalised,
)
_case("permutations_lu_vec", lambda: InvertibleLinear(), (6,))
_case("permutations_lu_img", lambda: InvertibleLinear(), (3, 4, 4))
_case("permutations_lu_conv1x1_img", lambda: InvertibleConv1x1(), (4, 3, 5))
_case(
    "permutations_glow_sequence_img",
    lambda: fc.SequenceINN(
        InvertibleConv1x1(), fc.AllInOneBlock(subnet=conv()), Fixed1x1Conv(_matrix(4, 3))
    ),
    (4, 4, 3),
)

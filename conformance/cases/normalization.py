"""Conformance cases of flowcore.transforms.normalization: ActNorm on vectors and images.

The generic checks call a model many times and compare it with a reference that keeps its
own state, so every data-initialised case is marked initialised by ``prepare``: the checks
then see a fixed affine map with the perturbed ``log_scale`` and ``loc``. The
initialisation itself (and its write-back in each backend) is tested in
``tests/test_actnorm.py``: a case that initialised on its first check would depend on which
check runs first.
"""

from __future__ import annotations

import numpy as np

import flowcore as fc
from flowcore.spec import Shape, Transform
from flowcore.transforms.normalization import ActNorm

from . import Case, conv, mlp, register


def initialised(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every ActNorm flag of a model set to 1 (names ``initialised`` or ``*.initialised``)."""
    return {
        k: np.ones_like(v) if k.rsplit(".", 1)[-1] == "initialised" else v
        for k, v in params.items()
    }


def _actnorm(name: str, shape: Shape, data_init: bool = True) -> Case:
    def make() -> Transform:
        return ActNorm(data_init=data_init)

    return register(Case(name, make, (shape,), prepare=initialised if data_init else None))


_actnorm("actnorm_vec", (5,))
_actnorm("actnorm_vec_no_data_init", (4,), data_init=False)
_actnorm("actnorm_img", (3, 4, 5))
_actnorm("actnorm_img_no_data_init", (2, 3, 3), data_init=False)
_actnorm("actnorm_img_1d", (3, 6))


def _sequence_img() -> Transform:
    return fc.SequenceINN(
        ActNorm(),
        fc.AllInOneBlock(subnet=conv()),
        ActNorm(),
        conditions=[None, 0, None],
    )


def _sequence_vec() -> Transform:
    return fc.SequenceINN(
        fc.AllInOneBlock(subnet=mlp(), permute_soft=True), ActNorm(), conditions=[0, None]
    )


# ActNorm among conditioned blocks: the flags sit under the blocks' paths ("0.initialised")
register(
    Case("actnorm_seq_img_condition", _sequence_img, ((3, 4, 4),), ((2,),), prepare=initialised)
)
register(Case("actnorm_seq_vec_condition", _sequence_vec, ((5,),), ((3,),), prepare=initialised))

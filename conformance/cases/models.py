"""Conformance cases of the models: sequences with conditions, inverses, nested."""

from __future__ import annotations

import flowcore as fc
from flowcore.spec import Transform

from . import Case, conv, mlp, register


def _sequence_vec() -> Transform:
    return fc.SequenceINN(
        fc.AllInOneBlock(subnet=mlp(), affine_clamping=1.2),
        fc.AllInOneBlock(subnet=mlp("tanh"), permute_soft=True, global_affine_type="EXP"),
        fc.AllInOneBlock(subnet=mlp(), learned_householder_permutation=1, soft_clamp="tanh"),
        conditions=[0, None, 1],
    )


def _sequence_img() -> Transform:
    return fc.SequenceINN(
        fc.AllInOneBlock(subnet=conv(), reverse_permutation=True),
        fc.AllInOneBlock(subnet=conv(), permute_soft=True, global_affine_type="SIGMOID"),
        conditions=[0, 0],
    )


def _inverse_vec() -> Transform:
    return fc.Inverse(fc.AllInOneBlock(subnet=mlp(), permute_soft=True, global_affine_init=1.4))


def _inverse_img_sequence_gin() -> Transform:
    return fc.Inverse(
        fc.SequenceINN(
            fc.AllInOneBlock(subnet=conv()),
            fc.AllInOneBlock(subnet=conv(), gin_block=True),
            conditions=[None, 0],
        )
    )


register(Case("sequence_vec_conditions", _sequence_vec, ((6,),), ((3,), (2,))))
register(Case("sequence_img_vector_condition", _sequence_img, ((3, 4, 4),), ((2,),)))
register(Case("inverse_vec_condition", _inverse_vec, ((5,),), ((2,),)))
register(Case("inverse_img_sequence_gin", _inverse_img_sequence_gin, ((3, 4, 4),), ((2, 4, 4),)))

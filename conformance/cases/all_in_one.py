"""Conformance cases of AllInOneBlock: vectors and images, every option, with conditions."""

from __future__ import annotations

import flowcore as fc
from flowcore.spec import Shape, Transform

from . import Case, conv, mlp, register


def _aio(
    name: str,
    subnet: fc.Subnet,
    shape: Shape,
    conditions: tuple[Shape, ...] = (),
    **options: object,
) -> Case:
    def make() -> Transform:
        return fc.AllInOneBlock(subnet=subnet, **options)  # type: ignore[arg-type]

    return register(Case(name, make, (shape,), conditions))


# 1-D features with an MLP; conditions are vectors.
_aio("aio_vec_default", mlp(), (5,))
_aio("aio_vec_clamp_tanh", mlp(), (6,), ((3,),), affine_clamping=0.8, soft_clamp="tanh")
_aio("aio_vec_gin", mlp("tanh"), (5,), ((2,),), gin_block=True)
_aio(
    "aio_vec_sigmoid_soft",
    mlp(),
    (4,),
    global_affine_type="SIGMOID",
    global_affine_init=0.7,
    permute_soft=True,
)
_aio(
    "aio_vec_exp_reverse",
    mlp(),
    (7,),
    ((3,),),
    global_affine_type="EXP",
    global_affine_init=1.3,
    reverse_permutation=True,
)
_aio(
    "aio_vec_softplus_householder_soft",
    mlp("leaky_relu"),
    (6,),
    global_affine_init=0.6,
    permute_soft=True,
    learned_householder_permutation=2,
)
_aio(
    "aio_vec_householder_hard_reverse",
    mlp(),
    (5,),
    ((2,),),
    learned_householder_permutation=3,
    reverse_permutation=True,
)

# (C, H, W) images with a ConvNet; a condition matches the input's pixels, (k, H, W), or is
# a vector (k,) broadcast over them. Odd C and H != W catch split and layout mistakes.
_aio("aio_img_default", conv(), (3, 4, 4))
_aio(
    "aio_img_clamp_tanh",
    conv(),
    (4, 3, 5),
    ((2, 3, 5),),
    affine_clamping=1.5,
    soft_clamp="tanh",
)
_aio("aio_img_gin_vector_condition", conv("leaky_relu"), (3, 4, 4), ((3,),), gin_block=True)
_aio(
    "aio_img_sigmoid_soft_reverse",
    conv(),
    (5, 4, 3),
    ((1, 4, 3),),
    global_affine_type="SIGMOID",
    global_affine_init=2.0,
    permute_soft=True,
    reverse_permutation=True,
)
_aio(
    "aio_img_exp_householder_hard",
    conv("tanh"),
    (3, 4, 4),
    ((2,),),
    global_affine_type="EXP",
    global_affine_init=0.8,
    learned_householder_permutation=2,
)
_aio(
    "aio_img_softplus_householder_soft",
    conv(),
    (4, 4, 4),
    global_affine_init=1.5,
    permute_soft=True,
    learned_householder_permutation=2,
    reverse_permutation=True,
)

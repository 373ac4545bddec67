"""Conformance cases of flowcore.transforms.couplings: every block on vectors and images,
with and without conditions, each clamp activation and both kinds of ``split_len``."""

from __future__ import annotations

from flowcore.layers import BatchNorm, Conv2d, LeakyReLU, Linear, Sequential, Tanh, ZeroPad2d
from flowcore.spec import Shape, Transform
from flowcore.transforms import couplings as cp

from . import Case, conv, mlp, register


def _case(
    name: str,
    block: type[Transform],
    shape: Shape,
    conditions: tuple[Shape, ...] = (),
    **options: object,
) -> Case:
    subnet = mlp() if len(shape) == 1 else conv()

    def make() -> Transform:
        return block(subnet=subnet, **options)  # type: ignore[call-arg]

    return register(Case(f"coupling_{name}", make, (shape,), conditions))


# 1-D features with an MLP; conditions are vectors. Odd C exercises the half-to-even split:
# round(7 * 0.5) = 4, round(5 * 0.3) = 2.
_case("nice_vec", cp.NICECouplingBlock, (5,))
_case("rnvp_vec_cond", cp.RNVPCouplingBlock, (6,), ((3,),), clamp=1.5, clamp_activation="TANH")
_case("glow_vec_cond", cp.GLOWCouplingBlock, (7,), ((2,),))
_case("gin_vec", cp.GINCouplingBlock, (5,), clamp_activation="TANH")
_case("onesided_vec_cond", cp.AffineCouplingOneSided, (5,), ((2,),), split_len=0.3)
_case("cat_vec_cond", cp.ConditionalAffineTransform, (4,), ((3,),), clamp_activation="SIGMOID")

# (C, H, W) images with a ConvNet; a condition matches the input's pixels, (k, H, W), or is a
# vector (k,) broadcast over them. H != W catches layout mistakes.
_case("nice_img_cond", cp.NICECouplingBlock, (3, 4, 4), ((2, 4, 4),))
_case("rnvp_img", cp.RNVPCouplingBlock, (4, 3, 5), clamp_activation="SIGMOID", split_len=1)
_case("glow_img", cp.GLOWCouplingBlock, (3, 4, 4), clamp=1.2)
_case("glow_img_vector_cond", cp.GLOWCouplingBlock, (3, 4, 4), ((2,),), split_len=0.4)
_case("gin_img_cond", cp.GINCouplingBlock, (4, 4, 3), ((1, 4, 3),))
_case("onesided_img", cp.AffineCouplingOneSided, (3, 4, 4), clamp_activation="SIGMOID")
_case("cat_img_cond", cp.ConditionalAffineTransform, (3, 4, 4), ((2, 4, 4),))
_case("cat_img_two_conds", cp.ConditionalAffineTransform, (2, 3, 3), ((3,), (1, 3, 3)), clamp=1.5)

# Subnets as torch's nn.Sequential builds them (flowcore.layers): asymmetric zero padding,
# a rectangular kernel, BatchNorm (eval), a bias-free last layer; and one net per subnet.
_image_net = Sequential(
    layers=(
        ZeroPad2d((1, 1, 2, 0)), Conv2d(6, (3, 3), padding=0), BatchNorm(), LeakyReLU(0.1),
        Conv2d(None, (1, 3), padding=(0, 1), bias=False),
    )
)  # fmt: skip
register(
    Case(
        "coupling_glow_img_sequential",
        lambda: cp.GLOWCouplingBlock(subnet=_image_net, clamp=1.4),
        ((3, 4, 5),),
    )
)
_vector_nets = cp.Subnets(
    names=("subnet_s1", "subnet_t1", "subnet_s2", "subnet_t2"),
    nets=tuple(Sequential(layers=(Linear(h), Tanh(), Linear())) for h in (4, 6, 8, 3)),
)
register(
    Case(
        "coupling_rnvp_vec_subnets",
        lambda: cp.RNVPCouplingBlock(subnet=_vector_nets),
        ((5,),),
        ((2,),),
    )
)

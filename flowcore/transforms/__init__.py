"""Invertible transforms, a module per family."""

from .all_in_one import AllInOneBlock
from .couplings import (
    AffineCouplingOneSided,
    ConditionalAffineTransform,
    GINCouplingBlock,
    GLOWCouplingBlock,
    NICECouplingBlock,
    RNVPCouplingBlock,
)
from .normalization import ActNorm
from .permutations import (
    Fixed1x1Conv,
    FixedLinearTransform,
    HouseholderPerm,
    InvertibleConv1x1,
    InvertibleLinear,
    OrthogonalTransform,
    PermuteRandom,
)

__all__ = [
    "ActNorm", "AffineCouplingOneSided", "AllInOneBlock", "ConditionalAffineTransform",
    "Fixed1x1Conv", "FixedLinearTransform", "GINCouplingBlock", "GLOWCouplingBlock",
    "HouseholderPerm", "InvertibleConv1x1", "InvertibleLinear", "NICECouplingBlock",
    "OrthogonalTransform", "PermuteRandom", "RNVPCouplingBlock",
]  # fmt: skip

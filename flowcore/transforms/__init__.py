"""Invertible transforms, a module per family; ``flowcore`` exports everything listed here."""

from .all_in_one import AllInOneBlock
from .autoregressive import MADE, MaskedAutoregressive
from .couplings import (
    AffineCouplingOneSided,
    ConditionalAffineTransform,
    GINCouplingBlock,
    GLOWCouplingBlock,
    NICECouplingBlock,
    RNVPCouplingBlock,
    Subnets,
)
from .elementwise import (
    InvAutoAct,
    InvAutoActFixed,
    InvAutoActTwoSided,
    InvertibleSigmoid,
    LearnedElementwiseScaling,
    Logit,
)
from .gyoza import (
    ActivationNormalization,
    AdditiveCoupling,
    AffineCoupling,
    CheckerBoardMask,
    CheckerBoardPermutation,
    HeavisideMask,
    HeavisidePermutation,
    Mask,
    Reflection,
    ShufflePermutation,
)
from .mixture import GaussianMixtureModel
from .normalization import ActNorm, actnorm_params_from_freia, actnorm_params_to_freia
from .permutations import (
    Fixed1x1Conv,
    FixedLinearTransform,
    HouseholderPerm,
    InvertibleConv1x1,
    InvertibleLinear,
    OrthogonalTransform,
    PermuteRandom,
    orthogonal_correction,
)
from .reshapes import (
    Concat,
    Flatten,
    HaarDownsampling,
    HaarUpsampling,
    IRevNetDownsampling,
    IRevNetUpsampling,
    Reshape,
    Split,
)
from .residual import IResNetLayer, iresnet_params_from_freia, series_truncation_bound
from .splines import ElementwiseRationalQuadraticSpline, LinearSpline, RationalQuadraticSpline

__all__ = [
    "ActNorm", "AffineCouplingOneSided", "AllInOneBlock", "Concat",
    "ConditionalAffineTransform", "ElementwiseRationalQuadraticSpline", "Fixed1x1Conv",
    "FixedLinearTransform", "Flatten", "GINCouplingBlock", "GLOWCouplingBlock",
    "GaussianMixtureModel",
    "HaarDownsampling", "HaarUpsampling", "HouseholderPerm", "IResNetLayer",
    "IRevNetDownsampling", "IRevNetUpsampling", "InvAutoAct", "InvAutoActFixed",
    "InvAutoActTwoSided", "InvertibleConv1x1", "InvertibleLinear", "InvertibleSigmoid",
    "LearnedElementwiseScaling", "LinearSpline", "Logit", "MADE", "MaskedAutoregressive",
    "NICECouplingBlock", "OrthogonalTransform", "PermuteRandom", "RNVPCouplingBlock",
    "RationalQuadraticSpline", "Reshape", "Split", "Subnets", "actnorm_params_from_freia",
    "actnorm_params_to_freia", "iresnet_params_from_freia", "orthogonal_correction",
    "series_truncation_bound",
    "ActivationNormalization", "AdditiveCoupling", "AffineCoupling", "CheckerBoardMask",
    "CheckerBoardPermutation", "HeavisideMask", "HeavisidePermutation", "Mask", "Reflection",
    "ShufflePermutation",
]  # fmt: skip

"""Conformance cases of flowcore.transforms.elementwise: vectors, images, perturbed slopes.

Every trainable parameter is perturbed by the suite (``Case.params``), so the learned slopes
and scales are not their initial constants. The case data is standard normal: the Logit,
whose input lies in [0, 1], is checked after an InvertibleSigmoid (R -> (0, 1)) and as an
``Inverse`` (whose input is any real number).
"""

from __future__ import annotations

from collections.abc import Callable

import flowcore as fc
from flowcore.spec import Shape, Transform
from flowcore.transforms.elementwise import (
    InvAutoAct,
    InvAutoActFixed,
    InvAutoActTwoSided,
    InvertibleSigmoid,
    LearnedElementwiseScaling,
    Logit,
)

from . import Case, register


def _case(name: str, make: Callable[[], Transform], shape: Shape) -> Case:
    return register(Case(name, make, (shape,)))


_case("elementwise_sigmoid_vec", InvertibleSigmoid, (5,))
_case("elementwise_sigmoid_img", InvertibleSigmoid, (2, 3, 4))
_case("elementwise_scaling_vec", lambda: LearnedElementwiseScaling(init_scale=1.5), (4,))
_case("elementwise_scaling_img", lambda: LearnedElementwiseScaling(init_scale=0.7), (2, 3, 3))
_case("elementwise_invautoact_vec", lambda: InvAutoAct(slope_init=1.5), (5,))
_case("elementwise_invautoact_fixed_vec", lambda: InvAutoActFixed(slope_init=3.0), (4,))
_case("elementwise_invautoact_two_sided_vec", InvAutoActTwoSided, (5,))
_case(
    "elementwise_invautoact_two_sided_img",
    lambda: InvAutoActTwoSided(init_pos=1.5, init_neg=0.8),
    (2, 3, 3),
)
_case(
    "elementwise_logit_after_sigmoid_vec",
    lambda: fc.SequenceINN(InvertibleSigmoid(), Logit(alpha=0.05)),
    (5,),
)
_case("elementwise_logit_inverse_img", lambda: fc.Inverse(Logit(alpha=0.1)), (2, 3, 3))

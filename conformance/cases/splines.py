"""Conformance cases of flowcore.transforms.splines: the rational-quadratic coupling on
vectors (with and without a condition) and images, the linear spline coupling, and the
elementwise rational-quadratic spline with free parameters and conditioned.

The inputs are standard normal, so with the default domain (-3, 3) some fall in the tails;
a narrow domain in two cases puts many there. Inputs exactly on knots and bounds and far
outside the domain are tested in ``tests/test_splines.py`` in every backend.
"""

from __future__ import annotations

import flowcore as fc
from flowcore.spec import Shape, Transform
from flowcore.transforms import splines as sp

from . import Case, mlp, register


def conv() -> fc.ConvNet:
    """A 1x1 tanh ConvNet: a 3x3 one's perturbed outputs reach raw values whose splines
    have slopes near 0, too ill-conditioned for float32's round trip."""
    return fc.ConvNet(hidden=(4,), kernel_size=1, activation="tanh", zero_init_last=False)


def _case(
    name: str,
    block: type[Transform],
    shape: Shape,
    conditions: tuple[Shape, ...] = (),
    subnet: bool = True,
    **options: object,
) -> Case:
    # an MLP for vectors and for the elementwise spline's vector conditions
    vector = len(shape) == 1 or block is sp.ElementwiseRationalQuadraticSpline
    kwargs = {"subnet": mlp() if vector else conv()} if subnet else {}

    def make() -> Transform:
        return block(**kwargs, **options)  # type: ignore[arg-type]

    return register(Case(f"spline_{name}", make, (shape,), conditions))


_case("rqs_vec", sp.RationalQuadraticSpline, (4,), bins=4, identity_tails=True)
_case(
    "rqs_vec_cond",
    sp.RationalQuadraticSpline,
    (5,),
    ((2,),),
    bins=3,
    default_domain=(-1.0, 1.5, -2.0, 1.0),
    min_bin_sizes=(0.05, 0.1),
    domain_clamping=4.0,
)
_case("rqs_img", sp.RationalQuadraticSpline, (3, 4, 3), bins=3)
_case("linear_vec", sp.LinearSpline, (4,), bins=4, default_domain=(-1.0, 1.0, -1.5, 1.5))
_case("elementwise_vec", sp.ElementwiseRationalQuadraticSpline, (4,), subnet=False, bins=4)
_case(
    "elementwise_vec_cond",
    sp.ElementwiseRationalQuadraticSpline,
    (3,),
    ((2,),),
    bins=3,
    identity_tails=True,
    domain_clamping=5.0,
)

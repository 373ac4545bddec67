"""Conformance cases of flowcore.transforms.splines: the rational-quadratic coupling on
vectors (with and without a condition) and images, the linear spline coupling, and the
elementwise rational-quadratic spline with free parameters and conditioned.

The inputs are standard normal, so with the default domain (-3, 3) some fall in the tails;
a narrow domain in two cases puts many there. ``spline_elementwise_vec_knots`` puts inputs
exactly on the knots and bounds and at |x| = 1e4 (its ``prepare`` keeps the x-knots on an
equal grid while the heights and derivatives stay perturbed); ``tests/test_splines.py``
tests such inputs in the couplings and at |x| = 1e30 in every backend.
"""

from __future__ import annotations

import numpy as np

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


#: ElementwiseRationalQuadraticSpline's knots case: K bins on the default domain (-3, 3).
_KNOT_BINS = 4
_KNOTS = tuple(-3.0 + 6.0 * k / _KNOT_BINS for k in range(_KNOT_BINS + 1))


def _equal_x_bins(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw widths and left edges zero: the x-knots at -3 + 6k/K (FrEIA's raw layout per
    channel: K widths, K heights, bottom, left, K - 1 derivatives)."""
    raw = params["spline_parameters"].reshape(-1, 3 * _KNOT_BINS + 1).copy()
    raw[:, :_KNOT_BINS] = 0.0
    raw[:, 2 * _KNOT_BINS + 1] = 0.0
    return {**params, "spline_parameters": raw.reshape(-1)}


register(
    Case(
        "spline_elementwise_vec_knots",
        lambda: sp.ElementwiseRationalQuadraticSpline(bins=_KNOT_BINS),
        ((4,),),
        prepare=_equal_x_bins,
        special_inputs=(*_KNOTS, 1e4, -1e4, 3.0 + 1e-9),
        # the spline is C1 but its log-det only C0 at a knot: moving a knot past an input
        # changes the log-det's slope (one-sided derivatives differ by ~1e-3 here);
        # autodiff takes one side, in every backend alike (gradients_agree checks that)
        not_smooth="inputs on the knots, where the log-det has a kink in the parameters",
    )
)

"""Every tolerance of the conformance suite, per dtype, in one place.

A value passes when ``|got - want| <= atol + rtol * |want|`` elementwise (NumPy's
``allclose``). The cases' outputs are O(1) (standard normal inputs, one to three blocks),
their log-dets up to ~40 (sums over up to 80 elements) and the loss' directional derivatives
up to ~20. "Measured" is the largest deviation torch and JAX showed on CPU
(``flowcore-conformance``); each tolerance keeps a margin of 10-30x over it for other
backends' operation orders while a wrong formula (off by 1e-2 or more) still fails.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float


TOLERANCES: dict[str, dict[str, Tolerance]] = {
    "float64": {
        # Backend vs float64 reference, same parameters: the same operations up to BLAS and
        # convolution summation order, a few ulps (1e-16) per op, amplified by exp and depth
        # to ~1e-14 (measured 4e-15); 1e-10 relative is the promised agreement.
        "reference": Tolerance(rtol=1e-10, atol=1e-10),
        # inverse(forward(x)) - x and forward + inverse log-dets: two passes of the above
        # (measured 7e-15).
        "roundtrip": Tolerance(rtol=1e-10, atol=1e-10),
        # log-det vs slogdet of the autodiff Jacobian (D <= 80): LU loses ~cond * 1e-16 per
        # entry, summed over D logs (measured 3e-14).
        "jacobian": Tolerance(rtol=1e-9, atol=1e-9),
        # Directional derivative of the loss by autodiff vs a central difference of the
        # reference, step 1e-5 along a unit direction: truncation ~1e-10 * L''' plus
        # round-off 1e-16 * |L| / 1e-5 with |L| ~ 1e2 (measured 6e-9).
        "gradients": Tolerance(rtol=1e-7, atol=1e-7),
        # Two backends with the same parameters, each within the reference tolerance
        # (measured 4e-15).
        "port": Tolerance(rtol=1e-10, atol=1e-10),
        # Autodiff gradients of two backends, elementwise; gradients of a batch sum reach
        # O(10) (measured 3e-13).
        "gradients_agree": Tolerance(rtol=1e-9, atol=1e-9),
    },
    "float32": {
        # eps 1.2e-7 through a subnet (sums of ~50 products), tanh, exp(|s| <= 2) and up to
        # three blocks: outputs drift ~1e-6, log-dets sum 80 such terms (measured 4e-6).
        "reference": Tolerance(rtol=1e-4, atol=1e-4),
        "roundtrip": Tolerance(rtol=1e-4, atol=1e-4),  # measured 2e-6
        # slogdet of a float32 Jacobian (entries exact to ~1e-7 relative): ~D * 1e-7 * cond
        # on log-dets up to ~40 (measured 4e-6).
        "jacobian": Tolerance(rtol=2e-5, atol=1e-4),
        # float32 autodiff vs the float64 central difference: the loss sums ~250 float32
        # terms; directional derivatives up to ~20 (measured 2e-5).
        "gradients": Tolerance(rtol=1e-4, atol=1e-4),
        # Two float32 backends, each within the reference tolerance (measured 4e-6).
        "port": Tolerance(rtol=2e-4, atol=2e-4),
    },
}


def tolerance(dtype: str, check: str) -> Tolerance:
    """The tolerance of ``check`` at ``dtype``."""
    return TOLERANCES[dtype][check]

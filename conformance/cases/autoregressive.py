"""Conformance cases of flowcore.transforms.autoregressive: MAF (affine, with and without a
condition, both affine scales), NSF-AR (rational-quadratic) and IAF on small vectors.

Every MADE is tiny (one or two hidden layers of 6 units) with a non-zero last layer, and
the orderings differ between cases (natural, reversed, random from a fixed seed), so the
sequential inverse is checked with more than one ordering. The NSF-AR case uses a tail bound
of 2 so that the standard normal inputs visit both the spline and its identity tails.
"""

from __future__ import annotations

from flowcore.transforms.autoregressive import MADE, MaskedAutoregressive

from . import Case, register

register(
    Case(
        "autoregressive_maf_vec",
        lambda: MaskedAutoregressive(MADE(hidden=(6, 6))),
        ((4,),),
    )
)
register(
    Case(
        "autoregressive_maf_vec_cond",
        lambda: MaskedAutoregressive(
            MADE(hidden=(6,), order="random", seed=3, activation="tanh"),
            affine_scale="exp",
            clamp=2.0,
        ),
        ((5,),),
        ((2,),),
    )
)
register(
    Case(
        "autoregressive_nsf_vec",
        lambda: MaskedAutoregressive(
            MADE(hidden=(6,), order="reversed"),
            transformer="rational_quadratic",
            bins=4,
            tail_bound=2.0,
        ),
        ((4,),),
    )
)
register(
    Case(
        "autoregressive_iaf_vec",
        lambda: MaskedAutoregressive(MADE(hidden=(6,)), inverse_autoregressive=True),
        ((4,),),
    )
)

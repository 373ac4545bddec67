"""Conformance cases of flowcore.transforms.reshapes: i-RevNet and Haar down- and upsampling
in both channel orders (Haar with ``rebalance != 1``, so the log-det is not zero), Flatten,
Reshape, Split (several outputs: a tuple of sizes, an int and ``n_sections``) and Concat
(two inputs). Images C <= 4, H, W = 4. None of these has parameters or takes conditions.
"""

from __future__ import annotations

from flowcore.transforms.reshapes import (
    Concat,
    Flatten,
    HaarDownsampling,
    HaarUpsampling,
    IRevNetDownsampling,
    IRevNetUpsampling,
    Reshape,
    Split,
)

from . import Case, register

register(Case("reshape_irevnet_down_img", lambda: IRevNetDownsampling(), ((3, 4, 4),)))
register(
    Case(
        "reshape_irevnet_down_img_legacy",
        lambda: IRevNetDownsampling(legacy_backend=True),
        ((2, 4, 4),),
    )
)
register(Case("reshape_irevnet_up_img", lambda: IRevNetUpsampling(), ((4, 4, 4),)))
register(
    Case(
        "reshape_irevnet_up_img_legacy",
        lambda: IRevNetUpsampling(legacy_backend=True),
        ((4, 4, 4),),
    )
)
register(Case("reshape_haar_down_img", lambda: HaarDownsampling(rebalance=0.5), ((2, 4, 4),)))
register(
    Case(
        "reshape_haar_down_img_by_wavelet",
        lambda: HaarDownsampling(order_by_wavelet=True, rebalance=1.5),
        ((3, 4, 4),),
    )
)
register(Case("reshape_haar_up_img", lambda: HaarUpsampling(rebalance=0.5), ((4, 4, 4),)))
register(
    Case(
        "reshape_haar_up_img_by_wavelet",
        lambda: HaarUpsampling(order_by_wavelet=True, rebalance=2.0),
        ((4, 4, 4),),
    )
)
register(Case("reshape_flatten_img", lambda: Flatten(), ((2, 4, 4),)))
register(Case("reshape_reshape_img", lambda: Reshape((4, 2, 4)), ((2, 4, 4),)))
register(Case("reshape_split_vec_sizes", lambda: Split(section_sizes=(1, 3, 2)), ((6,),)))
register(Case("reshape_split_img_int", lambda: Split(section_sizes=1, dim=0), ((3, 4, 4),)))
register(Case("reshape_split_img_n_sections_w", lambda: Split(n_sections=2, dim=2), ((2, 4, 4),)))
register(Case("reshape_concat_img", lambda: Concat(), ((1, 4, 4), (3, 4, 4))))
register(Case("reshape_concat_vec", lambda: Concat(), ((2,), (3,))))

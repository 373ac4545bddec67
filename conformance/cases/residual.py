"""Conformance cases of flowcore.transforms.residual: IResNetLayer on small vectors and a
small image (3×3 convolutions).

Only the exact log-det mode: the Hutchinson estimator's random draws cannot match across
backends (``tests/test_residual.py`` tests it). The suite calls a model many times and
compares it with a float64 reference that keeps its own state, so ``prepare`` sets every
power-iteration vector to the top right singular vector of its (perturbed) weight: the
forward's update is then a fixed point and every call normalises the same way. FrEIA's
IResNetLayer takes no condition, so there is no conditioned case.
"""

from __future__ import annotations

import numpy as np

from flowcore.spec import Transform
from flowcore.transforms.residual import IResNetLayer, power_vectors

from . import Case, register


def converged(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every ``vector_i`` (names ``vector_i`` or ``*.vector_i``) set to the top right
    singular vector of the operator of the ``weight_i`` beside it (a convolution's on
    images of the vector's spatial size)."""
    out = dict(params)
    for name, vector in params.items():
        head, _, leaf = name.rpartition(".")
        if leaf.startswith("vector_"):
            weight = (head + "." if head else "") + "weight_" + leaf[len("vector_") :]
            out[name] = power_vectors([params[weight]], vector.shape[1:] or None)[0]
    return out


def _case(name: str, shape: tuple[int, ...], **options: object) -> Case:
    def make() -> Transform:
        return IResNetLayer(log_det_method="exact", **options)  # type: ignore[arg-type]

    return register(Case(name, make, (shape,), prepare=converged))


# q = c^L <= 0.34 and 0.41: 30 fixed-point steps reach 1e-11, the round trip's float64 needs
_case("iresnet_vec", (3,), internal_size=5, spectral_norm_max=0.7, fixed_point_iterations=30)
_case(
    "iresnet_vec_deep",
    (4,),
    internal_size=6,
    n_internal_layers=2,
    lipschitz_iterations=2,
    fixed_point_iterations=30,
)
# 3x3 convolutions on a (2, 2, 3) image, 4 hidden channels (FrEIA's default 2 C): H != W
# catches a transposed spatial axis; D = 12 keeps the exact log-det's static elimination
# loop (and so the suite's compile times) short; q = 0.7^3 = 0.34
_case("iresnet_img", (2, 2, 3), spectral_norm_max=0.7, fixed_point_iterations=30)

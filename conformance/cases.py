"""The conformance cases: a registry of name -> :class:`Case`.

A case is a spec factory with the shapes to bind it to. Its parameters are the seed's initial
ones perturbed (every trainable float parameter gets Gaussian noise), and its subnets keep a
non-zero last layer, so that no check passes because a block is the identity. A transform
contributes its cases here (or with :func:`register` from its own package).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable

import numpy as np

import flowcore as fc
from flowcore.spec import Shape, Transform
from flowcore.subnets import Activation
from flowcore.tree import Node, build_tree, initial_params

#: Standard deviation of the noise added to every trainable float parameter.
PERTURBATION = 0.25


@dataclasses.dataclass(frozen=True)
class Case:
    """A spec factory bound to input and condition shapes (batch axis excluded)."""

    name: str
    make: Callable[[], Transform]
    inputs: tuple[Shape, ...]
    conditions: tuple[Shape, ...] = ()
    batch: int = 3
    seed: int = 0

    def tree(self) -> Node:
        return build_tree(self.make(), self.inputs, self.conditions)

    def params(self, tree: Node) -> dict[str, np.ndarray]:
        """The seed's initial parameters with every trainable float one perturbed."""
        params = initial_params(tree, self.seed)
        rng = np.random.default_rng([self.seed, 1])
        for name, spec in tree.param_specs().items():
            if spec.trainable:
                params[name] = params[name] + PERTURBATION * rng.standard_normal(spec.shape)
        return params

    def data(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Float64 inputs and conditions, standard normal, with the batch axis."""
        rng = np.random.default_rng([self.seed, 2])
        xs = [rng.standard_normal((self.batch, *s)) for s in self.inputs]
        cs = [rng.standard_normal((self.batch, *s)) for s in self.conditions]
        return xs, cs


CASES: dict[str, Case] = {}


def register(case: Case) -> Case:
    """Add a case to the registry (names are unique)."""
    if case.name in CASES:
        raise ValueError(f"conformance case {case.name!r} is registered twice")
    CASES[case.name] = case
    return case


def select(pattern: str | None = None) -> list[Case]:
    """Registered cases whose name contains ``pattern`` (a substring, or a glob with ``*``)."""
    if not pattern:
        return list(CASES.values())
    glob = pattern if "*" in pattern else f"*{pattern}*"
    return [c for c in CASES.values() if fnmatch.fnmatchcase(c.name, glob)]


# -- AllInOneBlock ------------------------------------------------------------------------


def _mlp(activation: Activation = "relu") -> fc.MLP:
    return fc.MLP(hidden=(8,), activation=activation, zero_init_last=False)


def _conv(activation: Activation = "relu") -> fc.ConvNet:
    return fc.ConvNet(hidden=(6,), activation=activation, zero_init_last=False)


def _aio(
    name: str,
    subnet: fc.Subnet,
    shape: Shape,
    conditions: tuple[Shape, ...] = (),
    **options: object,
) -> Case:
    def make() -> Transform:
        return fc.AllInOneBlock(subnet=subnet, **options)  # type: ignore[arg-type]

    return register(Case(name, make, (shape,), conditions))


# 1-D features with an MLP; conditions are vectors.
_aio("aio_vec_default", _mlp(), (5,))
_aio("aio_vec_clamp_tanh", _mlp(), (6,), ((3,),), affine_clamping=0.8, soft_clamp="tanh")
_aio("aio_vec_gin", _mlp("tanh"), (5,), ((2,),), gin_block=True)
_aio(
    "aio_vec_sigmoid_soft",
    _mlp(),
    (4,),
    global_affine_type="SIGMOID",
    global_affine_init=0.7,
    permute_soft=True,
)
_aio(
    "aio_vec_exp_reverse",
    _mlp(),
    (7,),
    ((3,),),
    global_affine_type="EXP",
    global_affine_init=1.3,
    reverse_permutation=True,
)
_aio(
    "aio_vec_softplus_householder_soft",
    _mlp("leaky_relu"),
    (6,),
    global_affine_init=0.6,
    permute_soft=True,
    learned_householder_permutation=2,
)
_aio(
    "aio_vec_householder_hard_reverse",
    _mlp(),
    (5,),
    ((2,),),
    learned_householder_permutation=3,
    reverse_permutation=True,
)

# (C, H, W) images with a ConvNet; a condition matches the input's pixels, (k, H, W), or is
# a vector (k,) broadcast over them. Odd C and H != W catch split and layout mistakes.
_aio("aio_img_default", _conv(), (3, 4, 4))
_aio(
    "aio_img_clamp_tanh",
    _conv(),
    (4, 3, 5),
    ((2, 3, 5),),
    affine_clamping=1.5,
    soft_clamp="tanh",
)
_aio("aio_img_gin_vector_condition", _conv("leaky_relu"), (3, 4, 4), ((3,),), gin_block=True)
_aio(
    "aio_img_sigmoid_soft_reverse",
    _conv(),
    (5, 4, 3),
    ((1, 4, 3),),
    global_affine_type="SIGMOID",
    global_affine_init=2.0,
    permute_soft=True,
    reverse_permutation=True,
)
_aio(
    "aio_img_exp_householder_hard",
    _conv("tanh"),
    (3, 4, 4),
    ((2,),),
    global_affine_type="EXP",
    global_affine_init=0.8,
    learned_householder_permutation=2,
)
_aio(
    "aio_img_softplus_householder_soft",
    _conv(),
    (4, 4, 4),
    global_affine_init=1.5,
    permute_soft=True,
    learned_householder_permutation=2,
    reverse_permutation=True,
)


# -- models -------------------------------------------------------------------------------


def _sequence_vec() -> Transform:
    return fc.SequenceINN(
        fc.AllInOneBlock(subnet=_mlp(), affine_clamping=1.2),
        fc.AllInOneBlock(subnet=_mlp("tanh"), permute_soft=True, global_affine_type="EXP"),
        fc.AllInOneBlock(subnet=_mlp(), learned_householder_permutation=1, soft_clamp="tanh"),
        conditions=[0, None, 1],
    )


def _sequence_img() -> Transform:
    return fc.SequenceINN(
        fc.AllInOneBlock(subnet=_conv(), reverse_permutation=True),
        fc.AllInOneBlock(subnet=_conv(), permute_soft=True, global_affine_type="SIGMOID"),
        conditions=[0, 0],
    )


def _inverse_vec() -> Transform:
    return fc.Inverse(fc.AllInOneBlock(subnet=_mlp(), permute_soft=True, global_affine_init=1.4))


def _inverse_img_sequence_gin() -> Transform:
    return fc.Inverse(
        fc.SequenceINN(
            fc.AllInOneBlock(subnet=_conv()),
            fc.AllInOneBlock(subnet=_conv(), gin_block=True),
            conditions=[None, 0],
        )
    )


register(Case("sequence_vec_conditions", _sequence_vec, ((6,),), ((3,), (2,))))
register(Case("sequence_img_vector_condition", _sequence_img, ((3, 4, 4),), ((2,),)))
register(Case("inverse_vec_condition", _inverse_vec, ((5,),), ((2,),)))
register(Case("inverse_img_sequence_gin", _inverse_img_sequence_gin, ((3, 4, 4),), ((2, 4, 4),)))

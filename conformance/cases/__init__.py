"""The conformance cases: a registry of name -> :class:`Case`, one module per family.

A case is a spec factory with the shapes to bind it to. Its parameters are the seed's initial
ones perturbed (every trainable float parameter gets Gaussian noise), and its subnets keep a
non-zero last layer, so that no check passes because a block is the identity. A family's
transforms contribute their cases in ``cases/<family>.py`` (imported at the end of this
module) or with :func:`register` from a third party's own package; ``tests/
test_conformance_suite.py`` fails when a public transform has no case.
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
    #: Adjusts the perturbed parameters, e.g. to mark a data-initialised layer initialised.
    prepare: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
    #: Values written over the first elements of the first input (in C order): inputs on
    #: a spline's knots and bounds, or far outside its domain.
    special_inputs: tuple[float, ...] = ()
    #: Why the loss is not differentiable in the parameters at these inputs (a spline's
    #: log-det at a knot); the check against central differences is then not run.
    not_smooth: str = ""
    #: ``(position, n)`` pairs: condition ``position`` is an index condition, int64 drawn
    #: uniformly from ``range(n)`` (a mixture's component per sample), not standard normal.
    index_conditions: tuple[tuple[int, int], ...] = ()

    def tree(self) -> Node:
        return build_tree(self.make(), self.inputs, self.conditions)

    def perturbed(self, tree: Node) -> dict[str, np.ndarray]:
        """The seed's initial parameters with every trainable float one perturbed (state
        such as ActNorm's flag as initialised: unset)."""
        params = initial_params(tree, self.seed)
        rng = np.random.default_rng([self.seed, 1])
        for name, spec in tree.param_specs().items():
            if spec.trainable:
                params[name] = params[name] + PERTURBATION * rng.standard_normal(spec.shape)
        return params

    def params(self, tree: Node) -> dict[str, np.ndarray]:
        """:meth:`perturbed`, then :attr:`prepare`: the parameters the checks run with."""
        params = self.perturbed(tree)
        return self.prepare(params) if self.prepare is not None else params

    def data(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Float64 inputs and conditions, standard normal (but :attr:`special_inputs` and
        the int64 :attr:`index_conditions`), with the batch axis."""
        rng = np.random.default_rng([self.seed, 2])
        xs = [rng.standard_normal((self.batch, *s)) for s in self.inputs]
        bounds = dict(self.index_conditions)
        cs = [
            rng.integers(0, bounds[i], (self.batch, *s))
            if i in bounds
            else rng.standard_normal((self.batch, *s))
            for i, s in enumerate(self.conditions)
        ]
        if self.special_inputs:
            flat = xs[0].reshape(-1)
            flat[: len(self.special_inputs)] = self.special_inputs
        return xs, cs


CASES: dict[str, Case] = {}


def register(case: Case) -> Case:
    """Add a case to the registry (names are unique)."""
    if case.name in CASES:
        raise ValueError(f"conformance case {case.name!r} is registered twice")
    CASES[case.name] = case
    return case


#: The name of the slice :func:`select` gives for ``pattern="representative"``.
REPRESENTATIVE = "representative"


def select(pattern: str | None = None) -> list[Case]:
    """Registered cases whose name contains ``pattern`` (a substring, or a glob with ``*``);
    every case when ``pattern`` is empty or ``"all"``; :func:`representative` for
    ``"representative"``."""
    if not pattern or pattern == "all":
        return list(CASES.values())
    if pattern == REPRESENTATIVE:
        return representative(list(CASES.values()))
    glob = pattern if "*" in pattern else f"*{pattern}*"
    return [c for c in CASES.values() if fnmatch.fnmatchcase(c.name, glob)]


def representative(candidates: list[Case]) -> list[Case]:
    """The slice that still covers every transform with and without conditions: in
    registration order, each case that adds a (transform class, conditioned) pair not yet
    covered. Families register their plainest case of a transform first, so the slice is
    mostly those; the models' composite cases add nothing new and drop out."""
    covered: set[tuple[type[Transform], bool]] = set()
    chosen = []
    for case in candidates:
        keys = {(t, bool(case.conditions)) for t in transforms_in(case)}
        if not keys <= covered:
            chosen.append(case)
            covered |= keys
    return chosen


def each_transform_once(candidates: list[Case]) -> list[Case]:
    """In registration order, each case that holds a transform class the ones before it
    lack: every transform once, conditioned or not (a smaller slice than
    :func:`representative`)."""
    covered: set[type[Transform]] = set()
    chosen = []
    for case in candidates:
        kinds = transforms_in(case)
        if not kinds <= covered:
            chosen.append(case)
            covered |= kinds
    return chosen


def transforms_in(case: Case) -> set[type[Transform]]:
    """The transform classes a case's tree is made of."""
    return {type(n.spec) for n in case.tree().walk() if isinstance(n.spec, Transform)}


def mlp(activation: Activation = "relu", hidden: tuple[int, ...] = (8,)) -> fc.MLP:
    """A small MLP subnet whose last layer is not zero."""
    return fc.MLP(hidden=hidden, activation=activation, zero_init_last=False)


def conv(activation: Activation = "relu", hidden: tuple[int, ...] = (6,)) -> fc.ConvNet:
    """A small ConvNet subnet whose last layer is not zero."""
    return fc.ConvNet(hidden=hidden, activation=activation, zero_init_last=False)


# the families register their cases on import
from . import (  # noqa: E402, F401, I001
    all_in_one,
    autoregressive,
    couplings,
    elementwise,
    gyoza,
    mixture,
    models,
    normalization,
    permutations,
    reshapes,
    residual,
    splines,
)

# the graphs' cases last, as they compose the families' transforms: registration order is
# the order in which the representative slice takes a case of each transform
from . import graphs  # noqa: E402, F401

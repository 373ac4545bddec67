"""FrEIA's ``FrEIA.modules`` on flowcore: the same names, built dims first.

``Fm.AllInOneBlock(dims_in, dims_c=None, subnet_constructor=..., **options)`` is a
``torch.nn.Module`` that is both FrEIA's :class:`InvertibleModule` (``dims_in``, ``dims_c``,
``output_dims``, ``forward(x_list, c=[], rev=False, jac=True) -> (outputs, log_det)``) and a
flowcore module of the spec ``flowcore.AllInOneBlock(**options)`` bound to those shapes: it
runs in flowcore's and FrEIA's sequences and graphs, saves, and ports to JAX and Keras.
Initial parameters come from PyTorch's global generator, as FrEIA's do.

Each class takes the spec's options, under FrEIA's names. Where FrEIA 0.2 and master
differ, :data:`VERSION_OPTIONS` gives the options each version implies, applied unless the
caller gives them (see :func:`~flowcore.backends.torch.freia.use_freia`).
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

import flowcore as fc
from flowcore.adapter import as_list, outputs
from flowcore.errors import ArgumentError, FlowError
from flowcore.executor import run_node
from flowcore.models import Unconditioned
from flowcore.spec import Shape, Transform
from flowcore.tree import Node, build_tree, initial_params

from ..modules import FlowModule
from .checkpoint import install_block_hooks
from .versions import freia_version


class InvertibleModule(nn.Module):
    """FrEIA's base class of invertible modules, for a user's own.

    Subclasses implement ``forward(x_or_z, c=None, rev=False, jac=True)`` on lists of
    tensors, returning ``(tuple_of_outputs, log_det)``, and ``output_dims(input_dims)``;
    they run inside flowcore's sequences and graphs (in PyTorch) as they are.
    """

    def __init__(self, dims_in: Sequence[Sequence[int]], dims_c: Any = None) -> None:
        super().__init__()
        self.dims_in = [tuple(int(d) for d in s) for s in dims_in]
        self.dims_c = [tuple(int(d) for d in s) for s in (dims_c or [])]

    def forward(
        self, x_or_z: Sequence[torch.Tensor], c: Any = None, rev: bool = False, jac: bool = True
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} implements no forward")

    def output_dims(self, input_dims: Sequence[Shape]) -> list[Shape]:
        raise NotImplementedError(f"{type(self).__name__} implements no output_dims")


#: Options that FrEIA 0.2 and master imply, per block, where they differ from the spec's
#: defaults: FrEIA 0.2's AllInOneBlock clamps with ``α·tanh(a)`` (master ``α·tanh(a/α)``).
VERSION_OPTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "0.2": {"AllInOneBlock": {"soft_clamp": "tanh"}, "HouseholderPerm": {"n_reflections": 1}},
    "master": {"HouseholderPerm": {"n_reflections": 1}},
}

#: Options FrEIA keeps as float32 buffers and computes with, per version: the drop-in
#: rounds them (given or default) to float32 likewise, so that a float64 model computes
#: what FrEIA's does (FrEIA master's splines: ``min_bin_sizes``, 0.1 by default, is
#: 0.10000000149 there).
FLOAT32_OPTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "0.2": {},
    "master": {
        name: ("min_bin_sizes", "default_domain")
        for name in (
            "ElementwiseRationalQuadraticSpline",
            "LinearSpline",
            "RationalQuadraticSpline",
        )
    },
}


def _default(spec_class: type[Transform], option: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(spec_class)}  # type: ignore[arg-type]
    return fields[option].default


#: FrEIA options with nothing to do in flowcore, accepted and ignored, with the reason.
IGNORED_OPTIONS: dict[str, dict[str, str]] = {
    "IResNetLayer": {
        "lipschitz_batchsize": "flowcore normalises the weights in every call with warm-started "
        "power-iteration vectors, so there is no batch of cold ones",
    },
}


def _as_given(value: Any) -> Any:
    return value


def _transposed(matrix: Any) -> Any:
    return np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix).T


#: FrEIA options whose value means something else to the spec, with the translation:
#: FrEIA's ``Fixed1x1Conv(M)`` (0.2 and master) convolves with ``M.t()``, i.e. computes
#: :math:`y = M^\top x`, where flowcore's ``Fixed1x1Conv(M)`` computes :math:`y = M x`.
TRANSLATED_OPTIONS: dict[tuple[str, str], Any] = {("Fixed1x1Conv", "M"): _transposed}


#: FrEIA options used only with conditions, and ignored without them (as FrEIA does).
CONDITIONAL_OPTIONS: dict[str, tuple[str, ...]] = {
    "ElementwiseRationalQuadraticSpline": ("subnet_constructor",),
}

#: FrEIA's modules that use their conditions; the others accept and ignore them (FrEIA
#: builds every module with ``dims_c``), run as :class:`flowcore.models.Unconditioned`.
USES_CONDITIONS = frozenset(
    {
        "AffineCouplingOneSided", "AllInOneBlock", "ConditionalAffineTransform",
        "ElementwiseRationalQuadraticSpline", "GINCouplingBlock", "GLOWCouplingBlock",
        "GaussianMixtureModel", "HouseholderPerm", "LinearSpline", "NICECouplingBlock",
        "RNVPCouplingBlock", "RationalQuadraticSpline",
    }
)  # fmt: skip


class FreiaBlock(FlowModule, InvertibleModule):
    """A flowcore transform as a FrEIA module, built dims first (see the module's doc)."""

    #: The flowcore spec class this FrEIA name builds.
    spec_class: ClassVar[type[Transform]]
    #: The FrEIA name (that of the spec).
    freia_name: ClassVar[str] = ""

    def __init__(
        self, dims_in: Sequence[Sequence[int]], dims_c: Any = None, **options: Any
    ) -> None:
        name = type(self).freia_name
        ignored = set(IGNORED_OPTIONS.get(name, {}))
        if not dims_c:
            ignored |= set(CONDITIONAL_OPTIONS.get(name, ()))
        given = {k: v for k, v in options.items() if k not in ignored}
        given = {k: TRANSLATED_OPTIONS.get((name, k), _as_given)(v) for k, v in given.items()}
        implied = VERSION_OPTIONS[freia_version()].get(name, {})
        chosen = {**implied, **given}
        for option in FLOAT32_OPTIONS[freia_version()].get(name, ()):
            value = chosen.get(option, _default(self.spec_class, option))
            chosen[option] = tuple(float(np.float32(v)) for v in value)
        spec: Transform = self.spec_class(**chosen)
        if dims_c and name not in USES_CONDITIONS:
            spec = Unconditioned(spec)
        ins = [tuple(int(d) for d in s) for s in dims_in]
        conds = [tuple(int(d) for d in s) for s in (dims_c or [])]
        tree = build_tree(spec, ins, conds)
        seed = int(torch.randint(0, 2**31 - 1, ()))
        FlowModule.__init__(
            self, tree, initial_params(tree, seed), torch.get_default_dtype(), seed=seed
        )
        self.dims_in, self.dims_c = ins, conds
        #: The FrEIA version whose behaviour and ``state_dict`` layout the block has.
        self.freia_version = freia_version()
        install_block_hooks(self)

    def output_dims(self, input_dims: Sequence[Shape] | None = None) -> list[Shape]:
        return [tuple(s) for s in self.flowcore_tree.signature.outputs]


def _block(spec_class: type[Transform]) -> type[FreiaBlock]:
    name = spec_class.__name__
    return type(
        name,
        (FreiaBlock,),
        {
            "spec_class": spec_class,
            "freia_name": name,
            "__module__": __name__,
            "__doc__": f"FrEIA's ``{name}(dims_in, dims_c=None, **options)``: "
            f":class:`flowcore.{name}` as a FrEIA module.{_ignored(name)}",
        },
    )


def _ignored(name: str) -> str:
    notes = IGNORED_OPTIONS.get(name, {})
    return "".join(f" ``{k}`` is accepted and ignored: {why}." for k, why in notes.items())


# FrEIA's module names that flowcore has, each building the flowcore spec of that name.
ActNorm = _block(fc.ActNorm)
AffineCouplingOneSided = _block(fc.AffineCouplingOneSided)
AllInOneBlock = _block(fc.AllInOneBlock)
Concat = _block(fc.Concat)
ConditionalAffineTransform = _block(fc.ConditionalAffineTransform)
ElementwiseRationalQuadraticSpline = _block(fc.ElementwiseRationalQuadraticSpline)
Fixed1x1Conv = _block(fc.Fixed1x1Conv)
FixedLinearTransform = _block(fc.FixedLinearTransform)
Flatten = _block(fc.Flatten)
GINCouplingBlock = _block(fc.GINCouplingBlock)
GLOWCouplingBlock = _block(fc.GLOWCouplingBlock)
HaarDownsampling = _block(fc.HaarDownsampling)
HaarUpsampling = _block(fc.HaarUpsampling)
HouseholderPerm = _block(fc.HouseholderPerm)
IRevNetDownsampling = _block(fc.IRevNetDownsampling)
IRevNetUpsampling = _block(fc.IRevNetUpsampling)
InvAutoAct = _block(fc.InvAutoAct)
InvAutoActFixed = _block(fc.InvAutoActFixed)
InvAutoActTwoSided = _block(fc.InvAutoActTwoSided)
InvertibleSigmoid = _block(fc.InvertibleSigmoid)
LearnedElementwiseScaling = _block(fc.LearnedElementwiseScaling)
LinearSpline = _block(fc.LinearSpline)
NICECouplingBlock = _block(fc.NICECouplingBlock)
PermuteRandom = _block(fc.PermuteRandom)
RNVPCouplingBlock = _block(fc.RNVPCouplingBlock)
RationalQuadraticSpline = _block(fc.RationalQuadraticSpline)
Reshape = _block(fc.Reshape)
Split = _block(fc.Split)


class IResNetLayer(_block(fc.IResNetLayer)):  # type: ignore[misc]
    """FrEIA's ``IResNetLayer(dims_in, dims_c=None, **options)``: :class:`flowcore.IResNetLayer`
    as a FrEIA module. ``lipschitz_batchsize`` is accepted and ignored, and
    :meth:`lipschitz_correction` does nothing: flowcore normalises the weights in every call,
    with warm-started power-iteration vectors, so there is never anything to correct."""

    def lipschitz_correction(self) -> None:
        """Nothing to do: every call normalises the weights (see the class doc)."""


class OrthogonalTransform(_block(fc.OrthogonalTransform)):  # type: ignore[misc]
    """FrEIA's ``OrthogonalTransform(dims_in, dims_c=None, correction_interval=256,
    clamp=5.0)``: :class:`flowcore.OrthogonalTransform`, its ``weights`` re-orthogonalised
    (:func:`flowcore.orthogonal_correction`) every ``correction_interval`` backward passes
    through them, as FrEIA does. FrEIA corrects inside the backward pass; this corrects
    before the next call, after the optimiser's step, so that no backward pass sees weights
    other than those its forward pass used."""

    def __init__(
        self,
        dims_in: Sequence[Sequence[int]],
        dims_c: Any = None,
        correction_interval: int = 256,
        **options: Any,
    ) -> None:
        super().__init__(dims_in, dims_c, **options)
        self.correction_interval = int(correction_interval)
        self.backward_passes = 0
        self._parameters["weights"].register_hook(self._count_backward)

    def _count_backward(self, grad: torch.Tensor) -> torch.Tensor:
        self.backward_passes += 1
        return grad

    def run(self, xs: Any, cs: Any, rev: bool = False, jac: bool = True) -> Any:
        if self.backward_passes >= self.correction_interval:
            weights = self._parameters["weights"]
            corrected = fc.orthogonal_correction(weights.detach().cpu().double().numpy())
            with torch.no_grad():
                weights.copy_(torch.from_numpy(corrected))
            self.backward_passes = 0
        return super().run(xs, cs, rev, jac)


def _compiling() -> bool:
    return bool(torch.compiler.is_compiling() or torch.jit.is_tracing())


class GaussianMixtureModel(_block(fc.GaussianMixtureModel)):  # type: ignore[misc]
    """FrEIA master's ``GaussianMixtureModel(dims_in, dims_c)`` (not in FrEIA 0.2):
    :class:`flowcore.GaussianMixtureModel` as a FrEIA module, called with
    ``c=[w, mu, U, i]``, with FrEIA's static helpers (``normalize_weights``,
    ``pick_mixture_component``, ``nll_loss``, ``nll_upper_bound``, and
    ``component_log_dets``).

    FrEIA-compat glue, calling conventions only (the math is the spec's):

    - ``i`` a tensor of component indices (batch,): the spec's map through component
      ``i[b]``. An index outside ``0 .. K-1`` raises a FlowError, checked eagerly (not under
      ``torch.compile``); FrEIA raises an IndexError there and wraps negative ones around.
    - ``i`` an int: a seed. The components are :meth:`pick_mixture_component` ``(w, i)``,
      FrEIA's draw, so one seed picks the same components forward and reverse.
    - ``i`` None: every component at once. ``x`` (batch, D) is compared with every
      component (broadcast to (batch, K, D)), or given as (batch, K, D); the result has
      shape (batch, K, D) and, with ``jac``, the log-det is per component, (batch, K), as
      FrEIA returns it (without ``jac``: zeros (batch,), as every flowcore module's).
    - ``i`` anything else: a TypeError (FrEIA draws unseeded components for it, different
      forward and reverse). A NumPy integer is a seed too (FrEIA: unseeded).
    - FrEIA declares ``i`` as a size-0 condition, ``(0,)``: that is taken as ``()``, one
      index per sample.
    """

    normalize_weights = staticmethod(fc.GaussianMixtureModel.normalize_weights)
    nll_loss = staticmethod(fc.GaussianMixtureModel.nll_loss)
    nll_upper_bound = staticmethod(fc.GaussianMixtureModel.nll_upper_bound)
    component_log_dets = staticmethod(fc.GaussianMixtureModel.component_log_dets)

    def __init__(
        self, dims_in: Sequence[Sequence[int]], dims_c: Any = None, **options: Any
    ) -> None:
        conds = [() if tuple(s) == (0,) else tuple(s) for s in (dims_c or [])]
        super().__init__(dims_in, conds, **options)

    @staticmethod
    def pick_mixture_component(w: torch.Tensor, seed: Any = None) -> torch.Tensor:
        """FrEIA's draw: one ``torch.rand`` number per sample from a generator on ``w``'s
        device, seeded with ``seed`` (None: fresh entropy), to the components of
        :meth:`flowcore.GaussianMixtureModel.pick_mixture_component`; int32 as FrEIA's."""
        generator = torch.Generator(device=w.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(_seed(seed))
        u = torch.rand(w.shape[0], 1, device=w.device, generator=generator)
        picked = fc.GaussianMixtureModel.pick_mixture_component(w, uniform=u)
        return picked.int()  # type: ignore[no-any-return]

    @functools.cached_property
    def _all_components(self) -> Node:
        """The spec bound without ``i``: input (K, D), every component at once."""
        w, mu, u = self.flowcore_tree.signature.conditions[:3]
        spec = self.flowcore_tree.spec
        assert isinstance(spec, Transform)
        return build_tree(spec, [mu], [w, mu, u])

    def run(self, xs: Any, cs: Any, rev: bool = False, jac: bool = True) -> Any:
        cs = list(cs)
        if len(cs) != 4 or isinstance(cs[3], torch.Tensor):
            if len(cs) == 4 and not cs[3].is_floating_point() and not _compiling():
                _check_range(cs[3], int(self.flowcore_tree.signature.conditions[0][0]))
            return super().run(xs, cs, rev, jac)
        w, mu, u, i = cs
        if i is not None:
            return super().run(xs, [w, mu, u, self.pick_mixture_component(w, _seed(i))], rev, jac)
        tree = self._all_components
        xs = list(xs)
        if len(xs) == 1 and getattr(xs[0], "ndim", 0) == 2:  # FrEIA: x against every component
            xs = [xs[0][:, None, :].expand(-1, *tree.signature.inputs[0])]
        ys, log_det, _ = run_node(tree, self.xp, {}, {}, xs, [w, mu, u], rev, jac)
        if jac:
            per_component = self.component_log_dets(u)
            log_det = -per_component if rev else per_component
        return ys, log_det

    def call_flow(self, x: Any, c: Any, rev: bool, jac: bool) -> tuple[Any, torch.Tensor]:
        if not (isinstance(c, (list, tuple)) and len(c) == 4):
            return super().call_flow(x, c, rev, jac)  # type: ignore[no-any-return]
        xs = as_list(x, "input", self._is_array, self._convert)
        ys, log_det = self.run(xs, list(c), rev, jac)
        return outputs(x, ys), log_det


def _seed(seed: Any) -> int:
    if isinstance(seed, numbers.Integral):
        return int(seed)
    raise ArgumentError(
        "GaussianMixtureModel: the component index i must be a tensor of indices, an int "
        f"(a seed for pick_mixture_component) or None (every component), got "
        f"{type(seed).__name__} {seed!r}"
    )


def _check_range(i: torch.Tensor, k: int) -> None:
    bad = (i < 0) | (i >= k)
    if bool(bad.any()):
        values = sorted({int(v) for v in i[bad].reshape(-1)[:8].tolist()})
        raise FlowError(
            f"GaussianMixtureModel: component indices must be in 0..{k - 1} ({k} "
            f"components), got {values}"
        )


#: FrEIA's module names that flowcore has.
FREIA_NAMES: tuple[str, ...] = tuple(
    name
    for name, value in list(globals().items())
    if isinstance(value, type) and issubclass(value, FreiaBlock) and value is not FreiaBlock
)

__all__ = [
    "FREIA_NAMES", "FreiaBlock", "CONDITIONAL_OPTIONS", "IGNORED_OPTIONS", "InvertibleModule",
    "USES_CONDITIONS",
    "VERSION_OPTIONS", "ActNorm", "AffineCouplingOneSided", "AllInOneBlock", "Concat",
    "ConditionalAffineTransform", "ElementwiseRationalQuadraticSpline", "Fixed1x1Conv",
    "FixedLinearTransform", "Flatten", "GINCouplingBlock", "GLOWCouplingBlock",
    "GaussianMixtureModel", "HaarDownsampling", "HaarUpsampling", "HouseholderPerm",
    "IResNetLayer",
    "IRevNetDownsampling", "IRevNetUpsampling", "InvAutoAct", "InvAutoActFixed",
    "InvAutoActTwoSided", "InvertibleSigmoid", "LearnedElementwiseScaling", "LinearSpline",
    "NICECouplingBlock", "OrthogonalTransform", "PermuteRandom", "RNVPCouplingBlock",
    "RationalQuadraticSpline", "Reshape", "Split"
]  # fmt: skip

r"""Live FrEIA and anomalib models as flowcore models in any backend.

:func:`from_freia` reads a built FrEIA 0.2, FrEIA master or anomalib model (a
``SequenceINN``, a ``GraphINN`` or one block) into the flowcore spec that computes the same
function (:func:`spec_from_freia`), builds it in the backend asked for, and loads the
model's weights (:func:`flowcore.interop.freia.params_from_freia`). A block's options are
read from the attributes FrEIA keeps; a clamp or global-scale activation, which FrEIA keeps
as a function, is recognised by its values at a few points, and a function that is none of
FrEIA's named ones is an error. Subnets are read with
:func:`flowcore.backends.torch.torch_layers.sequential_from_torch`; a block's subnets must have
one portable spec each (one for all where they have one architecture, the width of their
last layer taken from the block; else :class:`~flowcore.transforms.couplings.Subnets`).

The blocks read are :data:`READERS`' (the drop-in's own modules are read from their
specs); a user's own FrEIA module has no portable form, and is an error naming it: such a
model runs in PyTorch through the drop-in (:mod:`flowcore.backends.torch.freia`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from flowcore import models
from flowcore.api import build
from flowcore.errors import FlowError
from flowcore.interop.freia import VERSION_NAMES, load_freia_state
from flowcore.interop.freia_blocks import as_numpy
from flowcore.models.native import NativeTransform
from flowcore.spec import Shape, Transform
from flowcore.subnets import Conv2d, Linear
from flowcore.transforms import (
    ActNorm,
    AffineCouplingOneSided,
    AllInOneBlock,
    Concat,
    ConditionalAffineTransform,
    Fixed1x1Conv,
    FixedLinearTransform,
    Flatten,
    GINCouplingBlock,
    GLOWCouplingBlock,
    IRevNetDownsampling,
    IRevNetUpsampling,
    NICECouplingBlock,
    PermuteRandom,
    Reshape,
    RNVPCouplingBlock,
    Split,
)
from flowcore.transforms.couplings import Subnets

from ..torch_layers import sequential_from_torch

__all__ = ["READERS", "from_freia", "spec_from_freia"]

#: Points at which a FrEIA activation kept as a function is recognised.
PROBES = np.array([-2.5, -0.7, 0.0, 0.4, 1.3, 3.0])

_CLAMPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ATAN": lambda u: 0.636 * np.arctan(u),
    "TANH": np.tanh,
    "SIGMOID": lambda u: 2.0 * (1.0 / (1.0 + np.exp(-u)) - 0.5),
}
_GLOBAL_SCALES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "SIGMOID": lambda a: 10.0 / (1.0 + np.exp(-(a - 2.0))),
    "SOFTPLUS": lambda a: 0.1 * 2.0 * np.log1p(np.exp(0.5 * a)),
    "EXP": np.exp,
}


def _recognise(where: str, what: str, f: Any, known: dict[str, Callable[[Any], Any]]) -> str:
    values = as_numpy(f(torch.tensor(PROBES, dtype=torch.float64))).astype(np.float64)
    for name, g in known.items():
        if np.allclose(values, g(PROBES), rtol=1e-6, atol=1e-9):
            return name
    raise FlowError(
        f"{where}: its {what} is none of FrEIA's {sorted(known)}: a custom function has no "
        "portable form (run the model in PyTorch through flowcore.backends.torch.freia)"
    )


def _subnet(where: str, block: Any, names: Sequence[str]) -> Any:
    """The one Sequential spec of a FrEIA block's subnets ``names``."""
    return _one_subnet(where, {name: getattr(block, name) for name in names})


def _one_subnet(where: str, modules: dict[str, Any]) -> Any:
    """The portable subnet of a block's torch subnets: one Sequential (the last width left
    to the block) where they have one architecture, else :class:`Subnets` by name."""
    specs = {name: _open_width(sequential_from_torch(m)) for name, m in modules.items()}
    first = next(iter(specs.values()))
    if all(s == first for s in specs.values()):
        return first
    if len(specs) == 1 or "subnet" in specs:
        raise FlowError(f"{where}: its subnets {list(specs)} cannot be told apart")
    return Subnets(names=tuple(specs), nets=tuple(specs.values()))


def _open_width(seq: Any) -> Any:
    """``seq`` with the width of its last Linear or Conv2d left to the block (None)."""
    layers = list(seq.layers)
    for k in reversed(range(len(layers))):
        if isinstance(layers[k], Linear):
            layers[k] = dataclasses.replace(layers[k], features=None)
            break
        if isinstance(layers[k], Conv2d):
            layers[k] = dataclasses.replace(layers[k], channels=None)
            break
    return dataclasses.replace(seq, layers=tuple(layers))


def _aio_version(block: Any, version: str | None) -> str:
    if version is not None:
        return VERSION_NAMES.get(version, version)
    if block.householder:  # FrEIA master's learned Householder permutation is broken
        return "0.2"
    w = block.w_perm
    if w.dim() == 1:
        return "master"
    values = as_numpy(w)
    if np.isin(values, (0.0, 1.0)).all():
        return "0.2"
    raise FlowError(
        "AllInOneBlock: a soft permutation is stored alike in FrEIA 0.2 and master, which "
        "clamp differently: pass version='0.2' (also anomalib's) or version='master'"
    )


def _all_in_one(block: Any, where: str, version: str | None) -> Transform:
    soft = block.w_perm is not None and not (
        block.w_perm.dim() == 1 or np.isin(as_numpy(block.w_perm), (0.0, 1.0)).all()
    )
    return AllInOneBlock(
        subnet=_subnet(where, block, ["subnet"]),
        affine_clamping=float(block.clamp),
        gin_block=bool(block.GIN),
        global_affine_type=_recognise(  # type: ignore[arg-type]
            where, "global scale activation", block.global_scale_activation, _GLOBAL_SCALES
        ),
        permute_soft=soft,
        learned_householder_permutation=int(block.householder),
        reverse_permutation=bool(block.reverse_pre_permute),
        soft_clamp="tanh" if _aio_version(block, version) == "0.2" else "scaled_tanh",
    )


def _coupling(cls: type[Transform], subnets: Sequence[str], clamped: bool = True) -> Any:
    def read(block: Any, where: str, version: str | None) -> Transform:
        options: dict[str, Any] = {"subnet": _subnet(where, block, subnets)}
        if cls is not ConditionalAffineTransform:
            options["split_len"] = int(block.split_len1)
        if clamped:
            options["clamp"] = float(block.clamp)
            options["clamp_activation"] = _recognise(
                where, "clamp activation", block.f_clamp, _CLAMPS
            )
        return cls(**options)

    return read


def _matrix(block: Any, name: str) -> np.ndarray:
    return as_numpy(getattr(block, name)).astype(np.float64)


#: FrEIA class name -> reader of a built block's options: ``(block, where, version) -> spec``.
READERS: dict[str, Callable[[Any, str, str | None], Transform]] = {
    "AllInOneBlock": _all_in_one,
    "NICECouplingBlock": _coupling(NICECouplingBlock, ["F", "G"], clamped=False),
    "RNVPCouplingBlock": _coupling(
        RNVPCouplingBlock, ["subnet_s1", "subnet_t1", "subnet_s2", "subnet_t2"]
    ),
    "GLOWCouplingBlock": _coupling(GLOWCouplingBlock, ["subnet1", "subnet2"]),
    "GINCouplingBlock": _coupling(GINCouplingBlock, ["subnet1", "subnet2"]),
    "AffineCouplingOneSided": _coupling(AffineCouplingOneSided, ["subnet"]),
    "ConditionalAffineTransform": _coupling(ConditionalAffineTransform, ["subnet"]),
    "ActNorm": lambda block, where, version: ActNorm(),
    "PermuteRandom": lambda block, where, version: PermuteRandom(),
    "Fixed1x1Conv": lambda block, where, version: Fixed1x1Conv(
        M=_matrix(block, "M").reshape(block.M.shape[0], -1)
    ),
    "FixedLinearTransform": lambda block, where, version: FixedLinearTransform(
        M=_matrix(block, "M").T,
        b=np.broadcast_to(_matrix(block, "b"), (1, block.M.shape[0]))[0],
    ),
    "IRevNetDownsampling": lambda block, where, version: IRevNetDownsampling(
        legacy_backend=bool(block.legacy_backend)
    ),
    "IRevNetUpsampling": lambda block, where, version: IRevNetUpsampling(
        legacy_backend=bool(block.legacy_backend)
    ),
    "Flatten": lambda block, where, version: Flatten(),
    "Reshape": lambda block, where, version: Reshape(output_dims=tuple(block.target_dim)),
    "Split": lambda block, where, version: Split(
        section_sizes=tuple(int(s) for s in block.split_size_or_sections), dim=int(block.dim)
    ),
    "Concat": lambda block, where, version: Concat(dim=int(block.dim)),
}


def _block_spec(block: Any, where: str, version: str | None) -> Transform:
    tree = getattr(block, "flowcore_tree", None)
    if tree is not None and isinstance(tree.spec, Transform):
        return _portable(block, tree, where)
    name = type(block).__name__
    if name not in READERS:
        raise FlowError(
            f"{where}: {type(block).__module__}.{type(block).__qualname__} has no portable "
            f"form; the importer reads {sorted(READERS)} (a model with others runs in "
            "PyTorch through flowcore.backends.torch.freia)"
        )
    return READERS[name](block, where, version)


def _portable(block: Any, tree: Any, where: str) -> Transform:
    """A flowcore block's spec, its native torch subnets read into one Sequential."""
    spec = tree.spec
    if isinstance(spec, models.Unconditioned):
        return models.Unconditioned(_portable(block, tree.children["inner"], where))
    natives = [n.path for n in tree.walk() if n.is_native]
    if not natives:
        return spec  # type: ignore[no-any-return]
    if isinstance(spec, NativeTransform) or not hasattr(spec, "subnet_constructor"):
        raise FlowError(
            f"{where}: {spec.label} holds a native torch module, which has no portable form "
            "(a model with it runs in PyTorch through flowcore.backends.torch.freia)"
        )
    root = block.flowcore_tree
    subnets = {tree.relative(p): _submodule(block, root.relative(p)) for p in natives}
    return dataclasses.replace(spec, subnet=_one_subnet(where, subnets), subnet_constructor=None)


def _submodule(module: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _dims(shapes: Any) -> list[Shape]:
    return [tuple(int(d) for d in s) for s in shapes]


def spec_from_freia(
    module: Any, version: str | None = None
) -> tuple[Transform, list[Shape], list[Shape]]:
    """The flowcore spec computing what the built FrEIA ``module`` computes, with its
    input and condition shapes (batch axis excluded)."""
    if hasattr(module, "node_list"):
        return _graph(module, version)
    if hasattr(module, "module_list"):
        blocks = list(module.module_list)
        specs = [_block_spec(b, f"block {i}", version) for i, b in enumerate(blocks)]
        tree = getattr(module, "flowcore_tree", None)
        if tree is not None:  # the drop-in's: its spec knows the conditions
            conditions, shapes = list(tree.spec.conditions), _dims(tree.signature.conditions)
        else:
            conditions, shapes = _freia_conditions(module, blocks)
        sequence = models.SequenceINN(*specs, conditions=tuple(conditions))
        return sequence, _dims(blocks[0].dims_in), shapes
    return (
        _block_spec(module, type(module).__name__, version),
        _dims(module.dims_in),
        _dims(getattr(module, "dims_c", [])),
    )


def _freia_conditions(module: Any, blocks: list[Any]) -> tuple[list[Any], list[Shape]]:
    """A FrEIA SequenceINN's condition index per block, and the conditions' shapes."""
    conditions = list(module.conditions)
    cond_shapes: dict[int, Shape] = {}
    for block, cond in zip(blocks, conditions, strict=True):
        if cond is not None:
            cond_shapes[int(cond)] = _dims(block.dims_c)[0]
    n_conds = max(cond_shapes, default=-1) + 1
    if sorted(cond_shapes) != list(range(n_conds)):
        raise FlowError(f"SequenceINN: conditions {sorted(cond_shapes)} leave a gap")
    return conditions, [cond_shapes[i] for i in range(n_conds)]


def _graph(module: Any, version: str | None) -> tuple[Transform, list[Shape], list[Shape]]:
    """A FrEIA GraphINN as flowcore's: inputs, conditions and outputs in FrEIA's order
    (``in_nodes``, ``condition_nodes``, ``out_nodes``), the blocks in its ``node_list``'s."""
    made: dict[int, Any] = {}
    ends = [*module.in_nodes, *module.condition_nodes]
    middle = [n for n in module.node_list if n not in ends and n not in module.out_nodes]
    for node in [*ends, *middle, *module.out_nodes]:
        name = str(node.name)
        if any(m.name == name for m in made.values()):
            raise FlowError(f"GraphINN: two nodes are named {name!r}; give them distinct names")
        kind = type(node).__name__
        ins = [(made[id(n)], i) for n, i in node.inputs] if kind != "InputNode" else []
        if kind in ("InputNode", "ConditionNode"):
            dims = tuple(int(d) for d in node.output_dims[0])
            cls = models.InputNode if kind == "InputNode" else models.ConditionNode
            made[id(node)] = cls(*dims, name=name)
        elif kind == "OutputNode":
            made[id(node)] = models.OutputNode(ins[0], name=name)
        else:
            conds = [(made[id(n)], i) for n, i in node.conditions]
            spec = _block_spec(node.module, f"node {name!r}", version)
            made[id(node)] = models.Node(ins, spec, conditions=conds or None, name=name)
    graph = models.GraphINN(list(made.values()))
    in_shapes, cond_shapes = graph.default_shapes()
    return graph, list(in_shapes), list(cond_shapes)


def _module_order(module: Any) -> list[str] | None:
    """A GraphINN's block names in its ``module_list`` order (its sorted ``node_list``)."""
    if not hasattr(module, "node_list"):
        return None
    return [str(n.name) for n in module.node_list if getattr(n, "module", None) is not None]


def from_freia(
    module: Any,
    *,
    backend: str | None = None,
    version: str | None = None,
    dtype: str = "float32",
    device: Any = None,
) -> Any:
    """A flowcore model in ``backend`` computing what the built FrEIA, FrEIA master or
    anomalib ``module`` computes, with its weights; ``version`` as for
    :func:`~flowcore.interop.freia.params_from_freia` (read from the model where it shows)."""
    spec, inputs, conditions = spec_from_freia(module, version)
    model = build(spec, inputs, conditions or None, backend=backend, dtype=dtype, device=device)
    load_freia_state(model, module.state_dict(), version=version, order=_module_order(module))
    return model

r"""FrEIA and anomalib checkpoints into flowcore models in any backend, and back.

A FrEIA ``SequenceINN`` or ``GraphINN`` keeps its blocks in ``module_list``, so its
``state_dict`` has the keys ``module_list.{i}.<block's entries>``; a lone block's has the
block's entries. :func:`params_from_freia` turns such a state into flowcore's canonical
parameters for a model built with the same blocks (in any backend: pass them to
:func:`flowcore.set_params`, or use :func:`load_freia_state`), block by block
(:mod:`flowcore.interop.freia_blocks`); :func:`params_to_freia` is the inverse.

Which FrEIA made a checkpoint matters: FrEIA 0.2 (PyPI, and anomalib's vendored
AllInOneBlock) and FrEIA master store AllInOneBlock's hard permutation and ActNorm
differently, and AllInOneBlock computes differently. Where the checkpoint shows its
version (a 0/1 permutation matrix: 0.2; an int64 index: master; ActNorm's keys; spline
buffers: master) it is used, and a ``version=`` that contradicts it is an error; where
nothing shows it and it matters, ``version=`` must be given: the importer never guesses.

A GraphINN's ``module_list`` is in FrEIA's topological order of its nodes (0.2 and master
both sort the node list): where a graph has more than one, FrEIA's depends on its node
objects' hashes, and ``order=`` (the node names) must be given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..api import get_params, set_params, tree_of
from ..errors import ParameterError
from ..models import GraphINN, SequenceINN
from ..models.sequence import Unconditioned
from ..tree import Node
from .freia_blocks import FreiaVersion, as_numpy, format_of

__all__ = [
    "FreiaVersion", "block_from_freia", "block_to_freia", "block_version", "detect_version",
    "freia_blocks", "freia_state", "load_freia_state", "params_from_freia", "params_to_freia",
    "version_matters",
]  # fmt: skip

#: Names a user may give for a version: anomalib vendors FrEIA 0.2's AllInOneBlock.
VERSION_NAMES: dict[str, FreiaVersion] = {"0.2": "0.2", "anomalib": "0.2", "master": "master"}


def _version(version: str | None) -> FreiaVersion | None:
    if version is None:
        return None
    if version not in VERSION_NAMES:
        raise ParameterError(
            f"FrEIA version must be one of {sorted(VERSION_NAMES)}, got {version!r}"
        )
    return VERSION_NAMES[version]


def _topological(spec: GraphINN, names: Sequence[str], strict: bool) -> list[str]:
    """FrEIA's ``module_list`` order: a topological order of the graph's blocks (0.2 and
    master sort the node list so). Where the graph has more than one, FrEIA's depends on
    the hashes of its node objects: ``strict`` makes that an error, else ties go to the
    node listed first."""
    needs = {n: set(spec._needs(rev=False)[n]) & set(names) for n in names}
    done: list[str] = []
    while len(done) < len(names):
        ready = [n for n in names if n not in done and needs[n] <= set(done)]
        if len(ready) > 1 and strict:
            raise ParameterError(
                f"GraphINN: FrEIA keeps the blocks in a topological order, and this graph "
                f"has more than one ({ready} can come next): pass order=[node names] in the "
                "order of the checkpoint's module_list ([n.name for n in model.node_list "
                "if n.module is not None] in FrEIA)"
            )
        done.append(ready[0])
    return done


def freia_blocks(
    tree: Node, order: Sequence[str] | None = None, strict: bool = True
) -> list[tuple[str, Node]]:
    """The blocks of ``tree`` with their key prefix in a FrEIA state: ``module_list.{i}.``
    for a SequenceINN or GraphINN, ``""`` for a lone block. A graph's blocks are in
    ``order`` (node names) if given, else in FrEIA's topological order (``strict``: an
    error where there are several, else ties to the node listed first)."""
    spec = tree.spec
    if isinstance(spec, SequenceINN):
        nodes = list(tree.children.values())
    elif isinstance(spec, GraphINN):
        names = [n for n in spec.names if n in tree.children]
        if order is not None:
            if sorted(order) != sorted(names):
                raise ParameterError(
                    f"GraphINN: order= must name each block node once: {sorted(names)}, "
                    f"got {list(order)}"
                )
            names = list(order)
        else:
            names = _topological(spec, names, strict)
        nodes = [tree.children[n] for n in names]
    else:
        return [("", tree)]
    return [(f"module_list.{i}.", node) for i, node in enumerate(nodes)]


def _unwrapped(node: Node) -> Node:
    while isinstance(node.spec, Unconditioned):
        node = node.children["inner"]
    return node


def block_from_freia(
    node: Node, entries: Mapping[str, Any], version: FreiaVersion, where: str | None = None
) -> dict[str, np.ndarray]:
    """One block's flowcore parameters, by name relative to ``node``, from its FrEIA
    entries (names relative to the block); an :class:`~flowcore.models.Unconditioned`
    block's are its inner transform's."""
    inner = _unwrapped(node)
    local = format_of(inner).from_freia(inner, dict(entries), version, where or inner.label)
    return {node.relative(inner.full_name(k)): v for k, v in local.items()}


def block_to_freia(
    node: Node, params: Mapping[str, Any], version: FreiaVersion, where: str | None = None
) -> dict[str, np.ndarray]:
    """One block's FrEIA entries from its flowcore parameters (names relative to
    ``node``): the inverse of :func:`block_from_freia`."""
    inner = _unwrapped(node)
    full = {node.full_name(k): as_numpy(v) for k, v in params.items()}
    local = {inner.relative(k): v for k, v in full.items() if _under(k, inner.path)}
    return format_of(inner).to_freia(inner, local, version, where or inner.label)


def block_version(node: Node, entries: Mapping[str, Any]) -> FreiaVersion | None:
    """The FrEIA version one block's entries show, or None."""
    inner = _unwrapped(node)
    return format_of(inner).detect(inner, dict(entries))


def version_matters(node: Node) -> bool:
    """Whether the block stores or computes differently in FrEIA 0.2 and master."""
    return format_of(_unwrapped(node)).version_matters


def _entries(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _where(key_prefix: str, node: Node) -> str:
    """A block in errors: its transform and where its keys are."""
    return f"{node.label} (keys {key_prefix or ''}*)"


def detect_version(
    tree: Node, state: Mapping[str, Any], prefix: str = "", order: Sequence[str] | None = None
) -> FreiaVersion | None:
    """The FrEIA version the checkpoint's entries show, or None where none does; an
    error where blocks show different ones."""
    shown: dict[str, FreiaVersion] = {}
    for key_prefix, node in freia_blocks(tree, order):
        found = block_version(node, _entries(state, prefix + key_prefix))
        if found is not None:
            shown[prefix + key_prefix] = found
    if len(set(shown.values())) > 1:
        raise ParameterError(
            f"the checkpoint's blocks show different FrEIA versions: {shown}; a model is "
            "made by one FrEIA"
        )
    return next(iter(shown.values()), None)


def _resolve(
    tree: Node, state: Mapping[str, Any], prefix: str, version: str | None, order: Any
) -> FreiaVersion:
    given = _version(version)
    shown = detect_version(tree, state, prefix, order)
    if given is not None and shown is not None and given != shown:
        raise ParameterError(
            f"version={version!r} was given, but the checkpoint was made by FrEIA {shown} "
            "(its AllInOneBlock permutations, ActNorm keys or spline buffers say so)"
        )
    if given is not None:
        return given
    if shown is not None:
        return shown
    blocks = freia_blocks(tree, order)
    matters = [node.label for _, node in blocks if version_matters(node)]
    if matters:
        raise ParameterError(
            f"cannot tell which FrEIA made this checkpoint (nothing in it shows the "
            f"version), and {matters[0]} computes or stores differently in FrEIA 0.2 and "
            "master: pass version='0.2' (also anomalib's) or version='master'"
        )
    return "0.2"


def params_from_freia(
    model: Any,
    state: Mapping[str, Any],
    *,
    version: str | None = None,
    prefix: str = "",
    order: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """flowcore's canonical parameters of ``model`` (a flowcore model in any backend, or
    its tree) from a FrEIA or anomalib ``state_dict``.

    ``state`` maps names to tensors or arrays; the flow's keys start with ``prefix``
    (e.g. ``"fast_flow_blocks.0."`` in a larger model's state), and the others are left
    alone. ``version``: ``"0.2"``, ``"anomalib"`` or ``"master"``, or None to read it
    from the checkpoint (see the module's doc). Every key under ``prefix`` must belong to
    a block and every parameter must be there, in its shape: a missing, surplus or
    misshaped key is an error naming it, and nothing is returned.
    """
    tree = model if isinstance(model, Node) else tree_of(model)
    return _convert_in(tree, state, version, prefix, order)[0]


def _convert_in(
    tree: Node, state: Mapping[str, Any], version: str | None, prefix: str, order: Any
) -> tuple[dict[str, np.ndarray], FreiaVersion]:
    resolved = _resolve(tree, state, prefix, version, order)
    blocks = freia_blocks(tree, order)
    claimed = {prefix + key_prefix for key_prefix, _ in blocks if key_prefix}
    if claimed:
        stray = sorted(
            k for k in state if k.startswith(prefix) and not any(k.startswith(c) for c in claimed)
        )
        if stray:
            raise ParameterError(
                f"the checkpoint has keys that belong to no block of the model: {stray[:8]}"
                f"{' ...' if len(stray) > 8 else ''} (the model has {len(blocks)} blocks)"
            )
    params: dict[str, np.ndarray] = {}
    for key_prefix, node in blocks:
        entries = _entries(state, prefix + key_prefix)
        where = _where(prefix + key_prefix, node)
        local = block_from_freia(node, entries, resolved, where)
        params.update({node.full_name(k): v for k, v in local.items()})
    return params, resolved


def params_to_freia(
    model: Any,
    params: Mapping[str, Any] | None = None,
    *,
    version: str = "0.2",
    prefix: str = "",
    order: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """A FrEIA ``state_dict`` (NumPy arrays) of ``model`` (a flowcore model, or its tree
    with ``params``), for FrEIA ``version`` (``"0.2"``/``"anomalib"`` or ``"master"``):
    the inverse of :func:`params_from_freia`. Floating values keep the parameters' dtype.
    A block that the version lacks, or computes differently (an AllInOneBlock whose
    ``soft_clamp`` is not the version's), is an error."""
    tree = model if isinstance(model, Node) else tree_of(model)
    if tree.path:
        raise ParameterError("params_to_freia: give a model, or the root of its tree")
    if params is None:
        params = get_params(model)
    resolved = _version(version)
    assert resolved is not None
    floats = [np.asarray(v).dtype for v in params.values() if np.asarray(v).dtype.kind == "f"]
    dtype = floats[0] if floats else np.dtype(np.float32)
    state: dict[str, np.ndarray] = {}
    for key_prefix, node in freia_blocks(tree, order):
        local = {node.relative(k): v for k, v in params.items() if _under(k, node.path)}
        where = _where(prefix + key_prefix, node)
        for k, v in block_to_freia(node, local, resolved, where).items():
            state[prefix + key_prefix + k] = v.astype(dtype) if v.dtype.kind == "f" else v
    return state


def _under(name: str, path: str) -> bool:
    return not path or name.startswith(path + ".")


def load_freia_state(
    model: Any,
    state: Mapping[str, Any],
    *,
    version: str | None = None,
    prefix: str = "",
    order: Sequence[str] | None = None,
) -> FreiaVersion:
    """Write a FrEIA or anomalib ``state_dict`` into ``model`` (a flowcore model in any
    backend; :func:`params_from_freia`), all or nothing; returns the version read."""
    params, resolved = _convert_in(tree_of(model), state, version, prefix, order)
    set_params(model, params)
    return resolved


def freia_state(model: Any, *, version: str = "0.2", prefix: str = "") -> dict[str, np.ndarray]:
    """``model``'s parameters as a FrEIA ``version`` ``state_dict`` of NumPy arrays (for
    torch: ``{k: torch.from_numpy(v) for k, v in ...}``); :func:`params_to_freia`."""
    return params_to_freia(model, version=version, prefix=prefix)

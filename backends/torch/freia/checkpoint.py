"""FrEIA's ``state_dict`` layout for the drop-in's modules, both ways.

The drop-in's blocks and containers save and load the layout FrEIA gives the same model
(:mod:`flowcore.interop.freia`), so that a FrEIA or anomalib checkpoint loads with
``load_state_dict`` into the same code with its imports changed, and a drop-in model's
``state_dict`` loads into FrEIA: ``module_list.{i}.`` before each block of a container,
and each block's entries in FrEIA's form (a hard permutation as FrEIA 0.2's 0/1 matrix or
master's index, ActNorm's own keys, ...). The version is the one the module was built
under (:func:`~.versions.use_freia`); on loading, a checkpoint that shows the other
version is refused where the block computes differently (an AllInOneBlock's clamp).

FrEIA 0.2 has no initialisation flag in ActNorm's entries: as in FrEIA 0.2, an
uninitialised ActNorm saves its values as they are, and an ActNorm that loads a state is
initialised. Loading is all or nothing, and always strict within the flow: a missing, surplus or
misshaped key is an error naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from flowcore.interop.freia import (
    FreiaVersion,
    block_from_freia,
    block_to_freia,
    block_version,
    freia_blocks,
)
from flowcore.models import Unconditioned
from flowcore.transforms import ActNorm
from flowcore.tree import Node as TreeNode


def _tensor(value: Any, like: torch.Tensor | None) -> torch.Tensor:
    out = torch.as_tensor(value)
    if like is not None:
        dtype = like.dtype if out.is_floating_point() and like.is_floating_point() else out.dtype
        out = out.to(device=like.device, dtype=dtype)
    return out


def _entries(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The entries under ``prefix``, by name relative to it."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _take(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Remove and return the entries under ``prefix``, by name relative to it."""
    keys = [k for k in state if k.startswith(prefix)]
    return {k[len(prefix) :]: state.pop(k) for k in keys}


def _like(module: nn.Module) -> torch.Tensor | None:
    return next(iter(module.parameters()), next(iter(module.buffers()), None))


def _save_block(
    node: TreeNode, entries: dict[str, Any], version: FreiaVersion, like: torch.Tensor | None
) -> dict[str, Any]:
    values = {k: _detached(v) for k, v in entries.items()}
    if version == "0.2" and isinstance(_inner_spec(node), ActNorm):
        # FrEIA 0.2 has no flag: it saves an uninitialised ActNorm's values as they are,
        # and marks every ActNorm that loads a state initialised.
        values = {k: torch.ones(1) if k.endswith("initialised") else v for k, v in values.items()}
    converted = block_to_freia(node, values, version)
    return {
        k: entries[k] if k in entries and _unchanged(entries[k], v) else _tensor(v, like)
        for k, v in converted.items()
    }


def _inner_spec(node: TreeNode) -> Any:
    while isinstance(node.spec, Unconditioned):
        node = node.children["inner"]
    return node.spec


def _detached(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


def _unchanged(tensor: Any, array: Any) -> bool:
    """Whether the converter kept an entry as it was (then the tensor itself is kept)."""
    if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(array.shape):
        return False
    return bool(torch.equal(tensor.detach().cpu(), torch.as_tensor(array).to(tensor.dtype)))


def _load_block(
    node: TreeNode, entries: dict[str, Any], built: FreiaVersion, like: torch.Tensor | None
) -> dict[str, Any]:
    version = block_version(node, entries) or built
    return {k: _tensor(v, like) for k, v in block_from_freia(node, entries, version).items()}


def install_block_hooks(block: Any) -> None:
    """A FrEIA block (:class:`~.modules.FreiaBlock`) saves and loads FrEIA's entries."""

    def save(module: Any, state: dict[str, Any], prefix: str, metadata: Any) -> None:
        entries = _take(state, prefix)
        state.update(
            {
                prefix + k: v
                for k, v in _save_block(
                    module.flowcore_tree, entries, module.freia_version, _like(module)
                ).items()
            }
        )

    def load(module: Any, state: dict[str, Any], prefix: str, *args: Any) -> None:
        entries = _take(state, prefix)
        converted = _load_block(module.flowcore_tree, entries, module.freia_version, _like(module))
        state.update({prefix + k: v for k, v in converted.items()})

    block.register_state_dict_post_hook(save)
    block.register_load_state_dict_pre_hook(load)


def install_container_hooks(container: Any, is_block: Callable[[nn.Module], bool]) -> None:
    """A drop-in SequenceINN or GraphINN saves and loads FrEIA's ``module_list.{i}.``
    layout; blocks for which ``is_block`` holds convert their own entries (their hooks run
    first on saving and after this on loading), the container converts the others. Every
    block's entries are checked before any block loads, so that loading is all or nothing."""

    def blocks(module: Any) -> list[tuple[str, str, TreeNode, nn.Module]]:
        out = []
        for key_prefix, node in freia_blocks(module.flowcore_tree, strict=False):
            name = module.flowcore_tree.relative(node.path)
            out.append((key_prefix, name, node, module._modules[name]))
        return out

    def save(module: Any, state: dict[str, Any], prefix: str, metadata: Any) -> None:
        for key_prefix, name, node, child in blocks(module):
            entries = _take(state, f"{prefix}{name}.")
            if not is_block(child):
                entries = _save_block(node, entries, module.freia_version, _like(module))
            state.update({prefix + key_prefix + k: v for k, v in entries.items()})

    def load(module: Any, state: dict[str, Any], prefix: str, *args: Any) -> None:
        converted = {}
        for key_prefix, name, node, child in blocks(module):
            entries = _entries(state, prefix + key_prefix)
            owner = child if is_block(child) else module  # whose build version applies
            version = cast(FreiaVersion, owner.freia_version)
            canonical = _load_block(node, entries, version, _like(module))  # checks all first
            converted[name] = entries if is_block(child) else canonical
        for key_prefix, name, _, _ in blocks(module):
            _take(state, prefix + key_prefix)
            state.update({f"{prefix}{name}.{k}": v for k, v in converted[name].items()})

    container.register_state_dict_post_hook(save)
    container.register_load_state_dict_pre_hook(load)

"""Training memory against depth in torch: the activations autograd keeps for the backward
pass of a flow's negative log-likelihood, flowcore against FrEIA 0.2.

The flows are ``flowcore bench``'s ``dense`` configuration (AllInOneBlocks on D=64, MLP
256-256 subnets, batch 1024) at several depths. What is counted is exact, not sampled: every
tensor autograd saves during the forward pass (``torch.autograd.graph.saved_tensors_hooks``),
each storage once, parameters excluded (they are kept whatever the training does). Run
``python benchmarks/memory.py [--depths 8,32,64]`` (needs torch; FrEIA 0.2 for its column).
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable

import torch
from flowcore.backends.torch.bench import freia_flow
from flowcore.backends.torch.namespace import XP

import flowcore as fc
from flowcore.bench import CONFIGS, Config
from flowcore.density import standard_normal_log_prob

MIB = 2**20


def saved_bytes(loss: Callable[[], torch.Tensor], params: list[torch.Tensor]) -> int:
    """Bytes of the distinct non-parameter storages autograd saves while ``loss`` runs."""
    kept = {p.untyped_storage().data_ptr() for p in params}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in kept:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss()
    return sum(seen.values())


def flowcore_loss(config: Config, x: torch.Tensor) -> tuple[Callable[[], torch.Tensor], list]:
    flow = fc.build(config.spec(), config.shape, backend="torch", seed=0)
    return (lambda: -fc.log_prob(flow, x).mean()), list(flow.parameters())


def freia_loss(config: Config, x: torch.Tensor) -> tuple[Callable[[], torch.Tensor], list]:
    flow = freia_flow(config)

    def loss() -> torch.Tensor:
        z, log_det = flow(x)
        return -(standard_normal_log_prob(XP, [z]) + log_det).mean()

    return loss, list(flow.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depths", default="8,16,32,64")
    args = parser.parse_args()
    flows = {"flowcore": flowcore_loss}
    if importlib.util.find_spec("FrEIA") is not None:
        flows["FrEIA 0.2"] = freia_loss
    print("blocks  " + "  ".join(f"{name:>12s}" for name in flows) + "   (MiB kept for backward)")
    for depth in (int(d) for d in args.depths.split(",")):
        config = CONFIGS["dense"].resized(blocks=depth)
        x = torch.randn(config.batch, *config.shape)
        sizes = [saved_bytes(*make(config, x)) / MIB for make in flows.values()]
        print(f"{depth:6d}  " + "  ".join(f"{s:12.1f}" for s in sizes))


if __name__ == "__main__":
    main()

"""``flowcore bench``'s workloads in PyTorch: the flow, the floor and FrEIA 0.2.

- ``flowcore``: the torch module, eager, and its ``run`` under ``torch.compile(fullgraph=True)``;
- ``floor``: the same subnets as ``torch.nn`` layers, each run on an input of the shape the
  flow gives it (a leaf that requires grad, since in the flow every subnet's input depends on
  the blocks before), eager and under ``torch.compile``; ``inverse`` runs the same subnets;
- ``freia``: FrEIA 0.2's ``SequenceINN`` of ``AllInOneBlock`` s with those subnets, eager.

``train`` is forward, negative log-likelihood (the floor: the mean square of every subnet's
output), backward and one Adam step; ``forward`` and ``inverse`` run under ``no_grad``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from flowcore.api import build
from flowcore.bench import Config, Workload
from flowcore.density import standard_normal_log_prob

from .namespace import XP

LABEL = "torch"


def subnet(config: Config, block: int, c_in: int, c_out: int) -> nn.Module:
    """Block ``block``'s subnet as ``torch.nn`` layers: what flowcore's MLP or ConvNet
    computes (ReLU between layers)."""
    widths = [c_in, *config.hidden, c_out]
    kernel = config.kernel(block)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
        if kernel is None:
            layers.append(nn.Linear(a, b))
        else:
            layers.append(nn.Conv2d(a, b, kernel, padding=kernel // 2))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else lambda: None


def _trainer(
    params: Any, loss: Callable[[], torch.Tensor], sync: Callable[[], None]
) -> Callable[[], None]:
    optimizer = torch.optim.Adam(params, lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()
        sync()

    return step


def _no_grad(fn: Callable[[], Any], sync: Callable[[], None]) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            fn()
        sync()

    return step


def _flowcore(config: Config, x: torch.Tensor, device: str, sync: Any) -> list[Workload]:
    flow = build(config.spec(), config.shape, backend="torch", seed=0, device=device)
    with torch.no_grad():
        z, _ = flow(x)
    run = torch.compile(flow.run, fullgraph=True)

    def nll(call: Callable[..., Any]) -> torch.Tensor:
        zs, log_det = call([x], [], False, True)
        return -(standard_normal_log_prob(XP, zs) + log_det).mean()

    compiled_nll = torch.compile(lambda: nll(flow.run), fullgraph=True)
    steps = {
        ("eager", "forward"): _no_grad(lambda: flow(x), sync),
        ("eager", "inverse"): _no_grad(lambda: flow(z, rev=True), sync),
        ("eager", "train"): _trainer(flow.parameters(), lambda: nll(flow.run), sync),
        ("compiled", "forward"): _no_grad(lambda: run([x], [], False, True), sync),
        ("compiled", "inverse"): _no_grad(lambda: run([z], [], True, True), sync),
        ("compiled", "train"): _trainer(flow.parameters(), compiled_nll, sync),
    }
    return [Workload(LABEL, "flowcore", mode, task, step) for (mode, task), step in steps.items()]


def _floor(config: Config, x: torch.Tensor, device: str, sync: Any) -> list[Workload]:
    read, changed = config.split
    nets = nn.ModuleList(subnet(config, i, read, 2 * changed) for i in range(config.blocks))
    nets = nets.to(device)
    inputs = x[:, :read].detach().clone().requires_grad_(True)

    def apply() -> list[torch.Tensor]:
        return [net(inputs) for net in nets]

    def loss() -> torch.Tensor:
        return sum((out.square().mean() for out in apply()), torch.zeros((), device=device))

    compiled_apply, compiled_loss = torch.compile(apply), torch.compile(loss)
    workloads = []
    for mode, fn, cost in (("eager", apply, loss), ("compiled", compiled_apply, compiled_loss)):
        workloads += [
            Workload(LABEL, "floor", mode, "forward", _no_grad(fn, sync)),
            Workload(LABEL, "floor", mode, "inverse", _no_grad(fn, sync)),
            Workload(LABEL, "floor", mode, "train", _trainer(nets.parameters(), cost, sync)),
        ]
    return workloads


def freia_flow(config: Config) -> nn.Module:
    """FrEIA 0.2's ``SequenceINN`` of ``config.blocks`` ``AllInOneBlock`` s with
    :func:`subnet` s: the peer of ``config``'s flow."""
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    flow = Ff.SequenceINN(*config.shape)
    for i in range(config.blocks):
        flow.append(
            Fm.AllInOneBlock,
            subnet_constructor=lambda c_in, c_out, i=i: subnet(config, i, c_in, c_out),
        )
    return flow


def _freia(config: Config, x: torch.Tensor, device: str, sync: Any) -> list[Workload]:
    if importlib.util.find_spec("FrEIA") is None:
        return []
    flow = freia_flow(config).to(device)
    with torch.no_grad():
        z, _ = flow(x)

    def nll() -> torch.Tensor:
        out, log_det = flow(x)
        return -(standard_normal_log_prob(XP, [out]) + log_det).mean()

    return [
        Workload(LABEL, "freia", "eager", "forward", _no_grad(lambda: flow(x), sync)),
        Workload(LABEL, "freia", "eager", "inverse", _no_grad(lambda: flow(z, rev=True), sync)),
        Workload(LABEL, "freia", "eager", "train", _trainer(flow.parameters(), nll, sync)),
    ]


def workloads(config: Config, x: np.ndarray, device: str, threads: int) -> list[Workload]:
    """Every torch workload of ``config`` on the batch ``x`` (float32)."""
    torch.set_num_threads(threads)
    torch._dynamo.reset()
    torch.manual_seed(0)
    xt = torch.as_tensor(x, device=device)
    sync = _sync(device)
    return [
        *_flowcore(config, xt, device, sync),
        *_floor(config, xt, device, sync),
        *_freia(config, xt, device, sync),
    ]

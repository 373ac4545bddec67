"""A FastFlow-style flow written as FrEIA code, trained in PyTorch, carried to JAX.

The flow is built with the FrEIA drop-in (FrEIA's imports pointed at flowcore), trained a
few Adam steps in PyTorch, saved as a FrEIA ``state_dict`` (the file FrEIA or anomalib
would write), and read into a JAX model with :func:`flowcore.backends.torch.freia.from_freia`:
both compute the same latents and log-dets. Needs ``pip install -e ".[torch,jax]"``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import flowcore.backends.torch.freia.framework as Ff  # was: import FrEIA.framework as Ff
import flowcore.backends.torch.freia.modules as Fm  # was: import FrEIA.modules as Fm
import numpy as np
import torch
from flowcore.backends.torch.freia import from_freia
from torch import nn

CHANNELS, SIZE = 8, 6


def subnet(kernel: int) -> Callable[[int, int], nn.Module]:
    """FastFlow's subnet: explicit zero padding, a conv, ReLU, and again."""

    def make(c_in: int, c_out: int) -> nn.Module:
        pad = kernel // 2
        return nn.Sequential(
            nn.ZeroPad2d(pad), nn.Conv2d(c_in, c_in, kernel), nn.ReLU(),
            nn.ZeroPad2d(pad), nn.Conv2d(c_in, c_out, kernel),
        )  # fmt: skip

    return make


def main() -> None:
    torch.manual_seed(0)
    flow = Ff.SequenceINN(CHANNELS, SIZE, SIZE)
    for k in range(4):
        flow.append(
            Fm.AllInOneBlock, subnet_constructor=subnet(3 if k % 2 == 0 else 1),
            affine_clamping=2.0, permute_soft=False,
        )  # fmt: skip

    features = torch.randn(64, CHANNELS, SIZE, SIZE)
    optimiser = torch.optim.Adam(flow.parameters(), lr=1e-3)
    for step in range(20):
        z, log_det = flow(features)
        loss = torch.mean(0.5 * torch.sum(z**2, dim=(1, 2, 3)) - log_det)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 5 == 0:
            print(f"step {step:2d}  loss {loss.item():.3f}")

    with tempfile.NamedTemporaryFile(suffix=".pt") as file:
        torch.save(flow.state_dict(), file.name)  # FrEIA 0.2's keys: module_list.0.w_perm ...
        flow.load_state_dict(torch.load(file.name))
    print("checkpoint keys:", *list(flow.state_dict())[:3], "...")

    jax_flow = from_freia(flow, backend="jax")
    x = features[:8]
    want, want_log_det = flow(x)
    got, got_log_det = jax_flow(x.numpy())
    dz = np.abs(np.asarray(got) - want.detach().numpy()).max()
    d_log_det = np.abs(np.asarray(got_log_det) - want_log_det.detach().numpy()).max()
    print(f"JAX vs PyTorch (float32): max |dz| = {dz:.2e}, max |d log det| = {d_log_det:.2e}")


if __name__ == "__main__":
    main()

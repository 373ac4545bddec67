"""Forward+inverse time of a 16-block AllInOneBlock flow: flowcore (torch) vs FrEIA 0.2.

Both run the same architecture (D=8, batch 64, MLP subnet 8->64->8) on one CPU thread;
the script prints the median time per call of each and their ratio. Run:
``python benchmarks/torch_vs_freia.py`` (needs torch and freia==0.2).
"""

from __future__ import annotations

import timeit

import torch

import flowcore as fc

BLOCKS, DIM, BATCH, HIDDEN = 16, 8, 64, 64


def freia_flow() -> torch.nn.Module:
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    def subnet(c_in: int, c_out: int) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Linear(c_in, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, c_out)
        )

    net = Ff.SequenceINN(DIM)
    for _ in range(BLOCKS):
        net.append(Fm.AllInOneBlock, subnet_constructor=subnet)
    return net


def flowcore_flow() -> torch.nn.Module:
    block = fc.AllInOneBlock(subnet=fc.MLP(hidden=(HIDDEN,)))
    return fc.build(fc.SequenceINN(*[block] * BLOCKS), (DIM,), backend="torch", seed=0)


def median_ms(net: torch.nn.Module, x: torch.Tensor, repeats: int = 7, number: int = 50) -> float:
    def step() -> None:
        z, _ = net(x)
        net(z, rev=True)

    with torch.no_grad():
        step()
        times = timeit.repeat(step, repeat=repeats, number=number)
    return sorted(times)[repeats // 2] / number * 1e3


def main() -> None:
    torch.set_num_threads(1)
    x = torch.randn(BATCH, DIM)
    ours, theirs = median_ms(flowcore_flow(), x), median_ms(freia_flow(), x)
    print(f"{BLOCKS} AllInOneBlocks, D={DIM}, batch {BATCH}, forward+inverse, 1 thread")
    print(
        f"  FrEIA 0.2: {theirs:.2f} ms   flowcore: {ours:.2f} ms   "
        f"ratio flowcore/FrEIA: {ours / theirs:.2f}"
    )


if __name__ == "__main__":
    main()

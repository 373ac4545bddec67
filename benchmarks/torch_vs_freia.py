"""Forward+inverse time of a 16-block AllInOneBlock flow: flowcore (torch) vs FrEIA 0.2.

Both run the same architecture (D=8, batch 64, MLP subnet 8->64->8) on one CPU thread;
the script times them in alternating rounds and prints the median time per call of each and
the median of the per-round ratios. Run:
``python benchmarks/torch_vs_freia.py`` (needs torch and freia==0.2).
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable

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


def step_of(net: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        z, _ = net(x)
        net(z, rev=True)

    return step


def interleaved_ms(
    steps: dict[str, Callable[[], None]], rounds: int = 15, number: int = 40
) -> dict[str, list[float]]:
    """Per-call times (ms) of each step, measured in alternating rounds after a warm-up, so
    that the machine's drift touches every contestant alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    with torch.no_grad():
        for step in steps.values():
            step()
        for _ in range(rounds):
            for name, step in steps.items():
                times[name].append(timeit.timeit(step, number=number) / number * 1e3)
    return times


def main() -> None:
    torch.set_num_threads(1)
    x = torch.randn(BATCH, DIM)
    times = interleaved_ms(
        {"flowcore": step_of(flowcore_flow(), x), "freia": step_of(freia_flow(), x)}
    )
    ours, theirs = statistics.median(times["flowcore"]), statistics.median(times["freia"])
    ratio = statistics.median(
        a / b for a, b in zip(times["flowcore"], times["freia"], strict=True)
    )
    print(f"{BLOCKS} AllInOneBlocks, D={DIM}, batch {BATCH}, forward+inverse, 1 thread")
    print(
        f"  FrEIA 0.2: {theirs:.2f} ms   flowcore: {ours:.2f} ms   "
        f"ratio flowcore/FrEIA (median of {len(times['freia'])} interleaved rounds): {ratio:.2f}"
    )


if __name__ == "__main__":
    main()

"""``flowcore bench``: what it times is what it says (the floor runs the flow's subnets, and
nothing else), its rounds interleave, its ratios are per round, and its command refuses bad
arguments. Speed itself is measured by running it, never asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from selected_backends import require

import flowcore as fc
from flowcore.bench import CONFIGS, Workload, cli, report, timing
from flowcore.cli import main


@pytest.fixture
def unpinned(monkeypatch):
    """The command's thread pinning would bind this test process to one core."""
    monkeypatch.setattr(cli, "pin_threads", lambda threads: None)


def test_each_round_runs_every_workload_once_in_a_rotated_order():
    calls: list[str] = []
    workloads = [Workload("b", s, "eager", "forward", lambda s=s: calls.append(s)) for s in "xyz"]
    measured = timing.measure(workloads, rounds=3, number=2)
    timed = calls[6:]  # after a warm-up and a sizing call each
    rounds = [timed[i : i + 6] for i in range(0, 18, 6)]
    assert [r[::2] for r in rounds] == [list("xyz"), list("yzx"), list("zxy")]
    assert all(len(m.round_ms) == 3 and m.warmup_s >= 0 for m in measured)


def test_ratios_are_medians_of_per_round_ratios():
    top = timing.Measurement(Workload("b", "flowcore", "eager", "train", print), 0.0)
    floor = timing.Measurement(Workload("b", "floor", "eager", "train", print), 0.0)
    peer = timing.Measurement(Workload("b", "freia", "eager", "train", print), 0.0)
    top.round_ms, floor.round_ms, peer.round_ms = [2, 4, 30], [1, 1, 10], [4, 4, 4]
    # per round 2, 4, 3 -> 3; medians alone would give 4 / 1
    (row,) = report.rows("tiny", [top, floor, peer])
    assert row["vs_floor"] == 3.0 and row["vs"] == {"freia": 1.0} and row["ms"] == 4


def test_a_compiled_row_falls_back_to_an_eager_peer():
    compiled = timing.Measurement(Workload("b", "flowcore", "compiled", "forward", print), 1.0)
    peer = timing.Measurement(Workload("b", "freia", "eager", "forward", print), 0.0)
    compiled.round_ms, peer.round_ms = [1.0], [4.0]
    (row,) = report.rows("tiny", [compiled, peer])
    assert row["vs"] == {"freia": 0.25} and row["vs_floor"] is None and row["warmup_s"] == 1.0


def _floor_sizes(backend: str, config) -> list[int]:
    """The sizes of the floor's parameter arrays, as that backend's bench module makes them."""
    read, changed = config.split
    if backend == "torch":
        from flowcore.backends.torch import bench

        nets = [bench.subnet(config, i, read, 2 * changed) for i in range(config.blocks)]
        return sorted(p.numel() for net in nets for p in net.parameters())
    if backend == "keras":
        from flowcore.backends.keras import bench

        shape = (*config.shape[1:], read) if config.kernels else (read,)  # channels last
        nets = [bench.subnet(config, i, shape, 2 * changed) for i in range(config.blocks)]
        return sorted(int(np.prod(w.shape)) for net in nets for w in net.weights)
    from flowcore.backends.jax import bench

    rng = np.random.default_rng(0)
    layers = [
        bench.subnet_params(config, i, read, 2 * changed, rng, "cpu") for i in range(config.blocks)
    ]
    return sorted(a.size for net in layers for layer in net for a in layer)


@pytest.mark.parametrize("backend", ["torch", "jax", "keras"])
@pytest.mark.parametrize("name", ["tiny", "conv"])
def test_the_floor_has_exactly_the_flows_subnet_parameters(backend, name):
    require(backend)
    config = CONFIGS[name].resized(blocks=2, batch=2)
    tree = fc.build_tree(config.spec(), [config.shape])
    in_flow = sorted(
        int(np.prod(spec.shape))
        for path, spec in tree.param_specs().items()
        if ".subnet." in f".{path}."
    )
    assert in_flow == _floor_sizes(backend, config) and in_flow
    x = np.zeros((2, *config.shape), np.float32)
    found = fc.get_backend(backend).bench_steps(config, x, "cpu", 1)
    subjects = {(w.subject, w.mode, w.task) for w in found}
    for mode in timing.MODES:
        for task in timing.TASKS:
            assert {("flowcore", mode, task), ("floor", mode, task)} <= subjects


def test_the_command_writes_a_table_json_and_a_plot(tmp_path, capsys, unpinned):
    require("torch")
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib (extra 'examples')")
    args = ["--backends", "torch", "--configs", "tiny", "--blocks", "1", "--batch", "4"]
    args += ["--modes", "eager", "--rounds", "1", "--number", "1"]
    args += ["--json", str(tmp_path / "rows.json"), "--plot", str(tmp_path / "ratios.png")]
    assert main(["bench", *args]) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [(r["mode"], r["task"]) for r in rows] == [("eager", t) for t in timing.TASKS]
    assert all(r["ms"] > 0 and r["vs_floor"] > 0 for r in rows)
    assert (tmp_path / "ratios.png").stat().st_size > 1000
    assert "vs floor" in capsys.readouterr().out


def test_the_command_refuses_unknown_backends_configs_and_sizes(capsys):
    for args, message in (
        (["--backends", "numpy"], "backends not installed or unknown: ['numpy']"),
        (["--blocks", "0"], "argument --blocks: must be an int >= 1, got 0"),
        (["--configs", "huge"], "argument --configs: choose from"),
    ):
        with pytest.raises(SystemExit) as raised:
            main(["bench", *args])
        assert raised.value.code == 2 and message in capsys.readouterr().err


def test_threads_are_pinned_before_frameworks_start():
    code = (
        "import os; from flowcore.bench.timing import pin_threads; pin_threads(1); "
        "print(len(os.sched_getaffinity(0)), os.environ['OMP_NUM_THREADS'], "
        "'multi_thread_eigen=false' in os.environ['XLA_FLAGS'])"
    )
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("this platform cannot bind a process to cores")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "True"]


def test_a_backend_without_the_hook_is_reported_not_benchmarked(monkeypatch, capsys, unpinned):
    import types

    from flowcore import backend as registry

    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    monkeypatch.setattr(registry, "_LOADED", dict(registry._LOADED))
    module = types.ModuleType("hookless_backend")
    module.BACKEND = types.SimpleNamespace(name="hookless")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    fc.register(fc.BackendInfo("hookless", module.__name__, ("numpy",)))
    assert main(["bench", "--backends", "hookless", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "not benchmarked: backend 'hookless' has no bench_steps hook" in out

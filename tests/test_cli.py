"""``flowcore info``, ``conformance`` and ``bench``; ``convert`` is test_convert.py's."""

from __future__ import annotations

import json

import pytest
from selected_backends import require

import flowcore as fc
from flowcore.backend import registered
from flowcore.cli import info_lines, main


def test_info_names_every_registered_backend_with_versions_and_devices():
    lines = info_lines()
    assert lines[0].startswith("flowcore ") and " on Python 3." in lines[0]
    assert "numpy 2." in lines[1] or "numpy 1." in lines[1]
    for name in registered():
        (line,) = [row for row in lines if row.strip().startswith(name + " ")]
        if name in fc.installed_backends():
            assert "devices: " in line and "cpu" in line and "not installed" not in line
        else:
            assert line.endswith("not installed")


def test_info_prints_and_exits_0(capsys):
    assert main(["info"]) == 0
    assert capsys.readouterr().out.splitlines() == info_lines()


def test_conformance_runs_the_suite(capsys):
    require("torch")
    assert (
        main(["conformance", "--backends", "torch", "--cases", "gyoza_heaviside_perm_contiguous"])
        == 0
    )
    out = capsys.readouterr().out
    assert "HeavisidePermutation" in out and "torch" in out


def test_an_unknown_command_or_argument_is_refused():
    with pytest.raises(SystemExit) as raised:
        main(["train"])
    assert raised.value.code == 2
    with pytest.raises(SystemExit):
        main(["info", "--verbose"])


def test_bench_times_both_workloads_with_ratios_to_torch(capsys):
    require("torch")
    args = ["bench", "--backends", "torch", "--blocks", "2", "--repeats", "1", "--number", "1"]
    assert main([*args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["backend"], r["workload"]) for r in rows] == [("torch", "apply"), ("torch", "grad")]
    assert all(r["ms"] > 0 and r["ratio_to_torch"] == 1.0 for r in rows)


def test_bench_refuses_unknown_backends_and_bad_sizes(capsys):
    for args, message in (
        (["--backends", "numpy"], "backends not installed or unknown: ['numpy']"),
        (["--blocks", "0"], "argument --blocks: must be an int >= 1, got 0"),
    ):
        with pytest.raises(SystemExit) as raised:
            main(["bench", *args])
        assert raised.value.code == 2 and message in capsys.readouterr().err

"""``flowcore info`` and ``conformance``; ``bench`` is test_bench.py's, ``convert``
test_convert.py's."""

from __future__ import annotations

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

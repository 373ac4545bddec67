"""The conformance suite itself: a third-party backend registers and runs it, and a backend
that computes a wrong log-det fails exactly the checks that should catch it."""

from __future__ import annotations

import json
import re
import sys
import types

import pytest

pytest.importorskip("torch", reason="the test backends wrap the PyTorch backend")

from flowcore.backends.torch import TorchBackend  # noqa: E402
from flowcore.conformance import cases, checks, cli, plan  # noqa: E402

import flowcore as fc  # noqa: E402
from flowcore import backend as registry  # noqa: E402


class Renamed(TorchBackend):
    """A correct third-party backend: PyTorch under another name."""

    name = "third_party"


class WrongLogDet(TorchBackend):
    """A backend whose forward log-det is off by 1e-3."""

    name = "wrong_log_det"

    def call(self, module, xs, cs, rev, jac):
        ys, log_det = super().call(module, xs, cs, rev, jac)
        return ys, log_det if rev else log_det + 1e-3


third_party = Renamed()
wrong_log_det = WrongLogDet()


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    """Both backends registered as a third party does, each module exposing BACKEND."""
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    monkeypatch.setattr(registry, "_LOADED", dict(registry._LOADED))
    for backend in (third_party, wrong_log_det):
        module = types.ModuleType(f"plugin_{backend.name}")
        module.BACKEND = backend
        monkeypatch.setitem(sys.modules, module.__name__, module)
        fc.register(fc.BackendInfo(backend.name, module.__name__, ("torch",)))


def _outcomes(name: str, dtype: str = "float64") -> dict[str, set[str]]:
    selection = plan.select_backends([name])
    items = plan.single_items(selection, cases.select("aio_vec_default"), [dtype], {})
    by_status: dict[str, set[str]] = {}
    for item in items:
        if item.device == "cpu":
            by_status.setdefault(plan.run_item(item).status, set()).add(item.check)
    return by_status


def test_a_registered_third_party_backend_passes_every_check(capsys, monkeypatch):
    # aio_vec_default runs the sliced checks (each transform once) in float32, unless the
    # run asks for the full matrix
    monkeypatch.delenv(plan.ENV_SLICED, raising=False)
    assert _outcomes("third_party", "float32") == {"passed": set(checks.SINGLE_CHECKS)}
    unsliced = set(checks.SINGLE_CHECKS) - set(checks.SLICED_CHECKS)
    assert _outcomes("third_party") == {"passed": unsliced}
    assert cli.main(["--backends", "third_party", "--cases", "aio_vec_default"]) == 0
    out = capsys.readouterr().out  # passed, then failed, xfailed, not run
    assert re.search(rf"third_party +float32 +cpu +{len(checks.SINGLE_CHECKS)} +0 +0 +0 ", out)
    assert re.search(rf"third_party +float64 +cpu +{len(unsliced)} +0 +0 +0 ", out)


def test_the_report_has_a_row_per_transform_of_the_cases(capsys):
    assert cli.main(["--backends", "third_party", "--cases", "sequence_vec_conditions"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("per transform") :]
    # the sequence's blocks get the row, not the container; a column per check
    assert re.search(r"transform +init +shapes +forward +inverse +roundtrip", table)
    assert re.search(r"AllInOneBlock +ok 0e\+00 +ok +ok \de-\d\d +ok \de-\d\d", table)
    assert "SequenceINN " not in table


def test_the_command_filters_and_writes_json_and_markdown(tmp_path, capsys):
    args = ["--backend", "third_party", "--dtype", "float64", "--device", "cpu,tpu"]
    args += ["--check", "forward,batch", "--cases", "aio_vec_default"]
    args += ["--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]
    assert cli.main(args) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    ran = {(o["check"], o["device"], o["status"]) for o in data["outcomes"]}
    assert ran == {("forward", "cpu", "passed"), ("batch", "cpu", "passed"),
                   ("all", "tpu", "not run")}  # fmt: skip
    assert data["counts"] == {"passed": 2, "failed": 0, "xfailed": 0, "not run": 1}
    assert data["command"].startswith("flowcore conformance --backend third_party")
    page = (tmp_path / "r.md").read_text()
    assert page.startswith("# Conformance report\n")
    assert "| AllInOneBlock | ok " in page and "- 1  no tpu device for third_party here" in page
    assert "3 checks (2 passed, 0 failed, 0 xfailed, 1 not run)" in capsys.readouterr().out


def test_a_wrong_log_det_fails_the_checks_that_see_it(capsys):
    outcomes = _outcomes("wrong_log_det")
    assert outcomes["failed"] == {"forward", "roundtrip", "jacobian"}
    assert outcomes["passed"] == {"init", "shapes", "inverse", "gradients", "nonfinite", "batch"}
    assert cli.main(["--backends", "wrong_log_det", "--cases", "aio_vec_default"]) == 1
    assert (
        "forward-wrong_log_det-aio_vec_default-float64-cpu: forward log_det"
        in capsys.readouterr().out
    )


def test_an_unknown_backend_is_not_run_and_the_cli_says_nothing_ran(capsys):
    selection = plan.select_backends(["no_such_backend"])
    assert "is not registered" in selection.not_run["no_such_backend"]
    assert cli.main(["--backends", "no_such_backend"]) == 1
    assert "backend 'no_such_backend' is not registered" in capsys.readouterr().out


def test_xfail_entries_need_a_reason(tmp_path):
    entries = tmp_path / "xfails.txt"
    entries.write_text("jacobian-mine-*  # slogdet in float32 is off\n")
    assert plan.load_xfails([entries])["jacobian-mine-*"] == "slogdet in float32 is off"
    entries.write_text("jacobian-mine-*\n")
    with pytest.raises(ValueError, match="xfails.txt:1: an xfail entry needs '# reason'"):
        plan.load_xfails([entries])


def test_xfails_are_strict():
    selection = plan.select_backends(["wrong_log_det"])
    xfails = {"*-wrong_log_det-aio_vec_default-float64-cpu": "known to be off"}
    chosen = cases.select("aio_vec_default")
    items = plan.single_items(selection, chosen, ["float64"], xfails)
    by_check = {item.check: item for item in items if item.device == "cpu"}
    assert plan.run_item(by_check["forward"]).status == "xfailed"
    outcome = plan.run_item(by_check["inverse"])  # it passes, so its entry is stale
    assert outcome.status == "failed"
    assert outcome.message == "passed but listed as xfail: known to be off"


def test_a_missing_device_is_one_not_run_item_per_backend_and_device():
    """Not one skip per check, case and dtype (torch has no tpu; a CPU build no cuda)."""
    selection = plan.select_backends(["third_party"])
    present = list(third_party.devices())
    lacking = [d for d in plan.KNOWN_DEVICES if d not in present]
    assert "tpu" in lacking
    absent = list(plan.absent_device_items(selection))
    assert [(i.device, i.not_run) for i in absent] == [
        (d, f"no {d} device for third_party here") for d in lacking
    ]
    items = plan.single_items(selection, cases.select("aio_vec"), list(plan.DTYPES), {})
    assert {i.device for i in items} == set(present)
    assert {plan.run_item(i).status for i in absent} == {"not run"}


def test_the_sliced_checks_run_on_their_slice_or_everywhere(monkeypatch):
    """By default `compiled` runs each transform once in one dtype; `all` (the full matrix)
    runs it on every case and dtype; an unknown scope is refused."""
    monkeypatch.delenv(plan.ENV_SLICED, raising=False)
    selection = plan.select_backends(["third_party"])
    chosen = cases.select("aio")

    def compiled(sliced: str | None) -> set[tuple[str, str]]:
        items = plan.items(selection, chosen, None, {}, ["cpu"], ["compiled"], ("single",), sliced)
        return {(i.case, i.dtype) for i in items if i.check == "compiled"}

    everything = {(c.name, d) for c in chosen for d in plan.DTYPES}
    assert compiled("all") == everything
    assert 0 < len(compiled(None)) < len({c for c, _ in everything})
    monkeypatch.setenv(plan.ENV_SLICED, "all")
    assert compiled(None) == everything
    with pytest.raises(ValueError, match="SLICED_CHECKS"):
        compiled("most")

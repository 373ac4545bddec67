"""Backend choice, the entry-point registry, and saving/loading across backends."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import flowcore as fc
from flowcore import backend as registry

_wanted = os.environ.get("FLOWCORE_TEST_BACKENDS")
WANTED = [
    b for b in (_wanted.split(",") if _wanted is not None else ["torch", "jax", "keras"]) if b
]


def _installed(name: str):
    return pytest.param(
        name,
        marks=pytest.mark.skipif(
            name not in fc.installed_backends(), reason=f"{name} is not installed"
        ),
    )


def _spec() -> fc.SequenceINN:
    return fc.SequenceINN(
        fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,), zero_init_last=False)),
        fc.AllInOneBlock(
            subnet=fc.MLP(hidden=(8,), zero_init_last=False), permute_soft=True, soft_clamp="tanh"
        ),
        conditions=[None, 0],
    )


@pytest.fixture
def no_default(monkeypatch):
    monkeypatch.delenv("FLOWCORE_BACKEND", raising=False)
    fc.set_backend(None)
    yield
    fc.set_backend(None)


def test_builtins_are_registered_through_entry_points():
    infos = registry._entry_points()
    assert {"torch", "jax", "keras"} <= set(infos)
    assert infos["torch"].module == "flowcore.backends.torch"


def test_missing_choice_lists_installed_backends(no_default, monkeypatch):
    monkeypatch.setattr(registry, "installed_backends", lambda: ["jax", "torch"])
    monkeypatch.setattr("flowcore.api.installed_backends", lambda: ["jax", "torch"])
    with pytest.raises(fc.BackendError, match=r"installed backends: \['jax', 'torch'\]"):
        fc.get_backend()


def test_unknown_and_uninstalled_backends_are_clear_errors(no_default):
    with pytest.raises(fc.BackendError, match="unknown flowcore backend 'mxnet'"):
        fc.build(_spec(), (5,), [(3,)], backend="mxnet")
    fc.register(fc.BackendInfo("ghost", "ghost_backend", ("a_module_that_is_not_installed",)))
    try:
        with pytest.raises(fc.BackendError, match=r"needs \['a_module_that_is_not_installed'\]"):
            fc.get_backend("ghost")
        assert "ghost" not in fc.installed_backends()
    finally:
        registry._REGISTERED.pop("ghost")


@pytest.mark.parametrize("name", [_installed("torch")])
def test_default_from_env_then_set_backend(no_default, monkeypatch, name):
    fc.set_backend(name)
    assert fc.get_backend().name == name
    monkeypatch.setenv("FLOWCORE_BACKEND", "mxnet")
    with pytest.raises(fc.BackendError, match="mxnet"):
        fc.get_backend()  # the environment variable wins over set_backend
    assert fc.get_backend(name).name == name  # an explicit name wins over both


def test_third_party_backend_registers_at_run_time(no_default):
    class Fake:
        name = "fake"

        def build(self, tree, params, dtype, device, seed):
            return ("built", tree.spec, sorted(params), dtype)

    import sys
    import types

    module = types.ModuleType("fake_flowcore_backend")
    module.BACKEND = Fake()
    sys.modules["fake_flowcore_backend"] = module
    fc.register(fc.BackendInfo("fake", "fake_flowcore_backend", ()))
    try:
        built = fc.build(_spec(), (5,), [(3,)], backend="fake", dtype="float64")
        assert built[0] == "built" and "0.global_scale" in built[2] and built[3] == "float64"
    finally:
        registry._REGISTERED.pop("fake")
        registry._LOADED.pop("fake", None)
        del sys.modules["fake_flowcore_backend"]


def test_build_rejects_bad_dtype():
    with pytest.raises(ValueError, match="float32' or 'float64"):
        fc.build(_spec(), (5,), [(3,)], backend="torch", dtype="float16")


PAIRS = [
    pytest.param(
        a,
        b,
        marks=pytest.mark.skipif(
            not {a, b} <= set(fc.installed_backends()), reason=f"needs {a} and {b} installed"
        ),
    )
    for a in WANTED
    for b in WANTED
] or [pytest.param("-", "-", marks=pytest.mark.skip(reason="FLOWCORE_TEST_BACKENDS selects none"))]


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_save_in_one_backend_load_in_another(tmp_path, source, target):
    model = fc.build(
        _spec(),
        (5,),
        [(3,)],
        backend=source,
        seed=4,
        dtype="float64" if source != "jax" else "float32",
    )
    path = tmp_path / "flow.fc"
    fc.save(model, path)
    header, stored = fc.io.read(path)
    assert header["inputs"] == [[5]] and header["conditions"] == [[3]]
    loaded = fc.load(path, backend=target, dtype="float32")
    for name, value in fc.get_params(model).items():
        np.testing.assert_array_equal(
            fc.get_params(loaded)[name], value.astype(fc.get_params(loaded)[name].dtype)
        )
    x = np.random.default_rng(0).standard_normal((4, 5))
    c = np.random.default_rng(1).standard_normal((4, 3))
    (z_ref,), _ = fc.reference(model)([x], [c])
    backend = fc.get_backend(target)
    (z,), _ = backend.call(
        loaded,
        [backend.to_native(x, "float32", "cpu")],
        [backend.to_native(c, "float32", "cpu")],
        False,
        True,
    )
    np.testing.assert_allclose(
        backend.to_numpy(z), z_ref, atol=1e-5
    )  # float32 vs float64 reference


def test_load_refuses_foreign_and_unknown_files(tmp_path):
    import safetensors.numpy

    plain = tmp_path / "plain.safetensors"
    safetensors.numpy.save_file({"w": np.zeros(2)}, plain)
    with pytest.raises(fc.FlowError, match="not a flowcore file"):
        fc.load(plain)
    header = {
        "format": "flowcore",
        "version": 1,
        "spec": {"type": "os:system", "config": {}},
        "inputs": [[2]],
        "conditions": [],
        "dtype": "float32",
    }
    evil = tmp_path / "evil.fc"
    safetensors.numpy.save_file(
        {"w": np.zeros(2, np.float32)}, evil, metadata={"flowcore": json.dumps(header)}
    )
    with pytest.raises(fc.FlowError, match="unknown spec type 'os:system'"):
        fc.load(evil, backend="numpy-never-reached")


@pytest.mark.parametrize("name", [_installed("torch")])
def test_native_subnets_cannot_be_saved(tmp_path, name):
    import torch

    spec = fc.AllInOneBlock(subnet_constructor=lambda a, b: torch.nn.Linear(a, b))
    model = fc.build(spec, (4,), backend=name)
    with pytest.raises(fc.FlowError, match="native subnet_constructor"):
        fc.save(model, tmp_path / "x.fc")


@pytest.mark.parametrize("shape", ["abc", (0,), (-3, 4), (2.5,), [], None])
def test_bad_input_shapes_are_clear_errors(shape):
    with pytest.raises(fc.ShapeError, match="input shape must be positive ints"):
        fc.build(_spec(), shape, [(3,)], backend="no-such-backend")  # shapes are checked first


def test_subnet_must_be_portable_or_a_constructor():
    with pytest.raises(TypeError, match="subnet= takes a portable flowcore.Subnet"):
        fc.AllInOneBlock(subnet=object())
    with pytest.raises(TypeError, match="subnet_constructor must be callable"):
        fc.AllInOneBlock(subnet_constructor=3)

"""``flowcore convert`` and :mod:`flowcore.convert`: a model through every file format and
back, bit for bit; what cannot be converted is named.

Each format's test needs its framework (torch for ``.pt``, Flax for ``.msgpack``, Keras for
``.keras``) and is skipped, with the reason, where it is not selected or installed. A
conversion copies parameters, so the round trips compare them with ``==``, dtypes included.
"""

from __future__ import annotations

import numpy as np
import pytest
from selected_backends import require
from test_gyoza_import import layer, model, norm_weights, write_keras

import flowcore as fc
from flowcore.convert import ConvertError, convert, main, read_any
from flowcore.io import read, write

#: the framework each native format needs
NEEDS = {".keras": "keras", ".pt": "torch", ".pth": "torch", ".msgpack": "jax"}


def _spec() -> fc.SequenceINN:
    return fc.SequenceINN(
        fc.ActNorm(),
        fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,), zero_init_last=False)),
        fc.PermuteRandom(),  # an int64 index buffer, which must stay int64
        conditions=[None, 0, None],
    )


@pytest.fixture
def original(tmp_path):
    """A flowcore file written from parts, so that no backend is needed to make it."""
    tree = fc.build_tree(_spec(), [(3,)], [(2,)])
    params = fc.initial_params(tree, seed=0)
    params = {k: v + 0.25 if v.dtype.kind == "f" else v for k, v in params.items()}
    path = tmp_path / "original.fc"

    as32 = {k: v.astype("float32") if v.dtype.kind == "f" else v for k, v in params.items()}
    write(path, tree.spec, [(3,)], [(2,)], "float32", as32)
    return path


def _same_file(a, b) -> None:
    (header_a, params_a), (header_b, params_b) = read(a), read(b)
    assert header_a == header_b
    assert sorted(params_a) == sorted(params_b)
    for name, value in params_a.items():
        assert params_b[name].dtype == value.dtype, name
        np.testing.assert_array_equal(params_b[name], value, err_msg=name)


@pytest.mark.parametrize("suffix", sorted(NEEDS))
def test_a_model_goes_through_each_native_format_and_back_unchanged(suffix, original, tmp_path):
    require(NEEDS[suffix])
    native = tmp_path / f"native{suffix}"
    convert(original, native)
    like = None if suffix == ".keras" else original  # parameters-only formats
    convert(native, tmp_path / "back.fc", like=like)
    _same_file(original, tmp_path / "back.fc")


def test_the_torch_state_dict_is_the_torch_modules(original, tmp_path):
    require("torch")
    import torch

    convert(original, tmp_path / "flow.pt")
    flow = fc.load(original, backend="torch")
    state = torch.load(tmp_path / "flow.pt", weights_only=True)
    assert state.keys() == flow.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in flow.state_dict().items())


def test_a_keras_archive_loads_as_a_keras_model(original, tmp_path):
    require("keras")
    import flowcore.backends.keras as fk
    import keras

    convert(original, tmp_path / "flow.keras")
    loaded = keras.models.load_model(tmp_path / "flow.keras")
    assert isinstance(loaded, fk.DensityModel)
    x, c = np.ones((2, 3), "float32"), np.ones((2, 2), "float32")
    want = fc.reference(fc.load(original, backend="keras"))([x], [c])[1]
    # float32 weights through one shallow block, against the float64 reference: 1e-5
    np.testing.assert_allclose(
        fc.get_backend("keras").to_numpy(loaded.flow(x, c)[1]), want, rtol=1e-5
    )


def test_a_gyoza_archive_becomes_a_flowcore_file(tmp_path):
    archive = tmp_path / "gyoza.keras"
    write_keras(archive, model(layer("ActivationNormalization")), norm_weights())
    assert main([str(archive), str(tmp_path / "g.fc")]) == 0
    header, params = read(tmp_path / "g.fc")
    assert header["spec"]["type"].endswith(":SequenceINN") and header["inputs"] == [[4]]
    assert header["dtype"] == "float64"  # the fixture's model is float64
    np.testing.assert_array_equal(params["0.scale"], np.full(4, 2.0))
    np.testing.assert_array_equal(params["0.location"], np.arange(4.0))


def test_parameters_only_files_need_the_architecture(original, tmp_path):
    require("torch")
    convert(original, tmp_path / "flow.pt")
    with pytest.raises(
        ConvertError,
        match=r"flow\.pt: a PyTorch state_dict holds parameters only; give the architecture",
    ):
        read_any(tmp_path / "flow.pt")


def test_a_state_dict_of_another_model_is_refused_by_name(original, tmp_path):
    require("torch")
    import torch

    state = fc.load(original, backend="torch").state_dict()
    torch.save({k: v for k, v in state.items() if k != "0.log_scale"}, tmp_path / "less.pt")
    with pytest.raises(ConvertError, match=r"missing \['0\.log_scale'\], unexpected \[\]"):
        read_any(tmp_path / "less.pt", like=original)
    state["1.subnet.0.weight"] = torch.zeros(5, 5)
    torch.save(state, tmp_path / "wrong.pt")
    with pytest.raises(ConvertError, match=r"1\.subnet\.0\.weight has shape \(5, 5\)"):
        read_any(tmp_path / "wrong.pt", like=original)


def test_the_command_names_what_it_cannot_convert(original, tmp_path, capsys):
    assert main([str(original), str(tmp_path / "x.txt")]) == 2
    assert "unknown format '.txt'" in capsys.readouterr().err
    assert main([str(tmp_path / "absent.fc"), str(tmp_path / "y.fc")]) == 2
    assert "absent.fc: no such file" in capsys.readouterr().err
    (tmp_path / "text.keras").write_text("not an archive")
    assert main([str(tmp_path / "text.keras"), str(tmp_path / "z.fc")]) == 2
    assert "not a Keras .keras archive" in capsys.readouterr().err

"""flowcore.interop.gyoza without gyoza: Keras' saved names, and every refusal named.

gyoza itself (Python >= 3.12, TensorFlow) is the oracle of tests/test_gyoza_oracle.py, in
the tox env ``gyoza``; these tests need neither. They give the importer the configs and
weights files gyoza's Keras writes, in the layout read off gyoza 0.3.0's own saves
(``layers/<class in snake case>[_k]/vars/<i>``), and check the names, the spec and each
error message.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import flowcore as fc
from flowcore.interop.gyoza import (
    GyozaImportError,
    gyoza_params,
    read_gyoza,
    saved_names,
    snake_case,
    spec_from_gyoza_config,
)
from flowcore.layers import ReLU

h5py = pytest.importorskip("h5py", reason="h5py (flowcore's test extra) is not installed")


def test_snake_case_is_keras_naming():
    assert snake_case("CheckerBoardPermutation") == "checker_board_permutation"
    assert snake_case("ActivationNormalization") == "activation_normalization"
    assert snake_case("ReLU") == "re_lu"


def test_saved_names_count_per_class_in_order():
    got = saved_names(["Reflection", "AdditiveCoupling", "Reflection", "Reflection"])
    assert got == ["reflection", "additive_coupling", "reflection_1", "reflection_2"]


def layer(kind: str, shape=(4,), axes=(1,), **options) -> dict:
    return {
        "class_name": kind,
        "config": {"name": kind.lower(), "shape": list(shape), "axes": list(axes), **options},
    }


def dense(units: int, activation: str | None = "relu") -> dict:
    return {
        "class_name": "Dense",
        "config": {"name": "d", "units": units, "activation": activation},
    }


def coupling(net: list, mask_kind="CheckerBoardMask", values=(0, 1, 0, 1), **kw) -> dict:
    mask = {"class_name": mask_kind, "config": {"shape": [4], "axes": [1], "mask": list(values)}}
    sequential = {"class_name": "Sequential", "config": {"layers": net}}
    return layer("AdditiveCoupling", compute_coupling_parameters=sequential, mask=mask, **kw)


def model(*layers, input_shape=(4,), dtype="float64", kind="FlowModel") -> dict:
    return {
        "class_name": kind,
        "build_config": {"input_shape": [None, *input_shape]},
        "config": {"dtype": {"config": {"name": dtype}}, "flow_layers": list(layers)},
    }


def test_a_config_becomes_the_flowcore_spec():
    config = model(
        layer("ActivationNormalization"),
        layer("Reflection", reflection_count=2),
        coupling([{"class_name": "InputLayer", "config": {}}, dense(16), dense(4, None)]),
        layer("CheckerBoardPermutation"),
        kind="DisentanglingFlowModel",
    )
    spec, shape, dtype = spec_from_gyoza_config(config)
    assert (shape, dtype) == ((4,), "float64")
    norm, reflection, additive, permutation = spec.transforms
    assert isinstance(norm, fc.ActivationNormalization)
    assert reflection == fc.Reflection((4,), (1,), 2, normalize=False)
    assert isinstance(additive.mask, fc.CheckerBoardMask)
    assert additive.subnet == fc.Sequential((fc.Linear(16), ReLU(), fc.Linear(4)))
    assert isinstance(permutation, fc.CheckerBoardPermutation)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (model(layer("AffineCoupling")), r"'affinecoupling': class 'AffineCoupling' has no"),
        (model(coupling([dense(4, "gelu")])), r"activation 'gelu' has no flowcore layer"),
        (
            model(coupling([{"class_name": "Conv1D", "config": {"name": "c"}}])),
            r"Keras layer class 'Conv1D' has no portable",
        ),
        (model(coupling([dense(4)], values=(1, 1, 0, 0))), r"holds \[1, 1, 0, 0\], not the"),
        (
            model(coupling([dense(4)], axes=(1,), shape=(4,)), input_shape=(3, 4)),
            r"a coupling on axes \[1\] of a 3-D input",
        ),
        (
            model(layer("Reflection", reflection_count=1), dtype="mixed_float16"),
            r"dtype 'mixed_float16' is not float32 or float64",
        ),
        ({"class_name": "Sequential", "config": {}}, r"not a gyoza model: class 'Sequential'"),
        (
            {**model(layer("ActivationNormalization")), "build_config": None},
            r"saved before it was built",
        ),
        (
            model(
                layer("ActivationNormalization", shape=(3, 4), axes=(1, 3)), input_shape=(3, 2, 4)
            ),
            r"axes \[1, 3\] are not contiguous",
        ),
    ],
)
def test_what_cannot_be_read_is_named(config, match):
    with pytest.raises(GyozaImportError, match=match):
        spec_from_gyoza_config(config)


def write_keras(path, config: dict, weights: dict) -> None:
    """A .keras archive as Keras writes one: config.json and model.weights.h5."""
    h5 = path.parent / "model.weights.h5"
    with h5py.File(h5, "w") as file:
        for key, value in weights.items():
            file[key] = value
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.write(h5, "model.weights.h5")


def norm_weights(group="activation_normalization") -> dict:
    return {f"layers/{group}/vars/0": np.arange(4.0), f"layers/{group}/vars/1": np.full(4, 2.0)}


def test_weights_are_read_by_keras_saved_names(tmp_path):
    weights = {**norm_weights(), **norm_weights("activation_normalization_1")}
    weights["layers/activation_normalization_1/vars/0"] = np.full(4, 7.0)
    write_keras(
        tmp_path / "m.keras",
        model(layer("ActivationNormalization"), layer("ActivationNormalization")),
        weights,
    )
    imported = read_gyoza(tmp_path / "m.keras")
    np.testing.assert_array_equal(imported.params["1.location"], np.full(4, 7.0))
    np.testing.assert_array_equal(imported.params["0.scale"], np.full(4, 2.0))


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ({}, r"has no 'layers/activation_normalization/vars/0'"),
        (
            {**norm_weights(), "layers/reflection/vars/0": np.ones((1, 4))},
            r"variables the model has no place for: \['layers/reflection/vars/0'\]",
        ),
        (
            {
                "layers/activation_normalization/vars/0": np.zeros(5),
                "layers/activation_normalization/vars/1": np.ones(5),
            },
            r"shape \(5,\) does not fit",
        ),
    ],
)
def test_weights_that_do_not_fit_are_named(weights, match):
    spec = fc.FlowModel(fc.ActivationNormalization((4,), (1,)))
    with pytest.raises(GyozaImportError, match=match):
        gyoza_params(spec, weights)


def test_a_broken_permutation_is_named():
    spec = fc.FlowModel(fc.ShufflePermutation((3,), (1,)))
    weights = {
        "layers/shuffle_permutation/vars/0": np.array([0, 0, 1]),
        "layers/shuffle_permutation/vars/1": np.array([0, 1, 2]),
    }
    with pytest.raises(GyozaImportError, match=r"\[0, 0, 1\] and inverse_permutation"):
        gyoza_params(spec, weights)


def test_not_an_archive_is_named(tmp_path):
    (tmp_path / "x.keras").write_text("nope")
    with pytest.raises(GyozaImportError, match="is not a Keras .keras archive"):
        read_gyoza(tmp_path / "x.keras")

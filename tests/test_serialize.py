"""Spec configs: a JSON round trip gives the same spec; loading never imports code."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest

import flowcore as fc
from flowcore.serialize import spec_from_config, spec_to_config
from flowcore.tree import build_tree, initial_params

SPECS = {
    "aio_all_options": fc.AllInOneBlock(
        subnet=fc.MLP(hidden=(16, 8), activation="leaky_relu", negative_slope=0.2),
        affine_clamping=1.5,
        gin_block=True,
        global_affine_init=0.7,
        global_affine_type="SIGMOID",
        permute_soft=True,
        learned_householder_permutation=2,
        reverse_permutation=True,
        soft_clamp="tanh",
    ),
    "aio_convnet": fc.AllInOneBlock(
        subnet=fc.ConvNet(hidden=(8,), kernel_size=5, zero_init_last=False)
    ),
    "sequence": fc.SequenceINN(
        fc.AllInOneBlock(subnet=fc.MLP()),
        fc.AllInOneBlock(subnet=fc.MLP(), global_affine_type="EXP"),
        conditions=[0, None],
    ),
    "inverse_of_sequence": fc.Inverse(fc.SequenceINN(fc.AllInOneBlock(subnet=fc.MLP()))),
}


@pytest.mark.parametrize("name", SPECS)
def test_json_round_trip_gives_an_equal_spec(name):
    spec = SPECS[name]
    text = json.dumps(spec_to_config(spec))
    again = spec_from_config(json.loads(text))
    assert type(again) is type(spec)
    assert again == spec
    assert json.dumps(spec_to_config(again)) == text


def test_round_tripped_spec_builds_the_same_model():
    spec = SPECS["sequence"]
    again = spec_from_config(json.loads(json.dumps(spec_to_config(spec))))
    a = initial_params(build_tree(spec, [(6,)], [(2,)]), 3)
    b = initial_params(build_tree(again, [(6,)], [(2,)]), 3)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_config_names_types_and_lists_tuples():
    config = spec_to_config(fc.AllInOneBlock(subnet=fc.MLP(hidden=(4, 2))))
    assert config["type"] == "flowcore.transforms.all_in_one:AllInOneBlock"
    assert config["config"]["subnet"] == {
        "type": "flowcore.subnets:MLP",
        "config": {
            "hidden": [4, 2],
            "activation": "relu",
            "negative_slope": 0.01,
            "zero_init_last": True,
        },
    }


def test_native_subnet_constructor_is_refused_with_a_clear_error():
    spec = fc.AllInOneBlock(subnet_constructor=lambda c_in, c_out: None)
    with pytest.raises(
        fc.FlowError, match=r"AllInOneBlock\.subnet_constructor: function values cannot be saved"
    ):
        spec_to_config(spec)
    with pytest.raises(
        fc.FlowError, match="not portable, use a portable subnet such as flowcore.MLP"
    ):
        spec_to_config(fc.SequenceINN(spec))


def test_unknown_type_is_refused_and_nothing_is_imported():
    assert "a_module_nobody_has" not in sys.modules
    with pytest.raises(fc.FlowError, match="unknown spec type 'a_module_nobody_has:Thing'"):
        spec_from_config({"type": "a_module_nobody_has:Thing", "config": {}})
    with pytest.raises(fc.FlowError, match="unknown spec type 'os:system'"):
        spec_from_config({"type": "os:system", "config": {"command": "echo pwned"}})
    assert "a_module_nobody_has" not in sys.modules
    nested = spec_to_config(SPECS["sequence"])
    nested["config"]["transforms"][1]["type"] = "subprocess:Popen"
    with pytest.raises(fc.FlowError, match="unknown spec type 'subprocess:Popen'"):
        spec_from_config(nested)


def test_a_users_transform_registers_itself_and_round_trips():
    @dataclasses.dataclass(frozen=True)
    class Scale(fc.Transform):
        factor: float = 2.0

    config = spec_to_config(Scale(3.0))
    assert config == {"type": f"{__name__}:{Scale.__qualname__}", "config": {"factor": 3.0}}
    assert spec_from_config(json.loads(json.dumps(config))) == Scale(3.0)


def test_a_callable_option_that_is_not_a_subnet_names_the_option():
    spec = fc.GLOWCouplingBlock(subnet=fc.MLP(), clamp_activation=abs)
    with pytest.raises(
        fc.FlowError,
        match=r"GLOWCouplingBlock\.clamp_activation: builtin_function_or_method values cannot "
        r"be saved; code \(a callable\) is not portable",
    ):
        spec_to_config(spec)

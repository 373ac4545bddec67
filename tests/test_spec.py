"""The spec contract: shape inference, clear errors, parameter declarations and seeds."""

from __future__ import annotations

import numpy as np
import pytest

import flowcore as fc
from flowcore.executor import functional_call
from flowcore.namespace import numpy_namespace
from flowcore.params import validate as check_params
from flowcore.tree import build_tree, initial_params


def _aio(**options) -> fc.AllInOneBlock:
    return fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,)), **options)


def _conv_aio(**options) -> fc.AllInOneBlock:
    return fc.AllInOneBlock(subnet=fc.ConvNet(hidden=(4,)), **options)


def _reference(spec, inputs, conditions=()) -> fc.Reference:
    tree = build_tree(spec, inputs, conditions)
    return fc.Reference(tree, initial_params(tree, 0))


# -- shape inference ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2,), (5,), (3, 7), (3, 4, 5), (2, 3, 4, 5)])
def test_all_in_one_block_keeps_the_shape(shape):
    spec = fc.AllInOneBlock(subnet=fc.MLP())
    assert spec.output_shapes([shape], []) == (shape,)
    sig = spec.signature([shape])
    assert sig.inputs == sig.outputs == (shape,)


def test_sequence_infers_shapes_and_binds_each_block_to_its_condition():
    spec = fc.SequenceINN(_aio(), _aio(), _aio(), conditions=[1, None, 0])
    tree = build_tree(spec, [(6,)], [(2,), (3,)])
    assert tree.signature.outputs == ((6,),)
    assert [child.signature.conditions for child in tree.children.values()] == [
        ((3,),),
        (),
        ((2,),),
    ]
    # the subnet sees the passive half (3) plus its block's condition channels
    assert tree.children["0"].children["subnet"].signature.inputs == ((6,),)
    assert tree.children["1"].children["subnet"].signature.inputs == ((3,),)
    assert tree.children["1"].children["subnet"].signature.outputs == ((6,),)


@pytest.mark.parametrize(
    ("conds", "subnet_in"),
    [((), 3), (((3, 4, 4),), 6), (((3,),), 6), (((1, 4, 4), (2,)), 6)],
)
def test_image_subnet_inputs_count_condition_channels(conds, subnet_in):
    tree = build_tree(_conv_aio(), [(5, 4, 4)], conds)
    subnet = tree.children["subnet"].signature
    assert subnet.inputs == ((subnet_in, 4, 4),)  # passive half (3) plus condition channels
    assert subnet.outputs == ((4, 4, 4),)  # 2 * (5 // 2) channels: scale and shift


# -- clear errors at call time ------------------------------------------------------------


def test_wrong_input_shape_names_the_transform_and_both_shapes():
    ref = _reference(_aio(), [(4,)])
    with pytest.raises(
        fc.ShapeError, match=r"AllInOneBlock: input 0 should have shape \(batch, 4\), got \(3, 5\)"
    ):
        ref([np.zeros((3, 5))])


def test_wrong_rank_is_a_shape_error():
    ref = _reference(_conv_aio(), [(3, 4, 4)])
    with pytest.raises(
        fc.ShapeError,
        match=r"AllInOneBlock: input 0 should have shape \(batch, 3, 4, 4\), got \(2, 48\)",
    ):
        ref([np.zeros((2, 48))])


def test_wrong_dtype_names_the_transform():
    tree = build_tree(_aio(), [(4,)])
    params = initial_params(tree, 0)
    with pytest.raises(
        fc.ShapeError, match="AllInOneBlock: input 0 should be float32 or float64, got int64"
    ):
        functional_call(tree, numpy_namespace(), params, [np.zeros((2, 4), dtype=np.int64)])


def test_missing_and_surplus_conditions():
    conditional = _reference(_aio(), [(4,)], [(2,)])
    with pytest.raises(fc.ShapeError, match=r"AllInOneBlock: expected 1 condition\(s\), got 0"):
        conditional([np.zeros((2, 4))])
    plain = _reference(_aio(), [(4,)])
    with pytest.raises(fc.ShapeError, match=r"AllInOneBlock: expected 0 condition\(s\), got 1"):
        plain([np.zeros((2, 4))], [np.zeros((2, 2))])


def test_wrong_condition_shape_names_the_condition():
    ref = _reference(_aio(), [(4,)], [(2,)])
    with pytest.raises(
        fc.ShapeError, match=r"condition 0 should have shape \(batch, 2\), got \(2, 3\)"
    ):
        ref([np.zeros((2, 4))], [np.zeros((2, 3))])


def test_errors_of_a_sequence_name_the_sequence():
    ref = _reference(fc.SequenceINN(_aio(), _aio(), conditions=[None, 0]), [(4,)], [(2,)])
    with pytest.raises(fc.ShapeError, match="SequenceINN: expected 1 condition"):
        ref([np.zeros((2, 4))])
    with pytest.raises(
        fc.ShapeError, match=r"SequenceINN: input 0 should have shape \(batch, 4\)"
    ):
        ref([np.zeros((2, 3))], [np.zeros((2, 2))])


# -- clear errors at build time -----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "inputs", "conds", "message"),
    [
        (_aio(), [(1,)], [], r"AllInOneBlock: input must be .* with C >= 2, got \(1,\)"),
        (_aio(), [(2, 2, 2, 2, 2)], [], r"AllInOneBlock: input must be .*got \(2, 2, 2, 2, 2\)"),
        (
            _conv_aio(),
            [(3, 4, 4)],
            [(2, 5, 5)],
            r"AllInOneBlock: condition 0 must be a vector .* got \(2, 5, 5\)",
        ),
        (_aio(), [(4, 3, 3)], [], "MLP: needs 1-D features.*use ConvNet"),
        (_conv_aio(), [(4,)], [], "ConvNet: needs .* images.*use MLP"),
        (_aio(), [(4,), (4,)], [], r"AllInOneBlock: expected 1 input\(s\), got 2"),
        (
            fc.SequenceINN(_aio(), conditions=[1]),
            [(4,)],
            [(2,)],
            "block 0 takes condition 1, but 1 condition",
        ),
    ],
)
def test_shapes_a_spec_cannot_take(spec, inputs, conds, message):
    with pytest.raises(fc.ShapeError, match=message):
        build_tree(spec, inputs, conds)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: fc.AllInOneBlock(), "exactly one of subnet= or subnet_constructor="),
        (lambda: fc.AllInOneBlock(subnet=fc.MLP(), subnet_constructor=print), "exactly one of"),
        (
            lambda: _aio(global_affine_type="RELU"),
            "AllInOneBlock: option global_affine_type must be 'SOFTPLUS' or 'SIGMOID' or "
            "'EXP', got 'RELU'",
        ),
        (
            lambda: _aio(global_affine_type="SIGMOID", global_affine_init=10.0),
            r"must lie in \(0, 10.0\) for SIGMOID",
        ),
        (lambda: _aio(global_affine_init=0.0), "global_affine_init must be float > 0, got 0.0"),
        (
            lambda: _aio(affine_clamping=float("nan")),
            "option affine_clamping must be float > 0, got nan",
        ),
        (lambda: _aio(gin_block=1), "option gin_block must be bool, got 1"),
        (lambda: fc.MLP(hidden=(-4,)), r"MLP: option hidden must be a tuple.*, got \(-4,\)"),
        (lambda: fc.MLP(hidden=(0,)), r"MLP: option hidden must be a tuple.*, got \(0,\)"),
        (
            lambda: _aio(soft_clamp="atan"),
            "option soft_clamp must be 'scaled_tanh' or 'tanh', got 'atan'",
        ),
        (lambda: _aio(affine_clamping=0.0), "affine_clamping must be float > 0, got 0.0"),
        (
            lambda: _aio(learned_householder_permutation=-1),
            "option learned_householder_permutation must be int >= 0, got -1",
        ),
        (lambda: fc.MLP(activation="gelu"), "MLP: option activation must be 'relu' or"),
        (lambda: fc.ConvNet(kernel_size=4), "ConvNet: kernel_size must be odd, got 4"),
        (
            lambda: fc.SequenceINN(_aio(), conditions=[0, 1]),
            "1 transforms but 2 condition indices",
        ),
        (
            lambda: fc.ParamSpec("a.b", (1,), np.zeros),
            "parameter name 'a.b' must be non-empty without '.'",
        ),
        (
            lambda: fc.ParamSpec("p", (1,), np.zeros, kind="index"),
            "index parameter 'p' cannot be trainable",
        ),
    ],
)
def test_bad_hyper_parameters_are_refused_at_construction(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_sequence_refuses_non_transforms():
    with pytest.raises(TypeError, match="SequenceINN: expected Transform specs, got MLP"):
        fc.SequenceINN(fc.MLP())


def test_check_params_names_missing_surplus_and_misshapen():
    tree = build_tree(_aio(), [(4,)])
    params = initial_params(tree, 0)
    check_params(tree, params)
    with pytest.raises(
        fc.ParameterError, match=r"missing \['global_offset'\], unexpected \['extra'\]"
    ):
        check_params(
            tree, {**{k: v for k, v in params.items() if k != "global_offset"}, "extra": 0}
        )
    with pytest.raises(
        fc.ParameterError, match=r"'global_scale' has shape \(4,\), expected \(1, 4\)"
    ):
        check_params(tree, {**params, "global_scale": np.zeros(4)})


# -- parameter declarations -----------------------------------------------------------------


def _declared(spec, inputs, conds=()):
    tree = build_tree(spec, inputs, conds)
    return {k: (p.shape, p.trainable, p.kind) for k, p in tree.param_specs().items()}


def test_hard_permutation_is_an_int64_index_buffer():
    declared = _declared(_aio(), [(5,)])
    assert declared["w_perm"] == ((5,), False, "index")
    assert declared["global_scale"] == ((1, 5), True, "float")
    assert declared["global_offset"] == ((1, 5), True, "float")
    assert declared["subnet.0.weight"] == ((8, 3), True, "float")
    assert declared["subnet.1.weight"] == ((4, 8), True, "float")
    assert declared["subnet.1.bias"] == ((4,), True, "float")
    assert "w_0" not in declared and "vk_householder" not in declared


def test_soft_permutation_and_householder_declarations():
    soft = _declared(_conv_aio(permute_soft=True), [(3, 4, 4)])
    assert soft["w_perm"] == ((3, 3), False, "float")
    assert soft["global_scale"] == ((1, 3, 1, 1), True, "float")
    assert soft["subnet.0.weight"] == ((4, 2, 3, 3), True, "float")
    householder = _declared(_aio(learned_householder_permutation=3), [(5,)])
    assert householder["w_0"] == ((5, 5), False, "float")
    assert householder["vk_householder"] == ((3, 5), True, "float")
    assert "w_perm" not in householder


def test_initial_permutations_are_valid():
    params = initial_params(build_tree(_aio(), [(7,)]), 3)
    assert sorted(params["w_perm"].tolist()) == list(range(7))
    assert params["w_perm"].dtype == np.int64
    rotation = initial_params(build_tree(_aio(permute_soft=True), [(6,)]), 3)["w_perm"]
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(6), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    hard = initial_params(build_tree(_aio(learned_householder_permutation=1), [(4,)]), 3)["w_0"]
    assert sorted(hard.argmax(axis=1).tolist()) == [0, 1, 2, 3] and hard.sum() == 4


def test_zero_init_last_zeroes_only_the_last_layer():
    params = initial_params(build_tree(fc.AllInOneBlock(subnet=fc.MLP(hidden=(8, 8))), [(4,)]), 0)
    assert np.abs(params["subnet.0.weight"]).min() > 0
    assert np.abs(params["subnet.1.weight"]).min() > 0
    assert not params["subnet.2.weight"].any() and not params["subnet.2.bias"].any()
    # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in 2 for the first layer
    assert np.abs(params["subnet.0.weight"]).max() <= 1 / np.sqrt(2)


# -- seeds ----------------------------------------------------------------------------------


def _sequence(n: int) -> fc.SequenceINN:
    blocks = [_aio(permute_soft=True), _aio(learned_householder_permutation=2), _aio(), _aio()]
    return fc.SequenceINN(*blocks[:n])


def test_same_seed_same_parameters():
    a = initial_params(build_tree(_sequence(3), [(6,)]), 11)
    b = initial_params(build_tree(_sequence(3), [(6,)]), 11)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_different_seeds_differ_in_every_random_parameter():
    a = initial_params(build_tree(_sequence(3), [(6,)]), 0)
    b = initial_params(build_tree(_sequence(3), [(6,)]), 1)
    random = [k for k in a if np.unique(a[k]).size > 1]  # not a constant initialiser
    assert len(random) == 10  # 3 permutations, 1 Householder, 3 first subnet layers x 2
    for name in random:
        assert not np.array_equal(a[name], b[name]), name


def test_adding_a_block_does_not_shift_another_blocks_parameters():
    short = initial_params(build_tree(_sequence(2), [(6,)]), 5)
    long = initial_params(build_tree(_sequence(4), [(6,)]), 5)
    assert set(short) < set(long)
    for name, value in short.items():
        np.testing.assert_array_equal(long[name], value)


def test_identical_blocks_at_different_places_draw_differently():
    params = initial_params(build_tree(fc.SequenceINN(_aio(), _aio()), [(6,)]), 0)
    assert not np.array_equal(params["0.subnet.0.weight"], params["1.subnet.0.weight"])


class _CountingBlock(fc.SimpleTransform):
    """An identity block that counts its shape inferences."""

    calls = 0

    def __init__(self, tag: int) -> None:
        self.tag = tag

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CountingBlock) and other.tag == self.tag

    def __hash__(self) -> int:
        return hash(("counting", self.tag))

    def output_shape(self, shape, conditions):
        _CountingBlock.calls += 1
        return shape


def test_each_block_infers_its_shapes_once_per_build():
    _CountingBlock.calls = 0
    depth = 8
    inner = fc.SequenceINN(*(_CountingBlock(i) for i in range(depth)))
    build_tree(fc.SequenceINN(inner, fc.Inverse(inner)), [(97,)])
    assert _CountingBlock.calls == depth  # not 2 * depth + 1 per level, as binding once did

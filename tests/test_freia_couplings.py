"""The coupling blocks against FrEIA 0.2 itself, and their option errors.

Each FrEIA 0.2 block is built in float64 with a torch ``subnet_constructor`` whose layers map
onto flowcore's canonical MLP / ConvNet layout (``Sequential(layer, ReLU, layer)``: FrEIA's
``<subnet>.0`` and ``<subnet>.2`` are flowcore's ``<subnet>.0`` and ``<subnet>.1``; the
subnet names themselves are FrEIA's). flowcore's perturbed initial parameters are copied in,
and the float64 reference is compared with FrEIA forward and inverse, outputs and log-dets,
to 1e-12. FrEIA 0.2 cannot broadcast a vector condition over an image's pixels, so it is
given the broadcast condition.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import flowcore as fc
from flowcore.transforms import couplings as cp
from flowcore.tree import build_tree, initial_params

ATOL = 1e-12
#: The inverse divides by the clamped scales (up to exp(2.5) ~ 12 with clamp=2.5) and feeds
#: the subnet the recovered half, so the two implementations' rounding of the conv sums
#: (~1e-15 each) reaches ~5e-12 on a 7-channel image: 1e-11 still fails any real difference.
INVERSE_ATOL = 1e-11
HIDDEN = 5

BLOCKS = {  # name -> (flowcore class, FrEIA 0.2 class name)
    "nice": (cp.NICECouplingBlock, "NICECouplingBlock"),
    "rnvp": (cp.RNVPCouplingBlock, "RNVPCouplingBlock"),
    "glow": (cp.GLOWCouplingBlock, "GLOWCouplingBlock"),
    "gin": (cp.GINCouplingBlock, "GINCouplingBlock"),
    "onesided": (cp.AffineCouplingOneSided, "AffineCouplingOneSided"),
    "cat": (cp.ConditionalAffineTransform, "ConditionalAffineTransform"),
}
SUBNETS = {
    "nice": ("F", "G"),
    "rnvp": ("subnet_s1", "subnet_t1", "subnet_s2", "subnet_t2"),
    "glow": ("subnet1", "subnet2"),
    "gin": ("subnet1", "subnet2"),
    "onesided": ("subnet",),
    "cat": ("subnet",),
}


def softsign(u):
    """A custom clamp activation that works on NumPy and torch arrays alike."""
    return u / (1 + abs(u))


OPTIONS: dict[str, dict[str, Any]] = {  # the clamp options apply to every block but NICE
    "default": {},
    "atan": {"clamp": 0.7, "clamp_activation": "ATAN"},
    "tanh": {"clamp": 1.3, "clamp_activation": "TANH"},
    "sigmoid": {"clamp": 2.5, "clamp_activation": "SIGMOID"},
    "callable": {"clamp": 1.1, "clamp_activation": softsign},
    "split_0.3": {"split_len": 0.3},
    "split_0.7": {"split_len": 0.7},
    "split_int": {"split_len": 2},
}
CLAMP_OPTIONS = {"clamp", "clamp_activation"}

SHAPES = {  # name -> (input shape, condition shapes); C = 5 and 7 exercise round-half-even
    "vec5": ((5,), ()),
    "vec7_condition": ((7,), ((3,),)),
    "vec6_two_conditions": ((6,), ((2,), (1,))),
    "img": ((3, 4, 5), ()),
    "img5_matching_condition": ((5, 3, 3), ((2, 3, 3),)),
    "img7_vector_condition": ((7, 4, 4), ((2,),)),
}


def _cases():
    for block in BLOCKS:
        for option, values in OPTIONS.items():
            if block == "nice" and CLAMP_OPTIONS & set(values):
                continue
            for shape, (_, conds) in SHAPES.items():
                if block == "cat" and not conds:
                    continue
                yield pytest.param(block, option, shape, id=f"{block}-{option}-{shape}")


def _setup(block: str, option: str, shape_name: str, seed: int = 0):
    shape, conds = SHAPES[shape_name]
    subnet = (
        fc.MLP(hidden=(HIDDEN,), zero_init_last=False)
        if len(shape) == 1
        else fc.ConvNet(hidden=(HIDDEN,), zero_init_last=False)
    )
    spec = BLOCKS[block][0](subnet=subnet, **OPTIONS[option])
    tree = build_tree(spec, [shape], conds)
    params = initial_params(tree, seed)
    rng = np.random.default_rng(seed + 100)
    for name, p in tree.param_specs().items():
        if p.trainable:  # perturb so that no part of the block is the identity
            params[name] = params[name] + 0.3 * rng.standard_normal(p.shape)
    x = rng.standard_normal((4, *shape))
    cs = [rng.standard_normal((4, *c)) for c in conds]
    return tree, params, x, cs


@pytest.fixture
def torch_f64():
    torch = pytest.importorskip("torch", reason="FrEIA 0.2 as oracle needs torch")
    pytest.importorskip("FrEIA", reason="FrEIA 0.2 as oracle: pip install 'flowcore[freia]'")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(previous)


def _constructor(torch, image: bool):
    def constructor(c_in: int, c_out: int):
        if image:
            layers = [
                torch.nn.Conv2d(c_in, HIDDEN, 3, padding=1),
                torch.nn.ReLU(),
                torch.nn.Conv2d(HIDDEN, c_out, 3, padding=1),
            ]
        else:
            layers = [
                torch.nn.Linear(c_in, HIDDEN),
                torch.nn.ReLU(),
                torch.nn.Linear(HIDDEN, c_out),
            ]
        return torch.nn.Sequential(*layers)

    return constructor


def _freia_block(torch, block: str, option: str, shape, cond_shapes, params):
    import FrEIA.modules as Fm

    module = getattr(Fm, BLOCKS[block][1])(
        [shape],
        dims_c=list(cond_shapes),
        subnet_constructor=_constructor(torch, len(shape) > 1),
        **OPTIONS[option],
    ).double()
    state = module.state_dict()
    assert {k.split(".")[0] for k in state} == set(SUBNETS[block])
    for subnet in SUBNETS[block]:
        for ours, theirs in (("0", "0"), ("1", "2")):
            for kind in ("weight", "bias"):
                value = torch.as_tensor(params[f"{subnet}.{ours}.{kind}"])
                assert state[f"{subnet}.{theirs}.{kind}"].shape == value.shape
                state[f"{subnet}.{theirs}.{kind}"] = value
    module.load_state_dict(state)
    return module


def _log_det(torch, value, batch: int) -> np.ndarray:
    """FrEIA's log-det (a tensor of shape (batch,), or a float 0.) as a NumPy (batch,)."""
    value = value.numpy() if torch.is_tensor(value) else np.asarray(value)
    return value + np.zeros(batch)


def _broadcast(cs, spatial):
    """Vector conditions broadcast over the pixels, as FrEIA 0.2 needs them."""
    return [
        np.broadcast_to(c.reshape(c.shape + (1,) * len(spatial)), c.shape + spatial)
        if c.ndim == 2 and spatial
        else c
        for c in cs
    ]


@pytest.mark.parametrize(("block", "option", "shape_name"), list(_cases()))
def test_reference_matches_freia_0_2(torch_f64, block, option, shape_name):
    torch = torch_f64
    tree, params, x, cs = _setup(block, option, shape_name)
    shape, _ = SHAPES[shape_name]
    freia_cs = _broadcast(cs, shape[1:])
    module = _freia_block(
        torch, block, option, shape, [tuple(c.shape[1:]) for c in freia_cs], params
    )
    c_torch = [torch.as_tensor(np.ascontiguousarray(c)) for c in freia_cs]
    reference = fc.Reference(tree, params)
    with torch.no_grad():
        (y,), log_det = module([torch.as_tensor(x)], c=c_torch, rev=False)
        (y_ref,), log_det_ref = reference([x], cs)
        np.testing.assert_allclose(y_ref, y.numpy(), rtol=0, atol=ATOL)
        np.testing.assert_allclose(
            log_det_ref, _log_det(torch, log_det, len(x)), rtol=0, atol=ATOL
        )
        (x_back,), log_det_back = module([torch.as_tensor(y_ref)], c=c_torch, rev=True)
        (x_ref,), log_det_back_ref = reference([y_ref], cs, rev=True)
        np.testing.assert_allclose(x_ref, x_back.numpy(), rtol=0, atol=INVERSE_ATOL)
        np.testing.assert_allclose(
            log_det_back_ref, _log_det(torch, log_det_back, len(x)), rtol=0, atol=ATOL
        )
    np.testing.assert_allclose(x_ref, x, rtol=0, atol=1e-10)
    if block in ("nice", "gin"):  # volume preserving
        np.testing.assert_array_equal(log_det_ref, 0.0)
    else:  # and no other block by accident
        assert np.abs(log_det_ref).min() > 1e-3
    (_,), no_log_det = reference([x], cs, jac=False)
    np.testing.assert_array_equal(no_log_det, 0.0)


@pytest.mark.parametrize(("channels", "split_len", "first"), [(5, 0.5, 2), (7, 0.5, 4), (6, 2, 2)])
def test_split_len_rounds_half_to_even(channels, split_len, first):
    """round(C * split_len) is Python's: 2.5 -> 2, 3.5 -> 4; an int is the count itself."""
    tree = build_tree(cp.GLOWCouplingBlock(subnet=fc.MLP(), split_len=split_len), [(channels,)])
    assert tree.children["subnet1"].signature.inputs == ((first,),)
    assert tree.children["subnet2"].signature.inputs == ((channels - first,),)


# -- native subnets in flowcore's torch backend --------------------------------------------


@pytest.mark.parametrize("block", BLOCKS)
def test_native_subnet_constructor_in_torch(torch_f64, block):
    torch = torch_f64
    conds = [(3,)] if block == "cat" else []
    spec = BLOCKS[block][0](subnet_constructor=_constructor(torch, False))
    flow = fc.build(spec, (5,), conds, backend="torch", seed=0, dtype="float64")
    x = torch.randn(4, 5)
    c = [torch.randn(4, 3) for _ in conds] or None
    with torch.no_grad():
        z, log_det = flow(x, c=c)
        x_back, log_det_back = flow(z, c=c, rev=True)
    np.testing.assert_allclose(x_back.numpy(), x.numpy(), atol=1e-12)
    np.testing.assert_allclose((log_det + log_det_back).numpy(), 0.0, atol=1e-12)


# -- bad options ------------------------------------------------------------------------


def _mlp() -> fc.MLP:
    return fc.MLP(hidden=(4,))


AFFINE = [cls for cls, _ in BLOCKS.values() if cls is not cp.NICECouplingBlock]


@pytest.mark.parametrize("cls", AFFINE, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("clamp", float("nan"), "clamp"),
        ("clamp", 0.0, "clamp"),
        ("clamp", -1.0, "clamp"),
        ("clamp_activation", "RELU", "clamp_activation"),
        ("clamp_activation", "atan", "clamp_activation"),
        ("split_len", 0.0, "split_len"),
        ("split_len", 1.0, "split_len"),
        ("split_len", 0, "split_len"),
        ("split_len", True, "split_len"),
    ],
)
def test_bad_options(cls, option, value, needle):
    with pytest.raises(fc.OptionError, match=rf"{cls.__name__}: option {needle}\b.*got"):
        cls(subnet=_mlp(), **{option: value})


@pytest.mark.parametrize("cls", [cls for cls, _ in BLOCKS.values()], ids=lambda c: c.__name__)
def test_exactly_one_subnet(cls):
    with pytest.raises(fc.FlowError, match=rf"{cls.__name__}: .*exactly one .*neither"):
        cls()
    with pytest.raises(fc.FlowError, match=rf"{cls.__name__}: .*exactly one .*both"):
        cls(subnet=_mlp(), subnet_constructor=lambda c_in, c_out: None)
    with pytest.raises(fc.FlowError, match=rf"{cls.__name__}: option subnet .*portable"):
        cls(subnet=lambda c_in, c_out: None)


def test_nice_takes_no_clamp():
    with pytest.raises(TypeError, match="clamp"):
        cp.NICECouplingBlock(subnet=_mlp(), clamp=1.0)  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", [cls for cls, _ in BLOCKS.values()], ids=lambda c: c.__name__)
def test_split_len_too_large_for_the_input(cls):
    spec = cls(subnet=_mlp(), split_len=4)
    conds = [(2,)] if cls is cp.ConditionalAffineTransform else []
    if cls is cp.ConditionalAffineTransform:  # split_len is unused there
        build_tree(spec, [(4,)], conds)
        return
    with pytest.raises(fc.ShapeError, match=rf"{cls.__name__}: option split_len=4"):
        build_tree(spec, [(4,)], conds)


def test_conditional_affine_transform_needs_a_condition():
    spec = cp.ConditionalAffineTransform(subnet=_mlp())
    with pytest.raises(fc.ShapeError, match="ConditionalAffineTransform: needs a condition"):
        build_tree(spec, [(4,)])


@pytest.mark.parametrize("cls", [cls for cls, _ in BLOCKS.values()], ids=lambda c: c.__name__)
def test_condition_of_other_spatial_shape(cls):
    with pytest.raises(fc.ShapeError, match=rf"{cls.__name__}: condition 0"):
        build_tree(cls(subnet=fc.ConvNet()), [(4, 3, 3)], [(2, 4, 4)])


def test_wrong_subnet_kind_for_images():
    with pytest.raises(fc.ShapeError, match="MLP"):
        build_tree(cp.GLOWCouplingBlock(subnet=_mlp()), [(4, 3, 3)])

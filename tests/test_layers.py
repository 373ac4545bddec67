"""flowcore's portable layers and ``Sequential`` against ``torch.nn.Sequential`` itself.

Each case builds the torch net FrEIA and anomalib users write (FastFlow's ``ZeroPad2d,
Conv2d(k), ReLU, ZeroPad2d, Conv2d(k)``, U-Flow's ``padding="same"``, CFLOW's MLP, ...) in
float64 with random weights and perturbed BatchNorm statistics, reads it with
:func:`sequential_from_torch`, loads its ``state_dict`` into flowcore's parameters key for
key, and compares the float64 reference (NumPy, and array-api-strict) and every selected
backend with the torch module's output.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from selected_backends import BACKENDS

import flowcore as fc
from flowcore import layers as L
from flowcore.serialize import spec_from_config, spec_to_config
from flowcore.spec import Array, Child, Context, Signature
from flowcore.tree import build_tree, initial_params

torch = pytest.importorskip("torch")
#: torch's note that an even kernel's padding="same" pads a copy of the input
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
nn = torch.nn
tl = pytest.importorskip("flowcore.backends.torch.torch_layers")

#: float64 against torch's float64: the same sums in another order (NumPy's einsum, JAX's
#: and TensorFlow's convolutions, array-api-strict's tensordot, BatchNorm's
#: ``(x - mean) / sqrt(var + eps) * w + b`` against torch's fused ``x * a + b``) differ by a
#: few ulps of the values (|y| < 10): measured at most 2.7e-15 (BatchNorm 2-D). 1e-12 leaves
#: over two orders of margin and still fails any real difference (a wrong padding side, a
#: missing eps, one float32 step: ~1e-7).
ATOL64 = 1e-12
#: float32 (JAX and Keras-on-JAX without x64) against torch's float64: float32 rounding of
#: sums of up to 72 products of O(1) terms through two or three layers; measured 8.9e-7.
ATOL32 = 1e-5
BATCH = 3


# -- the torch nets ---------------------------------------------------------------------------


def _fastflow(kernel: int, c_in: int = 4, c_out: int = 6, hidden: int = 5) -> nn.Sequential:
    """anomalib's FastFlow ``subnet_conv_func(kernel_size, hidden_ratio)``, as it writes it."""
    padding_dims = (kernel // 2 - ((1 + kernel) % 2), kernel // 2)
    padding = (*padding_dims, *padding_dims)
    return nn.Sequential(
        nn.ZeroPad2d(padding),
        nn.Conv2d(c_in, hidden, kernel),
        nn.ReLU(),
        nn.ZeroPad2d(padding),
        nn.Conv2d(hidden, c_out, kernel),
    )


#: name -> (torch net factory, input shape without the batch axis)
CASES: dict[str, tuple[Callable[[], nn.Sequential], tuple[int, ...]]] = {
    "fastflow_k3": (lambda: _fastflow(3), (4, 5, 6)),
    "fastflow_k1": (lambda: _fastflow(1), (4, 5, 6)),
    "fastflow_k2_asymmetric": (lambda: _fastflow(2), (4, 5, 6)),
    "uflow_same": (
        lambda: nn.Sequential(
            nn.Conv2d(4, 7, 3, padding="same"), nn.ReLU(), nn.Conv2d(7, 6, 1, padding="same")
        ),
        (4, 5, 6),
    ),
    "same_even_rectangular": (
        lambda: nn.Sequential(nn.Conv2d(4, 5, (2, 4), padding="same"), nn.Tanh()),
        (4, 5, 6),
    ),
    "cflow_mlp": (
        lambda: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 10)),
        (6,),
    ),
    "bias_free": (
        lambda: nn.Sequential(
            nn.Linear(6, 8, bias=False), nn.LeakyReLU(0.2), nn.Linear(8, 4, bias=False)
        ),
        (6,),
    ),
    "bias_free_conv": (
        lambda: nn.Sequential(nn.Conv2d(4, 5, 3, padding=1, bias=False), nn.ELU(0.7)),
        (4, 5, 6),
    ),
    "batchnorm_1d": (
        lambda: nn.Sequential(
            nn.Linear(6, 8),
            nn.BatchNorm1d(8),
            nn.Tanh(),
            nn.Dropout(0.3),
            nn.Linear(8, 4),
            nn.BatchNorm1d(4, affine=False),
        ),
        (6,),
    ),
    "batchnorm_2d": (
        lambda: nn.Sequential(
            nn.Conv2d(4, 8, 3, padding=1),
            nn.BatchNorm2d(8, eps=1e-3),
            nn.ELU(),
            nn.Conv2d(8, 6, 1),
            nn.BatchNorm2d(6, track_running_stats=False),  # batch statistics, in eval too
        ),
        (4, 5, 6),
    ),
    "asymmetric_pad": (
        lambda: nn.Sequential(nn.ZeroPad2d((1, 2, 0, 3)), nn.Conv2d(4, 6, (3, 2)), nn.Sigmoid()),
        (4, 5, 6),
    ),
    "rectangular_kernels": (
        lambda: nn.Sequential(
            nn.Conv2d(4, 6, (1, 3), padding=(0, 1)),
            nn.Softplus(beta=2.0, threshold=1.0),  # both of torch's branches are taken
            nn.Conv2d(6, 5, (3, 1), padding=(1, 0)),
        ),
        (4, 5, 6),
    ),
    "nested": (
        lambda: nn.Sequential(
            nn.Sequential(nn.Linear(6, 8), nn.ReLU()), nn.Linear(8, 4), nn.Sigmoid()
        ),
        (6,),
    ),
}


def _perturbed(net: nn.Sequential, seed: int) -> nn.Sequential:
    """``net`` in float64, eval mode, with random weights and BatchNorm statistics far
    from their initial 0 / 1 (so that a skipped statistic or a swapped one shows)."""
    torch.manual_seed(seed)
    net = net.double().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if m.affine:
                    m.weight.copy_(1 + 0.5 * torch.randn_like(m.weight))
                    m.bias.copy_(0.5 * torch.randn_like(m.bias))
                if m.track_running_stats:
                    m.running_mean.copy_(torch.randn_like(m.running_mean))
                    m.running_var.copy_(0.3 + torch.rand_like(m.running_var))
                    m.num_batches_tracked.fill_(7)
    return net


def _out_shape(net: nn.Sequential, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(net(torch.zeros((2, *in_shape), dtype=torch.float64)).shape[1:])


@dataclasses.dataclass(frozen=True)
class Apply(fc.SimpleTransform):
    """Test-only: runs a subnet ``net`` on the input (not invertible), so that a subnet can
    be built in every backend and compared with the torch net it came from."""

    net: fc.Subnet
    out: tuple[int, ...]

    def output_shape(self, shape: tuple[int, ...], conditions: Sequence[tuple[int, ...]]):
        return self.out

    def children(self, sig: Signature) -> Sequence[Child]:
        return (Child("net", self.net, sig.inputs, outputs=sig.outputs),)

    def forward(self, ctx: Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        return ctx.children["net"](x), 0.0


def _numpy_state(net: nn.Module, prefix: str = "") -> dict[str, np.ndarray]:
    return {prefix + k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def _setup(name: str, seed: int = 0):
    factory, in_shape = CASES[name]
    net = _perturbed(factory(), seed)
    spec = tl.sequential_from_torch(net)
    out_shape = _out_shape(net, in_shape)
    tree = build_tree(Apply(spec, out_shape), [in_shape])
    x = np.random.default_rng(seed).standard_normal((BATCH, *in_shape))
    with torch.no_grad():
        want = net(torch.as_tensor(x)).numpy()
    return net, spec, tree, _numpy_state(net, "net."), x, want


def _build(spec: fc.Transform, shape, backend: str, params):
    """``spec`` built in ``backend``, in float64 where it can be (JAX needs x64), with
    ``params``; and the dtype used."""
    try:
        model = fc.build(spec, shape, backend=backend, dtype="float64")
        dtype = "float64"
    except fc.BackendError as err:
        assert "64-bit" in str(err)
        model = fc.build(spec, shape, backend=backend, dtype="float32")
        dtype = "float32"
    fc.set_params(model, params)
    return model, dtype


def _call(model, x: np.ndarray, dtype: str, rev: bool = False):
    be = fc.backend_of(model)
    ys, log_det = be.call(model, [be.to_native(x, dtype, "cpu")], [], rev, True)
    return be.to_numpy(ys[0]), be.to_numpy(log_det)


# -- the cases against torch --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_state_dict_keys_map_one_to_one(name):
    net, _, tree, state, _, _ = _setup(name)
    declared = {k: p.shape for k, p in tree.param_specs().items()}
    assert declared == {k: v.shape for k, v in state.items()}
    params = initial_params(tree, 0)
    assert {k: v.dtype for k, v in params.items()} == {
        k: np.dtype(np.int64 if k.endswith("num_batches_tracked") else np.float64) for k in state
    }


@pytest.mark.parametrize("name", list(CASES))
def test_reference_matches_torch(name):
    from flowcore.namespace import strict_namespace

    _, _, tree, state, x, want = _setup(name)
    (y,), log_det = fc.Reference(tree, state)([x])
    assert np.abs(y - want).max() <= ATOL64
    np.testing.assert_array_equal(log_det, np.zeros(BATCH))
    (y_strict,), _ = fc.Reference(tree, state, xp=strict_namespace())([x])
    assert np.abs(y_strict - want).max() <= ATOL64


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_backend_matches_torch(name, backend):
    net, _, tree, state, x, want = _setup(name)
    model, dtype = _build(tree.spec, tree.signature.inputs[0], backend, state)
    y, _ = _call(model, x, dtype)
    assert y.dtype == np.dtype(dtype)
    assert np.abs(y - want).max() <= (ATOL64 if dtype == "float64" else ATOL32)
    got = fc.get_params(model)
    assert set(got) == set(state)
    for k, v in state.items():
        np.testing.assert_array_equal(got[k], v.astype(got[k].dtype), err_msg=k)


@pytest.mark.parametrize("name", list(CASES))
def test_torch_module_state_dict_equals_the_torch_sequential(name):
    net, _, tree, state, _, _ = _setup(name)
    model = fc.build(tree.spec, tree.signature.inputs[0], backend="torch", dtype="float64")
    ours = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    theirs = {f"net.{k}": (tuple(v.shape), v.dtype) for k, v in net.state_dict().items()}
    assert list(ours.items()) == list(theirs.items())  # the same keys in the same order
    model.load_state_dict({f"net.{k}": v for k, v in net.state_dict().items()})
    trainable = {n for n, _ in model.named_parameters()}
    assert trainable == {f"net.{n}" for n, _ in net.named_parameters()}


# -- the spec: conversion both ways, serialisation, shape errors ---------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_sequential_to_torch_round_trips(name):
    net, spec, tree, state, x, want = _setup(name)
    back = tl.sequential_to_torch(spec, state, prefix="net.")
    assert not back.training
    assert repr(back) == repr(net)
    theirs = net.state_dict()
    assert list(back.state_dict()) == list(theirs)
    for k, v in back.state_dict().items():
        assert v.dtype == theirs[k].dtype and torch.equal(v, theirs[k]), k
    with torch.no_grad():
        np.testing.assert_array_equal(back(torch.as_tensor(x)).numpy(), want)
    assert tl.sequential_from_torch(back) == spec
    assert spec_from_config(spec_to_config(spec)) == spec


def test_from_torch_reads_each_layer_as_its_flowcore_twin():
    net = nn.Sequential(
        nn.ZeroPad2d((0, 1, 2, 3)),
        nn.Conv2d(2, 3, (3, 1), padding=(1, 0), bias=False),
        nn.Conv2d(3, 3, 3, padding="valid"),
        nn.LeakyReLU(0.3),
        nn.ELU(0.5),
        nn.Softplus(2.0, 5.0),
        nn.Dropout(0.25),
        nn.BatchNorm2d(3, eps=1e-4, momentum=None, affine=False),
    ).eval()
    assert tl.sequential_from_torch(net) == fc.Sequential(
        (
            L.ZeroPad2d((0, 1, 2, 3)),
            L.Conv2d(3, (3, 1), (1, 0), bias=False),
            L.Conv2d(3, 3, 0),
            L.LeakyReLU(0.3),
            L.ELU(0.5),
            L.Softplus(2.0, 5.0),
            L.Dropout(0.25),
            L.BatchNorm(eps=1e-4, momentum=None, affine=False),
        )
    )


def _torch_error(net: nn.Module, match: str) -> None:
    with pytest.raises(fc.FlowError, match=match):
        tl.sequential_from_torch(net)


def test_unsupported_layer_names_index_type_and_the_supported_list():
    _torch_error(
        nn.Sequential(nn.Linear(4, 4), nn.GELU()),
        r"layer 1 \(torch\.nn\.modules\.activation\.GELU\) is not a layer flowcore holds; "
        r"supported: Linear, Conv2d, ZeroPad2d, ReLU, LeakyReLU, Tanh, Sigmoid, ELU, "
        r"Softplus, Dropout, BatchNorm1d, BatchNorm2d, Sequential",
    )
    _torch_error(
        nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.Flatten())),
        r"layer 1\.1 \(torch\.nn\.modules\.flatten\.Flatten\) is not a layer",
    )

    class MyLinear(nn.Linear):  # a subclass may compute differently
        pass

    _torch_error(nn.Sequential(MyLinear(4, 4)), r"layer 0 \(.*MyLinear\) is not a layer")
    _torch_error(nn.Linear(4, 4), "expected a torch.nn.Sequential, got Linear")


def test_training_mode_batchnorm_asks_for_eval():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    _torch_error(
        net,
        r"layer 1 \(torch\.nn\.modules\.batchnorm\.BatchNorm1d\) is in training mode.*"
        r"call \.eval\(\) on the module first",
    )
    assert tl.sequential_from_torch(net.eval()).layers[1] == L.BatchNorm()


@pytest.mark.parametrize(
    ("conv", "match"),
    [
        (nn.Conv2d(2, 2, 3, stride=2), r"layer 0 \(.*Conv2d\) has stride=\(2, 2\); .* \(1, 1\)"),
        (nn.Conv2d(2, 2, 3, dilation=2), r"has dilation=\(2, 2\)"),
        (nn.Conv2d(2, 2, 3, groups=2), r"has groups=2"),
        (nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), r"pads with 'reflect'"),
    ],
)
def test_conv2d_other_than_stride_1_zero_padding_is_refused(conv, match):
    _torch_error(nn.Sequential(conv), match)


def test_negative_zero_padding_is_refused():
    _torch_error(nn.Sequential(nn.ZeroPad2d((1, -1, 0, 0))), r"layer 0 .* has padding")


def test_layers_named_other_than_by_position_are_refused():
    named = nn.Sequential(OrderedDict(conv=nn.Conv2d(2, 2, 3), relu=nn.ReLU()))
    _torch_error(named, r"Sequential at '<top>' names its layer 0 'conv'")
    nested = nn.Sequential(nn.ReLU(), nn.Sequential(OrderedDict(fc=nn.Linear(2, 2))))
    _torch_error(nested, r"Sequential at '1\.' names its layer 0 'fc'")


def _glow(subnet: fc.Subnet) -> fc.GLOWCouplingBlock:
    return fc.GLOWCouplingBlock(subnet=subnet)


def test_a_last_output_of_the_wrong_shape_names_the_last_layer():
    spec = fc.AllInOneBlock(subnet=fc.Sequential((L.Linear(8), L.ReLU(), L.Linear(5))))
    with pytest.raises(
        fc.ShapeError,
        match=r"Sequential: its last layer, 2 \(Linear\), gives \(5,\), but \(6,\) is needed "
        r"\(from input \(3,\)\)",
    ):
        build_tree(spec, [(6,)])


def test_a_layer_of_the_wrong_rank_is_named():
    spec = _glow(fc.Sequential((L.Linear(8), L.ReLU(), L.Conv2d(None, 3))))
    with pytest.raises(
        fc.ShapeError,
        match=r"Sequential: layer 2 \(Conv2d\): needs \(C, H, W\) images, got \(8,\)",
    ):
        build_tree(spec, [(6,)])
    spec = _glow(fc.Sequential((L.Conv2d(4, 3), L.Linear())))
    with pytest.raises(fc.ShapeError, match=r"layer 1 \(Linear\): needs 1-D features"):
        build_tree(spec, [(4, 5, 5)])
    spec = _glow(fc.Sequential((L.Sequential((L.ReLU(), L.ZeroPad2d(1))),)))
    with pytest.raises(
        fc.ShapeError,
        match=r"layer 0 \(Sequential\): layer 1 \(ZeroPad2d\): needs \(C, H, W\) images",
    ):
        build_tree(spec, [(6,)])
    spec = _glow(fc.Sequential((L.Conv2d(4, 7, padding=0), L.Conv2d(padding=3))))
    with pytest.raises(fc.ShapeError, match=r"layer 0 \(Conv2d\): kernel \(7, 7\) .* no output"):
        build_tree(spec, [(4, 5, 5)])


def test_bad_options():
    with pytest.raises(fc.OptionError, match="zero_init_last needs a Linear or Conv2d"):
        fc.Sequential((L.ReLU(), L.BatchNorm()), zero_init_last=True)
    with pytest.raises(fc.OptionError, match="Sequential: option layers must be a tuple"):
        fc.Sequential((L.ReLU(), fc.MLP()))  # type: ignore[arg-type]
    with pytest.raises(fc.OptionError, match="Conv2d: option padding"):
        L.Conv2d(4, 3, padding="valid")  # type: ignore[arg-type]
    with pytest.raises(fc.OptionError, match="ZeroPad2d: option padding"):
        L.ZeroPad2d((1, 2))  # type: ignore[arg-type]
    with pytest.raises(fc.OptionError, match="Dropout: option p"):
        L.Dropout(1.5)
    with pytest.raises(fc.OptionError, match="Linear: option features"):
        L.Linear(0)


def test_nested_widths_left_none_must_be_the_nested_output_width():
    inner = L.Sequential((L.Linear(), L.ReLU(), L.Linear(16)))  # None would be 6 here, not 16
    with pytest.raises(fc.ShapeError, match="widths left None in a nested Sequential"):
        build_tree(_glow(fc.Sequential((inner, L.Linear()))), [(6,)])
    ok = L.Sequential((L.Linear(16), L.ReLU(), L.Linear()))  # its output is the net's
    build_tree(_glow(fc.Sequential((ok, L.Tanh()))), [(6,)])


def test_linear_and_conv2d_alone_are_subnets_as_before():
    """Left None, their width is the parent's; MLP and ConvNet keep their keys."""
    tree = build_tree(_glow(L.Linear()), [(6,)])
    assert {k: p.shape for k, p in tree.param_specs().items()} == {
        "subnet1.weight": (6, 3), "subnet1.bias": (6,),
        "subnet2.weight": (6, 3), "subnet2.bias": (6,),
    }  # fmt: skip
    tree = build_tree(_glow(fc.ConvNet(hidden=(5,))), [(4, 3, 3)])
    assert {k: p.shape for k, p in tree.param_specs().items() if k.startswith("subnet1")} == {
        "subnet1.0.weight": (5, 2, 3, 3), "subnet1.0.bias": (5,),
        "subnet1.1.weight": (4, 5, 3, 3), "subnet1.1.bias": (4,),
    }  # fmt: skip
    with pytest.raises(fc.ShapeError, match=r"Linear: needs 1-D features \(C,\)"):
        build_tree(_glow(L.Linear()), [(4, 3, 3)])


def test_initial_parameters_are_pytorchs_defaults():
    spec = fc.Sequential(
        (L.Conv2d(6, (3, 2), "same"), L.BatchNorm(), L.ReLU(), L.Conv2d(bias=False)),
        zero_init_last=True,
    )
    tree = build_tree(_glow(spec), [(4, 5, 5)])
    params = initial_params(tree, 0)
    bound = 1 / np.sqrt(2 * 3 * 2)
    for k in ("0.weight", "0.bias"):
        v = params[f"subnet1.{k}"]
        assert np.abs(v).max() <= bound and np.abs(v).max() > 0.5 * bound
    np.testing.assert_array_equal(params["subnet1.1.weight"], np.ones(6))
    np.testing.assert_array_equal(params["subnet1.1.bias"], np.zeros(6))
    np.testing.assert_array_equal(params["subnet1.1.running_mean"], np.zeros(6))
    np.testing.assert_array_equal(params["subnet1.1.running_var"], np.ones(6))
    assert params["subnet1.1.num_batches_tracked"].dtype == np.int64
    assert params["subnet1.1.num_batches_tracked"].shape == ()
    np.testing.assert_array_equal(params["subnet1.3.weight"], 0.0)  # the last one: zero
    assert "subnet1.3.bias" not in params
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 5))
    (y,), log_det = fc.Reference(tree, params)([x])
    np.testing.assert_array_equal(y, x)  # zero_init_last: a fresh block is the identity
    np.testing.assert_array_equal(log_det, 0.0)


# -- in coupling blocks ---------------------------------------------------------------------


def _fastflow_glow(seed: int):
    """FrEIA 0.2's GLOWCouplingBlock with anomalib FastFlow's subnets (one BatchNorm added),
    and flowcore's, with the same parameters."""
    torch_nets = {  # keys 0 ... 5, the BatchNorm's 5.weight ... 5.num_batches_tracked
        name: _perturbed(nn.Sequential(*_fastflow(3, 2, 4), nn.BatchNorm2d(4)), seed + i)
        for i, name in enumerate(("subnet1", "subnet2"))
    }
    spec = _glow(tl.sequential_from_torch(torch_nets["subnet1"]))
    params = {
        f"{name}.{k}": v for name, net in torch_nets.items() for k, v in _numpy_state(net).items()
    }
    return spec, torch_nets, params


def test_glow_block_with_fastflow_subnets_matches_freia(freia):
    spec, torch_nets, params = _fastflow_glow(1)
    shape = (4, 5, 6)
    tree = build_tree(spec, [shape])
    assert {k: p.shape for k, p in tree.param_specs().items()} == {
        k: v.shape for k, v in params.items()
    }
    nets = iter(torch_nets.values())
    block = freia.GLOWCouplingBlock([shape], subnet_constructor=lambda i, o: next(nets))
    assert list(block.state_dict()) == list(params)  # FrEIA's keys are flowcore's
    x = np.random.default_rng(2).standard_normal((BATCH, *shape))
    with torch.no_grad():
        (want,), want_log_det = block([torch.as_tensor(x)])
    (y,), log_det = fc.Reference(tree, params)([x])
    assert np.abs(y - want.numpy()).max() <= ATOL64
    assert np.abs(log_det - want_log_det.numpy()).max() <= ATOL64


@pytest.mark.parametrize("backend", BACKENDS)
def test_coupling_blocks_with_sequential_subnets_in_every_backend(backend):
    glow, _, glow_params = _fastflow_glow(3)
    cflow = _perturbed(nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 6)), 5)
    aio = fc.AllInOneBlock(subnet=tl.sequential_from_torch(cflow), affine_clamping=2.0)
    for flow_spec, shape, params in (
        (glow, (4, 5, 6), glow_params),
        (aio, (6,), _numpy_state(cflow, "subnet.")),
    ):
        tree = build_tree(flow_spec, [shape])
        values = {**initial_params(tree, 0), **params}
        assert set(values) == set(tree.param_specs())
        x = np.random.default_rng(4).standard_normal((BATCH, *shape))
        (want,), want_log_det = fc.Reference(tree, values)([x])
        model, dtype = _build(flow_spec, shape, backend, values)
        tol = ATOL64 if dtype == "float64" else ATOL32 * 10
        y, log_det = _call(model, x, dtype)
        assert np.abs(y - want).max() <= tol
        assert np.abs(log_det - want_log_det).max() <= tol
        x_back, _ = _call(model, y, dtype, rev=True)
        assert np.abs(x_back - x).max() <= tol * 10


def test_block_state_dict_has_the_torch_sequentials_keys_under_the_subnet():
    spec, torch_nets, _ = _fastflow_glow(0)
    model = fc.build(spec, (4, 5, 6), backend="torch", dtype="float64")
    state = model.state_dict()
    for name, net in torch_nets.items():
        ours = [(k[len(name) + 1 :], tuple(v.shape), v.dtype) for k, v in state.items()
                if k.startswith(name + ".")]  # fmt: skip
        assert ours == [(k, tuple(v.shape), v.dtype) for k, v in net.state_dict().items()]
    model.load_state_dict(
        {f"{name}.{k}": v for name, net in torch_nets.items() for k, v in net.state_dict().items()}
    )


# -- state: saved and loaded, never trained --------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_and_load_keep_the_batchnorm_statistics(tmp_path, backend):
    spec, _, params = _fastflow_glow(6)
    shape = (4, 5, 6)
    model = fc.build(spec, shape, backend="torch", dtype="float64")
    fc.set_params(model, params)
    path = tmp_path / "flow.fc"
    fc.save(model, path)
    try:
        loaded = fc.load(path, backend=backend)
        dtype = "float64"
    except fc.BackendError as err:
        assert "64-bit" in str(err)
        loaded, dtype = fc.load(path, backend=backend, dtype="float32"), "float32"
    assert fc.tree_of(loaded).spec == spec
    got = fc.get_params(loaded)
    assert set(got) == set(params)
    for k, v in params.items():
        if k.endswith("num_batches_tracked"):
            assert got[k].dtype.kind == "i" and int(got[k]) == 7, k
        else:
            np.testing.assert_array_equal(got[k], v.astype(dtype), err_msg=k)
    x = np.random.default_rng(7).standard_normal((BATCH, *shape))
    y, _ = _call(loaded, x, dtype)
    (want,), _ = fc.reference(model)([x])
    assert np.abs(y - want).max() <= (ATOL64 if dtype == "float64" else ATOL32 * 10)


def test_a_training_step_leaves_the_running_statistics():
    spec, _, params = _fastflow_glow(8)
    model = fc.build(spec, (4, 5, 6), backend="torch", dtype="float64")
    fc.set_params(model, params)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 4, 5, 6, dtype=torch.float64)
    z, log_det = model(x)
    loss = (0.5 * z.pow(2).sum(dim=(1, 2, 3)) - log_det).mean()
    loss.backward()
    optimizer.step()
    after = fc.get_params(model)
    buffers = [k for k in params if "running" in k or "num_batches" in k]
    assert len(buffers) == 6
    assert all(k not in dict(model.named_parameters()) for k in buffers)
    for k in buffers:
        np.testing.assert_array_equal(after[k], params[k], err_msg=k)
    assert not np.array_equal(after["subnet1.1.weight"], params["subnet1.1.weight"])
    assert not np.array_equal(after["subnet1.5.weight"], params["subnet1.5.weight"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_running_statistics_are_buffers_in_every_backend(backend):
    spec, _, params = _fastflow_glow(0)
    model, _ = _build(spec, (4, 5, 6), backend, params)
    names = set(params)
    if backend == "torch":
        trainable = {n for n, _ in model.named_parameters()}
    elif backend == "jax":
        from flax import nnx

        flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
        trainable = {".".join(map(str, p)) for p, _ in flat}
    else:
        from flowcore.backends.keras.layers import named_weights

        trainable = {n for n, v in named_weights(model).items() if v.trainable}
    want = {k for k in names if not ("running" in k or "num_batches" in k)}
    assert trainable == want


# -- the namespace extras the layers use, in every backend -----------------------------------


def _extras_cases(rng: np.random.Generator):
    x = 4 * rng.standard_normal((2, 3, 4, 5))
    w = rng.standard_normal((2, 3, 3, 2))
    F = nn.functional
    t = torch.as_tensor
    return [
        ("pad2d", lambda xp, a: xp.pad2d(a, (1, 0, 2, 3)), lambda: F.pad(t(x), (1, 0, 2, 3))),
        ("sigmoid", lambda xp, a: xp.sigmoid(a), lambda: torch.sigmoid(t(x))),
        ("elu", lambda xp, a: xp.elu(a, 0.7), lambda: F.elu(t(x), 0.7)),
        ("softplus", lambda xp, a: xp.softplus(a, 1.5, 2.0), lambda: F.softplus(t(x), 1.5, 2.0)),
        (
            "conv2d pair, no bias",
            lambda xp, a: xp.conv2d(a, xp.asarray(w, dtype=a.dtype), None, (2, 0)),
            lambda: F.conv2d(t(x), t(w), None, padding=(2, 0)),
        ),
    ], x


def test_extras_in_the_reference_namespaces_match_torch():
    from flowcore.namespace import numpy_namespace, strict_namespace

    cases, x = _extras_cases(np.random.default_rng(0))
    for xp in (numpy_namespace(), strict_namespace()):
        for name, ours, theirs in cases:
            got = np.asarray(ours(xp, xp.asarray(x)))
            np.testing.assert_allclose(got, theirs().numpy(), rtol=0, atol=ATOL64, err_msg=name)
    lin = numpy_namespace().linear(np.ones((2, 3)), np.ones((4, 3)), None)
    np.testing.assert_array_equal(lin, np.full((2, 4), 3.0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_extras_in_each_backend_match_torch(backend):
    be = fc.get_backend(backend)
    xp = {
        "torch": lambda: __import__("flowcore.backends.torch.namespace", fromlist=["XP"]).XP,
        "jax": lambda: __import__("flowcore.backends.jax.namespace", fromlist=["XP"]).XP,
        "keras": lambda: __import__("flowcore.backends.keras.namespace", fromlist=["XP"]).XP,
    }[backend]()
    cases, x = _extras_cases(np.random.default_rng(1))
    for dtype in ("float64", "float32"):
        try:
            a = be.to_native(x, dtype, "cpu")
        except fc.BackendError:
            continue  # float64 in JAX without x64
        if be.to_numpy(a).dtype != np.dtype(dtype):
            continue  # float64 in Keras-on-JAX without x64
        for name, ours, theirs in cases:
            got = be.to_numpy(ours(xp, a))
            assert got.dtype == np.dtype(dtype), name
            atol = ATOL64 if dtype == "float64" else 1e-5
            np.testing.assert_allclose(got, theirs().numpy(), rtol=0, atol=atol, err_msg=name)


def test_sigmoid_elu_and_softplus_gradients_stay_finite():
    """Their defaults never feed an overflowing exponential to either branch of a where."""
    import array_api_compat.torch as xp_torch

    from flowcore.namespace import DEFAULT_EXTRAS, extend

    xp = extend(xp_torch, conv2d=lambda *a: None)
    for name in ("sigmoid", "elu", "softplus"):
        f = DEFAULT_EXTRAS[name](xp)
        x = torch.tensor([-1000.0, -30.0, 0.0, 30.0, 1000.0], dtype=torch.float64)
        x.requires_grad_(True)
        f(x).sum().backward()
        assert torch.isfinite(x.grad).all(), name
        want = {"sigmoid": torch.sigmoid, "elu": nn.functional.elu,
                "softplus": nn.functional.softplus}[name](x.detach())  # fmt: skip
        np.testing.assert_allclose(f(x.detach()).numpy(), want.numpy(), rtol=1e-15, atol=0)

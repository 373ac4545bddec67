"""Built FrEIA models into flowcore models in every backend (:func:`from_freia`).

Models of the shapes anomalib builds are made in FrEIA 0.2 itself (float64, trainable
weights perturbed away from the identity initialisation), read with ``from_freia`` into
each selected backend, and run on the same data:

- FastFlow's: a SequenceINN on (C, H, W) of AllInOneBlocks whose subnets are ``ZeroPad2d,
  Conv2d(k), ReLU, ZeroPad2d, Conv2d(k)``, k alternating 3 and 1;
- CFLOW's: conditional AllInOneBlocks on vectors, Linear subnets, SOFTPLUS global scale;
- U-Flow's: a GraphINN of AllInOneBlocks (``Conv2d(padding="same")`` subnets), Split,
  IRevNetUpsampling and Concat with a finer input;
- the coupling blocks with each named clamp, an odd channel count (subnets of different
  output widths) and a condition; FrEIA master's AllInOneBlock through the drop-in.

Tolerances: float64 (torch; JAX with x64) 1e-10, the issue's bound; the measured
deviations are below 1e-14. float32 (Keras, JAX without x64): 5e-5, as float32 rounding of
a few blocks on O(1) values reaches ~1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
from selected_backends import BACKENDS

torch = pytest.importorskip("torch", reason="FrEIA models are PyTorch's")
FrEIA = pytest.importorskip("FrEIA", reason="FrEIA 0.2 as oracle: pip install 'flowcore[freia]'")

import FrEIA.framework as Ff  # noqa: E402
import FrEIA.modules as Fm  # noqa: E402
from flowcore.backends.torch.freia.importer import from_freia, spec_from_freia  # noqa: E402

import flowcore as fc  # noqa: E402
from flowcore.errors import FlowError  # noqa: E402
from flowcore.transforms.couplings import Subnets  # noqa: E402

BATCH = 3


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _dtype(backend: str) -> tuple[str, float]:
    if backend == "torch":
        return "float64", 1e-10
    if backend == "jax":
        import jax

        if jax.config.jax_enable_x64:
            return "float64", 1e-10
    return "float32", 5e-5


def _perturbed(module: torch.nn.Module) -> torch.nn.Module:
    module = module.double()
    torch.manual_seed(7)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.15 * torch.randn_like(p))
    return module


def _numpy(value):
    return np.asarray(
        value.detach().cpu() if hasattr(value, "detach") else value, dtype=np.float64
    )


def _agree(theirs, backend, xs, cs=(), version=None):
    """``from_freia(theirs)`` in ``backend`` computes theirs's outputs and log-det, forward
    and inverse (FrEIA 0.2's float32 soft permutations invert only to ~1e-7: the inverse
    is compared with FrEIA's, not with the input); returns it."""
    dtype, atol = _dtype(backend)
    ours = from_freia(theirs, backend=backend, dtype=dtype, version=version)
    want, want_log_det = theirs(xs if len(xs) > 1 else xs[0], c=list(cs) or None)
    want = want if isinstance(want, (list, tuple)) else [want]
    cast = (
        (lambda a: a.to(getattr(torch, dtype)))
        if backend == "torch"
        else (lambda a: a.numpy().astype(dtype))
    )
    got, log_det = ours([cast(x) for x in xs], [cast(c) for c in cs])
    got = got if isinstance(got, (list, tuple)) else [got]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(
            _numpy(g), _numpy(w), rtol=0, atol=atol * max(1, _numpy(w).std())
        )
    np.testing.assert_allclose(_numpy(log_det), _numpy(want_log_det), rtol=0, atol=atol * 10)
    want_back, _ = theirs(want if len(want) > 1 else want[0], c=list(cs) or None, rev=True)
    want_back = want_back if isinstance(want_back, (list, tuple)) else [want_back]
    back, _ = ours([cast(w.detach()) for w in want], [cast(c) for c in cs], rev=True)
    back = back if isinstance(back, (list, tuple)) else [back]
    for b, w in zip(back, want_back, strict=True):  # FrEIA's inverse, which inverts only
        np.testing.assert_allclose(_numpy(b), _numpy(w), rtol=0, atol=atol * 10)  # to ~1e-7
    return ours


def _fastflow() -> torch.nn.Module:
    def subnet(kernel):
        def make(c_in, c_out):
            return torch.nn.Sequential(
                torch.nn.ZeroPad2d(kernel // 2), torch.nn.Conv2d(c_in, c_in, kernel),
                torch.nn.ReLU(),
                torch.nn.ZeroPad2d(kernel // 2), torch.nn.Conv2d(c_in, c_out, kernel),
            )  # fmt: skip

        return make

    torch.manual_seed(0)
    inn = Ff.SequenceINN(6, 5, 5)
    for i in range(4):
        inn.append(
            Fm.AllInOneBlock, subnet_constructor=subnet(3 if i % 2 == 0 else 1),
            affine_clamping=2.0, permute_soft=False,
        )  # fmt: skip
    return _perturbed(inn)


def _mlp(c_in, c_out):
    return torch.nn.Sequential(
        torch.nn.Linear(c_in, 2 * c_in), torch.nn.ReLU(), torch.nn.Linear(2 * c_in, c_out)
    )


def _cflow() -> torch.nn.Module:
    torch.manual_seed(1)
    inn = Ff.SequenceINN(7)
    for _ in range(3):
        inn.append(
            Fm.AllInOneBlock, cond=0, cond_shape=(4,), subnet_constructor=_mlp,
            affine_clamping=1.9, global_affine_type="SOFTPLUS", permute_soft=True,
        )  # fmt: skip
    return _perturbed(inn)


def _uflow() -> torch.nn.Module:
    def subnet(c_in, c_out):
        return torch.nn.Sequential(
            torch.nn.Conv2d(c_in, 8, 3, padding="same"), torch.nn.ReLU(),
            torch.nn.Conv2d(8, c_out, 1, padding="same"),
        )  # fmt: skip

    torch.manual_seed(2)
    coarse = Ff.InputNode(8, 2, 2, name="coarse")
    fine = Ff.InputNode(2, 4, 4, name="fine")
    a = Ff.Node(coarse, Fm.AllInOneBlock, {"subnet_constructor": subnet}, name="a")
    split = Ff.Node(a, Fm.Split, {"section_sizes": [4, 4], "dim": 0}, name="split")
    up = Ff.Node(split.out1, Fm.IRevNetUpsampling, {}, name="up")
    cat = Ff.Node([up.out0, fine.out0], Fm.Concat, {"dim": 0}, name="cat")
    b = Ff.Node(cat, Fm.AllInOneBlock, {"subnet_constructor": subnet}, name="b")
    out0 = Ff.OutputNode(split.out0, name="z_coarse")
    out1 = Ff.OutputNode(b, name="z_fine")
    nodes = [coarse, fine, a, split, up, cat, b, out0, out1]
    return _perturbed(Ff.GraphINN(nodes))


def _data(*shapes):
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(BATCH, *s, generator=gen) for s in shapes]


@pytest.mark.parametrize("backend", BACKENDS)
def test_fastflow_flow_in_every_backend(backend):
    _agree(_fastflow(), backend, _data((6, 5, 5)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_cflow_flow_in_every_backend(backend):
    # a soft permutation is stored alike in 0.2 and master: anomalib's is 0.2's
    with pytest.raises(FlowError, match="pass version='0.2'"):
        spec_from_freia(_cflow())
    ours = _agree(_cflow(), backend, _data((7,)), _data((4,)), version="anomalib")
    assert fc.tree_of(ours).spec.transforms[0].soft_clamp == "tanh"  # FrEIA 0.2's clamp


@pytest.mark.parametrize("backend", BACKENDS)
def test_uflow_graph_in_every_backend(backend):
    _agree(_uflow(), backend, _data((8, 2, 2), (2, 4, 4)))


COUPLINGS = {
    "glow_tanh": (Fm.GLOWCouplingBlock, {"clamp": 1.3, "clamp_activation": "TANH"}),
    "rnvp_atan": (Fm.RNVPCouplingBlock, {"clamp": 0.9, "clamp_activation": "ATAN"}),
    "gin_sigmoid": (Fm.GINCouplingBlock, {"clamp": 2.5, "clamp_activation": "SIGMOID"}),
    "nice": (Fm.NICECouplingBlock, {}),
    "one_sided": (Fm.AffineCouplingOneSided, {"clamp": 1.5}),
}


@pytest.mark.parametrize("name", sorted(COUPLINGS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_coupling_blocks_with_odd_channels_and_a_condition(backend, name):
    cls, options = COUPLINGS[name]
    torch.manual_seed(4)
    inn = Ff.SequenceINN(5)  # split 2 / 3: the two subnets end in different widths
    inn.append(cls, subnet_constructor=_mlp, cond=0, cond_shape=(2,), **options)
    inn.append(Fm.ActNorm)
    inn.append(Fm.PermuteRandom, seed=3)
    theirs = _perturbed(inn)
    (x,), (c,) = _data((5,)), _data((2,))
    theirs(x, c=[c])  # ActNorm initialises on the first batch
    _agree(theirs, backend, [x], [c])


def test_freia_master_through_the_dropin_into_jax():
    pytest.importorskip("jax", reason="the jax backend needs JAX")
    from flowcore.backends.torch.freia import framework as dropin
    from flowcore.backends.torch.freia import modules as blocks
    from flowcore.backends.torch.freia import use_freia

    with use_freia("master"):
        inn = dropin.SequenceINN(5)
        inn.append(blocks.AllInOneBlock, subnet_constructor=_mlp, cond=0, cond_shape=(3,))
        inn.append(blocks.GLOWCouplingBlock, subnet_constructor=_mlp, clamp_activation="TANH")
    _agree(_perturbed(inn), "jax", _data((5,)), _data((3,)))
    assert fc.tree_of(from_freia(inn, backend="jax")).spec.transforms[0].soft_clamp == (
        "scaled_tanh"
    )


def test_what_has_no_portable_form_is_named():
    torch.manual_seed(0)
    custom = Fm.GLOWCouplingBlock([(4,)], subnet_constructor=_mlp, clamp_activation=torch.sin)
    with pytest.raises(FlowError, match="clamp activation is none of FrEIA's"):
        spec_from_freia(custom)
    with pytest.raises(FlowError, match="InvAutoAct has no portable form; the importer reads"):
        spec_from_freia(Fm.InvAutoAct([(4,)]))
    odd = Fm.AllInOneBlock(
        [(4,)],
        subnet_constructor=lambda i, o: torch.nn.Sequential(
            torch.nn.Linear(i, o), torch.nn.GELU()
        ),
    )
    with pytest.raises(FlowError, match=r"layer 1 \(torch.nn.modules.activation.GELU\)"):
        spec_from_freia(odd)


def test_imported_subnets_of_two_architectures_save_and_load(tmp_path):
    torch.manual_seed(5)
    inn = Ff.SequenceINN(5)  # _mlp's hidden width follows c_in: 2 -> 4 and 3 -> 6
    inn.append(Fm.GLOWCouplingBlock, subnet_constructor=_mlp)
    theirs = _perturbed(inn)
    ours = from_freia(theirs, backend="torch", dtype="float64")
    subnet = fc.tree_of(ours).spec.transforms[0].subnet
    assert isinstance(subnet, Subnets) and subnet.names == ("subnet1", "subnet2")
    fc.save(ours, tmp_path / "glow.flowcore")
    again = fc.load(tmp_path / "glow.flowcore", backend="torch", dtype="float64")
    (x,) = _data((5,))
    torch.testing.assert_close(again(x)[0], theirs(x)[0], rtol=0, atol=1e-12)


def test_subnets_must_name_the_blocks_subnets():
    net = fc.MLP(hidden=(4,))
    with pytest.raises(fc.OptionError, match=r"missing \['subnet2'\], unknown \['subnet3'\]"):
        fc.GLOWCouplingBlock(subnet=Subnets(names=("subnet1", "subnet3"), nets=(net, net)))
    with pytest.raises(fc.OptionError, match="one net per distinct name"):
        Subnets(names=("F", "F"), nets=(net, net))
    with pytest.raises(fc.OptionError, match="portable flowcore.Subnet specs"):
        Subnets(names=("subnet",), nets=(_mlp,))

"""FrEIA checkpoints: the drop-in's state_dict layout, and the importer's errors.

Each FrEIA 0.2 block that flowcore has is built in FrEIA 0.2 itself (float64, trainable
weights perturbed away from the identity initialisation) and in the drop-in with the same
arguments. The drop-in's ``state_dict`` has FrEIA's keys and shapes; FrEIA's state loads
into it, and the two then compute the same outputs and log-dets, forward and inverse, to
1e-12 (the same float64 formulas in a different order: measured deviations are below
5e-15, so 1e-12 fails any difference in the maths); the drop-in's state loads back into
FrEIA with the same effect. Where FrEIA 0.2 is wrong (LearnedElementwiseScaling's reverse
log-det sign; IResNetLayer's stochastic log-det), only what both compute is compared.

The errors: a missing, surplus or misshaped key, a permutation that is not 0/1 or not a
permutation, an inverse that is not the inverse, a version the checkpoint contradicts, a
version nothing shows where it matters, a block the clamp of another version: each names
what is wrong, and nothing is loaded.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="FrEIA checkpoints are PyTorch's")
Fm = pytest.importorskip("flowcore.backends.torch.freia.modules")
Ff = pytest.importorskip("flowcore.backends.torch.freia.framework")

import flowcore as fc  # noqa: E402
from flowcore.errors import ParameterError  # noqa: E402
from flowcore.interop.freia import (  # noqa: E402
    detect_version,
    load_freia_state,
    params_from_freia,
    params_to_freia,
)

ATOL = 1e-12
BATCH = 7


def _mlp(c_in: int, c_out: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(c_in, 12), torch.nn.ReLU(), torch.nn.Linear(12, c_out)
    )


def _conv(c_in: int, c_out: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(c_in, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, c_out, 1)
    )


VEC, IMG, COND = ((6,),), ((4, 4, 6),), ((3,),)
M6 = np.linalg.qr(np.random.default_rng(3).normal(size=(6, 6)))[0] + 0.2 * np.eye(6)
M4 = np.array([[2.0, 0.3, 0, 0], [0, 1.0, 0.5, 0], [0.1, 0, 1.5, 0], [0, 0, 0.2, 0.7]])

#: name -> (FrEIA class name, dims_in, dims_c, kwargs, what FrEIA 0.2 gets right)
BLOCKS = {
    "aio_hard": ("AllInOneBlock", VEC, (), {"subnet_constructor": _mlp}, "all"),
    "aio_hard_image": ("AllInOneBlock", IMG, (), {"subnet_constructor": _conv}, "all"),
    "aio_soft": (
        "AllInOneBlock",
        VEC,
        (),
        {"subnet_constructor": _mlp, "permute_soft": True},
        "all",
    ),
    "aio_householder": (
        "AllInOneBlock",
        VEC,
        (),
        {"subnet_constructor": _mlp, "learned_householder_permutation": 2},
        "all",
    ),
    "aio_condition": ("AllInOneBlock", VEC, COND, {"subnet_constructor": _mlp}, "all"),
    "actnorm": ("ActNorm", VEC, (), {}, "all"),
    "actnorm_image": ("ActNorm", IMG, (), {}, "all"),
    "permute": ("PermuteRandom", VEC, (), {"seed": 4}, "all"),
    "fixed_linear": (
        "FixedLinearTransform",
        VEC,
        (),
        {"M": torch.tensor(M6), "b": torch.arange(6.0)},
        "all",
    ),
    "fixed_1x1": ("Fixed1x1Conv", ((4, 3, 3),), (), {"M": torch.tensor(M4)}, "all"),
    "nice": ("NICECouplingBlock", VEC, (), {"subnet_constructor": _mlp}, "all"),
    "rnvp": ("RNVPCouplingBlock", VEC, COND, {"subnet_constructor": _mlp}, "all"),
    "glow": ("GLOWCouplingBlock", IMG, (), {"subnet_constructor": _conv}, "all"),
    "gin": ("GINCouplingBlock", VEC, (), {"subnet_constructor": _mlp}, "all"),
    "one_sided": ("AffineCouplingOneSided", VEC, (), {"subnet_constructor": _mlp}, "all"),
    "conditional_affine": (
        "ConditionalAffineTransform",
        VEC,
        COND,
        {"subnet_constructor": _mlp},
        "all",
    ),
    "scaling": ("LearnedElementwiseScaling", VEC, (), {}, "forward and inverse outputs"),
    "auto_act": ("InvAutoAct", VEC, (), {}, "all"),
    "auto_act_two_sided": ("InvAutoActTwoSided", VEC, (), {}, "all"),
    "orthogonal": ("OrthogonalTransform", VEC, (), {}, "all"),
    "householder": ("HouseholderPerm", VEC, (), {"n_reflections": 2}, "all"),
    "irevnet_down": ("IRevNetDownsampling", ((3, 4, 4),), (), {}, "all"),
    "irevnet_up": ("IRevNetUpsampling", ((8, 2, 2),), (), {}, "all"),
    "haar_down": ("HaarDownsampling", ((3, 4, 4),), (), {"rebalance": 0.5}, "all"),
    "haar_up": ("HaarUpsampling", ((8, 2, 2),), (), {}, "all"),
    "haar_by_wavelet": ("HaarDownsampling", ((2, 4, 4),), (), {"order_by_wavelet": True}, "all"),
    "iresnet": (
        "IResNetLayer",
        VEC,
        (),
        {"hutchinson_samples": 1, "internal_size": 8, "n_internal_layers": 1},
        "forward outputs",
    ),
}


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _perturb(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn_like(p))


def _pair(freia, name: str):
    cls, dims, conds, kwargs, _ = BLOCKS[name]
    args = {"dims_c": [tuple(c) for c in conds]} if conds else {}
    torch.manual_seed(0)
    theirs = getattr(freia, cls)([tuple(d) for d in dims], **args, **kwargs).double()
    _perturb(theirs)
    if cls == "IResNetLayer":  # spectral norms 0.5 < 0.8: flowcore's normalisation is then 1
        with torch.no_grad():
            for layer in theirs.residual:
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.mul_(0.5 / torch.linalg.matrix_norm(layer.weight, ord=2))
    ours = getattr(Fm, cls)([tuple(d) for d in dims], **args, **kwargs)
    return theirs, ours


def _data(name: str):
    _, dims, conds, _, _ = BLOCKS[name]
    gen = torch.Generator().manual_seed(1)
    x = [torch.randn(BATCH, *d, generator=gen) for d in dims]
    c = [torch.randn(BATCH, *d, generator=gen) for d in conds]
    return x, c


def _run(module, x, c, rev=False):
    x = [t.clone() for t in x]  # FrEIA's Haar inverse scales its input in place
    out, log_det = module(x, c=c, rev=rev, jac=True) if c else module(x, rev=rev, jac=True)
    return [o.detach() for o in out], torch.as_tensor(log_det).detach() * torch.ones(BATCH)


def _same_numbers(name, a, b, x, c):
    compares = BLOCKS[name][4]
    ya, la = _run(a, x, c)
    yb, lb = _run(b, x, c)
    for got, want in zip(yb, ya, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=ATOL)
    if compares == "forward outputs":
        return
    if compares == "all":
        torch.testing.assert_close(lb, la, rtol=0, atol=ATOL)
    xa, lra = _run(a, ya, c, rev=True)
    xb, lrb = _run(b, ya, c, rev=True)
    for got, want in zip(xb, xa, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=ATOL)
    if compares == "all":
        torch.testing.assert_close(lrb, lra, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_freia_02_state_loads_into_the_dropin_and_back(freia, float64, name):
    theirs, ours = _pair(freia, name)
    x, c = _data(name)
    _run(theirs, x, c)  # a data-initialised block initialises on its first batch
    state = theirs.state_dict()
    mine = ours.state_dict()
    assert {k: tuple(v.shape) for k, v in mine.items()} == {
        k: tuple(v.shape) for k, v in state.items()
    }
    ours.load_state_dict(state)
    _same_numbers(name, theirs, ours, x, c)

    torch.manual_seed(5)
    fresh = type(theirs)(**_constructor_args(name)).double()
    fresh.load_state_dict(ours.state_dict())
    _same_numbers(name, theirs, fresh, x, c)


def _constructor_args(name: str) -> dict:
    _, dims, conds, kwargs, _ = BLOCKS[name]
    args = {"dims_in": [tuple(d) for d in dims], **kwargs}
    if conds:
        args["dims_c"] = [tuple(d) for d in conds]
    return args


def _sequence(framework, modules, soft=False):
    torch.manual_seed(0)
    inn = framework.SequenceINN(6)
    inn.append(modules.AllInOneBlock, subnet_constructor=_mlp, permute_soft=soft)
    inn.append(modules.ActNorm)
    return inn.double()


@pytest.fixture
def checkpoint(freia, float64):
    """A FrEIA 0.2 SequenceINN's state (AllInOneBlock, ActNorm), and a drop-in twin."""
    import FrEIA.framework as freia_framework

    theirs = _sequence(freia_framework, freia)
    _perturb(theirs)
    theirs(torch.randn(BATCH, 6))
    return theirs.state_dict(), _sequence(Ff, Fm)


def _refused(model, state, needle, **options):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ParameterError, match=needle):
        if options:
            load_freia_state(model, state, **options)
        else:
            model.load_state_dict(state)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing was loaded


def test_missing_surplus_and_misshaped_keys_are_named(checkpoint):
    state, ours = checkpoint
    missing = {k: v for k, v in state.items() if k != "module_list.0.global_offset"}
    _refused(ours, missing, r"missing \['global_offset'\]")
    surplus = {**state, "module_list.1.extra": torch.zeros(1)}
    _refused(ours, surplus, r"unexpected \['extra'\]")
    stray = {**state, "module_list.2.scale": torch.zeros(1)}
    _refused(ours, stray, r"belong to no block.*module_list\.2\.scale", version="0.2")
    misshaped = {**state, "module_list.0.global_scale": torch.zeros(1, 5)}
    _refused(ours, misshaped, r"'global_scale' has shape \(1, 5\), but the block needs \(1, 6\)")


def test_bad_permutations_are_refused(checkpoint):
    state, ours = checkpoint
    w = state["module_list.0.w_perm"]
    _refused(ours, {**state, "module_list.0.w_perm": 0.5 * w}, "must be a 0/1 permutation matrix")
    doubled = w.clone()
    doubled[0] = doubled[1]
    _refused(
        ours,
        {**state, "module_list.0.w_perm": doubled, "module_list.0.w_perm_inv": doubled.T},
        "must be a 0/1 permutation matrix",
    )
    _refused(ours, {**state, "module_list.0.w_perm_inv": w}, "'w_perm_inv' is not the inverse")


def test_the_version_is_read_from_the_checkpoint_and_never_guessed(checkpoint):
    state, ours = checkpoint
    tree = fc.tree_of(ours)
    assert detect_version(tree, state) == "0.2"  # the 0/1 matrix (and ActNorm's keys)
    _refused(
        ours,
        state,
        "version='master' was given, but the checkpoint was made by FrEIA 0.2",
        version="master",
    )
    again = params_to_freia(tree, params_from_freia(tree, state), version="0.2")
    assert sorted(again) == sorted(state)  # export inverts import, entry for entry
    for k, v in again.items():
        np.testing.assert_array_equal(v, state[k].numpy(), err_msg=k)
    index = np.argmax(np.asarray(state["module_list.0.w_perm"]), axis=1)
    mixed = {**state, "module_list.0.w_perm": index, "module_list.0.w_perm_inv": np.argsort(index)}
    with pytest.raises(ParameterError, match="show different FrEIA versions"):
        detect_version(tree, mixed)


def test_a_version_nothing_shows_must_be_given(freia, float64):
    torch.manual_seed(0)
    theirs = freia.AllInOneBlock([(6,)], subnet_constructor=_mlp, permute_soft=True)
    state = theirs.double().state_dict()  # a soft permutation is a matrix in 0.2 and master
    ours = Fm.AllInOneBlock([(6,)], subnet_constructor=_mlp, permute_soft=True)
    tree = fc.tree_of(ours)
    assert detect_version(tree, state) is None
    with pytest.raises(ParameterError, match="cannot tell which FrEIA made this checkpoint"):
        params_from_freia(tree, state)
    params = params_from_freia(tree, state, version="anomalib")  # anomalib's is 0.2's
    np.testing.assert_array_equal(params["w_perm"], np.asarray(state["w_perm"]))
    with pytest.raises(ParameterError, match=r"clamps with α·tanh\(a/α\).*soft_clamp='tanh'"):
        params_from_freia(tree, state, version="master")


def test_export_refuses_a_block_the_version_computes_differently():
    tree = fc.build_tree(fc.SequenceINN(fc.AllInOneBlock(subnet=fc.MLP())), [(4,)])
    params = fc.initial_params(tree, 0)
    with pytest.raises(
        ParameterError,
        match=r"clamps with α·tanh\(a\), but this block has soft_clamp='scaled_tanh'",
    ):
        params_to_freia(tree, params, version="0.2")
    state = params_to_freia(tree, params, version="master")
    assert state["module_list.0.w_perm"].dtype == np.int64
    np.testing.assert_array_equal(
        state["module_list.0.w_perm_inv"], np.argsort(params["0.w_perm"])
    )
    with pytest.raises(ParameterError, match="FrEIA version must be one of"):
        params_to_freia(tree, params, version="0.3")


def test_dropin_under_master_saves_freia_masters_layout(float64):
    """The keys, shapes and option values FrEIA master's own state_dict has for the same
    model (read off FrEIA master, commit 4212496, once: it is not on the package index)."""
    from flowcore.backends.torch.freia import use_freia

    with use_freia("master"):
        torch.manual_seed(0)
        inn = Ff.SequenceINN(6)
        inn.append(Fm.AllInOneBlock, subnet_constructor=_mlp)
        inn.append(Fm.ActNorm)
        inn.append(Fm.RationalQuadraticSpline, subnet_constructor=_mlp, bins=5)
        inn.append(Fm.ElementwiseRationalQuadraticSpline, bins=4)
    x = torch.randn(BATCH, 6)
    inn(x)
    state = inn.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items() if ".subnet" not in k}
    assert shapes == {
        "module_list.0.global_scale": (1, 6), "module_list.0.global_offset": (1, 6),
        "module_list.0.w_perm": (6,), "module_list.0.w_perm_inv": (6,),
        "module_list.1.log_scale": (1, 6), "module_list.1.loc": (1, 6),
        "module_list.1.is_initialized": (),
        "module_list.2.spline_base.bins": (), "module_list.2.spline_base.min_bin_sizes": (2,),
        "module_list.2.spline_base.default_domain": (4,),
        "module_list.2.spline_base.identity_tails": (),
        "module_list.2.spline_base.default_width": (),
        "module_list.3.spline_parameters": (78,), "module_list.3.bins": (),
        "module_list.3.min_bin_sizes": (2,), "module_list.3.default_domain": (4,),
        "module_list.3.identity_tails": (), "module_list.3.default_width": (),
    }  # fmt: skip
    assert state["module_list.0.w_perm"].dtype == torch.int64
    # master keeps the options as float32 and computes with them; so does the drop-in
    assert float(state["module_list.2.spline_base.min_bin_sizes"][0]) == float(np.float32(0.1))
    assert inn.module_list[2].flowcore_tree.spec.min_bin_sizes == (float(np.float32(0.1)),) * 2
    with use_freia("master"):
        torch.manual_seed(1)
        again = Ff.SequenceINN(6)
        again.append(Fm.AllInOneBlock, subnet_constructor=_mlp)
        again.append(Fm.ActNorm)
        again.append(Fm.RationalQuadraticSpline, subnet_constructor=_mlp, bins=5)
        again.append(Fm.ElementwiseRationalQuadraticSpline, bins=4)
    again.load_state_dict(state)
    for got, want in zip(again(x), inn(x), strict=True):  # master's ActNorm is loc and
        torch.testing.assert_close(got, want, rtol=0, atol=1e-14)  # e^-s of ours: rounding

"""anomalib's FastFlow, CFLOW, CS-Flow and U-Flow on the FrEIA drop-in, against FrEIA 0.2.

Nothing of anomalib is installed or vendored: :mod:`anomalib_flows` rebuilds each model's
normalizing-flow part from anomalib's structure, written once against ``(Ff, Fm)``, and the
tests build it twice, with FrEIA 0.2 (``FrEIA.framework``/``FrEIA.modules``, whose
``AllInOneBlock`` stands for anomalib's copy of it) and with the drop-in (the two import
lines changed), from the same seeds, on random feature maps of the backbones' shapes
(small ones), in float64. For each model:

1. FrEIA's weights are moved away from their initial values (which make the couplings
   nearly the identity, and CS-Flow's exactly), and the drop-in model loads the FrEIA
   model's ``state_dict`` (the whole model's, flows nested in ``nn.ModuleList`` or module
   attributes as anomalib nests them);
2. outputs and log-dets agree to 1e-10, and so does the reverse pass (CS-Flow's reverse
   is not the inverse of its forward in anomalib: the two reverse passes are compared with
   each other, and the round trip is recorded, not required);
3. one Adam step on anomalib's loss with anomalib's optimiser settings, on both: every
   entry of the two ``state_dict``\\ s agrees to 1e-10 afterwards;
4. a FrEIA model loads the drop-in's ``state_dict`` and computes the drop-in's outputs.

Tolerance: both sides evaluate the same float64 formulas, some in another order (the
drop-in permutes channels by indexing where FrEIA 0.2 convolves with a 0/1 matrix, and
adds the log-dets up in its own order). Measured, over the four models: outputs and
reverse passes within 1.4e-14, log-dets (of size up to ~8e2) within 5.7e-14, the weights
after the Adam step within 1.1e-16, the exported model's outputs within 7.1e-14 (CS-Flow's
own modules and U-Flow's log-det agree exactly); ``pytest -s`` prints them and
``DEVIATIONS`` keeps them. 1e-10 leaves more than three orders of magnitude over those
rounding differences and stays far below any real one (a clamp of the other FrEIA version
moves the log-det by more than 1e-2, see ``test_freia_dropin``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the FrEIA drop-in is PyTorch's")
pytest.importorskip("FrEIA", reason="FrEIA 0.2 as oracle: pip install 'flowcore[freia]'")

import anomalib_flows as af  # noqa: E402
import flowcore.backends.torch.freia.framework as dropin_framework  # noqa: E402
import flowcore.backends.torch.freia.modules as dropin_modules  # noqa: E402
import FrEIA.framework as freia_framework  # noqa: E402
import FrEIA.modules as freia_modules  # noqa: E402

#: The agreement required: float64 rounding differences measured are at most ~6e-14 (see
#: the module's doc), real differences are orders of magnitude larger.
TOL = 1e-10

FREIA = (freia_framework, freia_modules)
DROPIN = (dropin_framework, dropin_modules)

#: The largest deviations measured, per model and quantity.
DEVIATIONS: dict[str, dict[str, float]] = {}


@pytest.fixture
def float64():
    """float64 by default while the test runs, on one thread: the tensors are tiny, and
    intra-op threads on a busy machine made these tests ten times slower."""
    previous, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.set_default_dtype(previous)


def _pair(build: Callable[[Any, Any], torch.nn.Module]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The model built with FrEIA 0.2 and with the drop-in, from the same seeds."""
    models = []
    for Ff, Fm in (FREIA, DROPIN):  # noqa: N806
        torch.manual_seed(0)
        np.random.seed(0)
        models.append(build(Ff, Fm))
    # FrEIA 0.2 makes its AllInOneBlock permutation matrices float32 whatever the dtype
    return models[0].double(), models[1]


def _perturb(model: torch.nn.Module, scale: float = 0.3) -> None:
    """Move every trainable weight away from its initial value."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=generator))


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for v in value for t in _tensors(v)]


def _deviation(a: Any, b: Any) -> float:
    pairs = list(zip(_tensors(a), _tensors(b), strict=True))
    for x, y in pairs:
        assert x.shape == y.shape, (x.shape, y.shape)
    return max(float(torch.max(torch.abs(x.detach() - y.detach()))) for x, y in pairs)


def _state_deviation(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    return max(float(torch.max(torch.abs(sa[k].double() - sb[k].double()))) for k in sa)


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _check(
    name: str,
    build: Callable[[Any, Any], torch.nn.Module],
    run: Callable[[torch.nn.Module], tuple[Any, Any]],
    loss: Callable[[torch.nn.Module], torch.Tensor],
    adam: dict[str, Any],
    reverse: Callable[[torch.nn.Module, Any], Any] | None = None,
    exact_reverse: bool = True,
    inputs: Any = None,
) -> dict[str, float]:
    """The steps of the module's doc for one model; returns the deviations measured."""
    freia, dropin = _pair(build)
    initial = run(freia)
    _perturb(freia)
    dropin.load_state_dict(freia.state_dict())
    assert _trainable(freia) == _trainable(dropin)
    dev: dict[str, float] = {}

    out_f, ld_f = run(freia)
    out_d, ld_d = run(dropin)
    assert _deviation(out_f, initial[0]) > 0.1  # the weights matter: not the initial flow
    assert min(float(torch.max(torch.abs(t.detach()))) for t in _tensors(ld_f)) > 0.1
    dev["forward"] = _deviation(out_d, out_f)
    dev["log-det"] = _deviation(ld_d, ld_f)

    if reverse is not None:
        back_f, back_d = reverse(freia, out_f), reverse(dropin, out_f)
        dev["reverse"] = _deviation(back_d, back_f)
        round_trip = _deviation(back_d, inputs)
        dev["round trip"] = round_trip
        if exact_reverse:
            assert round_trip < 1e-8

    before = copy.deepcopy(freia.state_dict())
    for model in (freia, dropin):
        optimiser = torch.optim.Adam(model.parameters(), **adam)
        optimiser.zero_grad()
        loss(model).backward()
        optimiser.step()
    moved = max(float(torch.max(torch.abs(v - before[k]))) for k, v in freia.state_dict().items())
    assert moved > adam["lr"] / 2  # the step changed the weights
    dev["after Adam"] = _state_deviation(dropin, freia)
    dev["forward after Adam"] = _deviation(run(dropin)[0], run(freia)[0])

    exported, _ = _pair(build)  # the initial weights until it loads the drop-in's
    exported.load_state_dict(dropin.state_dict())
    dev["export"] = max(_deviation(run(exported)[i], run(dropin)[i]) for i in (0, 1))

    dev["|log-det|"] = max(float(torch.max(torch.abs(t.detach()))) for t in _tensors(ld_f))
    DEVIATIONS[name] = dev
    print(f"\n{name}: " + ", ".join(f"{k} {v:.1e}" for k, v in dev.items()))
    for key, value in dev.items():
        if key not in ("round trip", "|log-det|"):
            assert value <= TOL, (name, key, value)
    return dev


# -- FastFlow ---------------------------------------------------------------------------------

#: resnet18's three scales (64, 128, 256 channels at H/4, H/8, H/16), smaller.
FASTFLOW_SCALES = [(6, 12, 12), (9, 6, 6), (12, 3, 3)]


@pytest.mark.parametrize("explicit_padding", [False, True], ids=["anomalib-2.7", "anomalib-2.2"])
def test_fastflow(float64, explicit_padding):
    torch.manual_seed(10)
    features = [torch.randn(4, *dims) for dims in FASTFLOW_SCALES]

    def build(Ff, Fm):  # noqa: N803
        return af.FastFlow(
            Ff, Fm, FASTFLOW_SCALES, flow_steps=8, explicit_padding=explicit_padding
        )

    def run(model):
        return model(features)

    def reverse(model, hidden):
        return model(hidden, rev=True)[0]

    def loss(model):
        return af.fastflow_loss(*model(features))

    _check(
        f"FastFlow ({'ZeroPad2d' if explicit_padding else 'padding=same'})",
        build, run, loss, af.FASTFLOW_ADAM, reverse, inputs=features,
    )  # fmt: skip


# -- CFLOW ------------------------------------------------------------------------------------

#: wide_resnet50_2's layers 2-4 (512, 1024, 2048 channels), smaller; the condition 128 -> 16.
CFLOW_LAYERS = [(6, 4, 4), (11, 2, 2)]
CONDITION = 16
FIBER_BATCH = 16


def test_cflow(float64):
    torch.manual_seed(11)
    activations = [torch.randn(2, *dims) for dims in CFLOW_LAYERS]
    rows = [af.cflow_fibers(a, CONDITION) for a in activations]  # (e_r, c_r) per layer
    # anomalib's training draws the fiber batches through a random permutation of the rows
    fibers = [torch.randperm(e.shape[0])[:FIBER_BATCH] for e, _ in rows]

    def build(Ff, Fm):  # noqa: N803
        return af.Cflow(Ff, Fm, [c for c, _, _ in CFLOW_LAYERS], condition_vector=CONDITION)

    def run(model):
        outs = [model(e, c, layer) for layer, (e, c) in enumerate(rows)]
        return [o for o, _ in outs], [ld for _, ld in outs]

    def reverse(model, hidden):
        pairs = enumerate(zip(hidden, rows, strict=True))
        return [model(z, c, layer, rev=True)[0] for layer, (z, (_, c)) in pairs]

    def loss(model):
        # anomalib steps after each fiber batch of each layer; this one step takes a fiber
        # batch of every layer, so that every decoder moves
        total = torch.zeros(())
        for layer, ((e, c), idx) in enumerate(zip(rows, fibers, strict=True)):
            p_u, log_det = model(e[idx], c[idx], layer)
            total = total + af.cflow_loss(e.shape[1], p_u, log_det)
        return total

    _check("CFLOW", build, run, loss, af.CFLOW_ADAM, reverse, inputs=[e for e, _ in rows])


def test_cflow_positional_encoding_is_cflows():
    code = af.positional_encoding_2d(8, 3, 5)
    assert code.shape == (8, 3, 5)
    w, h = torch.arange(5.0), torch.arange(3.0)
    for k, f in enumerate((1.0, 1e-2)):  # 10000^(-2k/4)
        torch.testing.assert_close(code[2 * k], torch.sin(f * w).expand(3, 5))
        torch.testing.assert_close(code[2 * k + 1], torch.cos(f * w).expand(3, 5))
        torch.testing.assert_close(code[4 + 2 * k], torch.sin(f * h)[:, None].expand(3, 5))
        torch.testing.assert_close(code[5 + 2 * k], torch.cos(f * h)[:, None].expand(3, 5))
    with pytest.raises(ValueError, match="multiple of 4"):
        af.positional_encoding_2d(6, 2, 2)


# -- CS-Flow ----------------------------------------------------------------------------------

#: EfficientNet-B5 features (304 channels at H/32, H/64, H/128), smaller: 6 channels.
CSFLOW_SIZE = (256, 256)
CSFLOW_CHANNELS = 6


def test_csflow(float64):
    torch.manual_seed(12)
    features = [torch.randn(3, CSFLOW_CHANNELS, 256 // s, 256 // s) for s in (32, 64, 128)]

    def build(Ff, Fm):  # noqa: N803
        return af.CsFlow(
            Ff, Fm, CSFLOW_SIZE, cross_conv_hidden_channels=8, channels=CSFLOW_CHANNELS
        )

    def run(model):
        return model(features)

    def reverse(model, z):
        return model(list(z), rev=True)[0]

    def loss(model):
        return af.csflow_loss(*model(features))

    freia, _ = _pair(build)
    permute, coupling = af.csflow_modules(freia_modules)
    assert isinstance(freia.graph.graph.module_list[0], permute)
    assert isinstance(freia.graph.graph.module_list[1], coupling)
    # a new CS-Flow only permutes (its gammas are 0): log-det 0, each scale's channels kept
    z, log_det = freia(features)
    assert log_det.shape == (3,) and float(torch.max(torch.abs(log_det.detach()))) == 0
    for z_s, x_s in zip(z, features, strict=True):
        torch.testing.assert_close(z_s.sort(dim=1)[0], x_s.sort(dim=1)[0], rtol=0, atol=0)

    dev = _check(
        "CS-Flow", build, run, loss, af.CSFLOW_ADAM, reverse, exact_reverse=False,
        inputs=features,
    )  # fmt: skip
    # anomalib's reverse pass is not the inverse (see anomalib_flows); the drop-in runs it
    # as it is
    assert dev["round trip"] > 1e-3


def test_csflow_log_det_is_one_number_for_the_batch(float64):
    features = [torch.randn(2, CSFLOW_CHANNELS, 256 // s, 256 // s) for s in (32, 64, 128)]

    def build(Ff, Fm):  # noqa: N803
        return af.CsFlow(Ff, Fm, CSFLOW_SIZE, 8, n_coupling_blocks=1, channels=CSFLOW_CHANNELS)

    _, dropin = _pair(build)
    _perturb(dropin)
    _, log_det = dropin(features)
    coupling = dropin.graph.graph.module_list[1]
    block_in = dropin.graph.graph.module_list[0](features)[0]
    _, own = coupling(block_in)
    assert own.ndim == 0  # anomalib's module sums over the scales and the batch
    torch.testing.assert_close(log_det, own.expand(2), rtol=0, atol=1e-12)


# -- U-Flow -----------------------------------------------------------------------------------

#: resnet18's scales (64, 128, 256 channels at reductions 4, 8, 16), smaller.
UFLOW_SIZE = (64, 64)
UFLOW_CHANNELS = (4, 8, 16)
UFLOW_FACTORS = (4, 8, 16)


def test_uflow(float64):
    torch.manual_seed(13)
    features = [
        torch.randn(3, c, UFLOW_SIZE[0] // s, UFLOW_SIZE[1] // s)
        for c, s in zip(UFLOW_CHANNELS, UFLOW_FACTORS, strict=True)
    ]

    def build(Ff, Fm):  # noqa: N803
        return af.UFlow(Ff, Fm, UFLOW_SIZE, UFLOW_CHANNELS, UFLOW_FACTORS, flow_steps=4)

    def run(model):
        return model(features)

    def reverse(model, z):
        return model(list(z), rev=True)[0]

    def loss(model):
        return af.uflow_loss(*model(features))

    freia, dropin = _pair(build)
    names = [type(m).__name__ for m in freia.flow.module_list]
    assert names == [type(m).__name__ for m in dropin.flow.module_list]
    assert names[4:7] == ["Split", "IRevNetUpsampling", "Concat"]
    # outputs finest first: the last stage's, then what each Split sent out
    shapes = [tuple(t.shape[1:]) for t in freia(features)[0]]
    assert shapes == [(5, 16, 16), (6, 8, 8), (8, 4, 4)]
    assert "flow.module_list.5.downsample_kernel" in freia.state_dict()

    _check("U-Flow", build, run, loss, af.UFLOW_ADAM, reverse, inputs=features)

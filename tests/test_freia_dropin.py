"""The FrEIA drop-in (``flowcore.backends.torch.freia``): FrEIA 0.2 by default, master on
the switch, a user's own InvertibleModule in sequences and graphs, FrEIA's attributes.

- ``Fm.AllInOneBlock`` against FrEIA 0.2's, weights copied, float64, subnet outputs large
  enough that the soft clamp matters: equal to 1e-12 (both compute the same float64
  formula; measured ~1e-15); under ``use_freia("master")`` the clamp is master's
  ``α·tanh(a/α)``, and the log-det differs from 0.2's by more than 1e-2.
- A FrEIA-style module written by a user runs in ``SequenceINN`` and ``GraphINN`` as it
  computes itself: the container's output and log-det are the composition's, exactly.
- ``inn[i] = block`` refuses other shapes and conditions with a ValueError;
  ``OrthogonalTransform(correction_interval=n)`` re-orthogonalises after n backward passes;
  the distributions' densities are the change of variables; the suite runner changes only
  import lines, and reports that it ran nothing where the suite is absent.

FrEIA's own test suite runs against the drop-in in ``tests/freia_suite/run_suite.py``.
"""

from __future__ import annotations

import copy
import pathlib
import shutil
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the FrEIA drop-in is PyTorch's")
Ff = pytest.importorskip("flowcore.backends.torch.freia.framework")
Fm = pytest.importorskip("flowcore.backends.torch.freia.modules")
from flowcore.backends.torch.freia import use_freia  # noqa: E402
from flowcore.backends.torch.freia.distributions import (  # noqa: E402
    PullBackDistribution,
    PushForwardDistribution,
    StandardNormalDistribution,
)
from flowcore.backends.torch.freia.utils import plot_graph  # noqa: E402

from flowcore.errors import BackendError, ParameterError  # noqa: E402
from flowcore.tree import build_tree  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent / "freia_suite"))
import run_suite as suite_runner  # noqa: E402

D = 6


def _subnet(c_in: int, c_out: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(c_in, 16), torch.nn.ReLU(), torch.nn.Linear(16, c_out)
    )


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _like_freia(theirs: torch.nn.Module, **options: float) -> torch.nn.Module:
    """A drop-in AllInOneBlock with the options and weights of FrEIA 0.2's ``theirs``
    (the drop-in loads FrEIA's state_dict layout)."""
    ours = Fm.AllInOneBlock(
        [(D,)], subnet_constructor=lambda i, o: copy.deepcopy(theirs.subnet), **options
    )
    ours.load_state_dict(theirs.state_dict())
    return ours


def test_all_in_one_block_is_freia_02_by_default_and_master_on_the_switch(freia, float64):
    torch.manual_seed(0)
    theirs = freia.AllInOneBlock([(D,)], subnet_constructor=_subnet, affine_clamping=1.5)
    theirs = theirs.double()  # 0.2 keeps its permutation in float32
    with torch.no_grad():
        theirs.subnet[2].weight.normal_(0, 1.0)  # large a: the clamps differ
    x = torch.randn(64, D)
    (y_want,), ld_want = theirs([x])
    (x_want,), ld_back_want = theirs([y_want], rev=True)

    ours = _like_freia(theirs, affine_clamping=1.5)
    (y,), ld = ours([x])
    (x_back,), ld_back = ours([y_want], rev=True)
    for got, want in ((y, y_want), (ld, ld_want), (x_back, x_want), (ld_back, ld_back_want)):
        np.testing.assert_allclose(got.detach(), want.detach(), rtol=0, atol=1e-12)

    with use_freia("master"):
        master = Fm.AllInOneBlock([(D,)], subnet_constructor=_subnet, affine_clamping=1.5)
    assert master.flowcore_tree.spec.soft_clamp == "scaled_tanh"
    assert Fm.AllInOneBlock([(D,)], subnet_constructor=_subnet).flowcore_tree.spec.soft_clamp == (
        "tanh"
    )  # the switch held only inside the with block
    with pytest.raises(ParameterError, match="FrEIA 0.2 AllInOneBlock clamps with"):
        master.load_state_dict(ours.state_dict())  # a 0.2 checkpoint: refused
    state = ours.state_dict()  # as FrEIA master keys the same weights: an index
    index = torch.argmax(state["w_perm"], dim=1)
    master.load_state_dict({**state, "w_perm": index, "w_perm_inv": torch.argsort(index)})
    assert float(torch.max(torch.abs(master([x])[1] - ld_want).detach())) > 1e-2


class Scale(Fm.InvertibleModule):
    """A user's FrEIA module: y = x·e^s with a learned s, log-det Σs per sample."""

    def __init__(self, dims_in, dims_c=None):
        super().__init__(dims_in, dims_c)
        self.s = torch.nn.Parameter(0.1 * torch.arange(dims_in[0][0], dtype=torch.float32))

    def forward(self, x, c=None, rev=False, jac=True):
        sign = -1.0 if rev else 1.0
        return (x[0] * torch.exp(sign * self.s),), sign * self.s.sum()

    def output_dims(self, input_dims):
        return input_dims


def test_a_users_invertible_module_runs_in_a_sequence_and_a_graph():
    torch.manual_seed(1)
    inn = Ff.SequenceINN(D)
    inn.append(Scale)
    inn.append(Fm.AllInOneBlock, subnet_constructor=_subnet)
    assert isinstance(inn[0], Scale) and isinstance(inn.module_list[0], Scale)
    x = torch.randn(8, D)
    z, log_det = inn(x)
    (h,), ld_scale = inn[0]([x])
    (z_want,), ld_block = inn[1]([h])
    torch.testing.assert_close(z, z_want, rtol=0, atol=0)
    torch.testing.assert_close(log_det, ld_scale + ld_block, rtol=0, atol=1e-6)
    x_back, _ = inn(z, rev=True)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-5)
    assert "module_list.0.s" in inn.state_dict()  # the user's parameter, as FrEIA keys it

    inp = Ff.InputNode(D, name="x")
    scale = Ff.Node(inp, Scale, name="scale")
    out = Ff.OutputNode(scale, name="z")
    graph = Ff.GraphINN([inp, scale, out])
    assert isinstance(scale.module, Scale) and graph.dims_in == [(D,)]
    y, ld = graph(x)
    torch.testing.assert_close(y, x * torch.exp(scale.module.s), rtol=0, atol=0)
    torch.testing.assert_close(ld, scale.module.s.sum().expand(8), rtol=0, atol=0)


def test_replacing_a_block_needs_the_same_shapes_and_conditions():
    inn = Ff.SequenceINN(D)
    for _ in range(2):
        inn.append(Fm.AllInOneBlock(inn.output_dims(), subnet_constructor=_subnet))
    block = Fm.AllInOneBlock([inn.shapes[1]], subnet_constructor=_subnet)
    inn[1] = block
    assert inn[1] is block and inn.shapes == [(D,)] * 3
    with pytest.raises(ValueError, match=r"built for inputs \[\(7,\)\]"):
        inn[1] = Fm.AllInOneBlock([(D + 1,)], subnet_constructor=_subnet)
    with pytest.raises(ValueError, match=r"conditions \[\(2,\)\]"):
        inn[0] = Fm.AllInOneBlock([(D,)], dims_c=[(2,)], subnet_constructor=_subnet)
    assert inn[1] is block  # a refused replacement changes nothing


def test_orthogonal_transform_is_corrected_after_correction_interval_backward_passes(float64):
    torch.manual_seed(2)
    block = Fm.OrthogonalTransform([(D,)], correction_interval=2)
    weights = block._parameters["weights"]
    with torch.no_grad():
        weights.add_(0.05 * torch.randn(D, D))  # no longer orthogonal

    def off() -> float:
        return float(torch.max(torch.abs(weights.detach() @ weights.detach().T - torch.eye(D))))

    before = off()
    for _ in range(2):
        block([torch.randn(4, D)])[0][0].sum().backward()
    assert block.backward_passes == 2 and off() == before  # nothing changes mid-training
    block([torch.randn(4, D)])
    assert block.backward_passes == 0 and off() < 1e-12 < before


def test_distributions_are_the_change_of_variables():
    torch.manual_seed(3)
    inn = Ff.SequenceINN(2)
    inn.append(Fm.AllInOneBlock, subnet_constructor=_subnet)
    base = StandardNormalDistribution(2)
    x = torch.randn(16, 2)
    z, log_det = inn(x)
    pulled = PullBackDistribution(base, inn)
    torch.testing.assert_close(pulled.log_prob(x), base.log_prob(z) + log_det)
    pushed = PushForwardDistribution(base, inn)
    x_back, ld_back = inn(x, rev=True)
    torch.testing.assert_close(pushed.log_prob(x), base.log_prob(x_back) + ld_back)
    sample = pulled.sample((5,))
    assert sample.shape == (5, 2) and not sample.requires_grad
    for error in (ValueError, RuntimeError):
        with pytest.raises(error, match=r"trailing shape \(3,\)"):
            pulled.log_prob(torch.randn(4, 3))


def test_plot_graph_needs_an_existing_folder_and_graphviz(tmp_path):
    inp = Ff.InputNode(3, name="x")
    nodes = [inp, Ff.OutputNode(inp)]
    with pytest.raises(FileNotFoundError, match="not an existing folder"):
        plot_graph(nodes, path=str(tmp_path / "absent"))
    if shutil.which("dot") is None:
        with pytest.raises(BackendError, match="Graphviz"):
            plot_graph(nodes, path=str(tmp_path), filename="g")
    else:
        plot_graph(nodes, path=str(tmp_path), filename="g")
        assert (tmp_path / "g").read_text().startswith("digraph")
        assert (tmp_path / "g.pdf").read_bytes().startswith(b"%PDF")


def test_the_suite_runner_changes_import_lines_only(tmp_path, capsys):
    source = tmp_path / "suite"
    source.mkdir()
    text = (
        "import FrEIA.framework as Ff\nfrom FrEIA.modules import *\n"
        "x = 'import FrEIA.modules'  # not an import line\nimport FrEIAx\n"
    )
    (source / "test_a.py").write_text(text)
    (source / "LICENSE").write_text("kept as it is\n")
    assert suite_runner.point_at_drop_in(source, tmp_path / "out") == 2
    lines = (tmp_path / "out" / "test_a.py").read_text().splitlines()
    assert lines[0] == "import flowcore.backends.torch.freia.framework as Ff"
    assert lines[1] == "from flowcore.backends.torch.freia.modules import *"
    assert lines[2:] == text.splitlines()[2:]
    assert (tmp_path / "out" / "LICENSE").read_text() == "kept as it is\n"
    assert suite_runner.main([str(tmp_path / "nowhere")]) == 0
    assert "ran nothing" in capsys.readouterr().out


def test_blocks_that_ignore_conditions_in_freia_ignore_them_here():
    torch.manual_seed(4)
    block = Fm.PermuteRandom([(D,)], dims_c=[(3,)], seed=0)
    assert block.flowcore_tree.spec.label == "Unconditioned(PermuteRandom)"
    x = torch.randn(5, D)
    (y1,), ld1 = block([x], c=[torch.randn(5, 3)])
    (y2,), _ = block([x], c=[torch.randn(5, 3)])
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    torch.testing.assert_close(torch.sort(y1, dim=1)[0], torch.sort(x, dim=1)[0], rtol=0, atol=0)
    assert torch.all(ld1 == 0)
    with pytest.raises(ValueError, match="takes no condition"):  # the portable spec refuses
        build_tree(Fm.PermuteRandom.spec_class(seed=0), [(D,)], [(3,)])


def test_bad_input_to_the_drop_in_is_a_clear_error():
    with pytest.raises(ValueError, match=r"version must be one of \('0.2', 'master'\)"):
        use_freia("1.0")
    inn = Ff.SequenceINN(D)
    block = Fm.AllInOneBlock([(D,)], subnet_constructor=_subnet)
    with pytest.raises(TypeError, match="already built: it takes no arguments"):
        inn.append(block, clamp=2.0)
    with pytest.raises(TypeError, match="not a torch module"):
        inn.append(lambda dims_in, **kw: "not a module")
    with pytest.raises(ValueError, match="cond=... needs cond_shape"):
        inn.append(Fm.AllInOneBlock, cond=0, subnet_constructor=_subnet)
    assert len(inn) == 0  # nothing was appended

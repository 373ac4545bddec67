"""The PyTorch adapter: native module conventions, FrEIA's imperative API, compile and DDP.

Numbers are compared with the float64 NumPy reference: in float64 the backend runs the same
operations in the same order up to BLAS summation order, so 1e-12 holds; in float32 two
shallow blocks on O(1) inputs stay within 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch backend needs PyTorch")

import flowcore.backends.torch as Ff  # noqa: E402
from selected_backends import subject  # noqa: E402

import flowcore as fc  # noqa: E402

pytestmark = subject("torch")


def _spec() -> fc.SequenceINN:
    return fc.SequenceINN(
        fc.AllInOneBlock(subnet=fc.MLP(hidden=(16,), zero_init_last=False)),
        fc.AllInOneBlock(subnet=fc.MLP(hidden=(16,), zero_init_last=False), permute_soft=True),
        conditions=[None, 0],
    )


def _inputs(dtype=torch.float64):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(6, 5, generator=gen, dtype=dtype), torch.randn(
        6, 3, generator=gen, dtype=dtype
    )


def test_build_returns_plain_module_with_canonical_state_dict():
    flow = fc.build(_spec(), (5,), [(3,)], backend="torch", seed=0)
    assert isinstance(flow, torch.nn.Module)
    keys = set(flow.state_dict())
    assert keys == set(fc.tree_of(flow).param_specs())
    assert "0.w_perm" in dict(flow.named_buffers())  # buffers are not trainable parameters
    assert "0.global_scale" in dict(flow.named_parameters())
    assert flow.state_dict()["0.w_perm"].dtype == torch.int64


def test_matches_reference_float64():
    flow = fc.build(_spec(), (5,), [(3,)], backend="torch", seed=0, dtype="float64")
    x, c = _inputs()
    z, log_det = flow(x, c)
    (z_ref,), log_det_ref = fc.reference(flow)([x.numpy()], [c.numpy()])
    np.testing.assert_allclose(z.detach().numpy(), z_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(log_det.detach().numpy(), log_det_ref, rtol=0, atol=1e-12)
    assert log_det.shape == (6,)


def test_to_dtype_keeps_index_buffers_and_state_dict_round_trips():
    flow = fc.build(_spec(), (5,), [(3,)], backend="torch", seed=0)
    flow64 = flow.to(torch.float64)
    assert flow64.state_dict()["0.w_perm"].dtype == torch.int64
    assert flow64.state_dict()["1.w_perm"].dtype == torch.float64
    other = fc.build(_spec(), (5,), [(3,)], backend="torch", seed=7, dtype="float64")
    other.load_state_dict(flow64.state_dict())
    x, c = _inputs()
    torch.testing.assert_close(other(x, c)[0], flow64(x, c)[0], rtol=0, atol=0)


def test_get_set_params_round_trip():
    a = fc.build(_spec(), (5,), [(3,)], backend="torch", seed=0)
    b = fc.build(_spec(), (5,), [(3,)], backend="torch", seed=1)
    assert not np.array_equal(
        fc.get_params(a)["0.subnet.0.weight"], fc.get_params(b)["0.subnet.0.weight"]
    )
    fc.set_params(b, fc.get_params(a))
    for name, value in fc.get_params(a).items():
        np.testing.assert_array_equal(fc.get_params(b)[name], value)
    with pytest.raises(fc.ParameterError, match="missing"):
        fc.set_params(b, {"0.global_scale": np.zeros((1, 5))})


def test_torch_compile_matches_eager():
    flow = fc.build(_spec(), (5,), [(3,)], backend="torch", seed=0, dtype="float64")
    x, c = _inputs()
    compiled = torch.compile(flow)
    torch.testing.assert_close(compiled(x, c)[0], flow(x, c)[0], rtol=0, atol=1e-13)
    torch.testing.assert_close(
        compiled(x, c, rev=True)[1], flow(x, c, rev=True)[1], rtol=0, atol=1e-13
    )


def test_ddp_single_process_gradients_match(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        flow = fc.build(_spec(), (5,), [(3,)], backend="torch", seed=0, dtype="float64")
        ddp = torch.nn.parallel.DistributedDataParallel(flow)
        x, c = _inputs()
        z, log_det = ddp(x, c)
        (0.5 * (z**2).sum() - log_det.sum()).backward()
        grads = {n: p.grad.clone() for n, p in flow.named_parameters()}
        plain = fc.build(_spec(), (5,), [(3,)], backend="torch", seed=0, dtype="float64")
        z, log_det = plain(x, c)
        (0.5 * (z**2).sum() - log_det.sum()).backward()
        for n, p in plain.named_parameters():
            torch.testing.assert_close(grads[n], p.grad, rtol=0, atol=1e-12)
    finally:
        dist.destroy_process_group()


def test_imperative_sequence_equals_build_with_same_seed():
    seq = Ff.SequenceINN(5, seed=0, dtype=torch.float64)
    seq.append(fc.AllInOneBlock, subnet=fc.MLP(hidden=(16,), zero_init_last=False))
    seq.append(
        fc.AllInOneBlock,
        cond=0,
        cond_shape=(3,),
        subnet=fc.MLP(hidden=(16,), zero_init_last=False),
        permute_soft=True,
    )
    flow = fc.build(_spec(), (5,), [(3,)], backend="torch", seed=0, dtype="float64")
    x, c = _inputs()
    torch.testing.assert_close(seq(x, [c])[0], flow(x, c)[0], rtol=0, atol=0)
    assert len(seq) == 2 and isinstance(seq[1], Ff.FlowModule)


def test_slicing_and_negative_step_inverts():
    seq = Ff.SequenceINN(5, seed=3, dtype=torch.float64)
    for _ in range(3):
        seq.append(fc.AllInOneBlock, subnet=fc.MLP(hidden=(8,), zero_init_last=False))
    x, _ = _inputs()
    z, log_det = seq(x)
    head, _ = seq[:2](x)
    tail, _ = seq[2:](head)
    torch.testing.assert_close(tail, z, rtol=0, atol=0)
    x_back, log_det_back = seq[::-1](z)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(log_det_back, -log_det, rtol=0, atol=1e-12)
    assert getattr(seq[::-1], "0").inner is seq[2]  # parameters are shared, not copied


def test_native_subnet_constructor_on_images():
    def conv(c_in: int, c_out: int) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Conv2d(c_in, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, c_out, 1)
        )

    seq = Ff.SequenceINN(4, 6, 6, seed=0, dtype=torch.float64)
    seq.append(fc.AllInOneBlock, subnet_constructor=conv, cond=0, cond_shape=(2,))
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    c = torch.randn(3, 2, dtype=torch.float64)
    z, log_det = seq(x, [c])
    x_back, log_det_back = seq(z, [c], rev=True)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        log_det + log_det_back, torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-12
    )
    assert "0.subnet.0.weight" in seq.state_dict()


def test_clear_errors_for_bad_input():
    flow = fc.build(_spec(), (5,), [(3,)], backend="torch", seed=0)
    x, c = _inputs(torch.float32)
    with pytest.raises(
        fc.ShapeError, match=r"SequenceINN.*input 0 should have shape \(batch, 5\)"
    ):
        flow(torch.randn(2, 4), c)
    with pytest.raises(fc.ShapeError, match="expected 1 condition"):
        flow(x)
    with pytest.raises(fc.ShapeError, match="float32 or float64"):
        flow(x.to(torch.int64), c)
    with pytest.raises(fc.BackendError, match="unknown flowcore backend 'nope'"):
        fc.build(_spec(), (5,), [(3,)], backend="nope")


def test_failed_append_leaves_the_sequence_unchanged():
    seq = Ff.SequenceINN(4, seed=0)
    seq.append(fc.AllInOneBlock, subnet=fc.MLP(hidden=(8,)))

    def broken(c_in: int, c_out: int) -> object:
        return "not a module"

    with pytest.raises(TypeError, match="must return a torch.nn.Module"):
        seq.append(fc.AllInOneBlock, cond=0, cond_shape=(2,), subnet_constructor=broken)
    assert len(seq) == 1 and seq.flowcore_tree.signature.conditions == ()
    seq.append(fc.AllInOneBlock, subnet=fc.MLP(hidden=(8,)))
    z, log_det = seq(torch.randn(3, 4))
    assert z.shape == (3, 4) and log_det.shape == (3,)


def test_fullgraph_compile_after_the_numpy_reference_has_no_graph_break():
    """The input check's dtype cache once held NumPy dtypes beside torch's, and hashing
    them while checking a torch tensor broke torch.compile's graph."""
    tree = fc.build_tree(_spec(), [(5,)], [(3,)])
    fc.Reference(tree, fc.initial_params(tree, 0))([np.ones((2, 5))], [np.ones((2, 3))])
    flow = fc.build(_spec(), (5,), [(3,)], backend="torch", seed=0, dtype="float64")
    x, c = _inputs()
    run = fc.get_backend("torch").compiled(flow)  # fullgraph=True: a break raises
    torch.testing.assert_close(run([x], [c], False, True)[0][0], flow(x, c)[0], rtol=0, atol=1e-13)

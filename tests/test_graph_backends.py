"""Graphs in each backend: FrEIA's ``GraphINN(node_list)`` API, registered modules, compiled
and traced calls, and DistributedDataParallel.

- FrEIA's form (``flowcore.backends.<name>.GraphINN``) computes what the float64 reference
  of its graph spec computes with its parameters: 1e-12 in float64 (the same operations in
  another order of summation; values ~1), and returns FrEIA's conventions (a tensor for one
  output unless ``force_tuple_output``; every variable with ``intermediate_outputs``).
- torch: every node's module is a registered submodule (``.to``, ``state_dict``,
  ``DataParallel``); two-process DDP training (gloo) ends with the parameters of one process
  training on the whole batch, to 1e-12 in float64 (gradients averaged over the ranks equal
  the full-batch mean up to summation order).
- JAX: the pure form of a graph traces under ``jax.jit`` as one function and agrees with the
  eager call to 1e-12 in float64; Keras on TensorFlow: the layer under ``tf.function``.
"""

from __future__ import annotations

import numpy as np
import pytest
from selected_backends import subject

import flowcore as fc
from flowcore.tree import build_tree

ATOL = 1e-12


def graph_nodes() -> list[fc.models.nodes.GraphNode]:
    """A conditional two-output graph: a feed-forward net of the condition conditions a
    coupling after a split."""
    x = fc.InputNode(6, name="x")
    c = fc.ConditionNode(3, name="c")
    ff = fc.FeedForwardNode(c, (4,), fc.MLP(hidden=(8,)), name="embed")
    a = fc.Node(x, fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,))), conditions=c, name="a")
    split = fc.Node(a, fc.Split(section_sizes=(2, 4)), name="split")
    b = fc.Node(split.out1, fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,))), conditions=ff)
    return [x, c, ff, a, split, b, fc.OutputNode(split.out0), fc.OutputNode(b, name="z")]


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.standard_normal((5, 6)), rng.standard_normal((5, 3))


def reference(model) -> fc.Reference:
    return fc.reference(model)


def _close(got, want, atol=ATOL) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=0, atol=atol)


# -- torch ----------------------------------------------------------------------------------


@subject("torch")
def test_torch_freia_graph_matches_its_reference_and_conventions():
    torch = pytest.importorskip("torch", reason="the torch backend needs torch")
    import flowcore.backends.torch as ft

    nodes = graph_nodes()
    graph = ft.GraphINN(nodes, seed=0, dtype=torch.float64)
    x, c = data()
    ref = reference(graph)
    (want0, want1), want_log_det = ref([x], [c])
    (z0, z1), log_det = graph(torch.tensor(x), c=torch.tensor(c))
    _close(z0.detach(), want0)
    _close(z1.detach(), want1)
    _close(log_det.detach(), want_log_det)
    back, back_log_det = graph([z0, z1], torch.tensor(c), rev=True)
    _close(back.detach(), x, 1e-10)  # a tensor: one input
    _close((log_det + back_log_det).detach(), 0 * want_log_det, 1e-10)

    outs, log_dets = graph(torch.tensor(x), torch.tensor(c), intermediate_outputs=True)
    a = graph.get_node_by_name("a")
    want_a, want_a_log_det = fc.Reference(build_tree(a.spec, [(6,)], [(3,)]), _sub(ref, "a"))(
        [x], [c]
    )
    _close(outs[(a, 0)].detach(), want_a[0])
    _close(log_dets[a].detach(), want_a_log_det)
    assert set(log_dets) == {a, nodes[4], nodes[5]}  # every transform node
    _close(sum(v.detach() for v in log_dets.values()), want_log_det)
    assert graph.get_node_by_name("node5") is nodes[5]  # the default name of an unnamed node
    assert graph.get_module_by_name("embed") is dict(graph.named_children())["embed"]


def _sub(ref: fc.Reference, prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) + 1 :]: v for k, v in ref.params.items() if k.startswith(prefix + ".")}


@subject("torch")
def test_torch_force_tuple_output_and_native_modules():
    torch = pytest.importorskip("torch", reason="the torch backend needs torch")
    import flowcore.backends.torch as ft

    def subnet(c_in: int, c_out: int) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Linear(c_in, 8), torch.nn.Tanh(), torch.nn.Linear(8, c_out)
        )

    x = ft.InputNode(4, name="x")
    c = ft.ConditionNode(3, name="c")
    ff = ft.FeedForwardNode(c, (2,), torch.nn.Linear, {"in_features": 3, "out_features": 2})
    a = ft.Node(x, ft.AllInOneBlock, {"subnet_constructor": subnet}, conditions=ff, name="a")
    graph = ft.GraphINN([x, c, ff, a, ft.OutputNode(a)], force_tuple_output=True, seed=1)
    xt, ct = torch.randn(7, 4), torch.randn(7, 3)
    (z,), log_det = graph(xt, ct)
    back, _ = graph([z], ct, rev=True)
    assert isinstance(back, tuple) and len(back) == 1
    torch.testing.assert_close(back[0], xt, rtol=0, atol=1e-5)  # float32 round trip
    assert {n for n, _ in graph.named_children()} == {"feedforward2", "a"}
    assert isinstance(graph.get_module_by_name("feedforward2"), torch.nn.Linear)


@subject("torch")
def test_torch_modules_are_registered_for_to_state_dict_and_data_parallel():
    torch = pytest.importorskip("torch", reason="the torch backend needs torch")
    import flowcore.backends.torch as ft

    graph = ft.GraphINN(graph_nodes(), seed=0)
    names = set(graph.state_dict())
    assert names == set(fc.get_params(graph)), "state_dict keys are the canonical names"
    assert {"a.subnet.0.weight", "embed.1.bias", "node5.global_scale"} <= names
    graph.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in graph.parameters())
    x, c = (torch.tensor(v) for v in data())
    want, want_log_det = graph(x, c)
    parallel = torch.nn.DataParallel(graph)
    got, log_det = parallel(x, c)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    torch.testing.assert_close(log_det, want_log_det, rtol=0, atol=0)
    copy = ft.GraphINN(graph_nodes(), seed=5, dtype=torch.float64)
    copy.load_state_dict(graph.state_dict())
    torch.testing.assert_close(copy(x, c)[1], want_log_det, rtol=0, atol=0)


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import flowcore.backends.torch as ft
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = ft.GraphINN(graph_nodes(), seed=0, dtype=torch.float64)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    grads = _train(ddp, model, rank, world)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({"state": state, "grads": grads}, f"{out_dir}/{rank}.pt")
    dist.destroy_process_group()


def _train(module, model, rank: int, world: int) -> dict:
    """Three Adam steps on this rank's share of a fixed batch, the loss the mean NLL; returns
    the gradients of the first step."""
    import torch

    x, c = (torch.tensor(v) for v in _batch())
    share = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = {}
    for step in range(3):
        opt.zero_grad()
        zs, log_det = module(x[share], c[share])
        loss = (sum(0.5 * (z**2).sum(1) for z in zs) - log_det).mean()
        loss.backward()
        if step == 0:
            first = {n: p.grad.clone() for n, p in model.named_parameters()}
        opt.step()
    return first


def _batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    return rng.standard_normal((8, 6)), rng.standard_normal((8, 3))


@subject("torch")
def test_torch_graph_trains_under_ddp_as_in_one_process(tmp_path):
    torch = pytest.importorskip("torch", reason="the torch backend needs torch")
    import torch.multiprocessing as mp

    if not torch.distributed.is_available():
        pytest.skip("this torch build has no torch.distributed")
    import flowcore.backends.torch as ft

    mp.spawn(
        _ddp_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    single = ft.GraphINN(graph_nodes(), seed=0, dtype=torch.float64)
    want_grads = _train(single, single, 0, 1)
    want = single.state_dict()
    for rank in range(2):
        saved = torch.load(tmp_path / f"{rank}.pt")
        got, grads = saved["state"], saved["grads"]
        assert set(got) == set(want) and set(grads) == set(want_grads)
        for name in want_grads:  # DDP's all-reduced mean of the two halves' gradients
            torch.testing.assert_close(grads[name], want_grads[name], rtol=0, atol=ATOL)
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=0, atol=ATOL, msg=name)
    moved = max(float((want[k] - v).abs().max()) for k, v in _initial_state().items())
    assert moved > 1e-3, "training changed the parameters"


def _initial_state():
    import flowcore.backends.torch as ft
    import torch

    return ft.GraphINN(graph_nodes(), seed=0, dtype=torch.float64).state_dict()


# -- JAX ------------------------------------------------------------------------------------


@subject("jax")
def test_jax_graph_traces_under_jit_as_one_function():
    jax = pytest.importorskip("jax", reason="the jax backend needs JAX")
    if not jax.config.jax_enable_x64:
        pytest.skip("64-bit JAX for a float64 test needs JAX_ENABLE_X64=1")
    import flowcore.backends.jax as fj

    graph = fc.GraphINN(graph_nodes())
    apply, params = fj.init(graph, graph.input_dims, graph.condition_dims, seed=0)
    x, c = data()
    jitted = jax.jit(apply, static_argnames=("rev",))
    zs, log_det = jitted(params, [x], [c])
    eager_zs, eager_log_det = apply(params, [x], [c])
    for z, e in zip(zs, eager_zs, strict=True):
        _close(z, np.asarray(e))
    _close(log_det, np.asarray(eager_log_det))
    back, _ = jitted(params, list(zs), [c], rev=True)
    _close(back[0], x, 1e-10)
    jaxpr = jax.make_jaxpr(lambda p, x_, c_: apply(p, [x_], [c_]))(params, x, c)
    assert len(jaxpr.out_avals) == 3  # one program: two outputs and the log-det


@subject("jax")
def test_jax_freia_graph_module():
    jax = pytest.importorskip("jax", reason="the jax backend needs JAX")
    if not jax.config.jax_enable_x64:
        pytest.skip("64-bit JAX for a float64 test needs JAX_ENABLE_X64=1")
    import flowcore.backends.jax as fj

    graph = fj.GraphINN(graph_nodes(), seed=0, dtype="float64")
    x, c = data()
    (want0, want1), want_log_det = reference(graph)([x], [c])
    (z0, z1), log_det = graph(x, c)
    _close(z0, want0)
    _close(z1, want1)
    _close(log_det, want_log_det)
    outs, log_dets = graph(x, c, intermediate_outputs=True)
    assert {n.name for n in log_dets} == {"a", "split", None}  # b is unnamed
    assert {(graph.get_node_by_name(n), k) for n, k in [("x", 0), ("split", 1), ("z", 0)]} <= set(
        outs
    )
    _close(outs[(graph.get_node_by_name("z"), 0)], want1)


# -- Keras ----------------------------------------------------------------------------------


@subject("keras")
def test_keras_graph_in_graph_mode_and_saved(tmp_path):
    keras = pytest.importorskip("keras", reason="the Keras backend tests need keras")
    import flowcore.backends.keras as fk

    graph = fk.GraphINN(graph_nodes(), seed=0)
    x, c = (v.astype(np.float32) for v in data())
    (want0, want1), want_log_det = reference(graph)([x], [c])
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        call = tf.function(lambda x_, c_: graph(x_, c_))
    elif keras.backend.backend() == "jax":
        import jax

        call = jax.jit(lambda x_, c_: graph(x_, c_))
    else:
        call = graph  # Keras on torch runs eagerly
    (z0, z1), log_det = call(x, c)
    tol = 1e-4  # float32 against the float64 reference (see tests/test_keras_backend.py)
    _close(keras.ops.convert_to_numpy(z0), want0, tol)
    _close(keras.ops.convert_to_numpy(z1), want1, tol)
    _close(keras.ops.convert_to_numpy(log_det), want_log_det, tol)
    model_in = keras.Input((6,)), keras.Input((3,))
    outputs = graph(model_in[0], model_in[1])
    model = keras.Model(model_in, outputs)
    model.save(tmp_path / "graph.keras")
    loaded = keras.models.load_model(tmp_path / "graph.keras")
    (l0, l1), l_log_det = loaded([x, c])
    for got, want in ((l0, z0), (l1, z1), (l_log_det, log_det)):
        _close(keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want), 1e-6)

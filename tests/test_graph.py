"""GraphINN in the core, on the float64 NumPy reference (no framework but for build/save).

- Construction errors name the nodes: cycles (a node reading its own input as a condition,
  two nodes reading each other's inputs, a hand-edited config), variables used twice or
  never, unused inputs and conditions, shapes that do not fit, nodes not in the list,
  repeated names, bad ``outK``, calls with the wrong shapes.
- Topology: every node runs after the nodes it needs, in both directions (conditions on
  intermediate variables included); the order of the node list does not change results;
  inverse(forward(x)) == x; a chain graph is its SequenceINN; a graph with a split and an
  intermediate condition is its hand-written composition, log-det the nodes' sum, both ways.
- Configs: JSON round trips give equal specs and identical outputs (Inverse of a graph and a
  graph in a sequence too); slices of a sequence holding a graph.
- ``flowcore.build`` takes a graph's own shapes; ``save``/``load`` keep its outputs.

Tolerance 1e-12 where two float64 computations do the same operations in another grouping
(log-dets are sums of up to ~100 terms of size ~1, errors ~1e-15); exact equality where the
operations are the same.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from flowcore.conformance import cases

import flowcore as fc
from flowcore.errors import ShapeError
from flowcore.models.graph import GraphINN
from flowcore.serialize import spec_from_config, spec_to_config
from flowcore.tree import build_tree, initial_params

ATOL = 1e-12
GRAPH_CASES = [c for c in cases.CASES.values() if c.name.startswith("graph_")]


def aio():
    return fc.AllInOneBlock(subnet=fc.MLP(hidden=(8,), zero_init_last=False))


def perturbed(tree, seed=0):
    """Initial parameters plus noise, so that no block is the identity."""
    params = initial_params(tree, seed)
    rng = np.random.default_rng(seed)
    for name, spec in tree.param_specs().items():
        if spec.trainable:
            params[name] = params[name] + 0.3 * rng.standard_normal(spec.shape)
    return params


def data(*shapes, seed=1, batch=3):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, *s)) for s in shapes]


def reference(spec, params=None):
    """The float64 reference of a graph (or a transform of a graph) at its own shapes."""
    inputs, conditions = spec.default_shapes()
    tree = build_tree(spec, inputs, conditions)
    return fc.Reference(tree, perturbed(tree) if params is None else params)


def chain(n_blocks=2):
    x = fc.InputNode(4, name="x")
    nodes, last = [x], x
    for i in range(n_blocks):
        last = fc.Node(last, aio(), name=f"b{i}")
        nodes.append(last)
    return nodes + [fc.OutputNode(last, name="z")]


def intermediate():
    """x -> split; c(split.out1 | split.out0); b(split.out0 | c): outputs b, c."""
    x = fc.InputNode(6, name="x")
    split = fc.Node(x, fc.Split(section_sizes=(3, 3)), name="split")
    c = fc.Node(split.out1, aio(), conditions=split.out0, name="c")
    b = fc.Node(split.out0, aio(), conditions=c, name="b")
    return [x, split, c, b, fc.OutputNode(b, name="zb"), fc.OutputNode(c, name="zc")]


# -- construction errors ------------------------------------------------------------------


def _conditioned_on_own_input():
    x = fc.InputNode(4, name="x")
    b = fc.Node(x, aio(), conditions=x, name="b")
    GraphINN([x, b, fc.OutputNode(b)])


def _reverse_cycle():
    # each reads the other's input, which the other recomputes in the reverse pass
    x = fc.InputNode(6, name="x")
    split = fc.Node(x, fc.Split(section_sizes=(3, 3)), name="split")
    c = fc.Node(split.out1, aio(), conditions=split.out0, name="c")
    b = fc.Node(split.out0, aio(), conditions=split.out1, name="b")
    GraphINN([x, split, c, b, fc.OutputNode(c), fc.OutputNode(b)])


def _edited_config(edit):
    config = json.loads(json.dumps(spec_to_config(GraphINN(chain(2)))))
    nodes = {entry[1]: entry for entry in config["config"]["nodes"]}
    edit(nodes)
    spec_from_config(config)


def _config_cycle():
    def edit(nodes):
        nodes["b0"][4] = [["b1", 0]]  # b0 conditioned on b1, which reads b0

    _edited_config(edit)


def _config_unknown_node():
    def edit(nodes):
        nodes["b1"][3] = [["nowhere", 0]]

    _edited_config(edit)


def _consumed_twice():
    x = fc.InputNode(4, name="x")
    fc.Node(x, aio(), name="a")
    fc.Node(x, aio(), name="b")


def _output_unused():
    x = fc.InputNode(4, name="x")
    split = fc.Node(x, fc.Split(section_sizes=(2, 2)), name="split")
    GraphINN([x, split, fc.OutputNode(split.out0)])


def _input_unused():
    x, y = fc.InputNode(4, name="x"), fc.InputNode(4, name="y")
    a = fc.Node(x, aio(), name="a")
    GraphINN([x, y, a, fc.OutputNode(a)])


def _condition_unused():
    x, c = fc.InputNode(4, name="x"), fc.ConditionNode(2, name="c")
    a = fc.Node(x, aio(), name="a")
    GraphINN([x, c, a, fc.OutputNode(a)])


def _feed_forward_unused():
    x, c = fc.InputNode(4, name="x"), fc.ConditionNode(2, name="c")
    ff = fc.FeedForwardNode(c, (3,), fc.MLP(hidden=(8,)), name="ff")
    a = fc.Node(x, aio(), conditions=c, name="a")
    GraphINN([x, c, ff, a, fc.OutputNode(a)])


def _concat_mismatch():
    x, y = fc.InputNode(2, 4, 4, name="x"), fc.InputNode(2, 2, 2, name="y")
    fc.Node([x, y], fc.Concat(), name="cat")


def _coupling_condition_mismatch():
    x, c = fc.InputNode(3, 4, 4, name="x"), fc.ConditionNode(2, 3, 3, name="c")
    fc.Node(x, fc.GLOWCouplingBlock(subnet=fc.ConvNet(hidden=(4,))), conditions=c, name="glow")


def _mlp_on_an_image():
    x = fc.InputNode(3, 4, 4, name="x")
    fc.Node(x, fc.GLOWCouplingBlock(subnet=fc.MLP(hidden=(4,))), name="glow")


def _input_not_listed():
    x = fc.InputNode(4, name="x")
    a = fc.Node(x, aio(), name="a")
    GraphINN([a, fc.OutputNode(a)])


def _condition_not_listed():
    x, c = fc.InputNode(4, name="x"), fc.ConditionNode(2, name="c")
    a = fc.Node(x, aio(), conditions=c, name="a")
    GraphINN([x, a, fc.OutputNode(a)])


def _consumer_not_listed():
    x = fc.InputNode(4, name="x")
    a = fc.Node(x, aio(), name="a")
    fc.OutputNode(a, name="z")
    GraphINN([x, a])


def _repeated_name():
    x = fc.InputNode(4, name="a")
    a = fc.Node(x, aio(), name="a")
    GraphINN([x, a, fc.OutputNode(a)])


def _repeated_default_name():
    x = fc.InputNode(4, name="node1")
    a = fc.Node(x, aio())  # second in the list: named "node1" too
    GraphINN([x, a, fc.OutputNode(a)])


def _listed_twice():
    x = fc.InputNode(4, name="x")
    a = fc.Node(x, aio(), name="a")
    GraphINN([x, a, a, fc.OutputNode(a)])


def _no_such_output_index():
    x = fc.InputNode(4, name="x")
    fc.OutputNode((fc.Node(x, aio(), name="a"), 3))


def _feed_forward_as_input():
    x, c = fc.InputNode(4, name="x"), fc.ConditionNode(2, name="c")
    ff = fc.FeedForwardNode(c, (3,), fc.MLP(hidden=(8,)), name="ff")
    fc.Node([x, ff], fc.Concat(), name="cat")


def _bound_to_other_shapes():
    build_tree(GraphINN(chain(1)), [(5,)])


def _called_with_other_shapes():
    reference(GraphINN(chain(1)))(data((5,)))


def _refusals(*rows):
    return [pytest.param(*row, id=row[0].__name__.strip("_")) for row in rows]


@pytest.mark.parametrize(
    ("make", "error", "match"),
    _refusals(
        (
            _conditioned_on_own_input,
            ShapeError,
            "Node 'b' is conditioned on output 0 of InputNode 'x', which it computes itself "
            "in the reverse pass",
        ),
        (_reverse_cycle, ShapeError, "reverse pass has a cycle: Node '[bc]' -> Node '[bc]' ->"),
        (_config_cycle, ShapeError, "config: the nodes read each other in a cycle: 'b[01]' ->"),
        (_config_unknown_node, ShapeError, r"node 'b1' reads \['nowhere'\], which the config"),
        (_consumed_twice, ShapeError, "Node 'b': output 0 of InputNode 'x' already goes to Node"),
        (_output_unused, ShapeError, "output 1 of Node 'split' is used by nothing"),
        (_input_unused, ShapeError, "output 0 of InputNode 'y' is used by nothing"),
        (_condition_unused, ShapeError, "ConditionNode 'c' is used by nothing"),
        (_feed_forward_unused, ShapeError, "FeedForwardNode 'ff' is used by nothing"),
        (_concat_mismatch, ShapeError, r"Node 'cat': Concat: .*got \(2, 2, 2\)"),
        (_coupling_condition_mismatch, ShapeError, "Node 'glow': GLOWCouplingBlock: condition 0"),
        (_mlp_on_an_image, ShapeError, "Node 'glow': MLP: needs 1-D features"),
        (
            _input_not_listed,
            ShapeError,
            "Node 'a' takes an input from InputNode 'x', which is not",
        ),
        (_condition_not_listed, ShapeError, "Node 'a' takes a condition from ConditionNode 'c'"),
        (_consumer_not_listed, ShapeError, "Node 'a' goes to OutputNode 'z', which is not in"),
        (_repeated_name, ShapeError, "InputNode 'a' and Node 'a' have the same name 'a'"),
        (_repeated_default_name, ShapeError, r"Node\(AllInOneBlock\) have the same name 'node1'"),
        (_listed_twice, ShapeError, "Node 'a' is listed twice"),
        (_no_such_output_index, ShapeError, "Node 'a' has 1 output.s., there is no output 3"),
        (_feed_forward_as_input, TypeError, "FeedForwardNode 'ff' gives conditions, not inputs"),
        (_bound_to_other_shapes, ShapeError, r"input shapes \[\(5,\)\] do not match .*'x' \(4,\)"),
        (_called_with_other_shapes, ShapeError, r"input 0 should have shape \(batch, 4\)"),
    ),
)
def test_a_bad_graph_is_refused_naming_the_nodes(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_out_k_beyond_the_outputs_is_an_attribute_error_naming_the_node():
    x = fc.InputNode(4, name="x")
    split = fc.Node(x, fc.Split(section_sizes=(1, 3)), name="split")
    assert split.out1 == (split, 1)
    with pytest.raises(AttributeError, match=r"Node 'split' has 2 output\(s\), no out2"):
        split.out2  # noqa: B018


# -- topology -----------------------------------------------------------------------------


def _producers(graph, rev):
    """Independently of the graph's own sort: for each step, the steps that must run first."""
    steps = {r.name for r in graph.records if r.kind in ("node", "feed_forward")}
    consumer = {e: r.name for r in graph.records for e in r.inputs}

    def made_by(edge):  # the step computing ``edge`` in this pass, or None if given
        record = graph.record(edge[0])
        if record.kind == "feed_forward" or (not rev and record.kind == "node"):
            return edge[0]
        if rev and record.kind in ("input", "node"):
            return consumer[edge]
        return None

    needs = {}
    for r in graph.records:
        if r.name not in steps:
            continue
        own = [(r.name, k) for k in range(len(r.output_dims))] if r.kind == "node" else []
        reads = [*r.conditions, *(own if rev else r.inputs)]
        needs[r.name] = {p for e in reads if (p := made_by(e)) in steps and p != r.name}
    return needs


@pytest.mark.parametrize("case", GRAPH_CASES, ids=lambda c: c.name)
def test_each_node_runs_after_the_nodes_it_needs_both_ways(case):
    graphs = [n.spec for n in case.tree().walk() if isinstance(n.spec, GraphINN)]
    assert graphs
    for graph in graphs:
        for rev, order in ((False, graph.forward_order), (True, graph.reverse_order)):
            needs = _producers(graph, rev)
            assert sorted(order) == sorted(needs)
            for i, name in enumerate(order):
                assert needs[name] <= set(order[:i]), (rev, name, needs[name], order[:i])


def test_a_condition_on_an_intermediate_variable_orders_the_reverse_pass():
    graph = GraphINN(intermediate())
    assert graph.forward_order == ("split", "c", "b")
    # b's inverse recomputes split.out0, which c's inverse reads: b first, against list order
    assert graph.reverse_order == ("b", "c", "split")


@pytest.mark.parametrize("case", GRAPH_CASES, ids=lambda c: c.name)
def test_inverse_of_forward_is_the_identity(case):
    tree = case.tree()
    ref = fc.Reference(tree, case.params(tree))
    xs, cs = case.data()
    ys, log_det = ref(xs, cs)
    back, log_det_back = ref(ys, cs, rev=True)
    for x, b in zip(xs, back, strict=True):
        np.testing.assert_allclose(b, x, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det + log_det_back, 0.0, rtol=0, atol=ATOL)
    assert np.abs(log_det).min() > 1e-3  # not a volume-preserving graph by accident


def test_the_order_of_the_node_list_does_not_change_the_results():
    x, split, c, b, zb, zc = intermediate()
    listed = reference(GraphINN([x, split, c, b, zb, zc]))
    # inputs and outputs keep their relative order: it is the order of the call's arrays
    shuffled = reference(GraphINN([zb, b, zc, c, split, x]), listed.params)
    xs = data((6,))
    for rev, arrays in ((False, xs), (True, listed(xs)[0])):
        ys, log_det = listed(arrays, rev=rev)
        ys2, log_det2 = shuffled(arrays, rev=rev)
        for y, y2 in zip(ys, ys2, strict=True):
            np.testing.assert_array_equal(y2, y)
        np.testing.assert_array_equal(log_det2, log_det)


def test_a_chain_graph_is_the_sequence_of_its_blocks():
    x, c = fc.InputNode(4, name="x"), fc.ConditionNode(2, name="c")
    a = fc.Node(x, aio(), conditions=c, name="a")
    b = fc.Node(a, aio(), name="b")
    d = fc.Node(b, aio(), conditions=c, name="d")
    graph = GraphINN([x, c, a, b, d, fc.OutputNode(d)])
    sequence = fc.SequenceINN(aio(), aio(), aio(), conditions=[0, None, 0])
    ref = reference(graph)
    renamed = {
        {"a": "0", "b": "1", "d": "2"}[k.split(".")[0]] + k[k.index(".") :]: v
        for k, v in ref.params.items()
    }
    seq = fc.Reference(build_tree(sequence, [(4,)], [(2,)]), renamed)
    xs, cs = data((4,)), data((2,), seed=2)
    for rev in (False, True):
        (y,), log_det = ref(xs, cs, rev=rev)
        (y_seq,), log_det_seq = seq(xs, cs, rev=rev)
        np.testing.assert_allclose(y, y_seq, rtol=0, atol=ATOL)
        np.testing.assert_allclose(log_det, log_det_seq, rtol=0, atol=ATOL)


def _block(params, name, shape, condition):
    """A reference of node ``name``'s AllInOneBlock with the graph's parameters."""
    tree = build_tree(aio(), [shape], [condition])
    prefix = f"{name}."
    own = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}
    return fc.Reference(tree, own)


def test_a_graph_is_its_hand_written_composition_and_its_log_det_the_nodes_sum():
    ref = reference(GraphINN(intermediate()))
    block_b = _block(ref.params, "b", (3,), (3,))
    block_c = _block(ref.params, "c", (3,), (3,))
    (x,) = data((6,))
    x0, x1 = x[:, :3], x[:, 3:]
    (yc,), log_det_c = block_c([x1], [x0])
    (yb,), log_det_b = block_b([x0], [yc])
    (zb, zc), log_det = ref([x])
    np.testing.assert_allclose(zb, yb, rtol=0, atol=ATOL)
    np.testing.assert_allclose(zc, yc, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det, log_det_b + log_det_c, rtol=0, atol=ATOL)
    # reverse: b first (its condition yc is an output), then c with the recomputed x0
    (x0_back,), back_b = block_b([zb], [zc], rev=True)
    (x1_back,), back_c = block_c([zc], [x0_back], rev=True)
    (x_back,), log_det_back = ref([zb, zc], rev=True)
    np.testing.assert_allclose(x_back, np.concatenate([x0_back, x1_back], 1), rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det_back, back_b + back_c, rtol=0, atol=ATOL)
    assert np.abs(log_det_b).min() > 1e-3 and np.abs(log_det_c).min() > 1e-3


# -- configs and nesting --------------------------------------------------------------------


@pytest.mark.parametrize("case", GRAPH_CASES, ids=lambda c: c.name)
def test_a_json_config_round_trip_gives_an_equal_spec_and_identical_outputs(case):
    spec = case.make()
    loaded = spec_from_config(json.loads(json.dumps(spec_to_config(spec))))
    assert loaded == spec and hash(loaded) == hash(spec)
    assert loaded is not spec
    tree = case.tree()
    params = case.params(tree)
    xs, cs = case.data()
    ys, log_det = fc.Reference(tree, params)(xs, cs)
    ys2, log_det2 = fc.Reference(build_tree(loaded, case.inputs, case.conditions), params)(xs, cs)
    for y, y2 in zip(ys, ys2, strict=True):
        np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(log_det2, log_det)


def test_an_edited_config_is_a_different_graph():
    spec = GraphINN(chain(2))
    config = json.loads(json.dumps(spec_to_config(spec)))
    config["config"]["nodes"][1][2]["config"]["affine_clamping"] = 1.5
    assert spec_from_config(config) != spec


def test_the_inverse_of_a_graph_runs_it_backwards():
    graph = GraphINN(intermediate())
    ref = reference(graph)
    inverse = reference(fc.Inverse(graph), {f"inner.{k}": v for k, v in ref.params.items()})
    assert inverse.tree.signature.inputs == ((3,), (3,))
    assert inverse.tree.signature.outputs == ((6,),)
    zs = data((3,), (3,))
    (x,), log_det = inverse(zs)
    (x_graph,), log_det_graph = ref(zs, rev=True)
    np.testing.assert_array_equal(x, x_graph)
    np.testing.assert_array_equal(log_det, log_det_graph)


def _sequence_with_a_graph():
    case = cases.CASES["graph_in_sequence_img_cond"]
    tree = case.tree()
    return case, fc.Reference(tree, case.params(tree))


def _moved(params, places):
    """Parameters renamed from block ``old`` to ``new`` (a dotted prefix) for each pair."""
    out = {}
    for k, v in params.items():
        block, rest = k.split(".", 1)
        if block in places:
            out[f"{places[block]}.{rest}"] = v
    return out


def test_a_reversed_slice_of_a_sequence_holding_a_graph_is_its_inverse():
    case, ref = _sequence_with_a_graph()
    sequence = case.make()
    assert isinstance(sequence[1], GraphINN)
    backwards = sequence[::-1]
    params = _moved(ref.params, {"0": "2.inner", "1": "1.inner", "2": "0.inner"})
    back = fc.Reference(
        build_tree(backwards, case.tree().signature.outputs, case.conditions), params
    )
    xs, cs = case.data()
    ys, log_det = ref(xs, cs)
    (x,), log_det_back = back(ys, cs)
    np.testing.assert_allclose(x, xs[0], rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det_back, -log_det, rtol=0, atol=ATOL)


def test_slices_of_a_sequence_holding_a_graph_compose_to_the_sequence():
    case, ref = _sequence_with_a_graph()
    sequence = case.make()
    head, tail = sequence[:2], sequence[2:]
    head_ref = fc.Reference(
        build_tree(head, case.inputs, case.conditions), _moved(ref.params, {"0": "0", "1": "1"})
    )
    (mid,), log_det_head = head_ref(*case.data())
    tail_ref = fc.Reference(
        build_tree(tail, [mid.shape[1:]], case.conditions), _moved(ref.params, {"2": "0"})
    )
    (y,), log_det_tail = tail_ref([mid], case.data()[1])
    (y_full,), log_det = ref(*case.data())
    np.testing.assert_allclose(y, y_full, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det_head + log_det_tail, log_det, rtol=0, atol=ATOL)
    assert sequence[1:][0] == sequence[1]  # the graph itself, not a copy that differs


# -- building and saving ------------------------------------------------------------------


def test_build_takes_the_graphs_own_shapes_and_save_load_keeps_its_outputs(tmp_path):
    torch = pytest.importorskip("torch", reason="building a model needs a backend")
    pytest.importorskip("safetensors", reason="save/load need flowcore[weights]")
    graph = cases.CASES["graph_uflow_img"].make()
    model = fc.build(graph, backend="torch", dtype="float64", seed=3)
    tree = fc.tree_of(model)
    assert tree.signature.inputs == ((6, 2, 2), (3, 4, 4))
    xs = data(*graph.input_dims)
    with torch.no_grad():
        ys, log_det = model([torch.from_numpy(x) for x in xs])
    ys_ref, log_det_ref = fc.Reference(tree, fc.get_params(model))(xs)
    for y, r in zip(ys, ys_ref, strict=True):
        np.testing.assert_allclose(y.numpy(), r, rtol=0, atol=ATOL)
    np.testing.assert_allclose(log_det.numpy(), log_det_ref, rtol=0, atol=ATOL)

    fc.save(model, tmp_path / "graph.flowcore")
    loaded = fc.load(tmp_path / "graph.flowcore", backend="torch")
    assert fc.tree_of(loaded).spec == graph
    with torch.no_grad():
        ys2, log_det2 = loaded([torch.from_numpy(x) for x in xs])
    for y, y2 in zip(ys, ys2, strict=True):
        np.testing.assert_array_equal(y2.numpy(), y.numpy())
    np.testing.assert_array_equal(log_det2.numpy(), log_det.numpy())


def test_build_of_the_inverse_of_a_graph_needs_no_shapes_either():
    pytest.importorskip("torch", reason="building a model needs a backend")
    graph = GraphINN(intermediate())
    model = fc.build(fc.Inverse(graph), backend="torch", dtype="float64")
    assert fc.tree_of(model).signature.inputs == ((3,), (3,))

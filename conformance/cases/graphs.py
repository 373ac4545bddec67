"""Conformance cases of GraphINN: the graph shapes of the image flows it is written for, and
the ways a graph nests.

- ``graph_multiscale_img``: a two-scale RealNVP/Glow flow; squeeze, couple, split half the
  channels off to an output at each scale, the last scale flattened: three outputs.
- ``graph_uflow_img``: U-Flow's up path; a coarse stage, split, one part upsampled and
  concatenated with a finer second input, a second stage: two inputs, two outputs.
- ``graph_csflow_img``: CS-Flow's three scales, each its own coupling, conditioned on the
  next coarser scale's result (a flattened vector broadcast over pixels, and an image of
  the same size): three inputs, three outputs.
- ``graph_feedforward_cond_vec``: a ConditionNode through a FeedForwardNode (an MLP) whose
  output conditions two nodes.
- ``graph_intermediate_cond_vec``: nodes conditioned on intermediate variables, so the
  reverse pass runs them in the opposite order to the forward one.
- ``graph_in_sequence_img_cond``: a one-input, one-output graph with a condition, as a
  block of a SequenceINN.
- ``graph_inverse_vec_cond``: ``Inverse`` of a two-output graph, so two inputs.

Images C <= 8 with H, W <= 8, ConvNet hidden (4,), MLP hidden (8,).
"""

from __future__ import annotations

import flowcore as fc
from flowcore.spec import Transform

from . import Case, conv, mlp, register


def _conv() -> fc.ConvNet:
    return conv(hidden=(4,))


def _multiscale() -> Transform:
    x = fc.InputNode(1, 8, 8, name="x")
    down1 = fc.Node(x, fc.IRevNetDownsampling(), name="down1")  # (4, 4, 4)
    glow1 = fc.Node(down1, fc.GLOWCouplingBlock(subnet=_conv(), clamp=1.5), name="glow1")
    split1 = fc.Node(glow1, fc.Split(section_sizes=(2, 2)), name="split1")
    down2 = fc.Node(split1.out1, fc.HaarDownsampling(rebalance=0.5), name="down2")  # (8, 2, 2)
    aio2 = fc.Node(down2, fc.AllInOneBlock(subnet=_conv(), permute_soft=True), name="aio2")
    split2 = fc.Node(aio2, fc.Split(section_sizes=(4, 4)), name="split2")
    flat = fc.Node(split2.out1, fc.Flatten(), name="flat")  # (16,)
    aio3 = fc.Node(flat, fc.AllInOneBlock(subnet=mlp()), name="aio3")
    return fc.GraphINN(
        [
            x, down1, glow1, split1, down2, aio2, split2, flat, aio3,
            fc.OutputNode(split1.out0, name="z1"),
            fc.OutputNode(split2.out0, name="z2"),
            fc.OutputNode(aio3, name="z3"),
        ]
    )  # fmt: skip


def _uflow() -> Transform:
    coarse = fc.InputNode(6, 2, 2, name="coarse")
    fine = fc.InputNode(3, 4, 4, name="fine")
    stage1 = fc.Node(coarse, fc.AllInOneBlock(subnet=_conv()), name="stage1")
    split = fc.Node(stage1, fc.Split(section_sizes=(4, 2)), name="split")
    up = fc.Node(split.out0, fc.IRevNetUpsampling(), name="up")  # (1, 4, 4)
    cat = fc.Node([up, fine], fc.Concat(), name="cat")  # (4, 4, 4)
    stage2 = fc.Node(cat, fc.GLOWCouplingBlock(subnet=_conv()), name="stage2")
    return fc.GraphINN(
        [
            coarse, fine, stage1, split, up, cat, stage2,
            fc.OutputNode(split.out1, name="z_coarse"),
            fc.OutputNode(stage2, name="z_fine"),
        ]
    )  # fmt: skip


_CSFLOW_SCALES = ((1, 8, 8), (2, 4, 4), (2, 2, 2))


def _csflow() -> Transform:
    x0, x1, x2 = (fc.InputNode(*s, name=f"x{i}") for i, s in enumerate(_CSFLOW_SCALES))
    n2 = fc.Node(x2, fc.AllInOneBlock(subnet=_conv()), name="n2")
    flat2 = fc.Node(n2, fc.Flatten(), name="flat2")  # (8,)
    n1 = fc.Node(x1, fc.GLOWCouplingBlock(subnet=_conv()), conditions=flat2, name="n1")
    haar0 = fc.Node(x0, fc.HaarDownsampling(), name="haar0")  # (4, 4, 4)
    n0 = fc.Node(haar0, fc.AllInOneBlock(subnet=_conv()), conditions=n1, name="n0")
    return fc.GraphINN(
        [
            x0, x1, x2, n2, flat2, n1, haar0, n0,
            fc.OutputNode(n0, name="z0"),
            fc.OutputNode(n1, name="z1"),
            fc.OutputNode(flat2, name="z2"),
        ]
    )  # fmt: skip


def _feedforward() -> Transform:
    x = fc.InputNode(6, name="x")
    c = fc.ConditionNode(3, name="c")
    ff = fc.FeedForwardNode(c, (4,), mlp(), name="ff")
    a = fc.Node(x, fc.AllInOneBlock(subnet=mlp()), conditions=ff, name="a")
    b = fc.Node(a, fc.RNVPCouplingBlock(subnet=mlp("tanh")), conditions=[ff, c], name="b")
    return fc.GraphINN([x, c, ff, a, b, fc.OutputNode(b, name="z")])


def _intermediate() -> Transform:
    # Forward: a, split, c (reads split.out0), b (reads c's output). Reverse: b's inverse
    # recomputes split.out0, which c's inverse reads, so b runs before c; list order alone
    # would run c first.
    x = fc.InputNode(6, name="x")
    a = fc.Node(x, fc.AllInOneBlock(subnet=mlp()), name="a")
    split = fc.Node(a, fc.Split(section_sizes=(3, 3)), name="split")
    c = fc.Node(split.out1, fc.AllInOneBlock(subnet=mlp()), conditions=split.out0, name="c")
    b = fc.Node(split.out0, fc.GLOWCouplingBlock(subnet=mlp()), conditions=c, name="b")
    return fc.GraphINN([x, a, split, c, b, fc.OutputNode(b, name="zb"), fc.OutputNode(c)])


def _in_sequence() -> Transform:
    x = fc.InputNode(3, 4, 4, name="x")
    c = fc.ConditionNode(2, name="c")
    split = fc.Node(x, fc.Split(section_sizes=(1, 2)), name="split")
    a = fc.Node(split.out1, fc.AllInOneBlock(subnet=_conv()), conditions=c, name="a")
    cat = fc.Node([split.out0, a], fc.Concat(), name="cat")
    graph = fc.GraphINN([x, c, split, a, cat, fc.OutputNode(cat, name="z")])
    return fc.SequenceINN(
        fc.AllInOneBlock(subnet=_conv()), graph, fc.AllInOneBlock(subnet=_conv()),
        conditions=[None, 0, None],
    )  # fmt: skip


def _inverse() -> Transform:
    x = fc.InputNode(5, name="x")
    c = fc.ConditionNode(2, name="c")
    a = fc.Node(x, fc.AllInOneBlock(subnet=mlp(), permute_soft=True), name="a")
    split = fc.Node(a, fc.Split(section_sizes=(2, 3)), name="split")
    b = fc.Node(split.out1, fc.AllInOneBlock(subnet=mlp()), conditions=c, name="b")
    graph = fc.GraphINN([x, c, a, split, b, fc.OutputNode(split.out0), fc.OutputNode(b)])
    return fc.Inverse(graph)


register(Case("graph_multiscale_img", _multiscale, ((1, 8, 8),)))
register(Case("graph_uflow_img", _uflow, ((6, 2, 2), (3, 4, 4))))
register(Case("graph_csflow_img", _csflow, _CSFLOW_SCALES))
register(Case("graph_feedforward_cond_vec", _feedforward, ((6,),), ((3,),)))
register(Case("graph_intermediate_cond_vec", _intermediate, ((6,),)))
register(Case("graph_in_sequence_img_cond", _in_sequence, ((3, 4, 4),), ((2,),)))
register(Case("graph_inverse_vec_cond", _inverse, ((2,), (3,)), ((2,),)))

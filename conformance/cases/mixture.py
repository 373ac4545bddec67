"""Conformance cases of flowcore.transforms.mixture: one component per sample, every
component at once, and FrEIA's graph of condition nodes.

The GaussianMixtureModel has no parameters: its means and packed precision factors come in
as conditions, standard normal here (so the factors' diagonals are e^N(0, 1)), and its
component index ``i`` is an int64 index condition drawn from ``range(K)``
(``Case.index_conditions``), so the suite checks that every backend carries an integer
condition through its modules, its autodiff and its saved files.
"""

from __future__ import annotations

import flowcore as fc
from flowcore.transforms.mixture import GaussianMixtureModel, packed_size

from . import Case, register

K, D = 4, 3
#: w, mu, U (batch axis excluded).
MIXTURE = ((K,), (K, D), (K, packed_size(D)))


def _graph() -> fc.GraphINN:
    """FrEIA's test graph, flowcore's nodes: the index is a ``ConditionNode()`` of shape ()."""
    x = fc.InputNode(D, name="x")
    w, mu, u = (
        fc.ConditionNode(*s, name=n) for s, n in zip(MIXTURE, "w mu U".split(), strict=True)
    )
    i = fc.ConditionNode(name="i")
    gmm = fc.Node(x, GaussianMixtureModel(), conditions=[w, mu, u, i], name="gmm")
    return fc.GraphINN([x, w, mu, u, i, gmm, fc.OutputNode(gmm, name="z")])


register(
    Case(
        "gmm_component_vec",
        GaussianMixtureModel,
        ((D,),),
        (*MIXTURE, ()),
        batch=5,
        index_conditions=((3, K),),
    )
)
register(Case("gmm_all_components_vec", GaussianMixtureModel, ((K, D),), MIXTURE))
register(
    Case(
        "gmm_graph_vec",
        _graph,
        ((D,),),
        (*MIXTURE, ()),
        batch=5,
        index_conditions=((3, K),),
    )
)

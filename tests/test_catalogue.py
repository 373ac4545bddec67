"""The catalogue's bookkeeping: every public transform has conformance cases."""

from __future__ import annotations

import pytest
from flowcore.conformance import cases

import flowcore as fc

BASES = {fc.Transform, fc.SimpleTransform}


def public_transforms() -> set[type]:
    names = (getattr(fc, n) for n in fc.__all__)
    return {t for t in names if isinstance(t, type) and issubclass(t, fc.Transform)} - BASES


def test_every_public_transform_has_a_conformance_case():
    covered = set().union(*(cases.transforms_in(c) for c in cases.CASES.values()))
    missing = sorted(t.__name__ for t in public_transforms() - covered)
    assert not missing, f"public transforms without a conformance case: {missing}"


def test_the_catalogue_lists_several_transforms():
    assert {fc.AllInOneBlock, fc.SequenceINN, fc.Inverse} <= public_transforms()


def _covered(chosen: list[cases.Case]) -> set[tuple[type, bool]]:
    return {(t, bool(c.conditions)) for c in chosen for t in cases.transforms_in(c)}


def test_the_representative_slice_covers_what_every_case_covers_with_fewer_cases():
    every, chosen = cases.select("all"), cases.select("representative")
    assert _covered(chosen) == _covered(every)
    assert set(c.name for c in chosen) < set(c.name for c in every)


def test_alternating_dtypes_run_each_dtype_and_unknown_ones_are_refused():
    from flowcore.conformance import plan

    chosen = cases.select("representative")
    alternate = plan.case_dtypes(chosen, "alternate")
    assert [c for c, _ in alternate] == chosen
    assert {d for _, (d,) in alternate} == set(plan.DTYPES)
    assert plan.case_dtypes(chosen[:1], None) == [(chosen[0], plan.DTYPES)]
    assert plan.case_dtypes(chosen[:1], "float64") == [(chosen[0], ("float64",))]
    with pytest.raises(ValueError, match="float16"):
        plan.case_dtypes(chosen, "float16")

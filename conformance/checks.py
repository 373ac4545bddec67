"""The checks, for one (backend, case, dtype, device) or for a pair of backends.

A :class:`Subject` is a case's model built by one backend with the case's (perturbed)
parameters, on one device and in one dtype, with the float64 NumPy :class:`~flowcore.Reference`
running the parameters the model holds (read back with :func:`flowcore.get_params`, so a
float32 model is compared with its own rounded parameters). A check returns the largest
absolute deviation it measured (None when it measures none), raises :class:`CheckFailed` when
a value is out of tolerance, and :class:`NotRun` when it does not apply.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import flowcore as fc
from flowcore.backend import Backend, load_backend
from flowcore.executor import dtype_name
from flowcore.spec import Array, Child, ConditionKind, Context, Shape, Signature, Transform
from flowcore.tree import Node, build_tree, initial_params

from .cases import CASES, Case
from .tolerances import Tolerance, tolerance


class CheckFailed(AssertionError):
    """A value out of tolerance; ``deviation`` is the largest one measured."""

    def __init__(self, message: str, deviation: float | None = None) -> None:
        super().__init__(message)
        self.deviation = deviation


class NotRun(Exception):
    """The check does not apply to this subject; the message says why."""


def compare(what: str, got: Any, want: Any, tol: Tolerance) -> float:
    """Largest ``|got - want|``; raises :class:`CheckFailed` when out of ``tol``."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise CheckFailed(f"{what}: shape {got.shape}, expected {want.shape}")
    diff = np.abs(got - want)
    deviation = float(np.max(diff, initial=0.0)) if not np.isnan(diff).any() else float("nan")
    bad = ~(diff <= tol.atol + tol.rtol * np.abs(want))
    if bad.any():
        raise CheckFailed(
            f"{what}: {int(bad.sum())} of {bad.size} values off, by up to {deviation:.3g} "
            f"(rtol={tol.rtol:g}, atol={tol.atol:g})",
            deviation,
        )
    return deviation


def _identical(what: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    if set(got) != set(want):
        raise CheckFailed(
            f"{what}: parameter names differ; missing {sorted(set(want) - set(got))}, "
            f"unexpected {sorted(set(got) - set(want))}"
        )
    differ = [k for k in want if not np.array_equal(np.asarray(got[k], want[k].dtype), want[k])]
    if differ:
        raise CheckFailed(f"{what}: parameters not bit-identical: {sorted(differ)}")


@dataclasses.dataclass
class Subject:
    """A case's model in one backend, dtype and device, with its float64 reference."""

    backend: Backend
    case: Case
    dtype: str
    device: str
    tree: Node
    model: Any
    reference: fc.Reference
    xs: list[np.ndarray]  # float64 values, rounded to ``dtype``
    cs: list[np.ndarray]

    def native(self, arrays: Sequence[np.ndarray]) -> list[Any]:
        """Native arrays in the model's dtype; integer ones (index conditions) in int64."""
        return [
            self.backend.to_native(a, "int64" if _is_index(a) else self.dtype, self.device)
            for a in arrays
        ]

    def call(
        self, xs: Sequence[Any], rev: bool = False, cs: Sequence[np.ndarray] | None = None
    ) -> tuple[list[Any], Any]:
        """Run the model on native arrays (NumPy ones are converted) and the subject's
        conditions (or ``cs``); native results."""
        native = [x if not isinstance(x, np.ndarray) else self.native([x])[0] for x in xs]
        conditions = self.native(self.cs if cs is None else cs)
        return self.backend.call(self.model, native, conditions, rev, True)

    @functools.cached_property
    def outputs(self) -> list[np.ndarray]:
        """The reference's forward outputs, rounded to ``dtype``: inputs of the inverse."""
        return _rounded(self.reference(self.xs, self.cs)[0], self.dtype)

    def inputs(self, rev: bool) -> list[np.ndarray]:
        return self.outputs if rev else self.xs

    def numpy(self, arrays: Sequence[Any]) -> list[np.ndarray]:
        return [self.backend.to_numpy(a) for a in arrays]

    def tol(self, check: str) -> Tolerance:
        return tolerance(self.dtype, check)


def _is_index(a: np.ndarray) -> bool:
    return np.asarray(a).dtype.kind in "iu"


def _rounded(arrays: Sequence[np.ndarray], dtype: str) -> list[np.ndarray]:
    """Float arrays rounded to ``dtype`` (kept in float64); integer ones as they are."""
    return [a if _is_index(a) else a.astype(dtype).astype(np.float64) for a in arrays]


@functools.cache
def subject(backend: str, case: str, dtype: str, device: str) -> Subject:
    """The (cached) subject; the model is built in ``dtype`` and moved to ``device``."""
    impl = load_backend(backend)
    spec = CASES[case]
    tree = spec.tree()
    model = impl.move(impl.build(tree, spec.params(tree), dtype, None), dtype, device)
    xs, cs = spec.data()
    ref = fc.Reference(tree, fc.get_params(model))
    return Subject(
        impl, spec, dtype, device, tree, model, ref, _rounded(xs, dtype), _rounded(cs, dtype)
    )


# -- one backend --------------------------------------------------------------------------


def _seeded(s: Subject) -> Any:
    """The case's model as ``flowcore.build`` makes it from the case's seed."""
    case = s.case
    model = fc.build(
        case.make(), case.inputs, case.conditions,
        backend=s.backend.name, seed=case.seed, dtype=s.dtype,
    )  # fmt: skip
    return s.backend.move(model, s.dtype, s.device)


def check_init(s: Subject) -> float:
    """The seed's initial parameters, bit-identical to the core's NumPy draw in ``dtype``."""
    specs = s.tree.param_specs()
    want = {
        k: v if specs[k].kind == "index" else v.astype(s.dtype)
        for k, v in initial_params(s.tree, s.case.seed).items()
    }
    _identical("initial parameters vs flowcore.initial_params", fc.get_params(_seeded(s)), want)
    return 0.0


def check_shapes(s: Subject) -> None:
    """Output shapes and dtype, log-dets of shape (batch,), both ways; the model on its
    device (``device_of``)."""
    on = s.backend.device_of(s.model)
    if on.partition(":")[0] != s.device.partition(":")[0]:
        raise CheckFailed(f"device_of names {on!r} for a model moved to {s.device!r}")
    batch = s.case.batch
    for rev, shapes in ((False, s.tree.signature.outputs), (True, s.tree.signature.inputs)):
        ys, log_det = s.call(s.inputs(rev), rev=rev)
        way = "inverse" if rev else "forward"
        got = [tuple(y.shape) for y in ys]
        if got != [(batch, *shape) for shape in shapes]:
            raise CheckFailed(f"{way}: output shapes {got}, expected {shapes} with batch {batch}")
        if tuple(log_det.shape) != (batch,):
            raise CheckFailed(f"{way}: log_det has shape {tuple(log_det.shape)}, not ({batch},)")
        dtypes = {dtype_name(a.dtype) for a in (*ys, log_det)}
        if dtypes != {s.dtype}:
            raise CheckFailed(f"{way}: results of dtype {sorted(dtypes)}, model is {s.dtype}")


def _against_reference(s: Subject, rev: bool) -> float:
    xs = s.inputs(rev)
    ys, log_det = s.call(xs, rev=rev)
    ys_ref, log_det_ref = s.reference(xs, s.cs, rev=rev)
    tol = s.tol("reference")
    way = "inverse" if rev else "forward"
    devs = [
        compare(f"{way} output {i}", y, r, tol)
        for i, (y, r) in enumerate(zip(s.numpy(ys), ys_ref, strict=True))
    ]
    devs.append(compare(f"{way} log_det", s.backend.to_numpy(log_det), log_det_ref, tol))
    return max(devs)


def check_forward(s: Subject) -> float:
    """Forward outputs and log-det against the float64 reference."""
    return _against_reference(s, rev=False)


def check_inverse(s: Subject) -> float:
    """Inverse outputs and log-det against the reference, at the reference's outputs."""
    return _against_reference(s, rev=True)


def check_roundtrip(s: Subject) -> float:
    """inverse(forward(x)) == x, and the forward and inverse log-dets sum to zero."""
    ys, log_det = s.call(s.xs)
    xs, log_det_back = s.call(ys, rev=True)
    tol = s.tol("roundtrip")
    devs = [
        compare(f"x {i} after the round trip", x, want, tol)
        for i, (x, want) in enumerate(zip(s.numpy(xs), s.xs, strict=True))
    ]
    total = s.backend.to_numpy(log_det).astype(np.float64) + s.backend.to_numpy(log_det_back)
    devs.append(compare("forward + inverse log_det", total, np.zeros_like(total), tol))
    return max(devs)


def _poisoned(arrays: Sequence[np.ndarray], value: float) -> list[np.ndarray]:
    """``arrays`` with the first float array's first element of sample 0 set to ``value``."""
    out = [a.copy() for a in arrays]
    first = next(a for a in out if not _is_index(a))
    first.reshape(len(first), -1)[0, 0] = value
    return out


def check_nonfinite(s: Subject) -> float:
    """The NaN policy: a NaN or inf in one sample, forward and inverse, raises nothing,
    leaves every other sample's outputs and log-det as they were, and shows in that sample
    (some output or its log-det is non-finite: never hidden as a finite value)."""
    tol, devs = s.tol("port"), []
    for rev in (False, True):
        clean = s.call(s.inputs(rev), rev)
        for value in (math.nan, math.inf):
            with np.errstate(all="ignore"):  # NumPy-based backends warn on NaN; by design
                ys, log_det = s.call(_poisoned(s.inputs(rev), value), rev)
            what = f"{'inverse' if rev else 'forward'} with {value} in sample 0"
            got, want = s.numpy([*ys, log_det]), s.numpy([*clean[0], clean[1]])
            for i, (g, w) in enumerate(zip(got, want, strict=True)):
                name = "log_det" if i == len(ys) else f"output {i}"
                devs.append(compare(f"{what}: samples 1.. of {name}", g[1:], w[1:], tol))
            if all(np.isfinite(g[0]).all() for g in got):
                raise CheckFailed(f"{what}: that sample's outputs and log-det are all finite")
    return max(devs)


def check_batch(s: Subject) -> float:
    """Outputs do not depend on the batch: each sample run alone (a batch of one) and the
    batch in reverse order give that sample's outputs and log-det of the whole batch, both
    ways."""
    tol, devs = s.tol("port"), []
    for rev in (False, True):
        xs = s.inputs(rev)
        ys, log_det = s.call(xs, rev)
        whole = s.numpy([*ys, log_det])
        way = "inverse" if rev else "forward"
        order = np.arange(s.case.batch)[::-1]
        runs = [(f"{way}, the batch reversed", order)]
        runs += [(f"{way}, sample {i} alone", np.array([i])) for i in range(s.case.batch)]
        for what, rows in runs:
            ys, log_det = s.call([x[rows] for x in xs], rev, [c[rows] for c in s.cs])
            for i, (got, want) in enumerate(zip(s.numpy([*ys, log_det]), whole, strict=True)):
                name = "log_det" if i == len(ys) else f"output {i}"
                devs.append(compare(f"{what}: {name}", got, want[rows], tol))
    return max(devs)


def check_compiled(s: Subject) -> float:
    """Eager and compiled calls agree, both ways (:meth:`Backend.compiled`: torch.compile
    with ``fullgraph=True``, so a graph break fails; ``nnx.jit``; Keras' compiler on its
    backend)."""
    hook = getattr(s.backend, "compiled", None)
    if hook is None:
        raise NotRun(f"backend {s.backend.name!r} has no compiled() hook")
    run, tol, devs = hook(s.model), s.tol("port"), []
    for rev in (False, True):
        xs = s.native(s.inputs(rev))
        eager = s.call(xs, rev)
        ys, log_det = run(xs, s.native(s.cs), rev, True)
        way = "inverse" if rev else "forward"
        got, want = s.numpy([*ys, log_det]), s.numpy([*eager[0], eager[1]])
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            name = "log_det" if i == len(ys) else f"output {i}"
            devs.append(compare(f"{way} compiled vs eager: {name}", g, w, tol))
    return max(devs)


@dataclasses.dataclass(frozen=True)
class Flattened(Transform):
    r"""``inner`` on one vector: :math:`v \mapsto [\mathrm{vec}(y_1), \dots, \mathrm{vec}(y_m)]`
    with :math:`(y_1, \dots, y_m) = \mathrm{inner}(x_1, \dots, x_n)`, where :math:`v =
    [\mathrm{vec}(x_1), \dots, \mathrm{vec}(x_n)]` (C order) and the :math:`x_i` have the
    shapes ``inputs``. Its Jacobian is the inner's with the inputs and outputs laid end to
    end, so its log-det is the inner's. Its one child, ``"inner"``.
    """

    inner: Transform
    inputs: tuple[Shape, ...]

    def _outputs(self, conditions: Sequence[Shape]) -> tuple[Shape, ...]:
        return self.inner.signature(self.inputs, conditions).outputs

    def output_shapes(
        self, inputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        return ((sum(math.prod(s) for s in self._outputs(conditions)),),)

    def condition_kinds(self, conditions: Sequence[Shape]) -> tuple[ConditionKind, ...]:
        return tuple(self.inner.condition_kinds(conditions))

    def children(self, sig: Signature) -> Sequence[Child]:
        return (Child("inner", self.inner, self.inputs, sig.conditions),)

    def _run(
        self, ctx: Context, v: Array, cs: Sequence[Array], rev: bool
    ) -> tuple[list[Array], Array]:
        outputs = self._outputs(ctx.signature.conditions)
        shapes, back = (outputs, self.inputs) if rev else (self.inputs, outputs)
        pieces, start = [], 0
        for shape in shapes:
            stop = start + math.prod(shape)
            pieces.append(ctx.xp.reshape(v[:, start:stop], (-1, *shape)))
            start = stop
        results, log_det = ctx.children["inner"](pieces, list(cs), rev, ctx.jac)
        flat = [ctx.xp.reshape(r, (-1, math.prod(s))) for r, s in zip(results, back, strict=True)]
        return [flat[0] if len(flat) == 1 else ctx.xp.concat(flat, axis=1)], log_det

    def forward(
        self, ctx: Context, xs: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Array]:
        return self._run(ctx, xs[0], cs, rev=False)

    def inverse(
        self, ctx: Context, ys: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Array]:
        return self._run(ctx, ys[0], cs, rev=True)


def _flattened(s: Subject) -> tuple[Any, np.ndarray]:
    """The subject's model as :class:`Flattened`, built in its backend, dtype and device with
    its parameters under ``"inner."``, and its inputs laid end to end."""
    spec, sig = s.tree.spec, s.tree.signature
    assert isinstance(spec, Transform)
    size = sum(math.prod(shape) for shape in sig.inputs)
    tree = build_tree(Flattened(spec, sig.inputs), [(size,)], sig.conditions)
    params = {f"inner.{k}": v for k, v in fc.get_params(s.model).items()}
    model = s.backend.move(s.backend.build(tree, params, s.dtype, None), s.dtype, s.device)
    return model, np.concatenate([x.reshape(len(x), -1) for x in s.xs], axis=1)


def check_jacobian(s: Subject) -> float:
    """The log-det against slogdet of the backend's own autodiff Jacobian; a transform with
    several inputs or outputs is run as :class:`Flattened`, on one vector."""
    model, flat = s.model, s.xs[0]
    if len(s.xs) != 1 or len(s.tree.signature.outputs) != 1:
        model, flat = _flattened(s)
    (x,) = s.native([flat])
    jac = np.asarray(s.backend.jacobian(model, x, s.native(s.cs)), dtype=np.float64)
    size = int(np.prod(flat.shape[1:]))
    if jac.shape != (s.case.batch, size, size):
        raise CheckFailed(f"jacobian has shape {jac.shape}, expected {(s.case.batch, size, size)}")
    sign, log_abs_det = np.linalg.slogdet(jac)
    if (sign == 0).any():
        raise CheckFailed("the autodiff Jacobian is singular")
    _, log_det = s.call(s.xs)
    return compare(
        "log_det vs slogdet(autodiff Jacobian)",
        s.backend.to_numpy(log_det),
        log_abs_det,
        s.tol("jacobian"),
    )


def _loss(s: Subject, params: dict[str, np.ndarray]) -> float:
    """The loss of :meth:`Backend.gradients`, ``sum(z**2)/2 - sum(log_det)``, in float64."""
    zs, log_det = fc.Reference(s.tree, params)(s.xs, s.cs)
    return float(sum(0.5 * np.sum(z**2) for z in zs) - np.sum(log_det))


def _trainable(s: Subject) -> dict[str, tuple[int, ...]]:
    return {k: p.shape for k, p in s.tree.param_specs().items() if p.trainable}


def check_gradients(s: Subject, directions: int = 3, step: float = 1e-5) -> float:
    """Autodiff gradients along random unit directions vs central differences of the
    float64 reference loss."""
    trainable = _trainable(s)
    if not trainable:
        raise NotRun("the model has no trainable parameters")
    if s.case.not_smooth:
        raise NotRun(f"central differences do not apply: {s.case.not_smooth}")
    grads = s.backend.gradients(s.model, s.native(s.xs), s.native(s.cs))
    if set(grads) != set(trainable):
        raise CheckFailed(
            f"gradients: missing {sorted(set(trainable) - set(grads))}, "
            f"unexpected {sorted(set(grads) - set(trainable))}"
        )
    wrong = [k for k, shape in trainable.items() if np.shape(grads[k]) != shape]
    if wrong:
        raise CheckFailed(f"gradients of the wrong shape: {wrong}")
    rng = np.random.default_rng([s.case.seed, 3])
    params = s.reference.params
    got, want = [], []
    for _ in range(directions):
        v = {k: rng.standard_normal(shape) for k, shape in trainable.items()}
        norm = np.sqrt(sum(np.sum(d**2) for d in v.values()))
        v = {k: d / norm for k, d in v.items()}
        got.append(sum(np.sum(np.asarray(grads[k], np.float64) * v[k]) for k in v))
        shifted = [{**params, **{k: params[k] + h * v[k] for k in v}} for h in (step, -step)]
        want.append((_loss(s, shifted[0]) - _loss(s, shifted[1])) / (2 * step))
    return compare("directional derivatives vs finite differences", got, want, s.tol("gradients"))


#: Checks that run on a slice only (:func:`flowcore.conformance.plan.single_items`): each
#: transform once, in one dtype, float32 and float64 in turn (compiling costs seconds).
SLICED_CHECKS = ("compiled",)

SINGLE_CHECKS: dict[str, Callable[[Subject], float | None]] = {
    "init": check_init,
    "shapes": check_shapes,
    "forward": check_forward,
    "inverse": check_inverse,
    "roundtrip": check_roundtrip,
    "nonfinite": check_nonfinite,
    "batch": check_batch,
    "compiled": check_compiled,
    "jacobian": check_jacobian,
    "gradients": check_gradients,
}


# -- a pair of backends -------------------------------------------------------------------


def check_seed(a: Subject, b: Subject) -> float:
    """The same seed builds bit-identical parameters in both backends."""
    params = [fc.get_params(_seeded(s)) for s in (a, b)]
    _identical(
        f"{b.backend.name} vs {a.backend.name} from seed {a.case.seed}", params[1], params[0]
    )
    return 0.0


def _same_outputs(a: Subject, b: Subject) -> float:
    """Forward and inverse of ``b`` against those of ``a`` at ``a``'s inputs."""
    tol = a.tol("port")
    devs = []
    for rev in (False, True):
        (ys_a, ld_a), (ys_b, ld_b) = a.call(a.inputs(rev), rev), b.call(a.inputs(rev), rev)
        way = "inverse" if rev else "forward"
        for i, (ya, yb) in enumerate(zip(a.numpy(ys_a), b.numpy(ys_b), strict=True)):
            devs.append(compare(f"{way} output {i}", yb, ya, tol))
        devs.append(compare(f"{way} log_det", b.numpy([ld_b])[0], a.numpy([ld_a])[0], tol))
    return max(devs)


def check_port(a: Subject, b: Subject) -> float:
    """``set_params`` from ``a``'s ``get_params`` into a model of ``b``: same outputs."""
    model = b.backend.build(b.tree, initial_params(b.tree, a.case.seed + 1), b.dtype, None)
    model = b.backend.move(model, b.dtype, b.device)
    params = fc.get_params(a.model)
    fc.set_params(model, params)
    _identical(f"get_params after set_params in {b.backend.name}", fc.get_params(model), params)
    return _same_outputs(a, dataclasses.replace(b, model=model))


def check_save_load(a: Subject, b: Subject) -> float:
    """``flowcore.save`` in ``a``, ``flowcore.load`` in ``b``: same parameters and outputs."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.flowcore"
        fc.save(a.model, path)
        model = fc.load(path, backend=b.backend.name, dtype=b.dtype)
    model = b.backend.move(model, b.dtype, b.device)
    _identical(
        f"parameters loaded in {b.backend.name}", fc.get_params(model), fc.get_params(a.model)
    )
    return _same_outputs(a, dataclasses.replace(b, model=model))


def check_gradients_agree(a: Subject, b: Subject) -> float:
    """Elementwise equal autodiff gradients in both backends, same parameters and inputs."""
    _identical("parameters of the two models", fc.get_params(b.model), fc.get_params(a.model))
    if not _trainable(a):
        raise NotRun("the model has no trainable parameters")
    grads_a = a.backend.gradients(a.model, a.native(a.xs), a.native(a.cs))
    grads_b = b.backend.gradients(b.model, b.native(b.xs), b.native(b.cs))
    if set(grads_a) != set(grads_b):
        raise CheckFailed(f"gradient names differ: {sorted(set(grads_a) ^ set(grads_b))}")
    tol = a.tol("gradients_agree")
    return max(compare(f"gradient of {k}", grads_b[k], grads_a[k], tol) for k in sorted(grads_a))


def check_state(a: Subject, b: Subject) -> float:
    """State updated by a call (ActNorm's data initialisation, a power iteration) agrees:
    the case's parameters before ``prepare``, one forward call in each backend, the same
    state afterwards in both and in the float64 reference."""
    params = a.case.perturbed(a.tree)
    reference = fc.Reference(a.tree, params)
    reference(a.xs, a.cs)
    specs = a.tree.param_specs()
    changed = [
        k
        for k in params
        if specs[k].kind == "float" and not np.array_equal(reference.params[k], params[k])
    ]
    if not changed:
        raise NotRun("a call of this case updates no state")
    after = []
    for s in (a, b):
        model = s.backend.move(s.backend.build(s.tree, params, s.dtype, None), s.dtype, s.device)
        s.backend.call(model, s.native(s.xs), s.native(s.cs), False, True)
        after.append(fc.get_params(model))
    tol = a.tol("port")
    devs = [compare(f"{k}: {b.backend.name} vs {a.backend.name}", after[1][k], after[0][k], tol)
            for k in changed]  # fmt: skip
    devs += [compare(f"{k}: {a.backend.name} vs the reference", after[0][k],
                     reference.params[k], a.tol("reference")) for k in changed]  # fmt: skip
    return max(devs)


PAIR_CHECKS: dict[str, Callable[[Subject, Subject], float | None]] = {
    "seed": check_seed,
    "port": check_port,
    "save_load": check_save_load,
    "gradients_agree": check_gradients_agree,
    "state": check_state,
}
#: Pair checks that compare the two directions separately (the others are symmetric).
ORDERED_PAIR_CHECKS = ("port", "save_load")
#: Checks run in float64 only.
FLOAT64_ONLY = ("gradients_agree",)

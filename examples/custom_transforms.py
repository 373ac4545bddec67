"""FrEIA's guide, ported: two user-written transforms that run in every backend.

``FixedRandomElementwiseMultiply`` multiplies each feature by 1 or 2, drawn once;
``ConditionalSwap`` swaps its two inputs where the condition is positive. Each is written
once against the array namespace ``xp`` — ``ConditionalSwap`` with ``xp.where``, not a loop
over the batch — and the same class builds in PyTorch, JAX and Keras.
Run: ``python examples/custom_transforms.py``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import flowcore as fc  # noqa: E402
from flowcore.spec import Array, Shape  # noqa: E402


@dataclasses.dataclass(frozen=True)
class FixedRandomElementwiseMultiply(fc.SimpleTransform):
    r"""``y = x * f`` with a fixed random ``f`` in {1, 2} per feature;
    :math:`\log|\det J| = \sum_i \log f_i`."""

    def parameters(self, sig: fc.Signature) -> Sequence[fc.ParamSpec]:
        shape = (1, *sig.inputs[0])
        draw = lambda rng: rng.integers(1, 3, shape).astype(float)  # noqa: E731
        return [fc.ParamSpec("random_factor", shape, draw, trainable=False)]

    def forward(self, ctx: fc.Context, x: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        factor = ctx.params["random_factor"]
        return x * factor, ctx.xp.sum(ctx.xp.log(factor))

    def inverse(self, ctx: fc.Context, y: Array, cs: Sequence[Array]) -> tuple[Array, Array]:
        factor = ctx.params["random_factor"]
        return y / factor, -ctx.xp.sum(ctx.xp.log(factor))


@dataclasses.dataclass(frozen=True)
class ConditionalSwap(fc.Transform):
    """Swap inputs ``x1`` and ``x2`` in the samples whose condition is positive; log-det 0.
    The map is its own inverse. The general form: two inputs, two outputs."""

    n_inputs = 2

    def output_shapes(
        self, inputs: Sequence[Shape], conditions: Sequence[Shape]
    ) -> tuple[Shape, ...]:
        if inputs[0] != inputs[1] or len(conditions) != 1 or conditions[0] != (1,):
            raise fc.ShapeError(
                "ConditionalSwap: needs two equal inputs and one (1,) condition, "
                f"got {inputs}, {conditions}"
            )
        return tuple(inputs)

    def forward(
        self, ctx: fc.Context, xs: Sequence[Array], cs: Sequence[Array]
    ) -> tuple[list[Array], Array]:
        x1, x2 = xs
        swap = cs[0] > 0  # (batch, 1) broadcasts over the features
        return [ctx.xp.where(swap, x2, x1), ctx.xp.where(swap, x1, x2)], 0.0

    inverse = forward


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 2)).astype(np.float32)
    for name in fc.installed_backends():
        backend = fc.get_backend(name)
        net = fc.build(
            fc.SequenceINN(FixedRandomElementwiseMultiply(), FixedRandomElementwiseMultiply()),
            (2,),
            backend=name,
            seed=0,
        )
        (z,), log_det = backend.call(
            net, [backend.to_native(x, "float32", "cpu")], [], rev=False, jac=True
        )
        swap = fc.build(ConditionalSwap(), [(2,), (2,)], [(1,)], backend=name, seed=0)
        c = np.where(np.arange(10) % 2 == 0, 1.0, -1.0).astype(np.float32)[:, None]
        native = [backend.to_native(a, "float32", "cpu") for a in (x, 2 * x)]
        (y1, y2), _ = backend.call(
            swap, native, [backend.to_native(c, "float32", "cpu")], rev=False, jac=True
        )
        swapped = np.array_equal(backend.to_numpy(y1)[0], 2 * x[0]) and np.array_equal(
            backend.to_numpy(y1)[1], x[1]
        )
        print(f"{name:6s} log_det={backend.to_numpy(log_det)[0]:.4f}  swap where c>0: {swapped}")


if __name__ == "__main__":
    main()

"""One flow, one seed, every installed backend: the outputs agree.

Builds a conditional two-block AllInOneBlock flow in PyTorch, JAX and Keras (whichever are
installed), runs the same batch through each, and compares with the float64 NumPy reference
of the same parameters. Run: ``python examples/demo.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import flowcore as fc  # noqa: E402

SEED = 0
TOLERANCE = 1e-4  # float32 against the float64 reference, O(1) values, two blocks


def main() -> int:
    spec = fc.SequenceINN(
        fc.AllInOneBlock(
            subnet=fc.MLP(hidden=(64, 64), zero_init_last=False), affine_clamping=2.0
        ),
        fc.AllInOneBlock(subnet=fc.MLP(hidden=(64, 64), zero_init_last=False), permute_soft=True),
        conditions=[None, 0],
    )
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 8)).astype(np.float32)
    c = rng.standard_normal((16, 3)).astype(np.float32)

    backends = fc.installed_backends()
    print(f"installed backends: {', '.join(backends) or 'none'}")
    if not backends:
        print("install one: pip install 'flowcore[torch]' (or [jax], [tf])")
        return 1
    results, params = {}, {}
    for name in backends:
        flow = fc.build(spec, input_shape=(8,), cond_shapes=[(3,)], backend=name, seed=SEED)
        backend = fc.get_backend(name)
        (z,), log_det = backend.call(
            flow,
            [backend.to_native(x, "float32", "cpu")],
            [backend.to_native(c, "float32", "cpu")],
            rev=False,
            jac=True,
        )
        results[name] = (backend.to_numpy(z), backend.to_numpy(log_det))
        params[name] = fc.get_params(flow)
        label = (
            f"{name} (Keras on {os.environ.get('KERAS_BACKEND', 'tensorflow')})"
            if name == "keras"
            else name
        )
        print(f"  built in {label}: {type(flow).__module__}.{type(flow).__qualname__}")

    first = backends[0]
    same_params = all(
        all(np.array_equal(params[first][k], params[b][k]) for k in params[first])
        for b in backends
    )
    print(f"same seed, bit-identical parameters in every backend: {same_params}")
    tree = fc.build_tree(spec, [(8,)], [(3,)])
    (z_ref,), log_det_ref = fc.Reference(tree, params[first])([x], [c])
    ok = same_params
    for name, (z, log_det) in results.items():
        dz = float(np.max(np.abs(z - z_ref)))
        dl = float(np.max(np.abs(log_det - log_det_ref)))
        agree = dz < TOLERANCE and dl < TOLERANCE
        ok &= agree
        print(
            f"  {name:6s} max |z - ref| = {dz:.1e}   max |log_det - ref| = {dl:.1e}   "
            + ("agree" if agree else "DIFFER")
        )
    print("all backends agree with the float64 reference" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

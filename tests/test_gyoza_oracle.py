"""gyoza 0.3.0's saved models imported into flowcore, against gyoza itself.

gyoza needs Python >= 3.12 and TensorFlow: this module runs in the tox env ``gyoza``
(Python 3.12, gyoza 0.3.0, Keras on TensorFlow and JAX) and is skipped, as not run,
wherever gyoza is not installed. Each case builds a gyoza model, gives every variable
random values (or trains it with gyoza's own ``fit``), saves it as ``.keras`` and
``.weights.h5``, and checks that flowcore's import in each selected backend and in the
float64 NumPy reference reproduces gyoza's outputs, log-dets and inverse.

Tolerance: float64 models to 1e-10 (the issue's bound; the two compute the same
operations in another order, and agree to about 1e-14 on these inputs of order 1);
float32 models to 2e-5 (a few float32 ulps of values of order 10 after 13 layers).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from selected_backends import BACKENDS

import flowcore as fc
from flowcore.backend import load_backend
from flowcore.interop.gyoza import GyozaImportError, from_gyoza, load_gyoza_weights, read_gyoza
from flowcore.tree import build_tree

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow", reason="gyoza runs on TensorFlow, not installed")
gyoza_layers = pytest.importorskip(
    "gyoza.modelling.flow_layers", reason="gyoza 0.3.0 is not installed (it needs Python 3.12)"
)
masks = pytest.importorskip("gyoza.modelling.masks")
keras = tf.keras

TOLERANCE = {"float64": 1e-10, "float32": 2e-5}


@pytest.fixture
def floatx(request):
    """Keras' float type for the gyoza model (gyoza creates its variables in it), and 64-bit
    JAX for the float64 cases; both restored afterwards."""
    dtype = request.param
    before = keras.backend.floatx(), keras.config.dtype_policy()
    keras.backend.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)  # Keras caches a policy from the first floatx
    try:
        import jax

        x64 = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", dtype == "float64")
    except ImportError:
        jax = None
    try:
        yield dtype
    finally:
        keras.backend.set_floatx(before[0])
        keras.config.set_dtype_policy(before[1])
        if jax is not None:
            jax.config.update("jax_enable_x64", x64)


def dense_net(n: int, hidden: int = 0) -> keras.Sequential:
    """gyoza's tutorial net, Dense(4n, relu) -> Dense(n)."""
    return keras.Sequential(
        [keras.layers.Dense(hidden or 4 * n, activation="relu"), keras.layers.Dense(n)]
    )


def tutorial(n: int = 4) -> list:
    """gyoza's tutorial model on (n,)."""
    shape, axes = [n], [1]
    layers = [gyoza_layers.ActivationNormalization(shape, axes)]
    for _ in range(2):
        layers += [
            gyoza_layers.Reflection(shape, axes, reflection_count=2),
            gyoza_layers.AdditiveCoupling(
                shape, axes, dense_net(n), masks.CheckerBoardMask(axes, shape)
            ),
            gyoza_layers.CheckerBoardPermutation(shape, axes),
            gyoza_layers.AdditiveCoupling(
                shape, axes, dense_net(n), masks.CheckerBoardMask(axes, shape)
            ),
            gyoza_layers.CheckerBoardPermutation(shape, axes),
            gyoza_layers.ActivationNormalization(shape, axes),
        ]
    return layers


def image() -> list:
    """Layers on several axes of (3, 4, 5) inputs; the couplings on the last axis."""
    return [
        gyoza_layers.ActivationNormalization([3, 4], [1, 2]),
        gyoza_layers.Reflection([4, 5], [2, 3], reflection_count=3),
        gyoza_layers.AdditiveCoupling([5], [3], dense_net(5), masks.HeavisideMask([3], [5])),
        gyoza_layers.CheckerBoardPermutation([3, 4], [1, 2]),
        gyoza_layers.HeavisidePermutation([5], [3]),
        gyoza_layers.ShufflePermutation([4], [2]),
        gyoza_layers.Permutation([4, 5], [2, 3], np.random.default_rng(4).permutation(20)),
        gyoza_layers.AdditiveCoupling([5], [3], dense_net(5), masks.CheckerBoardMask([3], [5])),
        gyoza_layers.ActivationNormalization([5], [3]),
    ]


def nets(n: int = 6) -> list:
    """Couplings whose nets use every Keras layer and activation the import reads."""
    shape, axes = [n], [1]
    mask = masks.Mask(axes, shape, [1, 0, 0, 1, 1, 0])
    layer = keras.layers
    subnets = [
        keras.Sequential([layer.Dense(8, activation="tanh"), layer.Dense(n, use_bias=False)]),
        keras.Sequential(
            [
                layer.Dense(8),
                layer.LeakyReLU(negative_slope=0.1),
                layer.Dropout(0.3),
                layer.Dense(8, activation="leaky_relu"),
                layer.Activation("sigmoid"),
                layer.Dense(n, activation="softplus"),
            ]
        ),
        keras.Sequential([layer.Dense(8), layer.ELU(alpha=0.7), layer.ReLU(), layer.Dense(n)]),
        layer.Dense(n, activation="elu"),
    ]
    out = []
    for net in subnets:
        out += [
            gyoza_layers.AdditiveCoupling(shape, axes, net, mask),
            gyoza_layers.ShufflePermutation(shape, axes),
        ]
    return out


CASES = {"tutorial": ((4,), tutorial), "image": ((3, 4, 5), image), "nets": ((6,), nets)}


def randomise(model, seed: int = 0) -> None:
    """Every float variable random, as training would leave them: normals unit rows (gyoza's
    UnitNorm constraint), scales positive."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape, path = tuple(variable.shape), variable.path
        if "int" in str(variable.dtype):
            continue
        if "reflection_normals" in path:
            value = rng.normal(size=shape)
            value /= np.linalg.norm(value, axis=1, keepdims=True)
        elif "_scale_" in path:
            value = rng.uniform(0.5, 2.0, shape)
        else:
            value = rng.normal(0.0, 0.5, shape)
        variable.assign(value.astype(variable.dtype))


def gyoza_model(case: str):
    """The case's gyoza FlowModel, built in Keras' current float type, variables random."""
    shape, layers = CASES[case]
    model = gyoza_layers.FlowModel(layers())
    model.build((None, *shape))
    randomise(model)
    return model, shape


def gyoza_outputs(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, log_det = model(tf.constant(x))
    return y.numpy(), log_det.numpy(), model.invert(y).numpy()


def check(imported_model, backend: str, x, y, log_det, x_back, dtype: str) -> None:
    impl = load_backend(backend)
    tol = TOLERANCE[dtype]
    got, got_log_det = imported_model(impl.to_native(x, dtype, "cpu"))
    np.testing.assert_allclose(impl.to_numpy(got), y, rtol=tol, atol=tol)
    np.testing.assert_allclose(impl.to_numpy(got_log_det), log_det, rtol=tol, atol=tol)
    back, _ = imported_model(impl.to_native(y, dtype, "cpu"), rev=True)
    np.testing.assert_allclose(impl.to_numpy(back), x_back, rtol=tol, atol=tol)


def inputs(shape, dtype: str, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(7, *shape)).astype(dtype)


@pytest.mark.parametrize("floatx", ["float64", "float32"], indirect=True)
@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_reproduces_gyoza(case, floatx, tmp_path):
    model, shape = gyoza_model(case)
    x = inputs(shape, floatx)
    y, log_det, x_back = gyoza_outputs(model, x)
    model.save(tmp_path / "flow.keras")
    imported = read_gyoza(tmp_path / "flow.keras")
    assert imported.input_shape == shape and imported.dtype == floatx
    assert len(imported.spec.transforms) == len(model._flow_layers_)
    ref = fc.Reference(build_tree(imported.spec, [shape], []), imported.params)
    (got,), got_log_det = ref([x.astype(np.float64)])
    (back,), _ = ref([y.astype(np.float64)], rev=True)
    # the reference computes in float64: against a float32 gyoza model, float32's tolerance
    tol = TOLERANCE[floatx]
    np.testing.assert_allclose(got, y, rtol=tol, atol=tol)
    np.testing.assert_allclose(got_log_det, log_det, rtol=tol, atol=tol)
    np.testing.assert_allclose(back, x_back, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("floatx", ["float64", "float32"], indirect=True)
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_backend_reproduces_gyoza(case, floatx, backend, tmp_path):
    model, shape = gyoza_model(case)
    x = inputs(shape, floatx)
    expected = gyoza_outputs(model, x)
    model.save(tmp_path / "flow.keras")
    check(from_gyoza(tmp_path / "flow.keras", backend), backend, x, *expected, floatx)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("floatx", ["float64"], indirect=True)
@pytest.mark.parametrize("case", sorted(CASES))
def test_weights_file_loads_into_a_built_model(case, floatx, backend, tmp_path):
    model, shape = gyoza_model(case)
    x = inputs(shape, floatx)
    expected = gyoza_outputs(model, x)
    model.save(tmp_path / "flow.keras")
    model.save_weights(tmp_path / "flow.weights.h5")
    spec = read_gyoza(tmp_path / "flow.keras").spec
    flow = fc.build(spec, shape, backend=backend, dtype=floatx, seed=3)
    classes = [type(layer).__name__ for layer in model._flow_layers_]
    load_gyoza_weights(flow, tmp_path / "flow.weights.h5", classes=classes)
    check(flow, backend, x, *expected, floatx)


def pairs(n: int = 256, seed: int = 0):
    """gyoza's tutorial arc: two factors, the residual and the position along the arc."""
    rng = np.random.default_rng(seed)
    s = rng.normal(0.0, 0.5, n)
    z = np.stack([s, 0.5 * s**2], axis=1) + rng.normal(0.0, 0.1, (n, 2))
    partner = np.argsort(s)
    rank = np.empty(n, dtype=int)
    rank[partner] = np.arange(n)
    neighbour = partner[np.clip(rank + 1, 0, n - 1)]
    y = np.tile([0.0, 0.9], (n, 1))
    return z, z[neighbour], y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("floatx", ["float64"], indirect=True)
def test_a_disentangling_model_trained_by_gyoza_imports(floatx, backend, tmp_path):
    from gyoza.modelling.losses import SupervisedFactorLoss

    model = gyoza_layers.DisentanglingFlowModel(tutorial(2))
    model.build((None, 2))
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=SupervisedFactorLoss(dimensions_per_factor=[1, 1]),
    )
    z_a, z_b, y = pairs()
    before = [v.numpy().copy() for v in model.trainable_weights]
    model.fit((z_a, z_b), y, batch_size=64, epochs=2, verbose=0)
    assert any(
        not np.allclose(a, v.numpy()) for a, v in zip(before, model.trainable_weights, strict=True)
    ), "gyoza's fit changed no weight"
    x = inputs((2,), floatx)
    expected = gyoza_outputs(model, x)
    model.save(tmp_path / "pairs.keras")
    check(from_gyoza(tmp_path / "pairs.keras", backend), backend, x, *expected, floatx)


@pytest.mark.parametrize("floatx", ["float64"], indirect=True)
def test_non_contiguous_axes_are_refused_by_name(floatx, tmp_path):
    """gyoza's reshape of non-contiguous axes mixes entries: an error, not a silent copy."""
    permutation = np.random.default_rng(4).permutation(15)
    model = gyoza_layers.FlowModel([gyoza_layers.Permutation([3, 5], [1, 3], permutation)])
    model.build((None, 3, 4, 5))
    model.save(tmp_path / "flow.keras")
    refused = r"'permutation(_\d+)?': axes \[1, 3\] are not contiguous"
    with pytest.raises(GyozaImportError, match=refused):
        read_gyoza(tmp_path / "flow.keras")

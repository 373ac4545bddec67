"""The one generic Keras layer: any spec tree as a ``keras.layers.Layer``.

A node's parameters are weights made with ``add_weight`` under their canonical names
(trainable ones trainable, buffers not, index buffers as integer weights) and its children
are sublayers, so ``fit``, ``trainable_weights`` and Keras' ``.keras`` format see them as
for any layer. The weights exist once the layer is constructed: no ``build`` step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import keras
import numpy as np

from flowcore.adapter import NodeModule, as_list
from flowcore.density import Density
from flowcore.errors import ArgumentError, BackendError
from flowcore.serialize import spec_from_config, spec_to_config
from flowcore.spec import Draw, NativeSubnet, ParamSpec, Shape, Transform
from flowcore.tree import Node, build_tree, path_seed

from . import frameworks
from .namespace import XP

Array = Any


def _constant(value: np.ndarray) -> Callable[[Any, str], np.ndarray]:
    """A Keras initializer giving ``value`` in the weight's dtype."""
    return lambda shape, dtype: value.astype(dtype)


@contextlib.contextmanager
def _default_dtype_policy(policy: keras.DTypePolicy) -> Iterator[None]:
    """Make ``policy`` Keras' default while a native subnet constructor runs."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _native(node: Node, policy: keras.DTypePolicy) -> keras.layers.Layer:
    spec = node.spec
    assert isinstance(spec, NativeSubnet)
    in_shape, out_shape = node.signature.inputs[0], node.signature.outputs[0]
    with _default_dtype_policy(policy):
        layer = spec.constructor(in_shape[0], out_shape[0])
        if not isinstance(layer, keras.layers.Layer):
            raise ArgumentError(
                f"{node.label}: subnet_constructor must return a keras Layer, "
                f"got {type(layer).__name__}"
            )
        if not layer.built:  # so that its weights exist before the first call
            layer.build((None, *in_shape))
    return layer


class _KerasNode(NodeModule, keras.layers.Layer):
    """A node's weights and its children as sublayers."""

    xp = XP

    def __init__(
        self,
        tree: Node,
        params: Mapping[str, np.ndarray] | None = None,
        sublayers: Mapping[str, keras.layers.Layer] | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        keras.layers.Layer.__init__(self, **kwargs)
        if self.variable_dtype == "float64" and not frameworks.x64_enabled():
            raise BackendError(
                f"{tree.label}: float64 under Keras' JAX backend needs 64-bit JAX; call "
                "jax.config.update('jax_enable_x64', True) or set JAX_ENABLE_X64=1 first"
            )
        self._seed_value = seed
        self.flow_weights: dict[str, keras.Variable] = {}
        self.sublayers: dict[str, keras.layers.Layer] = {}
        with keras.name_scope(self.name, caller=self):  # weight paths follow the tree
            if isinstance(tree.spec, Transform) and tree.spec.uses_randomness:
                self.seed_generator = keras.random.SeedGenerator(
                    path_seed(seed, tree.path) % 2**31
                )
            self._populate(tree, params, sublayers)
        self.built = True

    def _add_param(self, p: ParamSpec, value: np.ndarray | None) -> None:
        if p.kind == "index":
            dtype = "int64" if frameworks.x64_enabled() else "int32"
        else:
            dtype = self.variable_dtype
        initializer: Any = "zeros" if value is None else _constant(np.array(value))
        self.flow_weights[p.name] = self.add_weight(
            shape=p.shape, dtype=dtype, initializer=initializer, trainable=p.trainable, name=p.name
        )

    def _add_child(self, name: str, module: Any) -> None:
        self.sublayers[name] = module

    def _children(self) -> Mapping[str, Any]:
        return self.sublayers

    def _values(self) -> dict[str, Array]:
        return {name: v.value for name, v in self.flow_weights.items()}

    def _write(self, name: str, value: Array) -> None:
        self.flow_weights[name].assign(keras.ops.stop_gradient(value))

    def _make_native(self, node: Node) -> keras.layers.Layer:
        return _native(node, self.dtype_policy)

    def _make_module(
        self, node: Node, params: Mapping[str, np.ndarray] | None
    ) -> keras.layers.Layer:
        kind = FlowLayer if node.is_transform else SubnetLayer
        name = node.path.rsplit(".", 1)[-1]
        return kind(node, params, dtype=self.dtype_policy, name=name, seed=self._seed_value)

    array_text = "an array (NumPy's or the Keras backend's; np.asarray(x) makes one)"

    def _is_array(self, x: Any) -> bool:
        return _is_input(x)

    def _draw(self) -> Draw:
        def draw(kind: str, shape: Shape, like: Array) -> Array:
            if kind == "normal":
                return keras.random.normal(shape, dtype=like.dtype, seed=self.seed_generator)
            bits = keras.random.randint(shape, 0, 2, seed=self.seed_generator)
            return keras.ops.cast(bits, like.dtype) * 2 - 1

        return draw


class SubnetLayer(_KerasNode):
    """A portable subnetwork spec as a layer: ``call(x) -> y``."""

    def call(self, x: Array) -> Array:
        return self.apply_subnet(x)


def _is_input(x: Any) -> bool:
    """An array of any framework Keras runs on, NumPy's, or a symbolic KerasTensor."""
    return hasattr(x, "shape") and hasattr(x, "dtype")


@keras.saving.register_keras_serializable(package="flowcore")
class FlowLayer(_KerasNode, Density):
    """A transform spec as a layer, called as FrEIA's: ``call(x, c=None, rev=False, jac=True)``.

    ``x`` is an array or a list of arrays; ``c`` an array, a list of arrays or None.
    Returns ``(z, log_det)`` with ``z`` an array if ``x`` was one, else a tuple, and
    ``log_det`` of shape ``(batch,)``: log|det dz/dx| forward, log|det dx/dz| with ``rev``.
    State updates are written with ``assign``. Its config is the spec's
    (:mod:`flowcore.serialize`) with the input and condition shapes, so
    ``model.save("m.keras")`` and ``keras.models.load_model`` round-trip it.
    """

    flowcore_backend = "keras"

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        # Keras' own __call__ refuses Python numbers with a message about positional
        # arguments; say in flowcore's words what an input may be
        as_list(x, "input", _is_input, expected=self.array_text)
        return super().__call__(x, *args, **kwargs)

    def call(
        self, x: Any, c: Any = None, rev: bool = False, jac: bool = True
    ) -> tuple[Any, Array]:
        return self.call_flow(x, c, rev, jac)

    def get_config(self) -> dict[str, Any]:
        spec, sig = self.flowcore_tree.spec, self.flowcore_tree.signature
        assert isinstance(spec, Transform)
        return {
            **super().get_config(),
            "spec": spec_to_config(spec),
            "input_shapes": [list(s) for s in sig.inputs],
            "cond_shapes": [list(s) for s in sig.conditions],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FlowLayer:
        config = dict(config)
        spec = spec_from_config(config.pop("spec"))
        inputs, conditions = config.pop("input_shapes"), config.pop("cond_shapes")
        return cls(build_tree(spec, inputs, conditions), **config)  # type: ignore[arg-type]


def named_weights(layer: keras.layers.Layer, prefix: str = "") -> dict[str, keras.Variable]:
    """Every weight of a flowcore layer by canonical dotted name.

    Weights of a native subnet at ``path`` follow as ``path.<i>.<name>``, ``i`` their index
    in its ``weights``.
    """
    if not isinstance(layer, _KerasNode):
        return {f"{prefix}{i}.{v.name}": v for i, v in enumerate(layer.weights)}
    out = {prefix + name: v for name, v in layer.flow_weights.items()}
    for name, child in layer.sublayers.items():
        out.update(named_weights(child, f"{prefix}{name}."))
    return out

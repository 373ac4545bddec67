"""The one generic Keras layer: any spec tree as a ``keras.layers.Layer``.

A node's parameters are weights made with ``add_weight`` under their canonical names
(trainable ones trainable, buffers not, index buffers as integer weights) and its children
are sublayers, so ``fit``, ``trainable_weights`` and Keras' ``.keras`` format see them as
for any layer. The weights exist once the layer is constructed: no ``build`` step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from flowcore.errors import BackendError
from flowcore.serialize import spec_from_config, spec_to_config
from flowcore.spec import NativeSubnet, ParamSpec, Subnet, Transform
from flowcore.tree import Node, build_tree, run_transform

from . import frameworks
from .namespace import XP

Array = Any


def as_list(x: Any) -> list[Any]:
    """Inputs or conditions as a list: an array, a list or tuple of arrays, or None."""
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


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
            raise TypeError(
                f"{node.label}: subnet_constructor must return a keras Layer, "
                f"got {type(layer).__name__}"
            )
        if not layer.built:  # so that its weights exist before the first call
            layer.build((None, *in_shape))
    return layer


class _Holder(keras.layers.Layer):
    """Creates a node's weights and its children as sublayers."""

    def __init__(
        self,
        tree: Node,
        params: Mapping[str, np.ndarray] | None = None,
        sublayers: Mapping[str, keras.layers.Layer] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if self.variable_dtype == "float64" and not frameworks.x64_enabled():
            raise BackendError(
                f"{tree.label}: float64 under Keras' JAX backend needs 64-bit JAX; call "
                "jax.config.update('jax_enable_x64', True) or set JAX_ENABLE_X64=1 first"
            )
        self.flowcore_tree = tree
        given = sublayers or {}
        with keras.name_scope(self.name, caller=self):  # weight paths follow the tree
            self.flow_weights = {p.name: self._add_param(p, params) for p in tree.params}
            self.sublayers = {
                name: given[name] if name in given else self._child(name, child, params)
                for name, child in tree.children.items()
            }
        self.built = True

    def _add_param(self, p: ParamSpec, params: Mapping[str, np.ndarray] | None) -> keras.Variable:
        if p.kind == "index":
            dtype = "int64" if frameworks.x64_enabled() else "int32"
        else:
            dtype = self.variable_dtype
        initializer: Any = "zeros"
        if params is not None:
            initializer = _constant(np.asarray(params[self.flowcore_tree.full_name(p.name)]))
        return self.add_weight(
            shape=p.shape, dtype=dtype, initializer=initializer, trainable=p.trainable, name=p.name
        )

    def _child(
        self, name: str, node: Node, params: Mapping[str, np.ndarray] | None
    ) -> keras.layers.Layer:
        if node.is_native:
            return _native(node, self.dtype_policy)
        kind = FlowLayer if node.is_transform else SubnetLayer
        return kind(node, params, dtype=self.dtype_policy, name=name)

    def _params(self) -> dict[str, Array]:
        return {name: v.value for name, v in self.flow_weights.items()}

    def _subnets(self) -> dict[str, Any]:
        children = self.flowcore_tree.children
        return {
            name: layer.run if children[name].is_transform else layer
            for name, layer in self.sublayers.items()
        }


class SubnetLayer(_Holder):
    """A portable subnetwork spec as a layer: ``call(x) -> y``."""

    def call(self, x: Array) -> Array:
        spec = self.flowcore_tree.spec
        assert isinstance(spec, Subnet)
        return spec.apply(XP, self._params(), self._subnets(), x)


@keras.saving.register_keras_serializable(package="flowcore")
class FlowLayer(_Holder):
    """A transform spec as a layer, called as FrEIA's: ``call(x, c=None, rev=False, jac=True)``.

    ``x`` is an array or a list of arrays; ``c`` an array, a list of arrays or None.
    Returns ``(z, log_det)`` with ``z`` an array if ``x`` was one, else a tuple, and
    ``log_det`` of shape ``(batch,)``: log|det dz/dx| forward, log|det dx/dz| with ``rev``.
    Its config is the spec's (:mod:`flowcore.serialize`) with the input and condition shapes,
    so ``model.save("m.keras")`` and ``keras.models.load_model`` round-trip it.
    """

    flowcore_backend = "keras"

    def run(
        self, xs: Sequence[Array], cs: Sequence[Array], rev: bool, jac: bool
    ) -> tuple[list[Array], Array]:
        tree = self.flowcore_tree
        return run_transform(tree, XP, self._params(), self._subnets(), xs, cs, rev, jac)

    def call(
        self, x: Any, c: Any = None, rev: bool = False, jac: bool = True
    ) -> tuple[Any, Array]:
        ys, log_det = self.run(as_list(x), as_list(c), rev, jac)
        return (ys[0] if not isinstance(x, (list, tuple)) and len(ys) == 1 else tuple(ys)), log_det

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
    if not isinstance(layer, _Holder):
        return {f"{prefix}{i}.{v.name}": v for i, v in enumerate(layer.weights)}
    out = {prefix + name: v for name, v in layer.flow_weights.items()}
    for name, child in layer.sublayers.items():
        out.update(named_weights(child, f"{prefix}{name}."))
    return out

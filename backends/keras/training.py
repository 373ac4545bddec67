"""Maximum-likelihood training with Keras' own ``fit``, on every Keras backend."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from flowcore.adapter import as_list
from flowcore.density import standard_normal_log_prob
from flowcore.errors import OptionError
from flowcore.losses import SupervisedFactorLoss, check_pair

from .namespace import XP

Array = Any


def negative_log_likelihood(z: Any, log_det: Array) -> Array:
    r"""Per-sample NLL in nats under a standard normal latent,
    :math:`\tfrac12\lVert z\rVert^2 + \tfrac{D}{2}\log 2\pi - \log|\det J|`: the
    number torch's and JAX's ``fit`` report, ``-fc.log_prob``.

    ``z`` is an array or a tuple of arrays (a flow with several outputs).
    """
    return -(standard_normal_log_prob(XP, as_list(z, "output", lambda a: True)) + log_det)


@keras.saving.register_keras_serializable(package="flowcore")
class DensityModel(keras.Model):
    """A flow as a density model that ``compile`` and ``fit`` train by maximum likelihood.

    ``model.compile(optimizer="adam"); model.fit(x, epochs=...)`` minimises the batch mean of
    :func:`negative_log_likelihood` (plus any losses the layers add). For a conditional flow
    give ``{"x": x, "c": c}`` as the data; ``model(x)`` returns the flow's ``(z, log_det)``.
    """

    def __init__(self, flow: keras.layers.Layer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flow = flow
        self.built = flow.built  # all its state is the flow's
        self._called_eagerly = False

    def _first_call_eagerly(self, x: Any, batch_size: int | None) -> None:
        """Under Keras' JAX backend, run the flow once eagerly on the first batch.

        Keras-JAX's compiled steps are stateless: they keep assignments to non-trainable
        weights but drop those to trainable ones, so a data-dependent initialisation
        (ActNorm's ``log_scale``/``loc``) made inside ``fit`` or ``predict`` would be lost
        while its ``initialised`` flag is kept. An eager first call makes it as on the
        other Keras backends. Datasets and generators are left to the caller: call the
        flow once on a batch before ``fit``.
        """
        if keras.backend.backend() != "jax" or self._called_eagerly:
            return
        size = batch_size or 32
        if isinstance(x, dict) and "x" in x:
            first: Any = {k: v[:size] for k, v in x.items() if v is not None}
        elif hasattr(x, "shape"):
            first = x[:size]
        else:
            return
        self(first)
        self._called_eagerly = True

    def fit(self, x: Any = None, *args: Any, **kwargs: Any) -> Any:
        self._first_call_eagerly(x, kwargs.get("batch_size"))
        return super().fit(x, *args, **kwargs)

    def predict(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        self._first_call_eagerly(x, kwargs.get("batch_size"))
        return super().predict(x, *args, **kwargs)

    def call(self, inputs: Any) -> tuple[Any, Array]:
        if isinstance(inputs, dict):
            return self.flow(inputs["x"], inputs.get("c"))
        return self.flow(inputs)

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Array:
        if y is not None or sample_weight is not None:
            raise OptionError(
                "DensityModel: fit takes only x (or {'x': x, 'c': c}); targets and sample "
                "weights have no meaning for a maximum-likelihood loss"
            )
        z, log_det = y_pred
        loss = ops.mean(negative_log_likelihood(z, log_det))
        for extra in self.losses:
            loss = loss + ops.sum(extra)
        return loss

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "flow": keras.saving.serialize_keras_object(self.flow)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DensityModel:
        config = dict(config)
        flow = keras.saving.deserialize_keras_object(config.pop("flow"))
        return cls(flow, **config)


@keras.saving.register_keras_serializable(package="flowcore")
class DisentanglingFlowModel(DensityModel):
    """gyoza's ``DisentanglingFlowModel``: a flow trained on pairs with ``compile``/``fit``.

    ``model.fit((z_a, z_b), y)`` minimises :class:`flowcore.losses.SupervisedFactorLoss`
    (``dimensions_per_factor``) of the flow's outputs on both halves of each pair, with
    ``y`` the per-factor correlations ``(batch, F)``, plus any losses the layers add. Keras'
    own ``train_step`` drives it: called on a pair ``model((z_a, z_b))`` returns
    ``((z̃_a, j_a), (z̃_b, j_b))`` and :meth:`compute_loss` applies the loss; on one batch
    ``model(z)`` is the flow's ``(z̃, log_det)``, as for inference in gyoza. The flow's output
    must be 2-D ``(batch, D)``. No ``loss=`` is given to ``compile``.
    """

    def __init__(
        self, flow: keras.layers.Layer, dimensions_per_factor: Any, **kwargs: Any
    ) -> None:
        super().__init__(flow, **kwargs)
        self.factor_loss = SupervisedFactorLoss(dimensions_per_factor)

    def _first_call_eagerly(self, x: Any, batch_size: int | None) -> None:
        """As :meth:`DensityModel._first_call_eagerly`, on the first batch of pairs."""
        if keras.backend.backend() != "jax" or self._called_eagerly:
            return
        if isinstance(x, (tuple, list)) and len(x) == 2 and all(hasattr(h, "shape") for h in x):
            size = batch_size or 32
            self((x[0][:size], x[1][:size]))
            self._called_eagerly = True

    def call(self, inputs: Any) -> Any:
        if isinstance(inputs, (tuple, list)):
            z_a, z_b = check_pair("DisentanglingFlowModel", inputs)
            return self.flow(z_a), self.flow(z_b)
        return self.flow(inputs)

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Array:
        if y is None or sample_weight is not None:
            raise OptionError(
                "DisentanglingFlowModel: fit takes pairs and their correlations, "
                "fit((z_a, z_b), y), with y of shape (batch, factors); sample weights are "
                "not supported"
            )
        if not (isinstance(y_pred, (tuple, list)) and len(y_pred) == 2):
            raise OptionError("DisentanglingFlowModel: fit needs pair data (z_a, z_b) as x")
        (z_a, j_a), (z_b, j_b) = y_pred
        loss = self.factor_loss(XP, z_a, z_b, j_a, j_b, ops.convert_to_tensor(y))
        for extra in self.losses:
            loss = loss + ops.sum(extra)
        return loss

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "dimensions_per_factor": list(self.factor_loss.dimensions_per_factor),
        }

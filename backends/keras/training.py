"""Maximum-likelihood training with Keras' own ``fit``, on every Keras backend."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from flowcore.adapter import as_list
from flowcore.spec import sum_per_sample

from .namespace import XP

Array = Any


def negative_log_likelihood(z: Any, log_det: Array) -> Array:
    r"""Per-sample NLL under a standard normal latent, up to the constant
    :math:`\tfrac{D}{2}\log 2\pi`: :math:`\tfrac12\lVert z\rVert^2 - \log|\det J|`.

    ``z`` is an array or a tuple of arrays (a flow with several outputs).
    """
    energy = [sum_per_sample(XP, zi * zi) for zi in as_list(z, "output", lambda a: True)]
    return 0.5 * ops.sum(ops.stack(energy), axis=0) - log_det


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
            raise ValueError(
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

"""``flowcore bench``'s workloads in Keras 3, labelled ``keras.<its backend>`` (TensorFlow,
JAX or torch): the flow and the floor.

- ``flowcore``: the Keras layer called directly, eager, and its call compiled as Keras'
  ``jit_compile=True`` compiles a step on its backend (:func:`frameworks.compile_layer_call`:
  XLA, ``jax.jit``, ``torch.compile``); ``train`` is one ``train_on_batch`` of
  :class:`~.training.DensityModel`, compiled with ``run_eagerly=True`` (eager) or
  ``jit_compile=True`` (compiled);
- ``floor``: the same subnets as Keras ``Dense`` or ``Conv2D`` layers (channels last: the
  subnets' input is transposed once, at setup; the FLOPs are the same), each run on an input
  of the shape the flow gives it, called directly (eager) or compiled as the flow is;
  ``inverse`` runs the same subnets; ``train`` is one ``train_on_batch`` of a
  ``keras.Model`` whose outputs are the subnets', compiled as the flow's model is, its loss
  computed in ``compute_loss`` as DensityModel's is.

``train`` is forward, loss (the flow: the negative log-likelihood; the floor: the mean
square of every subnet's output, summed), backward and one Adam step (learning rate 1e-4).
``forward`` and ``inverse`` run under ``torch.no_grad`` on Keras' torch backend (on the
others nothing is taped outside a gradient scope). Every step waits for its result: the
loss ``train_on_batch`` returns is a NumPy value; the outputs of ``forward`` and
``inverse`` are waited for (``jax.block_until_ready``; a device synchronisation off the
CPU, where TensorFlow and torch compute synchronously).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from flowcore.api import build
from flowcore.bench import Config, Workload

from . import frameworks
from .training import DensityModel


def label() -> str:
    return f"keras.{keras.backend.backend()}"


def subnet(config: Config, block: int, in_shape: tuple[int, ...], c_out: int) -> keras.Model:
    """Block ``block``'s subnet as Keras layers on inputs of ``in_shape`` (channels last):
    what flowcore's MLP or ConvNet computes (ReLU between layers, none after the last)."""
    widths = [*config.hidden, c_out]
    kernel = config.kernel(block)
    layers: list[keras.layers.Layer] = [keras.Input(in_shape, dtype="float32")]
    for i, width in enumerate(widths):
        activation = "relu" if i < len(widths) - 1 else None
        if kernel is None:
            layers.append(keras.layers.Dense(width, activation=activation, dtype="float32"))
        else:
            layers.append(
                keras.layers.Conv2D(
                    width, kernel, padding="same", activation=activation, dtype="float32"
                )
            )
    return keras.Sequential(layers)


class _Subnets(keras.layers.Layer):
    """The floor's subnets as one layer called as a flow is, ``(xs, cs, rev, jac)``, so that
    it compiles as the flow's call does; returns every subnet's output of ``xs[0]``."""

    def __init__(self, nets: list[keras.Model], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nets = nets
        self.built = True

    def call(
        self, xs: list[Any], cs: Any = None, rev: bool = False, jac: bool = True
    ) -> tuple[list[Any], None]:
        return [net(xs[0]) for net in self.nets], None


class _SubnetsModel(keras.Model):
    """The floor's subnets as a model trained with ``train_on_batch(x)``: its outputs are
    the subnets', its loss the sum of their mean squares (a target of zeros), computed in
    ``compute_loss`` as :class:`~.training.DensityModel` computes its loss (a loss given to
    ``compile`` per output would add Keras' per-output loss tracking, which the flow's
    model does not have: twice the floor's compiled step on ``tiny``)."""

    def __init__(self, nets: list[keras.Model], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nets = nets
        self.built = True

    def call(self, x: Any) -> list[Any]:
        return [net(x) for net in self.nets]

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        return sum(keras.ops.mean(keras.ops.square(out)) for out in y_pred)


def _inference() -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """The context forward and inverse run in: ``torch.no_grad`` on Keras' torch backend
    (its variables require grad), else none."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad
    return contextlib.nullcontext


def _waiter(device: str) -> Callable[[Any], None]:
    """A function waiting until every array of its argument (a nest) is computed."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def block(tree: Any) -> None:
            jax.block_until_ready(tree)

        return block
    if device == "cpu":
        return lambda tree: None
    if backend == "torch":
        import torch

        return lambda tree: torch.cuda.synchronize()
    import tensorflow as tf

    return lambda tree: tf.test.experimental.sync_devices()


def _inferer(fn: Callable[[], Any], wait: Callable[[Any], None]) -> Callable[[], None]:
    context = _inference()

    def step() -> None:
        with context():
            wait(fn())

    return step


def _trainer(model: keras.Model, *data: Any) -> Callable[[], None]:
    def step() -> None:
        model.train_on_batch(*data)  # returns the loss as a NumPy value: the step is done

    return step


def _compile(model: keras.Model, mode: str) -> keras.Model:
    """``model`` compiled to train with Adam, eagerly or with ``jit_compile=True``."""
    eager = mode == "eager"
    optimizer = keras.optimizers.Adam(learning_rate=1e-4)
    model.compile(optimizer=optimizer, run_eagerly=eager, jit_compile=not eager)
    return model


def _flowcore(config: Config, x: Any, device: str, wait: Any) -> list[Workload]:
    flow = build(config.spec(), config.shape, backend="keras", seed=0, device=device)
    with _inference()():
        z, _ = flow(x)
    # Compiled at setup, not through the backend's lazy ``compiled`` hook: on Keras' torch
    # backend each compile_layer_call resets dynamo, which would drop what the warm-ups of
    # the workloads before it compiled.
    forward = frameworks.compile_layer_call(flow, False, True)
    inverse = frameworks.compile_layer_call(flow, True, True)
    steps = {
        ("eager", "forward"): _inferer(lambda: flow(x), wait),
        ("eager", "inverse"): _inferer(lambda: flow(z, rev=True), wait),
        ("eager", "train"): _trainer(_compile(DensityModel(flow), "eager"), x),
        ("compiled", "forward"): _inferer(lambda: forward([x], []), wait),
        ("compiled", "inverse"): _inferer(lambda: inverse([z], []), wait),
        ("compiled", "train"): _trainer(_compile(DensityModel(flow), "compiled"), x),
    }
    return [
        Workload(label(), "flowcore", mode, task, step) for (mode, task), step in steps.items()
    ]


def _floor(config: Config, x: np.ndarray, device: str, wait: Any) -> list[Workload]:
    read, changed = config.split
    inputs = x[:, :read]
    if inputs.ndim > 2:  # NCHW -> NHWC
        inputs = np.moveaxis(inputs, 1, -1)
    in_shape = tuple(inputs.shape[1:])
    nets = [subnet(config, i, in_shape, 2 * changed) for i in range(config.blocks)]
    inputs = keras.ops.convert_to_tensor(np.ascontiguousarray(inputs))
    subnets = _Subnets(nets, name="floor")
    with _inference()():
        subnets([inputs])  # once eagerly, as the flow is: a first call sets Keras' state
    compiled = frameworks.compile_layer_call(subnets, False, True)
    apply: dict[str, Callable[[], Any]] = {
        "eager": lambda: [net(inputs) for net in nets],
        "compiled": lambda: compiled([inputs], []),
    }
    workloads = []
    for mode in ("eager", "compiled"):
        model = _compile(_SubnetsModel(nets, name=f"floor_{mode}"), mode)
        workloads += [
            Workload(label(), "floor", mode, "forward", _inferer(apply[mode], wait)),
            Workload(label(), "floor", mode, "inverse", _inferer(apply[mode], wait)),
            Workload(label(), "floor", mode, "train", _trainer(model, inputs)),
        ]
    return workloads


def workloads(config: Config, x: np.ndarray, device: str, threads: int) -> list[Workload]:
    """Every Keras workload of ``config`` on the batch ``x`` (float32), on the Keras backend
    in use; ``threads`` is pinned by the command before the frameworks load."""
    keras.utils.set_random_seed(0)
    wait = _waiter(device)
    with frameworks.device_scope(device):
        xk = keras.ops.convert_to_tensor(np.asarray(x, dtype="float32"))
        return [*_flowcore(config, xk, device, wait), *_floor(config, x, device, wait)]

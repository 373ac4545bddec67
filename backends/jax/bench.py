"""``flowcore bench``'s workloads in JAX: the flow and the floor.

- ``flowcore``: the NNX module called directly, eager, and its pure ``apply``
  (:func:`~flowcore.backends.jax.functional.functional`) under ``jax.jit``;
- ``floor``: the same subnets as plain ``jax.numpy`` functions of their own parameters, each
  run on an input of the shape the flow gives it (differentiated too, since in the flow every
  subnet's input depends on the blocks before), eager and under ``jax.jit``; ``inverse`` runs
  the same subnets.

No peers are timed (flowjax, the natural one, is not a dependency). ``train`` is forward,
negative log-likelihood (the floor: the sum over subnets of the mean square of the output),
``jax.value_and_grad`` and one optax Adam step (lr 1e-4), eager op by op, or all of it under
one ``jax.jit`` with the parameters and optimizer state carried from call to call. Every
step blocks until its result is ready. Matrix products and convolutions run at flowcore's
:data:`~.namespace.PRECISION`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowcore.api import build
from flowcore.bench import Config, Workload
from flowcore.density import standard_normal_log_prob

from .backend import BACKEND
from .functional import functional
from .namespace import PRECISION, XP

LABEL = "jax"
Params = Any  # a pytree of jax.Array
Loss = Callable[..., jax.Array]


def _ready(fn: Callable[[], Any]) -> Callable[[], None]:
    """``fn`` as a step that waits for its result."""

    def step() -> None:
        jax.block_until_ready(fn())

    return step


def _trainer(
    loss: Loss, params: Params, args: tuple[Any, ...], jit: bool, wrt_args: bool = False
) -> Callable[[], None]:
    """A step: ``jax.value_and_grad`` of ``loss(params, *args)`` with respect to ``params``
    (and, with ``wrt_args``, to ``args`` too, returned so that ``jax.jit`` keeps them), then
    one Adam update of ``params``; unjitted, or all of it under one ``jax.jit``. The
    parameters and optimizer state are carried from call to call."""
    optimizer = optax.adam(1e-4)
    argnums = tuple(range(1 + len(args))) if wrt_args else (0,)

    def update(params: Params, opt_state: Any, *args: Any) -> tuple[Params, Any, Any]:
        value, grads = jax.value_and_grad(loss, argnums=argnums)(params, *args)
        updates, opt_state = optimizer.update(grads[0], opt_state, params)
        return optax.apply_updates(params, updates), opt_state, (value, grads[1:])

    run = jax.jit(update) if jit else update
    # committed to the parameters' device, as jit's outputs are: else the 2nd call recompiles
    opt_state = jax.device_put(optimizer.init(params), jax.tree.leaves(params)[0].sharding)
    state = [params, opt_state]

    def step() -> None:
        state[0], state[1], out = run(state[0], state[1], *args)
        jax.block_until_ready((state, out))

    return step


def _flowcore(config: Config, x: jax.Array, device: str) -> list[Workload]:
    flow = build(config.spec(), config.shape, backend="jax", seed=0, device=device)
    apply, params = functional(flow)
    z, _ = flow(x)
    run = jax.jit(apply, static_argnames=("rev", "jac"))

    def nll(params: Mapping[str, jax.Array], x: jax.Array) -> jax.Array:
        """``-mean(log N(z; 0, I) + log|det J|)`` of ``z = f(x)``."""
        z, log_det = apply(params, x)
        return -(standard_normal_log_prob(XP, [z]) + log_det).mean()

    steps = {
        ("eager", "forward"): _ready(lambda: flow(x)),
        ("eager", "inverse"): _ready(lambda: flow(z, rev=True)),
        ("eager", "train"): _trainer(nll, params, (x,), jit=False),
        ("compiled", "forward"): _ready(lambda: run(params, x)),
        ("compiled", "inverse"): _ready(lambda: run(params, z, rev=True)),
        ("compiled", "train"): _trainer(nll, params, (x,), jit=True),
    }
    return [Workload(LABEL, "flowcore", mode, task, step) for (mode, task), step in steps.items()]


def subnet_params(
    config: Config, block: int, c_in: int, c_out: int, rng: np.random.Generator, device: str
) -> list[tuple[jax.Array, jax.Array]]:
    """Block ``block``'s subnet's ``(weight, bias)`` per layer, widths ``[c_in, *hidden,
    c_out]``: ``(in, out)`` matrices, or ``(out, in, k, k)`` kernels, drawn as torch's
    defaults draw them, uniform in ``±1/sqrt(fan_in)``."""
    widths = [c_in, *config.hidden, c_out]
    kernel = config.kernel(block)
    layers = []
    for a, b in zip(widths, widths[1:], strict=False):
        shape = (a, b) if kernel is None else (b, a, kernel, kernel)
        bound = 1 / np.sqrt(a * (kernel or 1) ** 2)
        w, bias = rng.uniform(-bound, bound, shape), rng.uniform(-bound, bound, (b,))
        layers.append(
            (BACKEND.to_native(w, "float32", device), BACKEND.to_native(bias, "float32", device))
        )
    return layers


def subnet(config: Config, block: int) -> Callable[[Any, jax.Array], jax.Array]:
    """Block ``block``'s subnet as a ``jax.numpy`` function of its layers and input: what
    flowcore's MLP or ConvNet computes, ``x W + b`` or a ``same``-padded NCHW/OIHW
    convolution per layer, ReLU between layers."""
    kernel = config.kernel(block)

    def layer(w: jax.Array, b: jax.Array, h: jax.Array) -> jax.Array:
        if kernel is None:
            return jnp.matmul(h, w, precision=PRECISION) + b
        pad = ((kernel // 2, kernel // 2),) * 2
        out = jax.lax.conv_general_dilated(
            h, w, (1, 1), pad, dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=PRECISION
        )
        return out + b[None, :, None, None]

    def apply(layers: Any, h: jax.Array) -> jax.Array:
        for i, (w, b) in enumerate(layers):
            h = layer(w, b, h)
            if i < len(layers) - 1:
                h = jax.nn.relu(h)
        return h

    return apply


def _floor(config: Config, x: jax.Array, device: str) -> list[Workload]:
    read, changed = config.split
    rng = np.random.default_rng(0)
    nets = [subnet(config, i) for i in range(config.blocks)]
    params = [
        subnet_params(config, i, read, 2 * changed, rng, device) for i in range(config.blocks)
    ]
    inputs = x[:, :read]

    def apply(params: list[Any], inputs: jax.Array) -> list[jax.Array]:
        return [net(p, inputs) for net, p in zip(nets, params, strict=True)]

    def loss(params: list[Any], inputs: jax.Array) -> jax.Array:
        """``sum_i mean(subnet_i(inputs)^2)``."""
        return sum((jnp.mean(out**2) for out in apply(params, inputs)), jnp.zeros(()))

    workloads = []
    for mode, jit in (("eager", False), ("compiled", True)):
        step = _ready(functools.partial(jax.jit(apply) if jit else apply, params, inputs))
        train = _trainer(loss, params, (inputs,), jit, wrt_args=True)
        workloads += [
            Workload(LABEL, "floor", mode, "forward", step),
            Workload(LABEL, "floor", mode, "inverse", step),
            Workload(LABEL, "floor", mode, "train", train),
        ]
    return workloads


def workloads(config: Config, x: np.ndarray, device: str, threads: int) -> list[Workload]:
    """Every JAX workload of ``config`` on the batch ``x`` (float32). ``threads`` is set
    before JAX starts (``XLA_FLAGS``, by the CLI), so nothing is done with it here."""
    xj = BACKEND.to_native(x, "float32", device)
    return [*_flowcore(config, xj, device), *_floor(config, xj, device)]

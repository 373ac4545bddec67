r"""FrEIA's ``FrEIA.distributions``: a base distribution moved through a flow.

For a flow :math:`f` (a module with FrEIA's call) and a base density :math:`p_Z`:

- ``PushForwardDistribution(base, f)``: samples :math:`x = f(z)`, density
  :math:`\log p(x) = \log p_Z(f^{-1}(x)) + \log|\det \partial f^{-1}/\partial x|`;
- ``PullBackDistribution(base, f)``: the same for :math:`f^{-1}`, so samples
  :math:`x = f^{-1}(z)` and :math:`\log p(x) = \log p_Z(f(x)) + \log|\det \partial f/\partial x|`
  (the usual normalizing flow trained by maximum likelihood).

Both are ``torch.distributions.Distribution``\ s; ``sample`` draws without gradients,
``rsample`` with them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributions import Distribution, Independent, Normal

from flowcore.errors import ShapeError

__all__ = ["PullBackDistribution", "PushForwardDistribution", "StandardNormalDistribution"]


class DataShapeError(ShapeError, RuntimeError):
    """Data whose trailing shape is not the flow's (a ValueError and, as FrEIA's tests
    expect of torch's own error, a RuntimeError)."""


class StandardNormalDistribution(Independent):
    """The standard normal on ``event_shape``: :math:`\\mathcal N(0, I)`."""

    def __init__(
        self, *event_shape: int, device: Any = None, dtype: torch.dtype | None = None
    ) -> None:
        zeros = torch.zeros(event_shape, device=device, dtype=dtype)
        super().__init__(Normal(zeros, torch.ones_like(zeros)), len(event_shape))


class PushForwardDistribution(Distribution):
    """``base`` pushed forward through ``transform`` (see the module's doc)."""

    arg_constraints: dict[str, Any] = {}
    #: Whether data map to the base by the transform's forward direction.
    _pull_back = False

    def __init__(self, base_distribution: Distribution, transform: Any) -> None:
        self.base_distribution = base_distribution
        self.transform = transform
        dims = transform.dims_in if self._pull_back else transform.output_dims(transform.dims_in)
        self.data_shape = tuple(dims[0])
        super().__init__(torch.Size(), torch.Size(self.data_shape), validate_args=False)

    def _call(self, x: torch.Tensor, rev: bool, conditions: Any, jac: bool) -> Any:
        kwargs = {} if conditions is None else {"c": conditions}
        out, log_det = self.transform(x, rev=rev, jac=jac, **kwargs)
        return (out[0] if isinstance(out, tuple) else out), log_det

    def rsample(self, sample_shape: Any = (), conditions: Any = None) -> torch.Tensor:
        z = self.base_distribution.rsample(torch.Size(sample_shape))
        return self._call(z, self._pull_back, conditions, jac=False)[0]

    def sample(self, sample_shape: Any = (), conditions: Any = None) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape, conditions)

    def log_prob(self, value: torch.Tensor, conditions: Any = None) -> torch.Tensor:
        trailing = tuple(value.shape[-len(self.data_shape) :])
        if trailing != self.data_shape:
            raise DataShapeError(
                f"{type(self).__name__}.log_prob: data of trailing shape {trailing}, the "
                f"flow's is {self.data_shape}"
            )
        z, log_det = self._call(value, not self._pull_back, conditions, jac=True)
        return self.base_distribution.log_prob(z) + log_det


class PullBackDistribution(PushForwardDistribution):
    """``base`` pulled back through ``transform``: data are mapped to the base by the
    transform's forward direction (see the module's doc)."""

    _pull_back = True

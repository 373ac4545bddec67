"""The flows ``flowcore bench`` times: AllInOneBlocks with MLP or convolutional subnets.

Each block splits its ``C`` channels into ``C - C//2`` the subnet reads and ``C//2`` it
transforms, so its subnet maps ``(C - C//2, ...)`` to ``(2 (C//2), ...)`` (scale and
shift). The floor runs ``blocks`` such subnets and nothing else.
"""

from __future__ import annotations

import dataclasses

from ..models import SequenceINN
from ..spec import Transform
from ..subnets import MLP, ConvNet, Subnet
from ..transforms import AllInOneBlock


@dataclasses.dataclass(frozen=True)
class Config:
    """``blocks`` AllInOneBlocks on inputs of ``shape``, a batch of ``batch``. Subnets are
    MLPs of ``hidden`` widths, or, with ``kernels``, convolutional nets whose block ``i``
    has kernel ``kernels[i % len(kernels)]`` (FastFlow alternates 3x3 and 1x1)."""

    name: str
    shape: tuple[int, ...]
    blocks: int
    hidden: tuple[int, ...]
    batch: int
    kernels: tuple[int, ...] = ()

    @property
    def split(self) -> tuple[int, int]:
        """(channels the subnets read, channels they transform)."""
        channels = self.shape[0]
        return channels - channels // 2, channels // 2

    def kernel(self, block: int) -> int | None:
        return self.kernels[block % len(self.kernels)] if self.kernels else None

    def subnet(self, block: int) -> Subnet:
        kernel = self.kernel(block)
        if kernel is None:
            return MLP(hidden=self.hidden)
        return ConvNet(hidden=self.hidden, kernel_size=kernel)

    def subnet_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """A subnet's input and output shape, without the batch."""
        read, changed = self.split
        return (read, *self.shape[1:]), (2 * changed, *self.shape[1:])

    def spec(self) -> Transform:
        return SequenceINN(*[AllInOneBlock(subnet=self.subnet(i)) for i in range(self.blocks)])

    def resized(self, blocks: int | None = None, batch: int | None = None) -> Config:
        return dataclasses.replace(self, blocks=blocks or self.blocks, batch=batch or self.batch)


#: tiny: the foundation's measurement; dense: a wide MLP flow; conv: FastFlow's shape at
#: one scale; deep: tiny's blocks 64 deep (compile time, memory in depth).
CONFIGS: dict[str, Config] = {
    "tiny": Config("tiny", (8,), 16, (64, 64), 64),
    "dense": Config("dense", (64,), 8, (256, 256), 1024),
    "conv": Config("conv", (64, 32, 32), 8, (64,), 8, kernels=(3, 1)),
    "deep": Config("deep", (8,), 64, (64, 64), 64),
}

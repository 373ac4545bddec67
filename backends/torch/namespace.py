"""The namespace specs compute with under PyTorch: array-api-compat's plus the extras."""

import array_api_compat.torch as _xp
import torch
import torch.nn.functional as F

from flowcore.namespace import extend

XP = extend(
    _xp,
    linear=F.linear,
    conv2d=lambda x, w, b, padding: F.conv2d(x, w, b, padding=padding),
    relu=torch.relu,
    leaky_relu=F.leaky_relu,
    # array-api-compat's take handles axis=None with Python overhead; specs always pass axis
    take=lambda x, indices, axis: torch.index_select(x, axis, indices),
)

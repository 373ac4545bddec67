"""The namespace specs compute with under PyTorch: array-api-compat's plus the extras."""

import array_api_compat.torch as _xp
import torch
import torch.nn.functional as F

from flowcore.namespace import extend

XP = extend(
    _xp,
    linear=F.linear,
    # F.conv2d takes an int or an (ph, pw) pair, and a bias of None
    conv2d=lambda x, w, b, padding: F.conv2d(x, w, b, padding=padding),
    pad2d=lambda x, padding: F.pad(x, tuple(padding)),
    relu=torch.relu,
    leaky_relu=F.leaky_relu,
    sigmoid=torch.sigmoid,
    elu=lambda x, alpha=1.0: F.elu(x, alpha),
    softplus=lambda x, beta=1.0, threshold=20.0: F.softplus(x, beta, threshold),
    # array-api-compat's take handles axis=None with Python overhead; specs always pass axis
    take=lambda x, indices, axis: torch.index_select(x, axis, indices),
)

"""``flowcore bench``: flowcore's flows timed against the floor and the peers, in every
installed backend, eager and compiled, in one run.

Configurations (:mod:`.configs`) are flows of AllInOneBlocks. For each backend, its
:meth:`~flowcore.backend.Backend.bench_steps` hook gives the workloads: ``forward``,
``inverse`` and ``train`` (forward, negative log-likelihood, backward, one Adam step), of
``flowcore`` (the flow), the ``floor`` (the same subnets alone, as the framework's own
layers, on the inputs the flow gives them) and the framework's peers (FrEIA 0.2 in torch).
:mod:`.timing` runs every workload of a configuration in interleaved rounds after a warm-up
(which compiles), threads pinned; :mod:`.report` gives medians and median per-round ratios
to the floor and to each peer as a table, JSON and a plot.
"""

from .cli import main
from .configs import CONFIGS, Config
from .timing import Measurement, Workload

__all__ = ["CONFIGS", "Config", "Measurement", "Workload", "main"]

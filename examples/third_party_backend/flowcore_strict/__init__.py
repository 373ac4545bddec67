"""flowcore-strict: flowcore's transforms on ``array-api-strict``, registered as a third
party registers a backend (the entry point in ``pyproject.toml``).

Its models hold their parameters as NumPy arrays and compute with array-api-strict (the
Array API standard and nothing else) in float32 or float64; derivatives (the conformance
suite's Jacobian and gradients) are finite differences of the float64 computation. It runs
every transform written against the contract, and no native subnet.
"""

from flowcore import BackendInfo

#: What the ``flowcore.backends`` entry point names: the backend ``strict``, its object
#: ``BACKEND`` in :mod:`flowcore_strict.backend`, and the module it needs.
INFO = BackendInfo("strict", "flowcore_strict.backend", ("array_api_strict",))

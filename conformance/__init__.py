"""flowcore's conformance suite: every backend against the float64 NumPy reference and
against each other.

Run it with ``pytest conformance``, ``flowcore-conformance`` or
``python -m flowcore.conformance``; a third-party backend registered under the
``flowcore.backends`` entry point runs it with ``flowcore-conformance --backends NAME``.
See docs/conformance.md in the repository (conformance/README.md points there).
"""

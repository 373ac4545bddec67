"""``import flowcore`` works, and stays fast, with no framework importable.

Each test runs a fresh interpreter in which ``sys.modules[name] = None`` makes every
framework unimportable (an import raises ImportError), as if none were installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

FRAMEWORKS = ("torch", "jax", "jaxlib", "flax", "keras", "tensorflow")
BLOCK = f"import sys\nfor _name in {FRAMEWORKS!r}:\n    sys.modules[_name] = None\n"


def _run(code: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_blocker_really_blocks():
    out = _run(
        """
        try:
            import torch
        except ImportError:
            print("blocked")
        """
    )
    assert out.strip() == "blocked"


def test_import_flowcore_imports_no_framework_and_computes_with_numpy():
    out = _run(
        """
        import json
        import numpy as np
        import flowcore as fc
        import flowcore.backends

        spec = fc.SequenceINN(fc.AllInOneBlock(subnet=fc.MLP(hidden=(4,)), permute_soft=True))
        tree = fc.build_tree(spec, [(3,)])
        (y,), log_det = fc.Reference(tree, fc.initial_params(tree, 0))([np.ones((2, 3))])
        try:
            fc.build(spec, (3,), backend="torch")
        except fc.BackendError as err:
            error = str(err)
        loaded = sorted(
            m for m in sys.modules
            if m.split(".")[0] in FRAMEWORKS and sys.modules[m] is not None
        )
        print(json.dumps({
            "loaded": loaded, "installed": fc.installed_backends(),
            "shape": list(y.shape), "log_det": list(log_det.shape), "error": error,
        }))
        """.replace("FRAMEWORKS", repr(FRAMEWORKS))
    )
    result = json.loads(out)
    assert result["loaded"] == []
    # none of the built-in backends (a third party's, such as examples/third_party_backend's
    # array-api-strict one, may be)
    assert set(result["installed"]).isdisjoint({"torch", "jax", "keras"})
    assert result["shape"] == [2, 3] and result["log_det"] == [2]
    assert "needs ['torch'], which is not installed" in result["error"]


def test_flowcore_own_import_time_is_under_0_2_s(tmp_path):
    """Best of three fresh interpreters; NumPy, a dependency, is imported before timing.

    Timed as an installed package imports, from compiled bytecode: one untimed import first
    writes it (under ``tmp_path``, not into the source tree), since tox runs with
    PYTHONDONTWRITEBYTECODE and compiling the sources at every import would be timed
    instead."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path)
    code = """
        import time
        import numpy
        start = time.perf_counter()
        import flowcore
        print(time.perf_counter() - start)
        """
    _run(code, env)
    best = min(float(_run(code, env)) for _ in range(3))
    assert best < 0.2, f"import flowcore took {best:.3f} s"

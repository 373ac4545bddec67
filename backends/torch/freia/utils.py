"""FrEIA's ``FrEIA.utils.plot_graph`` on flowcore's graph pictures."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from collections.abc import Sequence

from flowcore.errors import BackendError
from flowcore.models import GraphINN
from flowcore.models.nodes import GraphNode
from flowcore.models.picture import graph_dot

__all__ = ["plot_graph"]


def plot_graph(
    node_list: Sequence[GraphNode], path: str = "graph", filename: str = "graph"
) -> None:
    """Write the graph of ``node_list`` as Graphviz source to ``path/filename`` and render
    it to ``path/filename.pdf``, as FrEIA does. ``path`` must be an existing folder;
    Graphviz's ``dot`` must be on ``PATH`` (a BackendError says so otherwise)."""
    folder = pathlib.Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"plot_graph: {os.fspath(folder)!r} is not an existing folder")
    dot = shutil.which("dot")
    if dot is None:
        raise BackendError(
            "plot_graph: Graphviz's 'dot' is not on PATH (apt-get install graphviz)"
        )
    source = folder / filename
    source.write_text(graph_dot(GraphINN(node_list)))
    done = subprocess.run(
        [dot, "-Tpdf", "-o", f"{os.fspath(source)}.pdf", os.fspath(source)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise BackendError(f"plot_graph: dot failed: {done.stderr.decode().strip()}")

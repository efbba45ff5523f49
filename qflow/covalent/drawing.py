"""``lattice.draw()``: a lattice's graph as text and as an SVG picture, no server needed.

Example:
    >>> import qflow
    >>> @qflow.electron
    ... def add(a, b):
    ...     return a + b
    >>> @qflow.lattice
    ... def flow(x):
    ...     return add(x, 1)
    >>> drawing = flow.draw(2)
    >>> print(drawing)
    lattice flow: 4 nodes
      add(0)                       [electron] <- :parameter:2(1), :parameter:1(2)
      :postprocess:reconstruct(3)  [op] <- add(0)
    >>> drawing.svg().startswith("<svg")
    True
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from qflow.core.graph import Graph, NodeKind
from qflow.core.layout import layered

__all__ = ["Drawing"]

_W, _H = 150, 34
_FILL = {
    NodeKind.ELECTRON: "#dbeafe",
    NodeKind.SUBLATTICE: "#ede9fe",
    NodeKind.OP: "#f3f4f6",
    NodeKind.PARAMETER: "#fef9c3",
}


class Drawing:
    """A drawn graph: ``str()`` is the text form; in a notebook it shows as SVG."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def __str__(self) -> str:
        return self.graph.describe()

    def __repr__(self) -> str:
        return f"<qflow drawing of {self.graph.name}: {len(self.graph.nodes)} nodes>"

    def svg(self) -> str:
        """The graph as a standalone SVG document, parents above their children."""
        parents = {n.node_id: n.parents() for n in self.graph.nodes}
        layout = layered(parents)
        pos = {i: (p.x, p.y) for i, p in layout.nodes.items()}
        parts = []
        for node in self.graph.nodes:
            x2, y2 = pos[node.node_id]
            for p in parents[node.node_id]:
                x1, y1 = pos[p]
                parts.append(
                    f'<line x1="{x1}" y1="{y1 + _H / 2}" x2="{x2}" y2="{y2 - _H / 2}" '
                    'stroke="#9ca3af"/>'
                )
        for node in self.graph.nodes:
            x, y = pos[node.node_id]
            label = node.label if len(node.label) <= 22 else node.label[:21] + "\u2026"
            parts.append(
                f'<g transform="translate({x - _W / 2},{y - _H / 2})"><title>'
                f'{escape(node.label)} [{node.kind}]</title><rect width="{_W}" height="{_H}" '
                f'rx="6" fill="{_FILL[node.kind]}" stroke="#6b7280"/><text x="{_W / 2}" '
                f'y="{_H / 2 + 4}" text-anchor="middle" font-family="sans-serif" '
                f'font-size="11">{escape(label)}</text></g>'
            )
        width, height = layout.width + _W + 20, layout.height + _H + 20
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="{-_W / 2 - 10} {-_H / 2 - 10} {width} {height}">' + "".join(parts) + "</svg>"
        )

    def _repr_svg_(self) -> str:  # Jupyter shows this
        return self.svg()

    def save(self, path: str | Path) -> Path:
        """Write ``.svg`` (the picture) or any other suffix (the text form) to ``path``."""
        path = Path(path)
        path.write_text(self.svg() if path.suffix.lower() == ".svg" else str(self) + "\n")
        return path

"""A layered layout of a dispatch's graph, computed on the server and drawn as SVG.

Layers are longest paths from the sources, so every edge points down. Within a layer
nodes are ordered by the mean position of their parents (one barycentre sweep), which
keeps a fan-out's children under their parent. A layer wider than ``max_per_row`` is
folded into a block of rows about as wide as a screen, so a 1,000-wide fan-out stays
readable instead of becoming a 170,000-pixel line. Iterative throughout: no recursion limit on long chains.

Example:
    >>> pos = layered({0: [], 1: [0], 2: [0], 3: [1, 2]})
    >>> [pos.nodes[i].layer for i in range(4)]
    [0, 1, 1, 2]
    >>> pos.nodes[3].y > pos.nodes[1].y > pos.nodes[0].y
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

NODE_W, NODE_H = 150, 34
GAP_X, GAP_Y = 24, 56
ROW_GAP = 14  # between the rows of one folded layer: closer than layers are


@dataclass(frozen=True)
class Placed:
    """One node's box: centre ``(x, y)`` in SVG units, and its layer."""

    x: float
    y: float
    layer: int


@dataclass(frozen=True)
class Layout:
    nodes: dict[int, Placed]
    width: float
    height: float


def layered(parents: Mapping[int, Sequence[int]], max_per_row: int = 40) -> Layout:
    """Place every node of a DAG given as ``node -> parents``; unknown parents are ignored."""
    ids = list(parents)
    known = set(ids)
    children: dict[int, list[int]] = {i: [] for i in ids}
    indegree = dict.fromkeys(ids, 0)
    for node, ps in parents.items():
        for p in set(ps):
            if p in known:
                children[p].append(node)
                indegree[node] += 1
    layer = dict.fromkeys(ids, 0)
    ready = [i for i in ids if indegree[i] == 0]
    order: list[int] = []
    while ready:
        node = ready.pop()
        order.append(node)
        for c in children[node]:
            layer[c] = max(layer[c], layer[node] + 1)
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    for node in ids:  # a cycle cannot come from a graph, but never loop or lose a node
        if node not in layer or indegree[node] > 0:
            layer[node] = max(layer.values(), default=0) + 1
    by_layer: dict[int, list[int]] = {}
    for node in sorted(ids):
        by_layer.setdefault(layer[node], []).append(node)

    slot: dict[int, float] = {}
    placed: dict[int, Placed] = {}
    rows: list[tuple[list[int], float]] = []
    y = NODE_H / 2
    width = NODE_W + GAP_X
    for index in sorted(by_layer):
        members = by_layer[index]
        if index > 0:  # barycentre of the parents already placed
            members.sort(
                key=lambda n: _mean([slot[p] for p in parents[n] if p in slot], default=float(n))
            )
        per_row = _row_length(len(members), max_per_row)
        for row_start in range(0, len(members), per_row):
            row = members[row_start : row_start + per_row]
            for col, node in enumerate(row):
                slot[node] = row_start + col
                placed[node] = Placed(x=col * (NODE_W + GAP_X) + NODE_W / 2, y=y, layer=index)
            width = max(width, len(row) * (NODE_W + GAP_X))
            rows.append((row, len(row) * (NODE_W + GAP_X)))
            y += NODE_H + ROW_GAP
        y += GAP_Y - ROW_GAP
    for row, row_width in rows:  # centred under the widest row
        shift = (width - row_width) / 2
        for node in row:
            at = placed[node]
            placed[node] = Placed(x=at.x + shift, y=at.y, layer=at.layer)
    return Layout(nodes=placed, width=width, height=max(y - GAP_Y + NODE_H / 2, NODE_H))


def _row_length(count: int, most: int) -> int:
    """Nodes per row of a layer: all of them up to ``most``; beyond, a block about as
    wide as a screen is (16:10), so that the whole graph fits at a usable scale."""
    if count <= most:
        return count
    return max(
        10, min(most, math.ceil(math.sqrt(count * 1.6 * (NODE_H + ROW_GAP) / (NODE_W + GAP_X))))
    )


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default

"""The execution plan: the population graph's strongly connected components in topological order.

A component of one population without a self-connection runs layer-at-a-time; any other component
is a loop, run step-at-a-time (see :mod:`neurosim.network.graph`).
"""
from __future__ import annotations


def components(nodes: list[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of the graph (``edges`` from ``pre`` to ``post``; edges from
    outside ``nodes``, such as inputs, are ignored), in topological order, each listed in the order
    of ``nodes`` (Tarjan's algorithm)."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for pre, post in edges:
        if pre in succ:
            succ[pre].append(post)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(sorted(comp, key=nodes.index))

    for v in nodes:
        if v not in index:
            visit(v)
    return comps[::-1]

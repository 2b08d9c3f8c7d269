"""The dependency graph of components (``depends_on``): validation and traversal, pure.

Edges point upstream: ``etl.depends_on = ["db"]`` means etl needs db. The graph must be acyclic and
name only existing components; ``problems`` says what is wrong in words that name the culprits, so
the API (422 envelope) and ``config validate`` (exit 2) report the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NoReturn

from app.core.errors import ValidationFailed

Graph = Mapping[str, Iterable[str]]
MAX_DEPENDENCIES = 64


def normalise(value: object) -> list[str]:
    """A ``depends_on`` value as a clean list (raises ValueError with a message for the user)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ValueError("depends_on must be a list of component names")  # noqa: TRY004 - a message for the user
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item:
            raise ValueError(f"depends_on: {item!r} is not a component name")
        if item not in out:
            out.append(item)
    if len(out) > MAX_DEPENDENCIES:
        raise ValueError(f"depends_on: at most {MAX_DEPENDENCIES} names")
    return out


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle as a path (``[a, b, a]``), or None. Iterative DFS: deep chains do not recurse."""
    colour: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in sorted(graph):
        if colour.get(start):
            continue
        path: list[str] = []
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph.get(start, ())))]
        colour[start] = 1
        path.append(start)
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                colour[node] = 2
                continue
            nxt = todo.pop(0)
            state = colour.get(nxt, 0)
            if state == 1:
                return path[path.index(nxt) :] + [nxt]
            if state == 0 and nxt in graph:
                colour[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph.get(nxt, ()))))
    return None


def problems(graph: Graph) -> list[str]:
    """Unknown names and cycles, one line each (empty: the graph is fine)."""
    out: list[str] = []
    for name in sorted(graph):
        for dep in graph[name]:
            if dep == name:
                out.append(f"{name}.depends_on: a component cannot depend on itself")
            elif dep not in graph:
                out.append(f"{name}.depends_on: unknown component {dep!r}")
    cycle = find_cycle({k: [d for d in v if d != k and d in graph] for k, v in graph.items()})
    if cycle:
        out.append(f"dependency cycle: {' -> '.join(cycle)}")
    return out


def check(graph: Graph) -> None:
    found = problems(graph)
    if found:
        invalid(found)


def invalid(found: list[str]) -> NoReturn:
    """The 422 every surface reports (API envelope; the config file lists the same lines)."""
    raise ValidationFailed("invalid depends_on", details={"problems": found})


def ancestors(graph: Graph, name: str) -> list[str]:
    """Every component ``name`` needs, directly or transitively (nearest first)."""
    seen: list[str] = []
    frontier = list(graph.get(name, ()))
    while frontier:
        nxt: list[str] = []
        for dep in frontier:
            if dep != name and dep not in seen:
                seen.append(dep)
                nxt.extend(graph.get(dep, ()))
        frontier = nxt
    return seen


def reverse(graph: Graph) -> dict[str, list[str]]:
    """Edges pointing downstream: name -> the components that list it in depends_on."""
    children: dict[str, list[str]] = {}
    for node, deps in graph.items():
        for dep in deps:
            children.setdefault(dep, []).append(node)
    return {k: sorted(v) for k, v in children.items()}


def descendants(graph: Graph, name: str, *, children: Graph | None = None) -> list[str]:
    """Every component that needs ``name``, directly or transitively (nearest first). Pass
    ``children`` (``reverse(graph)``) when asking for many names."""
    return ancestors(children if children is not None else reverse(graph), name)


def roots(graph: Graph, name: str, unhealthy: set[str]) -> list[str]:
    """The unhealthy upstream components of ``name`` that have no unhealthy upstream of their own:
    the root causes its failure is attributed to (sorted; empty when every upstream is fine)."""
    return sorted(
        a
        for a in ancestors(graph, name)
        if a in unhealthy and not any(b in unhealthy for b in ancestors(graph, a))
    )

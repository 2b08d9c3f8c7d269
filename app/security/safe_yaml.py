"""YAML from files people hand the guard (the config file, recovery and channel files of the CLI, a
kubeconfig), loaded with bounds.

``yaml.safe_load`` builds nothing dangerous, but a few hundred bytes can still stop the process:
aliases that multiply (``b: [*a, *a, ...]``, the "billion laughs") expand to hundreds of millions
of values once anything walks the document (``${VAR}`` interpolation, validation); an alias inside
its own anchor (``a: &a [*a]``) is a cycle every walk recurses into; nesting a few thousand levels
deep exhausts the recursion of the composer itself. Each of these is a ``yaml.YAMLError`` here,
which every caller already reports as "not valid YAML", with the line it concerns.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, SequenceNode

# Far beyond any real configuration (a file of 5,000 components is about 200,000 values), far below
# what stops the process.
MAX_VALUES = 1_000_000
MAX_DEPTH = 64


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_expansion(root: Node, max_values: int = MAX_VALUES) -> None:
    """Refuse a composed document that aliases make larger than ``max_values`` values, or cyclic.

    Sizes are counted once per node (shared nodes are memoised) and without recursion."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > max_values:
                raise ComposerError(
                    None,
                    None,
                    f"the document expands to more than {max_values:,} values through aliases",
                    node.start_mark,
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise ComposerError(
                    None, None, "an alias refers to a node that contains it", child.start_mark
                )
            if id(child) not in sizes:
                stack.append((child, False))


class BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with a nesting limit and a bound on what aliases expand to."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        if node is not None:
            check_expansion(node)
        return node  # type: ignore[no-any-return]


def load_yaml(text: str | bytes) -> Any:
    """``yaml.safe_load`` within the bounds above; raises ``yaml.YAMLError`` beyond them."""
    return yaml.load(text, Loader=BoundedSafeLoader)  # noqa: S506 - a SafeLoader subclass

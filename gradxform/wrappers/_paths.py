"""Key paths as selectors see them: plain keys, ``a/b/0`` strings, one level of a node."""

from __future__ import annotations

from typing import Any

import jax

from .._checks import is_none
from .._typing import PyTree, TreeDef

MAX_LISTED = 10  # paths listed in an error message


def key_value(entry: Any) -> Any:
    """The plain value of a key-path entry: dict key, attribute name or sequence index."""
    if isinstance(entry, jax.tree_util.DictKey):
        return entry.key
    if isinstance(entry, jax.tree_util.GetAttrKey):
        return entry.name
    if isinstance(entry, jax.tree_util.SequenceKey):
        return entry.idx
    if isinstance(entry, jax.tree_util.FlattenedIndexKey):
        return entry.key
    return str(entry)


def path_str(path: tuple) -> str:
    """``encoder/layers/0/w`` from a tuple of plain keys; ``<root>`` for the empty path."""
    return "/".join(str(k) for k in path) if path else "<root>"


def list_paths(paths: list[str]) -> str:
    shown = ", ".join(paths[:MAX_LISTED])
    more = len(paths) - MAX_LISTED
    return shown + (f", ... ({more} more)" if more > 0 else "")


def flatten(tree: PyTree) -> tuple[list[tuple[tuple, Any]], TreeDef]:
    """(plain-key path, leaf) pairs with ``None`` as a leaf, and the treedef."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)
    return [(tuple(key_value(e) for e in p), x) for p, x in pairs], treedef


def is_tree_leaf(x: Any) -> bool:
    # An empty container ({}, [], ()) is a node with no leaves, not a leaf: as a selector
    # subtree it must match an empty params subtree, not label everything below it.
    treedef: TreeDef = jax.tree_util.tree_structure(x)
    return treedef.num_nodes == 1 and treedef.num_leaves == 1


def children(x: Any) -> list[tuple[Any, Any]]:
    """One level of a pytree node: (plain key, child) pairs."""
    pairs = jax.tree_util.tree_flatten_with_path(x, is_leaf=lambda y: y is not x)[0]
    return [(key_value(p[0]), c) for p, c in pairs]

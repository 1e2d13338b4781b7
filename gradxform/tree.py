"""Tree helpers used around optimizers: norms, arithmetic and inner products on pytrees.

``None`` leaves are skipped everywhere, as in the transforms.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .base import (
    _check_param_dtypes,
    _is_none,
    check_tree_structure,
    compute_dtype,
    is_param,
    wider_dtype,
)

PyTree = Any

__all__ = [
    "global_norm",
    "tree_add",
    "tree_sub",
    "tree_scale",
    "tree_vdot",
    "tree_zeros_like",
    "tree_sum",
    "check_tree_structure",
]


def _leaves(tree: PyTree) -> list:
    """The array leaves as arrays (Python floats included); integer arrays are an error."""
    _check_param_dtypes(tree, "tree")
    return [jnp.asarray(x) for x in jax.tree_util.tree_leaves(tree) if is_param(x)]


def global_norm(tree: PyTree) -> jax.Array:
    """sqrt(sum over leaves of sum |x|^2), accumulated in at least float32.

    Complex leaves contribute |x|^2 = x * conj(x). Returns 0 for a tree without arrays.
    """
    leaves = _leaves(tree)
    if not leaves:
        return jnp.zeros([], jnp.float32)
    dt = wider_dtype(*[jnp.finfo(compute_dtype(x)).dtype for x in leaves])
    total = sum(jnp.sum(jnp.abs(x.astype(compute_dtype(x))) ** 2).astype(dt) for x in leaves)
    return jnp.sqrt(total)


def _map2(fn, a: PyTree, b: PyTree, names: tuple[str, str]) -> PyTree:
    check_tree_structure(a, b, names=names)
    # Integer arrays are refused (as by global_norm): passed through, a + b returned a.
    _check_param_dtypes(a, names[0])
    _check_param_dtypes(b, names[1])
    # Leaves that are not parameters (strings, ints, ...) on both sides pass through.
    return jax.tree_util.tree_map(
        lambda x, y: fn(x, y) if is_param(x) or is_param(y) else x, a, b, is_leaf=_is_none
    )


def tree_add(a: PyTree, b: PyTree) -> PyTree:
    """Leaf-wise a + b (trees must have the same structure)."""
    return _map2(jnp.add, a, b, ("a", "b"))


def tree_sub(a: PyTree, b: PyTree) -> PyTree:
    """Leaf-wise a - b (trees must have the same structure)."""
    return _map2(jnp.subtract, a, b, ("a", "b"))


def tree_scale(scalar: Any, tree: PyTree) -> PyTree:
    """Leaf-wise scalar * x, keeping each leaf's dtype; non-parameter leaves pass through.

    Integer arrays, and a complex scalar on real leaves (its imaginary part would be
    dropped), are a TypeError."""
    _check_param_dtypes(tree, "tree")
    scalar = jnp.asarray(scalar)
    if jnp.iscomplexobj(scalar) and any(
        not jnp.iscomplexobj(x) for x in jax.tree_util.tree_leaves(tree) if is_param(x)
    ):
        raise TypeError(
            f"tree_scale: complex scalar {scalar} on a tree with real leaves; keeping their "
            "dtype would drop its imaginary part"
        )
    return jax.tree_util.tree_map(
        lambda x: scalar.astype(jnp.result_type(x)) * x if is_param(x) else x, tree
    )


def tree_vdot(a: PyTree, b: PyTree) -> jax.Array:
    """sum over leaves of vdot(a, b) (conjugating a), accumulated in at least float32."""
    check_tree_structure(a, b, names=("a", "b"))
    _check_param_dtypes(a, "a")
    _check_param_dtypes(b, "b")
    pairs = []
    flat = jax.tree_util.tree_flatten_with_path(a, is_leaf=_is_none)[0]
    for (path, x), y in zip(flat, jax.tree_util.tree_leaves(b, is_leaf=_is_none)):
        if is_param(x) and is_param(y):
            pairs.append((jnp.asarray(x), jnp.asarray(y)))
        elif is_param(x) or is_param(y):
            raise TypeError(
                f"tree_vdot: leaf at {jax.tree_util.keystr(path)} is an array in one tree "
                f"only: a has {type(x).__name__}, b has {type(y).__name__}"
            )
    if not pairs:
        return jnp.zeros([], jnp.float32)
    terms = []
    for x, y in pairs:
        dt = wider_dtype(compute_dtype(x), compute_dtype(y))
        terms.append(jnp.vdot(x.astype(dt), y.astype(dt)))
    dt = wider_dtype(*[t.dtype for t in terms])
    return sum(t.astype(dt) for t in terms)


def tree_sum(tree: PyTree) -> jax.Array:
    """Sum of every element of every leaf, in at least float32."""
    leaves = _leaves(tree)
    if not leaves:
        return jnp.zeros([], jnp.float32)
    dt = wider_dtype(*[compute_dtype(x) for x in leaves])
    return sum(jnp.sum(x.astype(dt)) for x in leaves)


def tree_zeros_like(tree: PyTree, dtype: Any = None) -> PyTree:
    """Zeros shaped like each array or number leaf (``dtype`` overrides the leaf dtype);
    other leaves (strings, objects) pass through."""

    def zeros(x):
        if isinstance(x, (jax.Array, np.ndarray, np.generic, int, float, complex)):
            return jnp.zeros(jnp.shape(x), dtype or jnp.result_type(x))
        return x

    return jax.tree_util.tree_map(zeros, tree)

"""Tree helpers used around optimizers: norms, arithmetic and inner products on pytrees.

``None`` leaves are skipped everywhere, as in the transforms.
"""

from __future__ import annotations

import typing
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from ._checks import check_param_dtypes, check_tree_structure, is_none, is_param
from ._leafwise import cast, compute_dtype, scalar_like, wider_dtype
from ._typing import PyTree, Scalar

__all__ = [
    "global_norm",
    "tree_add",
    "tree_sub",
    "tree_scale",
    "tree_vdot",
    "tree_zeros_like",
    "tree_sum",
    "check_tree_structure",
    "incremental_update",
]


def _leaves(tree: PyTree) -> list:
    """The array leaves as arrays (Python floats included); integer arrays are an error."""
    check_param_dtypes(tree, "tree")
    return [jnp.asarray(x) for x in jax.tree_util.tree_leaves(tree) if is_param(x)]


def global_norm(tree: PyTree) -> jax.Array:
    """sqrt(sum over leaves of sum |x|^2), accumulated in at least float32.

    Complex leaves contribute |x|^2 = x * conj(x). Returns 0 for a tree without arrays.

    Args:
      tree: a pytree of float or complex arrays and numbers; ``None`` leaves are skipped,
        integer arrays are a ``TypeError``. No default.

    Example:
      >>> gx.global_norm({"a": jnp.array([3.0]), "b": jnp.array([[4.0]]), "c": None})
      Array(5., dtype=float32)
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
    check_param_dtypes(a, names[0])
    check_param_dtypes(b, names[1])
    # Leaves that are not parameters (strings, ints, ...) on both sides pass through.
    return jax.tree_util.tree_map(
        lambda x, y: fn(x, y) if is_param(x) or is_param(y) else x, a, b, is_leaf=is_none
    )


def tree_add(a: PyTree, b: PyTree) -> PyTree:
    """Leaf-wise a + b (trees must have the same structure).

    Args:
      a: a pytree of float or complex arrays. No default.
      b: a pytree of the same structure as ``a``. No default.

    Example:
      >>> gx.tree_add({"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([0.5, 0.5])})
      {'w': Array([1.5, 2.5], dtype=float32)}
    """
    return _map2(jnp.add, a, b, ("a", "b"))


def tree_sub(a: PyTree, b: PyTree) -> PyTree:
    """Leaf-wise a - b (trees must have the same structure).

    Args:
      a: a pytree of float or complex arrays. No default.
      b: a pytree of the same structure as ``a``, subtracted from it. No default.

    Example:
      >>> gx.tree_sub({"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([0.5, 0.5])})
      {'w': Array([0.5, 1.5], dtype=float32)}
    """
    return _map2(jnp.subtract, a, b, ("a", "b"))


def tree_scale(scalar: Scalar, tree: PyTree, *, name: str = "tree") -> PyTree:
    """Leaf-wise scalar * x, computed in at least float32 and returned in each leaf's dtype.

    The one scaling of a tree in the package: transforms scale their updates with it, so
    a bfloat16 update is multiplied in float32 and rounded once. ``None`` and leaves that
    are not parameters (strings, objects) pass through. Integer arrays, and a complex
    scalar on real leaves (its imaginary part would be dropped), are a ``TypeError``
    whose message calls the tree ``name``.

    Args:
      scalar: the factor, a number or a scalar array. No default.
      tree: a pytree of float or complex arrays (other leaves pass through). No default.
      name: keyword-only, how error messages call ``tree``. Default ``"tree"``.

    Example:
      >>> gx.tree_scale(2.0, {"w": jnp.ones(2), "step": None})
      {'step': None, 'w': Array([2., 2.], dtype=float32)}
      >>> gx.tree_scale(0.5, jnp.array([3.0], jnp.bfloat16))
      Array([1.5], dtype=bfloat16)
    """
    check_param_dtypes(tree, name)
    if jnp.iscomplexobj(scalar) and any(
        not jnp.iscomplexobj(x) for x in jax.tree_util.tree_leaves(tree) if is_param(x)
    ):
        raise TypeError(
            f"tree_scale: complex scalar {scalar} on {name} with real leaves; keeping their "
            "dtype would drop its imaginary part"
        )

    def scale(x):
        if not is_param(x):
            return x
        x = jnp.asarray(x)
        return cast(cast(x, compute_dtype(x)) * scalar_like(scalar, x), x.dtype)

    return jax.tree_util.tree_map(scale, tree)


def tree_vdot(a: PyTree, b: PyTree) -> jax.Array:
    """sum over leaves of vdot(a, b) (conjugating a), accumulated in at least float32.

    Args:
      a: a pytree of float or complex arrays (conjugated). No default.
      b: a pytree of the same structure as ``a``. No default.

    Example:
      >>> a = {"x": jnp.array([1.0, 2.0]), "y": jnp.array(3.0)}
      >>> gx.tree_vdot(a, a)
      Array(14., dtype=float32)
    """
    check_tree_structure(a, b, names=("a", "b"))
    check_param_dtypes(a, "a")
    check_param_dtypes(b, "b")
    pairs = []
    flat = jax.tree_util.tree_flatten_with_path(a, is_leaf=is_none)[0]
    for (path, x), y in zip(flat, jax.tree_util.tree_leaves(b, is_leaf=is_none)):
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
    # sum() starts from the int 0; `terms` is not empty, so the result is an array.
    return typing.cast(jax.Array, sum(t.astype(dt) for t in terms))


def tree_sum(tree: PyTree) -> jax.Array:
    """Sum of every element of every leaf, in at least float32.

    Args:
      tree: a pytree of float or complex arrays and numbers; ``None`` leaves are skipped,
        integer arrays are a ``TypeError``. No default.

    Example:
      >>> gx.tree_sum({"x": jnp.array([1.0, 2.0]), "y": jnp.ones((2, 2), jnp.bfloat16)})
      Array(7., dtype=float32)
    """
    leaves = _leaves(tree)
    if not leaves:
        return jnp.zeros([], jnp.float32)
    dt = wider_dtype(*[compute_dtype(x) for x in leaves])
    # sum() starts from the int 0; `leaves` is not empty, so the result is an array.
    return typing.cast(jax.Array, sum(jnp.sum(x.astype(dt)) for x in leaves))


def tree_zeros_like(tree: PyTree, dtype: DTypeLike | None = None) -> PyTree:
    """Zeros shaped like each array or number leaf (``dtype`` overrides the leaf dtype);
    other leaves (strings, objects) pass through.

    Args:
      tree: a pytree; its array and number leaves give zeros. No default.
      dtype: the dtype of every zeros leaf, or None to keep each leaf's. Default None.

    Example:
      >>> gx.tree_zeros_like({"w": jnp.ones(2), "name": "dense"})
      {'name': 'dense', 'w': Array([0., 0.], dtype=float32)}
      >>> gx.tree_zeros_like([jnp.ones(2), 3.0], jnp.bfloat16)
      [Array([0, 0], dtype=bfloat16), Array(0, dtype=bfloat16)]
    """

    def zeros(x):
        if isinstance(x, (jax.Array, np.ndarray, np.generic, int, float, complex)):
            return jnp.zeros(jnp.shape(x), dtype or jnp.result_type(x))
        return x

    return jax.tree_util.tree_map(zeros, tree)


def incremental_update(new: PyTree, old: PyTree, step_size: Scalar) -> PyTree:
    """Polyak averaging step: step_size * new + (1 - step_size) * old, leaf-wise.

    Optax's ``incremental_update`` (a target network or a hand-kept average of the
    params). Computed in at least float32 and returned in each ``old`` leaf's dtype;
    where either tree has ``None`` or a leaf that is not an array, ``new``'s leaf is
    returned.

    Args:
      new: the latest values, a pytree of float or complex arrays. No default.
      old: the running average, a pytree of the same structure. No default.
      step_size: the weight of ``new``, a number or a scalar array (usually in [0, 1]).
        No default.

    Example:
      >>> gx.incremental_update({"w": jnp.array([1.0])}, {"w": jnp.array([3.0])}, 0.25)
      {'w': Array([2.5], dtype=float32)}
    """
    check_tree_structure(new, old, names=("new", "old"), allow_none=True)
    check_param_dtypes(new, "new")
    check_param_dtypes(old, "old")

    def step(x, y):
        if not (is_param(x) and is_param(y)):
            return x
        x, y = jnp.asarray(x), jnp.asarray(y)
        old_dtype = y.dtype
        dt = wider_dtype(compute_dtype(x), compute_dtype(y))
        x, y = cast(x, dt), cast(y, dt)
        s = scalar_like(step_size, x)
        return cast(s * x + (1 - s) * y, old_dtype)

    return jax.tree_util.tree_map(step, new, old, is_leaf=is_none)


# --------------------------------------------------------------------------------------
# Reductions and selections the full-batch solvers use on (params-shaped) trees. Unlike
# the functions above they take the accumulation dtype explicitly (the solvers keep
# every scalar in one dtype) and skip leaves that are None in either tree.


def _pairs(a: Any, b: Any, names=("a", "b")) -> list[tuple[Any, Any]]:
    check_tree_structure(a, b, names=names, allow_none=True)
    la = jax.tree_util.tree_leaves(a, is_leaf=is_none)
    lb = jax.tree_util.tree_leaves(b, is_leaf=is_none)
    return [(x, y) for x, y in zip(la, lb) if is_param(x) and is_param(y)]


def vdot(a: Any, b: Any, dt: Any) -> jax.Array:
    """sum over leaves of <a, b> in dtype ``dt`` (leaves None in either tree are skipped)."""
    total = jnp.zeros([], dt)
    for x, y in _pairs(a, b):
        total = total + jnp.sum(jnp.asarray(x).astype(dt) * jnp.asarray(y).astype(dt))
    return total


def max_abs(tree: Any, dt: Any) -> jax.Array:
    """max_i |x_i| over all leaves (0 for a tree without arrays)."""
    out = jnp.zeros([], dt)
    for x in jax.tree_util.tree_leaves(tree):
        if is_param(x) and jnp.size(x):
            out = jnp.maximum(out, jnp.max(jnp.abs(jnp.asarray(x))).astype(dt))
    return out


def tree_where(cond: jax.Array, a: Any, b: Any) -> Any:
    """Leaf-wise ``where(cond, a, b)`` for a scalar ``cond`` (None leaves pass)."""
    return jax.tree_util.tree_map(
        lambda x, y: None if x is None else jnp.where(cond, x, y), a, b, is_leaf=is_none
    )


def tree_diff(a: Any, b: Any) -> Any:
    """a - b leaf-wise in the compute dtype (at least float32); None leaves pass."""
    return jax.tree_util.tree_map(
        lambda x, y: (
            None
            if y is None or not is_param(y)
            else (jnp.asarray(x).astype(compute_dtype(x)) - jnp.asarray(y).astype(compute_dtype(y)))
        ),
        a,
        b,
        is_leaf=is_none,
    )

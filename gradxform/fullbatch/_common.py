"""Helpers shared by the full-batch modules (linesearch, lbfgs, cg, minimize).

Scalars about a parameter tree (values, dot products, step sizes) live in
``real_dtype(params)``: the widest leaf compute dtype, at least float32. ``None`` leaves
and leaves that are not arrays are skipped, as everywhere in the package; gradients are
``None`` on them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np

from .._checks import check_tree_structure, is_none, is_param
from .._leafwise import compute_dtype, map_params, new_slot, slot_dtype, wider_dtype
from .._typing import TreeDef

__all__ = [
    "real_dtype",
    "value_and_grad",
    "clip_to_box",
]


def real_dtype(tree: Any) -> jnp.dtype:
    """dtype of scalars about a tree (values, dot products, steps): its widest leaf, >= f32."""
    dts = [compute_dtype(x) for x in jax.tree_util.tree_leaves(tree) if is_param(x)]
    return wider_dtype(jnp.float32, *dts)


def check_real(params: Any, owner: str) -> None:
    for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
        if is_param(x) and jnp.issubdtype(jnp.result_type(x), jnp.complexfloating):
            raise TypeError(
                f"{owner}: complex parameter at {jax.tree_util.keystr(path) or '<root>'}; "
                "line searches and full-batch methods support real parameters only"
            )


def grad_slots(params: Any) -> Any:
    """Zero gradient slots like params (at least float32)."""
    return map_params(lambda p: new_slot(p, slot_dtype(p)), params)


def cast_like(tree: Any, like: Any) -> Any:
    """``tree``'s leaves in ``like``'s dtypes (None where ``like`` has None)."""

    def cast(path, x, s):
        if s is None:
            return None
        if x is None:
            raise ValueError(
                f"a full-batch transform got None at {jax.tree_util.keystr(path)}, where the "
                "parameter is an array: L-BFGS, CG and line searches need every parameter's "
                "gradient; to leave some fixed, make them None in params or wrap the "
                "transform in gx.masked / gx.partition"
            )
        return jnp.asarray(x).astype(s.dtype)

    return jax.tree_util.tree_map_with_path(cast, tree, like, is_leaf=is_none)


def split_output(out: Any, owner: str) -> tuple[jax.Array, Any]:
    """``value_fn``'s output as (value, aux); aux is None for a plain scalar."""
    if isinstance(out, tuple):
        if len(out) != 2:
            raise TypeError(
                f"{owner}: value_fn returned a tuple of {len(out)} items; it must return a "
                "scalar or a (scalar, aux) pair"
            )
        value, aux = out
    else:
        value, aux = out, None
    value = jnp.asarray(value)
    if value.shape != () or not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(
            f"{owner}: value_fn must return a real scalar (or (scalar, aux)), got "
            f"{value.dtype}{list(value.shape)}"
        )
    return value, aux


def value_and_grad(fun: Any, params: Any, owner: str) -> tuple[jax.Array, Any, Any]:
    """(value, grad, aux) of ``fun`` at ``params``; grad is None on non-optimized leaves."""
    treedef: TreeDef
    leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=is_none)
    mask = [is_param(x) for x in leaves]

    def f(diff):
        full = [d if m else x for d, x, m in zip(diff, leaves, mask)]
        return split_output(fun(treedef.unflatten(full)), owner)

    diff = [x if m else None for x, m in zip(leaves, mask)]
    (value, aux), g = jax.value_and_grad(f, has_aux=True)(diff)
    return value, treedef.unflatten(g), aux


def aux_placeholder(fun: Any, params: Any, owner: str) -> Any:
    """Zeros shaped like ``fun``'s aux (None without aux), for a loop carry."""
    treedef: TreeDef
    leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=is_none)
    mask = [is_param(x) for x in leaves]

    def aux_of(diff):
        full = [d if m else x for d, x, m in zip(diff, leaves, mask)]
        return split_output(fun(treedef.unflatten(full)), owner)[1]

    out = jax.eval_shape(aux_of, [x if m else None for x, m in zip(leaves, mask)])
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), out)


def bound_leaves(bound: Any, params: Any, owner: str, name: str) -> list:
    """Per-leaf bounds (None: unbounded) from None, a scalar, or a tree like params."""
    n = len(jax.tree_util.tree_leaves(params, is_leaf=is_none))
    if bound is None:
        return [None] * n
    if not isinstance(bound, (dict, list, tuple)) and jnp.ndim(bound) == 0:
        return [bound] * n
    try:
        check_tree_structure(params, bound, names=("params", name), allow_none=True)
    except ValueError as e:
        msg = f"{owner}: {name} must be None, a scalar or a tree like params. {e}"
        raise ValueError(msg) from None
    return jax.tree_util.tree_leaves(bound, is_leaf=is_none)


def at_bound(x: jax.Array, bound: Any, compare: Any) -> jax.Array:
    """``compare(x, bound)`` element-wise (x <= lower, x >= upper); all False without one."""
    if bound is None:
        return jnp.zeros(x.shape, bool)
    return compare(x, jnp.asarray(bound).astype(x.dtype))


def clip_to_box(params: Any, lower: Any, upper: Any, owner: str = "clip_to_box") -> Any:
    """clip(params, lower, upper) leaf-wise, in each parameter's dtype."""
    if lower is None and upper is None:
        return params
    treedef: TreeDef
    leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=is_none)
    lo = bound_leaves(lower, params, owner, "lower")
    hi = bound_leaves(upper, params, owner, "upper")
    out = []
    for x, a, b in zip(leaves, lo, hi):
        if is_param(x):
            x = jnp.asarray(x)
            if a is not None:
                x = jnp.maximum(x, jnp.asarray(a).astype(x.dtype))
            if b is not None:
                x = jnp.minimum(x, jnp.asarray(b).astype(x.dtype))
        out.append(x)
    return treedef.unflatten(out)


def check_bounds(owner: str, lower: Any, upper: Any, params: Any = None) -> None:
    """Bounds are real numbers, not NaN, lower < inf, upper > -inf and lower <= upper,
    wherever concrete: scalars and arrays at construction, trees once ``params`` gives
    their structure (``minimize`` and the transforms' ``update`` pass it), where each
    bound must also broadcast to its parameter's shape. Traced bounds cannot be checked."""
    if lower is None and upper is None:
        return
    xs: list[Any]  # parameter leaves (None: no params given)
    if params is None:
        if any(isinstance(b, (dict, list, tuple)) for b in (lower, upper)):
            return
        paths, lows, highs, xs = [()], [lower], [upper], [None]
    else:
        pairs = jax.tree_util.tree_flatten_with_path(params, is_leaf=is_none)[0]
        paths, xs = [p for p, _ in pairs], [x for _, x in pairs]
        lows = bound_leaves(lower, params, owner, "lower")
        highs = bound_leaves(upper, params, owner, "upper")
    for path, a, b, x in zip(paths, lows, highs, xs):
        if isinstance(a, jax.core.Tracer) or isinstance(b, jax.core.Tracer):
            continue
        where = f" at {jax.tree_util.keystr(path)}" if path else ""
        for name, v, empty in (("lower", a, np.inf), ("upper", b, -np.inf)):
            if v is None:
                continue
            arr = np.asarray(v)
            if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
                raise TypeError(f"{owner}: {name} bound{where} must be real numbers, got {v!r}")
            if np.any(np.isnan(arr)):
                raise ValueError(f"{owner}: {name} bound{where} is NaN: {v!r}")
            if np.any(arr == empty):
                raise ValueError(f"{owner}: {name} bound{where} is {empty}: the box is empty")
            if is_param(x) and not _broadcasts_to(arr.shape, np.shape(x)):
                raise ValueError(
                    f"{owner}: {name} bound{where} has shape {arr.shape}, which does not "
                    f"broadcast to its parameter's {np.shape(x)}"
                )
        if a is not None and b is not None and np.any(np.asarray(a) > np.asarray(b)):
            raise ValueError(
                f"{owner}: lower must be <= upper{where}, got lower={a!r}, upper={b!r}"
            )


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    try:
        return np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def check_same_arrays(x_leaves: list, g_leaves: list, params: Any, owner: str) -> None:
    """The gradient has an array exactly where params has one (full-batch directions)."""
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(params, is_leaf=is_none)[0]]
    for path, x, g in zip(paths, x_leaves, g_leaves):
        if is_param(x) != is_param(g):
            raise ValueError(
                f"{owner}: updates (the gradient) must have an array exactly where params has "
                f"one; they differ at {jax.tree_util.keystr(path) or '<root>'}"
            )


def approx_tolerance(approx_rtol: Any, phi0: jax.Array, dt) -> jax.Array:
    """Absolute tolerance of the approximate decrease test: approx_rtol |f(x)|."""
    rtol = 100 * jnp.finfo(dt).eps if approx_rtol is None else approx_rtol
    return jnp.asarray(rtol, dt) * jnp.abs(phi0)


def approx_decrease(f_t, slope_t, phi0, slope0, c1, f_tol):
    """Approximate sufficient decrease (Hager & Zhang 2005): f within rounding of f(x) and
    the slope at the trial <= (2 c1 - 1) times the initial slope (both along the step).
    Off when the tolerance is 0 (approx_rtol=0, or f(x) = 0: no rounding to allow for)."""
    return (f_tol > 0) & (f_t <= phi0 + f_tol) & (slope_t <= (2 * c1 - 1) * slope0)


# Whether minimize is called inside a transformation (jit, vmap, grad, ...) of the
# caller's. jax.extend.core.find_top_trace (public, jax.extend) returns the current trace;
# outside every transformation it is the eval trace, whose type we record at import
# (gradxform is imported eagerly). This costs no op, which matters: minimize's wrapper
# is a visible part of a tiny solve. tests/test_fullbatch.py checks the detection.
_EAGER_TRACE = type(jax.extend.core.find_top_trace(()))


def tracing() -> bool:
    """True inside a JAX transformation of the caller's (jit, vmap, grad, ...)."""
    return type(jax.extend.core.find_top_trace(())) is not _EAGER_TRACE

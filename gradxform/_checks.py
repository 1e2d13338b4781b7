"""Checks shared by every transform: hyperparameters, integer options, transforms and trees.

Private machinery: every name here is used across the package, none is part of the
public API (``check_tree_structure`` is re-exported by ``gradxform``). Errors say what was
expected, what was received and where (the pytree key path). This module imports nothing
from the rest of the package; the leaf predicates (``is_none``, ``is_param``) live here
because every check needs them.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._typing import PyTree, TreeDef

# --------------------------------------------------------------------------------------
# Leaves: what is optimized


def is_none(x: Any) -> bool:
    return x is None


def is_param(x: Any) -> bool:
    """True for leaves that are optimized: inexact arrays (and Python floats/complex)."""
    if isinstance(x, (float, complex)):
        return True
    if isinstance(x, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct)):
        return jnp.issubdtype(x.dtype, jnp.inexact)
    return False


def is_int_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic)) and (
        jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.bool_)
    )


def leaf_path(tree: PyTree, j: int) -> str:
    """The key path of ``tree``'s j-th leaf (None counted as a leaf), for error messages."""
    path = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)[0][j][0]
    return jax.tree_util.keystr(path) or "<root>"


def check_param_dtypes(tree: PyTree, what: str) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)[0]:
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct)):
            if not jnp.issubdtype(leaf.dtype, jnp.inexact):
                raise TypeError(
                    f"{what} leaf at {jax.tree_util.keystr(path) or '<root>'} has dtype "
                    f"{leaf.dtype}; only floating or complex arrays can be optimized. Replace "
                    "it with None in the tree you optimize, or freeze it with a mask."
                )


# --------------------------------------------------------------------------------------
# Hyperparameters (construction time only)


def concrete_number(value: Any) -> float | None:
    """The value as a Python number, or None when it is traced or not a scalar number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (np.ndarray, np.generic, jax.Array)) and not isinstance(
        value, jax.core.Tracer
    ):
        dtype = np.asarray(value).dtype
        if np.ndim(value) == 0 and np.issubdtype(dtype, np.number) and dtype.kind != "c":
            return float(np.asarray(value))
    return None


def check_hparam(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    schedule: bool = False,
) -> None:
    """Raise ``ValueError`` if a hyperparameter is not a finite number in range.

    A value that must be nonzero (an open bound at 0: ``low=0, low_open=True``) must also
    be nonzero in float32, the narrowest dtype math runs in: at least float32's smallest
    normal number (XLA flushes subnormals to 0). Traced values pass (they cannot be
    checked in Python). Callables pass only when the hyperparameter accepts a schedule.
    """
    if isinstance(value, jax.core.Tracer):
        return
    if callable(value):
        if schedule:
            return
        raise TypeError(f"{owner}: {name} does not accept a schedule, got {value!r}")
    number = concrete_number(value)
    if number is None:
        kind = "a number or a schedule" if schedule else "a real number"
        raise TypeError(f"{owner}: {name} must be {kind}, got {value!r}")
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    bounds = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    bad = not math.isfinite(number)
    bad |= low is not None and (number <= low if low_open else number < low)
    bad |= high is not None and (number >= high if high_open else number > high)
    if bad:
        raise ValueError(f"{owner}: {name} must be a finite number in {bounds}, got {value!r}")
    # Math runs in at least float32, where a larger magnitude is inf (lr=1e50: -inf and
    # NaN updates, silently).
    if abs(number) > _F32_MAX:
        raise ValueError(
            f"{owner}: {name} must be at most {_F32_MAX:.8g} in magnitude, float32's largest "
            f"number (math runs in at least float32, where a larger value is inf), "
            f"got {value!r}"
        )
    # An open bound at 0 means the value must stay nonzero (eps, a step size): math runs
    # in at least float32, where XLA flushes subnormals to 0, so a value below float32's
    # smallest normal number is 0 there (eps=1e-45: 0 / 0 = NaN on a zero gradient).
    if low_open and low == 0 and number < _F32_TINY:
        raise ValueError(
            f"{owner}: {name} must be at least {_F32_TINY:.8g}, float32's smallest normal "
            f"number (math runs in at least float32, where a smaller value is 0), "
            f"got {value!r}"
        )


_F32_TINY = float(np.finfo(np.float32).tiny)  # 1.1754944e-38
_F32_MAX = float(np.finfo(np.float32).max)  # 3.4028235e38


def check_int(owner: str, name: str, value: Any, *, low: int) -> None:
    """Raise unless ``value`` is an integer in [low, int32 max] (traced values pass):
    it is counted against an int32 step counter."""
    check_hparam(owner, name, value, low=low, high=np.iinfo(np.int32).max)
    number = concrete_number(value)
    if number is not None and not number.is_integer():
        raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")


def check_transform(owner: str, name: str, tx: Any) -> None:
    """Raise ``TypeError`` unless ``tx`` is a gradient transformation: any object with
    ``init`` and ``update`` (ours, or one written for Optax)."""
    if not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise TypeError(
            f"{owner}: {name} must be a gradient transformation (with .init and .update), "
            f"got {tx!r}"
        )


def is_active(hparam: Any) -> bool:
    """False only for a hyperparameter that is the number 0 (so its term can be left out)."""
    return callable(hparam) or concrete_number(hparam) != 0


def check_dtype_option(owner: str, name: str, value: Any) -> None:
    if value is None:
        return
    try:
        dt = jnp.dtype(value)
    except TypeError:
        dt = None
    # Real only: a slot's precision is given as a real dtype (a complex parameter's slot
    # is complex of that precision); a complex option was accepted and ignored.
    if dt is None or not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(
            f"{owner}: {name} must be None or a real floating dtype (jnp.float32, "
            f"jnp.bfloat16, ...), got {value!r}"
        )


# --------------------------------------------------------------------------------------
# Trees


def describe(x: Any) -> str:
    if x is None:
        return "None"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{type(x).__name__}[{x.dtype}{list(x.shape)}]"
    return f"{type(x).__name__}"


def check_tree_structure(
    expected: PyTree,
    received: PyTree,
    *,
    names: tuple[str, str] = ("expected", "received"),
    allow_none: bool = False,
) -> None:
    """Raise ``ValueError`` naming the first key path where two trees differ.

    ``None`` counts as a leaf, so ``{"a": None}`` and ``{"a": x}`` differ at ``['a']``,
    unless ``allow_none``: then ``None`` may stand opposite anything (the transforms use
    this, where a ``None`` update means "leave this parameter alone").

    Args:
      expected: the reference pytree. No default.
      received: the pytree checked against it. No default.
      names: keyword-only, how the message calls the two trees. Default
        ``("expected", "received")``.
      allow_none: keyword-only, let a ``None`` leaf stand opposite any leaf. Default False.

    Example:
      >>> gx.check_tree_structure({"a": jnp.ones(2)}, {"a": jnp.zeros(2)})  # same: None
      >>> gx.check_tree_structure({"a": None}, {"a": jnp.zeros(2)}, allow_none=True)
      >>> gx.check_tree_structure({"a": 1.0, "b": 2.0}, {"a": 1.0}, names=("params", "grads"))
      Traceback (most recent call last):
        ...
      ValueError: tree structures differ (params vs grads).
        first path in params but not in grads: ['b'] (1 such path(s))
        ...
    """
    ta: TreeDef = jax.tree_util.tree_structure(expected, is_leaf=is_none)
    tb: TreeDef = jax.tree_util.tree_structure(received, is_leaf=is_none)
    if ta == tb:
        if allow_none:
            return
        la, lb = ta.flatten_up_to(expected), tb.flatten_up_to(received)
        if all((x is None) == (y is None) for x, y in zip(la, lb)):
            return
    pa = jax.tree_util.tree_flatten_with_path(expected, is_leaf=is_none)[0]
    pb = jax.tree_util.tree_flatten_with_path(received, is_leaf=is_none)[0]
    da = {jax.tree_util.keystr(p): v for p, v in pa}
    db = {jax.tree_util.keystr(p): v for p, v in pb}
    missing = [k for k in da if k not in db]
    extra = [k for k in db if k not in da]
    both = [k for k in da if k in db and (da[k] is None) != (db[k] is None)]
    ea, eb = names
    lines = [f"tree structures differ ({ea} vs {eb})."]
    if missing:
        lines.append(
            f"  first path in {ea} but not in {eb}: {missing[0] or '<root>'}"
            f" ({len(missing)} such path(s))"
        )
    if extra:
        lines.append(
            f"  first path in {eb} but not in {ea}: {extra[0] or '<root>'}"
            f" ({len(extra)} such path(s))"
        )
    if both:
        k = both[0]
        lines.append(
            f"  first path that is None in one tree only: {k or '<root>'}: "
            f"{ea} {describe(da[k])}, {eb} {describe(db[k])}"
        )
    if not (missing or extra or both):
        lines.append("  same leaf paths but different node types")
    lines.append(f"  {ea}: {ta}")
    lines.append(f"  {eb}: {tb}")
    raise ValueError("\n".join(lines))


def raise_int_update(updates: PyTree, j: int, u: Any) -> None:
    raise TypeError(
        f"updates leaf at {leaf_path(updates, j)} has dtype {u.dtype}: "
        "updates must be floating or complex (gradients of such parameters); give None "
        "for a leaf that is not optimized"
    )


def raise_shape(tree: PyTree, j: int, u: Any, param: Any) -> None:
    raise ValueError(
        f"updates leaf at {leaf_path(tree, j)} has shape {tuple(jnp.shape(u))}, its "
        f"parameter {tuple(jnp.shape(param))}"
    )


def raise_missing_slot(updates: PyTree, j: int) -> None:
    raise ValueError(
        f"updates has an array at {leaf_path(updates, j)} but the state has no slot "
        "there, or params has None there: that parameter was None or not an array when "
        "the state was initialized (or is None now). Give None as its update, or re-run "
        "init with the new params."
    )


def need_params(owner: str, params: PyTree | None) -> None:
    """Raise a ``ValueError`` saying that ``owner`` needs ``params`` passed to ``update``."""
    if params is None:
        raise ValueError(
            f"{owner} needs the current parameters: call tx.update(grads, state, params)"
        )


def check_params(updates: PyTree, params: PyTree | None) -> None:
    """updates has params' structure and, where both are arrays, its shapes."""
    if params is not None:
        check_tree_structure(params, updates, names=("params", "updates"), allow_none=True)
        check_shapes(params, updates)


def check_shapes(params: PyTree, updates: PyTree) -> None:
    """A ``ValueError`` naming the first path where an update's shape is not its
    parameter's (JAX would broadcast it silently, changing the parameter's shape)."""
    xs = jax.tree_util.tree_leaves(params, is_leaf=is_none)
    us = jax.tree_util.tree_leaves(updates, is_leaf=is_none)
    for j, (x, u) in enumerate(zip(xs, us)):
        if hasattr(x, "shape") and hasattr(u, "shape") and x.shape != u.shape:
            raise_shape(params, j, u, x)
        if is_param(x) and u is not None and not is_param(u) and not is_int_array(u):
            # A string or object opposite an array parameter would pass every transform
            # and be dropped by apply_updates: the parameter would silently never train.
            raise TypeError(
                f"updates leaf at {leaf_path(params, j)} is {type(u).__name__} {u!r}, "
                "where the parameter is an array: give its gradient, or None to leave it"
            )


# --------------------------------------------------------------------------------------
# The protocol

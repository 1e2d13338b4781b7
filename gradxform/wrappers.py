"""Wrappers that decide *whether* a step happens: skip bad steps, steps on a predicate,
and projections of the resulting parameters.

- ``apply_if_finite(tx, max_consecutive_errors)``: a step whose incoming updates hold a
  NaN or an Inf is skipped: the emitted update is zero and ``tx``'s whole state (moments,
  counters, schedule steps) stays bit-for-bit what it was.
- ``conditionally_transform(tx, should_transform_fn)``: runs ``tx`` only at the steps
  where a predicate on the step count holds.
- ``project(fn)`` / ``keep_params_nonnegative()``: adjust updates so that
  ``params + updates == fn(params + updates)``.

The inner update runs inside ``lax.cond``: on a skipped step it is not computed at all
(under ``vmap`` with a batched predicate ``lax.cond`` becomes a select, as always).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .base import (
    GradientTransformation,
    _concrete_number,
    check_hparam,
    check_params,
    check_tree_structure,
    compute_dtype,
    empty_state,
    is_param,
    landing_dtypes,
    map_updates,
    need_params,
    safe_increment,
    static_field,
    zero_count,
    zeros_like_updates,
)

__all__ = [
    "apply_if_finite",
    "conditionally_transform",
    "project",
    "keep_params_nonnegative",
    "check_int",
    "as_int",
    "cond_update",
    "all_finite",
]


# --------------------------------------------------------------------------------------
# Helpers shared by the wrappers (accumulate, lookahead and plateau import them)


def check_int(owner: str, name: str, value: Any, *, low: int) -> None:
    """Raise unless ``value`` is an integer in [low, int32 max] (traced values pass):
    it is counted against an int32 step counter."""
    check_hparam(owner, name, value, low=low, high=np.iinfo(np.int32).max)
    number = _concrete_number(value)
    if number is not None and not number.is_integer():
        raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")


def as_int(value: Any) -> jax.Array:
    """An integer hyperparameter (Python int, integral float, array) as an int32 scalar."""
    return jnp.asarray(value).astype(jnp.int32)


def check_transform(owner: str, name: str, tx: Any) -> None:
    if not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise TypeError(
            f"{owner}: {name} must be a gradient transformation (with .init and .update), "
            f"got {tx!r}"
        )


def _is_dynamic(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic)) or is_param(x)


def cond_update(pred: Any, true_fn: Callable, false_fn: Callable) -> Any:
    """``lax.cond(pred, true_fn, false_fn)`` for nullary branches returning pytrees.

    Leaves that are not arrays (strings, Python ints: the "not optimized" leaves of an
    update tree) cannot cross ``lax.cond``; they are kept out of it and must be the same
    in both branches (they are: transforms pass them through unchanged). If the branches'
    array dtypes differ (a wrapped transform that emits float32 updates for bfloat16
    gradients, against zeros of the gradients' dtype), ``false_fn``'s arrays are cast to
    ``true_fn``'s.
    """
    record: dict[int, tuple] = {}
    dtypes: dict[int, list] = {}

    def wrap(fn: Callable, key: int, cast_to: list | None = None) -> Callable:
        def branch():
            leaves, treedef = jax.tree_util.tree_flatten(fn())
            mask = tuple(_is_dynamic(x) for x in leaves)
            record[key] = (treedef, mask, [None if m else x for x, m in zip(leaves, mask)])
            dynamic = [jnp.asarray(x) for x, m in zip(leaves, mask) if m]
            dtypes[key] = [x.dtype for x in dynamic]
            if cast_to is not None and len(cast_to) == len(dynamic):
                dynamic = [x.astype(dt) for x, dt in zip(dynamic, cast_to)]
            return dynamic

        return branch

    try:
        out = jax.lax.cond(pred, wrap(true_fn, 0), wrap(false_fn, 1))
    except TypeError:
        if len(dtypes) < 2 or dtypes[0] == dtypes[1]:
            raise
        out = jax.lax.cond(pred, wrap(true_fn, 0), wrap(false_fn, 1, cast_to=dtypes[0]))
    (treedef, mask, static), *other = (record[k] for k in sorted(record))
    if other and other[0][:2] != (treedef, mask):
        raise ValueError(
            "the two branches give differently structured (updates, state): the wrapped "
            f"transform changed its state's structure.\n  applied: {treedef}\n"
            f"  skipped: {other[0][0]}"
        )
    dynamic = iter(out)
    return treedef.unflatten([next(dynamic) if m else x for x, m in zip(static, mask)])


def all_finite(tree: Any) -> jax.Array:
    """Scalar bool: no NaN or Inf in any array leaf of ``tree`` (True for no leaves)."""
    flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree) if is_param(x)]
    return functools.reduce(jnp.logical_and, flags, jnp.asarray(True))


# --------------------------------------------------------------------------------------
# apply_if_finite


class ApplyIfFiniteState(NamedTuple):
    inner_state: Any  # the wrapped transform's state; unchanged on a skipped step
    consecutive_errors: jax.Array  # int32: non-finite updates in a row (0 after a finite one)
    total_errors: jax.Array  # int32: non-finite updates received in all
    last_finite: jax.Array  # bool: whether the latest updates were all finite

    def _metrics(self):
        return {"consecutive_errors": self.consecutive_errors, "total_errors": self.total_errors}


def _raise_limit(hit: Any, consecutive: Any, total: Any, limit: Any) -> None:
    if np.any(hit):
        raise FloatingPointError(
            f"apply_if_finite: {int(np.max(consecutive))} consecutive steps with NaN/Inf "
            f"updates, more than max_consecutive_errors={int(np.max(limit))} "
            f"({int(np.max(total))} non-finite steps in all)"
        )


class apply_if_finite(GradientTransformation):  # noqa: N801
    """Skips steps whose updates contain a NaN or an Inf.

    A step is an *error* when any incoming update element is NaN or +-Inf. On an error the
    emitted update is zero and ``inner``'s state is returned exactly as it was (its
    moments, counters and schedule steps do not move), so a run with one bad step ends
    bitwise where the same run without that step ends. Counters of consecutive and total
    errors are kept in the state (``ApplyIfFiniteState``).

    After more than ``max_consecutive_errors`` errors in a row, ``on_limit`` decides:

    - ``"apply"`` (default, optax's behaviour): the non-finite updates go through ``inner``
      (which will usually poison the state), until a finite step resets the count.
    - ``"raise"``: the step is still skipped, and a ``FloatingPointError`` is raised. Called
      eagerly (not traced), ``update`` raises it directly. Under ``jit`` it is raised by a
      ``jax.debug.callback`` placed inside a ``lax.cond`` branch (so it costs nothing on
      ordinary steps) and surfaces as ``jax.errors.JaxRuntimeError`` whose message holds
      the ``FloatingPointError`` text, when the jitted step executes (at the latest at
      ``block_until_ready``). No ``checkify`` is needed.

    Only the updates entering this wrapper are checked; wrap the whole optimizer,
    ``apply_if_finite(adam(...), 5)``, so that a NaN gradient never reaches the moments.
    """

    inner: GradientTransformation
    max_consecutive_errors: Any
    on_limit: str = static_field(default="apply")

    def __post_init__(self):
        check_transform("apply_if_finite", "inner", self.inner)
        check_int("apply_if_finite", "max_consecutive_errors", self.max_consecutive_errors, low=0)
        if self.on_limit not in ("apply", "raise"):
            raise ValueError(
                f"apply_if_finite: on_limit must be 'apply' or 'raise', got {self.on_limit!r}"
            )

    def init(self, params):
        return ApplyIfFiniteState(
            inner_state=self.inner.init(params),
            consecutive_errors=zero_count(),
            total_errors=zero_count(),
            last_finite=jnp.asarray(True),
        )

    def update(self, updates, state, params=None, **extra):
        finite = all_finite(updates)
        consecutive = jnp.where(finite, 0, safe_increment(state.consecutive_errors))
        total = jnp.where(finite, state.total_errors, safe_increment(state.total_errors))
        over = consecutive > as_int(self.max_consecutive_errors)
        if self.on_limit == "raise":
            limit = self.max_consecutive_errors
            if not isinstance(over, jax.core.Tracer):
                _raise_limit(over, consecutive, total, limit)
            else:
                jax.lax.cond(
                    over,
                    lambda: jax.debug.callback(_raise_limit, over, consecutive, total, limit),
                    lambda: None,
                )
            apply = finite
        else:
            apply = finite | over

        new_updates, inner_state = cond_update(
            apply,
            lambda: self.inner.update(updates, state.inner_state, params, **extra),
            lambda: (zeros_like_updates(updates), state.inner_state),
        )
        return new_updates, ApplyIfFiniteState(
            inner_state=inner_state,
            consecutive_errors=consecutive,
            total_errors=total,
            last_finite=finite,
        )


# --------------------------------------------------------------------------------------
# conditionally_transform


class ConditionallyTransformState(NamedTuple):
    count: jax.Array  # int32: updates received so far (the predicate's input)
    inner_state: Any  # the wrapped transform's state; unchanged on steps it does not run


class conditionally_transform(GradientTransformation):  # noqa: N801
    """Runs ``inner`` only at steps where ``should_transform_fn(count)`` is true.

    ``count`` is the number of updates this wrapper has received before (0 at the first
    call); the predicate must return a scalar bool (traceable: use ``jnp`` ops). On other
    steps ``inner`` is not computed (``lax.cond``), its state is unchanged, and the
    updates are passed through unchanged (``otherwise="identity"``, optax's
    ``conditionally_transform``) or replaced by zeros (``otherwise="zero"``, optax's
    ``conditionally_mask``). ``inner`` thus sees only the steps it runs on: its own
    counters and schedules advance once per applied step.

    Example: ``conditionally_transform(clip(1.0), lambda t: t < 100)`` clips during the
    first 100 steps only.
    """

    inner: GradientTransformation
    should_transform_fn: Callable
    otherwise: str = static_field(default="identity")

    def __post_init__(self):
        check_transform("conditionally_transform", "inner", self.inner)
        if not callable(self.should_transform_fn):
            raise TypeError(
                "conditionally_transform: should_transform_fn must be a callable count -> "
                f"bool, got {self.should_transform_fn!r}"
            )
        if self.otherwise not in ("identity", "zero"):
            raise ValueError(
                "conditionally_transform: otherwise must be 'identity' or 'zero', got "
                f"{self.otherwise!r}"
            )

    def init(self, params):
        return ConditionallyTransformState(count=zero_count(), inner_state=self.inner.init(params))

    def update(self, updates, state, params=None, **extra):
        pred = jnp.asarray(self.should_transform_fn(state.count))
        if pred.shape != ():
            raise ValueError(
                "conditionally_transform: should_transform_fn must return a scalar bool, "
                f"got shape {pred.shape}"
            )
        skipped = zeros_like_updates(updates) if self.otherwise == "zero" else updates
        new_updates, inner_state = cond_update(
            pred.astype(bool),
            lambda: self.inner.update(updates, state.inner_state, params, **extra),
            lambda: (skipped, state.inner_state),
        )
        return new_updates, ConditionallyTransformState(
            count=safe_increment(state.count), inner_state=inner_state
        )


# --------------------------------------------------------------------------------------
# Projections


def _projected_update(u: jax.Array, p: Any, target: Any) -> jax.Array:
    """The update taking p to ``target`` where target differs from p + u, else u itself.

    Unchanged elements keep their update bit for bit; a projected element gets
    target - p, so p + update == target up to one rounding (exactly, when target is 0).
    """
    dt, out_dt = landing_dtypes(u, p)
    pc = jnp.asarray(p).astype(dt)
    z = pc + u.astype(dt)
    t = jnp.asarray(target).astype(dt)
    return jnp.where(t == z, u.astype(dt), t - pc).astype(out_dt)


def _candidate(u: Any, p: Any) -> Any:
    if is_param(u) and is_param(p):
        dt = compute_dtype(u)
        return jnp.asarray(p).astype(dt) + u.astype(dt)
    return p


class project(GradientTransformation):  # noqa: N801
    """Projects the would-be parameters: updates u' such that p + u' == fn(p + u).

    ``fn`` maps a parameter tree to a parameter tree of the same structure and shapes
    (e.g. ``lambda t: jax.tree.map(lambda x: jnp.clip(x, 0, 1), t)``). Place it *last*
    in a chain. Elements that ``fn`` leaves unchanged keep their update exactly; changed
    ones get fn(p + u) - p, so ``apply_updates`` lands on fn(p + u) up to one rounding
    (exactly when the projected value is 0). Leaves whose update is ``None`` are frozen
    and not projected. ``fn`` is static structure (compared by identity).
    """

    fn: Callable

    def __post_init__(self):
        if not callable(self.fn):
            raise TypeError(f"project: fn must be a callable params -> params, got {self.fn!r}")

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        need_params("project", params)
        check_params(updates, params)
        candidate = jax.tree_util.tree_map(_candidate, updates, params, is_leaf=lambda x: x is None)
        target = self.fn(candidate)
        check_tree_structure(candidate, target, names=("params", "project's fn output"))
        for (path, c), t in zip(
            jax.tree_util.tree_flatten_with_path(candidate)[0], jax.tree_util.tree_leaves(target)
        ):
            if jnp.shape(c) != jnp.shape(t):
                raise ValueError(
                    f"project: fn changed the shape of the leaf at "
                    f"{jax.tree_util.keystr(path)} from {jnp.shape(c)} to {jnp.shape(t)}"
                )
        return map_updates(
            lambda u, p, t: (_projected_update(u, p, t), p, t),
            updates,
            params,
            target,
            n_out=3,
        )[0], state


class keep_params_nonnegative(GradientTransformation):  # noqa: N801
    """Keeps real parameters >= 0: where p + u < 0 the update becomes -p (so p -> 0).

    Elsewhere updates pass through unchanged. Needs ``params``; place it last in a
    chain. (Parameters are assumed >= 0 to begin with.) Complex parameters are an error.
    """

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        need_params("keep_params_nonnegative", params)
        check_params(updates, params)

        def f(u, p):
            if jnp.iscomplexobj(u) or jnp.iscomplexobj(p):
                raise TypeError("keep_params_nonnegative: complex parameters have no sign")
            dt, out_dt = landing_dtypes(u, p)
            pc = jnp.asarray(p).astype(dt)
            out = jnp.where(pc + u.astype(dt) < 0, -pc, u.astype(dt))
            return (out.astype(out_dt),)

        return map_updates(f, updates, params)[0], state

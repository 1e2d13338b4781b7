"""Wrappers that decide *whether* a step happens: skip bad steps, steps on a predicate.

- ``apply_if_finite(tx, max_consecutive_errors)``: a step whose incoming updates hold a
  NaN or an Inf is skipped: the emitted update is zero and ``tx``'s whole state (moments,
  counters, schedule steps) stays bit-for-bit what it was.
- ``conditionally_transform(tx, should_transform_fn)``: runs ``tx`` only at the steps
  where a predicate on the step count holds.

The inner update runs inside ``lax.cond``: on a skipped step it is not computed at all
(under ``vmap`` with a batched predicate ``lax.cond`` becomes a select, as always).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import KW_ONLY
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import (
    check_int,
    check_transform,
    is_param,
)
from .._leafwise import (
    as_int,
    safe_increment,
    zero_count,
    zeros_like_updates,
)
from .._module import static_field
from .._typing import OptState
from ..base import GradientTransformation

__all__ = [
    "apply_if_finite",
    "conditionally_transform",
    "cond_update",
    "all_finite",
]


# --------------------------------------------------------------------------------------
# lax.cond over update trees (accumulate and lookahead use it too)


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
    inner_state: OptState  # the wrapped transform's state; unchanged on a skipped step
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


class apply_if_finite(GradientTransformation):
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

    Args:
      inner: the wrapped transform.
      max_consecutive_errors: an integer >= 0, the errors in a row tolerated before
        ``on_limit`` applies. No default.
      on_limit: ``"apply"`` or ``"raise"`` (see above). Default ``"apply"`` (Optax).

    Example:
      >>> tx = gx.apply_if_finite(gx.sgd(learning_rate=0.5), max_consecutive_errors=3)
      >>> params = jnp.array([1.0, 2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([1.0, jnp.nan]), state, params)
      >>> updates, int(state.total_errors)
      (Array([0., 0.], dtype=float32), 1)
      >>> updates, state = tx.update(jnp.array([1.0, 1.0]), state, params)
      >>> updates, int(state.consecutive_errors)
      (Array([-0.5, -0.5], dtype=float32), 0)
    """

    inner: GradientTransformation
    max_consecutive_errors: int
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
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    # int32: updates received so far (the predicate's input)
    count: jax.Array  # type: ignore[assignment]
    inner_state: OptState  # the wrapped transform's state; unchanged on steps it does not run


class conditionally_transform(GradientTransformation):
    """Runs ``inner`` only at steps where ``should_transform_fn(count)`` is true.

    ``count`` is the number of updates this wrapper has received before (0 at the first
    call); the predicate must return a scalar bool (traceable: use ``jnp`` ops). On other
    steps ``inner`` is not computed (``lax.cond``), its state is unchanged, and the
    updates are passed through unchanged (``otherwise="identity"``, optax's
    ``conditionally_transform``) or replaced by zeros (``otherwise="zero"``, optax's
    ``conditionally_mask``). ``inner`` thus sees only the steps it runs on: its own
    counters and schedules advance once per applied step. ``otherwise`` is keyword-only
    (Optax's third positional argument is ``forward_extra_args``).

    Args:
      inner: the wrapped transform.
      should_transform_fn: a callable count -> scalar bool (static: compared by
        identity). No default.
      otherwise: what skipped steps emit: ``"identity"`` (the incoming updates) or
        ``"zero"``. Default ``"identity"``.

    Example:
      >>> tx = gx.conditionally_transform(gx.clip(1.0), lambda t: t < 1)  # first step
      >>> state = tx.init(jnp.zeros(2))
      >>> updates, state = tx.update(jnp.array([3.0, -0.5]), state)
      >>> updates
      Array([ 1. , -0.5], dtype=float32)
      >>> updates, state = tx.update(jnp.array([3.0, -0.5]), state)
      >>> updates
      Array([ 3. , -0.5], dtype=float32)
    """

    inner: GradientTransformation
    should_transform_fn: Callable
    _: KW_ONLY
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

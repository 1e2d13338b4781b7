"""Wrappers that decide *whether* a step happens: skip bad steps, steps on a predicate.

- ``apply_if_finite(tx, max_consecutive_errors)``: a step whose incoming updates hold a
  NaN or an Inf is skipped: the emitted update is zero and ``tx``'s whole state (moments,
  counters, schedule steps) stays bit-for-bit what it was.
- ``skip_large_updates(tx, max_squared_norm)``: a step whose incoming updates have a
  global squared norm >= ``max_squared_norm`` (or NaN) is skipped the same way.
- ``conditionally_transform(tx, should_transform_fn)``: runs ``tx`` only at the steps
  where a predicate on the step count holds.

The inner update runs inside ``lax.cond``: on a skipped step it is not computed at all
(under ``vmap`` with a batched predicate ``lax.cond`` becomes a select, as always). The
skips (these two, and ``dynamic_loss_scale``'s) go through one function, ``step_or_skip``.
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
    check_hparam,
    check_int,
    check_transform,
    is_param,
)
from .._leafwise import (
    abs2,
    as_int,
    compute_dtype,
    safe_increment,
    wider_dtype,
    zero_count,
    zeros_like_updates,
)
from .._module import static_field
from .._typing import OptState, Scalar
from ..base import GradientTransformation

__all__ = [
    "apply_if_finite",
    "skip_large_updates",
    "conditionally_transform",
    "cond_update",
    "all_finite",
    "step_or_skip",
    "squared_norm",
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


def squared_norm(tree: Any) -> jax.Array:
    """sum over array leaves of sum |x|^2, in float32 (float64 if a leaf is): a scalar."""
    leaves = [jnp.asarray(x) for x in jax.tree_util.tree_leaves(tree) if is_param(x)]
    if not leaves:
        return jnp.zeros([], jnp.float32)
    dt = wider_dtype(jnp.float32, *[jnp.finfo(compute_dtype(x)).dtype for x in leaves])
    total = jnp.zeros([], dt)
    for x in leaves:
        total = total + jnp.sum(abs2(x.astype(compute_dtype(x)))).astype(dt)
    return total


def step_or_skip(
    apply: Any,
    inner: Any,
    updates: Any,
    inner_state: Any,
    params: Any,
    extra: dict,
    *,
    feed: Any = None,
) -> tuple[Any, Any]:
    """The one atomic skip: ``inner``'s step where ``apply`` holds, else a skipped step.

    Returns ``(updates, inner_state)``: ``inner.update(feed, inner_state, params,
    **extra)`` when ``apply`` (a scalar bool) is true; zeros like ``updates`` and
    ``inner_state`` bit for bit unchanged when it is false (``inner`` is not computed:
    ``lax.cond``). ``feed`` (default: ``updates``) is what ``inner`` is given, for a wrapper
    that transforms the updates first (``dynamic_loss_scale`` unscales them).
    """
    feed = updates if feed is None else feed
    return cond_update(
        apply,
        lambda: inner.update(feed, inner_state, params, **extra),
        lambda: (zeros_like_updates(updates), inner_state),
    )


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

        new_updates, inner_state = step_or_skip(
            apply, self.inner, updates, state.inner_state, params, extra
        )
        return new_updates, ApplyIfFiniteState(
            inner_state=inner_state,
            consecutive_errors=consecutive,
            total_errors=total,
            last_finite=finite,
        )


# --------------------------------------------------------------------------------------
# skip_large_updates


class SkipLargeUpdatesState(NamedTuple):
    inner_state: OptState  # the wrapped transform's state; unchanged on a skipped step
    norm_squared: jax.Array  # float32 (float64 for float64 updates): ||u||^2 of the latest
    total_skipped: jax.Array  # int32: steps skipped in all

    def _metrics(self):
        return {"norm_squared": self.norm_squared, "total_skipped": self.total_skipped}


class skip_large_updates(GradientTransformation):
    """Skips steps whose incoming updates have a global squared norm >= a threshold.

    n2 = sum_i ||u_i||^2 over every leaf; the step is applied only when
    n2 < max_squared_norm (so a NaN norm skips too, as Optax's ``skip_large_updates``).
    A skipped step emits zeros and leaves ``inner``'s state bit for bit unchanged: the
    same skip as ``apply_if_finite`` (``step_or_skip``). The state keeps n2 of the latest
    updates and the count of skipped steps. Optax's ``skip_large_updates`` is a predicate
    for ``MultiSteps(should_skip_update_fn=...)``; this is a wrapper, usable anywhere.

    Args:
      inner: the wrapped transform.
      max_squared_norm: the threshold on the squared global norm, > 0. No default
        (Optax's has none).

    Example:
      >>> tx = gx.skip_large_updates(gx.sgd(learning_rate=0.5), max_squared_norm=10.0)
      >>> params = jnp.array([1.0, 2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([3.0, 4.0]), state, params)  # 25 >= 10
      >>> updates, int(state.total_skipped), state.norm_squared
      (Array([0., 0.], dtype=float32), 1, Array(25., dtype=float32))
      >>> updates, state = tx.update(jnp.array([1.0, 2.0]), state, params)  # 5 < 10
      >>> updates
      Array([-0.5, -1. ], dtype=float32)
    """

    inner: GradientTransformation
    max_squared_norm: Scalar

    def __post_init__(self):
        check_transform("skip_large_updates", "inner", self.inner)
        check_hparam(
            "skip_large_updates", "max_squared_norm", self.max_squared_norm, low=0, low_open=True
        )

    def init(self, params):
        return SkipLargeUpdatesState(
            inner_state=self.inner.init(params),
            norm_squared=jnp.zeros([], _norm_dtype(params)),
            total_skipped=zero_count(),
        )

    def update(self, updates, state, params=None, **extra):
        n2 = squared_norm(updates).astype(state.norm_squared.dtype)
        apply = n2 < jnp.asarray(self.max_squared_norm).astype(n2.dtype)
        new_updates, inner_state = step_or_skip(
            apply, self.inner, updates, state.inner_state, params, extra
        )
        total = jnp.where(apply, state.total_skipped, safe_increment(state.total_skipped))
        return new_updates, SkipLargeUpdatesState(
            inner_state=inner_state, norm_squared=n2, total_skipped=total
        )


def _norm_dtype(params: Any) -> jnp.dtype:
    """float32, or float64 when a parameter is (x64): the dtype ``squared_norm`` gives."""
    leaves = [x for x in jax.tree_util.tree_leaves(params) if is_param(x)]
    dts = [jnp.finfo(compute_dtype(x)).dtype for x in leaves]
    return wider_dtype(jnp.float32, *dts)


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

"""Gradient accumulation: one optimizer step every k micro-batches.

``accumulate(tx, every_k)`` sums the micro-batch updates in a single accumulator and
runs ``tx`` on the k-th call only, inside ``lax.cond``: on the other k - 1 calls ``tx``
is not computed at all, and the emitted update is zero. ``tx`` therefore sees one step
per optimizer step, so its counters and schedules count optimizer steps, not
micro-batches.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .._checks import check_int, check_transform
from .._leafwise import (
    as_int,
    compute_dtype,
    map_params,
    map_updates,
    new_slot,
    safe_increment,
    slot_dtype,
    wider_dtype,
    zero_count,
    zeros_like_updates,
)
from .._module import static_field
from .._typing import OptState, PyTree
from ..base import GradientTransformation
from .conditional import cond_update

__all__ = ["accumulate", "AccumulateState"]


class AccumulateState(NamedTuple):
    micro_step: jax.Array  # int32 in [0, every_k): micro-batches summed in `accumulator`
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    # int32: optimizer steps taken, i.e. times `inner` ran
    count: jax.Array  # type: ignore[assignment]
    accumulator: PyTree  # like params, accumulator_dtype: sum of this cycle's updates
    inner_state: OptState  # the wrapped transform's state; changes on optimizer steps only

    def _metrics(self):
        return {"micro_step": self.micro_step, "optimizer_step": self.count}


class accumulate(GradientTransformation):
    """Accumulates ``every_k`` micro-batch updates, then runs ``inner`` once on them.

    On calls 1 .. k-1 of a cycle: acc <- acc + u, emitted update 0, ``inner`` untouched.
    On call k: g = (acc + u) / k (``average=True``) or acc + u (``average=False``) is
    cast to the update dtype and fed to ``inner``, whose output is emitted; acc <- 0.
    A leaf whose update is None on call k is not stepped and keeps its sum for the next
    optimizer step (nothing accumulated is dropped).

    With ``average=True`` and micro-batch gradients of a *mean* loss, k micro-batches of
    size b give the gradient of the mean loss over the k*b examples, so the run equals
    ``inner`` on batches of k*b (up to float rounding). ``average=False`` is right for a
    *sum* loss.

    Memory: one accumulator like params, on top of ``inner``'s state.
    Put ``apply_if_finite`` *outside* (``apply_if_finite(accumulate(...), n)``) to drop
    single bad micro-batches; inside, a bad micro-batch skips the whole optimizer step.

    Args:
      inner: the optimizer (e.g. ``adam(schedule)``); ``params`` passed on the k-th call
        are the ones the micro-batch gradients were taken at (the zero updates before
        leave them unchanged). Extra keyword arguments (e.g. ``value``) reach ``inner``
        from the k-th call only.
      every_k: micro-batches per optimizer step, an integer >= 1. No default.
      average: divide the sum by ``every_k``. Default True.
      accumulator_dtype: storage dtype of the accumulator. Default None: the parameter
        dtype, at least float32 (so bfloat16 gradients are summed in float32).

    Example:
      >>> tx = gx.accumulate(gx.sgd(learning_rate=0.5), every_k=2)
      >>> params = jnp.array([1.0, 2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([1.0, 2.0]), state, params)
      >>> updates
      Array([0., 0.], dtype=float32)
      >>> updates, state = tx.update(jnp.array([3.0, 0.0]), state, params)
      >>> updates  # -lr * mean of the two gradients
      Array([-1. , -0.5], dtype=float32)
    """

    inner: GradientTransformation
    every_k: int
    average: bool = static_field(default=True)
    accumulator_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        check_transform("accumulate", "inner", self.inner)
        check_int("accumulate", "every_k", self.every_k, low=1)
        if not isinstance(self.average, bool):
            raise TypeError(f"accumulate: average must be a bool, got {self.average!r}")

    def init(self, params):
        return AccumulateState(
            micro_step=zero_count(),
            count=zero_count(),
            accumulator=map_params(
                lambda p: new_slot(p, slot_dtype(p, self.accumulator_dtype)), params
            ),
            inner_state=self.inner.init(params),
        )

    def update(self, updates, state, params=None, **extra):
        def add(u, acc):
            dt = wider_dtype(compute_dtype(u), acc.dtype)
            return u, (acc.astype(dt) + u.astype(dt)).astype(acc.dtype)

        # The second output: a leaf whose update is None keeps its slot, not the None.
        total = map_updates(add, updates, state.accumulator, n_out=2)[1]
        step_now = state.micro_step + 1 >= as_int(self.every_k)

        def mean(u, acc):
            g = acc.astype(wider_dtype(compute_dtype(u), acc.dtype))
            if self.average:
                g = g / jnp.asarray(self.every_k).astype(g.dtype)
            return (g.astype(u.dtype),)

        def optimizer_step():
            grads = map_updates(mean, updates, total)[0]
            out, inner_state = self.inner.update(grads, state.inner_state, params, **extra)
            # A leaf whose update is None now was not stepped: it keeps its sum.
            restart = map_updates(lambda u, acc: (u, jnp.zeros_like(acc)), updates, total, n_out=2)
            return out, inner_state, restart[1]

        def micro_step():
            return zeros_like_updates(updates), state.inner_state, total

        out, inner_state, accumulator = cond_update(step_now, optimizer_step, micro_step)
        return out, AccumulateState(
            micro_step=jnp.where(step_now, 0, state.micro_step + 1),
            count=jnp.where(step_now, safe_increment(state.count), state.count),
            accumulator=accumulator,
            inner_state=inner_state,
        )

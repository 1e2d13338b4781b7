"""``reduce_on_plateau``: a step-size factor that falls when a monitored value stops improving.

It multiplies the whole update by one scalar per step and keeps the state that decides
it; place it after the learning rate in a chain (``scale_by_schedule``, in ``scaling``,
is the factor that follows a fixed schedule instead).
"""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_hparam, check_int
from .._leafwise import scalar_dtype, zero_count
from .._typing import Scalar
from ..base import GradientTransformation
from ..tree import tree_scale

__all__ = ["reduce_on_plateau", "ReduceOnPlateauState"]


class ReduceOnPlateauState(NamedTuple):
    scale: jax.Array  # float scalar: the factor applied to updates (1 at start)
    best_value: jax.Array  # float scalar: lowest averaged value so far (+inf at start)
    plateau_count: jax.Array  # int32: evaluations since the last improvement (bad epochs)
    cooldown_count: jax.Array  # int32: evaluations of cooldown left after a reduction
    accumulated_value: jax.Array  # float scalar: sum of values in the current window
    accumulation_count: jax.Array  # int32: values in the current window

    def _metrics(self):
        return {"scale": self.scale, "best_value": self.best_value}


class reduce_on_plateau(GradientTransformation):
    """Scales updates by a factor cut by ``factor`` when the loss stops improving.

    torch ``ReduceLROnPlateau(mode="min")`` semantics, driven by ``value`` (the loss),
    passed to ``update(..., value=loss)`` (``chain`` forwards it). Values are averaged over
    windows of ``accumulation_size`` calls; each full window is one *evaluation*:

    1. improvement if  v < best - (rtol * |best| + atol)  (any finite v improves on the
       initial +inf); then best <- v, plateau_count <- 0, else plateau_count += 1.
       Using |best| makes the relative threshold right for negative losses too (torch's
       best * (1 - threshold) would count a *worse* negative value as an improvement).
    2. in cooldown (cooldown_count > 0): cooldown_count -= 1 and plateau_count <- 0.
    3. if plateau_count > patience: scale <- max(scale * factor, min_scale),
       cooldown_count <- cooldown, plateau_count <- 0.

    The updates of the call that completes a window are scaled by the scale *after* that
    evaluation, as in torch, where ``scheduler.step(loss)`` at params p changes the lr of
    the step taken from p. torch's ``eps`` (skip reductions smaller than 1e-8) is left
    out: a reduction can only be a no-op at ``min_scale``. NaN values never improve.
    ``min_scale`` and ``accumulation_size`` are keyword-only: Optax's
    (``optax.contrib.reduce_on_plateau``) sixth positional argument is
    ``accumulation_size``.

    Args:
      factor: multiplier of the scale at a reduction, in (0, 1). Default 0.1
        (torch ReduceLROnPlateau).
      patience: evaluations without improvement tolerated, an integer >= 0. Default 10
        (torch ReduceLROnPlateau).
      rtol: relative improvement threshold, >= 0. Default 1e-4 (torch's ``threshold``).
      atol: absolute improvement threshold, >= 0. Default 0.
      cooldown: evaluations after a reduction during which none is counted, an integer
        >= 0. Default 0 (torch ReduceLROnPlateau).
      min_scale: lower bound of the scale, in [0, 1]. Default 0 (torch's ``min_lr``).
      accumulation_size: calls averaged per evaluation, an integer >= 1. Default 1.

    Example:
      >>> tx = gx.reduce_on_plateau(factor=0.5, patience=0)
      >>> state = tx.init(jnp.zeros(1))
      >>> for loss in [1.0, 1.0, 0.5]:
      ...     updates, state = tx.update(jnp.array([1.0]), state, value=loss)
      ...     print(updates, state.scale)
      [1.] 1.0
      [0.5] 0.5
      [0.5] 0.5
    """

    factor: Scalar = 0.1
    patience: int = 10
    rtol: Scalar = 1e-4
    atol: Scalar = 0.0
    cooldown: int = 0
    _: KW_ONLY
    min_scale: Scalar = 0.0
    accumulation_size: int = 1

    def __post_init__(self):
        o = "reduce_on_plateau"
        check_hparam(o, "factor", self.factor, low=0, high=1, low_open=True, high_open=True)
        check_int(o, "patience", self.patience, low=0)
        check_hparam(o, "rtol", self.rtol, low=0)
        check_hparam(o, "atol", self.atol, low=0)
        check_int(o, "cooldown", self.cooldown, low=0)
        check_hparam(o, "min_scale", self.min_scale, low=0, high=1)
        check_int(o, "accumulation_size", self.accumulation_size, low=1)

    def init(self, params):
        dt = scalar_dtype()
        return ReduceOnPlateauState(
            scale=jnp.ones([], dt),
            best_value=jnp.full([], jnp.inf, dt),
            plateau_count=zero_count(),
            cooldown_count=zero_count(),
            accumulated_value=jnp.zeros([], dt),
            accumulation_count=zero_count(),
        )

    def update(self, updates, state, params=None, **extra):
        if extra.get("value") is None:
            raise ValueError(
                "reduce_on_plateau needs the loss: call update(updates, state, params, value=loss)"
            )
        value = jnp.asarray(extra["value"])
        if value.shape != ():
            raise ValueError(f"reduce_on_plateau: value must be a scalar, got shape {value.shape}")
        dt = state.scale.dtype
        i32 = jnp.int32

        def hp(x, dtype=dt):
            return jnp.asarray(x).astype(dtype)

        total = state.accumulated_value + value.astype(dt)
        n = state.accumulation_count + 1
        ready = n >= hp(self.accumulation_size, i32)
        v = total / n.astype(dt)

        best = state.best_value
        threshold = best - (hp(self.rtol) * jnp.abs(best) + hp(self.atol))
        better = jnp.where(jnp.isfinite(best), v < threshold, v < best)
        plateau = jnp.where(better, 0, state.plateau_count + 1)
        best = jnp.where(better, v, best)
        in_cooldown = state.cooldown_count > 0
        cooldown = jnp.where(in_cooldown, state.cooldown_count - 1, state.cooldown_count)
        plateau = jnp.where(in_cooldown, 0, plateau)
        reduce = plateau > hp(self.patience, i32)
        scale = jnp.where(
            reduce, jnp.maximum(state.scale * hp(self.factor), hp(self.min_scale)), state.scale
        )
        cooldown = jnp.where(reduce, hp(self.cooldown, i32), cooldown)
        plateau = jnp.where(reduce, 0, plateau)

        def pick(new, old):
            return jnp.where(ready, new, old)

        new_state = ReduceOnPlateauState(
            scale=pick(scale, state.scale),
            best_value=pick(best, state.best_value),
            plateau_count=pick(plateau, state.plateau_count),
            cooldown_count=pick(cooldown, state.cooldown_count),
            accumulated_value=pick(jnp.zeros([], dt), total),
            accumulation_count=pick(0, n),
        )
        return tree_scale(new_state.scale, updates, name="updates"), new_state

"""Lookahead (Zhang, Lucas, Hinton & Ba, 2019) without a special parameter type.

Lookahead keeps two copies of the weights: *fast* weights theta, updated by an inner
optimizer every step, and *slow* weights phi. Every ``sync_period`` steps

    phi <- phi + alpha (theta - phi),    theta <- phi.

Here the parameters the user holds (and passes to ``update`` / ``apply_updates``) are the
**fast** weights; the slow weights live in the state (``LookaheadState.slow_params``).
On an ordinary step the emitted update is the inner one (theta <- theta + u); on a sync
step it is phi_new - theta, so ``apply_updates`` moves the params straight onto the new
slow weights. Right after each sync step, params == slow weights (up to one rounding);
evaluate there, or use ``state.slow_params``, which is what the paper reports.
"""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .._checks import check_hparam, check_int, check_params, check_transform, need_params
from .._leafwise import (
    as_int,
    compute_dtype,
    map_params,
    map_updates,
    safe_increment,
    scalar_like,
    slot_dtype,
    wider_dtype,
    zero_count,
)
from .._module import static_field
from .._typing import OptState, Params, Scalar
from ..base import GradientTransformation

__all__ = ["lookahead", "LookaheadState"]


class LookaheadState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    # int32: fast steps taken; a sync happens when it reaches k, 2k, ...
    count: jax.Array  # type: ignore[assignment]
    slow_params: Params  # like params, slow_dtype: the slow weights phi (params at init)
    inner_state: OptState  # the fast optimizer's state (not reset at a sync)


class lookahead(GradientTransformation):
    """Lookahead around the fast optimizer ``inner``; the user's params are the fast weights.

    Step t (1-based): u = inner(g); theta' = theta + u. If t % sync_period == 0:
    phi <- phi + alpha (theta' - phi) and the emitted update is phi - theta (params become
    phi); otherwise the emitted update is u itself.

    Needs ``params``. The slow weights are initialized to the params given to ``init``.
    Unlike Optax's ``lookahead`` the params are the plain fast weights (no
    ``LookaheadParams``). ``slow_dtype`` is keyword-only (Optax's fourth positional
    argument is ``reset_state``).

    Args:
      inner: the fast optimizer (it sees the fast params).
      sync_period: k, an integer >= 1: fast steps per slow update. Default 5 (Zhang et
        al., 2019, who use 5 or 10).
      alpha: slow step size in (0, 1]; alpha = 1 is ``inner`` alone. Default 0.5 (Zhang
        et al., 2019, who use 0.5 or 0.8).
      slow_dtype: storage dtype of the slow weights. Default None: the parameter dtype,
        at least float32 (so bfloat16 parameters keep float32 slow weights).

    Example:
      >>> tx = gx.lookahead(gx.sgd(learning_rate=1.0), sync_period=2, alpha=0.5)
      >>> params = jnp.array([0.0])
      >>> state = tx.init(params)
      >>> for _ in range(2):
      ...     updates, state = tx.update(jnp.array([-1.0]), state, params)
      ...     params = gx.apply_updates(params, updates)
      ...     print(params, state.slow_params)
      [1.] [0.]
      [1.] [1.]
    """

    inner: GradientTransformation
    sync_period: int = 5
    alpha: Scalar = 0.5
    _: KW_ONLY
    slow_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        check_transform("lookahead", "inner", self.inner)
        check_int("lookahead", "sync_period", self.sync_period, low=1)
        check_hparam("lookahead", "alpha", self.alpha, low=0, high=1, low_open=True)

    def init(self, params):
        def slow_copy(p):
            if isinstance(p, jax.ShapeDtypeStruct):
                raise TypeError(
                    "lookahead.init: the slow weights start as a copy of params, so it needs "
                    "their values, got a ShapeDtypeStruct; for shapes only use "
                    "jax.eval_shape(tx.init, params)"
                )
            # An explicit copy (keeping p's sharding): with the same dtype a plain
            # conversion would share the parameter's buffer, and a jitted step donating
            # params and state would donate it twice.
            return jnp.array(p, slot_dtype(p, self.slow_dtype), copy=True)

        slow = map_params(slow_copy, params)
        return LookaheadState(
            count=zero_count(), slow_params=slow, inner_state=self.inner.init(params)
        )

    def update(self, updates, state, params=None, **extra):
        need_params("lookahead", params)
        check_params(updates, params)
        fast_updates, inner_state = self.inner.update(updates, state.inner_state, params, **extra)
        count = safe_increment(state.count)
        sync = count % as_int(self.sync_period) == 0

        def f(u, slow, p):
            dt = wider_dtype(compute_dtype(u), compute_dtype(p), slow.dtype)
            pc = jnp.asarray(p).astype(dt)
            fast = pc + u.astype(dt)
            s = slow.astype(dt)
            new_slow = s + scalar_like(self.alpha, s) * (fast - s)
            out = jnp.where(sync, (new_slow - pc).astype(u.dtype), u)
            return out, jnp.where(sync, new_slow, s).astype(slow.dtype), p

        out, slow, _ = map_updates(f, fast_updates, state.slow_params, params, n_out=3)
        return out, LookaheadState(count=count, slow_params=slow, inner_state=inner_state)

"""Dynamic loss scaling for float16 training (Micikevicius et al., 2018), as
``torch.amp.GradScaler``.

float16 gradients of a small loss underflow to 0 (float16's smallest subnormal is 6e-8).
Multiplying the loss by a large scale S before differentiating lifts them into range;
the optimizer must then see g / S. S is chosen on the fly: halved (``backoff_factor``)
whenever the scaled gradients overflow (an Inf or NaN, and that step is skipped), and
doubled (``growth_factor``) after ``growth_interval`` finite steps in a row.

    state = tx.init(params)
    grads = jax.grad(lambda p: loss(p) * gx.loss_scale(state))(params)
    updates, state = tx.update(grads, state, params)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_hparam, check_int, check_transform, is_none, is_param
from .._leafwise import as_int, cast, safe_increment, wider_dtype, zero_count
from .._typing import OptState, Scalar, TreeDef
from ..base import GradientTransformation
from .conditional import all_finite, step_or_skip

__all__ = ["dynamic_loss_scale", "DynamicLossScaleState", "loss_scale"]


class DynamicLossScaleState(NamedTuple):
    inner_state: OptState  # the wrapped optimizer's state; unchanged on a skipped step
    scale: jax.Array  # float32 scalar: the loss scale S for the next gradient
    growth_tracker: jax.Array  # int32: finite steps since S last changed (torch's name)
    total_skipped: jax.Array  # int32: steps skipped (non-finite scaled gradients) in all

    def _metrics(self):
        return {"loss_scale": self.scale, "total_skipped": self.total_skipped}


class dynamic_loss_scale(GradientTransformation):
    """Dynamic loss scaling around ``inner``, with ``torch.amp.GradScaler``'s rules.

    The incoming updates are the gradients of loss * S, S = ``gx.loss_scale(state)``.
    Each step: g = grads / S, formed in float32 (float64 for float64 grads: the division
    of a float16 gradient never underflows again). If every g is finite, ``inner`` gets g
    (float32) and steps, and after ``growth_interval`` such steps in a row
    S <- S * growth_factor (kept if finite in float32). Otherwise the step is skipped as
    by ``apply_if_finite`` (zero update, ``inner``'s state bit for bit unchanged; the same
    ``step_or_skip``) and S <- max(S * backoff_factor, min_scale). The emitted update has
    the incoming updates' dtype.

    Differences from torch's GradScaler: no ``scaler.scale``/``unscale_``/``step`` calls
    (the state is the scaler: multiply the loss by ``gx.loss_scale(state)``); the scale
    is floored at ``min_scale`` (jmp's ``min_loss_scale``; torch has no floor, so a run
    of NaN batches drives its scale to 0); S changes inside ``update``, as torch's
    ``scaler.update()`` right after ``scaler.step``.

    Args:
      inner: the optimizer fed the unscaled gradients.
      init_scale: S at the first step, > 0. Default 2.0**16 (torch.amp.GradScaler).
      growth_factor: > 1, S's factor after ``growth_interval`` finite steps. Default 2.0
        (torch.amp.GradScaler).
      backoff_factor: in (0, 1), S's factor on a non-finite step. Default 0.5
        (torch.amp.GradScaler).
      growth_interval: an integer >= 1, finite steps in a row before S grows. Default
        2000 (torch.amp.GradScaler).
      min_scale: > 0, the floor of S on backoff. Default 1.0 (jmp's DynamicLossScale;
        torch has none).

    Example:
      >>> def loss(p):  # true gradient 2**-25 * p: below float16's smallest subnormal
      ...     return jnp.sum(p.astype(jnp.float32) ** 2) * 2.0**-26
      >>> params = jnp.array([1.0, -1.0], jnp.float16)
      >>> jax.grad(loss)(params)  # underflows without scaling
      Array([ 0., -0.], dtype=float16)
      >>> tx = gx.dynamic_loss_scale(gx.sgd(learning_rate=2.0**20))
      >>> state = tx.init(params)
      >>> grads = jax.grad(lambda p: loss(p) * gx.loss_scale(state))(params)
      >>> grads  # 2**-25 * 2**16 * p
      Array([ 0.001953, -0.001953], dtype=float16)
      >>> updates, state = tx.update(grads, state, params)
      >>> updates  # -2**20 * 2**-25 * p
      Array([-0.03125,  0.03125], dtype=float16)
      >>> grads = jax.tree.map(lambda g: g * jnp.inf, grads)  # an overflow: skipped
      >>> updates, state = tx.update(grads, state, params)
      >>> updates, state.scale, int(state.total_skipped)
      (Array([0., 0.], dtype=float16), Array(32768., dtype=float32), 1)
    """

    inner: GradientTransformation
    init_scale: Scalar = 2.0**16
    growth_factor: Scalar = 2.0
    backoff_factor: Scalar = 0.5
    growth_interval: int = 2000
    min_scale: Scalar = 1.0

    def __post_init__(self):
        o = "dynamic_loss_scale"
        check_transform(o, "inner", self.inner)
        check_hparam(o, "init_scale", self.init_scale, low=0, low_open=True)
        check_hparam(o, "growth_factor", self.growth_factor, low=1, low_open=True)
        check_hparam(
            o, "backoff_factor", self.backoff_factor, low=0, high=1, low_open=True, high_open=True
        )
        check_int(o, "growth_interval", self.growth_interval, low=1)
        check_hparam(o, "min_scale", self.min_scale, low=0, low_open=True)

    def init(self, params):
        return DynamicLossScaleState(
            inner_state=self.inner.init(params),
            scale=jnp.asarray(self.init_scale, jnp.float32),
            growth_tracker=zero_count(),
            total_skipped=zero_count(),
        )

    def update(self, updates, state, params=None, **extra):
        scale = state.scale
        unscaled = _unscale(updates, scale)
        finite = all_finite(unscaled)
        new_updates, inner_state = step_or_skip(
            finite, self.inner, updates, state.inner_state, params, extra, feed=unscaled
        )
        new_updates = _like(new_updates, updates)
        f32 = jnp.float32
        tracker = jnp.where(finite, safe_increment(state.growth_tracker), 0)
        grow = tracker >= as_int(self.growth_interval)
        grown = scale * jnp.asarray(self.growth_factor).astype(f32)
        grown = jnp.where(grow & jnp.isfinite(grown), grown, scale)
        backed = jnp.maximum(
            scale * jnp.asarray(self.backoff_factor).astype(f32),
            jnp.asarray(self.min_scale).astype(f32),
        )
        return new_updates, DynamicLossScaleState(
            inner_state=inner_state,
            scale=jnp.where(finite, grown, backed),
            growth_tracker=jnp.where(grow, 0, tracker),
            total_skipped=jnp.where(
                finite, state.total_skipped, safe_increment(state.total_skipped)
            ),
        )


def _unscale(updates: Any, scale: jax.Array) -> Any:
    """Each array leaf / scale, in at least float32 (float16 / bfloat16 -> float32)."""

    def f(u):
        if not is_param(u):
            return u
        u = jnp.asarray(u)
        dt = wider_dtype(u.dtype, jnp.float32)
        return cast(u, dt) / cast(scale, jnp.finfo(dt).dtype)

    return jax.tree_util.tree_map(f, updates, is_leaf=is_none)


def _like(out: Any, updates: Any) -> Any:
    """``out``'s array leaves in the dtypes of ``updates``' leaves (rounded once)."""
    treedef: TreeDef
    o_leaves, treedef = jax.tree_util.tree_flatten(out, is_leaf=is_none)
    u_leaves = treedef.flatten_up_to(updates)
    return treedef.unflatten(
        [
            cast(jnp.asarray(o), jnp.asarray(u).dtype) if is_param(o) and is_param(u) else o
            for o, u in zip(o_leaves, u_leaves)
        ]
    )


def loss_scale(state: Any) -> jax.Array:
    """The loss scale S of the ``dynamic_loss_scale`` inside an optimizer state.

    Multiply the loss by it before differentiating. ``state`` may be the wrapper's own
    state or any state holding exactly one (a chain's, a nested wrapper's).

    Args:
      state: an optimizer state holding one ``DynamicLossScaleState``. No default.

    Example:
      >>> tx = gx.chain(gx.clip(1.0), gx.dynamic_loss_scale(gx.adam(1e-3)))
      >>> gx.loss_scale(tx.init(jnp.zeros(3, jnp.float16)))
      Array(65536., dtype=float32)
    """
    found = [
        s
        for s in jax.tree_util.tree_leaves(
            state, is_leaf=lambda x: isinstance(x, DynamicLossScaleState)
        )
        if isinstance(s, DynamicLossScaleState)
    ]
    if len(found) != 1:
        raise ValueError(
            f"loss_scale: the state must hold exactly one DynamicLossScaleState (the state "
            f"of gx.dynamic_loss_scale), found {len(found)}"
        )
    return found[0].scale

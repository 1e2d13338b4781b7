"""Clipping: by value, and by the global norm of the whole update tree."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._checks import check_hparam, check_param_dtypes
from ._leafwise import compute_dtype, map_updates
from ._typing import Scalar
from .base import GradientTransformation, empty_state
from .tree import global_norm, tree_scale

__all__ = ["clip", "clip_by_global_norm"]


class clip(GradientTransformation):
    """Clips every element to [-max_delta, max_delta]: u <- clip(u, -d, d).

    torch ``nn.utils.clip_grad_value_``. Complex elements are clipped in magnitude.

    Args:
      max_delta: the bound d >= 0, a number. No default.

    Example:
      >>> tx = gx.clip(1.0)
      >>> state = tx.init(jnp.zeros(3))
      >>> updates, state = tx.update(jnp.array([2.0, -3.0, 0.5]), state)
      >>> updates
      Array([ 1. , -1. ,  0.5], dtype=float32)
    """

    max_delta: Scalar

    def __post_init__(self):
        check_hparam("clip", "max_delta", self.max_delta, low=0)

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        def f(u):
            g = u.astype(compute_dtype(u))
            d = jnp.asarray(self.max_delta).astype(jnp.finfo(g.dtype).dtype)
            if jnp.iscomplexobj(g):
                mag = jnp.abs(g)
                # The real factor cast to g's dtype: strict promotion rejects complex * real.
                g = jnp.where(mag > d, g * (d / jnp.where(mag > 0, mag, 1)).astype(g.dtype), g)
            else:
                g = jnp.clip(g, -d, d)
            return (g.astype(u.dtype),)

        return map_updates(f, updates)[0], state


class ClipByGlobalNormState(NamedTuple):
    norm: jax.Array  # float32 scalar: global norm of the last incoming update
    clipped_norm: jax.Array  # float32 scalar: its norm after clipping

    def _metrics(self):
        return {"norm_before": self.norm, "norm_after": self.clipped_norm}


class clip_by_global_norm(GradientTransformation):
    """Rescales the whole tree when its global norm exceeds ``max_norm``.

    n = sqrt(sum_i ||u_i||^2);  u <- u * max_norm / n  if n > max_norm, else u.
    torch ``nn.utils.clip_grad_norm_`` up to its 1e-6 added to n (we add none, so a
    clipped update has norm exactly max_norm up to rounding). The norms before and after
    are kept in the state and reported by ``gx.metrics``.

    Args:
      max_norm: the largest global norm let through, > 0. No default.

    Example:
      >>> tx = gx.clip_by_global_norm(2.5)
      >>> grads = {"a": jnp.array([3.0]), "b": jnp.array([-4.0])}
      >>> state = tx.init(grads)
      >>> updates, state = tx.update(grads, state)  # norm 5: halved
      >>> updates
      {'a': Array([1.5], dtype=float32), 'b': Array([-2.], dtype=float32)}
      >>> state.norm, state.clipped_norm
      (Array(5., dtype=float32), Array(2.5, dtype=float32))
    """

    max_norm: Scalar

    def __post_init__(self):
        check_hparam("clip_by_global_norm", "max_norm", self.max_norm, low=0, low_open=True)

    def init(self, params):
        check_param_dtypes(params, "params")
        zero = jnp.zeros([], jnp.float32)
        return ClipByGlobalNormState(norm=zero, clipped_norm=zero)

    def update(self, updates, state, params=None, **extra):
        norm = global_norm(updates)
        # In the norm's dtype: an array max_norm of the other float width must not promote.
        max_norm = jnp.asarray(self.max_norm).astype(norm.dtype)
        clipped = norm > max_norm
        factor = jnp.where(clipped, max_norm / jnp.where(norm > 0, norm, 1), 1)
        after = jnp.where(clipped, max_norm, norm)
        new_state = ClipByGlobalNormState(
            norm=norm.astype(jnp.float32), clipped_norm=after.astype(jnp.float32)
        )
        return tree_scale(factor, updates, name="updates"), new_state

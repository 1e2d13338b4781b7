"""Clipping: by value, by the global norm of the whole update tree, unit-wise relative
to the parameters (adaptive gradient clipping), and NaN replacement."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._checks import check_hparam, check_param_dtypes, check_params, need_params
from ._leafwise import abs2, compute_dtype, map_params, map_updates, scalar_like, wider_dtype
from ._module import static_field
from ._typing import PyTree, Scalar
from .base import GradientTransformation, empty_state
from .tree import global_norm, tree_scale

__all__ = ["clip", "clip_by_global_norm", "adaptive_grad_clip", "zero_nans", "ZeroNansState"]


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


def _unitwise_norm(x: jax.Array, axis: Any) -> jax.Array:
    """Optax's ``unitwise_norm``: the L2 norm of each unit, broadcast to ``x``'s shape.

    A unit is the slice over ``axis``; by default over the whole array for scalars and
    vectors (any shape with at most one axis longer than 1), axis 0 for rank 2 and 3
    (dense kernels (in, out), multi-head (in, heads, out)), axes 0-2 for rank 4 (HWIO
    convolutions) and 0-3 for rank 5 (DHWIO).
    """
    if axis is not None:
        sq = jnp.sum(abs2(x), axis=axis, keepdims=True)
    elif jnp.squeeze(x).ndim <= 1:
        sq = jnp.sum(abs2(x), keepdims=True)
    elif x.ndim in (2, 3):
        sq = jnp.sum(abs2(x), axis=0, keepdims=True)
    elif x.ndim in (4, 5):
        sq = jnp.sum(abs2(x), axis=tuple(range(x.ndim - 1)), keepdims=True)
    else:
        raise ValueError(
            f"adaptive_grad_clip: no default unit for a parameter of shape {x.shape} (rank "
            f"{x.ndim}; defaults exist for ranks 0 to 5): give axis=, the axes a unit spans"
        )
    return jnp.broadcast_to(jnp.sqrt(sq), x.shape)


class adaptive_grad_clip(GradientTransformation):
    """Adaptive gradient clipping (AGC, Brock et al., 2021), unit-wise, as Optax.

    For each unit i (an output unit of a kernel, a whole vector; see ``axis``):
    m_i = clipping * max(||p_i||, eps);  u_i <- u_i                      if ||u_i|| < m_i,
                                         u_i * m_i / max(||u_i||, 1e-6)  otherwise.
    Units follow Optax's ``unitwise_norm``: the whole leaf for scalars and vectors, the
    norm over axis 0 for rank 2 and 3 (a dense kernel (in, out): one norm per output
    unit), over all axes but the last for rank 4 and 5 (convolution kernels HWIO,
    DHWIO). The same numbers as ``optax.adaptive_grad_clip`` (the 1e-6 is Optax's guard
    against division by zero). Needs ``params``.

    Args:
      clipping: the largest ratio ||u_i|| / ||p_i|| let through, > 0. Default 0.01
        (Brock et al., 2021, for large batches; Optax has no default).
      eps: > 0, the floor on ||p_i|| so zero-initialized parameters can move. Default
        1e-3 (Brock et al., 2021; Optax).
      axis: keyword-only, the axes a unit spans (an int or a tuple), for every leaf; or
        None for the per-rank defaults above. Default None.

    Example:
      >>> tx = gx.adaptive_grad_clip(0.1)
      >>> params = {"w": jnp.array([[3.0, 1.0], [4.0, 0.0]])}  # unit norms 5 and 1
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([[1.0, 0.05], [0.0, 0.0]])}, state, params)
      >>> updates["w"]  # unit 0: norm 1 > 0.5, scaled to 0.5; unit 1: 0.05 < 0.1, kept
      Array([[0.5 , 0.05],
             [0.  , 0.  ]], dtype=float32)
    """

    clipping: Scalar = 0.01
    eps: Scalar = 1e-3
    axis: int | tuple[int, ...] | None = static_field(default=None, kw_only=True)

    def __post_init__(self):
        check_hparam("adaptive_grad_clip", "clipping", self.clipping, low=0, low_open=True)
        check_hparam("adaptive_grad_clip", "eps", self.eps, low=0, low_open=True)
        ok = self.axis is None or isinstance(self.axis, int) and not isinstance(self.axis, bool)
        ok |= isinstance(self.axis, tuple) and all(
            isinstance(a, int) and not isinstance(a, bool) for a in self.axis
        )
        if not ok:
            raise TypeError(
                f"adaptive_grad_clip: axis must be None, an int or a tuple of ints, got "
                f"{self.axis!r}"
            )

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        need_params("adaptive_grad_clip", params)
        check_params(updates, params)

        def f(u, p):
            dt = wider_dtype(compute_dtype(u), compute_dtype(p))
            g = u.astype(dt)
            g_norm = _unitwise_norm(g, self.axis)
            p_norm = _unitwise_norm(jnp.asarray(p).astype(dt), self.axis)
            real = jnp.finfo(dt).dtype
            max_norm = scalar_like(self.clipping, g_norm) * jnp.maximum(
                p_norm, scalar_like(self.eps, p_norm)
            )
            factor = max_norm / jnp.maximum(g_norm, jnp.asarray(1e-6, real))
            out = jnp.where(g_norm < max_norm, g, g * factor.astype(dt))
            return out.astype(u.dtype), p

        return map_updates(f, updates, params, n_out=2)[0], state


class ZeroNansState(NamedTuple):
    # like params, a bool scalar per leaf (None for leaves not optimized): whether the
    # latest updates had a NaN in that leaf (Optax's ZeroNansState)
    found_nan: PyTree


class zero_nans(GradientTransformation):
    """Replaces NaN update elements by 0: u <- where(isnan(u), 0, u). Infs pass through.

    As Optax's ``zero_nans``: only NaN is replaced (an Inf is left for ``apply_if_finite``
    or ``clip`` to handle), and the state records, per leaf, whether the latest updates
    held a NaN (a complex element counts when either part is NaN). It does not make a
    step safe by itself: a zeroed NaN is a silently missing gradient component; prefer
    ``apply_if_finite`` to skip such steps whole.

    Example:
      >>> tx = gx.zero_nans()
      >>> params = {"a": jnp.zeros(3), "b": jnp.zeros(1)}
      >>> state = tx.init(params)
      >>> grads = {"a": jnp.array([1.0, jnp.nan, jnp.inf]), "b": jnp.array([2.0])}
      >>> updates, state = tx.update(grads, state)
      >>> updates["a"]
      Array([ 1.,  0., inf], dtype=float32)
      >>> state.found_nan
      {'a': Array(True, dtype=bool), 'b': Array(False, dtype=bool)}
    """

    def init(self, params):
        return ZeroNansState(found_nan=map_params(lambda p: jnp.asarray(False), params))

    def update(self, updates, state, params=None, **extra):
        def f(u, _):
            nan = jnp.isnan(u)
            return jnp.where(nan, jnp.zeros_like(u), u), jnp.any(nan)

        updates, found = map_updates(f, updates, state.found_nan, n_out=2)
        return updates, ZeroNansState(found_nan=found)

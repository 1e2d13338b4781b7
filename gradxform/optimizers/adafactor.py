"""Adafactor (Shazeer & Stern, 2018), exactly torch.optim.Adafactor (torch 2.5+).

Second moments of a leaf with ndim >= 2 are kept as a row factor (mean of |g|^2 over the
last dimension) and a column factor (over the second-to-last), leading dimensions
batched, as torch: O(n + m) memory for an n x m matrix instead of Adam's 2 n m. 0-D and
1-D leaves keep a full second moment.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_hparam, check_tree_structure, is_none, is_param, need_params
from .._leafwise import (
    abs2,
    compute_dtype,
    map_params,
    new_reduced_slot,
    new_slot,
    safe_increment,
    scalar_dtype,
    scalar_like,
    slot_dtype,
    zero_count,
)
from .._module import Module
from .._typing import PyTree, Scalar, ScalarOrSchedule, TreeDef
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate, scale_by_schedule
from ..weight_decay import maybe_weight_decay

__all__ = ["scale_by_adafactor", "adafactor"]


class ScaleByAdafactorState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: updates so far
    # Per optimized leaf with ndim >= 2: shape (..., n, 1), real compute dtype: EMA of
    # mean_j |g_ij|^2 (torch's row_var). None for 0-D and 1-D leaves.
    row_var: PyTree
    # Per optimized leaf with ndim >= 2: shape (..., 1, m): EMA of mean_i |g_ij|^2
    # (torch's col_var). None for 0-D and 1-D leaves.
    col_var: PyTree
    # Per optimized 0-D / 1-D leaf: like the leaf, real: EMA of |g|^2 (torch's
    # variance). None for factored leaves.
    variance: PyTree


def _factored(x: Any) -> bool:
    # A zero-size matrix keeps an (empty) unfactored moment: its factors would be means
    # over an empty axis, NaN.
    shape = tuple(getattr(x, "shape", ()))
    return len(shape) >= 2 and math.prod(shape) > 0


def _zeros(p: Any, shape: tuple, reduced: int) -> jax.Array:
    # A factor's shape is not the parameter's: sharded like it on the dims it keeps.
    return new_reduced_slot(p, shape, reduced, slot_dtype(p, real=True))


def _lerp(a: jax.Array, b: jax.Array, w: Any) -> jax.Array:
    """torch.lerp's two formulas (a + w (b - a) below w = 0.5, b - (b - a)(1 - w) from
    it): the first steps have w = t^beta2_decay >= 0.5, where they differ in the last bit."""
    return jnp.where(w < 0.5, a + w * (b - a), b - (b - a) * (1 - w))


def _rms(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean(abs2(x))) if x.size else jnp.zeros([], jnp.finfo(x.dtype).dtype)


class scale_by_adafactor(GradientTransformation):
    """Adafactor's normalized, clipped direction, torch.optim.Adafactor semantics.

    w_t = t^beta2_decay (torch's 1 - beta2_t). For a leaf with ndim >= 2 (last two dims
    n x m): R <- lerp(R, mean_j g^2, w_t), C <- lerp(C, mean_i g^2, w_t),
    V = R C / max(mean_i R, eps1); for 0-D / 1-D leaves V <- lerp(V, g^2, w_t).
    U = g / sqrt(max(V, eps1^2));  u = U / max(1, RMS(U) / d).
    ``param_scale_eps=eps2`` multiplies u by max(eps2, RMS(p)) (torch's alpha_t without
    rho_t; needs ``params``). RMS is over the whole leaf, as torch.

    Args:
      beta2_decay: tau <= 0; the second moment's weight of the new |g|^2 is t^tau.
        Default -0.8 (Shazeer & Stern, 2018; torch.optim.Adafactor).
      eps: eps1 >= 0, floor of the row-factor mean and of sqrt(V); None: the machine
        epsilon of the leaf's compute dtype (torch: of the parameter dtype, so a bfloat16
        parameter gets float32's here, bfloat16's there). Default None (torch).
      d: update clipping threshold >= 1 on RMS(U), or None: no clipping. Default 1.0
        (Shazeer & Stern, 2018; torch.optim.Adafactor).
      param_scale_eps: eps2 >= 0, or None: no parameter scale. Default None (the
        ``adafactor`` alias passes torch's 1e-3).

    Example:
      >>> tx = gx.scale_by_adafactor()
      >>> g = {"w": jnp.array([[3.0, 0.0], [0.0, 4.0]]), "b": jnp.array([2.0, -2.0])}
      >>> state = tx.init(g)
      >>> u, state = tx.update(g, state)
      >>> u["b"]  # g / |g| on the first step (w_1 = 1)
      Array([ 1., -1.], dtype=float32)
      >>> state.row_var["w"].shape, state.col_var["w"].shape, state.variance["w"]
      ((2, 1), (1, 2), None)
    """

    beta2_decay: Scalar = -0.8
    eps: Scalar | None = None
    d: Scalar | None = 1.0
    param_scale_eps: Scalar | None = None

    def __post_init__(self):
        check_hparam("scale_by_adafactor", "beta2_decay", self.beta2_decay, high=0)
        if self.eps is not None:
            check_hparam("scale_by_adafactor", "eps", self.eps, low=0)
        if self.d is not None:
            check_hparam("scale_by_adafactor", "d", self.d, low=1)
        if self.param_scale_eps is not None:
            check_hparam("scale_by_adafactor", "param_scale_eps", self.param_scale_eps, low=0)

    def init(self, params):
        def row(p):
            return _zeros(p, (*p.shape[:-1], 1), p.ndim - 1) if _factored(p) else None

        def col(p):
            return _zeros(p, (*p.shape[:-2], 1, p.shape[-1]), p.ndim - 2) if _factored(p) else None

        def var(p):
            return None if _factored(p) else new_slot(p, slot_dtype(p, real=True))

        return ScaleByAdafactorState(
            count=zero_count(),
            row_var=map_params(row, params),
            col_var=map_params(col, params),
            variance=map_params(var, params),
        )

    def update(self, updates, state, params=None, **extra):
        if self.param_scale_eps is not None:
            need_params("scale_by_adafactor", params)
        count = safe_increment(state.count)
        weight = count.astype(scalar_dtype()) ** self.beta2_decay

        def f(u, r_old, c_old, v_old, p):
            g = u.astype(compute_dtype(u))
            real = jnp.finfo(g.dtype).dtype
            g2 = abs2(g)
            eps1: Any = scalar_like(np.finfo(real).eps if self.eps is None else self.eps, g2)
            w = scalar_like(weight, g2)
            if _factored(g):
                r = _lerp(r_old.astype(real), jnp.mean(g2, axis=-1, keepdims=True), w)
                c = _lerp(c_old.astype(real), jnp.mean(g2, axis=-2, keepdims=True), w)
                v_hat = r * c / jnp.maximum(jnp.mean(r, axis=-2, keepdims=True), eps1)
                r, c, v = r.astype(r_old.dtype), c.astype(c_old.dtype), v_old
            else:
                v_hat = _lerp(v_old.astype(real), g2, w)
                r, c, v = r_old, c_old, v_hat.astype(v_old.dtype)
            out = g * jax.lax.rsqrt(jnp.maximum(v_hat, eps1 * eps1)).astype(g.dtype)
            if self.d is not None:
                d = scalar_like(self.d, g2)
                out = out / jnp.maximum(1, _rms(out) / d).astype(g.dtype)
            if self.param_scale_eps is not None:
                q = jnp.asarray(p).astype(g.dtype)
                eps2 = scalar_like(self.param_scale_eps, g2)
                out = out * jnp.maximum(eps2, _rms(q)).astype(g.dtype)
            return out.astype(u.dtype), r, c, v

        ps = params if params is not None else updates
        outs = _map_factored(f, updates, state.row_var, state.col_var, state.variance, ps)
        updates, row_var, col_var, variance = outs
        return updates, ScaleByAdafactorState(count, row_var, col_var, variance)


def _map_factored(fn, updates, row_var, col_var, variance, params):
    """``fn(u, row, col, var, p)`` on optimized leaves; others pass through with their
    slots. ``map_updates`` cannot be used: it wants every slot shaped like its update
    and none of them None, and here two of the three are None or factor-shaped."""
    for name, s in (("row_var", row_var), ("col_var", col_var), ("variance", variance)):
        check_tree_structure(updates, s, names=("updates", f"state.{name}"), allow_none=True)
    treedef: TreeDef
    leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
    rows, cols, vs, ps = (treedef.flatten_up_to(s) for s in (row_var, col_var, variance, params))
    outs: list[list[Any]] = [[], [], [], []]
    for u, r, c, v, p in zip(leaves, rows, cols, vs, ps):
        if isinstance(u, (float, complex)):
            u = jnp.asarray(u)
        if is_param(u):
            expected = (r is not None and c is not None) if _factored(u) else v is not None
            if not expected:
                raise ValueError(
                    f"scale_by_adafactor: no state slot for an update of shape {u.shape}: "
                    "init was called on other params"
                )
            res = fn(u, r, c, v, p)
        else:
            res = (u, r, c, v)
        for k in range(4):
            outs[k].append(res[k])
    return tuple(treedef.unflatten(o) for o in outs)


class _RelativeStep(Module):
    """min(1, 1 / (lr_t sqrt(t))): the factor that, times lr_t, is torch's
    rho_t = min(lr_t, 1 / sqrt(t)); t = count + 1, the 1-based step."""

    learning_rate: ScalarOrSchedule

    def __call__(self, count):
        lr = self.learning_rate(count) if callable(self.learning_rate) else self.learning_rate
        t = jnp.asarray(count).astype(scalar_dtype()) + 1
        lr = jnp.asarray(lr, scalar_dtype())
        # lr = 0 gives 1 / 0 = inf, so a factor 1 (the step is 0 anyway).
        return jnp.minimum(1.0, 1.0 / (lr * jnp.sqrt(t)))


def adafactor(
    learning_rate: ScalarOrSchedule = 1e-2,
    *,
    beta2_decay: Scalar = -0.8,
    eps: tuple[Scalar | None, Scalar] = (None, 1e-3),
    d: Scalar | None = 1.0,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
):
    """Adafactor, exactly torch.optim.Adafactor (Shazeer & Stern, 2018, with torch's lr).

    rho_t = min(lr_t, 1/sqrt(t));  alpha_t = max(eps2, RMS(p)) rho_t;
    p <- p - lr_t wd p - alpha_t u,  u from ``scale_by_adafactor(beta2_decay, eps1, d)``.
    = chain(scale_by_adafactor(..., param_scale_eps=eps2),
            scale_by_schedule(min(1, 1/(lr_t sqrt t))), add_decayed_weights(wd),
            scale_by_learning_rate(lr)).
    lr is the cap of the relative step and the decay's coefficient, as torch (the paper
    fixes the cap at 0.01 and has no decay). Arguments after ``learning_rate`` are
    keyword-only: Optax's ``adafactor(learning_rate, min_dim_size_to_factor,
    decay_rate, ...)`` is Shazeer & Stern's original with other meanings there.
    Complex parameters use |g|^2 (torch refuses them).

    Args:
      learning_rate: lr >= 0, a number or a schedule t -> lr. Default 1e-2
        (torch.optim.Adafactor; the paper's cap).
      beta2_decay: tau <= 0 of w_t = t^tau. Default -0.8 (torch.optim.Adafactor).
      eps: (eps1, eps2): eps1 >= 0 or None (the machine epsilon of the compute dtype,
        see ``scale_by_adafactor``), eps2 >= 0 the floor of RMS(p). Default (None, 1e-3)
        (torch.optim.Adafactor).
      d: clipping threshold >= 1 on RMS(U), or None: no clipping. Default 1.0
        (torch.optim.Adafactor).
      weight_decay: decoupled decay wd >= 0 (p <- p - lr_t wd p), a number or a
        schedule, or None: no term. Default None (torch.optim.Adafactor's 0).
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).

    Example:
      >>> tx = gx.adafactor(learning_rate=0.1)
      >>> params = {"w": jnp.ones((2, 3)), "b": jnp.array([2.0, -2.0])}
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.ones((2, 3)), "b": jnp.array([1.0, -4.0])}
      >>> updates, state = tx.update(grads, state, params)
      >>> updates["b"]  # -lr RMS(p) g / |g| on the first step
      Array([-0.2,  0.2], dtype=float32)
      >>> state.names
      ('scale_by_adafactor', 'scale_by_schedule', 'scale_by_learning_rate')
    """
    try:
        eps1, eps2 = eps
    except (TypeError, ValueError):
        raise TypeError(f"adafactor: eps must be a pair (eps1, eps2), got {eps!r}") from None
    check_hparam("adafactor", "learning_rate", learning_rate, low=0, schedule=True)
    return named_chain(
        "adafactor",
        scale_by_adafactor(beta2_decay, eps1, d, param_scale_eps=eps2),
        scale_by_schedule(_RelativeStep(learning_rate)),
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )

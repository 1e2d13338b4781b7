"""Adan (Xie et al., 2022): adaptive Nesterov momentum from gradient differences."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .._checks import check_hparam
from .._leafwise import (
    abs2,
    compute_dtype,
    map_params,
    map_updates,
    new_slot,
    safe_increment,
    scalar_dtype,
    scalar_like,
    slot_dtype,
    zero_count,
)
from .._module import static_field
from .._typing import PyTree, Scalar, ScalarOrSchedule
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay
from ._moments import bias_correction, check_betas

__all__ = ["scale_by_adan", "adan"]


class AdanState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar
    mu: PyTree  # like params, mu_dtype: m, EMA of g
    delta: PyTree  # like params, mu_dtype: d, EMA of g_t - g_{t-1}
    nu: PyTree  # like params, real nu_dtype: n, EMA of |g + b2 (g_t - g_{t-1})|^2
    prev_grad: PyTree  # like params, mu_dtype: the last gradient g_{t-1}


class scale_by_adan(GradientTransformation):
    """Adan direction, pytorch_optimizer 4.1.0 ``Adan`` (= the authors' adan-pytorch).

    With the betas as decay rates (the code's convention: b = 1 - the paper's beta) and
    g_0 = g_1 (no difference on the first step):
    m = b1 m + (1 - b1) g;  d = b2 d + (1 - b2)(g_t - g_{t-1});
    n = b3 n + (1 - b3) |g_t + b2 (g_t - g_{t-1})|^2;
    u = (m / (1 - b1^t) + b2 d / (1 - b2^t)) / (sqrt(n / (1 - b3^t) + eps_root) + eps).
    ``optax.scale_by_adan`` (0.2.8) weighs the difference by 1 - b2 instead of b2 in n and
    u, unlike the paper's Algorithm 1 (optax pull request 1715); both agree at b2 = 0.5.

    Args:
      b1: decay of the gradient EMA m, in [0, 1). Default 0.98 (Xie et al., 2022:
        beta_1 = 0.02).
      b2: decay of the gradient-difference EMA d, in [0, 1). Default 0.92 (Xie et al.,
        2022: beta_2 = 0.08).
      b3: decay of n, in [0, 1). Default 0.99 (Xie et al., 2022: beta_3 = 0.01).
      eps: > 0, added to the root in the denominator. Default 1e-8 (Xie et al., 2022).
      eps_root: >= 0, added inside the root. Default 0 (Optax; pytorch_optimizer has
        none).
      mu_dtype: storage dtype of m, d and the last gradient. Default None: the parameter
        dtype, at least float32.
      nu_dtype: storage dtype of n (real). Default None: the parameter dtype, at least
        float32.

    Example:
      >>> tx = gx.scale_by_adan(eps=1e-8)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([2.0, -1.0]), state)
      >>> u.round(4)  # the first step is sign(g): no difference yet
      Array([ 1., -1.], dtype=float32)
      >>> u, state = tx.update(jnp.array([3.0, -1.0]), state)
      >>> state.delta  # (1 - b2)(g_2 - g_1)
      Array([0.08, 0.  ], dtype=float32)
    """

    b1: Scalar = 0.98
    b2: Scalar = 0.92
    b3: Scalar = 0.99
    eps: Scalar = 1e-8
    eps_root: Scalar = 0.0
    mu_dtype: DTypeLike | None = static_field(default=None)
    nu_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        check_betas("scale_by_adan", self.b1, self.b2, self.eps)
        check_hparam("scale_by_adan", "b3", self.b3, low=0, high=1, high_open=True)
        check_hparam("scale_by_adan", "eps_root", self.eps_root, low=0)

    def init(self, params):
        def mu_slot(p):
            return new_slot(p, slot_dtype(p, self.mu_dtype))

        return AdanState(
            count=zero_count(),
            mu=map_params(mu_slot, params),
            delta=map_params(mu_slot, params),
            nu=map_params(lambda p: new_slot(p, slot_dtype(p, self.nu_dtype, real=True)), params),
            prev_grad=map_params(mu_slot, params),
        )

    def update(self, updates, state, params=None, **extra):
        first = state.count == 0
        count = safe_increment(state.count)
        t = count.astype(scalar_dtype())
        b1, b2, b3 = self.b1, self.b2, self.b3
        c1 = 1 / bias_correction(b1, t)
        c2 = 1 / bias_correction(b2, t)
        c3 = 1 / bias_correction(b3, t)

        def f(u, m_old, d_old, n_old, prev_old):
            g = u.astype(compute_dtype(u))
            diff = jnp.where(first, jnp.zeros_like(g), g - prev_old.astype(g.dtype))
            m = m_old.astype(g.dtype)
            m = m + scalar_like(1 - b1, g) * (g - m)  # torch's lerp
            d = d_old.astype(g.dtype)
            d = d + scalar_like(1 - b2, g) * (diff - d)
            q = abs2(g + scalar_like(b2, g) * diff)
            n = scalar_like(b3, q) * n_old.astype(q.dtype) + scalar_like(1 - b3, q) * q
            denom = jnp.sqrt(n * scalar_like(c3, q) + scalar_like(self.eps_root, q))
            denom = (denom + scalar_like(self.eps, q)).astype(g.dtype)
            out = (m * scalar_like(c1, g) + d * scalar_like(b2 * c2, g)) / denom
            return (
                out.astype(u.dtype),
                m.astype(m_old.dtype),
                d.astype(d_old.dtype),
                n.astype(n_old.dtype),
                g.astype(prev_old.dtype),
            )

        updates, mu, delta, nu, prev = map_updates(
            f, updates, state.mu, state.delta, state.nu, state.prev_grad, n_out=5
        )
        return updates, AdanState(count=count, mu=mu, delta=delta, nu=nu, prev_grad=prev)


def adan(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Scalar = 0.98,
    b2: Scalar = 0.92,
    b3: Scalar = 0.99,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
):
    """Adan (Xie et al., 2022), as pytorch_optimizer 4.1.0's ``Adan(weight_decouple=True)``.

    p <- p - lr_t (u [+ wd_t p]), u as ``scale_by_adan``.
    = chain(scale_by_adan(...), add_decayed_weights(wd), scale_by_learning_rate(lr)):
    decoupled decay, as Optax and pytorch_optimizer's ``weight_decouple=True``. The
    paper's (and pytorch_optimizer's default) proximal form p <- (p - lr u) / (1 + lr wd)
    differs from it by O((lr wd)^2) per step and is not offered. Arguments after
    ``eps_root`` are keyword-only (Optax's seventh positional argument is
    ``weight_decay``, whose default there is 0).

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-3
        (pytorch_optimizer; adan-pytorch).
      b1: decay of the gradient EMA, in [0, 1). Default 0.98 (Xie et al., 2022).
      b2: decay of the gradient-difference EMA, in [0, 1). Default 0.92 (Xie et al.,
        2022).
      b3: decay of the squared-gradient EMA, in [0, 1). Default 0.99 (Xie et al., 2022).
      eps: > 0, added to the root in the denominator. Default 1e-8 (Xie et al., 2022).
      eps_root: >= 0, added inside the root. Default 0 (Optax).
      weight_decay: decoupled decay coefficient wd >= 0, a number or a schedule, or None:
        no term. Default None (pytorch_optimizer's and Optax's 0).
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).

    Example:
      >>> tx = gx.adan(learning_rate=0.5)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([2.0, -1.0]), state, params)
      >>> updates.round(4)  # -lr sign(g) on the first step
      Array([-0.5,  0.5], dtype=float32)
    """
    return named_chain(
        "adan",
        scale_by_adan(b1, b2, b3, eps, eps_root),
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )

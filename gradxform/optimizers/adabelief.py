"""AdaBelief (Zhuang et al., 2020): Adam whose second moment is the variance of the
gradient around its running mean, the "belief" in the observed gradient."""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .._checks import check_hparam
from .._leafwise import (
    abs2,
    compute_dtype,
    map_updates,
    safe_increment,
    scalar_dtype,
    scalar_like,
    zero_count,
)
from .._module import static_field
from .._typing import PyTree, Scalar, ScalarOrSchedule
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay
from ._moments import bias_correction, check_betas, init_moments, store_moments

__all__ = ["scale_by_belief", "adabelief"]


class BeliefState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar
    mu: PyTree  # like params, mu_dtype: first moment m
    nu: PyTree  # like params, real nu_dtype: s, EMA of |g - m|^2 (+ eps_root each step)


class scale_by_belief(GradientTransformation):
    """AdaBelief direction, adabelief-pytorch 0.2.1 semantics (and Optax's).

    m = b1 m + (1 - b1) g;  s = b2 s + (1 - b2) |g - m|^2 + eps_root  (stored with it);
    u = (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + eps).
    ``rectify=True``: RAdam's rectification as adabelief-pytorch (its default): with
    rho_inf = 2 / (1 - b2) - 1, rho_t = rho_inf - 2 t b2^t / (1 - b2^t), if rho_t >= 5
    u = r_t sqrt(1 - b2^t) m / ((1 - b1^t)(sqrt(s) + eps)) (eps on the raw root),
    r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t));
    else u = m / (1 - b1^t) (its ``degenerated_to_sgd=True``).

    Args:
      b1: decay of the first moment, in [0, 1). Default 0.9 (Zhuang et al., 2020).
      b2: decay of the belief s, in [0, 1). Default 0.999 (Zhuang et al., 2020).
      eps: > 0, added to the root in the denominator. Default 1e-16 (adabelief-pytorch
        >= 0.1.0; Optax).
      eps_root: >= 0, added to s at every step (adabelief-pytorch adds its single eps
        there too). Default 1e-16 (adabelief-pytorch's eps; Optax).
      rectify: RAdam's rectified step, as adabelief-pytorch's ``rectify=True``. Default
        False (the paper's algorithm; Optax).
      mu_dtype: storage dtype of m. Default None: the parameter dtype, at least float32.
      nu_dtype: storage dtype of s (real). Default None: the parameter dtype, at least
        float32.

    Example:
      >>> tx = gx.scale_by_belief(eps=1e-8, eps_root=0.0)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([1.0, -2.0]), state)
      >>> state.nu  # (1 - b2) (g - (1 - b1) g)^2 = 0.001 (0.9 g)^2
      Array([0.00081, 0.00324], dtype=float32)
      >>> u.round(4)  # g / (0.9 |g|): the first step's |g - m| is 0.9 |g|
      Array([ 1.1111, -1.1111], dtype=float32)
    """

    b1: Scalar = 0.9
    b2: Scalar = 0.999
    eps: Scalar = 1e-16
    eps_root: Scalar = 1e-16
    _: KW_ONLY
    rectify: bool = static_field(default=False)
    mu_dtype: DTypeLike | None = static_field(default=None)
    nu_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        check_betas("scale_by_belief", self.b1, self.b2, self.eps)
        check_hparam("scale_by_belief", "eps_root", self.eps_root, low=0)

    def init(self, params):
        mu, nu = init_moments(params, self.mu_dtype, self.nu_dtype)
        return BeliefState(count=zero_count(), mu=mu, nu=nu)

    def update(self, updates, state, params=None, **extra):
        count = safe_increment(state.count)
        t = count.astype(scalar_dtype())
        b1, b2 = self.b1, self.b2
        bc2 = bias_correction(b2, t)
        c1 = 1 / bias_correction(b1, t)
        if self.rectify:
            b2s = b2 if isinstance(b2, (int, float)) else jnp.asarray(b2).astype(t.dtype)
            rho_inf = 2 / (1 - b2s) - 1
            rho_t = rho_inf - 2 * t * (1 - bc2) / bc2
            # adabelief-pytorch switches at rho_t >= 5 (torch.optim.RAdam at > 5).
            adaptive = rho_t >= 5
            r_sq = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            # sqrt of a negative on the SGD branch: guarded, that branch is discarded.
            step = jnp.sqrt(jnp.where(adaptive, r_sq * bc2, 1.0)) * c1

        def f(u, m_old, s_old):
            g = u.astype(compute_dtype(u))
            m = m_old.astype(g.dtype)
            m = scalar_like(b1, g) * m + scalar_like(1 - b1, g) * g
            r2 = abs2(g - m)
            s = s_old.astype(r2.dtype)
            s = scalar_like(b2, r2) * s + scalar_like(1 - b2, r2) * r2
            s = s + scalar_like(self.eps_root, r2)
            eps = scalar_like(self.eps, r2)
            if self.rectify:
                scaled = m * (scalar_like(step, r2) / (jnp.sqrt(s) + eps)).astype(g.dtype)
                out = jnp.where(adaptive, scaled, m * scalar_like(c1, g))
            else:
                denom = jnp.sqrt(s * scalar_like(1 / bc2, r2))
                out = m * scalar_like(c1, g) / (denom + eps).astype(g.dtype)
            return (out.astype(u.dtype), *store_moments(m, s, m_old, s_old))

        updates, mu, nu = map_updates(f, updates, state.mu, state.nu, n_out=3)
        return updates, BeliefState(count=count, mu=mu, nu=nu)


def adabelief(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-16,
    eps_root: Scalar = 1e-16,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
    decoupled_weight_decay: bool = True,
    rectify: bool = False,
):
    """AdaBelief (Zhuang et al., 2020), as adabelief-pytorch 0.2.1 and ``optax.adabelief``.

    p <- p - lr_t (m_hat / (sqrt(s_hat) + eps) [+ wd_t p]), s as ``scale_by_belief``.
    = chain(scale_by_belief(...), add_decayed_weights(wd), scale_by_learning_rate(lr))
    (decoupled decay, adabelief-pytorch's ``weight_decouple=True``), or with the decay
    before ``scale_by_belief`` (coupled L2, ``decoupled_weight_decay=False``).
    adabelief-pytorch's defaults are ``rectify=True`` with one ``eps`` for both places:
    ``adabelief(lr, (b1, b2), eps, eps, rectify=True)`` reproduces its trajectory.

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-3
        (adabelief-pytorch; Zhuang et al., 2020).
      b1: decay of the first moment, in [0, 1). Default 0.9 (Zhuang et al., 2020).
      b2: decay of the belief s, in [0, 1). Default 0.999 (Zhuang et al., 2020).
      eps: > 0, added to the root in the denominator. Default 1e-16 (adabelief-pytorch;
        Optax).
      eps_root: >= 0, added to s at every step. Default 1e-16 (adabelief-pytorch's eps;
        Optax).
      weight_decay: decay coefficient wd >= 0, a number or a schedule, or None: no term.
        Default None (adabelief-pytorch's 0).
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).
      decoupled_weight_decay: decay the parameters directly (AdamW's form,
        adabelief-pytorch's ``weight_decouple=True``), else add wd p to the gradient.
        Default True (adabelief-pytorch).
      rectify: RAdam's rectified step (see ``scale_by_belief``). Default False (the
        paper's algorithm and Optax; adabelief-pytorch's default is True).

    Example:
      >>> tx = gx.adabelief(learning_rate=0.1)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([1.0, -2.0]), state, params)
      >>> updates.round(4)  # -lr g / (0.9 |g|)
      Array([-0.1111,  0.1111], dtype=float32)
    """
    decay = maybe_weight_decay(weight_decay, weight_decay_mask)
    return named_chain(
        "adabelief",
        None if decoupled_weight_decay else decay,
        scale_by_belief(b1, b2, eps, eps_root, rectify=rectify),
        decay if decoupled_weight_decay else None,
        scale_by_learning_rate(learning_rate),
    )

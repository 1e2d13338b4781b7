"""Adam family: ``scale_by_adam``, ``scale_by_nadam`` and adam, adamw, amsgrad, nadam.

All moments follow torch.optim (2.x) exactly: m <- m + (1 - b1)(g - m), v <- b2 v +
(1 - b2)|g|^2, bias corrections 1 - b^t with t the 1-based step, eps added to the
bias-corrected root. Per-step scalars (bias corrections) are computed once per update,
not per leaf.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_hparam
from .._leafwise import (
    compute_dtype,
    map_updates,
    safe_increment,
    scalar_dtype,
    scalar_like,
    zero_count,
)
from .._module import static_field
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import add_decayed_weights, maybe_weight_decay
from ._moments import bias_correction, check_betas, init_moments, store_moments, update_moments

__all__ = ["scale_by_adam", "scale_by_nadam", "adam", "adamw", "amsgrad", "nadam"]


class AdamState(NamedTuple):
    count: jax.Array  # int32 scalar: updates so far
    mu: Any  # like params, mu_dtype: first moment
    nu: Any  # like params, real nu_dtype: second moment
    nu_max: Any  # like nu when amsgrad, else None: running max of nu


class scale_by_adam(GradientTransformation):
    """Adam's direction (Kingma & Ba, 2015), torch.optim.Adam semantics.

    m_t = b1 m + (1 - b1) g;  v_t = b2 v + (1 - b2) |g|^2;  (amsgrad: v_t <- max(v_max, v_t))
    u = m_hat / (sqrt(v_t / (1 - b2^t) + eps_root) + eps),  m_hat = m_t / (1 - b1^t).
    ``nesterov=True`` uses m_hat = b1 m_t / (1 - b1^{t+1}) + (1 - b1) g / (1 - b1^t)
    (Dozat, 2016). ``bias_correction=False`` drops both 1 - b^t factors.

    Args: b1=0.9, b2=0.999, eps=1e-8, eps_root=0 (torch defaults); amsgrad (Reddi et al.,
    2018; the max is over the raw v, as torch); mu_dtype / nu_dtype: storage dtypes of the
    moments (default: parameter dtype, at least float32).
    """

    b1: Any = 0.9
    b2: Any = 0.999
    eps: Any = 1e-8
    eps_root: Any = 0.0
    bias_correction: bool = static_field(default=True)
    amsgrad: bool = static_field(default=False)
    nesterov: bool = static_field(default=False)
    mu_dtype: Any = static_field(default=None)
    nu_dtype: Any = static_field(default=None)

    def __post_init__(self):
        check_betas("scale_by_adam", self.b1, self.b2, self.eps)
        check_hparam("scale_by_adam", "eps_root", self.eps_root, low=0)

    def init(self, params):
        mu, nu = init_moments(params, self.mu_dtype, self.nu_dtype)
        nu_max = init_moments(params, None, self.nu_dtype)[1] if self.amsgrad else None
        return AdamState(count=zero_count(), mu=mu, nu=nu, nu_max=nu_max)

    def update(self, updates, state, params=None, **extra):
        count = safe_increment(state.count)
        t = count.astype(scalar_dtype())
        b1, b2 = self.b1, self.b2
        if self.bias_correction:
            c1, c2 = 1 / bias_correction(b1, t), 1 / bias_correction(b2, t)
            c1_next = 1 / bias_correction(b1, t + 1)
        else:
            c1 = c2 = c1_next = jnp.ones([], scalar_dtype())
        nu_max = state.nu_max if self.amsgrad else state.nu

        def f(u, m_old, v_old, vmax):
            g = u.astype(compute_dtype(u))
            m, v = update_moments(g, m_old, v_old, b1, b2)
            vmax = jnp.maximum(vmax.astype(v.dtype), v) if self.amsgrad else v
            if self.nesterov:
                m_hat = scalar_like(b1 * c1_next, g) * m + scalar_like((1 - b1) * c1, g) * g
            else:
                m_hat = m * scalar_like(c1, g)
            denom = jnp.sqrt(vmax * scalar_like(c2, v) + scalar_like(self.eps_root, v))
            out = m_hat / (denom + scalar_like(self.eps, v)).astype(g.dtype)
            m, v = store_moments(m, v, m_old, v_old)
            return out.astype(u.dtype), m, v, vmax.astype(v.dtype)

        updates, mu, nu, vmax = map_updates(f, updates, state.mu, state.nu, nu_max, n_out=4)
        return updates, AdamState(count=count, mu=mu, nu=nu, nu_max=vmax if self.amsgrad else None)


class NadamState(NamedTuple):
    count: jax.Array  # int32 scalar
    mu_product: jax.Array  # scalar (float64 under x64): prod_{i<=t} mu_i
    mu: Any  # like params, mu_dtype
    nu: Any  # like params, real nu_dtype


class scale_by_nadam(GradientTransformation):
    """NAdam's direction (Dozat, 2016) with torch.optim.NAdam's momentum schedule.

    mu_t = b1 (1 - 0.5 * 0.96^(t psi)), psi = ``momentum_decay``; P_t = prod_{i<=t} mu_i;
    m, v as Adam;  denom = sqrt(v_t / (1 - b2^t)) + eps;
    u = (1 - mu_t) / (1 - P_t) * g / denom + mu_{t+1} / (1 - P_t mu_{t+1}) * m_t / denom.
    """

    b1: Any = 0.9
    b2: Any = 0.999
    eps: Any = 1e-8
    momentum_decay: Any = 4e-3
    mu_dtype: Any = static_field(default=None)
    nu_dtype: Any = static_field(default=None)

    def __post_init__(self):
        check_betas("scale_by_nadam", self.b1, self.b2, self.eps)
        check_hparam("scale_by_nadam", "momentum_decay", self.momentum_decay, low=0)

    def init(self, params):
        mu, nu = init_moments(params, self.mu_dtype, self.nu_dtype)
        return NadamState(count=zero_count(), mu_product=jnp.ones([], scalar_dtype()), mu=mu, nu=nu)

    def update(self, updates, state, params=None, **extra):
        count = safe_increment(state.count)
        t = count.astype(scalar_dtype())
        b1, b2 = jnp.asarray(self.b1, scalar_dtype()), self.b2
        mu_t = b1 * (1 - 0.5 * 0.96 ** (t * self.momentum_decay))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * self.momentum_decay))
        prod = state.mu_product * mu_t
        coef_g = (1 - mu_t) / (1 - prod)
        coef_m = mu_next / (1 - prod * mu_next)
        c2 = 1 / bias_correction(b2, t)

        def f(u, m_old, v_old):
            g = u.astype(compute_dtype(u))
            m, v = update_moments(g, m_old, v_old, b1, b2)
            denom = jnp.sqrt(v * scalar_like(c2, v)) + scalar_like(self.eps, v)
            out = (scalar_like(coef_g, g) * g + scalar_like(coef_m, g) * m) / denom.astype(g.dtype)
            return (out.astype(u.dtype), *store_moments(m, v, m_old, v_old))

        updates, mu, nu = map_updates(f, updates, state.mu, state.nu, n_out=3)
        return updates, NadamState(count=count, mu_product=prod, mu=mu, nu=nu)


def adam(
    learning_rate: Any = 1e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    amsgrad: bool = False,
    weight_decay: Any = 0.0,
    weight_decay_mask: Any = None,
    *,
    eps_root: Any = 0.0,
    nesterov: bool = False,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
):
    """Adam, exactly torch.optim.Adam (weight decay is coupled L2, added to the gradient).

    p <- p - lr_t * m_hat / (sqrt(v_hat) + eps), with g = grad + wd p.
    = chain(add_decayed_weights(wd), scale_by_adam(b1, b2, eps, ...),
            scale_by_learning_rate(lr)).
    """
    return named_chain(
        "adam",
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_adam(
            b1,
            b2,
            eps,
            eps_root,
            amsgrad=amsgrad,
            nesterov=nesterov,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: Any = 1e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    amsgrad: bool = False,
    weight_decay: Any = 1e-2,
    weight_decay_mask: Any = None,
    *,
    eps_root: Any = 0.0,
    nesterov: bool = False,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
):
    """AdamW (Loshchilov & Hutter, 2019), exactly torch.optim.AdamW: decoupled decay.

    p <- p - lr_t (m_hat / (sqrt(v_hat) + eps) + wd_t p).
    = chain(scale_by_adam(...), add_decayed_weights(wd, mask), scale_by_learning_rate(lr)).
    Default weight_decay 1e-2 as torch.
    """
    return named_chain(
        "adamw",
        scale_by_adam(
            b1,
            b2,
            eps,
            eps_root,
            amsgrad=amsgrad,
            nesterov=nesterov,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )


def amsgrad(
    learning_rate: Any = 1e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    weight_decay: Any = 0.0,
    weight_decay_mask: Any = None,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
):
    """AMSGrad (Reddi et al., 2018): torch ``Adam(amsgrad=True)``.

    v_max <- max(v_max, v_t);  p <- p - lr_t m_hat / (sqrt(v_max / (1 - b2^t)) + eps).
    """
    tx = adam(
        learning_rate,
        b1,
        b2,
        eps,
        True,
        weight_decay,
        weight_decay_mask,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )
    return named_chain("amsgrad", *tx.transforms)


def nadam(
    learning_rate: Any = 2e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    weight_decay: Any = 0.0,
    weight_decay_mask: Any = None,
    momentum_decay: Any = 4e-3,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
):
    """NAdam, exactly torch.optim.NAdam (coupled L2 weight decay; lr default 2e-3).

    = chain(add_decayed_weights(wd), scale_by_nadam(b1, b2, eps, momentum_decay),
            scale_by_learning_rate(lr)).
    """
    return named_chain(
        "nadam",
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_nadam(b1, b2, eps, momentum_decay, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )

"""Adamax (Kingma & Ba, 2015, section 7.1): Adam with an infinity-norm second moment."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._leafwise import (
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
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay
from ._moments import bias_correction, check_betas, store_moments

__all__ = ["scale_by_adamax", "adamax"]


class AdamaxState(NamedTuple):
    count: jax.Array  # int32 scalar
    mu: Any  # like params, mu_dtype: first moment
    nu: Any  # like params, real nu_dtype: exponentially weighted infinity norm


class scale_by_adamax(GradientTransformation):
    """Adamax direction, torch.optim.Adamax semantics.

    m_t = b1 m + (1 - b1) g;  n_t = max(b2 n, |g| + eps);  u = m_t / ((1 - b1^t) n_t).
    eps sits inside the max, as torch (so n_t > 0 even for zero gradients).
    """

    b1: Any = 0.9
    b2: Any = 0.999
    eps: Any = 1e-8
    mu_dtype: Any = static_field(default=None)
    nu_dtype: Any = static_field(default=None)

    def __post_init__(self):
        check_betas("scale_by_adamax", self.b1, self.b2, self.eps)

    def init(self, params):
        return AdamaxState(
            count=zero_count(),
            mu=map_params(lambda p: new_slot(p, slot_dtype(p, self.mu_dtype)), params),
            nu=map_params(lambda p: new_slot(p, slot_dtype(p, self.nu_dtype, real=True)), params),
        )

    def update(self, updates, state, params=None, **extra):
        count = safe_increment(state.count)
        b1 = self.b1
        c1 = 1 / bias_correction(b1, count.astype(scalar_dtype()))

        def f(u, m_old, n_old):
            g = u.astype(compute_dtype(u))
            m = m_old.astype(g.dtype)
            m = m + scalar_like(1 - b1, g) * (g - m)
            a = jnp.abs(g)
            n = jnp.maximum(
                scalar_like(self.b2, a) * n_old.astype(a.dtype), a + scalar_like(self.eps, a)
            )
            out = m * scalar_like(c1, g) / n.astype(g.dtype)
            return (out.astype(u.dtype), *store_moments(m, n, m_old, n_old))

        updates, mu, nu = map_updates(f, updates, state.mu, state.nu, n_out=3)
        return updates, AdamaxState(count=count, mu=mu, nu=nu)


def adamax(
    learning_rate: Any = 2e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    weight_decay: Any = 0.0,
    weight_decay_mask: Any = None,
):
    """Adamax, exactly torch.optim.Adamax (coupled L2 weight decay; lr default 2e-3).

    = chain(add_decayed_weights(wd), scale_by_adamax(b1, b2, eps), scale_by_learning_rate(lr)).
    """
    return named_chain(
        "adamax",
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_adamax(b1, b2, eps),
        scale_by_learning_rate(learning_rate),
    )

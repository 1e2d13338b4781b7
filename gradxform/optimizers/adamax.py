"""Adamax (Kingma & Ba, 2015, section 7.1): Adam with an infinity-norm second moment."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

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
from .._typing import PyTree, Scalar, ScalarOrSchedule
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay
from ._moments import bias_correction, check_betas, store_moments

__all__ = ["scale_by_adamax", "adamax"]


class AdamaxState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar
    mu: PyTree  # like params, mu_dtype: first moment
    nu: PyTree  # like params, real nu_dtype: exponentially weighted infinity norm


class scale_by_adamax(GradientTransformation):
    """Adamax direction, torch.optim.Adamax semantics.

    m_t = b1 m + (1 - b1) g;  n_t = max(b2 n, |g| + eps);  u = m_t / ((1 - b1^t) n_t).
    eps sits inside the max, as torch (so n_t > 0 even for zero gradients).

    Args:
      b1: decay of the first moment, in [0, 1). Default 0.9 (Kingma & Ba, 2015).
      b2: decay of the infinity norm, in [0, 1). Default 0.999 (Kingma & Ba, 2015).
      eps: > 0, added to |g| inside the max. Default 1e-8 (torch.optim.Adamax).
      mu_dtype: storage dtype of m. Default None: the parameter dtype, at least float32.
      nu_dtype: storage dtype of n (real). Default None: the parameter dtype, at least
        float32.

    Example:
      >>> tx = gx.scale_by_adamax(b2=0.5)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([4.0, -1.0]), state)
      >>> u.round(4)  # m_hat / |g| on the first step
      Array([ 1., -1.], dtype=float32)
      >>> state.nu  # max(b2 n, |g| + eps)
      Array([4., 1.], dtype=float32)
    """

    b1: Scalar = 0.9
    b2: Scalar = 0.999
    eps: Scalar = 1e-8
    mu_dtype: DTypeLike | None = static_field(default=None)
    nu_dtype: DTypeLike | None = static_field(default=None)

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
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
):
    """Adamax, exactly torch.optim.Adamax (coupled L2 weight decay; lr default 2e-3).

    = chain(add_decayed_weights(wd), scale_by_adamax(b1, b2, eps), scale_by_learning_rate(lr)).
    ``weight_decay`` is keyword-only, as in the rest of the Adam family (torch's
    ``Adamax(params, lr, betas, eps, weight_decay)`` has it one place earlier).

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 2e-3
        (torch.optim.Adamax; Kingma & Ba, 2015).
      b1: decay of the first moment, in [0, 1). Default 0.9 (Kingma & Ba, 2015).
      b2: decay of the infinity norm, in [0, 1). Default 0.999 (Kingma & Ba, 2015).
      eps: > 0, added to |g| inside the max. Default 1e-8 (torch.optim.Adamax).
      weight_decay: coupled L2 coefficient wd >= 0, a number or a schedule, or None:
        no term. Default None (torch.optim.Adamax's 0).
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).

    Example:
      >>> tx = gx.adamax(learning_rate=0.5)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([4.0, -1.0]), state, params)
      >>> updates.round(4)
      Array([-0.5,  0.5], dtype=float32)
    """
    return named_chain(
        "adamax",
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_adamax(b1, b2, eps),
        scale_by_learning_rate(learning_rate),
    )

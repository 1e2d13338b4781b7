"""Rectified Adam (Liu et al., 2020): Adam whose adaptive step is switched on only once
the variance of the adaptive learning rate is tractable."""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

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
from .._typing import Scalar, ScalarOrSchedule
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay
from ._moments import bias_correction, check_betas, init_moments, store_moments, update_moments
from .adam import AdamState

__all__ = ["scale_by_radam", "radam"]


def _step_dtype(x: Any, t: jax.Array) -> Any:
    """An array hyperparameter in the step's dtype (one of the other float width would
    promote, an error under strict promotion); a Python number stays exact."""
    return x if isinstance(x, (int, float)) else jnp.asarray(x).astype(t.dtype)


class scale_by_radam(GradientTransformation):
    """RAdam direction, torch.optim.RAdam semantics.

    m, v as Adam;  rho_inf = 2 / (1 - b2) - 1;  rho_t = rho_inf - 2 t b2^t / (1 - b2^t).
    If rho_t > threshold (5):
      r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t)),
      u = m_hat * r_t * sqrt(1 - b2^t) / (sqrt(v_t) + eps)   (eps on the raw root, as torch);
    else u = m_hat (momentum SGD with bias correction).
    State: ``AdamState`` (nu_max is None). Arguments after ``eps`` are keyword-only
    (Optax's fourth positional argument is ``eps_root``).

    Args:
      b1: decay of the first moment, in [0, 1). Default 0.9 (torch.optim.RAdam).
      b2: decay of the second moment, in [0, 1). Default 0.999 (torch.optim.RAdam).
      eps: > 0, added to the root in the denominator. Default 1e-8 (torch.optim.RAdam).
      threshold: rho_t above which the adaptive step is used, >= 4. Default 5
        (torch.optim.RAdam; Liu et al., 2020).
      mu_dtype: storage dtype of m. Default None: the parameter dtype, at least float32.
      nu_dtype: storage dtype of v (real). Default None: the parameter dtype, at least
        float32.

    Example:
      >>> tx = gx.scale_by_radam()
      >>> g = jnp.array([0.5, -2.0])
      >>> state = tx.init(g)
      >>> u, state = tx.update(g, state)  # rho_1 = 1 <= 5: u = m_hat = g
      >>> u.round(4)
      Array([ 0.5, -2. ], dtype=float32)
    """

    b1: Scalar = 0.9
    b2: Scalar = 0.999
    eps: Scalar = 1e-8
    _: KW_ONLY
    threshold: Scalar = 5.0
    mu_dtype: DTypeLike | None = static_field(default=None)
    nu_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        check_betas("scale_by_radam", self.b1, self.b2, self.eps)
        check_hparam("scale_by_radam", "threshold", self.threshold, low=4)

    def init(self, params):
        mu, nu = init_moments(params, self.mu_dtype, self.nu_dtype)
        return AdamState(count=zero_count(), mu=mu, nu=nu, nu_max=None)

    def update(self, updates, state, params=None, **extra):
        count = safe_increment(state.count)
        t = count.astype(scalar_dtype())
        b1, b2 = self.b1, self.b2
        bc2 = bias_correction(b2, t)
        c1 = 1 / bias_correction(b1, t)
        rho_inf = 2 / (1 - _step_dtype(b2, t)) - 1
        rho_t = rho_inf - 2 * t * (1 - bc2) / bc2
        rect_sq = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        rectify = rho_t > _step_dtype(self.threshold, t)
        # sqrt of a negative when not rectifying: guard it, the branch is discarded anyway.
        adaptive = jnp.sqrt(jnp.where(rectify, rect_sq, 1.0)) * jnp.sqrt(bc2)

        def f(u, m_old, v_old):
            g = u.astype(compute_dtype(u))
            m, v = update_moments(g, m_old, v_old, b1, b2)
            m_hat = m * scalar_like(c1, g)
            scaled = m_hat * (
                scalar_like(adaptive, v) / (jnp.sqrt(v) + scalar_like(self.eps, v))
            ).astype(g.dtype)
            out = jnp.where(rectify, scaled, m_hat)
            return (out.astype(u.dtype), *store_moments(m, v, m_old, v_old))

        updates, mu, nu = map_updates(f, updates, state.mu, state.nu, n_out=3)
        return updates, AdamState(count=count, mu=mu, nu=nu, nu_max=None)


def radam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
    threshold: Scalar = 5.0,
):
    """RAdam, exactly torch.optim.RAdam (coupled L2 weight decay).

    = chain(add_decayed_weights(wd), scale_by_radam(b1, b2, eps, threshold=threshold),
            scale_by_learning_rate(lr)). Arguments after ``eps`` are keyword-only
    (Optax's fifth positional argument is ``eps_root``).

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-3
        (torch.optim.RAdam).
      b1: decay of the first moment, in [0, 1). Default 0.9 (torch.optim.RAdam).
      b2: decay of the second moment, in [0, 1). Default 0.999 (torch.optim.RAdam).
      eps: > 0, added to the root in the denominator. Default 1e-8 (torch.optim.RAdam).
      weight_decay: coupled L2 coefficient wd >= 0, a number or a schedule, or None:
        no term. Default None (torch.optim.RAdam's 0).
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).
      threshold: rho_t above which the adaptive step is used, >= 4. Default 5
        (torch.optim.RAdam).

    Example:
      >>> tx = gx.radam(learning_rate=0.5)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([0.5, -2.0]), state, params)
      >>> updates.round(4)  # the first steps are SGD with momentum: -lr m_hat
      Array([-0.25,  1.  ], dtype=float32)
    """
    return named_chain(
        "radam",
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_radam(b1, b2, eps, threshold=threshold),
        scale_by_learning_rate(learning_rate),
    )

"""Yogi (Zaheer et al., 2018): Adam whose second moment moves additively, by at most
(1 - b2) g^2 per step, towards g^2."""

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

__all__ = ["scale_by_yogi", "yogi"]


class YogiState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar
    mu: PyTree  # like params, mu_dtype: first moment, starts at initial_accumulator_value
    nu: PyTree  # like params, real nu_dtype: second moment, starts there too


class scale_by_yogi(GradientTransformation):
    """Yogi direction, pytorch_optimizer 4.1.0 ``Yogi`` semantics (and Optax's).

    m = b1 m + (1 - b1) g;  v = v - (1 - b2) sign(v - |g|^2) |g|^2;
    u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t) + eps_root) + eps).
    m and v both start at ``initial_accumulator_value`` and are bias-corrected anyway
    (as pytorch_optimizer and Optax; the paper's Algorithm 2 starts m at 0 and corrects
    neither).

    Args:
      b1: decay of the first moment, in [0, 1). Default 0.9 (Zaheer et al., 2018).
      b2: rate of the additive second-moment change, in [0, 1). Default 0.999 (Zaheer
        et al., 2018).
      eps: > 0, added to the root in the denominator. Default 1e-3 (Zaheer et al., 2018;
        pytorch_optimizer; Optax).
      eps_root: >= 0, added inside the root. Default 0 (Optax; pytorch_optimizer has
        none).
      initial_accumulator_value: >= 0, the starting value of m and v. Default 1e-6
        (Zaheer et al., 2018; pytorch_optimizer's ``initial_accumulator``; Optax).
      mu_dtype: storage dtype of m. Default None: the parameter dtype, at least float32.
      nu_dtype: storage dtype of v (real). Default None: the parameter dtype, at least
        float32.

    Example:
      >>> tx = gx.scale_by_yogi(initial_accumulator_value=0.0, eps=1e-8)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([2.0, -1.0]), state)
      >>> state.nu  # 0 - 0.001 sign(0 - g^2) g^2
      Array([0.004, 0.001], dtype=float32)
      >>> u.round(4)  # the first step is sign(g), as Adam's
      Array([ 1., -1.], dtype=float32)
    """

    b1: Scalar = 0.9
    b2: Scalar = 0.999
    eps: Scalar = 1e-3
    eps_root: Scalar = 0.0
    _: KW_ONLY
    initial_accumulator_value: Scalar = 1e-6
    mu_dtype: DTypeLike | None = static_field(default=None)
    nu_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        check_betas("scale_by_yogi", self.b1, self.b2, self.eps)
        check_hparam("scale_by_yogi", "eps_root", self.eps_root, low=0)
        check_hparam(
            "scale_by_yogi", "initial_accumulator_value", self.initial_accumulator_value, low=0
        )

    def init(self, params):
        v0 = self.initial_accumulator_value
        mu = map_params(lambda p: new_slot(p, slot_dtype(p, self.mu_dtype), v0), params)
        nu = map_params(lambda p: new_slot(p, slot_dtype(p, self.nu_dtype, real=True), v0), params)
        return YogiState(count=zero_count(), mu=mu, nu=nu)

    def update(self, updates, state, params=None, **extra):
        count = safe_increment(state.count)
        t = count.astype(scalar_dtype())
        b1, b2 = self.b1, self.b2
        c1 = 1 / bias_correction(b1, t)
        c2 = 1 / bias_correction(b2, t)

        def f(u, m_old, v_old):
            g = u.astype(compute_dtype(u))
            m = m_old.astype(g.dtype)
            m = m + scalar_like(1 - b1, g) * (g - m)  # pytorch_optimizer's lerp
            g2 = abs2(g)
            v = v_old.astype(g2.dtype)
            v = v - scalar_like(1 - b2, g2) * jnp.sign(v - g2) * g2
            denom = jnp.sqrt(v * scalar_like(c2, g2) + scalar_like(self.eps_root, g2))
            out = m / (denom + scalar_like(self.eps, g2)).astype(g.dtype) * scalar_like(c1, g)
            return (out.astype(u.dtype), *store_moments(m, v, m_old, v_old))

        updates, mu, nu = map_updates(f, updates, state.mu, state.nu, n_out=3)
        return updates, YogiState(count=count, mu=mu, nu=nu)


def yogi(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-3,
    *,
    initial_accumulator_value: Scalar = 1e-6,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
    decoupled_weight_decay: bool = True,
):
    """Yogi (Zaheer et al., 2018), as pytorch_optimizer 4.1.0's ``Yogi`` and ``optax.yogi``.

    p <- p - lr_t (m_hat / (sqrt(v_hat) + eps) [+ wd_t p]), v as ``scale_by_yogi``.
    = chain(scale_by_yogi(...), add_decayed_weights(wd), scale_by_learning_rate(lr))
    (decoupled decay, pytorch_optimizer's ``weight_decouple=True``), or with the decay
    before ``scale_by_yogi`` (coupled L2, ``decoupled_weight_decay=False``).

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-2
        (Zaheer et al., 2018; pytorch_optimizer).
      b1: decay of the first moment, in [0, 1). Default 0.9 (Zaheer et al., 2018).
      b2: rate of the additive second-moment change, in [0, 1). Default 0.999 (Zaheer
        et al., 2018).
      eps: > 0, added to the root in the denominator. Default 1e-3 (Zaheer et al., 2018).
      initial_accumulator_value: >= 0, the starting value of m and v. Default 1e-6
        (Zaheer et al., 2018; pytorch_optimizer; Optax).
      weight_decay: decay coefficient wd >= 0, a number or a schedule, or None: no term.
        Default None (pytorch_optimizer's 0).
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).
      decoupled_weight_decay: decay the parameters directly (AdamW's form,
        pytorch_optimizer's ``weight_decouple=True``), else add wd p to the gradient.
        Default True (pytorch_optimizer).

    Example:
      >>> tx = gx.yogi(learning_rate=0.5, eps=1e-8, initial_accumulator_value=0.0)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([2.0, -1.0]), state, params)
      >>> updates.round(4)  # -lr sign(g) on the first step
      Array([-0.5,  0.5], dtype=float32)
    """
    decay = maybe_weight_decay(weight_decay, weight_decay_mask)
    return named_chain(
        "yogi",
        None if decoupled_weight_decay else decay,
        scale_by_yogi(b1, b2, eps, initial_accumulator_value=initial_accumulator_value),
        decay if decoupled_weight_decay else None,
        scale_by_learning_rate(learning_rate),
    )

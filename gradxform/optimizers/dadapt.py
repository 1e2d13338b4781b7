"""D-Adaptation Adam (Defazio & Mishchenko, 2023): Adam with a learned global step size."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_hparam, check_params, need_params
from .._leafwise import (
    abs2,
    compute_dtype,
    map_params,
    map_updates,
    new_slot,
    resolve,
    safe_increment,
    scalar_like,
    slot_dtype,
    zero_count,
)
from .._module import static_field
from .._typing import PyTree, Scalar, ScalarOrSchedule
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay
from ._parameter_free import (
    adam_step_correction,
    check_growth_rate,
    global_dtype,
    global_scalar,
    map_with_totals,
    real_dot,
    select_tree,
)

# DAdaptAdamState is exported by gradxform too; __all__ lists the transforms (the
# registry test reads it as the optimizers this module defines).
__all__ = ["scale_by_dadapt_adam", "dadapt_adamw"]


class DAdaptAdamState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: updates so far (schedules)
    k: jax.Array  # int32 scalar: steps taken (the reference's k: bias correction)
    d: jax.Array  # real scalar (global dtype): the step-size estimate, d0 at first
    numerator_weighted: jax.Array  # real scalar: EMA (sqrt(b2)) of dlr <g, s / (sqrt(v) + eps)>
    mu: PyTree  # like params: exp_avg, sum of b1^(k-i) dlr_i (1 - b1) g_i (lr included)
    nu: PyTree  # like params, real: exp_avg_sq, EMA (b2) of |g|^2
    s: PyTree  # like params: sum of sqrt(b2)^(k-i) dlr_i (1 - sqrt(b2)) g_i


class scale_by_dadapt_adam(GradientTransformation):
    """D-Adapted Adam direction (dadaptation 3.2 ``DAdaptAdam``), for -learning_rate.

    With dlr = d lr c (c = sqrt(1 - b2^t) / (1 - b1^t) with bias correction, else 1),
    b = sqrt(b2) and global sums over every leaf, each step:

      r = b r + (1 - b) dlr <g, s / (sqrt(v) + eps)>   (the old s and v)
      m = b1 m + dlr (1 - b1) g;  v = b2 v + (1 - b2) |g|^2;  s = b s + dlr (1 - b) g
      d_hat = r / ((1 - b) ||s||_1);  d <- max(d, min(d_hat, growth_rate d))
      step = m / (sqrt(v) + eps) + wd dlr x.

    m already holds lr (each step's dlr), so this emits step / lr, which the alias's
    ``scale_by_learning_rate`` multiplies back by -lr: ``learning_rate`` here must be
    the same lr (a number or a schedule of the step count). A step whose s is 0
    everywhere (all gradients 0 so far), or whose lr is 0, emits 0 and changes only
    ``count`` (what schedules read; ``k`` counts the steps taken),
    as the reference returns early.

    Defazio & Mishchenko, "Learning-Rate-Free Learning by D-Adaptation" (ICML 2023;
    arXiv:2301.07733), the Adam variant of the dadaptation package.

    Args:
      learning_rate: lr >= 0, the same learning rate as the alias's last member.
        Default 1.0 (dadaptation).
      b1: decay of m, in [0, 1). Default 0.9 (dadaptation's betas[0]).
      b2: decay of v, in [0, 1); sqrt(b2) decays r and s. Default 0.999 (dadaptation).
      eps: > 0, added to sqrt(v). Default 1e-8 (dadaptation).
      weight_decay: decoupled decay coefficient wd >= 0 (the step adds dlr wd x), or
        None: no term. Default None (dadaptation's 0).
      use_bias_correction: fold Adam's bias correction c into dlr. Default False
        (dadaptation).
      d0: > 0, the initial estimate. Default 1e-6 (dadaptation).
      growth_rate: > 0 (inf: no limit), the largest factor d grows by in a step.
        Default inf (dadaptation).

    Example:
      >>> tx = gx.scale_by_dadapt_adam()
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([4.0, -1.0]), state)
      >>> state.d  # s was 0 before this step: r = 0, d stays d0
      Array(1.e-06, dtype=float32)
      >>> u.round(8)  # d0 (1 - b1) g / (sqrt(1 - b2) |g| + eps)
      Array([ 3.16e-06, -3.16e-06], dtype=float32)
    """

    learning_rate: ScalarOrSchedule = 1.0
    b1: Scalar = 0.9
    b2: Scalar = 0.999
    eps: Scalar = 1e-8
    weight_decay: Scalar | None = None
    use_bias_correction: bool = static_field(default=False)
    d0: Scalar = 1e-6
    growth_rate: Scalar = math.inf

    def __post_init__(self):
        owner = "scale_by_dadapt_adam"
        check_hparam(owner, "learning_rate", self.learning_rate, low=0, schedule=True)
        check_hparam(owner, "b1", self.b1, low=0, high=1, high_open=True)
        check_hparam(owner, "b2", self.b2, low=0, high=1, high_open=True)
        check_hparam(owner, "eps", self.eps, low=0, low_open=True)
        if self.weight_decay is not None:
            check_hparam(owner, "weight_decay", self.weight_decay, low=0)
        check_hparam(owner, "d0", self.d0, low=0, low_open=True)
        check_growth_rate(owner, self.growth_rate)

    def init(self, params):
        dt = global_dtype(params)

        def slot(p, **kw):
            return new_slot(p, slot_dtype(p, **kw))

        return DAdaptAdamState(
            count=zero_count(),
            k=zero_count(),
            d=global_scalar(self.d0, dt),
            numerator_weighted=global_scalar(0.0, dt),
            mu=map_params(slot, params),
            nu=map_params(lambda p: slot(p, real=True), params),
            s=map_params(slot, params),
        )

    def update(self, updates, state, params=None, **extra):
        wd = self.weight_decay
        if wd is not None:
            need_params("scale_by_dadapt_adam", params)
        check_params(updates, params)
        dt = state.d.dtype
        b1, b2 = self.b1, self.b2
        sb2 = jnp.sqrt(jnp.asarray(b2, dt))
        lr = jnp.asarray(resolve(self.learning_rate, state.count), dt)
        d = state.d
        c = adam_step_correction(b1, b2, state.k, dt) if self.use_bias_correction else 1.0
        dlr = d * lr * c
        w_m, w_s = dlr * (1 - jnp.asarray(b1, dt)), dlr * (1 - sb2)
        eps = self.eps

        def estimate(u, m_old, v_old, s_old):
            g = u.astype(compute_dtype(u))
            a = abs2(g)
            v = v_old.astype(a.dtype)
            s = s_old.astype(g.dtype)
            dot = real_dot(g, s / (jnp.sqrt(v) + scalar_like(eps, v)).astype(g.dtype))
            m = m_old.astype(g.dtype) * scalar_like(b1, g) + scalar_like(w_m, g) * g
            v = v * scalar_like(b2, a) + scalar_like(1 - b2, a) * a
            s = s * scalar_like(sb2, g) + scalar_like(w_s, g) * g
            totals = jnp.stack([scalar_like(dlr, dot) * dot, jnp.sum(jnp.abs(s))])
            store = (m.astype(m_old.dtype), v.astype(v_old.dtype), s.astype(s_old.dtype))
            return (totals, *store)

        (acc, l1), (mu, nu, s) = map_with_totals(
            estimate, updates, state.mu, state.nu, state.s, n_totals=2, dtype=dt
        )
        numerator = sb2 * state.numerator_weighted + (1 - sb2) * acc
        taken = (l1 > 0) & (lr > 0)
        denom = (1 - sb2) * jnp.where(taken, l1, 1)
        # The reference's product, unless it underflows (a tiny ||s||_1 in float32 times
        # 1 - sqrt(b2) flushes to 0, and 0 / 0 made d NaN): then divide one at a time.
        d_hat = jnp.where(
            denom > 0, numerator / jnp.where(denom > 0, denom, 1), numerator / l1 / (1 - sb2)
        )
        d_new = jnp.maximum(d, jnp.minimum(d_hat, d * jnp.asarray(self.growth_rate, dt)))
        inv_lr = 1 / jnp.where(taken, lr, 1)  # m holds lr; the last member multiplies it back

        def step(u, m, v, *p):
            out = m / (jnp.sqrt(v) + scalar_like(eps, v)).astype(m.dtype)
            if wd is not None:
                out = out + scalar_like(wd * dlr, out) * jnp.asarray(p[0]).astype(out.dtype)
            out = out * scalar_like(inv_lr, out)
            return (jnp.where(taken, out, 0).astype(u.dtype),)

        (out,) = map_updates(step, updates, mu, nu, *(() if wd is None else (params,)))
        new = DAdaptAdamState(
            count=state.count,
            k=safe_increment(state.k),
            d=d_new.astype(dt),
            numerator_weighted=numerator.astype(dt),
            mu=mu,
            nu=nu,
            s=s,
        )
        # A step not taken changes nothing but the update count.
        new = select_tree(taken, new, state)
        return out, new._replace(count=safe_increment(state.count))


def dadapt_adamw(
    learning_rate: ScalarOrSchedule = 1.0,
    *,
    betas: tuple[Scalar, Scalar] = (0.9, 0.999),
    eps: Scalar = 1e-8,
    weight_decay: Scalar | None = None,
    decouple: bool = True,
    use_bias_correction: bool = False,
    d0: Scalar = 1e-6,
    growth_rate: Scalar = math.inf,
):
    """D-Adaptation AdamW, exactly dadaptation 3.2's ``DAdaptAdam`` (one parameter group).

    = chain([add_decayed_weights(wd) if not decouple], scale_by_dadapt_adam(lr, ...),
    scale_by_learning_rate(lr)). Leave lr at 1 (it multiplies the learned step size d).
    ``decouple`` defaults to True here (the "w": AdamW-style decay), where
    ``DAdaptAdam``'s default is False; ``layer_scale``, ``log_every`` and
    ``fsdp_in_use`` are not provided.

    Args:
      learning_rate: lr >= 0, a number or a schedule, multiplying the learned step size.
        Default 1.0 (dadaptation).
      betas: (b1, b2), decays of Adam's two moments. Default (0.9, 0.999) (dadaptation).
      eps: > 0, added to sqrt(v). Default 1e-8 (dadaptation).
      weight_decay: coefficient wd >= 0, or None: no term. Default None (dadaptation's 0).
      decouple: True: AdamW-style decay, the step adds dlr wd x; False: wd x added to the
        gradient (L2). Default True (dadaptation's default is False).
      use_bias_correction: Adam's bias correction in the step size. Default False
        (dadaptation).
      d0: > 0, the initial step-size estimate. Default 1e-6 (dadaptation).
      growth_rate: > 0 (inf: no limit), the largest factor d grows by per step. Default
        inf (dadaptation).

    Example:
      >>> tx = gx.dadapt_adamw()
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = tx.init(params)
      >>> loss = lambda p: jnp.sum((p["w"] - 3.0) ** 2)
      >>> for _ in range(300):
      ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
      ...     params = gx.apply_updates(params, updates)
      >>> bool(loss(params) < 1e-2)
      True
    """
    b1, b2 = betas
    return named_chain(
        "dadapt_adamw",
        maybe_weight_decay(None if decouple else weight_decay),
        scale_by_dadapt_adam(
            learning_rate,
            b1,
            b2,
            eps,
            weight_decay if decouple else None,
            use_bias_correction=use_bias_correction,
            d0=d0,
            growth_rate=growth_rate,
        ),
        scale_by_learning_rate(learning_rate),
    )

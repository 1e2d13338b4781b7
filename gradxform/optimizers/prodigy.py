"""Prodigy (Mishchenko & Defazio, 2023): Adam with a learned global step size d."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_hparam, check_params, concrete_number, need_params
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
    wider_dtype,
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

# ProdigyState is exported by gradxform too; __all__ lists the transforms (the registry
# test reads it as the optimizers this module defines).
__all__ = ["scale_by_prodigy", "prodigy"]


class ProdigyState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: updates so far (schedules)
    k: jax.Array  # int32 scalar: steps taken (the reference's k: bias correction)
    d: jax.Array  # real scalar (global dtype): the step-size estimate, d0 at first
    d_max: jax.Array  # real scalar: the largest d_hat seen (d0 at first)
    d_numerator: jax.Array  # real scalar: sum_i beta3^(k-i) (d_i / d0) dlr_i <g_i, x0 - x_i>
    mu: PyTree  # like params: exp_avg, sum of b1^(k-i) d_i (1 - b1) g_i
    nu: PyTree  # like params, real: exp_avg_sq, sum of b2^(k-i) d_i^2 (1 - b2) |g_i|^2
    s: PyTree  # like params: sum of beta3^(k-i) (d_i / d0) dlr_i g_i
    p0: PyTree  # like params: the parameters at the first step (zeros before it)


class scale_by_prodigy(GradientTransformation):
    """Prodigy direction (prodigyopt 1.1.2 ``Prodigy``), to be scaled by -learning_rate.

    With dlr = d lr c (c = sqrt(1 - b2^t) / (1 - b1^t) with bias correction, else 1) and
    x0 the parameters at the first step, each step (global sums over every leaf):

      m = b1 m + d (1 - b1) g;  v = b2 v + d^2 (1 - b2) |g|^2
      r = beta3 r + (d / d0) dlr <g, x0 - x>;  s = beta3 s + (d / d0) dlr g  (d in place of
      dlr with safeguard_warmup);  d_hat = d_coef r / ||s||_1
      d_max = max(d_max, d_hat);  d <- min(d_max, growth_rate d)  (first growth from d0:
      d <- max(d0, d_hat));  u = d_old c (m / (sqrt(v) + d eps) + wd x)
      (b1 = 0: d g in place of m, with the new d, as the reference).

    The alias's ``scale_by_learning_rate`` multiplies by -lr: the step is -dlr m / (...).
    ``learning_rate`` here is that same lr (a number or a schedule of the update count):
    it weights the estimate (r and s), as in the reference, and nothing else. A step
    whose s is 0 everywhere (all gradients 0 so far), or whose lr is 0, emits 0 and
    changes only ``count`` (what schedules read; ``k`` counts the steps taken) and x0,
    as the reference returns early.

    x0 is taken from ``params`` at the first update, not at ``init`` (the reference also
    records it at its first step): ``init`` needs only shapes and dtypes and works on
    ``jax.ShapeDtypeStruct`` trees, unlike ``optax.contrib.prodigy``, whose init stores
    the parameters themselves.

    Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner"
    (ICML 2024; arXiv:2306.06101), Algorithm 4 as implemented in prodigyopt.

    Args:
      learning_rate: lr >= 0, the same learning rate as the alias's last member, used in
        the weights of the estimate. Default 1.0 (prodigyopt).
      b1: decay of m, in [0, 1). Default 0.9 (prodigyopt's betas[0]).
      b2: decay of v, in [0, 1). Default 0.999 (prodigyopt's betas[1]).
      beta3: decay of r and s, in [0, 1), or None: sqrt(b2). Default None (prodigyopt).
      eps: > 0, added to sqrt(v) as d eps. Default 1e-8 (prodigyopt).
      weight_decay: decoupled decay coefficient wd >= 0 (the step adds dlr wd x), or
        None: no term. Default None (prodigyopt's 0).
      use_bias_correction: fold Adam's bias correction c into dlr. Default False
        (prodigyopt).
      safeguard_warmup: leave lr out of s's weights (d instead of dlr). Default False
        (prodigyopt).
      d0: > 0, the initial estimate. Default 1e-6 (prodigyopt).
      d_coef: > 0, multiplies d_hat. Default 1.0 (prodigyopt).
      growth_rate: > 0 (inf: no limit), the largest factor d grows by in a step.
        Default inf (prodigyopt).

    Example:
      >>> tx = gx.scale_by_prodigy()
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> u, state = tx.update(jnp.array([4.0, -1.0]), state, params)
      >>> state.d  # x = x0 at the first step: r = 0, d stays d0
      Array(1.e-06, dtype=float32)
      >>> [round(float(x) * 1e6, 3) for x in u]  # d0 m / (sqrt(v) + d0 eps): 0.1 / sqrt(0.001)
      [3.162, -3.162]
    """

    learning_rate: ScalarOrSchedule = 1.0
    b1: Scalar = 0.9
    b2: Scalar = 0.999
    beta3: Scalar | None = None
    eps: Scalar = 1e-8
    weight_decay: Scalar | None = None
    use_bias_correction: bool = static_field(default=False)
    safeguard_warmup: bool = static_field(default=False)
    d0: Scalar = 1e-6
    d_coef: Scalar = 1.0
    growth_rate: Scalar = math.inf

    def __post_init__(self):
        owner = "scale_by_prodigy"
        check_hparam(owner, "learning_rate", self.learning_rate, low=0, schedule=True)
        check_hparam(owner, "b1", self.b1, low=0, high=1, high_open=True)
        check_hparam(owner, "b2", self.b2, low=0, high=1, high_open=True)
        if self.beta3 is not None:
            check_hparam(owner, "beta3", self.beta3, low=0, high=1, high_open=True)
        check_hparam(owner, "eps", self.eps, low=0, low_open=True)
        if self.weight_decay is not None:
            check_hparam(owner, "weight_decay", self.weight_decay, low=0)
        check_hparam(owner, "d0", self.d0, low=0, low_open=True)
        check_hparam(owner, "d_coef", self.d_coef, low=0, low_open=True)
        check_growth_rate(owner, self.growth_rate)

    def init(self, params):
        dt = global_dtype(params)

        def slot(p, **kw):
            return new_slot(p, slot_dtype(p, **kw))

        return ProdigyState(
            count=zero_count(),
            k=zero_count(),
            d=global_scalar(self.d0, dt),
            d_max=global_scalar(self.d0, dt),
            d_numerator=global_scalar(0.0, dt),
            mu=map_params(slot, params),
            nu=map_params(lambda p: slot(p, real=True), params),
            s=map_params(slot, params),
            p0=map_params(slot, params),
        )

    def update(self, updates, state, params=None, **extra):
        need_params("scale_by_prodigy", params)
        check_params(updates, params)
        dt = state.d.dtype
        b1, b2 = self.b1, self.b2
        beta3 = jnp.sqrt(jnp.asarray(b2, dt)) if self.beta3 is None else self.beta3
        lr = jnp.asarray(resolve(self.learning_rate, state.count), dt)
        d, d0 = state.d, jnp.asarray(self.d0, dt)
        c = adam_step_correction(b1, b2, state.k, dt) if self.use_bias_correction else 1.0
        dlr = d * lr * c
        w_num = (d / d0) * dlr  # weight of this step's <g, x0 - x> and, usually, of s
        w_s = (d / d0) * d if self.safeguard_warmup else w_num
        w_m, w_v = d * (1 - jnp.asarray(b1, dt)), d * d * (1 - jnp.asarray(b2, dt))
        first = state.count == 0

        def estimate(u, m_old, v_old, s_old, p0_old, p):
            ct = wider_dtype(compute_dtype(u), m_old.dtype)
            g, x = u.astype(ct), jnp.asarray(p).astype(ct)
            x0 = jnp.where(first, x, p0_old.astype(ct))
            dot = real_dot(g, x0 - x)
            m = m_old.astype(ct) * scalar_like(b1, g) + scalar_like(w_m, g) * g
            a = abs2(g)
            v = v_old.astype(a.dtype) * scalar_like(b2, a) + scalar_like(w_v, a) * a
            s = s_old.astype(ct) * scalar_like(beta3, g) + scalar_like(w_s, g) * g
            totals = jnp.stack([scalar_like(w_num, dot) * dot, jnp.sum(jnp.abs(s))])
            store = (m.astype(m_old.dtype), v.astype(v_old.dtype), s.astype(s_old.dtype))
            return (totals, *store, x0.astype(p0_old.dtype), p)

        (delta, l1), (mu, nu, s, p0, _) = map_with_totals(
            estimate, updates, state.mu, state.nu, state.s, state.p0, params, n_totals=2, dtype=dt
        )
        numerator = state.d_numerator * beta3 + delta
        taken = (l1 > 0) & (lr > 0)
        d_hat = jnp.asarray(self.d_coef, dt) * numerator / jnp.where(taken, l1, 1)
        d_new = jnp.where(d == d0, jnp.maximum(d, d_hat), d)
        d_max = jnp.maximum(state.d_max, d_hat)
        d_new = jnp.minimum(d_max, d_new * jnp.asarray(self.growth_rate, dt))
        scale = d * c  # dlr / lr: the old d, as the reference's step
        wd = self.weight_decay

        # b1 = 0: the reference steps along d g with the new d (m holds the old d's d g).
        b1_value = concrete_number(b1)
        no_momentum = (b1 == 0) if b1_value is None else (b1_value == 0)

        def step(u, m, v, p):
            ct = m.dtype
            if no_momentum is not False:
                m = jnp.where(no_momentum, scalar_like(d_new, m) * u.astype(ct), m)
            a = v.astype(jnp.finfo(ct).dtype)
            out = m / (jnp.sqrt(a) + scalar_like(d_new * jnp.asarray(self.eps, dt), a)).astype(ct)
            out = scalar_like(scale, out) * out
            if wd is not None:
                out = out + scalar_like(scale * wd, out) * jnp.asarray(p).astype(ct)
            return (jnp.where(taken, out, 0).astype(u.dtype),)

        (out,) = map_updates(step, updates, mu, nu, params)
        new = ProdigyState(
            count=state.count,
            k=safe_increment(state.k),
            d=d_new.astype(dt),
            d_max=d_max.astype(dt),
            d_numerator=numerator.astype(dt),
            mu=mu,
            nu=nu,
            s=s,
            p0=p0,
        )
        # A step not taken changes nothing but the update count and the first point (the
        # reference records x0 at its first call, taken or not).
        new = select_tree(taken, new, state)
        return out, new._replace(count=safe_increment(state.count), p0=p0)


def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    *,
    betas: tuple[Scalar, Scalar] = (0.9, 0.999),
    beta3: Scalar | None = None,
    eps: Scalar = 1e-8,
    weight_decay: Scalar | None = None,
    decouple: bool = True,
    use_bias_correction: bool = False,
    safeguard_warmup: bool = False,
    d0: Scalar = 1e-6,
    d_coef: Scalar = 1.0,
    growth_rate: Scalar = math.inf,
):
    """Prodigy, exactly prodigyopt 1.1.2's ``Prodigy`` (one parameter group).

    = chain([add_decayed_weights(wd) if not decouple], scale_by_prodigy(lr, ...),
    scale_by_learning_rate(lr)). Leave lr at 1 (it multiplies the learned step size d).
    prodigyopt's ``slice_p`` (statistics on every p-th entry) and ``fsdp_in_use`` are
    not provided: the sums here are over whole, possibly sharded, arrays.

    Args:
      learning_rate: lr >= 0, a number or a schedule, multiplying the learned step size.
        Default 1.0 (prodigyopt).
      betas: (b1, b2), decays of Adam's two moments. Default (0.9, 0.999) (prodigyopt).
      beta3: decay of the estimate's sums, or None: sqrt(b2). Default None (prodigyopt).
      eps: > 0, added to sqrt(v) as d eps. Default 1e-8 (prodigyopt).
      weight_decay: coefficient wd >= 0, or None: no term. Default None (prodigyopt's 0).
      decouple: True: AdamW-style decay, the step adds dlr wd x; False: wd x added to the
        gradient (L2). Default True (prodigyopt).
      use_bias_correction: Adam's bias correction in the step size. Default False
        (prodigyopt).
      safeguard_warmup: leave lr out of the estimate's denominator (for warm-up
        schedules). Default False (prodigyopt).
      d0: > 0, the initial step-size estimate. Default 1e-6 (prodigyopt).
      d_coef: > 0, multiplies the estimate. Default 1.0 (prodigyopt).
      growth_rate: > 0 (inf: no limit), the largest factor d grows by per step. Default
        inf (prodigyopt).

    Example:
      >>> tx = gx.prodigy()
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
    coupled = None if decouple else weight_decay
    return named_chain(
        "prodigy",
        maybe_weight_decay(coupled),
        scale_by_prodigy(
            learning_rate,
            b1,
            b2,
            beta3,
            eps,
            weight_decay if decouple else None,
            use_bias_correction=use_bias_correction,
            safeguard_warmup=safeguard_warmup,
            d0=d0,
            d_coef=d_coef,
            growth_rate=growth_rate,
        ),
        scale_by_learning_rate(learning_rate),
    )

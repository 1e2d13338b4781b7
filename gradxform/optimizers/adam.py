"""Adam family: ``scale_by_adam``, ``scale_by_nadam`` and adam, adamw, amsgrad, nadam.

All moments follow torch.optim (2.x) exactly: m <- m + (1 - b1)(g - m), v <- b2 v +
(1 - b2)|g|^2, bias corrections 1 - b^t with t the 1-based step, eps added to the
bias-corrected root. Per-step scalars (bias corrections) are computed once per update,
not per leaf.
"""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import Any, NamedTuple

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
from .._typing import PyTree, Scalar, ScalarOrSchedule
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay
from ._moments import bias_correction, check_betas, init_moments, store_moments, update_moments
from ._quantize import Int8Blocks, check_storage, load_slot, store_slot

__all__ = ["scale_by_adam", "scale_by_nadam", "adam", "adamw", "amsgrad", "nadam"]


class AdamState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: updates so far
    # like params, mu_dtype (with moment_storage: a QuantizedArray per leaf): first moment
    mu: PyTree
    nu: PyTree  # like params, real nu_dtype (or a QuantizedArray of sqrt(v)): second moment
    nu_max: PyTree  # like nu when amsgrad, else None: running max of nu


class scale_by_adam(GradientTransformation):
    """Adam's direction (Kingma & Ba, 2015), torch.optim.Adam semantics.

    m_t = b1 m + (1 - b1) g;  v_t = b2 v + (1 - b2) |g|^2;  (amsgrad: v_t <- max(v_max, v_t))
    u = m_hat / (sqrt(v_t / (1 - b2^t) + eps_root) + eps),  m_hat = m_t / (1 - b1^t).
    ``nesterov=True`` uses m_hat = b1 m_t / (1 - b1^{t+1}) + (1 - b1) g / (1 - b1^t)
    (Dozat, 2016). ``bias_correction=False`` drops both 1 - b^t factors. Arguments after
    ``eps_root`` are keyword-only (Optax's fifth positional argument is ``mu_dtype``).

    Args:
      b1: decay of the first moment, in [0, 1). Default 0.9 (Kingma & Ba, 2015).
      b2: decay of the second moment, in [0, 1). Default 0.999 (Kingma & Ba, 2015).
      eps: > 0, added to the root in the denominator. Default 1e-8 (Kingma & Ba, 2015).
      eps_root: >= 0, added inside the root. Default 0 (torch.optim.Adam).
      bias_correction: divide the moments by 1 - b^t. Default True.
      amsgrad: use the running max of v (Reddi et al., 2018; the max is over the raw v,
        as torch). Default False (torch.optim.Adam).
      nesterov: Nesterov momentum (NAdam's m_hat without its schedule, Dozat, 2016).
        Default False.
      mu_dtype: storage dtype of m. Default None: the parameter dtype, at least float32.
      nu_dtype: storage dtype of v (real). Default None: the parameter dtype, at least
        float32.
      moment_storage: ``gx.Int8Blocks(...)``: m, v (as sqrt(v)) and v_max in 8-bit
        blocks (then mu_dtype and nu_dtype must be None), or None. Default None.

    Example:
      >>> tx = gx.scale_by_adam()
      >>> g = jnp.array([0.5, -2.0])
      >>> state = tx.init(g)
      >>> u, state = tx.update(g, state)
      >>> u.round(4)  # m_hat / sqrt(v_hat) = g / |g| on the first step
      Array([ 1., -1.], dtype=float32)
      >>> int(state.count)
      1
    """

    b1: Scalar = 0.9
    b2: Scalar = 0.999
    eps: Scalar = 1e-8
    eps_root: Scalar = 0.0
    _: KW_ONLY
    bias_correction: bool = static_field(default=True)
    amsgrad: bool = static_field(default=False)
    nesterov: bool = static_field(default=False)
    mu_dtype: DTypeLike | None = static_field(default=None)
    nu_dtype: DTypeLike | None = static_field(default=None)
    moment_storage: Int8Blocks | None = static_field(default=None)

    def __post_init__(self):
        check_betas("scale_by_adam", self.b1, self.b2, self.eps)
        check_hparam("scale_by_adam", "eps_root", self.eps_root, low=0)
        check_storage("scale_by_adam", self.moment_storage, self.mu_dtype, self.nu_dtype)

    def init(self, params):
        store = self.moment_storage
        mu, nu = init_moments(params, self.mu_dtype, self.nu_dtype, store)
        nu_max = init_moments(params, None, self.nu_dtype, store)[1] if self.amsgrad else None
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

        def f(u, m_old, v_old, vmax_old):
            g = u.astype(compute_dtype(u))
            m, v = update_moments(g, load_slot(m_old), load_slot(v_old), b1, b2)
            vmax = jnp.maximum(load_slot(vmax_old).astype(v.dtype), v) if self.amsgrad else v
            if self.nesterov:
                m_hat = scalar_like(b1 * c1_next, g) * m + scalar_like((1 - b1) * c1, g) * g
            else:
                m_hat = m * scalar_like(c1, g)
            denom = jnp.sqrt(vmax * scalar_like(c2, v) + scalar_like(self.eps_root, v))
            out = m_hat / (denom + scalar_like(self.eps, v)).astype(g.dtype)
            m, v = store_moments(m, v, m_old, v_old)
            return out.astype(u.dtype), m, v, store_slot(vmax, vmax_old) if self.amsgrad else v

        updates, mu, nu, vmax = map_updates(f, updates, state.mu, state.nu, nu_max, n_out=4)
        return updates, AdamState(count=count, mu=mu, nu=nu, nu_max=vmax if self.amsgrad else None)


class NadamState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar
    mu_product: jax.Array  # scalar (float64 under x64): prod_{i<=t} mu_i
    mu: PyTree  # like params, mu_dtype
    nu: PyTree  # like params, real nu_dtype


class scale_by_nadam(GradientTransformation):
    """NAdam's direction (Dozat, 2016) with torch.optim.NAdam's momentum schedule.

    mu_t = b1 (1 - 0.5 * 0.96^(t psi)), psi = ``momentum_decay``; P_t = prod_{i<=t} mu_i;
    m, v as Adam;  denom = sqrt(v_t / (1 - b2^t)) + eps;
    u = (1 - mu_t) / (1 - P_t) * g / denom + mu_{t+1} / (1 - P_t mu_{t+1}) * m_t / denom.

    Args:
      b1: decay of the first moment, in [0, 1). Default 0.9 (torch.optim.NAdam).
      b2: decay of the second moment, in [0, 1). Default 0.999 (torch.optim.NAdam).
      eps: > 0, added to the root in the denominator. Default 1e-8 (torch.optim.NAdam).
      momentum_decay: psi >= 0 of the momentum schedule. Default 4e-3 (Dozat, 2016;
        torch.optim.NAdam).
      mu_dtype: storage dtype of m. Default None: the parameter dtype, at least float32.
      nu_dtype: storage dtype of v (real). Default None: the parameter dtype, at least
        float32.

    Example:
      >>> tx = gx.scale_by_nadam()
      >>> g = jnp.array([0.5, -2.0])
      >>> state = tx.init(g)
      >>> u, state = tx.update(g, state)
      >>> u.round(4)  # the momentum schedule weighs g a little more than Adam
      Array([ 1.0565, -1.0565], dtype=float32)
    """

    b1: Scalar = 0.9
    b2: Scalar = 0.999
    eps: Scalar = 1e-8
    momentum_decay: Scalar = 4e-3
    mu_dtype: DTypeLike | None = static_field(default=None)
    nu_dtype: DTypeLike | None = static_field(default=None)

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
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    *,
    amsgrad: bool = False,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
    eps_root: Scalar = 0.0,
    nesterov: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    moment_storage: Int8Blocks | None = None,
):
    """Adam, exactly torch.optim.Adam (weight decay is coupled L2, added to the gradient).

    p <- p - lr_t * m_hat / (sqrt(v_hat) + eps), with g = grad + wd p.
    = chain(add_decayed_weights(wd), scale_by_adam(b1, b2, eps, ...),
            scale_by_learning_rate(lr)); no decay term when ``weight_decay`` is None (the
    default; see ``sgd``). Arguments after ``eps`` are keyword-only: Optax's fifth
    positional argument is ``eps_root``, torch's ``Adam(params, lr, betas, eps,
    weight_decay, amsgrad)`` has others there.

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-3
        (torch.optim.Adam).
      b1: decay of the first moment, in [0, 1). Default 0.9 (Kingma & Ba, 2015).
      b2: decay of the second moment, in [0, 1). Default 0.999 (Kingma & Ba, 2015).
      eps: > 0, added to the root in the denominator. Default 1e-8 (Kingma & Ba, 2015).
      amsgrad: use the running max of v (see ``amsgrad``). Default False
        (torch.optim.Adam).
      weight_decay: coupled L2 coefficient wd >= 0, a number or a schedule, or None:
        no term. Default None (torch.optim.Adam's 0).
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).
      eps_root: >= 0, added inside the root. Default 0.
      nesterov: Nesterov momentum (see ``scale_by_adam``). Default False.
      mu_dtype: storage dtype of m. Default None: the parameter dtype, at least float32.
      nu_dtype: storage dtype of v. Default None: the parameter dtype, at least float32.
      moment_storage: 8-bit moments, see ``scale_by_adam``. Default None.

    Example:
      >>> tx = gx.adam(learning_rate=0.5)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([0.5, 0.5])}, state, params)
      >>> updates["w"].round(4)  # -lr g / |g| on the first step
      Array([-0.5, -0.5], dtype=float32)
      >>> state.names
      ('scale_by_adam', 'scale_by_learning_rate')
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
            moment_storage=moment_storage,
        ),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    *,
    amsgrad: bool = False,
    weight_decay: ScalarOrSchedule | None = 1e-2,
    weight_decay_mask: Any = None,
    eps_root: Scalar = 0.0,
    nesterov: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    moment_storage: Int8Blocks | None = None,
):
    """AdamW (Loshchilov & Hutter, 2019), exactly torch.optim.AdamW: decoupled decay.

    p <- p - lr_t (m_hat / (sqrt(v_hat) + eps) + wd_t p).
    = chain(scale_by_adam(...), add_decayed_weights(wd, mask), scale_by_learning_rate(lr)).
    Arguments after ``eps`` are keyword-only: Optax's fifth positional argument is
    ``eps_root`` and its seventh ``weight_decay`` (whose default there is 1e-4).

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-3
        (torch.optim.AdamW).
      b1: decay of the first moment, in [0, 1). Default 0.9 (Kingma & Ba, 2015).
      b2: decay of the second moment, in [0, 1). Default 0.999 (Kingma & Ba, 2015).
      eps: > 0, added to the root in the denominator. Default 1e-8 (Kingma & Ba, 2015).
      amsgrad: use the running max of v (see ``amsgrad``). Default False.
      weight_decay: decoupled decay coefficient wd >= 0, a number or a schedule, or None:
        no term. Default 1e-2 (torch.optim.AdamW; Optax's is 1e-4).
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).
      eps_root: >= 0, added inside the root. Default 0.
      nesterov: Nesterov momentum (see ``scale_by_adam``). Default False.
      mu_dtype: storage dtype of m. Default None: the parameter dtype, at least float32.
      nu_dtype: storage dtype of v. Default None: the parameter dtype, at least float32.
      moment_storage: 8-bit moments, see ``scale_by_adam``. Default None.

    Example:
      >>> tx = gx.adamw(learning_rate=0.5, weight_decay=0.5)
      >>> params = jnp.array([1.0, 2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([0.5, 0.5]), state, params)
      >>> updates.round(4)  # -lr (g / |g| + wd p)
      Array([-0.75, -1.  ], dtype=float32)
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
            moment_storage=moment_storage,
        ),
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )


def amsgrad(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
):
    """AMSGrad (Reddi et al., 2018): torch ``Adam(amsgrad=True)``.

    v_max <- max(v_max, v_t);  p <- p - lr_t m_hat / (sqrt(v_max / (1 - b2^t)) + eps).
    The max is over the raw v_t, as torch (Optax's ``amsgrad`` takes it over the
    bias-corrected v_hat). Arguments after ``eps`` are keyword-only (Optax's fifth
    positional argument is ``eps_root``).

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-3
        (torch.optim.Adam).
      b1: decay of the first moment, in [0, 1). Default 0.9 (Kingma & Ba, 2015).
      b2: decay of the second moment, in [0, 1). Default 0.999 (Kingma & Ba, 2015).
      eps: > 0, added to the root in the denominator. Default 1e-8 (Kingma & Ba, 2015).
      weight_decay: coupled L2 coefficient wd >= 0, a number or a schedule, or None:
        no term. Default None.
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).
      mu_dtype: storage dtype of m. Default None: the parameter dtype, at least float32.
      nu_dtype: storage dtype of v and v_max. Default None: the parameter dtype, at least
        float32.

    Example:
      >>> tx = gx.amsgrad(learning_rate=0.1)
      >>> params = jnp.array([1.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([2.0]), state, params)
      >>> updates, state = tx.update(jnp.array([0.0]), state, params)
      >>> state.scale_by_adam.nu_max  # the max keeps the first step's v
      Array([0.004], dtype=float32)
    """
    tx = adam(
        learning_rate,
        b1,
        b2,
        eps,
        amsgrad=True,
        weight_decay=weight_decay,
        weight_decay_mask=weight_decay_mask,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )
    return named_chain("amsgrad", *tx.transforms)


def nadam(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
    momentum_decay: Scalar = 4e-3,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
):
    """NAdam, exactly torch.optim.NAdam (coupled L2 weight decay; lr default 2e-3).

    = chain(add_decayed_weights(wd), scale_by_nadam(b1, b2, eps, momentum_decay),
            scale_by_learning_rate(lr)). Arguments after ``eps`` are keyword-only (Optax's
    fifth positional argument is ``eps_root``; its ``nadam`` is Adam with Nesterov
    momentum, without torch's momentum schedule: ``gx.adam(nesterov=True)``).

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 2e-3
        (torch.optim.NAdam).
      b1: decay of the first moment, in [0, 1). Default 0.9 (torch.optim.NAdam).
      b2: decay of the second moment, in [0, 1). Default 0.999 (torch.optim.NAdam).
      eps: > 0, added to the root in the denominator. Default 1e-8 (torch.optim.NAdam).
      weight_decay: coupled L2 coefficient wd >= 0, a number or a schedule, or None:
        no term. Default None (torch.optim.NAdam's 0).
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).
      momentum_decay: psi >= 0 of the momentum schedule. Default 4e-3
        (torch.optim.NAdam).
      mu_dtype: storage dtype of m. Default None: the parameter dtype, at least float32.
      nu_dtype: storage dtype of v. Default None: the parameter dtype, at least float32.

    Example:
      >>> tx = gx.nadam(learning_rate=0.5)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([0.5, -0.5]), state, params)
      >>> updates.round(3)
      Array([-0.528,  0.528], dtype=float32)
    """
    return named_chain(
        "nadam",
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_nadam(b1, b2, eps, momentum_decay, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )

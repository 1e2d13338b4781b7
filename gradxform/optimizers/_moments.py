"""Moment helpers shared by the Adam-like families (adam, adamax, radam, lion).

Kept in one place so that every family updates, stores and bias-corrects its moments the
same way: torch.optim's order of operations, storage dtypes fixed at ``init``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from .._checks import check_hparam, concrete_number
from .._leafwise import abs2, map_params, new_slot, scalar_dtype, scalar_like, slot_dtype
from ._quantize import store_slot


def check_betas(owner: str, b1: Any, b2: Any, eps: Any) -> None:
    check_hparam(owner, "b1", b1, low=0, high=1, high_open=True)
    check_hparam(owner, "b2", b2, low=0, high=1, high_open=True)
    check_hparam(owner, "eps", eps, low=0, low_open=True)


def init_moments(params, mu_dtype, nu_dtype, storage=None):
    """Zero first moments (mu_dtype) and real second moments (nu_dtype) like params, or,
    with ``storage`` (an ``Int8Blocks``), 8-bit slots (the second moment as sqrt(v))."""
    if storage is not None:
        mu = map_params(storage.zeros, params)
        return mu, map_params(lambda p: storage.zeros(p, sqrt=True), params)
    mu = map_params(lambda p: new_slot(p, slot_dtype(p, mu_dtype)), params)
    nu = map_params(lambda p: new_slot(p, slot_dtype(p, nu_dtype, real=True)), params)
    return mu, nu


def update_moments(g, m, v, b1, b2):
    """m <- m + (1 - b1)(g - m) (torch's lerp), v <- b2 v + (1 - b2)|g|^2, in g's dtype."""
    real = jnp.finfo(g.dtype).dtype
    m = m.astype(g.dtype)
    m = m + scalar_like(1 - b1, g) * (g - m)
    v = scalar_like(b2, v.astype(real)) * v.astype(real) + scalar_like(1 - b2, abs2(g)) * abs2(g)
    return m, v


def store_moments(m, v, m_old, v_old):
    """New moments in the storage dtypes of the old ones (chosen at init from the
    parameter and ``mu_dtype`` / ``nu_dtype``; 8-bit slots are encoded): an update of
    another dtype must not change the state's dtypes (a scan carry or a jitted step
    would break or retrace)."""
    return store_slot(m, m_old), store_slot(v, v_old)


def bias_correction(beta: Any, t: jax.Array) -> jax.Array:
    """1 - beta^t, as accurate as the 1 - beta used by the moment update.

    Under x64 this is torch's own double arithmetic. In float32, 1 - beta^t cancels
    catastrophically (b2 = 0.999 rounds to 0.99900001, so 1 - b2^1 is off by 1e-5 against
    the exact 1 - b2 the moments use); -expm1(t log beta), with log beta taken in double
    for Python numbers, is accurate to float32 rounding.
    """
    if scalar_dtype() == jnp.float64:
        return 1 - jnp.asarray(beta, jnp.float64) ** t
    concrete = concrete_number(beta)
    log_beta = (
        math.log(concrete)
        if concrete is not None and concrete > 0
        else jnp.log(jnp.asarray(beta, scalar_dtype()))
    )
    return -jnp.expm1(t * log_beta)

"""Annealed Gaussian gradient noise (Neelakantan et al., 2015)."""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._checks import check_hparam, check_param_dtypes, is_none
from ._leafwise import compute_dtype, map_updates, safe_increment, scalar_dtype, zero_count
from ._module import static_field
from ._typing import Scalar, TreeDef
from .base import GradientTransformation

__all__ = ["add_noise"]


class AddNoiseState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar
    key: jax.Array  # PRNG key, split once per update


class add_noise(GradientTransformation):
    """Adds annealed noise: u <- u + N(0, sigma_t^2), sigma_t^2 = eta / (1 + t)**gamma.

    Complex leaves get circular complex noise with the same total variance; t is the
    number of updates already applied (0 at the first). ``seed`` is keyword-only: Optax's
    third positional argument is a PRNG ``key``.

    Args:
      eta: the initial variance, > 0. Default 0.01 (Neelakantan et al., 2015).
      gamma: the annealing exponent, >= 0. Default 0.55 (Neelakantan et al., 2015).
      seed: the PRNG seed, a static int; the same seed gives the same noise. Default 0.

    Example:
      >>> tx = gx.add_noise(eta=1.0, seed=42)
      >>> grads = jnp.zeros(1000)
      >>> state = tx.init(grads)
      >>> updates, state = tx.update(grads, state)
      >>> bool(0.9 < jnp.std(updates) < 1.1)  # sigma_0 = sqrt(eta)
      True
      >>> again, _ = gx.add_noise(eta=1.0, seed=42).update(grads, tx.init(grads))
      >>> bool(jnp.all(again == updates))
      True
    """

    eta: Scalar = 0.01
    gamma: Scalar = 0.55
    _: KW_ONLY
    seed: int = static_field(default=0)

    def __post_init__(self):
        check_hparam("add_noise", "eta", self.eta, low=0, low_open=True)
        check_hparam("add_noise", "gamma", self.gamma, low=0)

    def init(self, params):
        check_param_dtypes(params, "params")
        return AddNoiseState(count=zero_count(), key=jax.random.PRNGKey(self.seed))

    def update(self, updates, state, params=None, **extra):
        dt = scalar_dtype()
        eta, gamma = (jnp.asarray(x).astype(dt) for x in (self.eta, self.gamma))
        std = jnp.sqrt(eta / (1 + state.count.astype(dt)) ** gamma)
        treedef: TreeDef
        leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
        key, *keys = jax.random.split(state.key, sum(x is not None for x in leaves) + 1)
        # One key per leaf, passed as a slot: the per-leaf function must be pure (it may
        # be traced once for many leaves).
        key_iter = iter(keys)
        key_tree = treedef.unflatten([None if x is None else next(key_iter) for x in leaves])

        def f(u, k):
            dt = compute_dtype(u)
            z = jax.random.normal(k, u.shape, dt)
            return ((u.astype(dt) + z * std.astype(dt)).astype(u.dtype),)

        updates = map_updates(f, updates, key_tree)[0]
        return updates, AddNoiseState(count=safe_increment(state.count), key=key)

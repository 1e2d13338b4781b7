"""Sharpness-aware minimization (Foret et al., 2021) and its adaptive form (ASAM, Kwon et
al., 2021) as a wrapper that takes the loss.

Each step: from the gradient g at the params p, move to the worst point of a small
neighbourhood, e = rho T^2 g / ||T g|| (T = 1, or |p| for ASAM); take ONE more gradient
there, g_adv = grad f(p + e); and hand g_adv to the wrapped optimizer, which updates p
(not p + e). Cost: one extra forward and backward pass of ``value_fn`` per step, inside
``update``. The loss comes in through ``update``'s ``value_fn`` keyword, every step.
"""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_hparam, check_params, check_transform, is_none, is_param, need_params
from .._leafwise import abs2, compute_dtype, scalar_like, wider_dtype
from .._module import static_field
from .._typing import OptState, Scalar, TreeDef
from ..base import GradientTransformation
from ..fullbatch._common import value_and_grad

__all__ = ["sam", "SamState"]


class SamState(NamedTuple):
    inner_state: OptState  # the wrapped optimizer's state (it sees the adversarial gradient)


class sam(GradientTransformation):
    """SAM (Foret et al., 2021): ``inner`` fed the gradient at the worst nearby point.

    With g the incoming gradient at p and T = 1 (SAM) or T = |p| elementwise (ASAM,
    ``adaptive=True``, Kwon et al., 2021):

    e = rho T^2 g / (||T g|| + eps);  g_adv = grad value_fn(p + e);  u = inner(g_adv).

    ||.|| is the global norm over every leaf. ``inner`` updates p itself (not p + e), as
    in the paper and pytorch_optimizer's ``SAM`` (its first_step / second_step with the
    base optimizer; same numbers up to its float32 gradient norm). Each step costs one
    extra gradient evaluation (``jax.grad`` of ``value_fn``): pass ``value_fn`` (params ->
    scalar loss, or (loss, aux); the loss of the same batch as g) to every ``update``,
    with ``params``. Optax's ``optax.contrib.sam`` instead needs the training loop to feed
    it the adversarial gradients on alternate calls; here ``update`` takes them itself.
    g_adv is the raw gradient of ``value_fn``: transforms placed before ``sam`` in a chain
    shape only the perturbation, so put gradient processing (clipping) inside ``inner``.

    Args:
      inner: the optimizer applied to the adversarial gradient.
      rho: the neighbourhood radius, >= 0 (0 gives ``inner`` alone, at the cost of the
        extra gradient). Default 0.05 (Foret et al., 2021; pytorch_optimizer's SAM; ASAM
        uses larger values, e.g. 0.5 to 2).
      adaptive: keyword-only, ASAM's scale-invariant neighbourhood (T = |p|). Default
        False.
      eps: keyword-only, >= 0, added to the norm. Default 1e-12 (pytorch_optimizer's
        ``perturb_eps``).

    Example:
      >>> def loss(p):
      ...     return jnp.sum(p**4)
      >>> tx = gx.sam(gx.sgd(learning_rate=0.1), rho=0.5)
      >>> params = jnp.array([1.0, 0.0])
      >>> state = tx.init(params)
      >>> g = jax.grad(loss)(params)  # [4, 0]: e = [0.5, 0], g_adv = 4 * 1.5**3
      >>> updates, state = tx.update(g, state, params, value_fn=loss)
      >>> updates
      Array([-1.35, -0.  ], dtype=float32)
    """

    inner: GradientTransformation
    rho: Scalar = 0.05
    _: KW_ONLY
    adaptive: bool = static_field(default=False)
    eps: Scalar = 1e-12

    def __post_init__(self):
        check_transform("sam", "inner", self.inner)
        check_hparam("sam", "rho", self.rho, low=0)
        check_hparam("sam", "eps", self.eps, low=0)
        if not isinstance(self.adaptive, bool):
            raise TypeError(f"sam: adaptive must be a bool, got {self.adaptive!r}")

    def init(self, params):
        return SamState(inner_state=self.inner.init(params))

    def update(self, updates, state, params=None, **extra):
        value_fn = extra.get("value_fn")
        if value_fn is None:
            raise ValueError(
                "sam needs the loss at every step: call tx.update(grads, state, params, "
                "value_fn=loss), with loss(params) -> scalar on the same batch as grads "
                "(sam takes one more gradient of it, at the perturbed params)"
            )
        if not callable(value_fn):
            raise TypeError(f"sam: value_fn must be callable params -> loss, got {value_fn!r}")
        need_params("sam", params)
        check_params(updates, params)
        treedef: TreeDef
        u_leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
        p_leaves = treedef.flatten_up_to(params)
        active = [is_param(u) and is_param(p) for u, p in zip(u_leaves, p_leaves)]
        pairs = [
            (jnp.asarray(u), jnp.asarray(p)) for u, p, a in zip(u_leaves, p_leaves, active) if a
        ]
        dts = [wider_dtype(compute_dtype(u), compute_dtype(p)) for u, p in pairs]
        if pairs:
            norm_dt = wider_dtype(*[jnp.finfo(dt).dtype for dt in dts])
            sq = sum(
                jnp.sum(abs2(self._t(u.astype(dt), p.astype(dt)))).astype(norm_dt)
                for (u, p), dt in zip(pairs, dts)
            )
            denom = jnp.sqrt(sq) + jnp.asarray(self.eps).astype(norm_dt)
            rho = jnp.asarray(self.rho).astype(norm_dt)
            # A zero gradient (with eps = 0) does not move: no 0 / 0.
            factor = jnp.where(denom > 0, rho / jnp.where(denom > 0, denom, 1), 0)
        perturbed = list(p_leaves)
        it = iter(zip(pairs, dts))
        for j, a in enumerate(active):
            if a:
                (u, p), dt = next(it)
                g, pc = u.astype(dt), p.astype(dt)
                w = abs2(pc).astype(dt) if self.adaptive else 1
                e = w * g * scalar_like(factor, g)
                perturbed[j] = (pc + e).astype(p.dtype)
        _, g_adv, _ = value_and_grad(value_fn, treedef.unflatten(perturbed), "sam")
        g_leaves = treedef.flatten_up_to(g_adv)
        # The adversarial gradient in the incoming updates' dtypes; leaves that were not
        # given a gradient (None, not arrays) pass through as they came.
        fed = [
            jnp.asarray(g).astype(jnp.asarray(u).dtype) if a else u
            for g, u, a in zip(g_leaves, u_leaves, active)
        ]
        new_updates, inner_state = self.inner.update(
            treedef.unflatten(fed), state.inner_state, params, **extra
        )
        return new_updates, SamState(inner_state=inner_state)

    def _t(self, g: jax.Array, p: jax.Array) -> jax.Array:
        """T g: g, or |p| g for ASAM."""
        return jnp.abs(p).astype(g.dtype) * g if self.adaptive else g

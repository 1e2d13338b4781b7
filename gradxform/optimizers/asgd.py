"""ASGD: averaged stochastic gradient descent (Polyak & Juditsky, 1992; Bottou, 2012)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_hparam, is_none, is_param, need_params
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
from .._typing import PyTree, Scalar
from ..base import GradientTransformation, named_chain

__all__ = ["scale_by_asgd", "asgd"]


class ASGDState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: steps taken
    ax: PyTree  # like params, at least float32: the running average of the iterates

    def _eval_params(self, params):
        """The averaged parameters (``gx.eval_params``): ax, or params before any step
        (torch's ax is 0 there), in each parameter's dtype; leaves not optimized pass."""
        started = self.count > 0

        def pick(p, ax):
            if not is_param(ax):
                return p
            return jnp.where(started, ax.astype(jnp.result_type(p)), p)

        return jax.tree_util.tree_map(pick, params, self.ax, is_leaf=is_none)


class scale_by_asgd(GradientTransformation):
    """ASGD's step and average, torch.optim.ASGD semantics (it owns the step: see below).

    At step t = 1, 2, ... with eta = lr / (1 + lambd lr (t - 1))^alpha and
    mu = 1 / max(1, t - 1 - t0):  g' = g + wd p;  p' = p (1 - lambd eta) - eta g';
    ax <- p' if mu = 1 else ax + mu (p' - ax).  The update is p' - p (a descent step: no
    learning-rate stage follows), and ``gx.eval_params`` returns ax. The rule owns the
    step because ax averages the parameters after it, and lr also sets eta's decay.
    Polyak & Juditsky, 1992, "Acceleration of stochastic approximation by averaging";
    the schedules are Bottou's (2012, "Stochastic gradient descent tricks"), as torch.

    Args:
      learning_rate: initial step size lr >= 0, a number. Default 1e-2 (torch.optim.ASGD).
      lambd: decay term lambd >= 0 (both eta's decay and the shrinkage p (1 - lambd eta)).
        Default 1e-4 (torch.optim.ASGD).
      alpha: power of eta's decay, >= 0. Default 0.75 (torch.optim.ASGD).
      t0: the average is of the iterates from step t0 + 2 on (ax = p until then),
        >= 0. Default 1e6 (torch.optim.ASGD).
      weight_decay: coupled L2 coefficient wd >= 0. Default 0 (torch.optim.ASGD).

    Example:
      >>> tx = gx.scale_by_asgd(learning_rate=0.5, lambd=0.0, t0=0)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> for _ in range(3):
      ...     updates, state = tx.update(jnp.array([1.0, -1.0]), state, params)
      ...     params = gx.apply_updates(params, updates)
      >>> params, state.ax  # p_3; ax = mean(p_2, p_3): the average starts at step t0 + 2
      (Array([-0.5, -0.5], dtype=float32), Array([-0.25, -0.75], dtype=float32))
    """

    learning_rate: Scalar = 1e-2
    lambd: Scalar = 1e-4
    alpha: Scalar = 0.75
    t0: Scalar = 1e6
    weight_decay: Scalar = 0.0

    def __post_init__(self):
        owner = "scale_by_asgd"
        check_hparam(owner, "learning_rate", self.learning_rate, low=0)
        check_hparam(owner, "lambd", self.lambd, low=0)
        check_hparam(owner, "alpha", self.alpha, low=0)
        check_hparam(owner, "t0", self.t0, low=0)
        check_hparam(owner, "weight_decay", self.weight_decay, low=0)

    def init(self, params):
        return ASGDState(
            count=zero_count(), ax=map_params(lambda p: new_slot(p, slot_dtype(p)), params)
        )

    def update(self, updates, state, params=None, **extra):
        need_params("scale_by_asgd", params)
        # Steps taken before this one: eta and mu are torch's values after step t - 1.
        done = state.count.astype(scalar_dtype())
        lr = jnp.asarray(self.learning_rate, scalar_dtype())
        eta = lr / (1 + self.lambd * lr * done) ** self.alpha
        mu = 1 / jnp.maximum(1, done - self.t0)
        shrink = self.lambd * eta

        def f(u, ax_old, p):
            g = u.astype(compute_dtype(u))
            pc = p.astype(g.dtype)
            g = g + scalar_like(self.weight_decay, g) * pc
            # torch: p.mul_(1 - lambd eta); p.add_(g, alpha=-eta)
            new_p = pc * scalar_like(1 - shrink, g) - scalar_like(eta, g) * g
            ax = ax_old.astype(g.dtype)
            m = scalar_like(mu, g)
            ax = jnp.where(m == 1, new_p, ax + (new_p - ax) * m)
            return (new_p - pc).astype(u.dtype), ax.astype(ax_old.dtype)

        # ax before params: a leaf that is not optimized passes through with its slot.
        updates, ax = map_updates(f, updates, state.ax, params, n_out=2)
        return updates, ASGDState(count=safe_increment(state.count), ax=ax)


def asgd(
    learning_rate: Scalar = 1e-2,
    lambd: Scalar = 1e-4,
    alpha: Scalar = 0.75,
    t0: Scalar = 1e6,
    weight_decay: Scalar = 0.0,
):
    """Averaged SGD, exactly torch.optim.ASGD; ``gx.eval_params(state, params)`` gives ax.

    p <- p (1 - lambd eta_t) - eta_t (g + wd p), eta_t = lr / (1 + lambd lr (t - 1))^alpha;
    from step t0 + 2 on (integer t0), ax is the mean of the iterates p_{t0+2}, ..., p_t.
    = chain(scale_by_asgd(lr, lambd, alpha, t0, wd)): the rule owns the step (its
    average is of the parameters after the step), so nothing may follow it that changes
    the update. Arguments in torch.optim.ASGD's order (Optax has no ASGD).

    Args:
      learning_rate: initial step size lr >= 0, a number. Default 1e-2 (torch.optim.ASGD).
      lambd: decay term lambd >= 0. Default 1e-4 (torch.optim.ASGD).
      alpha: power of eta's decay, >= 0. Default 0.75 (torch.optim.ASGD).
      t0: the average is of the iterates from step t0 + 2 on, >= 0. Default 1e6
        (torch.optim.ASGD).
      weight_decay: coupled L2 coefficient wd >= 0. Default 0 (torch.optim.ASGD).

    Example:
      >>> tx = gx.asgd(learning_rate=0.5, lambd=0.0, t0=0)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([4.0, -1.0]), state, params)
      >>> updates
      Array([-2. ,  0.5], dtype=float32)
    """
    return named_chain("asgd", scale_by_asgd(learning_rate, lambd, alpha, t0, weight_decay))

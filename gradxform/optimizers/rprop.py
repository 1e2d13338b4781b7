"""Rprop (Riedmiller & Braun, 1993): per-coordinate step sizes adapted by gradient signs."""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_hparam, concrete_number
from .._leafwise import compute_dtype, map_params, map_updates, new_slot, scalar_like, slot_dtype
from .._typing import PyTree, Scalar
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate

__all__ = ["scale_by_rprop", "rprop"]


class RpropState(NamedTuple):
    prev: PyTree  # like params: the last gradient, 0 where its sign had just flipped
    # like params: each coordinate's step size in units of the chain's learning rate
    # (1 at init); complex parameters: real and imaginary parts adapted independently
    step_size: PyTree


def _rprop_real(g, prev, s, eta_minus, eta_plus, lo, hi):
    """One Rprop step on real arrays, torch.optim.Rprop's order of operations."""
    sign = jnp.sign(g * prev)
    factor = jnp.where(sign > 0, eta_plus, jnp.where(sign < 0, eta_minus, jnp.ones_like(g)))
    s = jnp.clip(s * factor, lo, hi)
    # torch's rule: where the sign flipped, the step is skipped and the stored gradient is
    # 0, so the next step neither grows nor shrinks that coordinate's step size.
    g = jnp.where(sign < 0, jnp.zeros_like(g), g)
    return jnp.sign(g) * s, g, s


def _as_pairs(x):
    return jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)


def _from_pairs(x):
    return jax.lax.complex(x[..., 0], x[..., 1])


class scale_by_rprop(GradientTransformation):
    """Rprop's direction, torch.optim.Rprop semantics: u = sign(g') s, with per-coordinate s.

    With r = sign(g prev):  s <- clip(s * (eta_plus if r > 0, eta_minus if r < 0, 1 if
    r = 0), min_step_size, max_step_size);  g' = 0 where r < 0, else g;  prev <- g'.
    Step sizes are in units of the learning rate that follows in the chain (they start
    at 1); ``rprop`` passes torch's absolute bounds divided by its learning rate. A
    complex parameter's real and imaginary parts are two independent real coordinates
    (torch's ``view_as_real``). Riedmiller & Braun, 1993, "A direct adaptive method for
    faster backpropagation learning: the RPROP algorithm" (torch's variant: no weight
    backtracking).

    Keyword-only: Optax's ``scale_by_rprop`` takes the learning rate first and absolute
    step sizes.

    Args:
      eta_minus: factor of a step size whose gradient changed sign, in (0, 1).
        Default 0.5 (Riedmiller & Braun, 1993; torch.optim.Rprop).
      eta_plus: factor of a step size whose gradient kept its sign, > 1. Default 1.2
        (Riedmiller & Braun, 1993; torch.optim.Rprop).
      min_step_size: lower bound of the step sizes (units of the learning rate), >= 0.
        Default 1e-4 (torch.optim.Rprop's 1e-6 at its lr 1e-2).
      max_step_size: upper bound of the step sizes (units of the learning rate),
        >= min_step_size. Default 5e3 (torch.optim.Rprop's 50 at its lr 1e-2).

    Example:
      >>> tx = gx.scale_by_rprop()
      >>> state = tx.init(jnp.zeros(3))
      >>> u, state = tx.update(jnp.array([1.0, -2.0, 3.0]), state)
      >>> u, state = tx.update(jnp.array([2.0, 1.0, 0.0]), state)
      >>> u  # same sign: 1.2; flipped: step skipped (s halves); zero gradient: 0
      Array([1.2, 0. , 0. ], dtype=float32)
      >>> state.step_size
      Array([1.2, 0.5, 1. ], dtype=float32)
    """

    _: KW_ONLY
    eta_minus: Scalar = 0.5
    eta_plus: Scalar = 1.2
    min_step_size: Scalar = 1e-4
    max_step_size: Scalar = 5e3

    def __post_init__(self):
        owner = "scale_by_rprop"
        check_hparam(
            owner, "eta_minus", self.eta_minus, low=0, high=1, low_open=True, high_open=True
        )
        check_hparam(owner, "eta_plus", self.eta_plus, low=1, low_open=True)
        check_hparam(owner, "min_step_size", self.min_step_size, low=0)
        check_hparam(owner, "max_step_size", self.max_step_size, low=0)
        lo, hi = concrete_number(self.min_step_size), concrete_number(self.max_step_size)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(
                f"{owner}: min_step_size must be <= max_step_size, got {self.min_step_size!r} "
                f"> {self.max_step_size!r}"
            )

    def init(self, params):
        def step_size(p):
            dt = slot_dtype(p)
            return new_slot(p, dt, 1 + 1j if jnp.issubdtype(dt, jnp.complexfloating) else 1)

        return RpropState(
            prev=map_params(lambda p: new_slot(p, slot_dtype(p)), params),
            step_size=map_params(step_size, params),
        )

    def update(self, updates, state, params=None, **extra):
        def f(u, prev_old, s_old):
            g = u.astype(compute_dtype(u))
            complex_ = jnp.iscomplexobj(g)
            real = jnp.real(g)  # hyperparameters in the real compute dtype
            hp = [
                scalar_like(h, real)
                for h in (self.eta_minus, self.eta_plus, self.min_step_size, self.max_step_size)
            ]
            prev, s = prev_old.astype(g.dtype), s_old.astype(g.dtype)
            if complex_:
                out, prev, s = _rprop_real(_as_pairs(g), _as_pairs(prev), _as_pairs(s), *hp)
                out, prev, s = _from_pairs(out), _from_pairs(prev), _from_pairs(s)
            else:
                out, prev, s = _rprop_real(g, prev, s, *hp)
            return out.astype(u.dtype), prev.astype(prev_old.dtype), s.astype(s_old.dtype)

        updates, prev, step_size = map_updates(f, updates, state.prev, state.step_size, n_out=3)
        return updates, RpropState(prev=prev, step_size=step_size)


def rprop(
    learning_rate: Scalar = 1e-2,
    *,
    etas: tuple[Any, Any] = (0.5, 1.2),
    step_sizes: tuple[Any, Any] = (1e-6, 50),
):
    """Rprop, exactly torch.optim.Rprop: sign steps with per-coordinate adapted sizes.

    p <- p - sign(g') lr s, where s starts at 1 and is multiplied by etas[1] while a
    coordinate's gradient keeps its sign and by etas[0] when it flips (that step is
    then skipped: g' = 0), with lr s kept within ``step_sizes``.
    = chain(scale_by_rprop(etas, step_sizes / lr), scale_by_learning_rate(lr)).

    ``learning_rate`` is the initial step size: after the first step the step of a
    coordinate is lr times its adapted factor, not proportional to the gradient. The
    bounds ``step_sizes`` are absolute, converted with this learning rate, which must be
    a number (torch's lr schedulers change nothing in Rprop after its first step; here a
    different lr given to a jitted update rescales every adapted step). ``etas`` and
    ``step_sizes`` are keyword-only: Optax's ``rprop`` takes ``eta_minus``, ``eta_plus``,
    ``min_step_size``, ``max_step_size`` positionally.

    Args:
      learning_rate: initial step size lr > 0, a number. Default 1e-2 (torch.optim.Rprop).
      etas: (eta_minus, eta_plus), the factors applied to a step size when its
        gradient flips sign / keeps it, 0 < eta_minus < 1 < eta_plus. Default (0.5, 1.2)
        (Riedmiller & Braun, 1993; torch.optim.Rprop).
      step_sizes: (min, max) absolute bounds of the step sizes. Default (1e-6, 50)
        (torch.optim.Rprop).

    Example:
      >>> tx = gx.rprop(learning_rate=0.5)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([4.0, -1.0]), state, params)
      >>> updates  # -lr sign(g)
      Array([-0.5,  0.5], dtype=float32)
      >>> updates, state = tx.update(jnp.array([1.0, 3.0]), state, params)
      >>> updates  # kept sign: lr 1.2; flipped: skipped
      Array([-0.6, -0. ], dtype=float32)
    """
    check_hparam("rprop", "learning_rate", learning_rate, low=0, low_open=True)
    for name, pair in (("etas", etas), ("step_sizes", step_sizes)):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"rprop: {name} must be a pair (low, high), got {pair!r}")
    return named_chain(
        "rprop",
        scale_by_rprop(
            eta_minus=etas[0],
            eta_plus=etas[1],
            min_step_size=step_sizes[0] / learning_rate,
            max_step_size=step_sizes[1] / learning_rate,
        ),
        scale_by_learning_rate(learning_rate),
    )

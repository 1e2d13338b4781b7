"""Adadelta (Zeiler, 2012): step sizes from the ratio of running RMS of steps and
gradients, so the units of the update match the parameters'."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
from jax.typing import DTypeLike

from .._checks import check_hparam
from .._leafwise import (
    abs2,
    compute_dtype,
    map_params,
    map_updates,
    new_slot,
    scalar_like,
    slot_dtype,
)
from .._module import static_field
from .._typing import PyTree, Scalar, ScalarOrSchedule
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay

__all__ = ["scale_by_adadelta", "adadelta"]


class AdadeltaState(NamedTuple):
    sq_avg: PyTree  # like params, real accumulator_dtype: E[g^2]
    delta_avg: PyTree  # like params, real accumulator_dtype: E[dx^2]


class scale_by_adadelta(GradientTransformation):
    """Adadelta's direction, torch.optim.Adadelta semantics.

    E[g^2]_t = rho E[g^2] + (1 - rho) |g|^2;  dx = sqrt(E[dx^2] + eps) / sqrt(E[g^2]_t + eps) g;
    E[dx^2]_t = rho E[dx^2] + (1 - rho) |dx|^2;  u = dx.

    Args:
      rho: decay of both running averages, in [0, 1]. Default 0.9 (torch.optim.Adadelta).
      eps: > 0, added inside both roots. Default 1e-6 (torch.optim.Adadelta).
      accumulator_dtype: storage dtype of the averages (real). Default None: the parameter
        dtype, at least float32.

    Example:
      >>> tx = gx.scale_by_adadelta(rho=0.25, eps=1.0)
      >>> g = jnp.array([2.0, -2.0])
      >>> state = tx.init(g)
      >>> u, state = tx.update(g, state)  # sqrt(0 + 1) / sqrt(0.75 * 4 + 1) * g
      >>> u
      Array([ 1., -1.], dtype=float32)
    """

    rho: Scalar = 0.9
    eps: Scalar = 1e-6
    accumulator_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        check_hparam("scale_by_adadelta", "rho", self.rho, low=0, high=1)
        check_hparam("scale_by_adadelta", "eps", self.eps, low=0, low_open=True)

    def init(self, params):
        def slot(p):
            return new_slot(p, slot_dtype(p, self.accumulator_dtype, real=True))

        return AdadeltaState(sq_avg=map_params(slot, params), delta_avg=map_params(slot, params))

    def update(self, updates, state, params=None, **extra):
        def f(u, sq, dl):
            acc = sq.dtype  # the storage dtype, chosen at init
            g = u.astype(compute_dtype(u))
            real = jnp.finfo(g.dtype).dtype
            rho = scalar_like(self.rho, sq.astype(real))
            eps = scalar_like(self.eps, sq.astype(real))
            sq = rho * sq.astype(real) + (1 - rho) * abs2(g)
            dx = (jnp.sqrt(dl.astype(real) + eps) / jnp.sqrt(sq + eps)).astype(g.dtype) * g
            dl = rho * dl.astype(real) + (1 - rho) * abs2(dx)
            return dx.astype(u.dtype), sq.astype(acc), dl.astype(acc)

        updates, sq, dl = map_updates(f, updates, state.sq_avg, state.delta_avg, n_out=3)
        return updates, AdadeltaState(sq_avg=sq, delta_avg=dl)


def adadelta(
    learning_rate: ScalarOrSchedule = 1.0,
    rho: Scalar = 0.9,
    eps: Scalar = 1e-6,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
):
    """Adadelta, exactly torch.optim.Adadelta (lr default 1.0; coupled L2 weight decay).

    = chain(add_decayed_weights(wd), scale_by_adadelta(rho, eps), scale_by_learning_rate(lr)).

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1.0
        (torch.optim.Adadelta).
      rho: decay of both running averages, in [0, 1]. Default 0.9 (torch.optim.Adadelta).
      eps: > 0, added inside both roots. Default 1e-6 (torch.optim.Adadelta).
      weight_decay: coupled L2 coefficient wd >= 0, a number or a schedule, or None:
        no term. Default None (torch.optim.Adadelta's 0).
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).

    Example:
      >>> tx = gx.adadelta(learning_rate=0.5, rho=0.25, eps=1.0)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([2.0, -2.0]), state, params)
      >>> updates  # -lr sqrt(eps) / sqrt((1 - rho) g^2 + eps) g
      Array([-0.5,  0.5], dtype=float32)
    """
    return named_chain(
        "adadelta",
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_adadelta(rho, eps),
        scale_by_learning_rate(learning_rate),
    )

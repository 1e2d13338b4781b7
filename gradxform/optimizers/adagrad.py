"""Adagrad (Duchi et al., 2011): per-coordinate step sizes from the sum of squared
gradients."""

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
from ..schedules import inverse_time_decay
from ..weight_decay import maybe_weight_decay

__all__ = ["scale_by_rss", "adagrad"]


class RssState(NamedTuple):
    sum_of_squares: PyTree  # like params, real accumulator_dtype


class scale_by_rss(GradientTransformation):
    """Divides by the root of the summed squares (Adagrad's direction).

    s_t = s_{t-1} + |g|^2 (s_0 = initial_accumulator_value);
    u = g / (sqrt(s_t) + eps), or g / sqrt(s_t + eps) with ``eps_in_sqrt=True``.

    Args:
      initial_accumulator_value: s_0 >= 0. Default 0 (torch.optim.Adagrad).
      eps: > 0, added to the denominator. Default 1e-10 (torch.optim.Adagrad).
      eps_in_sqrt: add eps inside the root (Optax's placement). Default False
        (torch.optim.Adagrad).
      accumulator_dtype: storage dtype of s (real). Default None: the parameter dtype, at
        least float32.

    Example:
      >>> tx = gx.scale_by_rss()
      >>> g = jnp.array([3.0, -4.0])
      >>> state = tx.init(g)
      >>> u, state = tx.update(g, state)
      >>> u
      Array([ 1., -1.], dtype=float32)
      >>> u, state = tx.update(g, state)  # g / sqrt(2 g^2)
      >>> u.round(4)
      Array([ 0.7071, -0.7071], dtype=float32)
    """

    initial_accumulator_value: Scalar = 0.0
    eps: Scalar = 1e-10
    eps_in_sqrt: bool = static_field(default=False)
    accumulator_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        check_hparam(
            "scale_by_rss", "initial_accumulator_value", self.initial_accumulator_value, low=0
        )
        check_hparam("scale_by_rss", "eps", self.eps, low=0, low_open=True)

    def init(self, params):
        def slot(p):
            dt = slot_dtype(p, self.accumulator_dtype, real=True)
            return new_slot(p, dt, self.initial_accumulator_value)

        return RssState(sum_of_squares=map_params(slot, params))

    def update(self, updates, state, params=None, **extra):
        def f(u, s_old):
            g = u.astype(compute_dtype(u))
            s = s_old.astype(jnp.finfo(g.dtype).dtype) + abs2(g)
            eps = scalar_like(self.eps, s)
            denom = jnp.sqrt(s + eps) if self.eps_in_sqrt else jnp.sqrt(s) + eps
            return (g / denom.astype(g.dtype)).astype(u.dtype), s.astype(s_old.dtype)

        updates, s = map_updates(f, updates, state.sum_of_squares, n_out=2)
        return updates, RssState(sum_of_squares=s)


def adagrad(
    learning_rate: ScalarOrSchedule = 1e-2,
    *,
    lr_decay: Scalar | None = None,
    weight_decay: ScalarOrSchedule | None = None,
    initial_accumulator_value: Scalar = 0.0,
    eps: Scalar = 1e-10,
    eps_in_sqrt: bool = False,
    weight_decay_mask: Any = None,
):
    """Adagrad, exactly torch.optim.Adagrad.

    g = grad + wd p;  s <- s + g^2;  p <- p - lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps).
    = chain(add_decayed_weights(wd), scale_by_rss(s_0, eps, eps_in_sqrt),
            scale_by_learning_rate(inverse_time_decay(lr, lr_decay))); a term whose
    argument is None (the default) is left out (see ``sgd``). Arguments after
    ``learning_rate`` are keyword-only: Optax's second positional argument is
    ``initial_accumulator_value``, torch's ``lr_decay``.

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-2
        (torch.optim.Adagrad).
      lr_decay: torch's lr_decay >= 0, or None: a constant learning rate; not
        combinable with a learning-rate schedule. Default None (torch.optim.Adagrad's 0).
      weight_decay: coupled L2 coefficient wd >= 0, a number or a schedule, or None: no
        term. Default None (torch.optim.Adagrad's 0).
      initial_accumulator_value: s_0 >= 0. Default 0 (torch.optim.Adagrad).
      eps: > 0, added to the denominator. Default 1e-10 (torch.optim.Adagrad).
      eps_in_sqrt: add eps inside the root. Default False (torch.optim.Adagrad).
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).

    Example:
      >>> tx = gx.adagrad(learning_rate=0.5)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([3.0, -4.0]), state, params)
      >>> updates  # -lr g / |g| on the first step
      Array([-0.5,  0.5], dtype=float32)
    """
    # None, not 0, means no decay: whether the learning rate becomes a schedule must not
    # depend on a value that may be traced (see maybe_weight_decay).
    if lr_decay is not None:
        check_hparam("adagrad", "lr_decay", lr_decay, low=0)
        if callable(learning_rate):
            raise ValueError("adagrad: give either a learning_rate schedule or lr_decay, not both")
        # Checked here: inside the schedule below it would no longer be range-checked.
        check_hparam("adagrad", "learning_rate", learning_rate, low=0)
        learning_rate = inverse_time_decay(learning_rate, decay_rate=lr_decay)
    return named_chain(
        "adagrad",
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_rss(initial_accumulator_value, eps, eps_in_sqrt),
        scale_by_learning_rate(learning_rate),
    )

"""RMSprop (Hinton, 2012 lecture 6e): divide by a running root mean square of gradients."""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import Any, NamedTuple

import jax.numpy as jnp
from jax.typing import DTypeLike

from .._checks import check_hparam, is_active
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
from .sgd import scale_by_momentum

__all__ = ["scale_by_rms", "rmsprop"]


class RmsState(NamedTuple):
    nu: PyTree  # like params, real accumulator_dtype: running mean of |g|^2
    mu: PyTree  # like params when centered, else None: running mean of g


class scale_by_rms(GradientTransformation):
    """Divides by the running RMS of the gradient, torch.optim.RMSprop semantics.

    nu_t = decay nu + (1 - decay) |g|^2 (nu_0 = initial_scale);
    centered (Graves, 2013): mu_t = decay mu + (1 - decay) g, var = nu_t - |mu_t|^2,
    else var = nu_t;  u = g / (sqrt(var) + eps), or g / sqrt(var + eps) if ``eps_in_sqrt``.
    Arguments after ``eps`` are keyword-only (Optax's third positional argument is
    ``initial_scale``; its defaults are decay 0.9 and eps inside the root).

    Args:
      decay: decay of nu (torch's ``alpha``), in [0, 1]. Default 0.99 (torch.optim.RMSprop).
      eps: > 0, added to the denominator. Default 1e-8 (torch.optim.RMSprop).
      centered: divide by the running variance instead of the second moment (Graves,
        2013). Default False (torch.optim.RMSprop).
      eps_in_sqrt: add eps inside the root. Default False (torch.optim.RMSprop).
      initial_scale: nu_0 >= 0. Default 0 (torch.optim.RMSprop).
      accumulator_dtype: storage dtype of nu (and mu). Default None: the parameter dtype,
        at least float32.

    Example:
      >>> tx = gx.scale_by_rms(decay=0.75)
      >>> g = jnp.array([2.0, -0.5])
      >>> state = tx.init(g)
      >>> u, state = tx.update(g, state)  # g / sqrt(0.25 g^2)
      >>> u
      Array([ 2., -2.], dtype=float32)
    """

    decay: Scalar = 0.99
    eps: Scalar = 1e-8
    _: KW_ONLY
    centered: bool = static_field(default=False)
    eps_in_sqrt: bool = static_field(default=False)
    initial_scale: Scalar = 0.0
    accumulator_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        check_hparam("scale_by_rms", "decay", self.decay, low=0, high=1)
        check_hparam("scale_by_rms", "eps", self.eps, low=0, low_open=True)
        check_hparam("scale_by_rms", "initial_scale", self.initial_scale, low=0)

    def init(self, params):
        def nu(p):
            dt = slot_dtype(p, self.accumulator_dtype, real=True)
            return new_slot(p, dt, self.initial_scale)

        mu = None
        if self.centered:
            mu = map_params(lambda p: new_slot(p, slot_dtype(p, self.accumulator_dtype)), params)
        return RmsState(nu=map_params(nu, params), mu=mu)

    def update(self, updates, state, params=None, **extra):
        mu_tree = state.mu if self.centered else state.nu

        def f(u, nu_old, mu_old):
            g = u.astype(compute_dtype(u))
            real = jnp.finfo(g.dtype).dtype
            d = scalar_like(self.decay, nu_old.astype(real))
            nu = d * nu_old.astype(real) + (1 - d) * abs2(g)
            var, mu = nu, mu_old
            if self.centered:
                mu = mu_old.astype(g.dtype)
                mu = mu + scalar_like(1 - self.decay, g) * (g - mu)
                if is_active(self.decay):
                    # nu - |mu|^2 cancels; under jit XLA fuses it into a multiply-add
                    # (|mu|^2 unrounded, nu rounded), which can land just below 0: the
                    # root of that was NaN. A variance is >= 0: clamp.
                    var = jnp.maximum(nu - abs2(mu), 0)
                else:
                    # decay 0: nu = |g|^2 and mu = g, so the variance is exactly 0; the
                    # formula would give +-rounding noise under jit (g / sqrt(noise)).
                    var = jnp.zeros_like(nu)
            eps = scalar_like(self.eps, var)
            denom = jnp.sqrt(var + eps) if self.eps_in_sqrt else jnp.sqrt(var) + eps
            # Stored in the slots' own dtypes (chosen at init), whatever u's dtype.
            return (
                (g / denom.astype(g.dtype)).astype(u.dtype),
                nu.astype(nu_old.dtype),
                mu.astype(mu_old.dtype),
            )

        updates, nu, mu = map_updates(f, updates, state.nu, mu_tree, n_out=3)
        return updates, RmsState(nu=nu, mu=mu if self.centered else None)


def rmsprop(
    learning_rate: ScalarOrSchedule = 1e-2,
    decay: Scalar = 0.99,
    eps: Scalar = 1e-8,
    *,
    momentum: ScalarOrSchedule | None = None,
    centered: bool = False,
    eps_in_sqrt: bool = False,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
):
    """RMSprop, exactly torch.optim.RMSprop (``decay`` is torch's ``alpha``).

    g = grad + wd p;  nu <- decay nu + (1 - decay) g^2;  d = g / (sqrt(nu) + eps);
    b <- momentum b + d (with momentum);  p <- p - lr_t b.
    = chain(add_decayed_weights(wd), scale_by_rms(decay, eps, centered=centered, ...),
            scale_by_momentum(momentum), scale_by_learning_rate(lr)); a term whose
    argument is None (the default) is left out (see ``sgd``). The learning rate sits
    outside the momentum buffer, as in torch. Arguments after ``eps`` are keyword-only:
    Optax's fourth positional argument is ``initial_scale``, torch's ``weight_decay``.

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-2
        (torch.optim.RMSprop).
      decay: decay of nu (torch's ``alpha``), in [0, 1]. Default 0.99
        (torch.optim.RMSprop).
      eps: > 0, added to the denominator. Default 1e-8 (torch.optim.RMSprop).
      momentum: in [0, 1), a number or a schedule, or None: no buffer. Default None
        (torch.optim.RMSprop's 0, Optax's None; a 0 keeps a buffer).
      centered: divide by the running variance (Graves, 2013). Default False
        (torch.optim.RMSprop).
      eps_in_sqrt: add eps inside the root. Default False (torch.optim.RMSprop).
      weight_decay: coupled L2 coefficient wd >= 0, a number or a schedule, or None: no
        term. Default None (torch.optim.RMSprop's 0).
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).

    Example:
      >>> tx = gx.rmsprop(learning_rate=0.25, decay=0.75)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([2.0, -0.5]), state, params)
      >>> updates  # -lr g / sqrt(0.25 g^2)
      Array([-0.5,  0.5], dtype=float32)
    """
    return named_chain(
        "rmsprop",
        maybe_weight_decay(weight_decay, weight_decay_mask),
        scale_by_rms(decay, eps, centered=centered, eps_in_sqrt=eps_in_sqrt),
        # None, not 0, leaves the buffer out: a static choice (see maybe_weight_decay).
        None if momentum is None else scale_by_momentum(momentum),
        scale_by_learning_rate(learning_rate),
    )

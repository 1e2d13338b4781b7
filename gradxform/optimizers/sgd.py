"""Gradient descent and momentum: ``scale_by_momentum``, ``ema`` and the SGD family.

Two momentum forms, one primitive. ``scale_by_momentum`` keeps a velocity
v <- mu v + (1 - dampening) u of whatever it receives, so its position in a chain
decides the form:

- PyTorch form, ``chain(scale_by_momentum(mu), scale_by_learning_rate(lr))``:
  v_t = mu v_{t-1} + g_t,  p_{t+1} = p_t - lr_t v_t  (torch.optim.SGD; used by ``sgd``).
- Heavy-ball form, ``chain(scale_by_learning_rate(lr), scale_by_momentum(mu))``:
  v_t = mu v_{t-1} - lr_t g_t,  p_{t+1} = p_t + v_t, i.e. the course's
  W <- W - a dJ/dW + b dW (Polyak 1964; used by ``heavy_ball``).

With a constant learning rate both give the same trajectory. They differ when the
learning rate changes: the PyTorch form rescales the whole accumulated velocity by the
current lr, the heavy-ball form keeps each past step at the lr it was taken with.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .._checks import check_hparam, is_active
from .._leafwise import (
    cast,
    compute_dtype,
    map_params,
    map_updates,
    new_slot,
    resolve,
    safe_increment,
    scalar_dtype,
    scalar_like,
    slot_dtype,
    zero_count,
)
from .._module import static_field
from .._typing import PyTree, Scalar, ScalarOrSchedule
from ..base import GradientTransformation, named_chain
from ..scaling import scale_by_learning_rate
from ..weight_decay import maybe_weight_decay

__all__ = ["scale_by_momentum", "ema", "sgd", "momentum", "nesterov", "heavy_ball"]


class MomentumState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: updates so far
    velocity: PyTree  # like params, accumulator_dtype (default: at least float32)


class scale_by_momentum(GradientTransformation):
    """Momentum buffer, torch.optim.SGD semantics.

    v_1 = u_1;  v_t = mu v_{t-1} + (1 - dampening) u_t;
    output v_t, or u_t + mu v_t with ``nesterov=True`` (Sutskever et al., 2013 as in torch).
    The first step takes u undamped, as torch does.

    Args:
      momentum: mu in [0, 1), a number or a schedule t -> mu. Default 0.9.
      dampening: damping of new updates, in [0, 1]. Default 0 (torch.optim.SGD).
      nesterov: output u_t + mu v_t instead of v_t; needs dampening == 0. Default False
        (torch.optim.SGD).
      accumulator_dtype: storage dtype of v. Default None: the parameter dtype, at least
        float32.

    Example:
      >>> tx = gx.scale_by_momentum(momentum=0.5)
      >>> g = jnp.array([1.0, -2.0])
      >>> state = tx.init(g)
      >>> u, state = tx.update(g, state)
      >>> u
      Array([ 1., -2.], dtype=float32)
      >>> u, state = tx.update(g, state)
      >>> u
      Array([ 1.5, -3. ], dtype=float32)
    """

    momentum: ScalarOrSchedule = 0.9
    dampening: Scalar = 0.0
    nesterov: bool = static_field(default=False)
    accumulator_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        o = "scale_by_momentum"
        check_hparam(o, "momentum", self.momentum, low=0, high=1, high_open=True, schedule=True)
        check_hparam(o, "dampening", self.dampening, low=0, high=1)
        if self.nesterov and is_active(self.dampening):
            raise ValueError(f"{o}: nesterov=True requires dampening=0, got {self.dampening!r}")

    def init(self, params):
        return MomentumState(
            count=zero_count(),
            velocity=map_params(
                lambda p: new_slot(p, slot_dtype(p, self.accumulator_dtype)), params
            ),
        )

    def update(self, updates, state, params=None, **extra):
        mu = resolve(self.momentum, state.count)
        # torch seeds the buffer with the raw first gradient: no dampening on step one.
        # A dampening known to be 0 (a Python number, not a traced jit argument) drops
        # the factor from every leaf's kernel: fewer ops to compile per leaf.
        damped = is_active(self.dampening)
        damp = jnp.where(state.count == 0, 0.0, jnp.asarray(self.dampening, scalar_dtype()))

        def f(u, v_old):
            g = cast(u, compute_dtype(u))
            m = scalar_like(mu, g)
            v = m * cast(v_old, g.dtype) + ((1 - scalar_like(damp, g)) * g if damped else g)
            out = g + m * v if self.nesterov else v
            return cast(out, u.dtype), cast(v, v_old.dtype)  # the slot's storage dtype

        updates, velocity = map_updates(f, updates, state.velocity, n_out=2)
        return updates, MomentumState(count=safe_increment(state.count), velocity=velocity)


class EmaState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar
    ema: PyTree  # like params, accumulator_dtype


class ema(GradientTransformation):
    """Exponential moving average of updates.

    e_t = decay e_{t-1} + (1 - decay) u_t,  e_0 = 0; output e_t / (1 - decay^t) when
    ``debias`` (Adam's first-moment correction), else e_t.

    Args:
      decay: decay of the average, in [0, 1). Default 0.9.
      debias: divide by 1 - decay^t (Kingma & Ba, 2015). Default True.
      accumulator_dtype: storage dtype of e. Default None: the parameter dtype, at least
        float32.

    Example:
      >>> tx = gx.ema(decay=0.5)
      >>> state = tx.init(jnp.zeros(1))
      >>> u, state = tx.update(jnp.array([1.0]), state)
      >>> u
      Array([1.], dtype=float32)
      >>> u, state = tx.update(jnp.array([4.0]), state)  # (0.25 * 1 + 0.5 * 4) / 0.75
      >>> u
      Array([3.], dtype=float32)
    """

    decay: Scalar = 0.9
    debias: bool = static_field(default=True)
    accumulator_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        check_hparam("ema", "decay", self.decay, low=0, high=1, high_open=True)

    def init(self, params):
        return EmaState(
            count=zero_count(),
            ema=map_params(lambda p: new_slot(p, slot_dtype(p, self.accumulator_dtype)), params),
        )

    def update(self, updates, state, params=None, **extra):
        count = safe_increment(state.count)
        t = count.astype(scalar_dtype())
        corr = 1 / (1 - jnp.asarray(self.decay, scalar_dtype()) ** t) if self.debias else 1.0

        def f(u, e_old):
            g = u.astype(compute_dtype(u))
            d = scalar_like(self.decay, g)
            e = d * e_old.astype(g.dtype) + (1 - d) * g
            return (e * scalar_like(corr, g)).astype(u.dtype), e.astype(e_old.dtype)

        updates, e = map_updates(f, updates, state.ema, n_out=2)
        return updates, EmaState(count=count, ema=e)


def sgd(
    learning_rate: ScalarOrSchedule = 1e-3,
    momentum: ScalarOrSchedule | None = None,
    *,
    dampening: Scalar = 0.0,
    nesterov: bool = False,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
):
    """Stochastic gradient descent, exactly torch.optim.SGD.

    g_t = grad + wd p;  v_t = mu v_{t-1} + (1 - dampening) g_t (v_1 = g_1);
    d_t = g_t + mu v_t if nesterov else v_t (or g_t if mu = 0);  p <- p - lr_t d_t.

    = chain(add_decayed_weights(wd), scale_by_momentum(mu, dampening, nesterov),
            scale_by_learning_rate(lr)); a term whose argument is None (the default) is
    left out. A number, 0 included, keeps its term: the chain's structure (and its
    state's) never depends on a value, which may be traced (``jit``,
    ``optax.inject_hyperparams``). Fed full-batch gradients this is plain gradient
    descent. Arguments after ``momentum`` are keyword-only: Optax's third positional
    argument is ``nesterov``, torch's fourth ``weight_decay``.

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-3
        (torch.optim.SGD).
      momentum: mu in [0, 1), a number or a schedule, or None: no buffer. Default None
        (torch.optim.SGD's 0, Optax's None; a 0 keeps a buffer, equal to the gradient).
      dampening: damping of new gradients in the buffer, in [0, 1]. Default 0
        (torch.optim.SGD).
      nesterov: Nesterov momentum; needs momentum > 0 and dampening == 0. Default False
        (torch.optim.SGD).
      weight_decay: coupled L2 coefficient wd >= 0, a number or a schedule, or None: no
        term. Default None (torch.optim.SGD's 0).
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).

    Example:
      >>> tx = gx.sgd(learning_rate=0.5, momentum=0.5)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([1.0, 2.0])}
      >>> updates, state = tx.update(grads, state, params)
      >>> updates["w"]
      Array([-0.5, -1. ], dtype=float32)
      >>> updates, state = tx.update(grads, state, params)  # v = 0.5 g + g
      >>> gx.apply_updates(params, updates)["w"]
      Array([ 0.25, -3.5 ], dtype=float32)
    """
    if nesterov and (momentum is None or not is_active(momentum)):
        raise ValueError("sgd: nesterov=True requires momentum > 0 (as torch.optim.SGD)")
    return named_chain(
        "sgd",
        maybe_weight_decay(weight_decay, weight_decay_mask),
        # None, not 0, leaves the buffer out: a static choice (see maybe_weight_decay).
        None if momentum is None else scale_by_momentum(momentum, dampening, nesterov),
        scale_by_learning_rate(learning_rate),
    )


def momentum(
    learning_rate: ScalarOrSchedule = 1e-3,
    momentum: ScalarOrSchedule = 0.9,
    *,
    dampening: Scalar = 0.0,
    nesterov: bool = False,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
):
    """SGD with momentum (PyTorch form), default mu = 0.9: ``sgd(..., momentum=0.9)``.

    v_t = mu v_{t-1} + g_t,  p <- p - lr_t v_t.

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-3
        (torch.optim.SGD).
      momentum: mu in (0, 1), a number or a schedule. Default 0.9.
      dampening: damping of new gradients in the buffer, in [0, 1]. Default 0
        (torch.optim.SGD).
      nesterov: Nesterov momentum (see ``nesterov``). Default False.
      weight_decay: coupled L2 coefficient wd >= 0, a number or a schedule, or None: no
        term. Default None.
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).

    Example:
      >>> tx = gx.momentum(learning_rate=0.5, momentum=0.5)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> for _ in range(2):
      ...     updates, state = tx.update(jnp.array([1.0, 2.0]), state, params)
      >>> updates  # -lr (mu g + g)
      Array([-0.75, -1.5 ], dtype=float32)
    """
    if momentum is None or not is_active(momentum):
        raise ValueError("momentum: momentum must be > 0; use gx.sgd for plain SGD")
    tx = sgd(
        learning_rate,
        momentum,
        dampening=dampening,
        nesterov=nesterov,
        weight_decay=weight_decay,
        weight_decay_mask=weight_decay_mask,
    )
    return named_chain("momentum", *tx.transforms)


def nesterov(
    learning_rate: ScalarOrSchedule = 1e-3,
    momentum: ScalarOrSchedule = 0.9,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    weight_decay_mask: Any = None,
):
    """SGD with Nesterov momentum, torch ``SGD(nesterov=True)``.

    v_t = mu v_{t-1} + g_t,  p <- p - lr_t (g_t + mu v_t).

    Args:
      learning_rate: step size lr, a number or a schedule t -> lr. Default 1e-3
        (torch.optim.SGD).
      momentum: mu in (0, 1), a number or a schedule. Default 0.9.
      weight_decay: coupled L2 coefficient wd >= 0, a number or a schedule, or None: no
        term. Default None.
      weight_decay_mask: the leaves decayed: see ``add_decayed_weights``. Default None
        (all).

    Example:
      >>> tx = gx.nesterov(learning_rate=0.5, momentum=0.5)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([1.0, 2.0]), state, params)
      >>> updates  # -lr (g + mu v), v = g
      Array([-0.75, -1.5 ], dtype=float32)
    """
    tx = sgd(
        learning_rate,
        momentum,
        nesterov=True,
        weight_decay=weight_decay,
        weight_decay_mask=weight_decay_mask,
    )
    return named_chain("nesterov", *tx.transforms)


def heavy_ball(learning_rate: ScalarOrSchedule = 1e-3, momentum: ScalarOrSchedule = 0.9):
    """Polyak's heavy ball, the course's form (seed 003): W <- W - a dJ/dW + b dW.

    v_t = b v_{t-1} - a_t g_t,  p_{t+1} = p_t + v_t (dW is the previous step).
    = chain(scale_by_learning_rate(a), scale_by_momentum(b)). Same trajectory as
    ``momentum`` for a constant learning rate; see the module docstring for the
    difference under a schedule.

    Args:
      learning_rate: step size a, a number or a schedule t -> a. Default 1e-3.
      momentum: b in [0, 1), a number or a schedule. Default 0.9.

    Example:
      >>> tx = gx.heavy_ball(learning_rate=0.5, momentum=0.5)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> for _ in range(2):
      ...     updates, state = tx.update(jnp.array([1.0, 2.0]), state, params)
      >>> updates  # b (-a g) - a g
      Array([-0.75, -1.5 ], dtype=float32)
    """
    return named_chain(
        "heavy_ball", scale_by_learning_rate(learning_rate), scale_by_momentum(momentum)
    )

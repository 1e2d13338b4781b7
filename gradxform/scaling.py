"""Rescalings of the update: constant, learning rate, schedule, sign, centralization."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._checks import check_hparam
from ._leafwise import (
    compute_dtype,
    map_updates,
    resolve,
    safe_increment,
    scalar_dtype,
    zero_count,
)
from ._module import static_field
from ._typing import Scalar, ScalarOrSchedule
from .base import GradientTransformation, empty_state
from .tree import tree_scale

__all__ = [
    "scale",
    "scale_by_learning_rate",
    "scale_by_schedule",
    "scale_by_sign",
    "centralize",
    "ScaleByLearningRateState",
    "ScaleByScheduleState",
]


class scale(GradientTransformation):
    """Multiplies updates by a constant: u <- step_size * u.

    Args:
      step_size: the factor, a number (or a scalar array). No default.

    Example:
      >>> tx = gx.scale(-0.5)
      >>> state = tx.init(jnp.zeros(2))
      >>> updates, state = tx.update(jnp.array([1.0, -4.0]), state)
      >>> updates
      Array([-0.5,  2. ], dtype=float32)
    """

    step_size: Scalar

    def __post_init__(self):
        check_hparam("scale", "step_size", self.step_size)

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        return tree_scale(self.step_size, updates, name="updates"), state


class ScaleByLearningRateState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    # int32 scalar: updates applied so far (the schedule's input)
    count: jax.Array  # type: ignore[assignment]
    learning_rate: jax.Array  # scalar: the rate used by the last update (0 before any)

    def _metrics(self):
        return {"learning_rate": self.learning_rate}


class scale_by_learning_rate(GradientTransformation):
    """Turns a direction into a descent step: u <- -lr(t) * u (``flip_sign=False``: +lr).

    The learning rate in effect is kept in the state and reported by ``gx.metrics``.

    Args:
      learning_rate: lr >= 0, a number or a schedule t -> lr, with t the number of
        updates already applied (0 at the first update). No default.
      flip_sign: multiply by -lr (a descent step) rather than +lr. Default True.

    Example:
      >>> tx = gx.scale_by_learning_rate(gx.linear_schedule(0.5, 0.25, 1))
      >>> state = tx.init(jnp.zeros(2))
      >>> updates, state = tx.update(jnp.array([1.0, -2.0]), state)
      >>> updates
      Array([-0.5,  1. ], dtype=float32)
      >>> updates, state = tx.update(jnp.array([1.0, -2.0]), state)
      >>> updates, state.learning_rate
      (Array([-0.25,  0.5 ], dtype=float32), Array(0.25, dtype=float32))
    """

    learning_rate: ScalarOrSchedule
    flip_sign: bool = static_field(default=True)

    def __post_init__(self):
        check_hparam(
            "scale_by_learning_rate", "learning_rate", self.learning_rate, low=0, schedule=True
        )

    def init(self, params):
        return ScaleByLearningRateState(
            count=zero_count(), learning_rate=jnp.zeros([], scalar_dtype())
        )

    def update(self, updates, state, params=None, **extra):
        lr = resolve(self.learning_rate, state.count)
        factor = -lr if self.flip_sign else lr
        return tree_scale(factor, updates, name="updates"), ScaleByLearningRateState(
            count=safe_increment(state.count), learning_rate=jnp.asarray(lr, scalar_dtype())
        )


class scale_by_sign(GradientTransformation):
    """u <- sign(u) (signSGD, Bernstein et al. 2018); u/|u| for complex u, 0 stays 0.

    Example:
      >>> tx = gx.scale_by_sign()
      >>> state = tx.init(jnp.zeros(3))
      >>> updates, state = tx.update(jnp.array([0.5, -3.0, 0.0]), state)
      >>> updates
      Array([ 1., -1.,  0.], dtype=float32)
    """

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        return map_updates(lambda u: (jnp.sign(u),), updates)[0], state


class centralize(GradientTransformation):
    """Gradient centralization (Yong et al., 2020): removes the mean over all axes but 0.

    u <- u - mean(u, axes 1..ndim-1) for leaves with ndim > 1; vectors and scalars pass
    through unchanged.

    Example:
      >>> tx = gx.centralize()
      >>> grads = {"w": jnp.array([[1.0, 3.0], [2.0, 2.0]]), "b": jnp.array([1.0, 3.0])}
      >>> state = tx.init(grads)
      >>> updates, state = tx.update(grads, state)
      >>> updates["w"]
      Array([[-1.,  1.],
             [ 0.,  0.]], dtype=float32)
      >>> updates["b"]
      Array([1., 3.], dtype=float32)
    """

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        def f(u):
            if u.ndim <= 1:
                return (u,)
            g = u.astype(compute_dtype(u))
            g = g - jnp.mean(g, axis=tuple(range(1, u.ndim)), keepdims=True)
            return (g.astype(u.dtype),)

        return map_updates(f, updates)[0], state


class ScaleByScheduleState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    # int32: updates so far (the schedule's input, 0 at the first update)
    count: jax.Array  # type: ignore[assignment]


class scale_by_schedule(GradientTransformation):
    """u <- schedule(t) * u, with t the number of updates already applied (0 first).

    No sign flip (``scale_by_learning_rate`` flips).

    Args:
      schedule: a gradxform schedule (a pytree: its numbers can change without a
        recompile) or any callable t -> factor. No default.

    Example:
      >>> tx = gx.scale_by_schedule(gx.piecewise_constant_schedule((1,), (1.0, 0.5)))
      >>> state = tx.init(jnp.zeros(2))
      >>> for _ in range(2):
      ...     updates, state = tx.update(jnp.array([1.0, -2.0]), state)
      >>> updates
      Array([ 0.5, -1. ], dtype=float32)
    """

    schedule: Callable

    def __post_init__(self):
        if not callable(self.schedule):
            raise TypeError(
                "scale_by_schedule: schedule must be a callable count -> factor (use "
                f"gx.scale for a constant), got {self.schedule!r}"
            )

    def init(self, params):
        return ScaleByScheduleState(count=zero_count())

    def update(self, updates, state, params=None, **extra):
        factor = resolve(self.schedule, state.count)
        return tree_scale(factor, updates, name="updates"), ScaleByScheduleState(
            count=safe_increment(state.count)
        )

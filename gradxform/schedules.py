"""Schedules: hyperparameter values as a function of the optimizer step count.

A schedule is a frozen pytree dataclass with ``__call__(count) -> value``; its numbers
are leaves, so a schedule inside a transform can be changed without recompiling. Any
hyperparameter documented as schedulable (learning rate, weight decay, momentum) also
accepts a plain Python callable ``count -> value`` (it is then static structure).

``count`` is the number of updates already applied: 0 at the first update.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import KW_ONLY

import jax.numpy as jnp

from ._checks import check_hparam, concrete_number
from ._leafwise import scalar_dtype
from ._module import static_field
from ._schedule import (
    Schedule,
    check_pieces,
    check_steps,
    cos_anneal,
    progress,
    step_value,
)
from ._typing import Scalar

__all__ = [
    "constant_schedule",
    "linear_schedule",
    "polynomial_schedule",
    "exponential_decay",
    "inverse_time_decay",
    "piecewise_constant_schedule",
    "cosine_decay_schedule",
    "warmup_cosine_decay_schedule",
    "one_cycle_schedule",
    "sgdr_schedule",
    "join_schedules",
]


class constant_schedule(Schedule):
    """v(t) = value.

    Args:
      value: the constant. No default.

    Example:
      >>> float(gx.constant_schedule(0.5)(100))
      0.5
    """

    value: Scalar

    def __post_init__(self):
        check_hparam("constant_schedule", "value", self.value)

    def __call__(self, count):
        return jnp.full([], self.value, scalar_dtype())


class linear_schedule(Schedule):
    """Linear interpolation: v(t) = v0 + (v1 - v0) * clip((t - begin) / steps, 0, 1).

    Equals torch ``LinearLR`` up to its factor parametrisation.

    Args:
      init_value: v0, the value up to step ``transition_begin``. No default.
      end_value: v1, the value from step begin + steps on. No default.
      transition_steps: steps of the transition, > 0. No default.
      transition_begin: the step it starts at, >= 0. Default 0.

    Example:
      >>> s = gx.linear_schedule(init_value=1.0, end_value=0.0, transition_steps=4)
      >>> [float(s(t)) for t in range(6)]
      [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """

    init_value: Scalar
    end_value: Scalar
    transition_steps: Scalar
    transition_begin: Scalar = 0

    def __post_init__(self):
        for n in ("init_value", "end_value"):
            check_hparam("linear_schedule", n, getattr(self, n))
        check_steps("linear_schedule", "transition_steps", self.transition_steps)
        check_steps("linear_schedule", "transition_begin", self.transition_begin, allow_zero=True)

    def __call__(self, count):
        frac = progress(count, self.transition_begin, self.transition_steps)
        return self.init_value + (self.end_value - self.init_value) * frac


class polynomial_schedule(Schedule):
    """v(t) = (v0 - v1) * (1 - clip((t - begin) / steps, 0, 1))**power + v1.

    Equals torch ``PolynomialLR`` with ``end_value=0``.

    Args:
      init_value: v0. No default.
      end_value: v1, the value from step begin + steps on. No default.
      power: the exponent, > 0. No default.
      transition_steps: steps of the transition, > 0. No default.
      transition_begin: the step it starts at, >= 0. Default 0.

    Example:
      >>> s = gx.polynomial_schedule(1.0, 0.0, power=2, transition_steps=4)
      >>> [float(s(t)) for t in range(5)]
      [1.0, 0.5625, 0.25, 0.0625, 0.0]
    """

    init_value: Scalar
    end_value: Scalar
    power: Scalar
    transition_steps: Scalar
    transition_begin: Scalar = 0

    def __post_init__(self):
        for n in ("init_value", "end_value"):
            check_hparam("polynomial_schedule", n, getattr(self, n))
        check_hparam("polynomial_schedule", "power", self.power, low=0, low_open=True)
        check_steps("polynomial_schedule", "transition_steps", self.transition_steps)
        check_steps(
            "polynomial_schedule", "transition_begin", self.transition_begin, allow_zero=True
        )

    def __call__(self, count):
        frac = progress(count, self.transition_begin, self.transition_steps)
        return (self.init_value - self.end_value) * (1 - frac) ** self.power + self.end_value


class exponential_decay(Schedule):
    """v(t) = v0 * rate**p, p = (t - begin) / steps (floored if ``staircase``), p >= 0.

    ``end_value`` bounds the result (a floor when decaying, a ceiling when growing).
    ``staircase=True`` with ``transition_steps=k`` is torch ``StepLR(step_size=k, gamma)``;
    ``transition_steps=1`` is ``ExponentialLR(gamma)``. Arguments after ``init_value``
    are keyword-only: Optax's order is (init_value, transition_steps, decay_rate), so a
    ported positional call raises instead of swapping the two.

    Args:
      init_value: v0. No default.
      decay_rate: the factor per ``transition_steps`` steps, > 0. No default.
      transition_steps: steps per factor, > 0. Default 1.
      transition_begin: the step decay starts at, >= 0. Default 0.
      staircase: decay in whole steps of ``transition_steps``. Default False.
      end_value: the bound, or None for none. Default None.

    Example:
      >>> s = gx.exponential_decay(1.0, decay_rate=0.5, transition_steps=2, staircase=True)
      >>> [float(s(t)) for t in range(5)]
      [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    init_value: Scalar
    _: KW_ONLY
    decay_rate: Scalar
    transition_steps: Scalar = 1
    transition_begin: Scalar = 0
    staircase: bool = static_field(default=False)
    end_value: Scalar | None = None

    def __post_init__(self):
        check_hparam("exponential_decay", "init_value", self.init_value)
        check_hparam("exponential_decay", "decay_rate", self.decay_rate, low=0, low_open=True)
        check_steps("exponential_decay", "transition_steps", self.transition_steps)
        check_steps("exponential_decay", "transition_begin", self.transition_begin, allow_zero=True)
        if self.end_value is not None:
            check_hparam("exponential_decay", "end_value", self.end_value)

    def __call__(self, count):
        p = jnp.maximum(step_value(count) - self.transition_begin, 0.0) / self.transition_steps
        if self.staircase:
            p = jnp.floor(p)
        v = self.init_value * jnp.asarray(self.decay_rate, scalar_dtype()) ** p
        if self.end_value is not None:
            v = jnp.where(
                self.decay_rate < 1, jnp.maximum(v, self.end_value), jnp.minimum(v, self.end_value)
            )
        return v


class inverse_time_decay(Schedule):
    """v(t) = v0 / (1 + rate * t / steps) (t/steps floored if ``staircase``).

    With ``transition_steps=1`` this is torch ``Adagrad``'s ``lr_decay``:
    lr / (1 + (step - 1) * lr_decay).

    Args:
      init_value: v0. No default.
      decay_rate: >= 0. No default.
      transition_steps: > 0. Default 1.
      staircase: floor t / steps. Default False.

    Example:
      >>> s = gx.inverse_time_decay(1.0, decay_rate=1.0)
      >>> [float(s(t)) for t in (0, 1, 3)]
      [1.0, 0.5, 0.25]
    """

    init_value: Scalar
    decay_rate: Scalar
    transition_steps: Scalar = 1
    staircase: bool = static_field(default=False)

    def __post_init__(self):
        check_hparam("inverse_time_decay", "init_value", self.init_value)
        check_hparam("inverse_time_decay", "decay_rate", self.decay_rate, low=0)
        check_steps("inverse_time_decay", "transition_steps", self.transition_steps)

    def __call__(self, count):
        p = step_value(count) / self.transition_steps
        if self.staircase:
            p = jnp.floor(p)
        return self.init_value / (1 + self.decay_rate * p)


class piecewise_constant_schedule(Schedule):
    """Step decay: v(t) = values[i], i = number of boundaries b with t >= b.

    ``len(values) == len(boundaries) + 1``, boundaries strictly increasing. Equals torch
    ``MultiStepLR(milestones=boundaries)`` with values v0 * gamma**i.

    Args:
      boundaries: the steps at which the value changes, strictly increasing integers
        >= 0. No default.
      values: the values, one more than boundaries. No default.

    Example:
      >>> s = gx.piecewise_constant_schedule(boundaries=(2, 4), values=(1.0, 0.5, 0.25))
      >>> [float(s(t)) for t in range(6)]
      [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """

    boundaries: tuple = static_field()
    values: tuple

    def __post_init__(self):
        v = check_pieces(self, "piecewise_constant_schedule", "values")
        for i, x in enumerate(v):
            check_hparam("piecewise_constant_schedule", f"values[{i}]", x)

    def __call__(self, count):
        t = jnp.asarray(count)
        idx = sum((t >= b).astype(jnp.int32) for b in self.boundaries)
        return jnp.stack([jnp.asarray(x, scalar_dtype()) for x in self.values])[idx]


class cosine_decay_schedule(Schedule):
    """v(t) = v0 * ((1 - alpha) * c(t)**exponent + alpha), c = (1 + cos(pi min(t, T)/T)) / 2.

    Loshchilov & Hutter (2017) without restarts; torch ``CosineAnnealingLR(T_max=T,
    eta_min=alpha*v0)`` when ``exponent=1``.

    Args:
      init_value: v0. No default.
      decay_steps: T > 0, the steps to the final value. No default.
      alpha: the final value as a fraction of v0, in [0, 1]. Default 0.
      exponent: power of c, > 0. Default 1.

    Example:
      >>> s = gx.cosine_decay_schedule(1.0, decay_steps=4, alpha=0.5)
      >>> [round(float(s(t)), 4) for t in (0, 2, 4, 8)]
      [1.0, 0.75, 0.5, 0.5]
    """

    init_value: Scalar
    decay_steps: Scalar
    alpha: Scalar = 0.0
    exponent: Scalar = 1.0

    def __post_init__(self):
        check_hparam("cosine_decay_schedule", "init_value", self.init_value)
        check_steps("cosine_decay_schedule", "decay_steps", self.decay_steps)
        check_hparam("cosine_decay_schedule", "alpha", self.alpha, low=0, high=1)
        check_hparam("cosine_decay_schedule", "exponent", self.exponent, low=0, low_open=True)

    def __call__(self, count):
        frac = progress(count, 0, self.decay_steps)
        c = 0.5 * (1 + jnp.cos(math.pi * frac))
        return self.init_value * ((1 - self.alpha) * c**self.exponent + self.alpha)


class warmup_cosine_decay_schedule(Schedule):
    """Linear warmup v0 -> peak over ``warmup_steps``, then cosine peak -> end.

    v(t) = v0 + (peak - v0) t / W for t < W; else end + (peak - end)(1 + cos(pi f))/2 with
    f = min(t - W, T - W) / (T - W), T = ``decay_steps`` (total length, warmup included).

    Args:
      init_value: v0, the value at step 0. No default.
      peak_value: the value at the end of the warmup. No default.
      warmup_steps: W >= 0, steps of the warmup. No default.
      decay_steps: T > W, the total length, warmup included. No default.
      end_value: the value from step T on. Default 0.

    Example:
      >>> s = gx.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=2, decay_steps=6)
      >>> [round(float(s(t)), 4) for t in (0, 1, 2, 4, 6)]
      [0.0, 0.5, 1.0, 0.5, 0.0]
    """

    init_value: Scalar
    peak_value: Scalar
    warmup_steps: Scalar
    decay_steps: Scalar
    end_value: Scalar = 0.0

    def __post_init__(self):
        o = "warmup_cosine_decay_schedule"
        for n in ("init_value", "peak_value", "end_value"):
            check_hparam(o, n, getattr(self, n))
        check_steps(o, "warmup_steps", self.warmup_steps, allow_zero=True)
        check_steps(o, "decay_steps", self.decay_steps)
        w, d = concrete_number(self.warmup_steps), concrete_number(self.decay_steps)
        if w is not None and d is not None and w >= d:
            raise ValueError(
                f"{o}: warmup_steps ({self.warmup_steps}) must be < decay_steps "
                f"({self.decay_steps}), the total length"
            )

    def __call__(self, count):
        t = step_value(count)
        w = self.warmup_steps
        warm = self.init_value + (self.peak_value - self.init_value) * t / jnp.maximum(w, 1)
        frac = jnp.clip((t - w) / (self.decay_steps - w), 0.0, 1.0)
        return jnp.where(t < w, warm, cos_anneal(self.peak_value, self.end_value, frac))


class one_cycle_schedule(Schedule):
    """Smith & Topin (2018) one-cycle policy with cosine annealing.

    Starts at peak/div_factor, cosine-anneals up to ``peak_value`` at step pct_start*T,
    then down to peak/(div_factor*final_div_factor) at step T (and stays there). The
    shape of torch ``OneCycleLR(anneal_strategy="cos", three_phase=False)``, whose phase
    boundaries sit one step earlier (pct_start*T - 1 and T - 1). Every argument is
    keyword-only: torch's ``OneCycleLR`` takes (max_lr, total_steps), Optax's
    ``cosine_onecycle_schedule`` (transition_steps, peak_value).

    Args:
      transition_steps: T > 0, the length of the cycle. No default.
      peak_value: the largest value. No default.
      pct_start: the fraction of T spent going up, in (0, 1). Default 0.3 (torch
        OneCycleLR).
      div_factor: peak / initial value, > 0. Default 25 (torch OneCycleLR).
      final_div_factor: initial / final value, > 0. Default 1e4 (torch OneCycleLR).

    Example:
      >>> s = gx.one_cycle_schedule(transition_steps=10, peak_value=1.0)
      >>> [round(float(s(t)), 6) for t in (0, 3, 10)]
      [0.04, 1.0, 4e-06]
    """

    _: KW_ONLY
    transition_steps: Scalar
    peak_value: Scalar
    pct_start: Scalar = 0.3
    div_factor: Scalar = 25.0
    final_div_factor: Scalar = 1e4

    def __post_init__(self):
        o = "one_cycle_schedule"
        check_steps(o, "transition_steps", self.transition_steps)
        check_hparam(o, "peak_value", self.peak_value)
        check_hparam(o, "pct_start", self.pct_start, low=0, high=1, low_open=True, high_open=True)
        check_hparam(o, "div_factor", self.div_factor, low=0, low_open=True)
        check_hparam(o, "final_div_factor", self.final_div_factor, low=0, low_open=True)

    def __call__(self, count):
        t = step_value(count)
        start = self.peak_value / self.div_factor
        final = start / self.final_div_factor
        t1 = self.pct_start * self.transition_steps
        up = cos_anneal(start, self.peak_value, jnp.clip(t / t1, 0.0, 1.0))
        down_frac = jnp.clip((t - t1) / (self.transition_steps - t1), 0.0, 1.0)
        down = cos_anneal(self.peak_value, final, down_frac)
        return jnp.where(t < t1, up, down)


class sgdr_schedule(Schedule):
    """Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017).

    Period i has length T_i = period * period_mult**i; within it
    v = end + (v0 - end)(1 + cos(pi t_cur / T_i)) / 2. Equals torch
    ``CosineAnnealingWarmRestarts(T_0=period, T_mult=period_mult, eta_min=end_value)``.

    Args:
      init_value: v0, the value at each restart. No default.
      period: T_0 > 0, the length of the first period. No default.
      period_mult: the growth of the periods, an integer >= 1 (static). Default 1.
      end_value: the value approached at the end of each period. Default 0.

    Example:
      >>> s = gx.sgdr_schedule(1.0, period=4)
      >>> [round(float(s(t)), 4) for t in (0, 2, 4, 6)]
      [1.0, 0.5, 1.0, 0.5]
    """

    init_value: Scalar
    period: Scalar
    period_mult: int = static_field(default=1)
    end_value: Scalar = 0.0

    def __post_init__(self):
        check_hparam("sgdr_schedule", "init_value", self.init_value)
        check_hparam("sgdr_schedule", "end_value", self.end_value)
        check_steps("sgdr_schedule", "period", self.period)
        pm: object = self.period_mult  # as given: checked here, then stored as an int
        if isinstance(pm, bool) or not isinstance(pm, numbers.Integral) or pm < 1:
            raise ValueError(
                f"sgdr_schedule: period_mult must be an integer >= 1, got {self.period_mult!r}"
            )
        object.__setattr__(self, "period_mult", int(pm))

    def __call__(self, count):
        t = step_value(count)
        m = self.period_mult
        if m == 1:
            n = jnp.floor(t / self.period)
        else:
            n = jnp.floor(jnp.log1p(t / self.period * (m - 1)) / math.log(m))
            # log can land a hair on either side of an exact restart: fix n by the bounds.
            start = self.period * (m**n - 1) / (m - 1)
            n = jnp.where(t < start, n - 1, n)
            n = jnp.where(t >= start + self.period * m**n, n + 1, n)
        start = self.period * n if m == 1 else self.period * (m**n - 1) / (m - 1)
        length = self.period * (1.0 if m == 1 else m**n)
        return cos_anneal(self.init_value, self.end_value, (t - start) / length)


class join_schedules(Schedule):
    """Runs ``schedules[i]`` from ``boundaries[i-1]`` on, each seeing t - boundaries[i-1].

    ``len(schedules) == len(boundaries) + 1``; torch ``SequentialLR``.

    Args:
      schedules: the schedules (or callables t -> value), in order. No default.
      boundaries: the steps at which the next one takes over, strictly increasing
        integers >= 0. No default.

    Example:
      >>> warmup = gx.linear_schedule(0.0, 1.0, transition_steps=2)
      >>> decay = gx.exponential_decay(1.0, decay_rate=0.5)
      >>> s = gx.join_schedules((warmup, decay), boundaries=(2,))
      >>> [float(s(t)) for t in range(5)]
      [0.0, 0.5, 1.0, 0.5, 0.25]
    """

    schedules: tuple
    boundaries: tuple = static_field()

    def __post_init__(self):
        s = check_pieces(self, "join_schedules", "schedules")
        for i, f in enumerate(s):
            if not callable(f):
                raise TypeError(f"join_schedules: schedules[{i}] is not callable: {f!r}")

    def __call__(self, count):
        t = jnp.asarray(count)
        starts = (0, *self.boundaries)
        values = [jnp.asarray(f(t - b), scalar_dtype()) for f, b in zip(self.schedules, starts)]
        idx = sum((t >= b).astype(jnp.int32) for b in self.boundaries)
        return jnp.stack(values)[idx]

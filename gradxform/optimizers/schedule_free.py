"""Schedule-free SGD and AdamW (Defazio et al., 2024, "The Road Less Scheduled").

Three sequences replace the learning-rate schedule: z, the plain (SGD or Adam-normalised)
steps; x, a weighted average of the z's, where the model is evaluated; and y, the point
the gradient is taken at, an interpolation of the two::

    y_t = b1 x_t + (1 - b1) z_t,    z_{t+1} = z_t - lr_t g(y_t),
    x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1},
    c_{t+1} = w_{t+1} / sum_{i <= t+1} w_i,   w_t = t^r lr_max,t^weight_lr_power.

The params the user holds (and takes gradients at) are y. ``gx.eval_params(state,
params)`` returns x, the point to evaluate (or checkpoint for inference) at: the
``schedulefree`` package's ``optimizer.eval()``.

The state keeps one tree, x - y, rather than z (the ``schedulefree`` package) or z and a
copy of the params (its ``*Reference`` variants): the same memory as the package, and it
starts at 0, so ``init`` needs no parameter values (``ShapeDtypeStruct`` trees work), no
state buffer is ever a copy of a parameter (params and state can both be donated), and
the update needs the params only for weight decay. z is implied: z - y = -b1/(1 - b1)
(x - y). The recurrences in that variable (c = c_{t+1}, g the direction incl. decay)::

    u = y_{t+1} - y_t = -(b1 c / (1 - b1)) (x_t - y_t) - (1 - b1 (1 - c)) lr_t g,
    x_{t+1} - y_{t+1} = (1 - c) (x_t - y_t + (1 - b1) lr_t g),

are the package's (``y.lerp_(z, c); y.add_(g, alpha=lr (b1 (1 - c) - 1))``) rewritten.
"""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .._checks import (
    check_hparam,
    check_tree_structure,
    concrete_number,
    is_none,
    is_param,
    need_params,
)
from .._leafwise import (
    abs2,
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
    wider_dtype,
    zero_count,
)
from .._module import static_field
from .._typing import Params, PyTree, Scalar, ScalarOrSchedule, TreeDef
from ..base import GradientTransformation, named_chain
from ._moments import bias_correction

# The state type is exported by gradxform too; __all__ lists the transforms (the
# registry test reads it: aliases and rules).
__all__ = ["scale_by_schedule_free", "schedule_free_sgd", "schedule_free_adamw"]


class ScheduleFreeState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: steps taken (k)
    lr_max: jax.Array  # scalar (float64 under x64): largest warmed-up lr so far (0 at init)
    weight_sum: jax.Array  # scalar, lr_max's dtype: sum of the averaging weights w_t
    x_minus_y: PyTree  # like params, state_dtype: x - y, the evaluation point minus params
    nu: PyTree  # like params, real state_dtype, when b2 is not None (else None): 2nd moment

    def _eval_params(self, params: Params) -> Params:
        """x = y + (x - y), in each parameter's dtype (``gx.eval_params`` calls this)."""
        check_tree_structure(params, self.x_minus_y, names=("params", "x_minus_y"), allow_none=True)
        treedef: TreeDef
        leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=is_none)
        offsets = treedef.flatten_up_to(self.x_minus_y)
        out = []
        for p, a in zip(leaves, offsets):
            if a is not None and is_param(p):
                p = jnp.asarray(p)
                dt = wider_dtype(compute_dtype(p), a.dtype)
                p = cast(cast(p, dt) + cast(a, dt), p.dtype)
            out.append(p)
        return treedef.unflatten(out)


class scale_by_schedule_free(GradientTransformation):
    """The schedule-free step (Defazio et al., 2024), ``schedulefree`` package semantics.

    k = steps taken; lr_k = lr(k) min(1, (k + 1) / warmup_steps) (1 if warmup_steps = 0);
    lr_max = max(lr_max, lr_k);  w = (k + 1)^r lr_max^weight_lr_power;
    c = w / sum w (0 while the sum is 0);
    d = g, or with ``b2``: v = b2 v + (1 - b2)|g|^2, d = g / (sqrt(v / (1 - b2^(k+1))) + eps);
    d += wd y (weight decay at y, after the normalisation);
    z <- z - lr_k d;  x <- (1 - c) x + c z;  output u = (b1 x + (1 - b1) z) - y.

    The output is the whole step (the learning rate is inside: it also sets the averaging
    weights), so this is the last member of a chain. The state holds x - y (see the
    module docstring), not z; ``gx.eval_params(state, params)`` gives x. Needs ``params``
    only for weight decay.

    Args:
      learning_rate: lr >= 0, a number or a schedule k -> lr (k = 0 at the first step),
        multiplied by the warmup factor. No default.
      b1: interpolation y = b1 x + (1 - b1) z, in [0, 1) (the package's ``momentum`` /
        ``betas[0]``). Default 0.9 (Defazio et al., 2024).
      b2: decay of the second moment, in [0, 1), or None: no normalisation (schedule-free
        SGD). Default None.
      eps: > 0, added to the root of the bias-corrected second moment (used with ``b2``).
        Default 1e-8 (schedulefree.AdamWScheduleFree).
      weight_decay: L2 coefficient wd >= 0 (added at y, after the normalisation), a
        number or a schedule, or None: no term. Default None.
      warmup_steps: >= 0, length of the linear warmup of lr in steps (an integer in the
        package; any number here: the ramp is min(1, (k + 1) / warmup_steps)). Default 0
        (the package's).
      r: >= 0, power of the step index in the averaging weights. Default 0.0 (the
        package's; uniform weights).
      weight_lr_power: >= 0, power of lr_max in the averaging weights (down-weights the
        warmup steps). Default 2.0 (the package's).
      state_dtype: storage dtype of x - y and v. Default None: the parameter dtype, at
        least float32.

    Example:
      >>> tx = gx.scale_by_schedule_free(0.5, b1=0.5)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([1.0, -2.0]), state)
      >>> u  # step 1: c = 1, x = z = y - lr g
      Array([-0.5,  1. ], dtype=float32)
      >>> u, state = tx.update(jnp.array([1.0, -2.0]), state)
      >>> u, state.x_minus_y  # c = 1/2: x lags z by lr g / 2
      (Array([-0.375,  0.75 ], dtype=float32), Array([ 0.125, -0.25 ], dtype=float32))
    """

    learning_rate: ScalarOrSchedule
    _: KW_ONLY
    b1: Scalar = 0.9
    b2: Scalar | None = None
    eps: Scalar = 1e-8
    weight_decay: ScalarOrSchedule | None = None
    warmup_steps: Scalar = 0
    r: Scalar = 0.0
    weight_lr_power: Scalar = 2.0
    state_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        o = "scale_by_schedule_free"
        check_hparam(o, "learning_rate", self.learning_rate, low=0, schedule=True)
        check_hparam(o, "b1", self.b1, low=0, high=1, high_open=True)
        if self.b2 is not None:
            check_hparam(o, "b2", self.b2, low=0, high=1, high_open=True)
        check_hparam(o, "eps", self.eps, low=0, low_open=True)
        if self.weight_decay is not None:
            check_hparam(o, "weight_decay", self.weight_decay, low=0, schedule=True)
        check_hparam(o, "warmup_steps", self.warmup_steps, low=0)
        check_hparam(o, "r", self.r, low=0)
        check_hparam(o, "weight_lr_power", self.weight_lr_power, low=0)

    def init(self, params):
        def slot(p):
            return new_slot(p, slot_dtype(p, self.state_dtype))

        def nu(p):
            return new_slot(p, slot_dtype(p, self.state_dtype, real=True))

        # Two arrays, not one twice: a donated state must not hold a buffer twice.
        return ScheduleFreeState(
            count=zero_count(),
            lr_max=jnp.zeros([], scalar_dtype()),
            weight_sum=jnp.zeros([], scalar_dtype()),
            x_minus_y=map_params(slot, params),
            nu=None if self.b2 is None else map_params(nu, params),
        )

    def update(self, updates, state, params=None, **extra):
        k = state.count
        sdt = state.lr_max.dtype
        k1 = (k + 1).astype(sdt)
        # The package's (k + 1) / warmup_steps while k < warmup_steps, i.e. for an integer
        # number of steps min(1, (k + 1) / warmup_steps); written so for any number.
        warmup = jnp.asarray(self.warmup_steps, sdt)
        ramp = jnp.minimum(1.0, k1 / jnp.where(warmup > 0, warmup, 1.0))
        sched = jnp.where(warmup > 0, ramp, 1.0)
        lr = jnp.asarray(resolve(self.learning_rate, k), sdt) * sched
        lr_max = jnp.maximum(state.lr_max, lr)
        weight = k1 ** jnp.asarray(self.r, sdt) * lr_max ** jnp.asarray(self.weight_lr_power, sdt)
        weight_sum = state.weight_sum + weight
        # The package catches ZeroDivisionError (lr = 0 so far): no averaging step.
        c = jnp.where(weight_sum > 0, weight / jnp.where(weight_sum > 0, weight_sum, 1), 0.0)
        b1 = jnp.asarray(self.b1, sdt)
        a_coef = -b1 * c / (1 - b1)  # on x - y
        g_coef = -(1 - b1 * (1 - c)) * lr  # on the direction
        keep = 1 - c
        g_into_a = (1 - b1) * lr
        adaptive = self.b2 is not None
        b2: Scalar = 0.0 if self.b2 is None else self.b2
        # 1 / (1 - b2^(k+1)) as a scalar, multiplied in: XLA turns a division by a
        # broadcast scalar into a multiplication by its reciprocal in some fusions and not
        # in others, so the same leaf would round differently in another tree layout.
        inv_corr2 = 1 / bias_correction(b2, k1) if adaptive else None
        decay = self.weight_decay is not None and concrete_number(self.weight_decay) != 0
        if decay:
            need_params("scale_by_schedule_free", params)
        wd = resolve(self.weight_decay, k) if decay else 0.0
        nu_tree = state.nu if adaptive else state.x_minus_y
        p_tree = params if decay else state.x_minus_y

        def f(u, a_old, v_old, p):
            dt = wider_dtype(compute_dtype(u), a_old.dtype)
            g = cast(u, dt)
            v = v_old
            if adaptive:
                real = jnp.finfo(dt).dtype
                vr = cast(v_old, real)
                v = scalar_like(b2, vr) * vr + scalar_like(1 - b2, vr) * abs2(g)
                denom = jnp.sqrt(v * scalar_like(inv_corr2, v)) + scalar_like(self.eps, v)
                g = g / cast(denom, dt)
                v = cast(v, v_old.dtype)
            if decay:
                g = g + scalar_like(wd, g) * cast(jnp.asarray(p), dt)
            a = cast(a_old, dt)
            out = scalar_like(a_coef, g) * a + scalar_like(g_coef, g) * g
            a = scalar_like(keep, g) * (a + scalar_like(g_into_a, g) * g)
            return cast(out, u.dtype), cast(a, a_old.dtype), v

        updates, a, v = map_updates(f, updates, state.x_minus_y, nu_tree, p_tree, n_out=3)
        return updates, ScheduleFreeState(
            count=safe_increment(k),
            lr_max=lr_max,
            weight_sum=weight_sum,
            x_minus_y=a,
            nu=v if adaptive else None,
        )


def schedule_free_sgd(
    learning_rate: ScalarOrSchedule = 1.0,
    *,
    momentum: Scalar = 0.9,
    weight_decay: ScalarOrSchedule | None = None,
    warmup_steps: Scalar = 0,
    r: Scalar = 0.0,
    weight_lr_power: Scalar = 2.0,
    state_dtype: DTypeLike | None = None,
):
    """Schedule-free SGD, exactly ``schedulefree.SGDScheduleFree`` (Defazio et al., 2024).

    g = grad + wd y;  z <- z - lr_k g;  x <- (1 - c) x + c z;  y = momentum x +
    (1 - momentum) z, with lr_k, c as in ``scale_by_schedule_free``. The params are y;
    evaluate at ``gx.eval_params(state, params)`` (x: the package's ``optimizer.eval()``).

    = chain(scale_by_schedule_free(lr, b1=momentum, weight_decay=wd, ...)). The learning
    rate is not a last ``scale_by_learning_rate``: it also sets the averaging weights.
    Arguments after ``learning_rate`` are keyword-only: Optax's second positional argument
    is ``warmup_steps``, the package's ``momentum``.

    Args:
      learning_rate: lr >= 0, a number or a schedule k -> lr (warmup applied on top; no
        decay schedule is needed). Default 1.0 (schedulefree.SGDScheduleFree).
      momentum: interpolation b1 of y between x and z, in [0, 1). Default 0.9
        (schedulefree.SGDScheduleFree).
      weight_decay: L2 coefficient wd >= 0 added to the gradient at y, a number or a
        schedule, or None: no term. Default None (the package's 0: the same steps).
      warmup_steps: >= 0, linear warmup of lr over that many steps. Default 0.
      r: >= 0, power of the step index in the averaging weights. Default 0.0.
      weight_lr_power: >= 0, power of the largest lr so far in the averaging weights.
        Default 2.0 (schedulefree.SGDScheduleFree).
      state_dtype: storage dtype of x - y. Default None: the parameter dtype, at least
        float32.

    Example:
      >>> tx = gx.schedule_free_sgd(learning_rate=0.4)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> for _ in range(100):
      ...     updates, state = tx.update(2 * params, state, params)  # f = |p|^2
      ...     params = gx.apply_updates(params, updates)
      >>> bool(jnp.abs(gx.eval_params(state, params)).max() < 1e-4)  # x, the average
      True
    """
    return named_chain(
        "schedule_free_sgd",
        scale_by_schedule_free(
            learning_rate,
            b1=momentum,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            r=r,
            weight_lr_power=weight_lr_power,
            state_dtype=state_dtype,
        ),
    )


def schedule_free_adamw(
    learning_rate: ScalarOrSchedule = 0.0025,
    *,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    weight_decay: ScalarOrSchedule | None = None,
    warmup_steps: Scalar = 0,
    r: Scalar = 0.0,
    weight_lr_power: Scalar = 2.0,
    state_dtype: DTypeLike | None = None,
):
    """Schedule-free AdamW, exactly ``schedulefree.AdamWScheduleFree`` (Defazio et al., 2024).

    v = b2 v + (1 - b2)|g|^2;  d = g / (sqrt(v / (1 - b2^(k+1))) + eps) + wd y;
    z <- z - lr_k d;  x <- (1 - c) x + c z;  y = b1 x + (1 - b1) z (no first moment: the
    interpolation replaces it). The params are y; evaluate at ``gx.eval_params(state,
    params)``.

    = chain(scale_by_schedule_free(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd, ...)).
    Arguments after ``learning_rate`` are keyword-only: Optax's second positional argument
    is ``warmup_steps``, the package's ``betas``.

    Args:
      learning_rate: lr >= 0, a number or a schedule k -> lr (warmup applied on top).
        Default 0.0025 (schedulefree.AdamWScheduleFree).
      b1: interpolation of y between x and z, in [0, 1). Default 0.9 (the package's
        ``betas[0]``).
      b2: decay of the second moment, in [0, 1). Default 0.999 (the package's
        ``betas[1]``).
      eps: > 0, added to the root in the denominator. Default 1e-8 (the package's).
      weight_decay: coefficient wd >= 0 of the decay at y (added after the
        normalisation, so decoupled as in AdamW), a number or a schedule, or None: no
        term. Default None (the package's 0: the same steps).
      warmup_steps: >= 0, linear warmup of lr over that many steps. Default 0.
      r: >= 0, power of the step index in the averaging weights. Default 0.0.
      weight_lr_power: >= 0, power of the largest lr so far in the averaging weights.
        Default 2.0 (schedulefree.AdamWScheduleFree).
      state_dtype: storage dtype of x - y and v. Default None: the parameter dtype, at
        least float32.

    Example:
      >>> tx = gx.schedule_free_adamw(learning_rate=0.5, b1=0.5)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([0.5, -0.5]), state, params)
      >>> updates.round(4)  # step 1: -lr g / |g|
      Array([-0.5,  0.5], dtype=float32)
      >>> gx.eval_params(state, gx.apply_updates(params, updates)).round(4)  # x = y
      Array([ 0.5, -1.5], dtype=float32)
    """
    return named_chain(
        "schedule_free_adamw",
        scale_by_schedule_free(
            learning_rate,
            b1=b1,
            b2=b2,
            eps=eps,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            r=r,
            weight_lr_power=weight_lr_power,
            state_dtype=state_dtype,
        ),
    )

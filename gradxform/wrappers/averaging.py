"""Parameter averaging: ``ema_params``, ``swa`` and ``eval_params``.

An average of the parameters (Polyak & Juditsky, 1992; SWA, Izmailov et al., 2018; the
EMA of weights) is evaluated instead of the parameters being trained. Here it is a
pass-through transform placed **last** in a chain: its updates go out unchanged, and it
averages the parameters the step produces, p + u (it sees the final update, so it must
come after everything that changes it). The average lives in its state.

``eval_params(state, params)`` returns the parameters to evaluate with, from whichever
state in a (possibly nested) optimizer state knows them: an average here, schedule-free's
x (``schedule_free_sgd``, ``schedule_free_adamw``). A state type takes part by defining
``_eval_params(self, params) -> params``.
"""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .._checks import (
    check_hparam,
    check_int,
    check_params,
    check_tree_structure,
    is_none,
    is_param,
    need_params,
)
from .._leafwise import (
    as_int,
    cast,
    compute_dtype,
    map_params,
    map_updates,
    new_slot,
    safe_increment,
    scalar_dtype,
    scalar_like,
    slot_dtype,
    wider_dtype,
    zero_count,
)
from .._module import static_field
from .._typing import OptState, Params, PyTree, Scalar, TreeDef
from ..base import ChainState, GradientTransformation
from ..optimizers._moments import bias_correction

__all__ = ["eval_params", "ema_params", "EmaParamsState", "swa", "SwaState"]


def eval_params(state: OptState, params: Params) -> Params:
    """The parameters to evaluate with: an average, or schedule-free's x.

    Searches ``state`` (a chain's, a named optimizer's, or one nested in wrappers such as
    ``masked`` or ``apply_if_finite``) for the one state that knows its evaluation
    parameters (``ema_params``, ``swa``, ``scale_by_schedule_free``) and asks it. The
    result has the structure and dtypes of ``params``; leaves that state does not hold
    (``None``, non-arrays, leaves masked out) are ``params``' own. Works under ``jit``.

    Args:
      state: an optimizer state holding exactly one such state. No default.
      params: the current parameters (the ones the optimizer steps). No default.

    Example:
      >>> tx = gx.chain(gx.sgd(learning_rate=0.5), gx.swa())
      >>> params = jnp.array([4.0])
      >>> state = tx.init(params)
      >>> for _ in range(3):  # params 2, 1, 0.5
      ...     updates, state = tx.update(params, state, params)  # f = p^2 / 2
      ...     params = gx.apply_updates(params, updates)
      >>> gx.eval_params(state, params)  # (2 + 1 + 0.5) / 3
      Array([1.1666666], dtype=float32)
    """
    found: list[Any] = []
    seen: list[str] = []

    def knows(x: Any) -> bool:
        # On the type: a ChainState answers any attribute with a member of that name.
        if callable(getattr(type(x), "_eval_params", None)):
            found.append(x)
            return True
        if isinstance(x, ChainState) or hasattr(type(x), "_fields"):
            seen.append(type(x).__name__)
        return False

    jax.tree_util.tree_flatten(state, is_leaf=knows)
    if len(found) != 1:
        names = ", ".join(type(s).__name__ for s in found)
        what = f"{len(found)} ({names})" if found else "none"
        raise ValueError(
            "eval_params: the state must hold exactly one state that knows evaluation "
            "parameters (from ema_params, swa, schedule_free_sgd, schedule_free_adamw, "
            f"scale_by_schedule_free), found {what}; states seen: "
            f"{', '.join(dict.fromkeys(seen)) or type(state).__name__}"
        )
    return found[0]._eval_params(params)


def _average_or_params(state: Any, average: PyTree, params: Params) -> Params:
    """``average`` where it holds a leaf and something was averaged, else ``params``, in
    the dtypes of ``params``."""
    check_tree_structure(params, average, names=("params", "average"), allow_none=True)
    treedef: TreeDef
    leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=is_none)
    avgs = treedef.flatten_up_to(average)
    empty = state.n_averaged == 0
    out = []
    for p, a in zip(leaves, avgs):
        if a is not None and is_param(p):
            p = jnp.asarray(p)
            p = jnp.where(empty, p, cast(a, p.dtype))
        out.append(p)
    return treedef.unflatten(out)


def _stepped(p: Any, u: jax.Array) -> jax.Array:
    """p + u rounded to p's dtype, as ``apply_updates`` forms the next parameters."""
    p = jnp.asarray(p)
    dt = wider_dtype(p.dtype, u.dtype)
    return cast(cast(p, dt) + cast(u, dt), p.dtype)


def _average_step(owner, updates, average, params, n, weight, take):
    """avg <- avg + weight (p + u - avg) where ``take`` (a copy of p + u while n == 0);
    the updates pass through."""
    need_params(owner, params)
    check_params(updates, params)

    def f(u, avg, p):
        new = _stepped(p, u)
        dt = wider_dtype(compute_dtype(new), avg.dtype)
        x, a = cast(new, dt), cast(avg, dt)
        moved = jnp.where(n == 0, x, a + scalar_like(weight, a) * (x - a))
        return u, cast(jnp.where(take, moved, a), avg.dtype)

    return updates, map_updates(f, updates, average, params, n_out=2)[1]


class EmaParamsState(NamedTuple):
    # int32 scalar: parameter sets averaged so far (t)
    n_averaged: jax.Array
    ema: PyTree  # like params, average_dtype: the average to evaluate (already debiased)

    def _eval_params(self, params: Params) -> Params:
        """The average; the params themselves before the first update."""
        return _average_or_params(self, self.ema, params)


class ema_params(GradientTransformation):
    """Exponential moving average of the parameters; u <- u unchanged. Place it last.

    With p_t = p + u the parameters after step t (formed as ``apply_updates`` does):

    - ``debias=True``: e_t = decay e_{t-1} + (1 - decay) p_t, e_0 = 0, and the average is
      e_t / (1 - decay^t) (Adam's correction, Kingma & Ba, 2015);
    - ``debias=False``: torch ``AveragedModel(model, multi_avg_fn=
      get_ema_multi_avg_fn(decay))`` exactly: the average starts as a copy of p_1, then
      avg_t = avg_{t-1} + (1 - decay)(p_t - avg_{t-1}).

    The state holds the average itself (the debiased one is updated with weight
    (1 - decay) / (1 - decay^t)); ``gx.eval_params(state, params)`` returns it in the
    params' dtypes (the params themselves before the first update). Needs ``params``.

    Args:
      decay: in [0, 1); the weight of the past. Default 0.999 (torch's
        ``get_ema_multi_avg_fn``).
      debias: Adam-style zero start and correction (True) or torch's first-copy start
        (False). Default True.
      average_dtype: storage dtype of the average. Default None: the parameter dtype, at
        least float32 (so bfloat16 parameters keep a float32 average).

    Example:
      >>> tx = gx.chain(gx.sgd(learning_rate=1.0), gx.ema_params(0.5, debias=False))
      >>> params = jnp.array([0.0])
      >>> state = tx.init(params)
      >>> for _ in range(2):  # params 1, then 2
      ...     updates, state = tx.update(jnp.array([-1.0]), state, params)
      ...     params = gx.apply_updates(params, updates)
      >>> gx.eval_params(state, params)  # 1 + 0.5 (2 - 1)
      Array([1.5], dtype=float32)
    """

    decay: Scalar = 0.999
    _: KW_ONLY
    debias: bool = static_field(default=True)
    average_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        check_hparam("ema_params", "decay", self.decay, low=0, high=1, high_open=True)

    def init(self, params):
        return EmaParamsState(
            n_averaged=zero_count(),
            ema=map_params(lambda p: new_slot(p, slot_dtype(p, self.average_dtype)), params),
        )

    def update(self, updates, state, params=None, **extra):
        n = state.n_averaged
        t = safe_increment(n)
        decay = jnp.asarray(self.decay, scalar_dtype())
        if self.debias:
            weight = (1 - decay) / bias_correction(self.decay, t.astype(scalar_dtype()))
        else:
            weight = 1 - decay
        updates, ema = _average_step("ema_params", updates, state.ema, params, n, weight, True)
        return updates, EmaParamsState(n_averaged=t, ema=ema)


class SwaState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: updates seen
    n_averaged: jax.Array  # int32 scalar: parameter sets in the average
    average: PyTree  # like params, average_dtype: their equal-weight mean

    def _eval_params(self, params: Params) -> Params:
        """The average; the params themselves while nothing is averaged."""
        return _average_or_params(self, self.average, params)


class swa(GradientTransformation):
    """Equal-weight average of the parameters (SWA); u <- u unchanged. Place it last.

    With p_t = p + u the parameters after update t (t = 1, 2, ...), the average takes
    p_t for t = start_step, start_step + every, ...: a copy of the first, then
    avg <- avg + (p_t - avg) / (n + 1), n the number averaged before: torch
    ``AveragedModel(model)`` (default ``avg_fn``) with ``update_parameters(model)``
    called after those steps (Izmailov et al., 2018). ``gx.eval_params(state, params)``
    returns it in the params' dtypes (the params themselves before ``start_step``).
    Needs ``params``. Batch-norm statistics are not parameters: recompute them as
    ``torch.optim.swa_utils.update_bn`` does, if the model has any.

    Args:
      start_step: integer >= 1, the first update whose result is averaged. Default 1
        (all of them: Polyak averaging).
      every: integer >= 1, average every that many updates from ``start_step`` (SWA
        averages once per epoch). Default 1.
      average_dtype: storage dtype of the average. Default None: the parameter dtype, at
        least float32.

    Example:
      >>> tx = gx.chain(gx.sgd(learning_rate=1.0), gx.swa(start_step=2))
      >>> params = jnp.array([0.0])
      >>> state = tx.init(params)
      >>> for _ in range(4):  # params 1, 2, 3, 4
      ...     updates, state = tx.update(jnp.array([-1.0]), state, params)
      ...     params = gx.apply_updates(params, updates)
      >>> gx.eval_params(state, params), state.swa.n_averaged  # (2 + 3 + 4) / 3
      (Array([3.], dtype=float32), Array(3, dtype=int32))
    """

    start_step: int = 1
    _: KW_ONLY
    every: int = 1
    average_dtype: DTypeLike | None = static_field(default=None)

    def __post_init__(self):
        check_int("swa", "start_step", self.start_step, low=1)
        check_int("swa", "every", self.every, low=1)

    def init(self, params):
        return SwaState(
            count=zero_count(),
            n_averaged=zero_count(),
            average=map_params(lambda p: new_slot(p, slot_dtype(p, self.average_dtype)), params),
        )

    def update(self, updates, state, params=None, **extra):
        t = safe_increment(state.count)
        start = as_int(self.start_step)
        take = (t >= start) & ((t - start) % as_int(self.every) == 0)
        n = state.n_averaged
        weight = 1 / (n + 1).astype(scalar_dtype())
        updates, avg = _average_step("swa", updates, state.average, params, n, weight, take)
        n_new = jnp.where(take, safe_increment(n), n)
        return updates, SwaState(count=t, n_averaged=n_new, average=avg)

"""Projections of the resulting parameters: ``project`` and ``keep_params_nonnegative``.

Both adjust the updates so that ``params + updates`` lands in a set:
``params + updates == fn(params + updates)``. Place them last in a chain. (The box
projection of the full-batch solvers, ``lower``/``upper`` bounds, is a separate helper of
``gradxform.fullbatch``.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from .._checks import check_params, check_tree_structure, is_param, need_params
from .._leafwise import compute_dtype, landing_dtypes, map_updates
from ..base import GradientTransformation, empty_state

__all__ = ["project", "keep_params_nonnegative"]


def _projected_update(u: jax.Array, p: Any, target: Any) -> jax.Array:
    """The update taking p to ``target`` where target differs from p + u, else u itself.

    Unchanged elements keep their update bit for bit; a projected element gets
    target - p, so p + update == target up to one rounding (exactly, when target is 0).
    """
    dt, out_dt = landing_dtypes(u, p)
    pc = jnp.asarray(p).astype(dt)
    z = pc + u.astype(dt)
    t = jnp.asarray(target).astype(dt)
    return jnp.where(t == z, u.astype(dt), t - pc).astype(out_dt)


def _candidate(u: Any, p: Any) -> Any:
    if is_param(u) and is_param(p):
        dt = compute_dtype(u)
        return jnp.asarray(p).astype(dt) + u.astype(dt)
    return p


class project(GradientTransformation):
    """Projects the would-be parameters: updates u' such that p + u' == fn(p + u).

    ``fn`` maps a parameter tree to a parameter tree of the same structure and shapes
    (e.g. ``lambda t: jax.tree.map(lambda x: jnp.clip(x, 0, 1), t)``). Place it *last*
    in a chain. Elements that ``fn`` leaves unchanged keep their update exactly; changed
    ones get fn(p + u) - p, so ``apply_updates`` lands on fn(p + u) up to one rounding
    (exactly when the projected value is 0). Leaves whose update is ``None`` are frozen
    and not projected.

    Args:
      fn: the projection, params -> params; static structure (compared by identity).
        No default.

    Example:
      >>> tx = gx.project(lambda x: jnp.clip(x, 0.0, 1.0))
      >>> params = jnp.array([0.5, 0.5])
      >>> updates, state = tx.update(jnp.array([1.0, -0.25]), tx.init(params), params)
      >>> gx.apply_updates(params, updates)
      Array([1.  , 0.25], dtype=float32)
    """

    fn: Callable
    lands_on_params: ClassVar[bool] = True  # chain keeps the update's landing dtype

    def __post_init__(self):
        if not callable(self.fn):
            raise TypeError(f"project: fn must be a callable params -> params, got {self.fn!r}")

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        need_params("project", params)
        check_params(updates, params)
        candidate = jax.tree_util.tree_map(_candidate, updates, params, is_leaf=lambda x: x is None)
        target = self.fn(candidate)
        check_tree_structure(candidate, target, names=("params", "project's fn output"))
        for (path, c), t in zip(
            jax.tree_util.tree_flatten_with_path(candidate)[0], jax.tree_util.tree_leaves(target)
        ):
            if jnp.shape(c) != jnp.shape(t):
                raise ValueError(
                    f"project: fn changed the shape of the leaf at "
                    f"{jax.tree_util.keystr(path)} from {jnp.shape(c)} to {jnp.shape(t)}"
                )
        return map_updates(
            lambda u, p, t: (_projected_update(u, p, t), p, t),
            updates,
            params,
            target,
            n_out=3,
        )[0], state


class keep_params_nonnegative(GradientTransformation):
    """Keeps real parameters >= 0: where p + u < 0 the update becomes -p (so p -> 0).

    Elsewhere updates pass through unchanged. Needs ``params``; place it last in a
    chain. (Parameters are assumed >= 0 to begin with.) Complex parameters are an error.

    Example:
      >>> tx = gx.chain(gx.sgd(learning_rate=1.0), gx.keep_params_nonnegative())
      >>> params = jnp.array([1.0, 0.5])
      >>> updates, state = tx.update(jnp.array([2.0, 0.25]), tx.init(params), params)
      >>> updates, gx.apply_updates(params, updates)
      (Array([-1.  , -0.25], dtype=float32), Array([0.  , 0.25], dtype=float32))
    """

    lands_on_params: ClassVar[bool] = True  # chain keeps the update's landing dtype

    def init(self, params):
        return empty_state(params)

    def update(self, updates, state, params=None, **extra):
        need_params("keep_params_nonnegative", params)
        check_params(updates, params)

        def f(u, p):
            if jnp.iscomplexobj(u) or jnp.iscomplexobj(p):
                raise TypeError("keep_params_nonnegative: complex parameters have no sign")
            dt, out_dt = landing_dtypes(u, p)
            pc = jnp.asarray(p).astype(dt)
            out = jnp.where(pc + u.astype(dt) < 0, -pc, u.astype(dt))
            return (out.astype(out_dt),)

        return map_updates(f, updates, params)[0], state

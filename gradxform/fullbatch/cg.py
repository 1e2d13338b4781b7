"""Nonlinear conjugate gradient: ``scale_by_conjugate_gradient`` and ``conjugate_gradient``.

d_0 = -g_0;  d_k = -g_k + beta_k d_{k-1}, with y = g_k - g_{k-1} and (Nocedal & Wright,
sec. 5.2; Hager & Zhang 2006, table 1):

    fletcher_reeves   beta = <g_k, g_k> / <g_{k-1}, g_{k-1}>          (Fletcher & Reeves 1964)
    polak_ribiere     beta = max(0, <g_k, y> / <g_{k-1}, g_{k-1}>)    (PR+, Gilbert & Nocedal 1992)
    hestenes_stiefel  beta = <g_k, y> / <d_{k-1}, y>                  (Hestenes & Stiefel 1952)
    dai_yuan          beta = <g_k, g_k> / <d_{k-1}, y>                (Dai & Yuan 1999)

On a quadratic with exact line searches all four coincide and reach the minimum of an
n-dimensional problem in at most n steps.

Automatic restarts (beta = 0, i.e. a steepest-descent step) when:
- ``restart_every`` updates have passed since the last restart (default: n, the number of
  parameters);
- consecutive gradients are far from orthogonal, |<g_k, g_{k-1}>| >= nu <g_k, g_k>
  (Powell 1977; nu = ``restart_threshold``, default 0.2; None disables the test);
- beta is not finite, the gradient did not change (the last line search failed), or d_k
  is not a descent direction (<g_k, d_k> >= 0).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_hparam, check_int, is_none, is_param
from .._leafwise import safe_increment, zero_count
from .._module import static_field
from .._typing import Scalar, Updates
from ..base import GradientTransformation, named_chain
from ..tree import tree_diff, tree_scale, tree_where, vdot
from ._common import cast_like, check_real, grad_slots, real_dtype
from .linesearch import LineSearch
from .zoom import zoom_linesearch

__all__ = ["CgState", "scale_by_conjugate_gradient", "conjugate_gradient"]

METHODS = ("fletcher_reeves", "polak_ribiere", "hestenes_stiefel", "dai_yuan")


class CgState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: updates so far
    grad: Updates  # like params: g_{k-1}
    direction: Updates  # like params: d_{k-1}
    since_restart: jax.Array  # int32 scalar: updates since the last steepest-descent step
    beta: jax.Array  # scalar: beta of the last update (0 at a restart)


class scale_by_conjugate_gradient(GradientTransformation):
    """Nonlinear CG direction: u <- d_k = -g_k + beta_k d_{k-1} (a descent direction).

    See the module docstring for the beta formulas and the restart rules. ``updates``
    must be the full gradient; follow with a line search (strong Wolfe with c2 < 0.5
    keeps Fletcher-Reeves and Dai-Yuan directions descent directions).

    Args:
      method: the beta formula: ``"polak_ribiere"``, ``"fletcher_reeves"``,
        ``"hestenes_stiefel"`` or ``"dai_yuan"``. Default ``"polak_ribiere"`` (PR+, as
        SciPy's CG).
      restart_every: restart period, an integer >= 1. Default None: the number of
        parameters.
      restart_threshold: Powell's nu in (0, 1], or None for no such test. Default 0.2
        (Powell, 1977).

    Example:
      >>> tx = gx.scale_by_conjugate_gradient()
      >>> x = jnp.array([1.0, -2.0])
      >>> state = tx.init(x)
      >>> d, state = tx.update(2 * x, state, x)  # the gradient of sum(x**2)
      >>> d, state.beta  # the first direction is steepest descent
      (Array([-2.,  4.], dtype=float32), Array(0., dtype=float32))
    """

    method: str = static_field(default="polak_ribiere")
    restart_every: int | None = None
    restart_threshold: Scalar | None = 0.2

    def __post_init__(self):
        o = "scale_by_conjugate_gradient"
        if self.method not in METHODS:
            raise ValueError(f"{o}: method must be one of {METHODS}, got {self.method!r}")
        if self.restart_every is not None:
            check_int(o, "restart_every", self.restart_every, low=1)
        if self.restart_threshold is not None:
            nu = self.restart_threshold
            check_hparam(o, "restart_threshold", nu, low=0, high=1, low_open=True)

    def init(self, params):
        check_real(params, "scale_by_conjugate_gradient")
        return CgState(
            count=zero_count(),
            grad=grad_slots(params),
            direction=grad_slots(params),
            since_restart=zero_count(),
            beta=jnp.zeros([], real_dtype(params)),
        )

    def update(self, updates, state, params=None, **extra):
        dt = state.beta.dtype
        g = cast_like(updates, state.grad)
        g_prev, d_prev = state.grad, state.direction
        y = tree_diff(g, g_prev)
        gg, gg_prev, yy = vdot(g, g, dt), vdot(g_prev, g_prev, dt), vdot(y, y, dt)
        gy, dy = vdot(g, y, dt), vdot(d_prev, y, dt)
        if self.method == "fletcher_reeves":
            beta = gg / gg_prev
        elif self.method == "polak_ribiere":
            beta = jnp.maximum(gy / gg_prev, 0)
        elif self.method == "hestenes_stiefel":
            beta = gy / dy
        else:
            beta = gg / dy
        if self.restart_every is None:
            n = sum(math.prod(jnp.shape(x)) for x in jax.tree_util.tree_leaves(g))
            period = jnp.asarray(max(n, 1), jnp.int32)
        else:
            period = jnp.asarray(self.restart_every).astype(jnp.int32)
        restart = (state.count == 0) | (state.since_restart >= period)
        restart |= ~jnp.isfinite(beta) | (yy == 0)
        if self.restart_threshold is not None:
            nu = jnp.asarray(self.restart_threshold, dt)
            restart |= jnp.abs(vdot(g, g_prev, dt)) >= nu * gg
        beta = jnp.where(restart, 0, beta)
        d = jax.tree_util.tree_map(
            lambda gl, dl: None if gl is None else -gl + beta.astype(gl.dtype) * dl,
            g,
            d_prev,
            is_leaf=is_none,
        )
        not_descent = ~(vdot(g, d, dt) < 0)
        d = tree_where(not_descent, tree_scale(-1.0, g), d)
        restart |= not_descent
        beta = jnp.where(not_descent, 0, beta)
        out = jax.tree_util.tree_map(
            lambda u, dl: u if not is_param(u) else dl.astype(jnp.result_type(u)),
            updates,
            d,
            is_leaf=is_none,
        )
        new_state = CgState(
            count=safe_increment(state.count),
            grad=g,
            direction=d,
            since_restart=jnp.where(restart, 1, safe_increment(state.since_restart)),
            beta=beta,
        )
        return out, new_state


def conjugate_gradient(
    method: str = "polak_ribiere",
    *,
    restart_every: int | None = None,
    restart_threshold: Scalar | None = 0.2,
    linesearch: GradientTransformation | None = None,
):
    """Nonlinear conjugate gradient with a strong-Wolfe line search.

    = chain(scale_by_conjugate_gradient(method, restart_every, restart_threshold),
            zoom_linesearch(c2=0.4, initial_guess="interpolate")),
    the line search constants of SciPy's CG (c1 = 1e-4, c2 = 0.4, initial step
    min(1, 1.01 * 2 (f_{k-1} - f_k) / -phi'(0))). Needs value, grad and value_fn in
    ``update``; see ``gx.minimize``.

    Args:
      method: the beta formula (see ``scale_by_conjugate_gradient``). Default
        ``"polak_ribiere"`` (PR+, as SciPy's CG).
      restart_every: restart period, an integer >= 1. Default None: the number of
        parameters.
      restart_threshold: Powell's nu in (0, 1], or None. Default 0.2 (Powell, 1977).
      linesearch: a ``zoom_linesearch`` or ``backtracking_linesearch``. Default None:
        the zoom search above (SciPy's CG constants).

    Example:
      >>> f = lambda x: (x[0] - 1.0) ** 2 + 10.0 * (x[1] - 2.0) ** 2
      >>> result = gx.minimize(f, jnp.zeros(2), gx.conjugate_gradient())
      >>> result.params.round(4), gx.MinimizeStatus(int(result.status)).name
      (Array([1., 2.], dtype=float32), 'CONVERGED')
    """
    if linesearch is None:
        linesearch = zoom_linesearch(c2=0.4, initial_guess="interpolate")
    if not isinstance(linesearch, LineSearch):
        raise TypeError(
            "conjugate_gradient: linesearch must be a zoom_linesearch or "
            f"backtracking_linesearch, got {linesearch!r}"
        )
    return named_chain(
        "conjugate_gradient",
        scale_by_conjugate_gradient(method, restart_every, restart_threshold),
        linesearch,
    )

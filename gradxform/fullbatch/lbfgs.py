"""Limited-memory BFGS: ``scale_by_lbfgs`` (the direction) and ``lbfgs`` (with a search).

L-BFGS (Nocedal 1980; Liu & Nocedal 1989; Nocedal & Wright, sec. 7.2) keeps the last m
pairs s_i = x_{i+1} - x_i, y_i = g_{i+1} - g_i and steps along d = -H_k g, where H_k is
the BFGS inverse update of H_0 = gamma I (gamma = <s, y> / <y, y> of the newest pair) by
the stored pairs, oldest first:

    H <- (I - rho s y') H (I - rho y s') + rho s s',   rho = 1 / <s, y>.

H_k g is computed with the two-loop recursion (Nocedal & Wright, Alg. 7.4) over a ring
buffer of the pairs (newest first, then oldest first):

    q = g;  for each pair, newest first:  a_i = rho_i <s_i, q>,  q <- q - a_i y_i
    r = gamma q;  for each pair, oldest first:  b = rho_i <y_i, r>,  r <- r + (a_i - b) s_i
    H_k g = r.

A pair with <s, y> <= eps <y, y> (no positive curvature) is not stored. If the gradient
did not change since the last update (the parameters did not move: a failed line
search) the memory is cleared, so the next direction is steepest descent, as SciPy's
L-BFGS-B does.

Box constraints (``lower``/``upper``), in the two-metric projection form (Bertsekas 1982;
the projected L-BFGS of Kim, Sra & Dhillon 2010): variables at a bound whose gradient
pushes outward are held fixed (their gradient is zeroed before applying H_k and their
direction after), components of d pointing out of the box at an active bound are dropped,
and the projected backtracking search moves along P(x + alpha d). This is not L-BFGS-B's
Cauchy-point / subspace algorithm, but it reaches the same minimizer.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_int, is_none, is_param
from .._leafwise import compute_dtype, map_params, safe_increment, slot_dtype, zero_count
from .._module import static_field
from .._typing import Params, PyTree, TreeDef, Updates
from ..base import GradientTransformation, named_chain
from ..tree import tree_diff, vdot
from ._common import (
    at_bound,
    bound_leaves,
    cast_like,
    check_bounds,
    check_real,
    check_same_arrays,
    grad_slots,
    real_dtype,
)
from .linesearch import LineSearch, backtracking_linesearch
from .zoom import zoom_linesearch

__all__ = ["LbfgsState", "scale_by_lbfgs", "lbfgs"]


class LbfgsState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: updates so far
    params: Params  # like params: x at the last update (to form s = x_new - x)
    grad: Updates  # like params: gradient at the last update (to form y = g_new - g)
    s_history: PyTree  # like params with a leading memory_size axis: ring buffer of s_i
    y_history: PyTree  # like s_history: y_i
    rho: jax.Array  # (memory_size,): 1 / <s_i, y_i>; 0 marks an empty slot
    gamma: jax.Array  # scalar: H_0 = gamma I (<s, y> / <y, y> of the newest pair, else 1)
    pairs: jax.Array  # int32 scalar: pairs stored since the last reset (newest at pairs-1 mod m)


def two_loop(q: list, s_hist: list, y_hist: list, rho, gamma, pairs, dt) -> list:
    """H q for leaf lists q and ring-buffer histories (axis 0) holding ``pairs`` pairs
    (the newest at slot pairs - 1 mod m). Only the stored pairs are visited."""
    m = rho.shape[0]
    count = jnp.minimum(pairs, m)
    newest = (pairs - 1) % m

    def dot(hist, i, v):
        return sum(jnp.sum(h[i].astype(dt) * x.astype(dt)) for h, x in zip(hist, v))

    def axpy(a, hist, i, v):
        return [x + a.astype(x.dtype) * h[i].astype(x.dtype) for h, x in zip(hist, v)]

    def newest_first(j, carry):
        q, alphas = carry
        i = (newest - j) % m
        a = rho[i] * dot(s_hist, i, q)
        return axpy(-a, y_hist, i, q), alphas.at[i].set(a)

    def oldest_first(j, r):
        i = (newest - count + 1 + j) % m
        b = rho[i] * dot(y_hist, i, r)
        return axpy(alphas[i] - b, s_hist, i, r)

    q, alphas = jax.lax.fori_loop(0, count, newest_first, (q, jnp.zeros([m], dt)))
    return jax.lax.fori_loop(0, count, oldest_first, [gamma.astype(x.dtype) * x for x in q])


class scale_by_lbfgs(GradientTransformation):
    """L-BFGS direction: u <- d = -H_k g (a descent direction; follow with a line search).

    See the module docstring for the recursion, the memory rules and box constraints.
    ``updates`` must be the gradient and ``params`` is required (the pairs are formed from
    successive params and gradients). The first direction (empty memory) is -g; the line
    searches scale its first step by 1 / ||g||.

    Args:
      memory_size: m, an integer >= 1: the (s, y) pairs kept. Default 10 (SciPy's
        L-BFGS-B ``maxcor``).
      scale_init_hessian: H_0 = gamma I with gamma = <s, y> / <y, y> (Nocedal & Wright,
        eq. 7.20); False: H_0 = I. Default True.
      lower: lower bound of the box for the two-metric projection: None (unbounded), a
        scalar or a tree like params. Must equal the line search's (``lbfgs`` sets
        both). Default None.
      upper: upper bound, as ``lower``. Default None.

    Example:
      >>> tx = gx.scale_by_lbfgs()
      >>> x = jnp.array([1.0, -2.0])
      >>> state = tx.init(x)
      >>> d, state = tx.update(2 * x, state, x)  # the gradient of sum(x**2)
      >>> d  # empty memory: steepest descent
      Array([-2.,  4.], dtype=float32)
      >>> x = x + 0.25 * d
      >>> d, state = tx.update(2 * x, state, x)  # one pair: the exact Newton step
      >>> x + d
      Array([0., 0.], dtype=float32)
    """

    memory_size: int = static_field(default=10)
    scale_init_hessian: bool = static_field(default=True)
    lower: PyTree | None = None
    upper: PyTree | None = None

    def __post_init__(self):
        check_int("scale_by_lbfgs", "memory_size", self.memory_size, low=1)
        got: object = self.scale_init_hessian  # as given (the annotation is what it must be)
        if not isinstance(got, bool):
            raise TypeError(f"scale_by_lbfgs: scale_init_hessian must be a bool, got {got!r}")
        check_bounds("scale_by_lbfgs", self.lower, self.upper)

    def init(self, params):
        check_real(params, "scale_by_lbfgs")
        m = int(self.memory_size)

        def hist(p):
            return jnp.zeros((m, *jnp.shape(p)), slot_dtype(p))

        dt = real_dtype(params)
        return LbfgsState(
            count=zero_count(),
            params=grad_slots(params),
            grad=grad_slots(params),
            s_history=map_params(hist, params),
            y_history=map_params(hist, params),
            rho=jnp.zeros([m], dt),
            gamma=jnp.ones([], dt),
            pairs=zero_count(),
        )

    def update(self, updates, state, params=None, **extra):
        if params is None:
            raise TypeError("scale_by_lbfgs.update: params is required (s = x_new - x)")
        dt = state.gamma.dtype
        eps = jnp.asarray(jnp.finfo(dt).eps, dt)
        g = cast_like(updates, state.grad)
        s = cast_like(tree_diff(params, state.params), state.grad)
        y = cast_like(tree_diff(g, state.grad), state.grad)
        sy, yy = vdot(s, y, dt), vdot(y, y, dt)
        started = state.count > 0
        keep = started & (sy > eps * yy) & jnp.isfinite(sy) & jnp.isfinite(yy)
        # The gradient did not change: the last step did not move (a failed line search).
        reset = started & (yy == 0)
        m = state.rho.shape[0]
        # The new pair goes to slot pairs % m if kept; otherwise to index m, out of range,
        # where mode="drop" skips the write (cheaper than reading the old row back).
        target = jnp.where(keep, state.pairs % m, m)

        def push(hist, new):
            return hist.at[target].set(new.astype(hist.dtype), mode="drop")

        s_hist = jax.tree_util.tree_map(push, state.s_history, s)
        y_hist = jax.tree_util.tree_map(push, state.y_history, y)
        rho = state.rho.at[target].set(1 / jnp.where(keep, sy, 1), mode="drop")
        rho = jnp.where(reset, 0, rho)
        pairs = jnp.where(reset, 0, state.pairs + keep.astype(jnp.int32))
        gamma = jnp.where(keep, sy / jnp.where(keep, yy, 1), state.gamma)
        gamma = jnp.where(reset, 1, gamma)
        if not self.scale_init_hessian:
            gamma = jnp.ones([], dt)

        treedef: TreeDef
        leaves, treedef = jax.tree_util.tree_flatten(g, is_leaf=is_none)
        idx = [i for i, x in enumerate(leaves) if is_param(x)]
        x_leaves = jax.tree_util.tree_leaves(params, is_leaf=is_none)
        check_same_arrays(x_leaves, leaves, params, "scale_by_lbfgs")
        g_act = [leaves[i].astype(compute_dtype(leaves[i])) for i in idx]
        bounded = self.lower is not None or self.upper is not None
        if bounded:
            check_bounds("scale_by_lbfgs.update", self.lower, self.upper, params)
            lo = bound_leaves(self.lower, params, "scale_by_lbfgs", "lower")
            hi = bound_leaves(self.upper, params, "scale_by_lbfgs", "upper")
            at_lo, at_hi = [], []
            for i in idx:
                x = jnp.asarray(x_leaves[i])
                at_lo.append(at_bound(x, lo[i], jnp.less_equal))
                at_hi.append(at_bound(x, hi[i], jnp.greater_equal))
            binding = [(a & (gl > 0)) | (b & (gl < 0)) for a, b, gl in zip(at_lo, at_hi, g_act)]
            g_act = [jnp.where(bd, 0, gl) for bd, gl in zip(binding, g_act)]

        s_leaves = jax.tree_util.tree_leaves(s_hist)
        y_leaves = jax.tree_util.tree_leaves(y_hist)
        r = two_loop(g_act, s_leaves, y_leaves, rho, gamma, pairs, dt)
        d = [-x for x in r]
        if bounded:
            d = [
                jnp.where(bd | (a & (dl < 0)) | (b & (dl > 0)), 0, dl)
                for bd, a, b, dl in zip(binding, at_lo, at_hi, d)
            ]
        slope = sum((jnp.vdot(gl.astype(dt), dl.astype(dt)) for gl, dl in zip(g_act, d)), 0)
        ok = slope < 0
        d = [jnp.where(ok, dl, -gl) for dl, gl in zip(d, g_act)]

        out = list(leaves)
        for i, dl in zip(idx, d):
            out[i] = dl.astype(jnp.result_type(leaves[i]))
        new_state = LbfgsState(
            count=safe_increment(state.count),
            params=cast_like(params, state.params),
            grad=g,
            s_history=s_hist,
            y_history=y_hist,
            rho=rho,
            gamma=gamma,
            pairs=pairs,
        )
        return treedef.unflatten(out), new_state


def lbfgs(
    *,
    memory_size: int = 10,
    scale_init_hessian: bool = True,
    linesearch: GradientTransformation | None = None,
    lower: PyTree | None = None,
    upper: PyTree | None = None,
):
    """L-BFGS with a strong-Wolfe line search (box-constrained with ``lower``/``upper``).

    = chain(scale_by_lbfgs(memory_size, scale_init_hessian), zoom_linesearch()), the zoom
    with SciPy L-BFGS-B's constants c1 = 1e-4, c2 = 0.9, at most 20 evaluations, first
    step 1 / ||g|| then 1. With bounds: chain(scale_by_lbfgs(..., lower, upper),
    backtracking_linesearch(lower=lower, upper=upper)) (projected Armijo search; a
    ``backtracking_linesearch`` given as ``linesearch`` gets the bounds, and one given
    with its own bounds, none here, passes them to the direction). Parameters should
    start inside the box (``gx.minimize`` projects the start). Needs value, grad and
    value_fn in ``update``; see ``gx.minimize``. Every argument is keyword-only: Optax's
    ``lbfgs`` takes ``learning_rate`` first (there is none here: the line search picks
    the step).

    Args:
      memory_size: m, an integer >= 1: the (s, y) pairs kept. Default 10 (SciPy's
        L-BFGS-B ``maxcor``).
      scale_init_hessian: H_0 = gamma I with gamma = <s, y> / <y, y>; False: H_0 = I.
        Default True.
      linesearch: a ``zoom_linesearch`` or ``backtracking_linesearch``. Default None: the
        zoom search above (SciPy L-BFGS-B's constants), or the projected backtracking
        search with bounds.
      lower: lower bound of the box: None (unbounded), a scalar or a tree like params.
        Default None.
      upper: upper bound, as ``lower``. Default None.

    Example:
      >>> f = lambda x: jnp.sum((x - jnp.array([1.0, 2.0])) ** 2)
      >>> result = gx.minimize(f, jnp.zeros(2), gx.lbfgs())
      >>> result.params.round(4), gx.MinimizeStatus(int(result.status)).name
      (Array([1., 2.], dtype=float32), 'CONVERGED')
      >>> boxed = gx.minimize(f, jnp.zeros(2), gx.lbfgs(upper=1.5))
      >>> boxed.params.round(4)
      Array([1. , 1.5], dtype=float32)
    """
    bounded = lower is not None or upper is not None
    if linesearch is not None and not isinstance(linesearch, LineSearch):
        raise TypeError(
            "lbfgs: linesearch must be a zoom_linesearch or backtracking_linesearch, got "
            f"{linesearch!r}"
        )
    if not bounded and linesearch is not None:
        # A bounded search given alone: the direction must know the box too (without it
        # L-BFGS pushes into the bounds and the projected step does not move).
        lower, upper = getattr(linesearch, "lower", None), getattr(linesearch, "upper", None)
    elif linesearch is None:
        linesearch = backtracking_linesearch(lower=lower, upper=upper) if bounded else (
            zoom_linesearch()
        )  # fmt: skip
    else:
        if not isinstance(linesearch, backtracking_linesearch):
            raise ValueError(
                "lbfgs: box constraints need a backtracking_linesearch (projected Armijo "
                f"search), got {type(linesearch).__name__}"
            )
        linesearch = dataclasses.replace(linesearch, lower=lower, upper=upper)
    return named_chain(
        "lbfgs",
        scale_by_lbfgs(memory_size, scale_init_hessian, lower=lower, upper=upper),
        linesearch,
    )

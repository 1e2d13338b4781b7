"""``minimize``: a whole full-batch optimization in one ``jax.lax.while_loop``.

One compile, no Python per step. Each step calls
``tx.update(grad, state, params, value=f, grad=grad, value_fn=fun)`` and applies the
update. With a line search in ``tx`` (``lbfgs``, ``conjugate_gradient``,
``gradient_descent_linesearch``, or any chain ending in ``zoom_linesearch`` /
``backtracking_linesearch``) the value, gradient and aux at the new point are read from
the line search's state, so evaluations are counted exactly: one at the start plus those
of the line searches. Any other transform (adam, sgd, ...) gets one evaluation per step.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_hparam, check_int, check_transform, is_none, is_param
from .._module import value_or_id
from .._typing import OptState, Params, PyTree, Updates
from ..base import apply_updates, chain
from ..tree import max_abs, tree_where
from ._common import (
    bound_leaves,
    cast_like,
    check_bounds,
    check_real,
    clip_to_box,
    grad_slots,
    real_dtype,
    split_output,
    tracing,
    value_and_grad,
)
from .linesearch import LineSearch, LineSearchState, LineSearchStatus

__all__ = ["MinimizeStatus", "MinimizeResult", "minimize"]

_RUNNING = -1


class MinimizeStatus(enum.IntEnum):
    """Why ``minimize`` stopped (``result.status``)."""

    CONVERGED = 0  # max |grad| <= tol, or the relative decrease was <= ftol
    MAX_STEPS = 1  # max_steps updates without converging
    LINESEARCH_FAILED = 2  # the line search took no step twice in a row
    NON_FINITE = 3  # fun or its gradient was not finite (params: the last finite iterate)


class MinimizeResult(NamedTuple):
    params: Params  # final parameters (the last finite iterate)
    value: jax.Array  # fun(params)
    grad: Updates  # gradient of fun at params
    aux: PyTree  # fun's aux at params with has_aux=True, else None
    num_steps: jax.Array  # int32: updates taken (steps that moved the parameters)
    num_evals: jax.Array  # int32: evaluations of fun (value and gradient), the first included
    status: jax.Array  # int32: a MinimizeStatus
    state: OptState  # tx's state after the last update with return_state=True, else None


def _find_linesearch(tx: Any) -> LineSearch | None:
    found = [
        t
        for t in jax.tree_util.tree_leaves(tx, is_leaf=lambda t: isinstance(t, LineSearch))
        if isinstance(t, LineSearch)
    ]
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(f"minimize: tx has {len(found)} line searches; at most one is allowed")
    last = tx
    while isinstance(last, chain) and last.transforms:
        last = last.transforms[-1]
    if last is not found[0]:
        raise ValueError(
            "minimize: the line search must be the last transform of tx (its state holds the "
            f"value and gradient at the new parameters), got tx={tx!r}"
        )
    return found[0]


def _linesearch_state(state: Any) -> LineSearchState:
    return [
        s
        for s in jax.tree_util.tree_leaves(state, is_leaf=lambda s: isinstance(s, LineSearchState))
        if isinstance(s, LineSearchState)
    ][0]


def _seed(state: Any, value, grad, aux) -> Any:
    """The line search's state as if it had just produced the starting point."""

    def f(s):
        if isinstance(s, LineSearchState):
            return s._replace(value=value, grad=grad, aux=aux)
        return s

    return jax.tree_util.tree_map(f, state, is_leaf=lambda s: isinstance(s, LineSearchState))


def _grad_norm(params, grad, ls, dt):
    """max |g_i|, or max |P(x - g) - x| (the projected gradient) under box constraints."""
    if ls is None or (getattr(ls, "lower", None) is None and getattr(ls, "upper", None) is None):
        return max_abs(grad, dt)
    lo = bound_leaves(ls.lower, params, "minimize", "lower")
    hi = bound_leaves(ls.upper, params, "minimize", "upper")
    out = jnp.zeros([], dt)
    xs = jax.tree_util.tree_leaves(params, is_leaf=is_none)
    gs = jax.tree_util.tree_leaves(grad, is_leaf=is_none)
    for x, g, a, b in zip(xs, gs, lo, hi):
        if is_param(x) and is_param(g) and jnp.size(x):
            x = jnp.asarray(x).astype(dt)
            p = x - g.astype(dt)
            if a is not None:
                p = jnp.maximum(p, jnp.asarray(a).astype(dt))
            if b is not None:
                p = jnp.minimum(p, jnp.asarray(b).astype(dt))
            out = jnp.maximum(out, jnp.max(jnp.abs(p - x)))
    return out


def _run(fun, params, tx, max_steps, tol, ftol, has_aux, return_state):
    owner = "minimize"
    check_real(params, owner)  # whatever tx: the value is compared and decreases
    ls = _find_linesearch(tx)
    lower, upper = getattr(ls, "lower", None), getattr(ls, "upper", None)
    # Start from the projection onto the box, as SciPy's L-BFGS-B does: from outside it,
    # the first projected step would jump while value and gradient belong to x0.
    params = clip_to_box(params, lower, upper, owner)
    dt = real_dtype(params)
    slots = grad_slots(params)

    def checked(p):
        out = fun(p)
        if has_aux != isinstance(out, tuple):
            if isinstance(out, tuple):
                got = "a tuple"
            elif hasattr(out, "shape") or isinstance(out, (int, float)):
                got = "a scalar"
            else:
                got = f"a {type(out).__name__}"
            raise TypeError(
                f"minimize: has_aux={has_aux} but fun returned {got}; with has_aux=True fun "
                "must return (value, aux), else a scalar"
            )
        split_output(out, owner)
        return out

    def evaluate(p):
        value, grad, aux = value_and_grad(checked, p, owner)
        return value.astype(dt), cast_like(grad, slots), aux

    value, grad, aux = evaluate(params)
    if has_aux:
        aux = jax.tree_util.tree_map(jnp.asarray, aux)
    state = _seed(tx.init(params), value, grad, aux) if ls is not None else tx.init(params)
    max_steps = jnp.asarray(max_steps, jnp.int32)
    tol, ftol = jnp.asarray(tol, dt), jnp.asarray(ftol, dt)

    gnorm = _grad_norm(params, grad, ls, dt)
    status = jnp.where(
        ~(jnp.isfinite(value) & jnp.isfinite(gnorm)),
        MinimizeStatus.NON_FINITE,
        jnp.where(
            gnorm <= tol,
            MinimizeStatus.CONVERGED,
            jnp.where(max_steps <= 0, MinimizeStatus.MAX_STEPS, _RUNNING),
        ),
    ).astype(jnp.int32)
    one = jnp.ones([], jnp.int32)
    # Leaves that are not arrays cannot be loop carries: carry the rest, rebuild in the body.
    dynamic, static = _split_params(params)

    def full(x):
        return _join_params(x, static)

    def part(x):
        return x if static is None else _dynamic_leaves(x, static)

    def current(f, g, a, s):
        """Value, gradient and aux at the current point: with a line search they live in
        its state only (not duplicated in the carry, which would cost copies)."""
        if ls is None:
            return f, g, a
        ls_state = _linesearch_state(s)
        return ls_state.value, ls_state.grad, ls_state.aux

    fga = (value, grad, aux) if ls is None else (None, None, None)
    # The four int32 counters (steps, evaluations, status, line-search failures in a row)
    # travel as one vector: one kernel per step updates them all, where four scalars took
    # several (about 4% of a whole L-BFGS run in 2-D, where such kernels dominate).
    carry = (dynamic, *fga, state, jnp.stack([0 * one, one, status, 0 * one]))

    def body(carry):
        x, f, g, a, s, counters = carry
        k, evals, _, fails = counters
        f, g, a = current(f, g, a, s)
        x = full(x)
        updates, s_new = tx.update(g, s, x, value=f, grad=g, value_fn=checked)
        x_new = apply_updates(x, updates)
        f_new: jax.Array | None  # None in the carry when the line search state holds it
        if ls is not None:
            x_new = clip_to_box(x_new, lower, upper)
            ls_state = _linesearch_state(s_new)
            f_new, g_new, a_new = ls_state.value, ls_state.grad, ls_state.aux
            n_new = ls_state.num_evals
            failed = ls_state.status >= LineSearchStatus.FAILED
        else:
            f_new, g_new, a_new = evaluate(x_new)
            n_new = one
            failed = jnp.asarray(False)
        gnorm = _grad_norm(x_new, g_new, ls, dt)  # NaN or inf if g_new is not finite
        x, x_new = part(x), part(x_new)
        finite = jnp.isfinite(f_new) & jnp.isfinite(gnorm)
        moved = finite & ~failed
        fails = jnp.where(failed, fails + 1, 0)
        decrease = f - f_new
        scale = jnp.maximum(jnp.maximum(jnp.abs(f), jnp.abs(f_new)), 1)
        small = (decrease >= 0) & (decrease <= ftol * scale)
        converged = moved & ((gnorm <= tol) | small)
        k_new = k + moved.astype(jnp.int32)
        status = jnp.where(
            ~finite,
            MinimizeStatus.NON_FINITE,
            jnp.where(
                fails >= 2,
                MinimizeStatus.LINESEARCH_FAILED,
                jnp.where(
                    converged,
                    MinimizeStatus.CONVERGED,
                    jnp.where(k_new >= max_steps, MinimizeStatus.MAX_STEPS, _RUNNING),
                ),
            ),
        ).astype(jnp.int32)
        if ls is None:  # a non-finite point is never returned (line searches reject them)
            x_new, g_new, a_new = (
                tree_where(finite, *t) for t in ((x_new, x), (g_new, g), (a_new, a))
            )
            f_new = jnp.where(finite, f_new, f)
        else:
            f_new = g_new = a_new = None
        return x_new, f_new, g_new, a_new, s_new, jnp.stack([k_new, evals + n_new, status, fails])

    x, f, g, a, s, counters = jax.lax.while_loop(lambda c: c[-1][2] == _RUNNING, body, carry)
    k, evals, status, _ = counters
    f, g, a = current(f, g, a, s)
    return MinimizeResult(
        full(x), f, g, a if has_aux else None, k, evals, status, s if return_state else None
    )


_TX_CACHE: dict[tuple, tuple[Any, list, Any]] = {}


def _flat_tx(tx: Any, x64: bool, params: Any) -> tuple[list, Any]:
    """(leaves, treedef) of tx, Python-number leaves as (weakly typed) device scalars.

    Cached per transform object (transforms are immutable): repeated calls skip the
    Python-level flattening of the transform and the host-to-device conversion of every
    hyperparameter, microseconds each, which matters when a whole optimization takes
    tens of microseconds. Hyperparameters stay traced: a new value does not recompile.
    A new transform's box bounds are checked against params here (in the loop they are
    traced).
    """
    key = (id(tx), x64)
    hit = _TX_CACHE.get(key)
    if hit is not None and hit[0] is tx:
        return hit[1], hit[2]
    _check_bounds(tx, params)
    leaves, treedef = jax.tree_util.tree_flatten(tx)
    number = (int, float)
    leaves = [
        jnp.asarray(x) if isinstance(x, number) and not isinstance(x, bool) else x for x in leaves
    ]
    if len(_TX_CACHE) >= 16:
        _TX_CACHE.pop(next(iter(_TX_CACHE)))
    _TX_CACHE[key] = (tx, leaves, treedef)
    return leaves, treedef


_SCALARS: dict[tuple, tuple] = {}


def _scalars(key: tuple) -> tuple:
    """(max_steps, tol, ftol) as device scalars, cached (key: the values and the x64 flag).

    Tolerances become floats: ``tol=0`` and ``tol=1e-5`` must share a compilation."""
    max_steps, tol, ftol = key[:3]
    hit = (jnp.asarray(max_steps, jnp.int32), jnp.asarray(float(tol)), jnp.asarray(float(ftol)))
    if len(_SCALARS) >= 64:
        _SCALARS.pop(next(iter(_SCALARS)))
    _SCALARS[key] = hit
    return hit


def _check_bounds(tx: Any, params: Any) -> None:
    ls = _find_linesearch(tx)
    if ls is not None:
        check_bounds("minimize", getattr(ls, "lower", None), getattr(ls, "upper", None), params)


def _traceable(x: Any) -> bool:
    return x is None or isinstance(x, (jax.Array, np.ndarray, np.generic, float, complex))


def _split_params(params: Any) -> tuple[Any, Any]:
    """(dynamic part, static part) of params: leaves that are not arrays (strings, ints,
    objects) cannot enter jit and travel as static data (they are not optimized).
    A TypeError if nothing is left to optimize."""
    leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=is_none)
    if not any(is_param(x) for x in leaves):
        raise TypeError(
            "minimize: params has no floating-point leaf to optimize (integers, strings and "
            f"other non-float leaves are held fixed), got {params!r}; give floats, e.g. "
            "1.0 or jnp.asarray(1.0)"
        )
    if all(_traceable(x) for x in leaves):
        return params, None
    dynamic = [x if _traceable(x) else None for x in leaves]
    static = tuple((i, x) for i, x in enumerate(leaves) if not _traceable(x))
    return dynamic, (treedef, static)


def _dynamic_leaves(tree: Any, static: Any) -> list:
    return [x if _traceable(x) else None for x in static[0].flatten_up_to(tree)]


def _join_params(dynamic: Any, static: Any) -> Any:
    if static is None:
        return dynamic
    treedef, fixed = static
    leaves = list(dynamic)
    for i, x in fixed:
        leaves[i] = x
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _rejoin_grad(grad: list, static: Any) -> Any:
    return jax.tree_util.tree_unflatten(static[0], list(grad))


def _run_flat(
    fun, params, tx_leaves, max_steps, tol, ftol, tx_treedef, static, has_aux, return_state
):
    tx = jax.tree_util.tree_unflatten(tx_treedef, tx_leaves)
    res = _run(fun, _join_params(params, static), tx, max_steps, tol, ftol, has_aux, return_state)
    if static is None:
        return res

    # Non-array leaves cannot leave jit either: return the dynamic leaves only.
    grad = static[0].flatten_up_to(res.grad)
    return res._replace(params=_dynamic_leaves(res.params, static), grad=grad)


_run_jit = jax.jit(_run_flat, static_argnums=(0, 6, 7, 8, 9))

_UNHASHABLE: dict[tuple, tuple[Any, Any, Callable]] = {}


def _unhashable_jit(fun, treedef, static, has_aux, return_state) -> Callable:
    """The loop jitted for an objective (or non-array params leaves) that cannot be a
    static argument, e.g. a dataclass or Equinox module holding arrays: cached by
    identity, as jit caches a plain function, so the same object does not recompile."""
    statics = () if static is None else tuple(x for _, x in static[1])
    params_def = None if static is None else static[0]
    key = (id(fun), tuple(map(value_or_id, statics)), treedef, params_def, has_aux, return_state)
    hit = _UNHASHABLE.get(key)
    if hit is not None:
        return hit[2]
    flags = dict(has_aux=has_aux, return_state=return_state)
    run = jax.jit(functools.partial(_run_flat, fun, tx_treedef=treedef, static=static, **flags))
    if len(_UNHASHABLE) >= 16:
        _UNHASHABLE.pop(next(iter(_UNHASHABLE)))
    _UNHASHABLE[key] = (fun, statics, run)  # holds them: their ids stay theirs
    return run


def minimize(
    fun: Callable,
    params: Params,
    tx: Any,
    max_steps: int = 500,
    tol: float = 1e-5,
    *,
    ftol: float = 2.220446049250313e-09,
    has_aux: bool = False,
    return_state: bool = False,
) -> MinimizeResult:
    """Minimize ``fun(params)`` with ``tx``, the whole loop compiled as one while_loop.

    Stops when, after an update,
    - max_i |g_i| <= ``tol`` (SciPy's gtol / pgtol; the projected gradient
      max |P(x - g) - x| when the line search has box constraints): CONVERGED;
    - 0 <= (f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ``ftol`` (SciPy L-BFGS-B's
      factr * eps; an increase never stops): CONVERGED;
    - ``max_steps`` updates were taken: MAX_STEPS;
    - the line search took no step twice in a row (after a failure L-BFGS clears its
      memory and CG restarts, so the second try is steepest descent): LINESEARCH_FAILED;
    - fun or its gradient is not finite at the new point: NON_FINITE (the last finite
      point is returned).
    It also returns at once (0 steps) if the starting point already passes the gradient
    test or is not finite.

    Args:
      fun: params -> scalar, or -> (scalar, aux) with ``has_aux=True``. It is a static
        argument of the compiled loop: pass the same function object to reuse the
        compilation (a new lambda each call recompiles).
      params: starting point, any pytree (None and non-array leaves are not optimized).
      tx: any transform of the library; full-batch ones take value/grad/value_fn.
      max_steps: the most updates, an integer >= 0. Default 500. Like ``tol`` and
        ``ftol`` it is traced: changing it does not recompile.
      tol: the gradient tolerance, >= 0. Default 1e-5 (SciPy L-BFGS-B's ``pgtol``).
      ftol: the relative decrease tolerance, >= 0. Default 2.2e-9 (SciPy L-BFGS-B's
        ``factr`` 1e7 times the float64 eps).
      has_aux: fun returns (value, aux); ``result.aux`` is the aux at the final params.
        Default False.
      return_state: also return tx's final state. Default False (every returned array
        adds to the per-call cost, which is noticeable on tiny problems).

    Returns a ``MinimizeResult``: params, value, grad, aux, num_steps, num_evals
    (evaluations of fun and its gradient, the initial one included), status (int32;
    ``MinimizeStatus(int(result.status)).name`` names it) and, with ``return_state``,
    tx's final state.

    Example:
      >>> def f(p):
      ...     r = p["w"] - jnp.array([1.0, -2.0])
      ...     return jnp.sum(r**2) + (p["b"] - 0.5) ** 2, {"residual": r}
      >>> params = {"w": jnp.zeros(2), "b": jnp.array(3.0)}
      >>> result = gx.minimize(f, params, gx.lbfgs(), tol=1e-6, has_aux=True)
      >>> jax.tree.map(lambda x: x.round(4), result.params)
      {'b': Array(0.5, dtype=float32), 'w': Array([ 1., -2.], dtype=float32)}
      >>> gx.MinimizeStatus(int(result.status)).name, bool(result.value < 1e-8)
      ('CONVERGED', True)
      >>> list(result.aux)  # the aux at the final params
      ['residual']
      >>> sgd = gx.minimize(f, params, gx.sgd(learning_rate=0.25), max_steps=3, has_aux=True)
      >>> gx.MinimizeStatus(int(sgd.status)).name, int(sgd.num_steps)
      ('MAX_STEPS', 3)
    """
    if not callable(fun):
        raise TypeError(f"minimize: fun must be callable, got {fun!r}")
    check_transform("minimize", "tx", tx)
    # (This wrapper is kept lean: for small problems its microseconds are a visible part
    # of the whole run.)
    # JAX adds each config flag to jax.config at run time; its Config type declares none.
    x64 = jax.config.jax_enable_x64  # type: ignore[attr-defined]
    traced = tracing()
    numbers = None
    plain = type(max_steps) is int and type(tol) in (int, float) and type(ftol) in (int, float)
    if plain and not traced:
        key = (max_steps, tol, ftol, x64)
        numbers = _SCALARS.get(key)
    if numbers is None:
        check_int("minimize", "max_steps", max_steps, low=0)  # counted in int32
        check_hparam("minimize", "tol", tol, low=0)
        check_hparam("minimize", "ftol", ftol, low=0)
        if traced:
            # Inside the caller's jit/vmap/grad: trace the loop inline and cache nothing.
            # Cached device scalars would be tracers outliving their trace, and through
            # the module-level jit fun, which may close over the caller's tracers, would
            # stay in that jit's cache with them.
            _split_params(params)
            _check_bounds(tx, params)
            return _run(fun, params, tx, max_steps, tol, ftol, has_aux, return_state)
        numbers = _scalars(key) if plain else (max_steps, tol, ftol)
    leaves, treedef = _flat_tx(tx, x64, params)
    dynamic, static = (params, None) if isinstance(params, jax.Array) else _split_params(params)
    try:
        hash((fun, static))
    except TypeError:
        run = _unhashable_jit(fun, treedef, static, bool(has_aux), bool(return_state))
        res = run(dynamic, leaves, *numbers)
    else:
        flags = (bool(has_aux), bool(return_state))
        res = _run_jit(fun, dynamic, leaves, *numbers, treedef, static, *flags)
    if static is None:
        return res
    return res._replace(
        params=_join_params(res.params, static), grad=_rejoin_grad(res.grad, static)
    )

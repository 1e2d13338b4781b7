"""Line searches as transforms: the ``LineSearch`` base, ``backtracking_linesearch``.

(``zoom_linesearch``, the strong-Wolfe search, is in ``fullbatch.zoom``; what follows
holds for both.)

A line search is the last member of a chain. It receives a descent direction d as its
``updates`` and, as keyword arguments of ``update``, the current ``value`` f(x), its
``grad`` g(x) and ``value_fn`` (f itself; it may return ``value`` or ``(value, aux)``). It
picks a step alpha along phi(alpha) = f(x + alpha d), emits ``alpha * d`` and records in
its state the value, gradient and aux at the new point, so the caller can reuse them
instead of evaluating f again (``gx.minimize`` does). Each evaluation of ``value_fn``
computes the value and the gradient together. An optional ``aux`` keyword gives
value_fn's aux at x (the state's aux if the search takes no step; otherwise the
previous update's is used, or zeros of its structure on the first).

Initial trial step alpha_0: on the first update (and after a failed one) initial_step /
||d||, as SciPy's L-BFGS-B; afterwards ``initial_guess="unit"`` takes initial_step
(quasi-Newton directions are well scaled) and ``"interpolate"`` takes
min(initial_step, 1.01 * 2 (f_{k-1} - f_k) / -phi'(0)) (Nocedal & Wright, eq. 3.60; the
choice of SciPy's CG), falling back to initial_step when that is not positive.

Both searches also accept a trial by the approximate sufficient-decrease test of Hager &
Zhang (2005): f(x_alpha) <= f(x) + approx_rtol |f(x)| and a slope at the trial <=
(2 c1 - 1) times the initial slope. Near a minimum f stops changing in its last digits
(soon in float32) and the exact Armijo test then fails on round-off; this test lets the
search finish. ``approx_rtol`` defaults to 100 machine epsilons of the value dtype (0
disables it).

A failed search takes no step (its update is zero) and says so in ``state.status``
(``LineSearchStatus``). Only real parameters are supported.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_hparam, check_int, check_tree_structure, is_none, is_param
from .._leafwise import safe_increment, zero_count, zeros_like_updates
from .._module import static_field
from .._typing import PyTree, Scalar, Updates
from ..base import GradientTransformation, apply_updates, named_chain
from ..scaling import scale
from ..tree import tree_diff, tree_scale, tree_where, vdot
from ._common import (
    approx_decrease,
    approx_tolerance,
    at_bound,
    aux_placeholder,
    bound_leaves,
    cast_like,
    check_bounds,
    check_real,
    clip_to_box,
    grad_slots,
    real_dtype,
    value_and_grad,
)

__all__ = [
    "LineSearchStatus",
    "LineSearchState",
    "backtracking_linesearch",
    "gradient_descent_linesearch",
]


class LineSearchStatus(enum.IntEnum):
    """Outcome of a line search's last update (``state.status``)."""

    SUCCESS = 0  # the conditions (Armijo, or strong Wolfe) hold at the step taken
    DECREASE_ONLY = 1  # zoom ran out of evaluations: took its best sufficient-decrease step
    FAILED = 2  # no step with sufficient decrease within max_evals: step 0, params unchanged
    NOT_DESCENT = 3  # <grad, d> >= 0 or not finite: step 0, params unchanged


class LineSearchState(NamedTuple):
    # "count" shadows tuple.count (typed as a method); kept: it is the name Optax uses.
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: updates so far
    step_size: jax.Array  # scalar: step alpha taken by the last update (0 when it failed)
    value: jax.Array  # scalar: f at the new point params + update (inf before any update)
    grad: Updates  # like params: gradient at the new point
    aux: PyTree  # value_fn's aux at the new point (None until value_fn returns one; zeros
    # after a first update that took no step, unless update got aux=value_fn's aux at params)
    prev_value: jax.Array  # scalar: f at the start of the last update (initial-step guess)
    num_evals: jax.Array  # int32 scalar: evaluations of value_fn in the last update
    status: jax.Array  # int32 scalar: LineSearchStatus of the last update


_GUESSES = ("unit", "interpolate")


# --------------------------------------------------------------------------------------
# The common part of both searches


class LineSearch(GradientTransformation):
    """Base of the line searches (``gx.minimize`` finds them by this type)."""

    if TYPE_CHECKING:
        # Fields every search declares (each in its own order, so they cannot be fields
        # here); declared read-only for the type checker, for the shared code below.
        @property
        def max_evals(self) -> int: ...
        @property
        def initial_step(self) -> Scalar: ...
        @property
        def max_step_size(self) -> Scalar: ...
        @property
        def initial_guess(self) -> str: ...
        @property
        def approx_rtol(self) -> Scalar | None: ...

    def _check_shared_fields(self, owner: str) -> None:
        """Validates the fields both searches have (``_inputs`` uses most of them)."""
        check_int(owner, "max_evals", self.max_evals, low=1)
        check_hparam(owner, "initial_step", self.initial_step, low=0, low_open=True)
        check_hparam(owner, "max_step_size", self.max_step_size, low=0, low_open=True)
        if self.initial_guess not in _GUESSES:
            raise ValueError(
                f"{owner}: initial_guess must be one of {_GUESSES}, got {self.initial_guess!r}"
            )
        if self.approx_rtol is not None:
            check_hparam(owner, "approx_rtol", self.approx_rtol, low=0)

    def init(self, params):
        check_real(params, type(self).__name__)
        dt = real_dtype(params)
        return LineSearchState(
            count=zero_count(),
            step_size=jnp.zeros([], dt),
            value=jnp.full([], jnp.inf, dt),
            grad=grad_slots(params),
            aux=None,
            prev_value=jnp.full([], jnp.inf, dt),
            num_evals=zero_count(),
            status=jnp.asarray(LineSearchStatus.SUCCESS, jnp.int32),
        )

    def _inputs(self, updates, state, params, extra):
        owner = f"{type(self).__name__}.update"
        missing = [k for k in ("value", "grad", "value_fn") if extra.get(k) is None]
        if params is None:
            missing.insert(0, "params")
        if missing:
            raise TypeError(
                f"{owner}: missing {', '.join(missing)}; a line search needs params and the "
                "keyword arguments value=f(params), grad=grad f(params) and value_fn=f "
                "(gx.minimize passes them)"
            )
        value_fn = extra["value_fn"]
        if not callable(value_fn):
            raise TypeError(f"{owner}: value_fn must be callable, got {value_fn!r}")
        check_tree_structure(params, updates, names=("params", "updates"), allow_none=True)
        dt = state.step_size.dtype
        phi0 = jnp.asarray(extra["value"]).astype(dt)
        g0 = cast_like(extra["grad"], state.grad)
        dphi0 = vdot(g0, updates, dt)
        # The aux at params: given (aux=...), else the last update's, else zeros of its
        # structure (a first update that takes no step then reports those zeros).
        aux0 = extra.get("aux")
        if aux0 is None:
            aux0 = state.aux if state.aux is not None else aux_placeholder(value_fn, params, owner)

        def evaluate(x):
            f, g, aux = value_and_grad(value_fn, x, owner)
            return f.astype(dt), cast_like(g, state.grad), aux

        # Initial trial step (see the module docstring).
        init = jnp.asarray(self.initial_step, dt)
        dnorm = jnp.sqrt(vdot(updates, updates, dt))
        first = (state.count == 0) | (state.status >= LineSearchStatus.FAILED)
        if self.initial_guess == "interpolate":
            guess = 1.01 * 2 * (state.prev_value - phi0) / -self._arc_slope(g0, updates, params, dt)
            ok = jnp.isfinite(guess) & (guess > 0)
            later = jnp.where(ok, jnp.minimum(init, guess), init)
        else:
            later = init
        alpha0 = jnp.where(first & (dnorm > 0), init / dnorm, later)
        alpha0 = jnp.minimum(alpha0, jnp.asarray(self.max_step_size, dt))
        return dt, phi0, g0, dphi0, aux0, evaluate, alpha0

    def _arc_slope(self, g0, d, params, dt):
        """phi'(0+) along the search path: <g, d>, or with box bounds <g, d> without the
        components that a bound stops at once (at lower with d < 0, at upper with d > 0),
        so the interpolated first step is not scaled down by decrease that cannot happen."""
        lower, upper = getattr(self, "lower", None), getattr(self, "upper", None)
        if lower is None and upper is None:
            return vdot(g0, d, dt)
        owner = f"{type(self).__name__}.update"
        lo = bound_leaves(lower, params, owner, "lower")
        hi = bound_leaves(upper, params, owner, "upper")
        leaves = jax.tree_util.tree_leaves(params, is_leaf=is_none)
        gs = jax.tree_util.tree_leaves(g0, is_leaf=is_none)
        ds = jax.tree_util.tree_leaves(d, is_leaf=is_none)
        out = jnp.zeros([], dt)
        for x, g, u, a, b in zip(leaves, gs, ds, lo, hi):
            if not (is_param(x) and is_param(g) and is_param(u)):
                continue
            x, u = jnp.asarray(x).astype(dt), jnp.asarray(u).astype(dt)
            stopped = (at_bound(x, a, jnp.less_equal) & (u < 0)) | (
                at_bound(x, b, jnp.greater_equal) & (u > 0)
            )
            out = out + jnp.sum(jnp.where(stopped, 0, g.astype(dt) * u))
        return out

    def _finish(self, state, updates, step, value, grad, aux, n, status, phi0, lower, upper, x):
        ok = step > 0
        if lower is None and upper is None:
            out = tree_scale(step, updates)
        else:
            x_new = clip_to_box(apply_updates(x, tree_scale(step, updates)), lower, upper)
            out = cast_like(tree_diff(x_new, x), updates)
        out = tree_where(ok, out, zeros_like_updates(updates))
        new_state = LineSearchState(
            count=safe_increment(state.count),
            step_size=step,
            value=value,
            grad=grad,
            aux=aux,
            prev_value=phi0,
            num_evals=n,
            status=status.astype(jnp.int32),
        )
        return out, new_state


# --------------------------------------------------------------------------------------
# Backtracking (Armijo)


class backtracking_linesearch(LineSearch):
    """Backtracking line search with the Armijo sufficient-decrease condition.

    Tries alpha_0, rho alpha_0, rho^2 alpha_0, ... (rho = ``decrease_factor``) and takes
    the first alpha with  f(x_alpha) <= f(x) + c1 <g, x_alpha - x>,  where
    x_alpha = x + alpha d, or its projection P(x + alpha d) onto the box [lower, upper]
    when bounds are given (the Armijo rule along the projection arc, Bertsekas 1976;
    Nocedal & Wright, Alg. 3.1). A trial whose value or gradient is not finite is
    rejected. After ``max_evals`` rejected trials the status is ``FAILED`` and no step is
    taken.

    Args:
      c1: sufficient-decrease constant in (0, 1). Default 1e-4 (Nocedal & Wright,
        sec. 3.1).
      decrease_factor: rho in (0, 1). Default 0.5.
      max_evals: evaluations of value_fn per update, an integer >= 1. Default 30.
      initial_step: > 0, the first trial step (divided by ||d|| on a first update).
        Default 1.
      max_step_size: > 0, a cap on alpha_0. Default 1e10.
      initial_guess: ``"unit"`` or ``"interpolate"`` (see the module docstring).
        Default ``"unit"``.
      approx_rtol: >= 0, or None for 100 eps of the value dtype (the approximate
        decrease test; see the module docstring). Default None.
      lower: lower bound of the box: None, a scalar or a tree like params (None leaves:
        unbounded). Default None.
      upper: upper bound, as ``lower``. Default None.

    Example:
      >>> f = lambda x: jnp.sum(x**2)
      >>> x = jnp.array([3.0, 4.0])
      >>> tx = gx.chain(gx.scale(-1.0), gx.backtracking_linesearch(initial_step=5.0))
      >>> state = tx.init(x)
      >>> g = jax.grad(f)(x)
      >>> updates, state = tx.update(g, state, x, value=f(x), grad=g, value_fn=f)
      >>> ls = state.backtracking_linesearch  # alpha_0 = 5 / ||d|| = 0.5
      >>> ls.step_size, gx.LineSearchStatus(int(ls.status)).name, int(ls.num_evals)
      (Array(0.5, dtype=float32), 'SUCCESS', 1)
      >>> gx.apply_updates(x, updates), ls.value
      (Array([0., 0.], dtype=float32), Array(0., dtype=float32))
    """

    c1: Scalar = 1e-4
    decrease_factor: Scalar = 0.5
    max_evals: int = 30
    initial_step: Scalar = 1.0
    max_step_size: Scalar = 1e10
    initial_guess: str = static_field(default="unit")
    approx_rtol: Scalar | None = None
    lower: PyTree | None = None
    upper: PyTree | None = None

    def __post_init__(self):
        o = "backtracking_linesearch"
        check_hparam(o, "c1", self.c1, low=0, high=1, low_open=True, high_open=True)
        check_hparam(
            o, "decrease_factor", self.decrease_factor, low=0, high=1, low_open=True, high_open=True
        )
        self._check_shared_fields(o)
        check_bounds(o, self.lower, self.upper)

    def update(self, updates, state, params=None, **extra):
        dt, phi0, g0, dphi0, aux0, evaluate, alpha0 = self._inputs(updates, state, params, extra)
        lower, upper = self.lower, self.upper
        check_bounds("backtracking_linesearch.update", lower, upper, params)
        c1 = jnp.asarray(self.c1, dt)
        rho = jnp.asarray(self.decrease_factor, dt)
        f_tol = approx_tolerance(self.approx_rtol, phi0, dt)
        descent = dphi0 < 0

        def trial_point(t):
            x = apply_updates(params, tree_scale(t, updates))
            return clip_to_box(x, lower, upper, "backtracking_linesearch")

        def body(c):
            t = c["t"]
            x_t = trial_point(t)
            f_t, g_t, aux_t = evaluate(x_t)
            moved: bool | jax.Array = True
            if lower is not None or upper is not None:  # along the projection arc
                step = tree_diff(x_t, params)
                slope0, slope_t = vdot(g0, step, dt), vdot(g_t, step, dt)
                # A trial the bounds stop entirely passes Armijo with equality: reject it.
                moved = vdot(step, step, dt) > 0
            else:
                slope0, slope_t = t * dphi0, t * vdot(g_t, updates, dt)
            armijo = f_t <= phi0 + c1 * slope0
            ok = armijo | approx_decrease(f_t, slope_t, phi0, slope0, c1, f_tol)
            ok &= jnp.isfinite(f_t) & jnp.isfinite(slope_t) & moved  # -inf passes Armijo
            n = c["n"] + 1
            return dict(
                n=n,
                t=jnp.where(ok, t, t * rho),
                done=ok | (n >= self.max_evals),
                ok=ok,
                f=jnp.where(ok, f_t, c["f"]),
                g=tree_where(ok, g_t, c["g"]),
                aux=tree_where(ok, aux_t, c["aux"]),
            )

        init = dict(n=zero_count(), t=alpha0, done=~descent, ok=jnp.asarray(False))
        init.update(f=phi0, g=g0, aux=aux0)
        c = jax.lax.while_loop(lambda c: ~c["done"], body, init)
        step = jnp.where(c["ok"], c["t"], jnp.zeros([], dt))
        status = jnp.where(
            ~descent,
            LineSearchStatus.NOT_DESCENT,
            jnp.where(c["ok"], LineSearchStatus.SUCCESS, LineSearchStatus.FAILED),
        )
        return self._finish(
            state, updates, step, c["f"], c["g"], c["aux"], c["n"], status, phi0, lower, upper,
            params,
        )  # fmt: skip


def gradient_descent_linesearch(linesearch: GradientTransformation | None = None):
    """Steepest descent with a line search: d = -g, x <- x + alpha d.

    = chain(scale(-1), linesearch), by default
    ``backtracking_linesearch(initial_guess="interpolate")`` (Armijo; the interpolated
    initial step adapts alpha_0 to the problem's scale). Needs value, grad and value_fn in
    ``update`` (see ``gx.minimize``).

    Args:
      linesearch: a ``backtracking_linesearch`` or ``zoom_linesearch``. Default None: the
        backtracking search above.

    Example:
      >>> f = lambda x: jnp.sum((x - jnp.array([1.0, -1.0])) ** 2)
      >>> result = gx.minimize(f, jnp.zeros(2), gx.gradient_descent_linesearch())
      >>> result.params.round(4), gx.MinimizeStatus(int(result.status)).name
      (Array([ 1., -1.], dtype=float32), 'CONVERGED')
    """
    if linesearch is None:
        linesearch = backtracking_linesearch(initial_guess="interpolate")
    if not isinstance(linesearch, LineSearch):
        raise TypeError(
            "gradient_descent_linesearch: linesearch must be a backtracking_linesearch or "
            f"zoom_linesearch, got {linesearch!r}"
        )
    return named_chain("gradient_descent_linesearch", scale(-1.0), linesearch)

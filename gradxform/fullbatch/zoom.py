"""The strong-Wolfe line search: ``zoom_linesearch`` (bracketing, then zoom).

Nocedal & Wright, Algorithm 3.5 and 3.6, with cubic interpolation inside the bracket and
extrapolation while bracketing. The conventions shared with the backtracking search
(the ``update`` keywords, the initial step, the approximate decrease test, statuses) are
in ``fullbatch.linesearch``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._checks import check_hparam
from .._leafwise import zero_count
from .._module import static_field
from .._typing import Scalar
from ..base import apply_updates
from ..tree import tree_scale, tree_where, vdot
from ._common import approx_decrease, approx_tolerance
from .linesearch import LineSearch, LineSearchStatus

__all__ = ["zoom_linesearch"]


def _interpolate(a, fa, da, b, fb, db):
    """A trial step strictly inside the interval between a and b.

    The minimizer of the cubic matching phi and phi' at both ends (Nocedal & Wright, eq.
    3.59) if it lies in the middle 80% of the interval; else the minimizer of the
    quadratic matching phi(a), phi'(a), phi(b) if it does; else the midpoint.
    """
    width = b - a
    lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
    margin = 0.1 * jnp.abs(width)

    def inside(t):
        return jnp.isfinite(t) & (t >= lo + margin) & (t <= hi - margin)

    d1 = da + db - 3 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    d2 = jnp.sign(width) * jnp.sqrt(jnp.where(disc >= 0, disc, 0.0))
    cubic = b - width * (db + d2 - d1) / (db - da + 2 * d2)
    cubic = jnp.where(disc >= 0, cubic, jnp.nan)
    curv = fb - fa - da * width
    quad = a - da * width * width / (2 * curv)
    quad = jnp.where(curv > 0, quad, jnp.nan)
    mid = a + 0.5 * width
    return jnp.where(inside(cubic), cubic, jnp.where(inside(quad), quad, mid))


def _extrapolate(a, fa, da, b, fb, db):
    """A trial step beyond b > a while bracketing: the minimizer of the cubic matching phi
    and phi' at a and b, kept in [b + 1.1 (b - a), b + 4 (b - a)] (the bounds of Moré &
    Thuente 1994), or the upper bound when the cubic has no minimizer beyond b."""
    width = b - a
    low, high = b + 1.1 * width, b + 4 * width
    d1 = da + db - 3 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    d2 = jnp.sqrt(jnp.where(disc >= 0, disc, 0.0))
    cubic = b - width * (db + d2 - d1) / (db - da + 2 * d2)
    ok = (disc >= 0) & jnp.isfinite(cubic) & (cubic > b)
    return jnp.where(ok, jnp.clip(cubic, low, high), high)


class zoom_linesearch(LineSearch):
    """Line search for the strong Wolfe conditions (Nocedal & Wright, Alg. 3.5 and 3.6).

    Finds alpha with
      f(x + alpha d) <= f(x) + c1 alpha <g, d>            (sufficient decrease)
      |<grad f(x + alpha d), d>| <= c2 |<g, d>|           (curvature)
    Bracketing phase: trial steps grow (safeguarded cubic extrapolation, by a factor 2.1 to
    5 of the last increment) until one fails the decrease test, rises above the best
    point, or has phi' >= 0; zoom phase: safeguarded cubic / quadratic interpolation
    inside the bracket [lo, hi], where lo is always the best step with sufficient
    decrease found so far. One evaluation (value and gradient) per trial.
    If ``max_evals`` are spent (or the bracket shrinks to rounding) the best step lo is
    taken with status ``DECREASE_ONLY``, or none (``FAILED``) if there is none.

    Args:
      c1: sufficient-decrease constant, 0 < c1 < c2. Default 1e-4 (SciPy's L-BFGS-B).
      c2: curvature constant, c1 < c2 < 1; use 0.1 to 0.4 for conjugate gradient.
        Default 0.9 (SciPy's L-BFGS-B).
      max_evals: evaluations per update, an integer >= 1. Default 20 (SciPy's
        L-BFGS-B ``maxls``).
      initial_step: > 0, the first trial step (divided by ||d|| on a first update).
        Default 1.
      max_step_size: > 0, the largest step tried. Default 1e10.
      initial_guess: ``"unit"`` or ``"interpolate"`` (see the module docstring).
        Default ``"unit"``.
      approx_rtol: >= 0, or None for 100 eps of the value dtype (the approximate
        decrease test; see the module docstring). Default None.

    Example:
      >>> f = lambda x: jnp.sum(x**2)
      >>> x = jnp.array([3.0, 4.0])
      >>> tx = gx.chain(gx.scale(-1.0), gx.zoom_linesearch(initial_step=5.0))
      >>> state = tx.init(x)
      >>> g = jax.grad(f)(x)
      >>> updates, state = tx.update(g, state, x, value=f(x), grad=g, value_fn=f)
      >>> ls = state.zoom_linesearch  # alpha_0 = 5 / ||d|| = 0.5 meets both conditions
      >>> ls.step_size, gx.LineSearchStatus(int(ls.status)).name
      (Array(0.5, dtype=float32), 'SUCCESS')
      >>> ls.grad  # the gradient at the new point, for the next update
      Array([0., 0.], dtype=float32)
    """

    c1: Scalar = 1e-4
    c2: Scalar = 0.9
    max_evals: int = 20
    initial_step: Scalar = 1.0
    max_step_size: Scalar = 1e10
    initial_guess: str = static_field(default="unit")
    approx_rtol: Scalar | None = None

    def __post_init__(self):
        o = "zoom_linesearch"
        check_hparam(o, "c1", self.c1, low=0, high=1, low_open=True, high_open=True)
        check_hparam(o, "c2", self.c2, low=0, high=1, low_open=True, high_open=True)
        if not isinstance(self.c1, jax.core.Tracer) and not isinstance(self.c2, jax.core.Tracer):
            if float(self.c1) >= float(self.c2):
                raise ValueError(f"{o}: need 0 < c1 < c2 < 1, got c1={self.c1!r}, c2={self.c2!r}")
        self._check_shared_fields(o)

    def update(self, updates, state, params=None, **extra):
        dt, phi0, g0, dphi0, aux0, evaluate, alpha0 = self._inputs(updates, state, params, extra)
        c1 = jnp.asarray(self.c1, dt)
        c2 = jnp.asarray(self.c2, dt)
        f_tol = approx_tolerance(self.approx_rtol, phi0, dt)
        max_step = jnp.asarray(self.max_step_size, dt)
        eps = jnp.asarray(jnp.finfo(dt).eps, dt)
        descent = dphi0 < 0

        # Each end of the bracket is one vector (step, phi, phi'): one select per end
        # rather than three, so XLA runs fewer kernels per trial, which is most of a
        # trial's cost on small problems (about 5% of a whole L-BFGS run in 2-D).
        def body(c):
            t, lo, hi = c["t"], c["lo"], c["hi"]
            f_t, g_t, aux_t = evaluate(apply_updates(params, tree_scale(t, updates)))
            df_t = vdot(g_t, updates, dt)
            armijo = f_t <= phi0 + c1 * t * dphi0
            approx = approx_decrease(f_t, df_t, phi0, dphi0, c1, f_tol)
            # Values within rounding (approx) are not compared with lo: phi' decides.
            higher = ~(armijo | approx) | ((f_t >= lo[1]) & ~approx)
            higher |= ~jnp.isfinite(f_t) | ~jnp.isfinite(df_t)  # -inf passes Armijo
            curvature = jnp.abs(df_t) <= -c2 * dphi0
            accept = ~higher & curvature
            # Alg. 3.6: if phi'(t) (hi - lo) >= 0 then hi <- lo. While bracketing there is
            # no hi yet and the search goes right: phi'(t) >= 0 brackets with hi <- lo.
            width = jnp.where(c["have_hi"], hi[0] - lo[0], 1.0)
            flip = ~higher & ~curvature & (df_t * width >= 0)
            trial = jnp.stack([t, f_t, df_t])
            new_hi = jnp.where(higher, trial, jnp.where(flip, lo, hi))
            have_hi = c["have_hi"] | higher | flip
            take = ~higher
            new_lo = jnp.where(take, trial, lo)
            n = c["n"] + 1
            t_next = jnp.where(
                have_hi,
                _interpolate(*new_lo, *new_hi),
                jnp.minimum(_extrapolate(*lo, *trial), max_step),
            )
            a_lo, a_hi = new_lo[0], new_hi[0]
            tiny = have_hi & (jnp.abs(a_hi - a_lo) <= 10 * eps * jnp.maximum(a_lo, a_hi))
            at_max = ~have_hi & (t >= max_step)
            return dict(
                n=n,
                t=t_next,
                # Carried as is (not as "done"): the loop's condition is then no kernel.
                searching=~(accept | (n >= self.max_evals) | tiny | at_max),
                accepted=accept,
                lo=new_lo,
                g_lo=tree_where(take, g_t, c["g_lo"]),
                aux_lo=tree_where(take, aux_t, c["aux_lo"]),
                hi=new_hi,
                have_hi=have_hi,
            )

        start = jnp.stack([jnp.zeros([], dt), phi0, dphi0])
        init = dict(n=zero_count(), t=alpha0, searching=descent, accepted=jnp.asarray(False))
        init.update(lo=start, g_lo=g0, aux_lo=aux0, hi=start, have_hi=jnp.asarray(False))
        c = jax.lax.while_loop(lambda c: c["searching"], body, init)
        a_lo, f_lo = c["lo"][0], c["lo"][1]
        status = jnp.where(
            ~descent,
            LineSearchStatus.NOT_DESCENT,
            jnp.where(
                c["accepted"],
                LineSearchStatus.SUCCESS,
                jnp.where(a_lo > 0, LineSearchStatus.DECREASE_ONLY, LineSearchStatus.FAILED),
            ),
        )
        return self._finish(
            state, updates, a_lo, f_lo, c["g_lo"], c["aux_lo"], c["n"], status, phi0,
            None, None, params,
        )  # fmt: skip

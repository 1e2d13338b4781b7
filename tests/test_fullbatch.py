"""Full-batch optimization: line searches, L-BFGS, nonlinear CG, ``minimize``, vs SciPy.

The SciPy comparisons run SciPy in the test (float64) on the problems of
``gradxform.problems.problems()``; the logistic regression here is 2,000 x 50 (the
benchmark, ``benchmarks/fullbatch.py``, uses 10,000 x 100). Run with ``-s`` to see the
recorded numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import gradxform as gx
from gradxform.fullbatch import _common
from gradxform.problems import problems, quadratic, rosenbrock

LS = gx.LineSearchStatus

S = gx.MinimizeStatus


def status(result) -> str:
    return S(int(result.status)).name


def ls_update(ls, fun, x, d, state=None, count=1):
    """One line-search update at x along d (count > 0: past the first-update rule)."""
    x = jnp.asarray(x)
    state = ls.init(x) if state is None else state
    state = state._replace(count=jnp.asarray(count, jnp.int32))
    return _ls_update(ls, fun, x, jnp.asarray(d), state)


@functools.partial(jax.jit, static_argnames="fun")
def _ls_update(ls, fun, x, d, state):
    value, grad = jax.value_and_grad(lambda p: _common.split_output(fun(p), "t")[0])(x)
    return ls.update(d, state, x, value=value, grad=grad, value_fn=fun)


def square(x):
    return jnp.sum(x**2)


# --------------------------------------------------------------------------------------
# Line searches


@pytest.mark.parametrize(
    "c1, factor, trials, step",
    [
        (1e-4, 0.5, 3, 0.25),  # 1 -> f=9 no, 0.5 -> f=1 no, 0.25 -> f=0 yes
        (0.6, 0.5, 4, 0.125),  # 0.25: 0 > 1 - 0.6*0.25*8 = -0.2 no; 0.125: 0.25 <= 0.4 yes
        (0.6, 0.3, 3, 0.09),  # 0.3: 0.04 > -0.44 no; 0.09: 0.4096 <= 0.568 yes
    ],
)
def test_backtracking_hand_computed_sequence(c1, factor, trials, step):
    # f(x) = x^2 at x = 1, d = -4: phi(a) = (1 - 4a)^2, phi'(0) = -8; trials 1, rho, rho^2..
    ls = gx.backtracking_linesearch(c1=c1, decrease_factor=factor)
    u, s = ls_update(ls, square, [1.0], [-4.0])
    assert int(s.num_evals) == trials and int(s.status) == LS.SUCCESS
    np.testing.assert_allclose(float(s.step_size), step, rtol=1e-6)
    np.testing.assert_allclose(u, [-4 * step], rtol=1e-6)
    np.testing.assert_allclose(float(s.value), (1 - 4 * step) ** 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(s.grad, [2 * (1 - 4 * step)], rtol=1e-5, atol=1e-7)


def test_first_update_scales_step_by_direction_norm():
    # First update: alpha_0 = initial_step / ||d||; accepted at once here.
    ls = gx.backtracking_linesearch()
    u, s = ls_update(ls, square, [1.0, 1.0], [-0.5, -0.5], count=0)
    np.testing.assert_allclose(float(s.step_size), 1 / math.sqrt(0.5), rtol=1e-6)
    assert int(s.num_evals) == 1


def test_interpolated_initial_guess():
    # alpha_0 = min(1, 1.01 * 2 (f_prev - f) / -phi'(0)) = 1.01 * 2 * 0.5 / 8.
    ls = gx.backtracking_linesearch(initial_guess="interpolate")
    state = ls.init(jnp.zeros(1))._replace(prev_value=jnp.asarray(1.5, jnp.float32))
    _, s = ls_update(ls, square, [1.0], [-4.0], state=state)
    np.testing.assert_allclose(float(s.step_size), 1.01 * 2 * 0.5 / 8, rtol=1e-6)


def test_backtracking_failure_status_and_no_step():
    ls = gx.backtracking_linesearch(max_evals=2)
    u, s = ls_update(ls, square, [1.0], [-40.0])  # 1 and 0.5 both overshoot
    assert int(s.status) == LS.FAILED and int(s.num_evals) == 2
    assert float(s.step_size) == 0 and float(u[0]) == 0
    assert float(s.value) == 1.0 and float(s.grad[0]) == 2.0  # the current point's


def test_not_a_descent_direction():
    for ls in (gx.backtracking_linesearch(), gx.zoom_linesearch()):
        u, s = ls_update(ls, square, [1.0], [4.0])
        assert int(s.status) == LS.NOT_DESCENT and int(s.num_evals) == 0
        assert float(u[0]) == 0


def shifted(x):
    return jnp.sum((x - 3.0) ** 2)


@pytest.mark.parametrize(
    "c2, d, trials, step",
    [
        (0.9, 1.0, 1, 1.0),  # phi(1) = 4: Armijo; |phi'(1)| = 4 <= 0.9 * 6: accept
        (0.1, 1.0, 2, 3.0),  # curvature fails, extrapolate: the cubic's minimizer, 3
        (0.9, 10.0, 2, 0.3),  # phi(1) = 49 > 9: zoom in [0, 1]: interpolation gives 0.3
    ],
)
def test_zoom_hand_computed_sequence(c2, d, trials, step):
    # f(x) = (x - 3)^2 from x = 0 along d: phi is a parabola, interpolation is exact.
    ls = gx.zoom_linesearch(c2=c2)
    _, s = ls_update(ls, shifted, [0.0], [d])
    assert int(s.num_evals) == trials and int(s.status) == LS.SUCCESS
    np.testing.assert_allclose(float(s.step_size), step, rtol=1e-6)


def wavy(x):
    return jnp.sum(x**4 - 3 * x**2 + x + 0.3 * jnp.sin(5 * x))


@pytest.mark.parametrize("c2", [0.9, 0.4, 0.1])
@pytest.mark.parametrize("seed", range(4))
def test_zoom_returns_strong_wolfe_step(c2, seed):
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        x = jnp.asarray(rng.normal(size=3))
        d = -jax.grad(wavy)(x) * rng.uniform(0.01, 10)
        ls = gx.zoom_linesearch(c1=1e-4, c2=c2)
        u, s = ls_update(ls, wavy, x, d)
        assert int(s.status) == LS.SUCCESS
        a = float(s.step_size)
        f0, g0 = float(wavy(x)), jax.grad(wavy)(x)
        x1 = x + a * d
        np.testing.assert_allclose(x + u, x1, rtol=1e-12)
        assert float(wavy(x1)) <= f0 + 1e-4 * a * float(g0 @ d)
        assert abs(float(jax.grad(wavy)(x1) @ d)) <= c2 * abs(float(g0 @ d))
        np.testing.assert_allclose(float(s.value), float(wavy(x1)), rtol=1e-12)


def test_zoom_max_evals_statuses():
    # One evaluation: trial 10 fails Armijo -> FAILED; trial 1 passes Armijo but not the
    # curvature test with c2 = 0.1 -> DECREASE_ONLY, the step is taken.
    _, s = ls_update(gx.zoom_linesearch(max_evals=1), shifted, [0.0], [10.0])
    assert int(s.status) == LS.FAILED and float(s.step_size) == 0
    u, s = ls_update(gx.zoom_linesearch(c2=0.1, max_evals=1), shifted, [0.0], [1.0])
    assert int(s.status) == LS.DECREASE_ONLY and float(s.step_size) == 1.0
    assert float(u[0]) == 1.0 and float(s.value) == 4.0


def test_zoom_rejects_non_finite_trials():
    def f(x):
        return jnp.where(x[0] > 2, jnp.nan, (x[0] - 1) ** 2)

    u, s = ls_update(gx.zoom_linesearch(), f, [0.0], [10.0])
    assert int(s.status) == LS.SUCCESS and np.isfinite(float(s.value))
    assert 0 < float(u[0]) <= 2


@pytest.mark.parametrize("make", [gx.backtracking_linesearch, gx.zoom_linesearch])
def test_value_fn_with_aux(make):
    def f(x):
        return jnp.sum(x**2), {"double": 2 * x}

    u, s = ls_update(make(), f, [1.0], [-2.0])
    np.testing.assert_allclose(s.aux["double"], 2 * (1.0 + np.asarray(u)), rtol=1e-6)


def test_linesearch_errors():
    ls = gx.zoom_linesearch()
    state = ls.init(jnp.zeros(2))
    with pytest.raises(TypeError, match="missing grad, value_fn"):
        ls.update(jnp.ones(2), state, jnp.zeros(2), value=1.0)
    with pytest.raises(TypeError, match="missing params"):
        ls.update(jnp.ones(2), state, value=1.0, grad=jnp.ones(2), value_fn=square)
    with pytest.raises(TypeError, match="must return a real scalar"):
        ls_update(ls, lambda x: x, [1.0, 1.0], [-1.0, -1.0])
    with pytest.raises(TypeError, match="tuple of 3 items"):
        ls_update(ls, lambda x: (square(x), 1, 2), [1.0], [-1.0])
    with pytest.raises(ValueError, match=r"need 0 < c1 < c2 < 1, got c1=0.5, c2=0.4"):
        gx.zoom_linesearch(c1=0.5, c2=0.4)
    with pytest.raises(ValueError, match=r"c2 must be a finite number in \(0, 1\)"):
        gx.zoom_linesearch(c2=1.0)
    with pytest.raises(ValueError, match="max_evals must be an integer >= 1, got 2.5"):
        gx.backtracking_linesearch(max_evals=2.5)
    with pytest.raises(ValueError, match=r"max_evals must be a finite number in \[1, 2147483647\]"):
        gx.zoom_linesearch(max_evals=0)
    with pytest.raises(ValueError, match="decrease_factor must be a finite number in"):
        gx.backtracking_linesearch(decrease_factor=1.0)
    with pytest.raises(ValueError, match="initial_guess must be one of"):
        gx.zoom_linesearch(initial_guess="one")
    with pytest.raises(ValueError, match="lower must be <= upper"):
        gx.backtracking_linesearch(lower=1.0, upper=0.0)
    with pytest.raises(TypeError, match="complex parameter at \\['z'\\]"):
        ls.init({"z": jnp.zeros(2, jnp.complex64)})


# --------------------------------------------------------------------------------------
# Nonlinear conjugate gradient


def quad_problem(n=5, seed=0):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, n))
    a = m @ m.T + np.eye(n)
    b = rng.normal(size=n)
    return a, b


BETAS = {
    "fletcher_reeves": lambda g, gp, dp: (g @ g) / (gp @ gp),
    "polak_ribiere": lambda g, gp, dp: max(0.0, g @ (g - gp) / (gp @ gp)),
    "hestenes_stiefel": lambda g, gp, dp: g @ (g - gp) / (dp @ (g - gp)),
    "dai_yuan": lambda g, gp, dp: (g @ g) / (dp @ (g - gp)),
}


@pytest.mark.parametrize("method", sorted(BETAS))
def test_cg_beta_formulas_by_hand(method):
    with jax.enable_x64(True):
        a, b = quad_problem()
        tx = gx.scale_by_conjugate_gradient(method, restart_threshold=None)
        x = np.zeros(5)
        state = tx.init(jnp.asarray(x))
        d_prev = g_prev = None
        for k in range(3):
            g = a @ x - b
            d, state = tx.update(jnp.asarray(g), state, jnp.asarray(x))
            d = np.asarray(d)
            if k == 0:
                expected = -g
            else:
                beta = BETAS[method](g, g_prev, d_prev)
                expected = -g + beta * d_prev
                assert g @ expected < 0  # no descent fallback in this setup
                np.testing.assert_allclose(float(state.beta), beta, rtol=1e-12)
            np.testing.assert_allclose(d, expected, rtol=1e-10, atol=1e-12)
            # inexact step: 0.6 of the exact one, so that the four betas differ
            x = x + 0.6 * (-(g @ d) / (d @ a @ d)) * d
            d_prev, g_prev = d, g


@pytest.mark.parametrize("method", sorted(BETAS))
def test_cg_exact_line_search_converges_in_n_steps(method):
    with jax.enable_x64(True):
        n = 6
        a, b = quad_problem(n, seed=1)
        tx = gx.scale_by_conjugate_gradient(method)
        x = np.zeros(n)
        state = tx.init(jnp.asarray(x))
        for _ in range(n):
            g = a @ x - b
            d, state = tx.update(jnp.asarray(g), state, jnp.asarray(x))
            d = np.asarray(d)
            x = x - (g @ d) / (d @ a @ d) * d
        np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-8)
        assert int(state.since_restart) == n  # no restart was needed


def test_cg_restarts():
    with jax.enable_x64(True):
        tx = gx.scale_by_conjugate_gradient("fletcher_reeves", restart_every=2)
        x = jnp.zeros(3)
        state = tx.init(x)
        grads = [jnp.asarray([1.0, 0.0, 0.0]), jnp.asarray([0.0, 1.0, 0.0])]
        grads.append(jnp.asarray([0.0, 0.0, 1.0]))
        betas = []
        for g in grads:
            d, state = tx.update(g, state, x)
            betas.append(float(state.beta))
        assert betas == [0.0, 1.0, 0.0]  # the third update restarts (period 2)
        # Powell: consecutive gradients far from orthogonal -> restart.
        tx = gx.scale_by_conjugate_gradient("fletcher_reeves")
        state = tx.init(x)
        for g in (jnp.asarray([1.0, 0.0, 0.0]), jnp.asarray([1.0, 0.1, 0.0])):
            d, state = tx.update(g, state, x)
        assert float(state.beta) == 0.0
        np.testing.assert_allclose(d, [-1.0, -0.1, 0.0])


def test_cg_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        gx.scale_by_conjugate_gradient("newton")
    with pytest.raises(ValueError, match=r"restart_threshold must be a finite number in \(0, 1\]"):
        gx.conjugate_gradient(restart_threshold=0.0)
    with pytest.raises(TypeError, match="linesearch must be a zoom_linesearch"):
        gx.conjugate_gradient(linesearch=gx.scale(1.0))


# --------------------------------------------------------------------------------------
# L-BFGS


def dense_bfgs_direction(pairs, g):
    """-H g with H the BFGS inverse update of gamma I (gamma from the newest pair)."""
    n = g.size
    if pairs:
        s, y = pairs[-1]
        gamma = (s @ y) / (y @ y)
    else:
        gamma = 1.0
    h = gamma * np.eye(n)
    for s, y in pairs:
        rho = 1 / (s @ y)
        v = np.eye(n) - rho * np.outer(y, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    return -h @ g


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


@pytest.mark.parametrize("memory_size", [3, 8])
def test_lbfgs_matches_dense_bfgs_inverse(memory_size):
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        n = 6
        a = rng.normal(size=(n, n))
        a = a @ a.T + n * np.eye(n)

        def grad(x):
            return a @ x + np.sin(x)

        def tree(v):  # two leaves, to exercise pytrees
            return {"u": jnp.asarray(v[:2]), "w": jnp.asarray(v[2:].reshape(2, 2))}

        tx = gx.scale_by_lbfgs(memory_size)
        update = jax.jit(tx.update)
        xs = [rng.normal(size=n)]
        state = tx.init(tree(xs[0]))
        for k in range(7):
            x = xs[-1]
            d, state = update(tree(grad(x)), state, tree(x))
            pairs = [(xs[i + 1] - xs[i], grad(xs[i + 1]) - grad(xs[i])) for i in range(k)]
            expected = dense_bfgs_direction(pairs[-memory_size:], grad(x))
            np.testing.assert_allclose(flat(d), expected, rtol=1e-9, atol=1e-12)
            xs.append(x + 0.1 * flat(d))


def test_lbfgs_skips_bad_pairs_and_resets_after_no_move():
    with jax.enable_x64(True):
        tx = gx.scale_by_lbfgs()
        x0, x1 = jnp.asarray([0.0, 0.0]), jnp.asarray([1.0, 0.0])
        state = tx.init(x0)
        _, state = tx.update(jnp.asarray([1.0, 1.0]), state, x0)
        # s = (1, 0), y = (-2, 0): negative curvature, not stored
        d, state = tx.update(jnp.asarray([-1.0, 1.0]), state, x1)
        assert int(state.pairs) == 0
        np.testing.assert_allclose(d, [1.0, -1.0])
        x2 = jnp.asarray([2.0, 0.0])
        _, state = tx.update(jnp.asarray([1.0, 1.0]), state, x2)  # s = (1, 0), y = (2, 0)
        assert int(state.pairs) == 1 and float(state.gamma) == 0.5
        # The parameters did not move (a failed line search): the memory is cleared.
        d, state = tx.update(jnp.asarray([1.0, 1.0]), state, x2)
        assert int(state.pairs) == 0 and float(state.gamma) == 1.0
        np.testing.assert_allclose(d, [-1.0, -1.0])


def test_lbfgs_errors():
    with pytest.raises(
        ValueError, match=r"memory_size must be a finite number in \[1, 2147483647\]"
    ):
        gx.lbfgs(memory_size=0)
    with pytest.raises(ValueError, match="box constraints need a backtracking_linesearch"):
        gx.lbfgs(lower=0.0, linesearch=gx.zoom_linesearch())
    tx = gx.scale_by_lbfgs()
    with pytest.raises(TypeError, match="params is required"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


def test_lbfgs_box_constraints_match_scipy():
    with jax.enable_x64(True):
        fun, x0, x_free = quadratic(n=10, cond=100.0, seed=3)
        lower, upper = -0.2 * np.ones(10), 0.3 * np.ones(10)
        lower[0] = -np.inf  # an unbounded coordinate
        tx = gx.lbfgs(lower=jnp.asarray(lower), upper=jnp.asarray(upper))
        r = gx.minimize(fun, jnp.asarray(x0), tx, 500, tol=1e-9, ftol=0.0)
        vg = jax.jit(jax.value_and_grad(fun))
        ref = scipy.optimize.minimize(
            lambda x: tuple(np.asarray(v) for v in vg(jnp.asarray(x))),
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=list(zip(lower, upper)),
            options=dict(gtol=1e-10, ftol=1e-14),
        )
        assert status(r) == "CONVERGED"
        x = np.asarray(r.params)
        assert np.all(x >= lower) and np.all(x <= upper)
        assert np.sum((x <= lower) | (x >= upper)) >= 3  # several bounds are active
        np.testing.assert_allclose(x, ref.x, atol=1e-6)
        np.testing.assert_allclose(float(r.value), ref.fun, rtol=1e-9)


def test_lbfgs_box_constraints_on_a_tree():
    params = {"a": jnp.zeros(3), "b": jnp.zeros(2)}

    def fun(p):
        return jnp.sum((p["a"] - 2.0) ** 2) + jnp.sum((p["b"] + 2.0) ** 2)

    tx = gx.lbfgs(lower={"a": None, "b": -1.0}, upper={"a": 1.0, "b": None})
    r = gx.minimize(fun, params, tx, 100)
    assert status(r) == "CONVERGED"
    np.testing.assert_allclose(r.params["a"], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(r.params["b"], [-1.0, -1.0])


# --------------------------------------------------------------------------------------
# minimize


def test_minimize_statuses():
    fun, x0, _ = quadratic(n=5, cond=10.0)
    x0 = jnp.asarray(x0, jnp.float32)
    r = gx.minimize(fun, x0, gx.lbfgs(), 100)
    assert status(r) == "CONVERGED" and float(jnp.max(jnp.abs(r.grad))) <= 1e-5
    r = gx.minimize(fun, x0, gx.lbfgs(), 2)
    assert status(r) == "MAX_STEPS" and int(r.num_steps) == 2
    r = gx.minimize(fun, x0, gx.lbfgs(), 0)
    assert status(r) == "MAX_STEPS" and int(r.num_steps) == 0 and int(r.num_evals) == 1
    # Already converged at the start: no step, one evaluation.
    r0 = gx.minimize(fun, r.params, gx.lbfgs(), 100, tol=1.0)
    assert status(r0) == "CONVERGED" and int(r0.num_steps) == 0 and int(r0.num_evals) == 1


def test_minimize_non_finite():
    def fun(x):
        return jnp.where(jnp.max(jnp.abs(x)) > 3, jnp.nan, jnp.sum(x**2))

    x0 = jnp.ones(2)
    r = gx.minimize(fun, x0, gx.sgd(learning_rate=5.0), 100)  # x1 = x0 - 10 x0: NaN
    assert status(r) == "NON_FINITE" and int(r.num_steps) == 0
    np.testing.assert_allclose(r.params, x0)  # the last finite point
    assert float(r.value) == 2.0
    r = gx.minimize(fun, 10 * x0, gx.lbfgs(), 100)
    assert status(r) == "NON_FINITE" and int(r.num_steps) == 0 and int(r.num_evals) == 1
    # A line search steps around a NaN region instead.
    r = gx.minimize(fun, 2.5 * x0, gx.lbfgs(), 100)
    assert status(r) == "CONVERGED"


def test_minimize_linesearch_failed():
    ls = gx.backtracking_linesearch(max_evals=1, initial_step=100.0)
    r = gx.minimize(square, jnp.ones(1), gx.gradient_descent_linesearch(ls), 100)
    assert status(r) == "LINESEARCH_FAILED"
    assert int(r.num_steps) == 0 and int(r.num_evals) == 3  # initial + two failed tries
    np.testing.assert_allclose(r.params, [1.0])


def test_minimize_with_adam_and_sgd():
    fun, x0, xs = quadratic(n=5, cond=10.0)
    r = gx.minimize(fun, jnp.asarray(x0, jnp.float32), gx.adam(0.05), 3000, tol=1e-4)
    assert status(r) == "CONVERGED"
    assert int(r.num_evals) == int(r.num_steps) + 1
    np.testing.assert_allclose(r.params, xs, atol=1e-3)
    r = gx.minimize(fun, jnp.asarray(x0, jnp.float32), gx.sgd(0.05), 3000, tol=1e-4)
    assert status(r) == "CONVERGED"


@pytest.mark.parametrize(
    "make", [gx.lbfgs, gx.conjugate_gradient, gx.gradient_descent_linesearch, lambda: gx.adam(0.1)]
)
def test_minimize_counts_evaluations_exactly(make):
    calls = []

    def fun(x):
        jax.debug.callback(lambda: calls.append(1))
        return rosenbrock(x)

    r = gx.minimize(fun, jnp.asarray([-1.2, 1.0]), make(), 60)
    jax.effects_barrier()
    assert int(r.num_evals) == len(calls) > int(r.num_steps)


def test_minimize_has_aux():
    def fun(x):
        return jnp.sum((x - 1.0) ** 2), {"residual": x - 1.0}

    for tx in (gx.lbfgs(), gx.adam(0.1)):
        r = gx.minimize(fun, jnp.zeros(3), tx, 500, tol=1e-4, has_aux=True)
        np.testing.assert_allclose(r.aux["residual"], r.params - 1.0, atol=1e-7)
    with pytest.raises(TypeError, match="has_aux=False but fun returned a tuple"):
        gx.minimize(fun, jnp.zeros(3), gx.lbfgs())
    with pytest.raises(TypeError, match="has_aux=True but fun returned a scalar"):
        gx.minimize(square, jnp.zeros(3), gx.lbfgs(), has_aux=True)


def test_minimize_trees_with_none_and_non_array_leaves():
    params = {"w": jnp.zeros(3), "frozen": None, "name": "model", "b": jnp.zeros([])}

    def fun(p):
        assert p["name"] == "model" and p["frozen"] is None
        return jnp.sum((p["w"] - 1.0) ** 2) + (p["b"] + 2.0) ** 2

    for tx in (gx.lbfgs(), gx.conjugate_gradient()):
        r = gx.minimize(fun, params, tx, 100)
        assert status(r) == "CONVERGED" and r.params["name"] == "model"
        assert r.params["frozen"] is None and r.grad["frozen"] is None
        np.testing.assert_allclose(r.params["w"], np.ones(3), atol=1e-5)


def test_minimize_compiles_once():
    traces = []

    def fun(x):
        traces.append(1)
        return rosenbrock(x)

    x0 = jnp.asarray([-1.2, 1.0])
    gx.minimize(fun, x0, gx.lbfgs(), 100)
    n = len(traces)
    # New hyperparameters, tolerances and starting point: same compiled loop.
    tx = gx.lbfgs(linesearch=gx.zoom_linesearch(c1=1e-3, c2=0.8))
    r = gx.minimize(fun, x0 + 0.1, tx, 50, tol=1e-3, ftol=0.0)
    assert len(traces) == n
    assert int(r.num_steps) <= 50
    gx.minimize(fun, x0, gx.lbfgs(), 100, tol=0)  # an int tolerance is still a float
    assert len(traces) == n
    # Inside an outer jit too.
    out = jax.jit(lambda x: gx.minimize(rosenbrock, x, gx.lbfgs(), 100).value)(x0)
    assert float(out) < 1e-8


def test_minimize_inside_jit_leaks_no_tracer():
    # minimize caches its device scalars per transform and per (max_steps, tol, ftol):
    # first called under an outer jit, that cache must not keep the trace's tracers.
    tx, x0 = gx.lbfgs(memory_size=7), jnp.asarray([-1.2, 1.0])
    with jax.checking_leaks():
        inside = jax.jit(lambda x: gx.minimize(rosenbrock, x, tx, 123, 1.5e-6).value)(x0)
    outside = gx.minimize(rosenbrock, x0, tx, 123, 1.5e-6).value
    assert float(outside) == float(inside) and float(outside) < 1e-8


def test_minimize_tells_eager_calls_from_traced_ones():
    # minimize caches device scalars only when called eagerly; it tells the two apart with
    # jax.extend.core.find_top_trace against the trace type recorded at import. If JAX
    # changes what that returns, this fails instead of minimize silently caching tracers.
    from gradxform.fullbatch._common import tracing

    assert not tracing()
    seen = []

    def probe(x):
        seen.append(tracing())
        return x

    jax.jit(probe)(1.0)
    jax.vmap(probe)(jnp.ones(2))
    jax.grad(probe)(1.0)
    assert seen == [True, True, True]


def test_minimize_closure_over_tracers_leaks_nothing():
    # fun closing over the caller's traced data is the usual way to write an objective.
    def solve(c):
        return gx.minimize(lambda x: jnp.sum((x - c) ** 2), jnp.zeros(3), gx.lbfgs()).params

    c = jnp.arange(6.0).reshape(2, 3)
    with jax.checking_leaks():
        np.testing.assert_allclose(jax.jit(solve)(c[1]), c[1], atol=1e-5)
        np.testing.assert_allclose(jax.vmap(solve)(c), c, atol=1e-5)


def test_bounded_interpolated_first_step_reaches_the_box_minimum():
    # min over x >= 0 of (x0 - 3)^2 + 10 (x1 + 1)^2 is (3, 0). Starting at (0, 0) the
    # search direction pushes x1 into its bound: the interpolated first step must use
    # the slope along the projection arc, else each first step shrinks and the relative
    # decrease test stops the run early (it stopped at x0 = 0.34 with CONVERGED).
    def f(x):
        return (x[0] - 3.0) ** 2 + 10.0 * (x[1] + 1.0) ** 2

    ls = gx.backtracking_linesearch(lower=0.0, initial_guess="interpolate")
    r = gx.minimize(f, jnp.zeros(2), gx.gradient_descent_linesearch(ls), 1000, tol=1e-6)
    assert status(r) == "CONVERGED"
    np.testing.assert_allclose(r.params, [3.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("make", [gx.lbfgs, gx.conjugate_gradient, lambda: gx.lbfgs(lower=-9.0)])
def test_minimize_never_accepts_minus_infinity(make):
    # Unbounded below: float32 overflows to -inf, which passes the Armijo test; the line
    # searches must reject it, so the result is the last finite point.
    r = gx.minimize(lambda x: -jnp.sum(x**4), jnp.ones(2), make())
    assert np.isfinite(float(r.value)) and np.all(np.isfinite(np.asarray(r.params)))
    assert float(r.value) == pytest.approx(float(-jnp.sum(r.params**4)), rel=1e-6)
    assert int(r.num_steps) >= 1


def test_minimize_under_vmap():
    x0s = jnp.asarray([[-1.2, 1.0], [0.0, 0.0], [2.0, 2.0]])
    r = jax.vmap(lambda x: gx.minimize(rosenbrock, x, gx.lbfgs(), 200))(x0s)
    assert np.all(np.asarray(r.status) == S.CONVERGED)
    np.testing.assert_allclose(r.params, np.ones((3, 2)), atol=1e-5)
    assert len(set(np.asarray(r.num_steps).tolist())) == 3  # each ran its own count


def test_minimize_return_state():
    r = gx.minimize(square, jnp.ones(2), gx.lbfgs(), 10, return_state=True)
    assert isinstance(r.state, gx.ChainState) and int(r.state.zoom_linesearch.count) >= 1
    assert gx.minimize(square, jnp.ones(2), gx.lbfgs(), 10).state is None


def test_minimize_errors():
    for bad in (-1, 2**31):  # steps are counted in int32
        with pytest.raises(ValueError, match=r"max_steps must be a finite number in \[0, 2147"):
            gx.minimize(square, jnp.ones(2), gx.lbfgs(), bad)
    with pytest.raises(ValueError, match=r"max_steps must be an integer >= 0, got 2.5"):
        gx.minimize(square, jnp.ones(2), gx.lbfgs(), 2.5)
    with pytest.raises(ValueError, match=r"tol must be a finite number in \[0, inf\]"):
        gx.minimize(square, jnp.ones(2), gx.lbfgs(), tol=-1e-3)
    # A Python int is a fixed (non-array) leaf: nothing would be optimized.
    with pytest.raises(TypeError, match="params has no floating-point leaf to optimize"):
        gx.minimize(lambda x: (x - 2.0) ** 2, 1, gx.lbfgs())
    # Tree bounds are checked once params give their structure.
    a = {"a": jnp.ones(3)}
    for bounds in ({"lower": {"a": 1.0}, "upper": {"a": 0.0}}, {"lower": 1.0, "upper": {"a": 0.0}}):
        with pytest.raises(ValueError, match=r"lower must be <= upper at \['a'\]"):
            gx.minimize(lambda p: jnp.sum(p["a"] ** 2), a, gx.lbfgs(**bounds))
    with pytest.raises(ValueError, match="lower bound at \\['a'\\] is NaN"):
        gx.minimize(lambda p: jnp.sum(p["a"] ** 2), a, gx.lbfgs(lower={"a": jnp.nan}))
    with pytest.raises(TypeError, match="tx must be a gradient transformation"):
        gx.minimize(square, jnp.ones(2), "lbfgs")
    two = gx.chain(gx.zoom_linesearch(), gx.zoom_linesearch())
    with pytest.raises(ValueError, match="tx has 2 line searches"):
        gx.minimize(square, jnp.ones(2), two)
    not_last = gx.chain(gx.scale(-1.0), gx.zoom_linesearch(), gx.scale(0.5))
    with pytest.raises(ValueError, match="the line search must be the last transform"):
        gx.minimize(square, jnp.ones(2), not_last)


def test_float32_methods_converge():
    for tx in (gx.lbfgs(), gx.conjugate_gradient()):
        r = gx.minimize(rosenbrock, jnp.asarray([-1.2, 1.0]), tx, 500, tol=1e-4)
        assert r.params.dtype == jnp.float32 and r.value.dtype == jnp.float32
        assert status(r) == "CONVERGED"
        np.testing.assert_allclose(r.params, [1.0, 1.0], atol=2e-3)
    r = gx.minimize(shifted, jnp.zeros(3), gx.gradient_descent_linesearch(), 100)
    assert status(r) == "CONVERGED"
    np.testing.assert_allclose(r.params, 3.0, atol=1e-5)


def test_transforms_are_pytree_values():
    tx = gx.lbfgs()
    assert tx == gx.lbfgs() and hash(tx) == hash(gx.lbfgs())
    assert tx.zoom_linesearch.c2 == 0.9 and tx.scale_by_lbfgs.memory_size == 10
    assert gx.conjugate_gradient().zoom_linesearch.c2 == 0.4
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tx)[0]]
    assert ".zoom_linesearch.c1" in paths


# --------------------------------------------------------------------------------------
# Against SciPy (float64)

SCIPY = {"lbfgs": "L-BFGS-B", "conjugate_gradient": "CG"}
PROBLEMS = {p.name: p for p in problems()}


@pytest.mark.parametrize("method", sorted(SCIPY))
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_same_minimum_as_scipy_in_at_most_1_5x_iterations(name, method):
    p = PROBLEMS[name]
    with jax.enable_x64(True):
        vg = jax.jit(jax.value_and_grad(p.fun))
        ref = scipy.optimize.minimize(
            lambda x: tuple(np.asarray(v) for v in vg(jnp.asarray(x))),
            p.x0,
            jac=True,
            method=SCIPY[method],
            options=dict(maxiter=20_000),
        )
        tx = getattr(gx, method)()
        # SciPy's CG has no relative-decrease test: ftol=0 stops on the gradient only.
        ftol = 2.220446049250313e-09 if method == "lbfgs" else 0.0
        r = gx.minimize(p.fun, jnp.asarray(p.x0), tx, 20_000, tol=1e-5, ftol=ftol)
        print(
            f"\n{name} {method}: ours f={float(r.value):.6e} nit={int(r.num_steps)} "
            f"nfev={int(r.num_evals)} | scipy {SCIPY[method]} f={ref.fun:.6e} "
            f"nit={ref.nit} nfev={ref.nfev}"
        )
        assert ref.success and status(r) == "CONVERGED"
        assert int(r.num_steps) <= 1.5 * ref.nit
        np.testing.assert_allclose(float(r.value), ref.fun, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(np.asarray(r.params), ref.x, atol=2e-3)


# --------------------------------------------------------------------------------------
# Review fixes


def test_a_bounded_search_given_alone_passes_its_bounds_to_lbfgs():
    # lbfgs(linesearch=backtracking_linesearch(lower=0)) left the direction unbounded: the
    # projected step did not move, the search called that SUCCESS and minimize CONVERGED
    # at [2.986, 0] with a projected gradient of 0.13.
    with jax.enable_x64(True):
        h = jnp.array([[0.68, 0.09], [0.09, 4.75]])
        b = jnp.array([1.9, -6.6])

        def f(x):
            return 0.5 * x @ h @ x - b @ x

        x0 = jnp.array([0.1, 0.7])
        bounded_search = gx.backtracking_linesearch(lower=0.0)
        alone = gx.minimize(f, x0, gx.lbfgs(linesearch=bounded_search), tol=1e-9)
        ref = gx.minimize(f, x0, gx.lbfgs(lower=0.0), tol=1e-9)
        # Box minimum: x1 = 0, x0 = 1.9 / 0.68.
        for r in (alone, ref):
            assert int(r.status) == gx.MinimizeStatus.CONVERGED
            np.testing.assert_allclose(r.params, [1.9 / 0.68, 0.0], atol=1e-8)
        # The search alone: a trial the bounds stop entirely is no step (FAILED).
        ls = gx.backtracking_linesearch(lower=0.0)

        def g(x):
            return x[0] + (x[1] - 0.05) ** 2

        x = jnp.zeros(2)
        v, gr = jax.value_and_grad(g)(x)
        u, s = ls.update(jnp.array([-1.5, -0.4]), ls.init(x), x, value=v, grad=gr, value_fn=g)
        assert int(s.status) == gx.LineSearchStatus.FAILED
        np.testing.assert_array_equal(u, [0.0, 0.0])
    with pytest.raises(TypeError, match="lbfgs: linesearch must be a zoom_linesearch"):
        gx.lbfgs(linesearch=gx.adam(1.0))


def test_minimize_starts_from_the_projection_onto_the_box():
    # From outside the box it returned the projected point with x0's value and gradient.
    with jax.enable_x64(True):
        c = jnp.array([1.0, 2.0, 3.0])

        def f(x):
            return jnp.sum((x - c) ** 2) + 0.1 * jnp.sum(x**4)

        r = gx.minimize(f, jnp.zeros(3), gx.lbfgs(lower=2.5))
        np.testing.assert_array_equal(r.params, [2.5, 2.5, 2.5])  # the box minimum
        assert float(r.value) == float(f(r.params))
        np.testing.assert_array_equal(r.grad, jax.grad(f)(r.params))
        assert int(r.status) == gx.MinimizeStatus.CONVERGED


def test_approx_rtol_zero_turns_the_approximate_test_off():
    # Both searches accepted a step failing Armijo (f = -0.1 against <= -0.5) with
    # approx_rtol=0, which the docs say disables the approximate test.
    with jax.enable_x64(True):

        def f(x):
            return jnp.sum(-x + 1.9 * x**2 - x**3)

        x0 = jnp.zeros(1)
        v, g = jax.value_and_grad(f)(x0)
        for ls in (
            gx.backtracking_linesearch(c1=0.5, approx_rtol=0.0),
            gx.zoom_linesearch(c1=0.5, c2=0.9, approx_rtol=0.0),
        ):
            tx = gx.chain(gx.scale(-1.0), ls)
            u, st = tx.update(g, tx.init(x0), x0, value=v, grad=g, value_fn=f)
            assert int(st[-1].status) == gx.LineSearchStatus.SUCCESS
            assert float(f(x0 + u)) <= float(v) + 0.5 * float(jnp.vdot(g, u))


def test_minimize_refuses_complex_params_whatever_the_transform():
    for tx in (gx.adam(0.1), gx.sgd(0.1), gx.lbfgs()):
        with pytest.raises(TypeError, match="minimize: complex parameter at <root>"):
            gx.minimize(lambda z: jnp.sum(jnp.abs(z) ** 2), jnp.ones(2, jnp.complex64), tx)


def test_an_unhashable_objective_compiles_once():
    # A dataclass objective (no __hash__) was traced and compiled on every call.
    traces = []

    @dataclasses.dataclass
    class Objective:
        scale: float

        def __call__(self, x):
            traces.append(None)
            return self.scale * jnp.sum((x - 2.0) ** 2)

    obj = Objective(3.0)
    for _ in range(3):
        r = gx.minimize(obj, jnp.zeros(3), gx.lbfgs())
        np.testing.assert_allclose(r.params, 2.0, rtol=1e-5)
    first = len(traces)
    gx.minimize(obj, jnp.zeros(3), gx.lbfgs())
    assert len(traces) == first and first > 0


def test_bad_bounds_and_options_are_named():
    x0 = jnp.zeros(3)

    def f(x):
        return jnp.sum(x**2)

    cases = [
        (lambda: gx.lbfgs(lower="0"), TypeError, "lower bound must be real numbers"),
        (lambda: gx.lbfgs(upper=1j), TypeError, "upper bound must be real numbers"),
        (lambda: gx.lbfgs(lower=jnp.inf), ValueError, "lower bound is inf: the box is empty"),
        (
            lambda: gx.minimize(f, x0, gx.lbfgs(upper=jnp.ones((2, 1)))),
            ValueError,
            r"upper bound has shape \(2, 1\), which does not broadcast to its parameter's \(3,\)",
        ),
        (lambda: gx.lbfgs(scale_init_hessian="no"), TypeError, "must be a bool, got 'no'"),
        (
            lambda: gx.conjugate_gradient(restart_every=2**31),  # overflowed int32 in update
            ValueError,
            r"restart_every must be a finite number in \[1, 2147483647\]",
        ),
        (
            lambda: gx.minimize(lambda x: [f(x), 0], x0, gx.lbfgs(), has_aux=True),
            TypeError,
            "has_aux=True but fun returned a list",
        ),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def test_aux_of_a_first_update_that_takes_no_step():
    # The state held zeros of aux's structure; with aux= it holds the aux at params.
    def fn(x):
        return jnp.sum(x**2), {"norm": jnp.sqrt(jnp.sum(x**2))}

    x = jnp.array([3.0, 4.0])
    (v, aux), g = jax.value_and_grad(fn, has_aux=True)(x)
    for ls in (gx.zoom_linesearch(), gx.backtracking_linesearch()):
        _, s = ls.update(g, ls.init(x), x, value=v, grad=g, value_fn=fn)  # ascent: no step
        assert int(s.status) == gx.LineSearchStatus.NOT_DESCENT and float(s.aux["norm"]) == 0
        _, s = ls.update(g, ls.init(x), x, value=v, grad=g, value_fn=fn, aux=aux)
        assert float(s.aux["norm"]) == 5.0


def test_a_none_update_for_an_array_parameter_is_named():
    # It crashed with "None is not a valid value for jnp.array".
    p = {"a": jnp.ones(2), "b": jnp.ones(3)}
    g = {"a": None, "b": jnp.ones(3)}
    for tx in (gx.scale_by_conjugate_gradient(), gx.scale_by_lbfgs()):
        with pytest.raises(ValueError, match=r"got None at \['a'\], where the parameter is an"):
            tx.update(g, tx.init(p), p)

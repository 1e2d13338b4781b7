"""Classic optimization test problems with known minima.

Test problems for examples, notebooks, tests and benchmarks: each is defined once here,
with its formula, start point and minimum. Nothing in gradxform itself uses them, and
``import gradxform`` does not import this module: ``from gradxform import problems``.
Only jax and numpy are needed.

Two forms:

- Flat: functions of a 1-D array, so that SciPy can run them too (``rosenbrock``,
  ``beale``, ``himmelblau``, and the builders ``quadratic`` and ``logistic``);
  ``problems()`` lists the full-batch test set as ``Problem(name, fun, x0, x_star)``
  with float64 NumPy starts. ``fun`` computes in the dtype of its argument.
- Tree: ``*_tree`` builders returning ``(loss, x0, x_star)`` over small dict pytrees, so
  that optimizers are exercised on trees and not only on one array (``x_star`` is None
  where the minimum is only known numerically).

Example:
  >>> from gradxform import problems
  >>> float(problems.rosenbrock(jnp.ones(3)))
  0.0
  >>> loss, x0, x_star = problems.rosenbrock_tree()
  >>> float(loss(x0)), float(loss(x_star))
  (24.2..., 0.0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Problem",
    "problems",
    "rosenbrock",
    "beale",
    "himmelblau",
    "quadratic",
    "logistic",
    "bowl_tree",
    "rosenbrock_tree",
    "beale_tree",
    "himmelblau_tree",
    "logistic_tree",
]

TreeProblem = tuple[Callable[[Any], jax.Array], Any, Any]

# Start points and minima of the two-variable functions (x, y).
ROSENBROCK_START, ROSENBROCK_MIN = (-1.2, 1.0), (1.0, 1.0)
BEALE_START, BEALE_MIN = (1.0, 1.0), (3.0, 0.5)
HIMMELBLAU_START, HIMMELBLAU_MIN = (0.0, 0.0), (3.0, 2.0)

# The diagonal quadratic bowl of ``bowl_tree``: curvatures (condition number 10), minimum.
BOWL_D = np.array([1.0, 2.0, 4.0, 7.0, 10.0])
BOWL_XSTAR = np.array([1.0, -2.0, 0.5, 3.0, -1.0])


def _rosenbrock(x: Any, y: Any) -> Any:
    return 100.0 * (y - x**2) ** 2 + (1.0 - x) ** 2


def _beale(x: Any, y: Any) -> Any:
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _himmelblau(x: Any, y: Any) -> Any:
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


# --------------------------------------------------------------------------------------
# Flat form: functions of a 1-D array


def rosenbrock(x: jax.Array) -> jax.Array:
    """Chained Rosenbrock: f(x) = sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2.

    Any length n >= 2. Start (-1.2, 1) in 2-D (``ROSENBROCK_START``), zeros in
    ``problems()``'s 100-D case; minimum 0 at ones (the curved valley makes it slow).
    """
    # Written out, not as _rosenbrock(x[:-1], x[1:]): slicing x[:-1] twice fixes the
    # order in which the gradient sums its terms, so its bits (and the iteration counts
    # tests compare with SciPy's) stay those of the original test set.
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def beale(x: jax.Array) -> jax.Array:
    """Beale's function of (x, y) = x[0], x[1]:

    f = (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2.
    Start (1, 1); minimum 0 at (3, 0.5).
    """
    return _beale(x[0], x[1])


def himmelblau(x: jax.Array) -> jax.Array:
    """Himmelblau's function of (x, y) = x[0], x[1]: f = (x^2 + y - 11)^2 + (x + y^2 - 7)^2.

    Four minima of value 0; from the start (0, 0) descent methods reach (3, 2).
    """
    return _himmelblau(x[0], x[1])


def quadratic(
    n: int = 50, cond: float = 1e4, seed: int = 0
) -> tuple[Callable[[jax.Array], jax.Array], np.ndarray, np.ndarray]:
    """Ill-conditioned quadratic f(x) = 0.5 x'Ax - b'x; returns ``(fun, x0, x_star)``.

    A = Q diag(logspace(0, log10 cond, n)) Q' with Q a random orthogonal matrix and b
    standard normal (NumPy ``default_rng(seed)``). Start zeros; the minimum is at
    x* = A^-1 b (float64 NumPy arrays).
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = (q * np.logspace(0, np.log10(cond), n)) @ q.T
    a = 0.5 * (a + a.T)
    b = rng.normal(size=n)

    def fun(x: jax.Array) -> jax.Array:
        return 0.5 * x @ (jnp.asarray(a, x.dtype) @ x) - jnp.asarray(b, x.dtype) @ x

    return fun, np.zeros(n), np.linalg.solve(a, b)


def logistic(
    n: int = 10_000, d: int = 100, lam: float = 1e-3, seed: int = 0
) -> tuple[Callable[[jax.Array], jax.Array], np.ndarray]:
    """L2-regularized logistic regression on synthetic data; returns ``(fun, x0)``.

    f(w) = mean_i [log(1 + exp(z_i)) - y_i z_i] + lam/2 ||w[:-1]||^2 with z = X w, n
    samples of d - 1 features (scaled by linspace(0.2, 3)) plus a constant 1 (its weight,
    the last, is the bias). Start zeros; the minimum is unique (strictly convex) but only
    known numerically.
    """
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n, d - 1)) * np.linspace(0.2, 3.0, d - 1)
    w_true = rng.normal(size=d - 1)
    y = (xs @ w_true + rng.normal(size=n) > 0).astype(np.float64)
    feats = np.concatenate([xs, np.ones((n, 1))], axis=1)

    def fun(w: jax.Array) -> jax.Array:
        z = jnp.asarray(feats, w.dtype) @ w
        nll = jnp.mean(jnp.logaddexp(0.0, z) - jnp.asarray(y, w.dtype) * z)
        return nll + 0.5 * lam * jnp.sum(w[:-1] ** 2)

    return fun, np.zeros(d)


@dataclass(frozen=True)
class Problem:
    """One problem of the flat test set."""

    name: str
    fun: Callable[[jax.Array], jax.Array]  # 1-D array -> scalar, in the array's dtype
    x0: np.ndarray  # float64 start
    x_star: np.ndarray | None = None  # float64 minimizer, None if only known numerically


def problems(logistic_size: tuple[int, int] = (2_000, 50)) -> list[Problem]:
    """The full-batch test set: Rosenbrock 2-D and 100-D, Beale, Himmelblau, a 50-D
    quadratic of condition number 1e4 and a logistic regression of ``logistic_size``
    (samples, features); the starts and minima are those given by each function."""
    quad, quad_x0, quad_xstar = quadratic()
    logi, logi_x0 = logistic(*logistic_size)
    return [
        Problem("rosenbrock_2d", rosenbrock, np.array(ROSENBROCK_START), np.ones(2)),
        Problem("rosenbrock_100d", rosenbrock, np.zeros(100), np.ones(100)),
        Problem("beale", beale, np.array(BEALE_START), np.array(BEALE_MIN)),
        Problem("himmelblau", himmelblau, np.array(HIMMELBLAU_START), np.array(HIMMELBLAU_MIN)),
        Problem("quadratic_50d", quad, quad_x0, quad_xstar),
        Problem(f"logistic_{logistic_size[0]}x{logistic_size[1]}", logi, logi_x0),
    ]


# --------------------------------------------------------------------------------------
# Tree form: (loss, x0, x_star) over small dict pytrees


def bowl_tree(dtype: Any = jnp.float32) -> TreeProblem:
    """Diagonal quadratic bowl f = 0.5 sum_i d_i (x_i - x*_i)^2 over leaves a (2,), b (3,).

    d = ``BOWL_D`` = (1, 2, 4, 7, 10) (condition number 10), x* = ``BOWL_XSTAR`` =
    (1, -2, 0.5, 3, -1). Start zeros; minimum 0 at x*. The loss computes in float32
    whatever ``dtype`` the leaves have.
    """

    def loss(p: Any) -> jax.Array:
        x = jnp.concatenate([p["a"], p["b"]]).astype(jnp.float32)
        return 0.5 * jnp.sum(
            jnp.asarray(BOWL_D, jnp.float32) * (x - BOWL_XSTAR.astype(np.float32)) ** 2
        )

    x0 = {"a": jnp.zeros(2, dtype), "b": jnp.zeros(3, dtype)}
    xs = {"a": jnp.asarray(BOWL_XSTAR[:2], dtype), "b": jnp.asarray(BOWL_XSTAR[2:], dtype)}
    return loss, x0, xs


def _xy_tree(formula: Callable, start: tuple, minimum: tuple, dtype: Any) -> TreeProblem:
    def loss(p: Any) -> jax.Array:
        return formula(p["x"], p["y"])

    x0 = {"x": jnp.asarray(start[0], dtype), "y": jnp.asarray(start[1], dtype)}
    xs = {"x": jnp.asarray(minimum[0], dtype), "y": jnp.asarray(minimum[1], dtype)}
    return loss, x0, xs


def rosenbrock_tree(dtype: Any = jnp.float32) -> TreeProblem:
    """Rosenbrock f = 100 (y - x^2)^2 + (1 - x)^2 over scalar leaves x, y.

    Start (-1.2, 1), where f = 24.2; minimum 0 at (1, 1).
    """
    return _xy_tree(_rosenbrock, ROSENBROCK_START, ROSENBROCK_MIN, dtype)


def beale_tree(dtype: Any = jnp.float64) -> TreeProblem:
    """Beale's function (see ``beale``) over scalar leaves x, y (float64: enable x64).

    Start (1, 1); minimum 0 at (3, 0.5).
    """
    return _xy_tree(_beale, BEALE_START, BEALE_MIN, dtype)


def himmelblau_tree(dtype: Any = jnp.float64) -> TreeProblem:
    """Himmelblau's function (see ``himmelblau``) over scalar leaves x, y (float64: enable
    x64). Start (0, 0); gradient descent from there reaches the minimum 0 at (3, 2).
    """
    return _xy_tree(_himmelblau, HIMMELBLAU_START, HIMMELBLAU_MIN, dtype)


def logistic_tree(n: int = 200, d: int = 5, seed: int = 0) -> TreeProblem:
    """Small L2-regularized logistic regression over leaves w (d,) and b (), float32.

    f = mean_i [log(1 + exp(z_i)) - y_i z_i] + 0.005 ||w||^2, z = X w + b, with X (n, d)
    standard normal and y = [X w_true + 0.5 noise > 0] (NumPy ``default_rng(seed)``).
    Start zeros; the minimum is unique but only known numerically: x_star is None.
    """
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n, d)).astype(np.float32)
    w_true = rng.normal(size=d).astype(np.float32)
    y = (xs @ w_true + 0.5 * rng.normal(size=n) > 0).astype(np.float32)

    def loss(p: Any) -> jax.Array:
        z = jnp.asarray(xs) @ p["w"] + p["b"]
        nll = jnp.mean(jnp.logaddexp(0.0, z) - jnp.asarray(y) * z)
        return nll + 1e-2 * 0.5 * jnp.sum(p["w"] ** 2)

    x0 = {"w": jnp.zeros(d, jnp.float32), "b": jnp.zeros([], jnp.float32)}
    return loss, x0, None

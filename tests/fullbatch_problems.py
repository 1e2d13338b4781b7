"""The classic full-batch test set, over flat vectors (so SciPy can run them too).

Shared by ``tests/test_fullbatch.py`` and ``benchmarks/fullbatch.py``. Each problem is
``Problem(name, fun, x0)``: ``fun`` maps a 1-D array to a scalar, ``x0`` is a NumPy
float64 start. Build with ``make(name, dtype)`` to get ``fun`` and ``x0`` in a dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Problem:
    name: str
    fun: Callable  # 1-D array -> scalar, in the array's dtype
    x0: np.ndarray  # float64 start


def rosenbrock(x):
    """Chained Rosenbrock: sum 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2; minimum 0 at ones."""
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def beale(x):
    """Beale's function; minimum 0 at (3, 0.5)."""
    a, b = x[0], x[1]
    return (1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2 + (2.625 - a + a * b**3) ** 2


def himmelblau(x):
    """Himmelblau's function; four minima of value 0, (3, 2) from the origin."""
    a, b = x[0], x[1]
    return (a**2 + b - 11) ** 2 + (a + b**2 - 7) ** 2


def quadratic(n=50, cond=1e4, seed=0):
    """0.5 x'Ax - b'x with A = Q diag(logspace(0, log10 cond)) Q', Q random orthogonal."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = (q * np.logspace(0, np.log10(cond), n)) @ q.T
    a = 0.5 * (a + a.T)
    b = rng.normal(size=n)

    def fun(x):
        return 0.5 * x @ (jnp.asarray(a, x.dtype) @ x) - jnp.asarray(b, x.dtype) @ x

    return fun, np.zeros(n), np.linalg.solve(a, b)


def logistic(n=10_000, d=100, lam=1e-3, seed=0):
    """Mean logistic loss + lam/2 ||w||^2 on synthetic data (bias is the last weight)."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n, d - 1)) * np.linspace(0.2, 3.0, d - 1)
    w_true = rng.normal(size=d - 1)
    y = (xs @ w_true + rng.normal(size=n) > 0).astype(np.float64)
    feats = np.concatenate([xs, np.ones((n, 1))], axis=1)

    def fun(w):
        z = jnp.asarray(feats, w.dtype) @ w
        nll = jnp.mean(jnp.logaddexp(0.0, z) - jnp.asarray(y, w.dtype) * z)
        return nll + 0.5 * lam * jnp.sum(w[:-1] ** 2)

    return fun, np.zeros(d)


def problems(logistic_size=(2_000, 50)) -> list[Problem]:
    """The test set; ``logistic_size`` is (samples, features) of the logistic regression."""
    quad, quad_x0, _ = quadratic()
    logi, logi_x0 = logistic(*logistic_size)
    x100 = np.zeros(100)
    return [
        Problem("rosenbrock_2d", rosenbrock, np.array([-1.2, 1.0])),
        Problem("rosenbrock_100d", rosenbrock, x100),
        Problem("beale", beale, np.array([1.0, 1.0])),
        Problem("himmelblau", himmelblau, np.array([0.0, 0.0])),
        Problem("quadratic_50d", quad, quad_x0),
        Problem(f"logistic_{logistic_size[0]}x{logistic_size[1]}", logi, logi_x0),
    ]

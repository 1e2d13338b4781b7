"""Known-minimum test problems shared by the test modules.

Each problem is ``(loss_fn, x0, x_star)`` over a small dict pytree, so optimizers are
exercised on trees, not just single arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

QUAD_D = np.array([1.0, 2.0, 4.0, 7.0, 10.0])  # curvatures: condition number 10
QUAD_XSTAR = np.array([1.0, -2.0, 0.5, 3.0, -1.0])


def quadratic(dtype=jnp.float32):
    """f(x) = 0.5 sum_i d_i (x_i - x*_i)^2 split over two leaves; minimum 0 at x*."""

    def loss(p):
        x = jnp.concatenate([p["a"], p["b"]]).astype(jnp.float32)
        return 0.5 * jnp.sum(
            jnp.asarray(QUAD_D, jnp.float32) * (x - QUAD_XSTAR.astype(np.float32)) ** 2
        )

    x0 = {"a": jnp.zeros(2, dtype), "b": jnp.zeros(3, dtype)}
    xs = {"a": jnp.asarray(QUAD_XSTAR[:2], dtype), "b": jnp.asarray(QUAD_XSTAR[2:], dtype)}
    return loss, x0, xs


def rosenbrock(dtype=jnp.float32):
    """f(x, y) = (1 - x)^2 + 100 (y - x^2)^2 from (-1.2, 1); minimum 0 at (1, 1)."""

    def loss(p):
        x, y = p["x"], p["y"]
        return (1 - x) ** 2 + 100 * (y - x**2) ** 2

    x0 = {"x": jnp.asarray(-1.2, dtype), "y": jnp.asarray(1.0, dtype)}
    xs = {"x": jnp.asarray(1.0, dtype), "y": jnp.asarray(1.0, dtype)}
    return loss, x0, xs


def beale(dtype=jnp.float64):
    """Beale's function; minimum 0 at (3, 0.5)."""

    def loss(p):
        x, y = p["x"], p["y"]
        return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2

    x0 = {"x": jnp.asarray(1.0, dtype), "y": jnp.asarray(1.0, dtype)}
    xs = {"x": jnp.asarray(3.0, dtype), "y": jnp.asarray(0.5, dtype)}
    return loss, x0, xs


def himmelblau(dtype=jnp.float64):
    """Himmelblau's function; from (0, 0) gradient descent reaches the minimum (3, 2)."""

    def loss(p):
        x, y = p["x"], p["y"]
        return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2

    x0 = {"x": jnp.asarray(0.0, dtype), "y": jnp.asarray(0.0, dtype)}
    xs = {"x": jnp.asarray(3.0, dtype), "y": jnp.asarray(2.0, dtype)}
    return loss, x0, xs


def logistic_regression(n=200, d=5, seed=0):
    """Separable-ish synthetic binary logistic regression with L2 (unique minimum)."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n, d)).astype(np.float32)
    w_true = rng.normal(size=d).astype(np.float32)
    y = (xs @ w_true + 0.5 * rng.normal(size=n) > 0).astype(np.float32)

    def loss(p):
        z = jnp.asarray(xs) @ p["w"] + p["b"]
        nll = jnp.mean(jnp.logaddexp(0.0, z) - jnp.asarray(y) * z)
        return nll + 1e-2 * 0.5 * jnp.sum(p["w"] ** 2)

    x0 = {"w": jnp.zeros(d, jnp.float32), "b": jnp.zeros([], jnp.float32)}
    return loss, x0, None


def run(tx, loss, params, steps):
    """``steps`` updates of ``tx`` on ``loss`` in one jitted fori_loop; returns params."""

    @jax.jit
    def go(params):
        state = tx.init(params)

        def body(_, carry):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = tx.update(g, s, p)
            return _apply(p, u), s

        return jax.lax.fori_loop(0, steps, body, (params, state))[0]

    return go(params)


def _apply(p, u):
    import gradxform as gx

    return gx.apply_updates(p, u)


def max_dist(a, b):
    return max(
        float(jnp.max(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32))))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    )


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    """Stand-in for flax's TrainState: the transform is static metadata (hashed by jit)."""

    params: Any
    opt_state: Any
    tx: Any = dataclasses.field(metadata=dict(static=True))


def make_train_step(traces: list):
    """A jitted TrainState step that appends to ``traces`` each time it is traced."""

    @jax.jit
    def train_step(ts, g):
        traces.append(None)
        u, s = ts.tx.update(g, ts.opt_state, ts.params)
        return TrainState(_apply(ts.params, u), s, ts.tx)

    return train_step

"""Logistic regression on the Iris data with GD, SGD, momentum and Adam.

Run with ``make demo`` (or ``python examples/iris.py``; needs scikit-learn, which ships
the data set). Prints one row per optimizer: final training loss and accuracy.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx

EPOCHS = 100
BATCH = 16


def load_iris(seed: int = 0):
    """Standardized Iris features and integer labels, split 120 train / 30 test."""
    try:
        from sklearn.datasets import load_iris as sk_load_iris
    except ImportError as e:  # pragma: no cover - the demo extra installs it
        raise SystemExit("the demo needs scikit-learn: pip install 'gradxform[demo]'") from e
    data = sk_load_iris()
    x, y = data.data.astype(np.float32), data.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    mean, std = x[:120].mean(0), x[:120].std(0)
    x = (x - mean) / std
    return (x[:120], y[:120]), (x[120:], y[120:])


def loss_fn(params, x, y):
    logits = x @ params["w"] + params["b"][None, :]
    return gx.softmax_cross_entropy(logits, y)


def accuracy(params, x, y):
    return float(jnp.mean(jnp.argmax(x @ params["w"] + params["b"][None, :], -1) == y))


def train(tx, train_set, batch_size: int | None, seed: int = 0):
    """EPOCHS epochs; ``batch_size=None`` is full-batch gradient descent."""
    x, y = (jnp.asarray(a) for a in train_set)
    n = x.shape[0]
    bs = n if batch_size is None else batch_size
    steps = n // bs
    params = {"w": jnp.zeros((4, 3), jnp.float32), "b": jnp.zeros(3, jnp.float32)}

    @jax.jit
    def epoch(params, state, key):
        perm = jax.random.permutation(key, n)[: steps * bs].reshape(steps, bs)

        def step(carry, idx):
            params, state = carry
            grads = jax.grad(loss_fn)(params, x[idx], y[idx])
            updates, state = tx.update(grads, state, params)
            return (gx.apply_updates(params, updates), state), None

        return jax.lax.scan(step, (params, state), perm)[0]

    state = tx.init(params)
    key = jax.random.PRNGKey(seed)
    for _ in range(EPOCHS):
        key, sub = jax.random.split(key)
        params, state = epoch(params, state, sub)
    return params


def main() -> None:
    train_set, test_set = load_iris()
    runs = [
        ("GD (full batch)", gx.sgd(learning_rate=0.5), None),
        ("SGD", gx.sgd(learning_rate=0.1), BATCH),
        ("Momentum", gx.momentum(learning_rate=0.05, momentum=0.9), BATCH),
        ("Adam", gx.adam(learning_rate=0.01), BATCH),
    ]
    print(
        f"Iris logistic regression, {EPOCHS} epochs, mini-batch {BATCH} "
        f"(jax {jax.__version__}, {jax.default_backend()})"
    )
    header = f"{'optimizer':<18}{'train loss':>12}{'train acc':>11}{'test acc':>10}{'time s':>8}"
    print(header)
    print("-" * len(header))
    for label, tx, bs in runs:
        t0 = time.perf_counter()
        params = train(tx, train_set, bs)
        dt = time.perf_counter() - t0
        loss = float(loss_fn(params, *(jnp.asarray(a) for a in train_set)))
        print(
            f"{label:<18}{loss:>12.4f}{accuracy(params, *train_set):>11.3f}"
            f"{accuracy(params, *test_set):>10.3f}{dt:>8.2f}"
        )


if __name__ == "__main__":
    main()

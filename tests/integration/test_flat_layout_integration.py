"""The flat layout on real Flax and Equinox models: ``gx.flat_params`` turns the model's
parameters into a few buffers, the loss stays written for the model, and a masked AdamW
step on the buffers equals the same step on the tree, bit for bit."""

from __future__ import annotations

import pytest

eqx = pytest.importorskip(
    "equinox", reason="Equinox is in the 'integration' extra: pip install -e '.[integration]'"
)
nn = pytest.importorskip(
    "flax.linen", reason="Flax is in the 'integration' extra: pip install -e '.[integration]'"
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import gradxform as gx  # noqa: E402

X = jax.random.normal(jax.random.key(0), (32, 3))
Y = jnp.sin(X.sum(axis=1, keepdims=True))


def _train(tx, params, loss, steps=5):
    state = tx.init(params)

    @jax.jit
    def step(p, s):
        u, s = tx.update(jax.grad(loss)(p), s, p)
        return gx.apply_updates(p, u), s

    for _ in range(steps):
        params, state = step(params, state)
    return params


def _assert_bitwise(a, b):
    la, ta = jax.tree.flatten(eqx.filter(a, eqx.is_array))
    lb, tb = jax.tree.flatten(eqx.filter(b, eqx.is_array))
    assert ta == tb
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(16, name="hidden")(x))
        return nn.Dense(1, name="out")(x)


def test_flax_params_train_the_same_on_flat_buffers():
    model = MLP()
    params = model.init(jax.random.key(1), X)["params"]

    def loss(p):
        return jnp.mean((model.apply({"params": p}, X) - Y) ** 2)

    labels = gx.match({"**/kernel": "decay"}, default="no_decay")
    flat, unflatten = gx.flat_params(params, labels=labels)
    assert jax.tree.map(jnp.shape, flat) == {
        "decay": {"float32": (3 * 16 + 16,)},
        "no_decay": {"float32": (16 + 1,)},
    }
    tree = _train(gx.adamw(1e-2, weight_decay=0.1, weight_decay_mask="**/kernel"), params, loss)
    mask = {"decay": True, "no_decay": False}
    flat = _train(
        gx.adamw(1e-2, weight_decay=0.1, weight_decay_mask=mask), flat, lambda f: loss(unflatten(f))
    )
    _assert_bitwise(unflatten(flat), tree)


def test_equinox_module_trains_the_same_on_flat_buffers():
    model = eqx.nn.MLP(3, 1, 16, 2, key=jax.random.key(1))  # activation functions are leaves

    def loss(m):
        return jnp.mean((jax.vmap(m)(X) - Y) ** 2)

    flat, unflatten = gx.flat_params(model, pad_to=4)
    assert set(flat) == {"float32"} and flat["float32"].shape[0] % 4 == 0
    assert float(loss(unflatten(flat))) == float(loss(model))

    params, static = eqx.partition(model, eqx.is_inexact_array)
    tree_loss = lambda p: loss(eqx.combine(p, static))  # noqa: E731
    tree = eqx.combine(_train(gx.adam(1e-2), params, tree_loss), static)
    flat = _train(gx.adam(1e-2), flat, lambda f: loss(unflatten(f)))
    _assert_bitwise(unflatten(flat), tree)

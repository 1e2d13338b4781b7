"""gradxform with Equinox: ``eqx.filter_jit`` training, freezing by path,
``eqx.tree_serialise_leaves`` of the optimizer state, learning rate changes."""

from __future__ import annotations

import pytest

eqx = pytest.importorskip(
    "equinox", reason="Equinox is in the 'integration' extra: pip install -e '.[integration]'"
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from compile_counter import count_compiles  # noqa: E402

import gradxform as gx  # noqa: E402

X = jax.random.normal(jax.random.key(0), (32, 3))
Y = jnp.sin(X.sum(axis=1, keepdims=True))


def _model():
    return eqx.nn.MLP(3, 1, 16, 2, key=jax.random.key(1))


def _params(model):
    return eqx.filter(model, eqx.is_inexact_array)


def _bits_equal(a, b) -> bool:
    la, ta = jax.tree.flatten(eqx.filter(a, eqx.is_array))
    lb, tb = jax.tree.flatten(eqx.filter(b, eqx.is_array))
    return ta == tb and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y, equal_nan=True)
        for x, y in zip(la, lb)
    )


def _make_step():
    @eqx.filter_jit
    def step(model, state, tx):
        loss, grads = eqx.filter_value_and_grad(lambda m: jnp.mean((jax.vmap(m)(X) - Y) ** 2))(
            model
        )
        updates, state = tx.update(grads, state, _params(model))
        return eqx.apply_updates(model, updates), state, loss

    return step


def test_filter_jit_training_with_one_compile():
    model = _model()
    tx = gx.adam(1e-2)
    state = tx.init(_params(model))
    step = _make_step()
    with count_compiles("step") as compiles:
        losses = []
        for _ in range(30):
            model, state, loss = step(model, state, tx)
            losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    assert compiles.n == 1


@pytest.mark.parametrize(
    "selector",
    [
        "layers/0/**",  # a key-path pattern: model.layers[0]
        gx.where(lambda path, leaf: path[:2] == ("layers", 0)),  # a predicate on the path
    ],
    ids=["pattern", "where"],
)
def test_freeze_a_submodule_by_path(selector):
    model = _model()
    tx = gx.freeze(gx.adamw(1e-2, weight_decay=0.1), selector)
    state = tx.init(_params(model))
    step = _make_step()
    first = model.layers[0]
    for _ in range(3):
        model, state, _ = step(model, state, tx)
    assert np.array_equal(model.layers[0].weight, first.weight)
    assert np.array_equal(model.layers[0].bias, first.bias)
    assert not np.array_equal(model.layers[1].weight, _model().layers[1].weight)
    assert not [k for k in gx.state_dict(state) if k.startswith("inner_state/") and "/0/" in k]


def test_tree_serialise_leaves_round_trip(tmp_path):
    model = _model()
    tx = gx.chain(
        gx.clip_by_global_norm(1.0),
        gx.apply_if_finite(gx.accumulate(gx.adam(gx.cosine_decay_schedule(1e-2, 10)), 2), 3),
    )
    state = tx.init(_params(model))
    step = _make_step()
    for _ in range(3):
        model, state, _ = step(model, state, tx)
    eqx.tree_serialise_leaves(tmp_path / "opt.eqx", state)
    like = tx.init(_params(_model()))
    restored = eqx.tree_deserialise_leaves(tmp_path / "opt.eqx", like)
    assert isinstance(restored, gx.ChainState) and _bits_equal(restored, state)
    a, b = (model, state), (model, restored)
    for _ in range(3):
        a = step(*a, tx)[:2]
        b = step(*b, tx)[:2]
    assert _bits_equal(a, b)


def test_learning_rate_change_without_recompile():
    # eqx.filter_jit traces arrays and treats every other leaf (a Python float) as static:
    # build the learning rate as an array, and change it with gx.replace.
    model = _model()
    tx = gx.adam(jnp.asarray(1e-2))
    state = tx.init(_params(model))
    step = _make_step()
    with count_compiles("step") as compiles:
        for lr in (1e-2, 5e-3, 1e-3):
            tx = gx.replace(tx, learning_rate=jnp.asarray(lr))
            model, state, _ = step(model, state, tx)
    assert compiles.n == 1
    assert float(state.scale_by_learning_rate.learning_rate) == pytest.approx(1e-3)


def test_python_float_learning_rate_is_static_under_filter_jit():
    # The same with a Python float: each new value is a new static argument.
    model = _model()
    tx = gx.adam(1e-2)
    state = tx.init(_params(model))
    step = _make_step()
    with count_compiles("step") as compiles:
        for lr in (1e-2, 5e-3):
            model, state, _ = step(model, state, gx.replace(tx, learning_rate=lr))
    assert compiles.n == 2

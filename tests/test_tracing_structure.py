"""A transform's state structure never depends on whether a hyperparameter is traced.

A hyperparameter is a Python number when the optimizer is built eagerly, and a tracer when
it is built inside ``jit`` from an argument (``optax.inject_hyperparams`` rebuilds the
optimizer at every update from arrays it keeps in its state). ``init`` often runs with the
concrete value and ``update`` with the traced one, so the two must give the same state
(and update) structure, shapes and dtypes: a term left out for a concrete 0 but kept for a
traced value made ``optax.inject_hyperparams(gx.adam)(learning_rate=1e-2)`` fail under
``jit``. Terms are left out only for ``None`` (see ``weight_decay.maybe_weight_decay``).

For every named optimizer of the registry (``helpers.OPTIMIZERS``) and each of its numeric
hyperparameters (a number by default, or None standing for a number: ``weight_decay``,
``momentum``, ``lr_decay``), built with the value concrete (0 included where valid) and
traced: the same ``init`` structure, the same ``update`` outputs, and the same numbers.
"""

from __future__ import annotations

import inspect
import numbers

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import OPTIMIZERS

import gradxform as gx

PARAMS = {"w": jnp.array([[0.5, -1.0], [2.0, 0.3]]), "b": jnp.array([0.1, -0.2])}
GRADS = jax.tree_util.tree_map(lambda x: 0.5 * x + 0.25, PARAMS)

# Arguments that take a number but default to None ("no such term"): a value to try.
NONE_MEANS_OFF = {"weight_decay": 0.1, "momentum": 0.5, "lr_decay": 0.1}


def numeric_hyperparameters(name: str) -> list[tuple[str, float]]:
    """(argument, a valid nonzero value) for each numeric argument of gx.<name>."""
    case = OPTIMIZERS[name]
    out = []
    for p in inspect.signature(getattr(gx, name)).parameters.values():
        value = case.quad.get(p.name, p.default)
        if isinstance(value, bool):
            continue
        if isinstance(value, numbers.Real):
            out.append((p.name, float(value) or NONE_MEANS_OFF.get(p.name, 0.1)))
        elif value is None and p.name in NONE_MEANS_OFF:
            out.append((p.name, NONE_MEANS_OFF[p.name]))
    return out


CASES = [(name, hp, v) for name in OPTIMIZERS for hp, v in numeric_hyperparameters(name)]


def test_every_optimizer_has_numeric_hyperparameters():
    names = {name for name, _, _ in CASES}
    assert names == set(OPTIMIZERS)
    # The terms that used to be left out for a concrete 0 are among them.
    hps = {(name, hp) for name, hp, _ in CASES}
    assert {("adam", "weight_decay"), ("sgd", "momentum"), ("rmsprop", "momentum")} <= hps
    assert ("adagrad", "lr_decay") in hps


def _abstract(tree):
    return jax.tree_util.tree_map(lambda x: (jnp.shape(x), jnp.result_type(x)), tree)


def _assert_same_layout(concrete, traced, what):
    assert jax.tree_util.tree_structure(concrete) == jax.tree_util.tree_structure(traced), what
    assert _abstract(concrete) == _abstract(traced), what


@pytest.mark.parametrize(
    ("name", "hparam", "nonzero"), CASES, ids=[f"{n}-{h}" for n, h, _ in CASES]
)
def test_structure_does_not_depend_on_tracing(name, hparam, nonzero):
    case = OPTIMIZERS[name]

    def build(value):
        return case.make(**{hparam: value})

    values = [nonzero]
    try:
        build(0.0)
        values.insert(0, 0.0)  # 0: the value a structure used to be decided by
    except ValueError:
        pass
    for value in values:
        what = f"{name}({hparam}={value})"
        traced_arg = jnp.asarray(value, jnp.float32)
        concrete = build(value)
        state = concrete.init(PARAMS)

        # init: concrete vs traced.
        traced_state = jax.eval_shape(lambda v: build(v).init(PARAMS), traced_arg)
        _assert_same_layout(jax.eval_shape(concrete.init, PARAMS), traced_state, what)
        _assert_same_layout(state, traced_state, what)

        # update: concrete vs traced, fed the state built with the concrete value (what
        # inject_hyperparams does); the new state keeps init's layout.
        concrete_out = concrete.update(GRADS, state, PARAMS)
        traced_update = jax.jit(lambda v, s: build(v).update(GRADS, s, PARAMS))
        traced_out = traced_update(traced_arg, state)
        _assert_same_layout(concrete_out, traced_out, what)
        _assert_same_layout(state, traced_out[1], what)

        # ... and the same numbers (a traced beta takes its log in float32 instead of
        # double in the bias correction: a few float32 roundings).
        for a, b in zip(
            jax.tree_util.tree_leaves(concrete_out), jax.tree_util.tree_leaves(traced_out)
        ):
            np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7, err_msg=what)


def test_no_term_only_for_none():
    # None leaves a term out; every number keeps it, 0 included, so the structure is static.
    assert gx.adam(1e-3).init(PARAMS).names == ("scale_by_adam", "scale_by_learning_rate")
    for wd in (0.0, 0.1, jnp.float32(0.0)):
        names = gx.adam(1e-3, weight_decay=wd).init(PARAMS).names
        assert names == ("add_decayed_weights", "scale_by_adam", "scale_by_learning_rate")
    assert gx.sgd(0.1).init(PARAMS).names == ("scale_by_learning_rate",)
    assert gx.sgd(0.1, 0.0).init(PARAMS).names[0] == "scale_by_momentum"
    assert gx.rmsprop(0.1, momentum=0.0).init(PARAMS).names[1] == "scale_by_momentum"
    assert gx.adamw(1e-3, weight_decay=None).init(PARAMS).names == (
        "scale_by_adam",
        "scale_by_learning_rate",
    )
    with pytest.raises(ValueError, match="weight_decay_mask was given but weight_decay is None"):
        gx.adam(1e-3, weight_decay_mask="*/w")


def test_a_zero_decay_costs_nothing_and_needs_no_params():
    # The term is there (state), but a decay known to be 0 skips its arithmetic: the
    # updates pass through as they are (0 * inf would be NaN) and params are optional.
    tx = gx.add_decayed_weights(0.0)
    params = {"w": jnp.array([jnp.inf, 1.0])}
    updates, state = tx.update({"w": jnp.array([1.0, 2.0])}, tx.init(params), params)
    np.testing.assert_array_equal(updates["w"], [1.0, 2.0])
    assert int(state.count) == 1
    tx = gx.adam(0.1, weight_decay=0.0)
    updates, _ = tx.update(GRADS, tx.init(PARAMS))  # no params needed, as without the term
    expected, _ = gx.adam(0.1).update(GRADS, gx.adam(0.1).init(PARAMS))
    for a, b in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------
# optax.inject_hyperparams: the optimizer rebuilt from traced arrays at every update


INJECTED = {
    "adam": ("adam", dict(learning_rate=1e-2)),
    "adamw": ("adamw", dict(learning_rate=1e-2)),
    "sgd-momentum": ("sgd", dict(learning_rate=1e-2, momentum=0.9)),
    "adam-weight_decay-0": ("adam", dict(learning_rate=1e-2, weight_decay=0.0)),
    "rmsprop-momentum-0": ("rmsprop", dict(learning_rate=1e-2, momentum=0.0)),
    "adagrad-lr_decay": ("adagrad", dict(learning_rate=1e-1, lr_decay=0.1)),
}


def _run(tx, steps, promotion="strict"):
    params = PARAMS
    with jax.numpy_dtype_promotion(promotion):
        state = tx.init(params)

        @jax.jit
        def step(params, state, t):
            grads = jax.tree_util.tree_map(lambda x: jnp.sin(3 * x + t) + 0.5 * x, params)
            updates, state = tx.update(grads, state, params)
            return gx.apply_updates(params, updates), state

        for t in range(steps):
            params, state = step(params, state, jnp.float32(t))
    return params, state


@pytest.mark.parametrize("key", list(INJECTED))
def test_inject_hyperparams_under_jit(key):
    optax = pytest.importorskip("optax")
    name, kwargs = INJECTED[key]
    # Optax is not clean under the suite's strict dtype promotion (tests/conftest.py).
    with jax.numpy_dtype_promotion("standard"):
        injected = optax.inject_hyperparams(getattr(gx, name))(**kwargs)
    ours, state = _run(injected, 4, promotion="standard")
    plain, _ = _run(getattr(gx, name)(**kwargs), 4)
    # The injected optimizer sees its numbers as float32 arrays (b1, b2 too): its bias
    # corrections take log(b) in float32 rather than double, a few roundings apart.
    for k in plain:
        np.testing.assert_allclose(ours[k], plain[k], rtol=1e-6, atol=1e-7)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(kwargs["learning_rate"])
    assert int(state.count) == 4


def test_inject_hyperparams_new_learning_rate_takes_effect():
    optax = pytest.importorskip("optax")
    with jax.numpy_dtype_promotion("standard"):
        injected = optax.inject_hyperparams(gx.adam)(learning_rate=1e-2)
        params = PARAMS
        state = injected.init(params)
        step = jax.jit(injected.update)
        _, state = step(GRADS, state, params)
        state.hyperparams["learning_rate"] = jnp.asarray(0.5)
        updates, _ = step(GRADS, state, params)
    # Adam's second step with equal gradients: m_hat / sqrt(v_hat) = g / |g|, times -lr.
    np.testing.assert_allclose(updates["w"], -0.5 * jnp.sign(GRADS["w"]), rtol=1e-5)

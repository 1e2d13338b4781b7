"""accumulate: equality with one big batch, inner runs only on the k-th call, dtypes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

RNG = np.random.default_rng(1)
X = RNG.normal(size=(32, 5)).astype(np.float32)
Y = (X @ np.array([1.0, -2.0, 0.5, 3.0, -1.0], np.float32) + 0.3).astype(np.float32)
Y += 0.1 * RNG.normal(size=32).astype(np.float32)
P0 = {"w": jnp.zeros(5, jnp.float32), "b": jnp.zeros([], jnp.float32)}


def mean_loss(p, x, y):
    return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)


def sum_loss(p, x, y):
    return jnp.sum((x @ p["w"] + p["b"] - y) ** 2)


def rel_diff(a, b):
    """max |a - b| / max |b| over all leaves (float64)."""
    la = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(a)]
    lb = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(b)]
    num = max(float(np.max(np.abs(x - y))) for x, y in zip(la, lb))
    return num / max(float(np.max(np.abs(y))) for y in lb)


def _train(tx, loss, batches):
    @jax.jit
    def step(p, s, x, y):
        u, s = tx.update(jax.grad(loss)(p, x, y), s, p)
        return gx.apply_updates(p, u), s

    p, s = P0, tx.init(P0)
    for x, y in batches:
        p, s = step(p, s, jnp.asarray(x), jnp.asarray(y))
    return p, s


def big_vs_accumulated(loss, average, steps=6):
    # Learning rate halves every 2 optimizer steps: a schedule that counted micro-steps
    # would halve it every half step and diverge from the big-batch run at once.
    sched = gx.exponential_decay(0.1, decay_rate=0.5, transition_steps=2, staircase=True)
    big = [(X, Y)] * steps
    micro = [(X[i : i + 8], Y[i : i + 8]) for _ in range(steps) for i in range(0, 32, 8)]
    p_big, s_big = _train(gx.adam(sched), loss, big)
    tx = gx.accumulate(gx.adam(sched), every_k=4, average=average)
    p_acc, s_acc = _train(tx, loss, micro)
    return p_big, s_big, p_acc, s_acc


def test_accumulated_mean_loss_equals_one_big_batch():
    # 6 optimizer steps of Adam with a staircase schedule; 4 micro-batches of 8 averaged
    # vs one batch of 32. d/dp mean_32 = (1/4) sum_j d/dp mean_8(j) exactly; in float32 the
    # two sides sum the 32 per-example terms in a different order, so gradients differ by
    # a few ulps (~1e-7 relative) and Adam passes that on: 1e-6 relative is float32
    # rounding, while any counting error (schedule on micro-steps, a lost micro-batch)
    # would show up at the 1e-1 level.
    p_big, s_big, p_acc, s_acc = big_vs_accumulated(mean_loss, average=True)
    assert rel_diff(p_acc, p_big) < 1e-6
    assert rel_diff(s_acc.inner_state.scale_by_adam.mu, s_big.scale_by_adam.mu) < 1e-6
    assert rel_diff(s_acc.inner_state.scale_by_adam.nu, s_big.scale_by_adam.nu) < 1e-6
    assert int(s_acc.inner_state.scale_by_adam.count) == int(s_big.scale_by_adam.count) == 6
    assert int(s_acc.inner_state.scale_by_learning_rate.count) == 6
    assert int(s_acc.count) == 6 and int(s_acc.micro_step) == 0
    assert float(jnp.max(jnp.abs(s_acc.accumulator["w"]))) == 0.0
    assert float(jnp.max(jnp.abs(p_big["w"]))) > 0.3  # the runs did move


def test_accumulated_sum_loss_equals_one_big_batch():
    p_big, _, p_acc, _ = big_vs_accumulated(sum_loss, average=False)
    assert rel_diff(p_acc, p_big) < 1e-6


def test_accumulate_by_hand_and_inner_runs_only_on_kth_call():
    calls = []

    def record(u, p):
        jax.debug.callback(lambda x: calls.append(float(x)), u["x"][0])
        return u

    inner = gx.chain(gx.stateless(record), gx.scale_by_learning_rate(lambda t: t + 1, False))
    tx = gx.accumulate(inner, every_k=3)
    params = {"x": jnp.zeros(2, jnp.float32)}
    step = jax.jit(lambda g, s: tx.update({"x": jnp.asarray(g, jnp.float32)}, s, params))
    s = tx.init(params)
    outs, states = [], []
    for g in (1.0, 2.0, 6.0, -3.0, 0.0, 0.75):
        u, s = step([g, 2 * g], s)
        outs.append(np.asarray(u["x"]).tolist())
        states.append(s)
    jax.effects_barrier()
    # Means (1+2+6)/3 = 3 and (-3+0+0.75)/3 = -0.75; inner's lr schedule t+1 sees t = 0, 1.
    assert outs == [[0, 0], [0, 0], [3, 6], [0, 0], [0, 0], [-1.5, -3]]
    assert calls == [3.0, -0.75]  # inner computed twice, not six times
    assert [int(s.micro_step) for s in states] == [1, 2, 0, 1, 2, 0]
    assert [int(s.count) for s in states] == [0, 0, 1, 1, 1, 2]
    assert np.asarray(states[1].accumulator["x"]).tolist() == [3.0, 6.0]
    inner_counts = [int(s.inner_state.scale_by_learning_rate.count) for s in states]
    assert inner_counts == [0, 0, 1, 1, 1, 2]


def test_accumulator_dtype():
    params = {"h": jnp.zeros(3, jnp.bfloat16), "f": jnp.zeros(2, jnp.float32), "n": None}
    grads = {"h": jnp.full(3, 1.0 / 3, jnp.bfloat16), "f": jnp.ones(2), "n": None}
    tx = gx.accumulate(gx.identity(), every_k=2)
    s = tx.init(params)
    assert s.accumulator["h"].dtype == jnp.float32 and s.accumulator["n"] is None
    u, s = jax.jit(tx.update)(grads, s)
    assert u["h"].dtype == jnp.bfloat16 and u["f"].dtype == jnp.float32 and u["n"] is None
    tx16 = gx.accumulate(gx.identity(), every_k=2, accumulator_dtype=jnp.bfloat16)
    s16 = tx16.init(params)
    assert s16.accumulator["h"].dtype == jnp.bfloat16
    assert s16.accumulator["f"].dtype == jnp.bfloat16
    u, s16 = jax.jit(tx16.update)(grads, s16)
    assert s16.accumulator["h"].dtype == jnp.bfloat16


def test_every_k_is_a_leaf_and_one_means_plain():
    params = {"x": jnp.ones(3)}
    g = {"x": jnp.array([1.0, -2.0, 0.5])}
    f = jax.jit(lambda tx, g, s: tx.update(g, s, params))
    tx1, tx2 = gx.accumulate(gx.sgd(0.5), 1), gx.accumulate(gx.sgd(0.5), 2)
    assert jax.tree_util.tree_structure(tx1) == jax.tree_util.tree_structure(tx2)
    u, _ = f(tx1, g, tx1.init(params))
    np.testing.assert_array_equal(u["x"], [-0.5, 1.0, -0.25])
    u, s = f(tx2, g, tx2.init(params))
    np.testing.assert_array_equal(u["x"], [0.0, 0.0, 0.0])
    u, _ = f(tx2, g, s)
    np.testing.assert_array_equal(u["x"], [-0.5, 1.0, -0.25])


def test_accumulate_validation():
    with pytest.raises(ValueError, match=r"accumulate: every_k must be a finite number in \[1"):
        gx.accumulate(gx.adam(), 0)
    with pytest.raises(ValueError, match="accumulate: every_k must be an integer >= 1"):
        gx.accumulate(gx.adam(), 2.5)
    with pytest.raises(TypeError, match="accumulate: average must be a bool"):
        gx.accumulate(gx.adam(), 2, average="yes")
    with pytest.raises(TypeError, match="accumulate: inner must be a gradient transformation"):
        gx.accumulate(0.1, 2)


def test_none_update_keeps_the_accumulator_slot():
    p = {"a": jnp.ones(2), "b": jnp.ones(2)}
    tx = gx.accumulate(gx.sgd(1.0), 2)
    s = tx.init(p)
    _, s = tx.update({"a": jnp.ones(2), "b": jnp.full(2, 3.0)}, s, p)
    u, s = tx.update({"a": jnp.ones(2), "b": None}, s, p)  # b sits this step out
    assert u["b"] is None
    np.testing.assert_array_equal(s.accumulator["a"], jnp.zeros(2))
    np.testing.assert_array_equal(s.accumulator["b"], jnp.full(2, 3.0))  # kept, not dropped
    _, s = tx.update({"a": jnp.ones(2), "b": jnp.full(2, 2.0)}, s, p)
    np.testing.assert_array_equal(s.accumulator["b"], jnp.full(2, 5.0))
    u, s = tx.update({"a": jnp.ones(2), "b": jnp.full(2, 1.0)}, s, p)
    # sgd(1.0) on the mean: -(3 + 2 + 1) / 2 for b, -(1 + 1) / 2 for a.
    np.testing.assert_array_equal(u["b"], jnp.full(2, -3.0))
    np.testing.assert_array_equal(u["a"], jnp.full(2, -1.0))
    np.testing.assert_array_equal(s.accumulator["b"], jnp.zeros(2))
    assert jax.tree.structure(s) == jax.tree.structure(tx.init(p))

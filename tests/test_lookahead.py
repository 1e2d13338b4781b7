"""lookahead: two sync periods by hand with SGD; the params the user sees are the fast ones."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx


def half_square(p):
    return 0.5 * jnp.sum(p["x"] ** 2)  # gradient: p itself


def _run(tx, p, steps):
    s = tx.init(p)
    step = jax.jit(lambda p, s: tx.update(jax.grad(half_square)(p), s, p))
    trace = []
    for _ in range(steps):
        u, s = step(p, s)
        p = gx.apply_updates(p, u)
        trace.append((np.asarray(u["x"]).tolist(), np.asarray(p["x"]).tolist(), s))
    return trace


def test_lookahead_two_sync_periods_by_hand():
    # sgd lr 0.5 on 0.5 x^2 halves x each fast step; sync every 2 steps with alpha 0.5.
    # x0 = 4 (slow = 4):  fast 2, 1 -> sync: slow = 4 + 0.5 (1 - 4) = 2.5, params 2.5;
    #                     fast 1.25, 0.625 -> sync: slow = 2.5 + 0.5 (0.625 - 2.5) = 1.5625.
    # The second coordinate starts at -8: everything times -2.
    tx = gx.lookahead(gx.sgd(0.5), sync_period=2, alpha=0.5)
    trace = _run(tx, {"x": jnp.array([4.0, -8.0])}, 4)
    updates = [u[0] for u, _, _ in trace]
    params = [p[0] for _, p, _ in trace]
    slow = [float(s.slow_params["x"][0]) for _, _, s in trace]
    assert updates == [-2.0, 0.5, -1.25, 0.3125]  # sync steps emit slow - fast
    assert params == [2.0, 2.5, 1.25, 1.5625]
    assert slow == [4.0, 2.5, 2.5, 1.5625]
    assert [p[1] for _, p, _ in trace] == [-2 * x for x in params]
    assert [int(s.count) for _, _, s in trace] == [1, 2, 3, 4]


def test_lookahead_keeps_inner_state_across_syncs():
    # Momentum sgd, mu = 0.5, lr = 0.25, constant gradient 1 (loss = sum x):
    # v = 1, 1.5; fast 0 -> -0.25 -> -0.625; sync (alpha 0.5): slow = -0.3125.
    # Step 3 continues with v = 1.75 (not reset): params -0.3125 - 0.4375 = -0.75.
    tx = gx.lookahead(gx.sgd(0.25, momentum=0.5), sync_period=2, alpha=0.5)
    p = {"x": jnp.zeros(1)}
    s = tx.init(p)
    g = {"x": jnp.ones(1)}
    out = []
    for _ in range(3):
        u, s = tx.update(g, s, p)
        p = gx.apply_updates(p, u)
        out.append(float(p["x"][0]))
    assert out == [-0.25, -0.3125, -0.75]
    assert float(s.inner_state.scale_by_momentum.velocity["x"][0]) == 1.75


def test_lookahead_alpha_one_is_the_inner_optimizer():
    p0 = {"x": jnp.array([1.0, -3.0, 0.5])}
    la = _run(gx.lookahead(gx.adam(0.1), sync_period=3, alpha=1.0), p0, 7)
    plain = _run(gx.adam(0.1), p0, 7)
    for (_, pa, _), (_, pp, _) in zip(la, plain):
        np.testing.assert_allclose(pa, pp, rtol=1e-6)


def test_lookahead_dtypes_and_none_leaves():
    params = {"h": jnp.ones(3, jnp.bfloat16), "n": None}
    tx = gx.lookahead(gx.sgd(0.1), 2, 0.5)
    s = tx.init(params)
    assert s.slow_params["h"].dtype == jnp.float32 and s.slow_params["n"] is None
    u, s = jax.jit(tx.update)({"h": jnp.ones(3, jnp.bfloat16), "n": None}, s, params)
    assert u["h"].dtype == jnp.bfloat16 and u["n"] is None
    s16 = gx.lookahead(gx.sgd(0.1), 2, 0.5, slow_dtype=jnp.bfloat16).init(params)
    assert s16.slow_params["h"].dtype == jnp.bfloat16


def test_lookahead_matches_optax_fast_params():
    optax = pytest.importorskip("optax")
    p0 = jnp.array([1.0, -2.0, 0.5])
    ours = _run(gx.lookahead(gx.sgd(0.1, momentum=0.9), 3, 0.5), {"x": p0}, 9)
    otx = optax.lookahead(optax.sgd(0.1, momentum=0.9), 3, 0.5)
    lp = optax.LookaheadParams.init_synced(p0)
    s = otx.init(lp)
    for _, p, _ in ours:
        with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
            u, s = otx.update(lp.fast, s, lp)  # gradient of half_square at the fast params
            lp = optax.apply_updates(lp, u)
        np.testing.assert_allclose(p, lp.fast, rtol=1e-6, atol=1e-7)


def test_lookahead_validation():
    with pytest.raises(ValueError, match=r"lookahead: alpha must be a finite number in \(0, 1\]"):
        gx.lookahead(gx.sgd(0.1), 5, 0.0)
    with pytest.raises(ValueError, match="lookahead: sync_period must be an integer >= 1"):
        gx.lookahead(gx.sgd(0.1), 2.5)
    with pytest.raises(ValueError, match=r"lookahead: sync_period must be a finite number in \[1"):
        gx.lookahead(gx.sgd(0.1), 0)
    tx = gx.lookahead(gx.sgd(0.1))
    p = {"x": jnp.ones(2)}
    with pytest.raises(ValueError, match="lookahead needs the current parameters"):
        tx.update(p, tx.init(p))


def test_slow_weights_are_a_copy_sharded_like_params():
    # They used to share the parameters' buffer: a jitted step donating params and state
    # then failed ("donate the same buffer twice"); sharded params failed in init.
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]), ("x",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x"))
    p = {"w": jax.device_put(jnp.arange(8.0), sharding), "f": 2.0}
    tx = gx.lookahead(gx.sgd(0.5), sync_period=2, alpha=0.5)
    state = tx.init(p)
    assert state.slow_params["w"].sharding == sharding

    @jax.jit
    def reference(p, s):
        u, s = tx.update(p, s, p)  # the gradient of half the squared norm
        return gx.apply_updates(p, u), s

    step = jax.jit(reference.__wrapped__, donate_argnums=(0, 1))
    want = reference(p, tx.init(p))
    got = step(p, state)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="lookahead.init: the slow weights start as a copy"):
        tx.init({"w": jax.ShapeDtypeStruct((3,), jnp.float32)})

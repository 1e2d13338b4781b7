"""reduce_on_plateau (hand-worked timelines, negative losses) and scale_by_schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

INF = float("inf")


def _feed(tx, values, grad=(1.0, -2.0)):
    params = {"x": jnp.zeros(2, jnp.float32)}
    g = {"x": jnp.asarray(grad, jnp.float32)}
    step = jax.jit(lambda s, v: tx.update(g, s, params, value=v))
    s, out = tx.init(params), []
    for v in values:
        u, s = step(s, jnp.float32(v))
        out.append((np.asarray(u["x"]).tolist(), s))
    return out


def test_reduce_on_plateau_negative_loss_timeline_by_hand():
    # patience 2, cooldown 1, factor 0.5, rtol 0.1, floor 0.2. Improvement: v < best -
    # 0.1 |best|, e.g. < -11 while best = -10. t2 (-9.5) is *worse*: torch's rel rule
    # (v < best (1 - rtol) = -9) would have counted it as an improvement.
    # t:    1    2     3     4      5      6      7    8    9   10    11    12    13
    vals = [-10, -9.5, -10.5, -10.9, -10.95, -10.99, -10, -10, -12, -12.5, -13, -13.1, -13.5]
    tx = gx.reduce_on_plateau(factor=0.5, patience=2, rtol=0.1, cooldown=1, min_scale=0.2)
    out = _feed(tx, vals)
    # t4: 3 bad evaluations > patience -> 0.5, cooldown 1; t5 is the cooldown (plateau
    # held at 0); t6-t8 bad -> 0.25; t9 improves (best -12) during cooldown; t10-t12 bad
    # -> max(0.125, 0.2) = 0.2; t13 improves on -12 - 1.2 = -13.2.
    scale = [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.2, 0.2]
    best = [-10] * 8 + [-12] * 4 + [-13.5]
    plateau = [0, 1, 2, 0, 0, 1, 2, 0, 0, 1, 2, 0, 0]
    cooldown = [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0]
    np.testing.assert_allclose([float(s.scale) for _, s in out], scale, rtol=1e-7)
    assert [float(s.best_value) for _, s in out] == best
    assert [int(s.plateau_count) for _, s in out] == plateau
    assert [int(s.cooldown_count) for _, s in out] == cooldown
    # Each call's updates are scaled by the scale after that call's evaluation.
    np.testing.assert_allclose([u for u, _ in out], [[c, -2 * c] for c in scale], rtol=1e-7)


def test_reduce_on_plateau_accumulation_window():
    # Windows of 2: mean(4, 2) = 3 improves on +inf; mean(3, 3.5) = 3.25 does not, and
    # patience 0 cuts the scale at once.
    tx = gx.reduce_on_plateau(factor=0.5, patience=0, accumulation_size=2)
    out = _feed(tx, [4.0, 2.0, 3.0, 3.5, 100.0])
    assert [int(s.accumulation_count) for _, s in out] == [1, 0, 1, 0, 1]
    assert [float(s.accumulated_value) for _, s in out] == [4.0, 0.0, 3.0, 0.0, 100.0]
    assert [float(s.best_value) for _, s in out] == [INF, 3.0, 3.0, 3.0, 3.0]
    assert [float(s.scale) for _, s in out] == [1.0, 1.0, 1.0, 0.5, 0.5]
    assert [u[0] for u, _ in out] == [1.0, 1.0, 1.0, 0.5, 0.5]


def test_reduce_on_plateau_atol_and_nan():
    # atol 1: improvements must beat best by more than 1; NaN never improves.
    tx = gx.reduce_on_plateau(factor=0.5, patience=1, rtol=0.0, atol=1.0)
    out = _feed(tx, [5.0, 4.5, float("nan"), 3.5, 3.0])
    assert [float(s.best_value) for _, s in out] == [5.0, 5.0, 5.0, 3.5, 3.5]
    assert [float(s.scale) for _, s in out] == [1.0, 1.0, 0.5, 0.5, 0.5]


def test_reduce_on_plateau_in_a_jitted_chain():
    tx = gx.chain(gx.sgd(0.5), gx.reduce_on_plateau(factor=0.5, patience=0))
    params = {"x": jnp.ones(2)}
    step = jax.jit(lambda t, g, s, v: t.update(g, s, params, value=v))
    s = tx.init(params)
    g = {"x": jnp.array([1.0, 2.0])}
    u, s = step(tx, g, s, jnp.float32(1.0))
    u, s = step(tx, g, s, jnp.float32(1.0))  # no improvement: scale 0.5
    np.testing.assert_array_equal(u["x"], [-0.25, -0.5])
    assert float(s.reduce_on_plateau.scale) == 0.5


def test_reduce_on_plateau_errors():
    tx = gx.reduce_on_plateau()
    p = {"x": jnp.ones(2)}
    with pytest.raises(ValueError, match="reduce_on_plateau needs the loss: call update"):
        tx.update(p, tx.init(p), p)
    with pytest.raises(ValueError, match=r"value must be a scalar, got shape \(2,\)"):
        tx.update(p, tx.init(p), p, value=jnp.ones(2))
    o = "reduce_on_plateau: "
    with pytest.raises(ValueError, match=o + r"factor must be a finite number in \(0, 1\)"):
        gx.reduce_on_plateau(factor=1.0)
    with pytest.raises(ValueError, match=o + "patience must be an integer >= 0"):
        gx.reduce_on_plateau(patience=1.5)
    with pytest.raises(ValueError, match=o + r"cooldown must be a finite number in \[0"):
        gx.reduce_on_plateau(cooldown=-1)
    with pytest.raises(ValueError, match=o + r"rtol must be a finite number in \[0"):
        gx.reduce_on_plateau(rtol=-1e-3)
    with pytest.raises(ValueError, match=o + r"min_scale must be a finite number in \[0, 1\]"):
        gx.reduce_on_plateau(min_scale=2.0)
    with pytest.raises(ValueError, match=o + "accumulation_size must be an integer >= 1"):
        gx.reduce_on_plateau(accumulation_size=2.5)
    with pytest.raises(TypeError, match=o + "atol must be a real number"):
        gx.reduce_on_plateau(atol="0")


# --------------------------------------------------------------------------------------
# scale_by_schedule


def test_scale_by_schedule_by_hand():
    sched = gx.piecewise_constant_schedule((2,), (1.0, 0.25))
    tx = gx.scale_by_schedule(sched)
    params = {"x": jnp.zeros(2)}
    f = jax.jit(lambda t, g, s: t.update(g, s))
    s, out = tx.init(params), []
    for g in (1.0, 2.0, 4.0, -8.0):
        u, s = f(tx, {"x": jnp.array([g, -g])}, s)
        out.append(np.asarray(u["x"]).tolist())
    assert out == [[1.0, -1.0], [2.0, -2.0], [1.0, -1.0], [-2.0, 2.0]]  # no sign flip
    assert int(s.count) == 4
    # The schedule's numbers are leaves: a new value reuses the compiled step.
    tx2 = gx.scale_by_schedule(gx.piecewise_constant_schedule((2,), (3.0, 0.5)))
    u, _ = f(tx2, {"x": jnp.array([1.0, 1.0])}, tx2.init(params))
    assert np.asarray(u["x"]).tolist() == [3.0, 3.0]
    assert f._cache_size() == 1


def test_scale_by_schedule_plain_callable_and_validation():
    tx = gx.scale_by_schedule(lambda t: 0.5 ** t.astype(jnp.float32))
    p = {"x": jnp.ones(1, jnp.bfloat16)}
    s = tx.init(p)
    outs = []
    for _ in range(3):
        u, s = tx.update(p, s)
        assert u["x"].dtype == jnp.bfloat16
        outs.append(float(u["x"][0]))
    assert outs == [1.0, 0.5, 0.25]
    with pytest.raises(TypeError, match="scale_by_schedule: schedule must be a callable"):
        gx.scale_by_schedule(0.5)

"""gx.dynamic_loss_scale: float16 training that underflows (or overflows) without it, the
grow/backoff schedule against a hand-computed one, the atomic skip, gx.loss_scale."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

RNG = np.random.default_rng(3)
X = jnp.asarray(RNG.normal(size=(32, 4)), jnp.float16)
W_TRUE = jnp.asarray([0.5, -1.0, 1.5, 0.25], jnp.float16)
Y = (X.astype(jnp.float32) @ W_TRUE.astype(jnp.float32)).astype(jnp.float32)
# The loss is tiny (2**-26 times a mean squared error of order 1): its float16 gradient,
# 2**-25 X^T r / N, is below float16's smallest subnormal (2**-24) and rounds to 0.
TINY = 2.0**-26


def mse(w):
    r = X.astype(jnp.float32) @ w.astype(jnp.float32) - Y
    return jnp.mean(r * r)


def loss(w):
    return mse(w) * TINY


def train(tx, scaled: bool, steps: int = 300):
    """float16 params; the loss multiplied by gx.loss_scale(state) when ``scaled``."""

    @jax.jit
    def go(w):
        def body(carry, _):
            w, s = carry
            factor = gx.loss_scale(s) if scaled else jnp.float32(1.0)
            g = jax.grad(lambda v: loss(v) * factor)(w)
            u, s = tx.update(g, s, w)
            return (gx.apply_updates(w, u), s), mse(w)

        return jax.lax.scan(body, (w, tx.init(w)), length=steps)

    return go(jnp.zeros(4, jnp.float16))


# SGD at 2**24 on the 2**-26-scaled loss: gradient descent with step 0.25 on the mse.
LR = 2.0**24


def test_float16_gradients_underflow_without_scaling_and_train_with_it():
    g0 = jax.grad(loss)(jnp.zeros(4, jnp.float16))
    assert g0.dtype == jnp.float16
    (w_plain, _), mse_plain = train(gx.sgd(LR), scaled=False)
    (w_dyn, s), mse_dyn = train(
        gx.dynamic_loss_scale(gx.sgd(LR), init_scale=2.0**10, growth_interval=20), scaled=True
    )
    initial = float(mse(jnp.zeros(4, jnp.float16)))
    # Without scaling the gradients are (mostly) exact zeros: training stalls far away.
    assert float(mse(w_plain)) > 0.1 * initial, float(mse(w_plain))
    # With it: the float16 params reach w_true to float16 precision.
    assert float(mse(w_dyn)) < 1e-4 * initial, float(mse(w_dyn))
    np.testing.assert_allclose(
        np.asarray(w_dyn, np.float32), np.asarray(W_TRUE, np.float32), atol=1e-2
    )
    assert w_dyn.dtype == jnp.float16
    # growth_interval=20 over 300 steps: the scale doubled 15 times (the gradients shrink
    # as the residual does, so the scaled ones never overflowed float16 here).
    assert float(s.scale) == 2.0 ** (10 + 300 // 20) and int(s.total_skipped) == 0
    assert np.all(np.isfinite(np.asarray(mse_dyn)))


def test_overflowing_scale_backs_off_and_trains_where_a_fixed_one_diverges():
    # 2**60 times the loss: float16 gradients ~1e10 overflow to inf.
    big = 2.0**60

    @jax.jit
    def fixed_run(w):
        tx = gx.sgd(LR)

        def body(carry, _):
            w, s = carry
            g = jax.grad(lambda v: loss(v) * big)(w)
            g = (g.astype(jnp.float32) / big).astype(jnp.float32)  # unscale by hand
            u, s = tx.update(g, s, w)
            return (gx.apply_updates(w, u), s), None

        return jax.lax.scan(body, (w, tx.init(w)), length=50)[0][0]

    assert not np.all(np.isfinite(np.asarray(fixed_run(jnp.zeros(4, jnp.float16)), np.float32)))
    (w, s), mses = train(gx.dynamic_loss_scale(gx.sgd(LR), init_scale=big), scaled=True)
    skipped = int(s.total_skipped)
    # Halved once per skipped step until the scaled gradients fit in float16 (max 65504).
    assert 10 <= skipped <= 40, skipped
    assert float(s.scale) == big * 0.5**skipped
    assert np.all(np.isfinite(np.asarray(w, np.float32)))
    assert float(mse(w)) < 1e-4 * float(mses[0])


def test_grow_and_backoff_schedule_by_hand():
    tx = gx.dynamic_loss_scale(
        gx.sgd(1.0), init_scale=8.0, growth_interval=3, growth_factor=2.0, backoff_factor=0.5,
        min_scale=2.0,
    )  # fmt: skip
    p = jnp.zeros(2, jnp.float16)
    s = tx.init(p)
    finite = [1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1]
    # torch.amp.GradScaler's rule (growth after 3 finite steps in a row, the tracker reset
    # on growth and on backoff), floored at min_scale=2.
    scales = [8, 8, 16, 16, 8, 8, 8, 4, 2, 2, 2, 2, 4]
    trackers = [1, 2, 0, 1, 0, 1, 2, 0, 0, 0, 1, 2, 0]
    skipped = [0, 0, 0, 0, 1, 1, 1, 2, 3, 4, 4, 4, 4]
    step = jax.jit(tx.update)
    for t, ok in enumerate(finite):
        g = jnp.asarray([1.0, -1.0] if ok else [1.0, np.inf], jnp.float16)
        u, s = step(g * s.scale.astype(jnp.float16), s, p)
        assert u.dtype == jnp.float16
        assert float(s.scale) == scales[t], t
        assert int(s.growth_tracker) == trackers[t], t
        assert int(s.total_skipped) == skipped[t], t
        assert s.scale.dtype == jnp.float32
        expected = [-1.0, 1.0] if ok else [0.0, 0.0]  # the unscaled gradient, lr 1
        np.testing.assert_array_equal(np.asarray(u, np.float32), expected)


def test_skipped_step_leaves_inner_state_bitwise_and_growth_never_overflows():
    p = {"w": jnp.array([1.0, 2.0], jnp.float16), "n": None}
    tx = gx.dynamic_loss_scale(gx.adam(0.1), init_scale=4.0)
    s = tx.init(p)
    _, s = tx.update({"w": jnp.array([4.0, -4.0], jnp.float16), "n": None}, s, p)
    before = s.inner_state
    u, s = tx.update({"w": jnp.array([jnp.nan, 1.0], jnp.float16), "n": None}, s, p)
    assert u["n"] is None and u["w"].dtype == jnp.float16
    np.testing.assert_array_equal(np.asarray(u["w"], np.float32), 0.0)
    for a, b in zip(jax.tree.leaves(s.inner_state), jax.tree.leaves(before)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(s.scale) == 2.0
    # Growth that would overflow float32 keeps the scale (torch's isfinite check).
    big = gx.dynamic_loss_scale(gx.sgd(0.1), init_scale=3e38, growth_interval=1)
    s = big.init(p)
    _, s = big.update({"w": jnp.array([1.0, 1.0], jnp.float16), "n": None}, s, p)
    assert float(s.scale) == np.float32(3e38) and int(s.growth_tracker) == 0


def test_inside_chain_and_loss_scale_accessor():
    tx = gx.chain(gx.clip_by_global_norm(1.0), gx.dynamic_loss_scale(gx.sgd(0.1)))
    p = jnp.ones(2, jnp.float16)
    s = tx.init(p)
    assert float(gx.loss_scale(s)) == 2.0**16  # torch.amp.GradScaler's init_scale
    assert gx.metrics(s)["dynamic_loss_scale/loss_scale"] == 2.0**16
    with pytest.raises(ValueError, match="exactly one DynamicLossScaleState.*found 0"):
        gx.loss_scale(gx.adam(0.1).init(p))
    two = gx.chain(gx.dynamic_loss_scale(gx.sgd(0.1)), gx.dynamic_loss_scale(gx.sgd(0.1)))
    with pytest.raises(ValueError, match="found 2"):
        gx.loss_scale(two.init(p))


def test_errors():
    with pytest.raises(
        ValueError, match=r"dynamic_loss_scale: growth_factor must be a finite number in \(1"
    ):
        gx.dynamic_loss_scale(gx.sgd(0.1), growth_factor=1.0)
    with pytest.raises(
        ValueError, match=r"dynamic_loss_scale: backoff_factor must be a finite number in \(0, 1\)"
    ):
        gx.dynamic_loss_scale(gx.sgd(0.1), backoff_factor=1.0)
    with pytest.raises(ValueError, match=r"dynamic_loss_scale: growth_interval must be an integer"):
        gx.dynamic_loss_scale(gx.sgd(0.1), growth_interval=1.5)
    with pytest.raises(ValueError, match=r"dynamic_loss_scale: init_scale must be a finite number"):
        gx.dynamic_loss_scale(gx.sgd(0.1), init_scale=0.0)
    with pytest.raises(
        TypeError, match="dynamic_loss_scale: inner must be a gradient transformation"
    ):
        gx.dynamic_loss_scale(1.0)

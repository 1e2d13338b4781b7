"""Regression tests for numerical defects a user reported.

- positive-required hyperparameters that are 0 in float32 (eps=1e-45 gave NaN);
- centered RMSprop's variance, slightly negative under jit (NaN);
- float16 updates overflowing between chain members (sgd momentum ended at -inf).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

F32_TINY = float(np.finfo(np.float32).tiny)

# --------------------------------------------------------------------------------------
# Hyperparameters that must be > 0 must be > 0 in float32 too


POSITIVE_REQUIRED = {
    "adam.eps": lambda v: gx.adam(1e-3, eps=v),
    "scale_by_adam.eps": lambda v: gx.scale_by_adam(eps=v),
    "nadam.eps": lambda v: gx.nadam(eps=v),
    "radam.eps": lambda v: gx.radam(eps=v),
    "adamax.eps": lambda v: gx.adamax(eps=v),
    "rmsprop.eps": lambda v: gx.rmsprop(eps=v),
    "adagrad.eps": lambda v: gx.adagrad(eps=v),
    "adadelta.eps": lambda v: gx.adadelta(eps=v),
    "clip_by_global_norm.max_norm": lambda v: gx.clip_by_global_norm(v),
    "exponential_decay.decay_rate": lambda v: gx.exponential_decay(1.0, decay_rate=v),
}


@pytest.mark.parametrize("value", [1e-45, 1e-40, 1e-38, np.float64(1e-45)])
@pytest.mark.parametrize("case", list(POSITIVE_REQUIRED))
def test_positive_hyperparameter_that_is_zero_in_float32_is_refused(case, value):
    # Regression: checked in float64, eps=1e-45 passed, was 0 in float32 math (XLA flushes
    # subnormals too: 1e-40 and 1e-38 were 0 as well) and a zero gradient gave 0/0 = NaN.
    name = case.split(".")[1]
    with pytest.raises(ValueError, match=rf"{name} must be at least 1\.1754944e-38, float32's"):
        POSITIVE_REQUIRED[case](value)


@pytest.mark.parametrize("case", list(POSITIVE_REQUIRED))
def test_positive_hyperparameter_at_float32_tiny_is_accepted(case):
    POSITIVE_REQUIRED[case](F32_TINY)


def test_refusal_message_names_argument_value_and_limit():
    with pytest.raises(ValueError) as info:
        gx.adam(1e-3, eps=1e-45)
    msg = str(info.value)
    assert msg.startswith("scale_by_adam: eps must be at least 1.1754944e-38")
    assert "float32" in msg and msg.endswith("got 1e-45")


def test_smallest_accepted_eps_keeps_a_zero_gradient_finite():
    tx = gx.adam(1e-3, eps=F32_TINY)
    p = jnp.zeros(3)
    for update in (tx.update, jax.jit(tx.update)):
        u, _ = update(jnp.zeros(3), tx.init(p), p)
        assert np.all(np.isfinite(u)), u


def test_nonnegative_hyperparameters_still_accept_tiny_values_and_zero():
    # Only "> 0" options are concerned: a tiny value of a ">= 0" one is just ~0.
    gx.scale_by_adam(eps_root=1e-45)
    gx.sgd(1e-45)
    gx.add_decayed_weights(0.0)


# --------------------------------------------------------------------------------------
# Centered RMSprop: the variance nu - mu^2 is clamped at 0


def _g64():
    return jax.random.normal(jax.random.key(0), (64,), jnp.float32)


def test_centered_rmsprop_decay_zero_under_jit_is_finite_and_exact():
    # Regression: under jit XLA fused nu - mu**2 into a multiply-add; 31 of 64 elements
    # came out slightly negative, and their root NaN (eager stayed finite).
    g = _g64()
    tx = gx.rmsprop(learning_rate=0.5, decay=0.0, centered=True)
    p = jnp.zeros(64)
    u, _ = jax.jit(tx.update)(g, tx.init(p), p)
    assert np.all(np.isfinite(u))
    # decay 0: nu = g^2, mu = g, var = 0, so u = -lr g / (sqrt(0) + eps).
    want = -np.float32(0.5) * (np.asarray(g) / np.float32(1e-8))
    np.testing.assert_allclose(u, want, rtol=1e-6, atol=0)
    ue, _ = tx.update(g, tx.init(p), p)
    np.testing.assert_allclose(ue, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("eps_in_sqrt", [False, True])
def test_centered_rms_decay_zero_several_steps_under_jit(eps_in_sqrt):
    tx = gx.scale_by_rms(decay=0.0, eps=1e-6, centered=True, eps_in_sqrt=eps_in_sqrt)
    step = jax.jit(tx.update)
    s = tx.init(jnp.zeros(64))
    for k in range(3):
        g = _g64() * (k + 1)
        u, s = step(g, s)
        denom = np.sqrt(np.float32(1e-6)) if eps_in_sqrt else np.float32(1e-6)
        np.testing.assert_allclose(u, np.asarray(g) / denom, rtol=1e-6, atol=0)


def test_centered_rms_traced_decay_zero_stays_finite():
    # decay passed through jit (a traced 0): the general formula, clamped at 0, is used.
    tx = gx.scale_by_rms(decay=0.0, centered=True)
    g = _g64()
    u, _ = jax.jit(lambda t, g, s: t.update(g, s))(tx, g, tx.init(g))
    assert np.all(np.isfinite(u))


def test_centered_rms_constant_gradient_stays_finite_under_jit():
    # var -> 0 from above, with rounding noise of either sign: never a NaN.
    tx = gx.scale_by_rms(decay=0.5, centered=True)
    step = jax.jit(tx.update)
    g = _g64()
    s = tx.init(g)
    for _ in range(40):
        u, s = step(g, s)
        assert np.all(np.isfinite(u))


# --------------------------------------------------------------------------------------
# float16/bfloat16: chains pass float32 between members and round once at the end


def test_sgd_momentum_float16_does_not_overflow_between_members():
    # Regression: the velocity (76,000 at step 2) was cast to float16 (max 65,504) before
    # the learning rate scaled it: -inf. The update, -0.076 * 1000 = -76, is representable.
    tx = gx.sgd(1e-3, momentum=0.9)
    p = jnp.zeros(4, jnp.float16)
    g = jnp.full(4, 40000, jnp.float16)
    s = tx.init(p)
    v, p_ref = 0.0, np.float16(0)
    for _ in range(6):
        u, s = tx.update(g, s, p)
        assert u.dtype == jnp.float16
        p = gx.apply_updates(p, u)
        v = 0.9 * v + 40000.0
        p_ref = np.float16(np.float32(p_ref) + np.float32(np.float16(-1e-3 * v)))
        assert np.all(np.isfinite(np.asarray(p, np.float32)))
        np.testing.assert_allclose(np.asarray(u, np.float32), -1e-3 * v, rtol=1e-3)
    np.testing.assert_array_equal(np.asarray(p, np.float32), np.float32(p_ref))
    assert s.scale_by_momentum.velocity.dtype == jnp.float32  # state dtypes unchanged


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_chain_intermediates_are_float32_and_rounded_once(dtype):
    # 100 * 1000 overflows float16; rounded to bfloat16 after each member, 13 came out
    # as 12.9375 (13000 / 3 rounds to 4320, * 3 to 12928).
    u = jnp.array([100.0, 13.0, -7.0], dtype)
    tx = gx.chain(gx.scale(1000.0), gx.scale(1 / 3), gx.scale(3.0), gx.scale(1e-3))
    f32 = np.float32
    want = f32(f32(f32(np.asarray(u, f32) * f32(1000)) * f32(1 / 3)) * f32(3)) * f32(1e-3)
    for update in (tx.update, jax.jit(tx.update)):
        out, _ = update(u, tx.init(u))
        assert out.dtype == jnp.dtype(dtype)
        np.testing.assert_array_equal(np.asarray(out, f32), want.astype(dtype).astype(f32))


def test_nested_chains_and_wrappers_round_once_at_the_outermost_chain():
    u = {"a": jnp.array([100.0], jnp.float16), "b": jnp.array([2.0], jnp.float32)}
    inner = gx.chain(gx.scale(1000.0), gx.masked(gx.scale(0.5), {"a": True, "b": False}))
    tx = gx.chain(inner, gx.scale(1e-3))
    out, _ = jax.jit(tx.update)(u, tx.init(u))
    assert out["a"].dtype == jnp.float16 and out["b"].dtype == jnp.float32
    assert float(out["a"][0]) == 50.0 and float(out["b"][0]) == 2.0
    # a single member on its own keeps the old rule: out in the dtype it came in with
    out, _ = gx.scale(1000.0).update(u, None)
    assert out["a"].dtype == jnp.float16 and np.isinf(float(out["a"][0]))


def test_float16_adam_state_dtypes_unchanged():
    p = {"w": jnp.ones(3, jnp.float16), "h": jnp.ones(3, jnp.bfloat16)}
    for tx in (gx.adam(1e-3), gx.adam(1e-3, mu_dtype=jnp.bfloat16)):
        s = tx.init(p)
        before = jax.tree.map(lambda x: x.dtype, s)
        u, s = jax.jit(tx.update)(p, s, p)
        assert jax.tree.map(lambda x: x.dtype, s) == before
        assert u["w"].dtype == jnp.float16 and u["h"].dtype == jnp.bfloat16


def test_landing_member_keeps_the_parameters_precision_in_a_chain():
    # bfloat16 gradients on float32 params: the projection's -p must not be rounded to
    # bfloat16 at the chain's exit (it would miss 0).
    p = jnp.array([0.1, 0.3, 3.0], jnp.float32)
    g = jnp.array([1.0, 1.0, -1.0], jnp.bfloat16)
    # proximal_l1(1.0, 0.5) sends |p - 0.5 g| <= 0.5 to 0
    for last in (gx.keep_params_nonnegative(), gx.proximal_l1(1.0, 0.5)):
        tx = gx.chain(gx.sgd(0.5), last)
        u, _ = tx.update(g, tx.init(p), p)
        assert u.dtype == jnp.float32
        new = np.asarray(gx.apply_updates(p, u))
        assert new[0] == 0.0 and new[1] == 0.0

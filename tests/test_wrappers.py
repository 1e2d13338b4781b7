"""apply_if_finite, conditionally_transform, project and keep_params_nonnegative.

Expected values are worked out by hand (numbers chosen to be exact in binary), or come
from a second run of the same jitted step without the bad step (the NaN-skip test,
which must agree bit for bit).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

# --------------------------------------------------------------------------------------
# A small least-squares problem: the gradient depends on the params, so a step that
# moved the params (or the moments) by even one ulp would change every later step.

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 5)).astype(np.float32)
Y = (X @ np.array([1.0, -2.0, 0.5, 3.0, -1.0], np.float32) + 0.3).astype(np.float32)
P0 = {"w": jnp.zeros(5, jnp.float32), "b": jnp.zeros([], jnp.float32)}


def loss(p):
    return jnp.mean((jnp.asarray(X) @ p["w"] + p["b"] - jnp.asarray(Y)) ** 2)


def leaves_bitwise_equal(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    return all(
        np.asarray(x).dtype == np.asarray(y).dtype
        and np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
        for x, y in zip(la, lb)
    )


# --------------------------------------------------------------------------------------
# apply_if_finite


@jax.jit
def _adam_step(tx, p, s, poison):
    g = jax.grad(loss)(p)
    g = {"w": g["w"] * jnp.where(poison, jnp.nan, 1.0).astype(jnp.float32), "b": g["b"]}
    u, s = tx.update(g, s, p)
    return gx.apply_updates(p, u), s, u


def _skip_run(tx, nan_at, steps=100):
    """``steps`` Adam steps; with ``nan_at`` one extra call whose gradient has a NaN is
    inserted before step ``nan_at``. One compiled step serves every call of both runs."""

    def step(p, s, poison):
        return _adam_step(tx, p, s, poison)

    p, s = P0, tx.init(P0)
    for t in range(steps):
        if t == nan_at:
            p_before, s_before = p, s
            p, s, u = step(p, s, True)
            assert all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(u))
            assert leaves_bitwise_equal(p, p_before)
            assert leaves_bitwise_equal(s.inner_state, s_before.inner_state)
            assert int(s.total_errors) == 1 and not bool(s.last_finite)
        p, s, _ = step(p, s, False)
    return p, s


def test_one_nan_step_in_100_adam_steps_changes_only_the_error_counter():
    sched = gx.exponential_decay(0.1, decay_rate=0.9, transition_steps=10)
    tx = gx.apply_if_finite(gx.adam(sched), max_consecutive_errors=3)
    p_nan, s_nan = _skip_run(tx, nan_at=50)
    p_ref, s_ref = _skip_run(tx, nan_at=None)
    # Bitwise: params, Adam moments and counts, the learning-rate schedule's step.
    assert leaves_bitwise_equal(p_nan, p_ref)
    assert leaves_bitwise_equal(s_nan.inner_state, s_ref.inner_state)
    assert int(s_nan.inner_state.scale_by_adam.count) == 100
    assert int(s_nan.inner_state.scale_by_learning_rate.count) == 100
    assert bool(s_nan.last_finite) and int(s_nan.consecutive_errors) == 0
    assert int(s_nan.total_errors) == 1 and int(s_ref.total_errors) == 0
    assert float(loss(p_ref)) < 0.1 * float(loss(P0))  # the run does optimize


def _scalar_run(tx, grads, params=None):
    params = {"x": jnp.zeros(2, jnp.float32)} if params is None else params
    s = tx.init(params)
    step = jax.jit(lambda g, s: tx.update({"x": jnp.asarray(g, jnp.float32)}, s, params))
    out = []
    for g in grads:
        u, s = step(g, s)
        out.append((np.asarray(u["x"]), s))
    return out


def test_apply_if_finite_limit_then_applies():
    nan, inf = float("nan"), float("inf")
    inner = gx.scale_by_learning_rate(0.5)  # u -> -0.5 u, counts its steps
    tx = gx.apply_if_finite(inner, max_consecutive_errors=2)
    grads = [[1.0, 2.0], [nan, 1.0], [1.0, inf], [nan, nan], [2.0, -4.0], [-inf, 0.0]]
    out = _scalar_run(tx, grads)
    np.testing.assert_array_equal(out[0][0], [-0.5, -1.0])
    np.testing.assert_array_equal(out[1][0], [0.0, 0.0])  # skipped
    np.testing.assert_array_equal(out[2][0], [0.0, 0.0])  # skipped
    np.testing.assert_array_equal(out[3][0], [nan, nan])  # third in a row > 2: applied
    np.testing.assert_array_equal(out[4][0], [-1.0, 2.0])
    np.testing.assert_array_equal(out[5][0], [0.0, 0.0])  # skipped again
    assert [int(s.consecutive_errors) for _, s in out] == [0, 1, 2, 3, 0, 1]
    assert [int(s.total_errors) for _, s in out] == [0, 1, 2, 3, 3, 4]
    assert [bool(s.last_finite) for _, s in out] == [True, False, False, False, True, False]
    assert [int(s.inner_state.count) for _, s in out] == [1, 1, 1, 2, 3, 3]


def test_apply_if_finite_raise_eagerly():
    tx = gx.apply_if_finite(gx.scale(2.0), 1, on_limit="raise")
    params = {"x": jnp.zeros(2)}
    s = tx.init(params)
    bad = {"x": jnp.array([jnp.nan, 1.0])}
    u, s = tx.update(bad, s)  # first error: skipped, no raise
    assert np.all(np.asarray(u["x"]) == 0) and int(s.consecutive_errors) == 1
    with pytest.raises(FloatingPointError, match=r"2 consecutive .* max_consecutive_errors=1"):
        tx.update(bad, s)


def test_apply_if_finite_raise_under_jit():
    tx = gx.apply_if_finite(gx.adam(0.1), 1, on_limit="raise")
    params = {"x": jnp.zeros(2)}
    step = jax.jit(tx.update)
    s = tx.init(params)
    bad = {"x": jnp.array([1.0, jnp.inf])}
    u, s1 = step({"x": jnp.ones(2)}, s)
    u, s2 = step(bad, s1)  # skipped, inner state kept
    assert leaves_bitwise_equal(s2.inner_state, s1.inner_state)
    with pytest.raises(jax.errors.JaxRuntimeError, match="FloatingPointError: apply_if_finite"):
        jax.block_until_ready(step(bad, s2))
    # "raise" never applies: a finite step after the error is applied normally.
    u, s3 = step({"x": jnp.ones(2)}, s2)
    assert int(s3.inner_state.scale_by_adam.count) == 2 and int(s3.consecutive_errors) == 0


def test_apply_if_finite_validation():
    with pytest.raises(ValueError, match=r"max_consecutive_errors must be a finite number in \[0"):
        gx.apply_if_finite(gx.adam(), -1)
    with pytest.raises(ValueError, match="max_consecutive_errors must be an integer >= 0"):
        gx.apply_if_finite(gx.adam(), 1.5)
    # Counted in int32: 2**31 was accepted here and overflowed in the first update.
    with pytest.raises(ValueError, match=r"in \[0, 2147483647\], got 2147483648"):
        gx.apply_if_finite(gx.adam(), 2**31)
    never = gx.apply_if_finite(gx.sgd(0.1), 2**31 - 1)
    u, _ = never.update({"x": jnp.ones(1)}, never.init({"x": jnp.ones(1)}))
    np.testing.assert_array_equal(u["x"], np.float32([-0.1]))
    with pytest.raises(ValueError, match="on_limit must be 'apply' or 'raise'"):
        gx.apply_if_finite(gx.adam(), 2, on_limit="ignore")
    with pytest.raises(TypeError, match="inner must be a gradient transformation"):
        gx.apply_if_finite(lambda g: g, 2)


# --------------------------------------------------------------------------------------
# With and without jit (chex.variants): the skip and the branch are lax.cond/select under
# jit and run op by op without it; both must give the hand-worked numbers, and one compiled
# step must serve every step (the state keeps its structure and dtypes).


class WithAndWithoutJitTest(chex.TestCase):
    def _run(self, tx, grads):
        params = {"x": jnp.zeros(2, jnp.float32)}

        def update(g, s):
            return tx.update({"x": g}, s, params)

        if self.variant.type == chex.ChexVariantType.WITH_JIT:
            chex.clear_trace_counter()  # counts are kept per call site, across tests
            update = chex.assert_max_traces(update, n=1)  # a retrace would raise
        update = self.variant(update)
        s, us, states = tx.init(params), [], []
        for g in grads:
            u, s = update(jnp.asarray(g, jnp.float32), s)
            us.append(u["x"])
            states.append(s)
        return us, states

    @chex.variants(with_jit=True, without_jit=True)
    def test_apply_if_finite(self):
        nan, inf = float("nan"), float("inf")
        tx = gx.apply_if_finite(gx.scale_by_learning_rate(0.5), max_consecutive_errors=1)
        us, states = self._run(tx, [[1.0, 2.0], [nan, 1.0], [1.0, inf], [2.0, -4.0]])
        # Step 1 skipped; step 2 is the second error in a row > 1: applied, inf and all.
        expected = np.float32([[-0.5, -1.0], [0.0, 0.0], [-0.5, -inf], [-1.0, 2.0]])
        chex.assert_trees_all_equal(us, list(expected), strict=True)
        assert [int(s.total_errors) for s in states] == [0, 1, 2, 2]
        assert [int(s.inner_state.count) for s in states] == [1, 1, 2, 3]

    @chex.variants(with_jit=True, without_jit=True)
    def test_conditionally_transform(self):
        inner = gx.scale_by_learning_rate(lambda t: (1 + t).astype(jnp.float32), flip_sign=False)
        tx = gx.conditionally_transform(inner, lambda t: t % 2 == 0, otherwise="zero")
        us, states = self._run(tx, [[g, -g] for g in (1.0, 2.0, 3.0, 4.0)])
        expected = np.float32([[1.0, -1.0], [0.0, 0.0], [6.0, -6.0], [0.0, 0.0]])
        chex.assert_trees_all_equal(us, list(expected), strict=True)
        chex.assert_trees_all_equal(
            [s.inner_state.count for s in states], [np.int32(c) for c in (1, 1, 2, 2)]
        )


# --------------------------------------------------------------------------------------
# conditionally_transform


@pytest.mark.parametrize(
    "otherwise, expected",
    [("identity", [1.0, 2.0, 6.0, 4.0, 15.0, 6.0]), ("zero", [1.0, 0.0, 6.0, 0.0, 15.0, 0.0])],
)
def test_conditionally_transform_by_hand(otherwise, expected):
    # inner: u -> (1 + t) u, t = inner's own count; runs at wrapper steps 0, 2, 4, where it
    # sees t = 0, 1, 2 and grads 1, 3, 5: 1*1, 2*3, 3*5. Other steps: g or 0.
    inner = gx.scale_by_learning_rate(lambda t: (1 + t).astype(jnp.float32), flip_sign=False)
    tx = gx.conditionally_transform(inner, lambda t: t % 2 == 0, otherwise=otherwise)
    out = _scalar_run(tx, [[g, -g] for g in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)])
    np.testing.assert_array_equal([u[0] for u, _ in out], expected)
    np.testing.assert_array_equal([u[1] for u, _ in out], [-e for e in expected])
    assert [int(s.count) for _, s in out] == [1, 2, 3, 4, 5, 6]
    assert [int(s.inner_state.count) for _, s in out] == [1, 1, 2, 2, 3, 3]


def test_conditionally_transform_keeps_inner_state_when_off():
    tx = gx.conditionally_transform(gx.adam(0.1), lambda t: t >= 2)
    out = _scalar_run(tx, [[1.0, 2.0], [3.0, 4.0], [1.0, 1.0]])
    s0 = tx.init({"x": jnp.zeros(2)})
    assert leaves_bitwise_equal(out[1][1].inner_state, s0.inner_state)
    np.testing.assert_array_equal(out[1][0], [3.0, 4.0])  # passed through
    # Step 2 is Adam's first step: -lr * sign(g) up to eps.
    np.testing.assert_allclose(out[2][0], [-0.1, -0.1], rtol=1e-6)


def test_conditionally_transform_validation():
    with pytest.raises(TypeError, match="should_transform_fn must be a callable"):
        gx.conditionally_transform(gx.adam(), True)
    with pytest.raises(ValueError, match="otherwise must be 'identity' or 'zero'"):
        gx.conditionally_transform(gx.adam(), lambda t: True, otherwise="skip")
    tx = gx.conditionally_transform(gx.identity(), lambda t: jnp.ones(2, bool))
    with pytest.raises(ValueError, match="must return a scalar bool"):
        tx.update({"x": jnp.ones(2)}, tx.init({"x": jnp.ones(2)}))


# --------------------------------------------------------------------------------------
# project / keep_params_nonnegative


def test_keep_params_nonnegative_by_hand():
    tx = gx.keep_params_nonnegative()
    p = {"a": jnp.array([0.5, 1.0, 0.0, 2.0]), "frozen": jnp.array([3.0]), "name": "layer"}
    u = {"a": jnp.array([-1.0, -0.25, 0.5, -2.0]), "frozen": None, "name": "layer"}
    out, _ = tx.update(u, tx.init(p), p)  # eager: a string leaf cannot be a jit argument
    np.testing.assert_array_equal(out["a"], [-0.5, -0.25, 0.5, -2.0])
    assert out["frozen"] is None and out["name"] == "layer"
    new = gx.apply_updates(p, out)
    np.testing.assert_array_equal(new["a"], [0.0, 0.75, 0.5, 0.0])


def test_keep_params_nonnegative_in_a_descent():
    # Minimum at (1, -2): the second coordinate is held at exactly 0.
    def f(p):
        return jnp.sum((p["x"] - jnp.array([1.0, -2.0])) ** 2)

    tx = gx.chain(gx.sgd(0.3), gx.keep_params_nonnegative())
    p = {"x": jnp.array([3.0, 3.0])}
    s = tx.init(p)
    step = jax.jit(lambda p, s: tx.update(jax.grad(f)(p), s, p))
    for _ in range(30):
        u, s = step(p, s)
        p = gx.apply_updates(p, u)
        assert np.all(np.asarray(p["x"]) >= 0)
    np.testing.assert_allclose(p["x"], [1.0, 0.0], atol=1e-6)
    assert float(p["x"][1]) == 0.0


def test_project_clip_by_hand():
    tx = gx.project(lambda t: jax.tree.map(lambda x: jnp.clip(x, 0.0, 1.0), t))
    p = {"a": jnp.array([0.5, 0.9, 0.25]), "b": jnp.array(0.125, jnp.bfloat16)}
    u = {"a": jnp.array([0.25, 0.5, -0.5]), "b": jnp.array(2.0, jnp.bfloat16)}
    out, _ = jax.jit(tx.update)(u, tx.init(p), p)
    np.testing.assert_array_equal(out["a"], [0.25, np.float32(1) - np.float32(0.9), -0.25])
    assert out["b"].dtype == jnp.bfloat16 and float(out["b"]) == 0.875
    new = gx.apply_updates(p, out)
    np.testing.assert_array_equal(new["a"], [0.75, 1.0, 0.0])
    assert float(new["b"]) == 1.0


def test_projections_land_exactly_with_narrower_updates():
    # bf16 updates on float32 params: -p rounded to bf16 left p at -2.8e-4, not 0.
    p = jnp.array([0.1, 0.3, 3.0], jnp.float32)
    u = jnp.array([-0.1, -0.3004, 0.0], jnp.bfloat16)
    clip = gx.project(lambda t: jax.tree.map(lambda x: jnp.maximum(x, 0.0), t))
    for tx, want in (
        (gx.keep_params_nonnegative(), [0.0, 0.0, 3.0]),
        (clip, [0.0, 0.0, 3.0]),
        (gx.proximal_l1(1.5, 1.0), [0.0, 0.0, 1.5]),
    ):
        out, _ = tx.update(u, tx.init(p), p)
        assert out.dtype == jnp.float32  # the wider of update and parameter
        np.testing.assert_array_equal(gx.apply_updates(p, out), want)


def test_projection_errors():
    tx = gx.keep_params_nonnegative()
    p = {"a": jnp.ones(2)}
    with pytest.raises(ValueError, match="keep_params_nonnegative needs the current parameters"):
        tx.update(p, tx.init(p))
    with pytest.raises(TypeError, match="complex parameters have no sign"):
        c = {"a": jnp.ones(2, jnp.complex64)}
        tx.update(c, tx.init(c), c)
    with pytest.raises(TypeError, match="project: fn must be a callable"):
        gx.project(3)
    bad = gx.project(lambda t: jax.tree.map(lambda x: x[:1], t))
    with pytest.raises(ValueError, match=r"shape of the leaf at \['a'\] from \(2,\) to"):
        bad.update(p, bad.init(p), p)
    bad = gx.project(lambda t: {"b": t["a"]})
    with pytest.raises(ValueError, match=r"tree structures differ \(params vs project's fn output"):
        bad.update(p, bad.init(p), p)


def test_wrappers_around_a_transform_that_widens_updates():
    # keep_params_nonnegative emits float32 updates for bfloat16 gradients on float32
    # params; the skip branch's zeros were bfloat16 and lax.cond refused the pair.
    p = {"w": jnp.array([0.1, 0.3, 3.0], jnp.float32)}
    g = {"w": jnp.array([1.0, 1.0, -1.0], jnp.bfloat16)}
    inner = gx.chain(gx.sgd(0.2), gx.keep_params_nonnegative())
    for tx in (gx.accumulate(inner, 2), gx.apply_if_finite(inner, 2)):
        s = tx.init(p)
        u1, s = tx.update(g, s, p)
        u2, s = tx.update(g, s, p)
        assert u1["w"].dtype == u2["w"].dtype == jnp.float32
    # The chain passes float32 between members (README, Precision): sgd's step reaches
    # keep_params_nonnegative unrounded, 0.2 in float32 (it was bfloat16's 0.2 = 0.2002);
    # and the landing member keeps the float32 parameters' precision at the chain's exit.
    step = np.float32(0.2)
    want = np.maximum(np.float32([0.1, 0.3, 3.0]) - step * np.float32([1, 1, -1]), 0)
    np.testing.assert_array_equal(gx.apply_updates(p, u2)["w"], want)

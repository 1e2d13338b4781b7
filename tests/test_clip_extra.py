"""adaptive_grad_clip and zero_nans (against Optax) and skip_large_updates (the atomic skip
shared with apply_if_finite)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

RNG = np.random.default_rng(7)


def _tree(shapes, scale=1.0, dtype=np.float32):
    return {k: jnp.asarray(scale * RNG.normal(size=s).astype(dtype)) for k, s in shapes.items()}


# One leaf per default unit rule: scalar, vector, (1, n) (a vector), dense, multi-head,
# conv 2d, conv 3d.
SHAPES = {
    "s": (),
    "v": (5,),
    "row": (1, 6),
    "dense": (4, 3),
    "heads": (4, 2, 3),
    "conv": (3, 3, 2, 4),
    "conv3d": (2, 2, 2, 3, 4),
}


@pytest.mark.parametrize("clipping", [0.01, 0.3, 10.0])
def test_adaptive_grad_clip_equals_optax(clipping):
    params = _tree(SHAPES)
    params["zero"] = jnp.zeros((3, 2))  # clipped relative to eps
    grads = _tree({**SHAPES, "zero": (3, 2)}, scale=0.5)
    ours = gx.adaptive_grad_clip(clipping)
    theirs = optax.adaptive_grad_clip(clipping)
    u, _ = jax.jit(ours.update)(grads, ours.init(params), params)
    v, _ = jax.jit(theirs.update)(grads, theirs.init(params), params)
    clipped = 0
    for k in grads:
        # The same float32 operations in the same order: bit for bit.
        np.testing.assert_array_equal(np.asarray(u[k]), np.asarray(v[k]), err_msg=k)
        clipped += int(np.any(np.asarray(u[k]) != np.asarray(grads[k])))
    if clipping == 0.01:
        assert clipped == len(grads)  # every leaf had a unit clipped
    if clipping == 10.0:
        assert clipped == 1  # only the zero-initialized leaf (bound 10 * eps)


def test_adaptive_grad_clip_units_by_hand():
    # A dense kernel (in=2, out=3): one norm per output column.
    p = {"w": jnp.array([[3.0, 0.0, 1.0], [4.0, 1.0, 0.0]])}  # column norms 5, 1, 1
    g = {"w": jnp.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.05]])}  # column norms 1, 2, 0.05
    tx = gx.adaptive_grad_clip(0.1)
    u, _ = tx.update(g, tx.init(p), p)
    # col 0: 1 > 0.5 -> scaled to norm 0.5; col 1: 2 > 0.1 -> 0.1; col 2: 0.05 < 0.1 kept.
    np.testing.assert_allclose(np.asarray(u["w"]), [[0.5, 0.0, 0.0], [0.0, 0.1, 0.05]], rtol=1e-6)
    # axis=1 makes rows the units: row norms of p sqrt(10), sqrt(17); row 0 of g has
    # norm 1 > 0.1 sqrt(10): scaled to that.
    u1, _ = gx.adaptive_grad_clip(0.1, axis=1).update(g, tx.init(p), p)
    np.testing.assert_allclose(np.asarray(u1["w"][0]), [np.sqrt(10) * 0.1, 0.0, 0.0], rtol=1e-6)
    v, _ = optax.adaptive_grad_clip(0.1, axis=1).update(g, None, p)
    np.testing.assert_array_equal(np.asarray(u1["w"]), np.asarray(v["w"]))


def test_adaptive_grad_clip_dtypes_none_leaves_and_errors():
    p = {"w": jnp.ones((2, 2), jnp.bfloat16), "n": None, "name": "x"}
    g = {"w": jnp.full((2, 2), 5.0, jnp.bfloat16), "n": None, "name": "x"}
    tx = gx.adaptive_grad_clip(0.5)
    u, _ = tx.update(g, tx.init(p), p)
    assert u["w"].dtype == jnp.bfloat16 and u["n"] is None and u["name"] == "x"
    # column norm of p: sqrt(2); bound 0.5 sqrt(2); g column norm 5 sqrt(2) -> factor 0.1
    np.testing.assert_allclose(np.asarray(u["w"], np.float32), 0.5, rtol=1e-2)
    with pytest.raises(ValueError, match="adaptive_grad_clip needs the current parameters"):
        tx.update(g, tx.init(p))
    with pytest.raises(
        ValueError, match=r"no default unit for a parameter of shape \(1, 2, 1, 2, 1, 2\)"
    ):
        q = jnp.ones((1, 2, 1, 2, 1, 2))
        tx.update(q, tx.init(q), q)
    with pytest.raises(
        ValueError, match=r"adaptive_grad_clip: clipping must be a finite number in \(0"
    ):
        gx.adaptive_grad_clip(0.0)
    with pytest.raises(TypeError, match="adaptive_grad_clip: axis must be None, an int or a tuple"):
        gx.adaptive_grad_clip(0.1, axis=[0])
    with pytest.raises(TypeError, match="positional"):
        gx.adaptive_grad_clip(0.1, 1e-3, 0)  # axis is keyword-only


def test_zero_nans_equals_optax():
    grads = {
        "a": jnp.array([1.0, jnp.nan, jnp.inf, -jnp.inf]),
        "b": jnp.array([[jnp.nan, 2.0]]),
        "c": jnp.array(3.0),
    }
    ours, theirs = gx.zero_nans(), optax.zero_nans()
    u, s = ours.update(grads, ours.init(grads))
    v, t = theirs.update(grads, theirs.init(grads))
    for k in grads:
        np.testing.assert_array_equal(np.asarray(u[k]), np.asarray(v[k]))
        assert bool(s.found_nan[k]) == bool(t.found_nan[k])
    # Infs pass (Optax's choice): only NaN is replaced.
    assert np.isinf(np.asarray(u["a"][2:])).all()
    assert [bool(s.found_nan[k]) for k in "abc"] == [True, True, False]


def test_zero_nans_complex_none_leaves_and_structure():
    p = {"z": jnp.zeros(2, jnp.complex64), "n": None, "label": "x"}
    tx = gx.zero_nans()
    s0 = tx.init(p)
    assert s0.found_nan["n"] is None and s0.found_nan["label"] is None
    g = {"z": jnp.array([1 + 1j, complex(1.0, np.nan)], jnp.complex64), "n": None, "label": "x"}
    u, s1 = tx.update(g, s0)
    np.testing.assert_array_equal(np.asarray(u["z"]), [1 + 1j, 0])
    assert bool(s1.found_nan["z"]) and u["label"] == "x"
    assert jax.tree_util.tree_structure(s1) == jax.tree_util.tree_structure(s0)


# --------------------------------------------------------------------------------------
# skip_large_updates


def test_skip_large_updates_leaves_inner_state_bitwise_untouched():
    p = {"w": jnp.array([1.0, -2.0, 0.5]), "n": None}
    tx = gx.skip_large_updates(gx.adam(0.1), max_squared_norm=4.0)
    ref = gx.adam(0.1)
    s, r = tx.init(p), ref.init(p)
    small = {"w": jnp.array([0.5, -1.0, 1.0]), "n": None}  # 2.25 < 4
    big = {"w": jnp.array([3.0, 0.0, 0.0]), "n": None}  # 9 >= 4
    nan = {"w": jnp.array([jnp.nan, 0.0, 0.0]), "n": None}  # NaN: skipped as well
    step = jax.jit(tx.update)
    u, s = step(small, s, p)
    _, r = ref.update(small, r, p)
    before = s.inner_state
    for g in (big, nan):
        u, s = step(g, s, p)
        assert np.all(np.asarray(u["w"]) == 0) and u["n"] is None
        for a, b in zip(jax.tree.leaves(s.inner_state), jax.tree.leaves(before)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(s.total_skipped) == 2 and np.isnan(float(s.norm_squared))
    u, s = step(small, s, p)
    u_ref, r = ref.update(small, r, p)
    np.testing.assert_array_equal(np.asarray(u["w"]), np.asarray(u_ref["w"]))
    assert int(s.inner_state.scale_by_adam.count) == 2
    assert float(s.norm_squared) == pytest.approx(2.25)


def test_skip_large_updates_threshold_is_strict_like_optax():
    g = {"w": jnp.array([1.0, 1.0])}  # squared norm exactly 2
    tx = gx.skip_large_updates(gx.sgd(1.0), 2.0)
    u, s = tx.update(g, tx.init(g), g)
    skip, info = optax.skip_large_updates(g, 0, None, 2.0)
    assert bool(skip) and int(s.total_skipped) == 1
    assert float(info["norm_squared"]) == float(s.norm_squared)
    u, s = gx.skip_large_updates(gx.sgd(1.0), 2.0001).update(g, tx.init(g), g)
    assert int(s.total_skipped) == 0 and float(u["w"][0]) == -1.0


def test_skip_large_updates_errors_and_float64_norm():
    with pytest.raises(ValueError, match=r"skip_large_updates: max_squared_norm must be"):
        gx.skip_large_updates(gx.sgd(0.1), 0.0)
    with pytest.raises(
        TypeError, match="skip_large_updates: inner must be a gradient transformation"
    ):
        gx.skip_large_updates(None, 1.0)
    with jax.enable_x64(True):
        p = {"w": jnp.ones(2, jnp.float64)}
        tx = gx.skip_large_updates(gx.sgd(0.1), 3e38)
        s = tx.init(p)
        assert s.norm_squared.dtype == jnp.float64
        _, s = tx.update({"w": jnp.full(2, 1e19, jnp.float64)}, s, p)  # 2e38: float32 would round
        assert int(s.total_skipped) == 0 and float(s.norm_squared) == 2e38


def test_apply_if_finite_and_skip_large_updates_share_the_skip():
    # Both go through conditional.step_or_skip: the same skipped step, bit for bit.
    p = {"w": jnp.array([1.0, 2.0])}
    g = {"w": jnp.array([jnp.inf, 1.0])}
    a = gx.apply_if_finite(gx.adam(0.1), 3)
    b = gx.skip_large_updates(gx.adam(0.1), 1e30)
    ua, sa = a.update(g, a.init(p), p)
    ub, sb = b.update(g, b.init(p), p)
    np.testing.assert_array_equal(np.asarray(ua["w"]), np.asarray(ub["w"]))
    for x, y in zip(jax.tree.leaves(sa.inner_state), jax.tree.leaves(sb.inner_state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

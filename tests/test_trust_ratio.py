"""scale_by_trust_ratio, lamb and lars: zero norms, masks, overflow, Optax and NumPy.

The registry (tests/helpers.py) runs the generic properties and the first steps against
``references.ref_trust_ratio`` / ``ref_lamb`` / ``ref_lars``; the recorded
pytorch_optimizer trajectories are in tests/reference/. Here: what those do not reach.
Float64 comparisons use rtol 1e-12 (the same formula, a few roundings apart).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import max_dist, run
from references import ref_adam, ref_lars, ref_trust_ratio

import gradxform as gx
from gradxform import problems

RTOL = 1e-12


def _tree64(rng, shapes):
    return {k: jnp.asarray(rng.normal(size=s), jnp.float64) for k, s in shapes.items()}


def _trajectory(tx, params, steps=20):
    """``steps`` updates on a smooth nonconvex gradient field; the params after each."""
    state, out = tx.init(params), []
    step = jax.jit(tx.update)
    for t in range(steps):
        grads = jax.tree.map(lambda x, t=t: jnp.sin(3 * x + t) + 0.5 * x, params)
        updates, state = step(grads, state, params)
        params = jax.tree.map(jnp.add, params, updates)
        out.append(params)
    return out


def _assert_trajectories_close(a, b, rtol=RTOL):
    for pa, pb in zip(a, b):
        for k in pa:
            np.testing.assert_allclose(np.asarray(pa[k]), np.asarray(pb[k]), rtol=rtol, atol=0)


# --------------------------------------------------------------------------------------
# The ratio itself


def test_zero_param_or_zero_update_keeps_the_plain_update():
    # ||p|| = 0 (a zero-initialized layer) or ||u|| = 0: ratio 1, as Optax and
    # pytorch_optimizer; otherwise ||p|| / ||u||.
    tx = gx.scale_by_trust_ratio()
    params = {"zero_p": jnp.zeros(2), "zero_u": jnp.array([1.0, 2.0]), "w": jnp.array([3.0, 4.0])}
    grads = {"zero_p": jnp.array([0.5, -1.0]), "zero_u": jnp.zeros(2), "w": jnp.array([0.0, 2.0])}
    updates, state = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(updates["zero_p"], [0.5, -1.0])
    np.testing.assert_array_equal(updates["zero_u"], [0.0, 0.0])
    np.testing.assert_allclose(updates["w"], [0.0, 5.0], rtol=1e-7)
    assert state == gx.EmptyState()
    # LARS's form: the decay enters the denominator, so ||g|| = 0 with wd > 0 is tc / wd.
    tx = gx.scale_by_trust_ratio(trust_coefficient=0.1, weight_decay=0.5)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["zero_u"], 0.1 / 0.5 * 0.5 * np.array([1.0, 2.0]))
    np.testing.assert_array_equal(updates["zero_p"], [0.5, -1.0])  # ||p|| = 0: ratio 1


@pytest.mark.parametrize("scale", [pytest.param(1e30, id="huge"), pytest.param(1e-30, id="tiny")])
def test_norms_neither_overflow_nor_underflow_in_float32(scale):
    # sum(x**2) is inf for ||x|| = 5e30 and 0 for 5e-30 in float32; the scaled norm is not.
    p = jnp.array([3.0, 4.0], jnp.float32) * jnp.float32(scale)
    g = jnp.array([0.0, 2.0], jnp.float32) * jnp.float32(scale)
    tx = gx.scale_by_trust_ratio()
    u, _ = tx.update({"w": g}, tx.init({"w": p}), {"w": p})
    assert u["w"].dtype == jnp.float32
    np.testing.assert_allclose(u["w"] / jnp.float32(scale), [0.0, 5.0], rtol=1e-6)


def test_half_precision_leaves_compute_in_float32():
    p = {"w": jnp.full((64,), 300.0, jnp.bfloat16)}  # ||p||^2 = 5.8e6: fine; bf16 sum rounds
    g = {"w": jnp.full((64,), 2.0, jnp.bfloat16)}
    tx = gx.scale_by_trust_ratio()
    u, _ = tx.update(g, tx.init(p), p)
    assert u["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(u["w"], np.float32), 300.0)  # ||p|| / ||g|| * g


def test_min_max_norm_coefficient_and_eps_against_numpy():
    # max_param_norm = 10 is pytorch_optimizer's Lamb clip; ||p|| = 26 here, so it binds.
    rng = np.random.default_rng(0)
    p = np.array([[10.0, -24.0], [0.0, 0.0]])
    gs = [rng.normal(size=(2, 2)) * 1e-3 for _ in range(2)] + [np.zeros((2, 2))]
    kw = dict(trust_coefficient=0.5, eps=1e-4, max_param_norm=10.0)
    with jax.enable_x64(True):
        for min_norm in (0.0, 0.01):
            tx = gx.scale_by_trust_ratio(min_norm, **kw)
            expected = ref_trust_ratio(gs, p, min_norm=min_norm, **kw)
            for g, exp in zip(gs, expected):
                u, _ = tx.update(jnp.asarray(g), tx.init(jnp.asarray(p)), jnp.asarray(p))
                np.testing.assert_allclose(np.asarray(u), exp["u"], rtol=RTOL, atol=0)


# --------------------------------------------------------------------------------------
# Selecting the layers: mask, gx.masked, and the decay mask


def test_mask_by_selector_leaves_the_others_alone():
    params = {
        "dense": {"kernel": jnp.array([[3.0, 4.0]]), "bias": jnp.array([1.0, 1.0])},
        "norm": {"scale": jnp.array([2.0])},
    }
    grads = {
        "dense": {"kernel": jnp.array([[0.0, 0.5]]), "bias": jnp.array([0.5, 0.5])},
        "norm": {"scale": jnp.array([0.1])},
    }
    for mask in (
        "**/kernel",
        gx.match("*/kernel"),
        gx.where(lambda path, p: p.ndim > 1),
        {"dense": {"kernel": True, "bias": False}, "norm": False},
    ):
        tx = gx.scale_by_trust_ratio(mask=mask)
        u, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(u["dense"]["kernel"], [[0.0, 5.0]], rtol=1e-7)
        np.testing.assert_array_equal(u["dense"]["bias"], grads["dense"]["bias"])
        np.testing.assert_array_equal(u["norm"]["scale"], grads["norm"]["scale"])
        # The same as running the unmasked ratio inside gx.masked.
        wrapped = gx.masked(gx.scale_by_trust_ratio(), mask)
        w, _ = wrapped.update(grads, wrapped.init(params), params)
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(w)):
            np.testing.assert_array_equal(a, b)


def test_lars_decay_and_ratio_masks_are_independent():
    # Leaf "both": r (g + wd p) with r = tc ||p|| / (||g|| + wd ||p||); "decay_only":
    # g + wd p; "ratio_only": tc ||p|| / ||g|| g; "neither": g.
    rng = np.random.default_rng(1)
    keys = ("both", "decay_only", "ratio_only", "neither")
    p = {k: rng.normal(size=(3,)) for k in keys}
    g = {k: rng.normal(size=(3,)) for k in keys}
    tc, wd = 0.2, 0.3
    tx = gx.scale_by_trust_ratio(
        trust_coefficient=tc,
        weight_decay=wd,
        weight_decay_mask=gx.match("both", "decay_only"),
        mask=gx.match("both", "ratio_only"),
    )
    expected = {
        "both": ref_trust_ratio([g["both"]], p["both"], trust_coefficient=tc, wd=wd)[0]["u"],
        "decay_only": g["decay_only"] + wd * p["decay_only"],
        "ratio_only": ref_trust_ratio([g["ratio_only"]], p["ratio_only"], tc)[0]["u"],
        "neither": g["neither"],
    }
    with jax.enable_x64(True):
        jp = {k: jnp.asarray(v) for k, v in p.items()}
        u, _ = tx.update({k: jnp.asarray(v) for k, v in g.items()}, tx.init(jp), jp)
    for k in keys:
        np.testing.assert_allclose(np.asarray(u[k]), expected[k], rtol=RTOL, atol=0, err_msg=k)


def test_lamb_trust_ratio_mask_gives_adam_steps_to_the_others():
    params = {"w": jnp.array([[3.0, 4.0]]), "b": jnp.array([0.5])}
    grads = {"w": jnp.array([[1.0, 1.0]]), "b": jnp.array([2.0])}
    tx = gx.lamb(0.1, trust_ratio_mask=gx.where(lambda path, p: p.ndim > 1))
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(jnp.linalg.norm(u["w"]), 0.1 * 5.0, rtol=1e-6)  # lr ||p||
    np.testing.assert_allclose(u["b"], [-0.1], rtol=1e-6)  # Adam's first step: -lr sign(g)


# --------------------------------------------------------------------------------------
# LAMB and LARS against Optax (optax is a test dependency: the .venv has it)


def test_lamb_equals_optax_lamb():
    optax = pytest.importorskip("optax")
    rng = np.random.default_rng(2)
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        params = _tree64(rng, {"w": (3, 4), "b": (4,)})
        for kw in (
            dict(learning_rate=0.05),
            dict(learning_rate=0.05, b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-8, weight_decay=0.1),
        ):
            ours_kw = dict(kw)
            mask = {"w": True, "b": False}
            if "weight_decay" in kw:
                ours_kw["weight_decay_mask"] = mask
            ours = _trajectory(gx.lamb(**ours_kw), params)
            theirs = _trajectory(
                optax.lamb(**kw, mask=mask if "weight_decay" in kw else None), params
            )
            _assert_trajectories_close(ours, theirs)


def test_lars_equals_optax_lars_without_decay():
    optax = pytest.importorskip("optax")
    rng = np.random.default_rng(3)
    mask = {"w": True, "b": False}
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        params = _tree64(rng, {"w": (3, 4), "b": (4,)})
        for kw, ours_extra, theirs_extra in (
            (dict(learning_rate=0.5, trust_coefficient=0.02), {}, {}),
            (
                dict(learning_rate=0.5, trust_coefficient=0.02, momentum=0.8, nesterov=True),
                dict(trust_ratio_mask=mask),
                dict(trust_ratio_mask=mask),
            ),
        ):
            ours = _trajectory(gx.lars(**kw, **ours_extra), params)
            theirs = _trajectory(optax.lars(**kw, **theirs_extra), params)
            # Optax applies lr before the momentum: lr (mu v + u) vs mu (lr v) + lr u.
            _assert_trajectories_close(ours, theirs, rtol=1e-11)


def test_lars_decay_is_the_papers_not_optaxs():
    # With wd > 0 Optax divides by ||g + wd p||; gradxform (You et al., 2017; and
    # pytorch_optimizer) by ||g|| + wd ||p||. One step from the same params, no momentum.
    optax = pytest.importorskip("optax")
    rng = np.random.default_rng(4)
    p, g = rng.normal(size=(5,)), rng.normal(size=(5,))
    tc, wd, lr = 0.1, 0.5, 1.0
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        jp, jg = jnp.asarray(p), jnp.asarray(g)
        tx = gx.lars(lr, weight_decay=wd, trust_coefficient=tc, momentum=None)
        ours = np.asarray(tx.update(jg, tx.init(jp), jp)[0])
        opt = optax.lars(lr, weight_decay=wd, trust_coefficient=tc, momentum=0.0)
        theirs = np.asarray(opt.update(jg, opt.init(jp), jp)[0])
    paper = -lr * tc * np.linalg.norm(p) / (np.linalg.norm(g) + wd * np.linalg.norm(p))
    np.testing.assert_allclose(ours, paper * (g + wd * p), rtol=RTOL)
    optax_form = -lr * tc * np.linalg.norm(p) / np.linalg.norm(g + wd * p)
    np.testing.assert_allclose(theirs, optax_form * (g + wd * p), rtol=1e-12)
    assert not np.allclose(ours, theirs, rtol=1e-3)


def test_lars_trajectory_against_numpy():
    # Momentum, Nesterov and decay over 5 steps, params held fixed (one leaf).
    rng = np.random.default_rng(5)
    p = rng.normal(size=(2, 3))
    gs = [rng.normal(size=(2, 3)) for _ in range(5)]
    ref = partial(ref_lars, params=p, mu=0.8, tc=0.05, wd=0.1, nesterov=True)
    tx = gx.lars(0.5, weight_decay=0.1, momentum=0.8, trust_coefficient=0.05, nesterov=True)
    with jax.enable_x64(True):
        state = tx.init(jnp.asarray(p))
        for g, exp in zip(gs, ref(gs)):
            u, state = tx.update(jnp.asarray(g), state, jnp.asarray(p))
            np.testing.assert_allclose(np.asarray(u), -0.5 * exp["u"], rtol=RTOL, atol=0)


def test_lamb_without_bias_correction_uses_raw_moments():
    # pytorch_optimizer's Lamb (adam_debias=True) has no bias correction: the direction
    # is m / (sqrt(v) + eps) before the ratio; with max_param_norm, ||p|| is clipped.
    rng = np.random.default_rng(6)
    p = rng.normal(size=(4,)) * 10.0  # ||p|| ~ 20 > 10
    gs = [rng.normal(size=(4,)) for _ in range(3)]
    adam = ref_adam(gs, 0.9, 0.999, 1e-6, bias_correction=False)
    tx = gx.lamb(0.1, bias_correction=False, trust_ratio_eps=1e-6, max_param_norm=10.0)
    with jax.enable_x64(True):
        state = tx.init(jnp.asarray(p))
        for g, a in zip(gs, adam):
            u, state = tx.update(jnp.asarray(g), state, jnp.asarray(p))
            r = min(np.linalg.norm(p), 10.0) / (np.linalg.norm(a["u"]) + 1e-6)
            np.testing.assert_allclose(np.asarray(u), -0.1 * r * a["u"], rtol=RTOL, atol=0)


def test_a_decaying_learning_rate_shrinks_the_neighbourhood():
    # A rescaled leaf moves lr ||p|| per step: constant lr 5e-3 ends 0.017 from x*
    # (the registry's quad_tol); an exponentially decaying lr gets 50x closer.
    loss, x0, xs = problems.bowl_tree()
    sched = gx.exponential_decay(2e-2, decay_rate=0.1, transition_steps=1000)
    assert max_dist(run(gx.lamb(sched), loss, x0, 2000), xs) < 5e-4
    assert max_dist(run(gx.lars(sched, trust_coefficient=0.5), loss, x0, 2000), xs) < 5e-4


# --------------------------------------------------------------------------------------
# Bad inputs


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: gx.scale_by_trust_ratio(-1.0), ValueError, "min_norm must be"),
        (
            lambda: gx.scale_by_trust_ratio(trust_coefficient=-0.1),
            ValueError,
            "trust_coefficient must be",
        ),
        (lambda: gx.scale_by_trust_ratio(eps=-1.0), ValueError, "eps must be"),
        (lambda: gx.scale_by_trust_ratio(max_param_norm=0.0), ValueError, "max_param_norm"),
        (
            lambda: gx.scale_by_trust_ratio(1.0, max_param_norm=0.5),
            ValueError,
            r"max_param_norm must be >= min_norm, got 0.5 < 1.0",
        ),
        (
            lambda: gx.scale_by_trust_ratio(weight_decay_mask="w"),
            ValueError,
            "weight_decay_mask was given but weight_decay is None",
        ),
        (
            lambda: gx.scale_by_trust_ratio(weight_decay=gx.constant_schedule(0.1)),
            TypeError,
            "weight_decay does not accept a schedule",
        ),
        (lambda: gx.scale_by_trust_ratio(mask=lambda p: p), TypeError, "gx.where"),
        (lambda: gx.lars(0.1, momentum=None, nesterov=True), ValueError, "nesterov=True"),
        (lambda: gx.lamb(0.1, weight_decay_mask="w"), ValueError, "weight_decay is None"),
        (lambda: gx.lars(0.1, 0.1), TypeError, "positional"),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_needs_params_and_a_matching_mask():
    tx = gx.scale_by_trust_ratio()
    g = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx.update(g, tx.init(g))
    tx = gx.scale_by_trust_ratio(mask="nothing_here")
    with pytest.raises(ValueError, match="nothing_here"):
        tx.update(g, tx.init(g), g)

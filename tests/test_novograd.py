"""scale_by_novograd and novograd: the per-leaf second moment, decay forms, Optax, dtypes.

The registry (tests/helpers.py) runs the generic properties and the first steps of the
update and of ``mu`` against ``references.ref_novograd``; the recorded pytorch_optimizer
trajectories are in tests/reference/. Here: ``nu`` (one scalar per leaf, which the
registry's per-parameter slot comparison does not cover), the decay forms, Optax.
Float64 comparisons use rtol 1e-12 (the same formula, a few roundings apart).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from references import ref_novograd

import gradxform as gx

RTOL = 1e-12
rng = np.random.default_rng(0)
PARAMS = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=(4,))}
GRADS = [{k: rng.normal(size=v.shape) * (t + 1) for k, v in PARAMS.items()} for t in range(4)]


def _run(tx, params=PARAMS, grads=GRADS):
    """Updates and states over GRADS (float64 under the caller's enable_x64)."""
    jp = {k: jnp.asarray(v) for k, v in params.items()}
    state, out = tx.init(jp), []
    step = jax.jit(tx.update)
    for g in grads:
        u, state = step({k: jnp.asarray(v) for k, v in g.items()}, state, jp)
        out.append((u, state))
    return out


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="default"),
        pytest.param(dict(b1=0.9, b2=0.25, eps=1e-6, eps_root=1e-4), id="optax-betas"),
        pytest.param(dict(weight_decay=0.1, grad_averaging=True), id="decay-averaging"),
    ],
)
def test_nu_is_one_scalar_per_leaf(kwargs):
    names = dict(b1="b1", b2="b2", eps="eps", eps_root="eps_root")
    ref_kw = {names.get(k, k): v for k, v in kwargs.items() if k != "weight_decay"}
    if "weight_decay" in kwargs:
        ref_kw["wd"] = kwargs["weight_decay"]
    with jax.enable_x64(True):
        steps = _run(gx.scale_by_novograd(**kwargs))
    for k in PARAMS:
        expected = ref_novograd([g[k] for g in GRADS], params=PARAMS[k], **ref_kw)
        for t, ((u, state), exp) in enumerate(zip(steps, expected), 1):
            assert state.nu[k].shape == () and state.nu[k].dtype == jnp.float64
            np.testing.assert_allclose(float(state.nu[k]), float(exp["nu"]), rtol=RTOL)
            np.testing.assert_allclose(np.asarray(u[k]), exp["u"], rtol=RTOL, err_msg=f"{t}")
            assert int(state.count) == t


def test_first_step_is_the_normalized_gradient():
    # v_1 = ||g||^2 (no warm-up from 0), m_1 = g / ||g||: Ginsburg et al. 2019, Optax.
    g = {"w": jnp.array([[3.0, 0.0], [0.0, 4.0]]), "b": jnp.array([-2.0])}
    tx = gx.scale_by_novograd()
    u, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(u["w"], [[0.6, 0.0], [0.0, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(u["b"], [-1.0], rtol=1e-6)
    assert float(state.nu["w"]) == 25.0 and float(state.nu["b"]) == 4.0


def test_novograd_equals_optax_novograd():
    optax = pytest.importorskip("optax")
    kw = dict(learning_rate=0.05, b1=0.9, b2=0.25, eps=1e-6, eps_root=1e-5, weight_decay=0.1)
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        ours = _run(gx.novograd(**kw))
        theirs = _run(optax.novograd(**kw))
    for (a, sa), (b, sb) in zip(ours, theirs):
        for k in PARAMS:
            np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=RTOL)
            sb_nov = sb[0]
            np.testing.assert_allclose(
                float(sa.scale_by_novograd.nu[k]), float(sb_nov.nu[k]), rtol=RTOL
            )


def test_decoupled_weight_decay_is_added_after_the_moment():
    # pytorch_optimizer's weight_decouple=True: p <- p (1 - lr wd) - lr m; the decay never
    # enters m (unlike the coupled form).
    lr, wd = 0.05, 0.2
    with jax.enable_x64(True):
        dec = _run(gx.novograd(lr, weight_decay=wd, decoupled_weight_decay=True))
        plain = _run(gx.novograd(lr))
        coupled = _run(gx.novograd(lr, weight_decay=wd))
    for (u, s), (u0, s0) in zip(dec, plain):
        for k in PARAMS:
            np.testing.assert_allclose(
                np.asarray(u[k]), np.asarray(u0[k]) - lr * wd * PARAMS[k], rtol=RTOL
            )
            np.testing.assert_array_equal(s.scale_by_novograd.mu[k], s0.scale_by_novograd.mu[k])
    assert dec[0][1].names == ("scale_by_novograd", "add_decayed_weights", "scale_by_learning_rate")
    assert coupled[0][1].names == ("scale_by_novograd", "scale_by_learning_rate")
    assert not np.allclose(np.asarray(coupled[1][0]["w"]), np.asarray(dec[1][0]["w"]))


def test_weight_decay_mask_by_selector():
    with jax.enable_x64(True):
        masked = _run(gx.scale_by_novograd(weight_decay=0.1, weight_decay_mask="w"))
        decayed = _run(gx.scale_by_novograd(weight_decay=0.1))
        plain = _run(gx.scale_by_novograd())
    for (u, _), (ud, _), (up, _) in zip(masked, decayed, plain):
        np.testing.assert_array_equal(u["w"], ud["w"])
        np.testing.assert_array_equal(u["b"], up["b"])


def test_half_precision_params_keep_float32_state():
    p = {"w": jnp.ones((4,), jnp.bfloat16)}
    tx = gx.novograd(0.1)
    state = tx.init(p)
    nu = state.scale_by_novograd.nu["w"]
    assert nu.shape == () and nu.dtype == jnp.float32
    u, state = tx.update({"w": jnp.full((4,), 3.0, jnp.bfloat16)}, state, p)
    assert u["w"].dtype == jnp.bfloat16
    assert float(state.scale_by_novograd.nu["w"]) == 36.0  # ||g||^2 in float32
    np.testing.assert_allclose(np.asarray(u["w"], np.float32), -0.05, rtol=1e-2)  # -lr g/||g||


def test_complex_params_use_squared_modulus():
    g = jnp.array([3.0 + 4.0j, 0.0])
    tx = gx.scale_by_novograd()
    u, state = tx.update(g, tx.init(g))
    assert state.nu.dtype == jnp.float32 and float(state.nu) == 25.0
    np.testing.assert_allclose(u, [0.6 + 0.8j, 0.0], rtol=1e-6)


def test_large_gradients_do_not_overflow_the_norm():
    # The norm is scaled before squaring; ||g||^2 = 2.5e37 is representable in float32.
    g = jnp.array([3e18, 4e18], jnp.float32)
    tx = gx.scale_by_novograd()
    u, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(float(state.nu), 2.5e37, rtol=1e-6)
    np.testing.assert_allclose(u, [0.6, 0.8], rtol=1e-6)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: gx.scale_by_novograd(b2=1.0), ValueError, r"b2 must be .*\[0, 1\)"),
        (lambda: gx.scale_by_novograd(eps=0.0), ValueError, "eps must be"),
        (lambda: gx.scale_by_novograd(eps_root=-1.0), ValueError, "eps_root must be"),
        (
            lambda: gx.scale_by_novograd(weight_decay_mask="w"),
            ValueError,
            "weight_decay_mask was given but weight_decay is None",
        ),
        (
            lambda: gx.novograd(weight_decay=gx.constant_schedule(0.1)),
            TypeError,
            "weight_decay does not accept a schedule",
        ),
        (lambda: gx.novograd(0.1, 0.9, 0.25, 1e-6, 0.0), TypeError, "positional"),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_decay_needs_params_and_slots_must_exist():
    tx = gx.scale_by_novograd(weight_decay=0.1)
    g = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx.update(g, tx.init(g))
    tx = gx.scale_by_novograd()
    with pytest.raises(ValueError, match="no slot"):
        tx.update({"w": jnp.ones(2), "x": jnp.ones(1)}, tx.init({"w": jnp.ones(2), "x": None}))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        tx.update({"w": jnp.ones(3)}, tx.init(g))
    with pytest.raises(TypeError, match="int32"):
        tx.update({"w": jnp.ones(2, jnp.int32)}, tx.init(g))

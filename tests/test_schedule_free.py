"""Schedule-free SGD / AdamW beyond the registry: evaluation point, donation, Optax.

The registry (``helpers.OPTIMIZERS`` / ``PRIMITIVES``) already runs the common properties
(convergence, dtypes, sharding, jit == eager, abstract init, first steps against the NumPy
reference with explicit x, y, z) and ``test_reference_parity.py`` replays the
``schedulefree`` package's trajectories (y and x). Here: what is particular to it.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx


def _params(dtype=jnp.float32):
    rng = np.random.default_rng(0)
    return {
        "w": jnp.asarray(rng.normal(size=(3, 2)), dtype),
        "b": jnp.asarray(rng.normal(size=(4,)), dtype),
    }


def _loss(p):
    return sum(jnp.sum((x - 0.5) ** 2 + 0.1 * x**4) for x in jax.tree.leaves(p))


def _step(tx):
    def step(params, state):
        updates, state = tx.update(jax.grad(_loss)(params), state, params)
        return gx.apply_updates(params, updates), state

    return step


SF = [
    pytest.param(lambda: gx.schedule_free_sgd(0.1, weight_decay=0.01, warmup_steps=3), id="sgd"),
    pytest.param(lambda: gx.schedule_free_adamw(0.05, weight_decay=0.01, r=1.0), id="adamw"),
]


def _pointers(tree):
    return {x.unsafe_buffer_pointer() for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)}


@pytest.mark.parametrize("make", SF)
def test_params_and_state_never_share_a_buffer_and_can_both_be_donated(make):
    tx = make()
    p0 = _params()
    s0 = tx.init(p0)
    assert not _pointers(p0) & _pointers(s0)
    expected = (p0, s0)
    plain = jax.jit(_step(tx))
    for _ in range(5):
        expected = plain(*expected)
    assert not _pointers(expected[0]) & _pointers(expected[1])

    donating = jax.jit(_step(tx), donate_argnums=(0, 1))
    # Copies: donation invalidates the buffers passed in.
    got = jax.tree.map(jnp.copy, (p0, tx.init(p0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Some donated buffers were not usable" included
        for _ in range(5):
            got = donating(*got)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not _pointers(got[0]) & _pointers(got[1])


@pytest.mark.parametrize("make", SF)
def test_abstract_init_equals_concrete_init(make):
    tx = make()
    p = _params(jnp.bfloat16)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), p)
    s_abs, s = tx.init(abstract), tx.init(p)
    assert jax.tree.structure(s_abs) == jax.tree.structure(s)
    for a, b in zip(jax.tree.leaves(s_abs), jax.tree.leaves(s)):
        # x - y starts at 0: nothing depends on the parameter values.
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert a.dtype == b.dtype
    # bfloat16 params keep a float32 offset (state_dtype=None: at least float32).
    assert s[0].x_minus_y["w"].dtype == jnp.float32


def test_eval_params_is_params_before_and_after_the_first_step():
    # Step 1 has c = 1: x = z = y.
    tx = gx.schedule_free_adamw(0.1)
    p = _params()
    s = tx.init(p)
    ev = gx.eval_params(s, p)
    for a, b in zip(jax.tree.leaves(ev), jax.tree.leaves(p)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    p, s = _step(tx)(p, s)
    for a, b in zip(jax.tree.leaves(gx.eval_params(s, p)), jax.tree.leaves(p)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    p, s = _step(tx)(p, s)
    assert not np.allclose(np.asarray(gx.eval_params(s, p)["w"]), np.asarray(p["w"]))


def test_eval_params_under_jit_and_in_the_params_dtype():
    tx = gx.schedule_free_sgd(0.1)
    p = _params(jnp.bfloat16)
    s = tx.init(p)
    for _ in range(3):
        p, s = _step(tx)(p, s)
    ev = jax.jit(gx.eval_params)(s, p)
    assert ev["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(ev["w"], np.float32), np.asarray(gx.eval_params(s, p)["w"], np.float32)
    )


def test_x_is_the_average_of_the_z_iterates():
    # Uniform weights (r = 0, constant lr): x_t = mean(z_1..z_t), with z the plain SGD
    # steps taken at the y's, and y = b1 x + (1 - b1) z. Built here from the gradients
    # the run saw.
    b1, lr = 0.7, 0.2
    tx = gx.schedule_free_sgd(lr, momentum=b1)
    with jax.enable_x64(True):
        y = jnp.asarray([1.0, -2.0, 3.0], jnp.float64)
        s = tx.init(y)
        z = np.asarray(y)
        zs = []
        for _ in range(6):
            g = jax.grad(lambda q: jnp.sum(q**4) / 4)(y)
            z = z - lr * np.asarray(g)
            zs.append(z)
            u, s = tx.update(g, s, y)
            y = gx.apply_updates(y, u)
            x = np.mean(zs, axis=0)
            np.testing.assert_allclose(np.asarray(gx.eval_params(s, y)), x, rtol=1e-13)
            np.testing.assert_allclose(np.asarray(y), b1 * x + (1 - b1) * z, rtol=1e-13)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        pytest.param(
            lambda: gx.schedule_free_sgd(0.1, momentum=0.8, weight_decay=0.05),
            lambda: optax.contrib.schedule_free_sgd(0.1, None, 0.8, 0.05),
            id="sgd",
        ),
        pytest.param(
            lambda: gx.schedule_free_adamw(0.05, b1=0.9, b2=0.99, eps=1e-6, weight_decay=0.02),
            lambda: optax.contrib.schedule_free_adamw(0.05, None, 0.9, 0.99, 1e-6, 0.02),
            id="adamw",
        ),
    ],
)
def test_same_numbers_as_optax(ours, theirs):
    # Optax's contrib versions (r = 0 only): the same y and x up to rounding (Optax
    # recovers x from y and z, dividing by b1). Without warmup: Optax's warmup schedule
    # feeds its inner optimizer, which counts from 0, so its first z step is 0 (the
    # package's, and ours, is lr / warmup_steps).
    with jax.enable_x64(True):
        p = _params(jnp.float64)
        tx, otx = ours(), theirs()
        s, os_ = tx.init(p), otx.init(p)
        q = p
        for _ in range(20):
            p, s = _step(tx)(p, s)
            with jax.numpy_dtype_promotion("standard"):  # Optax mixes int and float
                u, os_ = otx.update(jax.grad(_loss)(q), os_, q)
            q = optax.apply_updates(q, u)
        for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)
        x_optax = optax.contrib.schedule_free_eval_params(os_, q)
        for a, b in zip(jax.tree.leaves(gx.eval_params(s, p)), jax.tree.leaves(x_optax)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)


def test_zero_learning_rate_takes_no_step_and_gives_no_nan():
    # The averaging weights are all 0 (lr_max^2): the package catches 0 / 0 as c = 0.
    tx = gx.schedule_free_adamw(0.0)
    p = _params()
    s = tx.init(p)
    p1, s = _step(tx)(p, s)
    p1, s = _step(tx)(p1, s)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(s[0].weight_sum) == 0.0
    for leaf in jax.tree.leaves(gx.eval_params(s, p1)):
        assert bool(jnp.all(jnp.isfinite(leaf)))


def test_masked_leaves_keep_their_params_in_eval_params():
    tx = gx.masked(gx.schedule_free_sgd(0.1), {"w": True, "b": False})
    p = _params()
    s = tx.init(p)
    for _ in range(3):
        p, s = _step(tx)(p, s)
    ev = gx.eval_params(s, p)
    np.testing.assert_array_equal(np.asarray(ev["b"]), np.asarray(p["b"]))
    assert not np.allclose(np.asarray(ev["w"]), np.asarray(p["w"]))


def test_weight_decay_needs_params():
    tx = gx.schedule_free_sgd(0.1, weight_decay=0.1)
    p = _params()
    with pytest.raises(ValueError, match="scale_by_schedule_free needs the current parameters"):
        tx.update(p, tx.init(p))
    # Without decay the step does not read the params (a 0 coefficient costs nothing).
    for wd in (None, 0.0):
        tx = gx.schedule_free_sgd(0.1, weight_decay=wd)
        tx.update(p, tx.init(p))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(learning_rate=-0.1), ValueError, r"learning_rate must be a finite number in \[0"),
        (dict(learning_rate=0.1, b1=1.0), ValueError, r"b1 must be a finite number in \[0, 1\)"),
        (dict(learning_rate=0.1, b2=1.0), ValueError, r"b2 must be a finite number in \[0, 1\)"),
        (dict(learning_rate=0.1, eps=0.0), ValueError, r"eps must be a finite number in \(0"),
        (dict(learning_rate=0.1, weight_decay=-1.0), ValueError, "weight_decay must be"),
        (dict(learning_rate=0.1, warmup_steps=-1), ValueError, "warmup_steps must be"),
        (dict(learning_rate=0.1, r=-1.0), ValueError, r"r must be a finite number in \[0"),
        (dict(learning_rate=0.1, weight_lr_power=-2.0), ValueError, "weight_lr_power must be"),
        (dict(learning_rate=0.1, b1="0.9"), TypeError, "b1 must be a real number"),
        (dict(learning_rate=0.1, state_dtype=jnp.int32), TypeError, "state_dtype must be"),
    ],
)
def test_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        gx.scale_by_schedule_free(**kwargs)


def test_aliases_refuse_positional_ports():
    # Optax's second positional argument is warmup_steps, the package's momentum / betas.
    with pytest.raises(TypeError):
        gx.schedule_free_sgd(0.1, 10)  # type: ignore[misc]
    with pytest.raises(TypeError):
        gx.schedule_free_adamw(0.1, 10)  # type: ignore[misc]

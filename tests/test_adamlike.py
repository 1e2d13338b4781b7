"""AdaBelief, Yogi, Adan and SM3: what the registry's generic tests do not cover.

- equality with Optax where the two define the same update, and the documented
  differences where they do not (Adan's gradient-difference weight);
- AdaBelief's rectified branch on both sides of rho_t = 5 against NumPy;
- SM3's cover-set accumulators (row and column maxima; ranks 0 to 3), their memory and
  sharding, and its options;
- bad hyperparameters.

Tolerances: float64 runs of the same formulas differ only in the order of operations:
1e-12 relative (measured below 1e-14). float32 runs against Optax: 1e-5 relative (Optax
rounds 1 - b2 = 0.999 in float32, 1e-5 off, see tests/test_optax_compat.py).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from references import ref_belief, ref_sm3

import gradxform as gx

optax = pytest.importorskip("optax")

RTOL64 = 1e-12
RTOL32 = 1e-5
STEPS = 8


def _params(dtype):
    return {
        "w": jnp.array([[0.5, -1.0, 2.0], [1.5, -0.3, 0.8]], dtype),
        "b": jnp.array([0.1, -0.2, 0.3, 0.0], dtype),
    }


def _grads(params, t):
    # Smooth, varied in sign and size, different at every step.
    return jax.tree_util.tree_map(lambda x: jnp.sin(3 * x + t) + 0.5 * x, params)


def _trajectory(tx, dtype, apply):
    params = _params(dtype)
    state = tx.init(params)

    @jax.jit
    def step(params, state, t):
        updates, state = tx.update(_grads(params, t), state, params)
        return apply(params, updates), state

    out = []
    for t in range(STEPS):
        params, state = step(params, state, jnp.asarray(t, dtype))
        out.append(params)
    return out


def _compare(ours, theirs, dtype, *, same=True):
    """Run both in ``dtype``; assert equal trajectories (or, ``same=False``, different)."""
    with jax.enable_x64(dtype == jnp.float64), jax.numpy_dtype_promotion("standard"):
        a = _trajectory(ours, dtype, gx.apply_updates)
        b = _trajectory(theirs, dtype, optax.apply_updates)
    rtol = RTOL64 if dtype == jnp.float64 else RTOL32
    worst = max(
        float(np.max(np.abs(np.asarray(x[k]) - np.asarray(y[k])))) for x, y in zip(a, b) for k in x
    )
    if same:
        for t, (x, y) in enumerate(zip(a, b)):
            for k in x:
                np.testing.assert_allclose(x[k], y[k], rtol=rtol, atol=rtol, err_msg=f"{t} {k}")
    else:
        assert worst > 1e-3, worst
    return worst


DTYPES = [jnp.float32, jnp.float64]


# --------------------------------------------------------------------------------------
# Optax


@pytest.mark.parametrize("dtype", DTYPES)
def test_adabelief_equals_optax(dtype):
    _compare(gx.adabelief(0.05), optax.adabelief(0.05), dtype)
    _compare(
        gx.adabelief(0.02, 0.8, 0.99, 1e-8, 1e-10),
        optax.adabelief(0.02, 0.8, 0.99, 1e-8, 1e-10),
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_yogi_equals_optax(dtype):
    _compare(gx.yogi(0.05), optax.yogi(0.05), dtype)
    _compare(
        gx.scale_by_yogi(0.8, 0.9, 1e-6, 1e-8, initial_accumulator_value=0.1),
        optax.scale_by_yogi(0.8, 0.9, 1e-6, 1e-8, initial_accumulator_value=0.1),
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_adan_equals_optax_where_b2_is_one_half(dtype):
    # Optax 0.2.8 weighs the gradient difference by 1 - b2, the paper (and
    # pytorch_optimizer, adan-pytorch) by b2: the same number only at b2 = 0.5.
    _compare(
        gx.adan(0.05, 0.9, 0.5, 0.99, 1e-8, 1e-12, weight_decay=0.01),
        optax.adan(0.05, 0.9, 0.5, 0.99, 1e-8, 1e-12, 0.01),
        dtype,
    )


def test_adan_differs_from_optax_at_default_b2_by_the_documented_weight():
    _compare(gx.adan(0.05), optax.adan(0.05), jnp.float64, same=False)
    # ... and exactly by it: Optax's rule is ours with the difference weighed by 1 - b2.
    g1, g2 = jnp.array([1.0, -2.0]), jnp.array([3.0, 0.5])
    tx, ref = gx.scale_by_adan(), optax.scale_by_adan()
    with jax.numpy_dtype_promotion("standard"):
        s, r = tx.init(g1), ref.init(g1)
        for g in (g1, g2):
            u, s = tx.update(g, s)
            v, r = ref.update(g, r)
    b1, b2, b3, eps = 0.98, 0.92, 0.99, 1e-8
    diff = g2 - g1
    m = (1 - b1) * (b1 * g1 + g2) / (1 - b1**2)
    d = (1 - b2) * diff / (1 - b2**2)
    for w, got in ((b2, u), (1 - b2, v)):
        n = (1 - b3) * (b3 * g1**2 + (g2 + w * diff) ** 2) / (1 - b3**2)
        np.testing.assert_allclose(got, (m + w * d) / (jnp.sqrt(n) + eps), rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sm3_equals_optax_in_sum_mode(dtype):
    # optax.sm3's b2 = 1 is the sum of squares, pytorch_optimizer's beta = 0, our None;
    # its b1 is our momentum. Its eps default is 1e-8 (ours 1e-30).
    _compare(gx.sm3(0.1, 0.9, eps=1e-8), optax.sm3(0.1, 0.9), dtype)


def test_sm3_ema_differs_from_optax():
    # With an EMA (beta, Optax's b2 < 1) pytorch_optimizer and we keep the running max
    # of the accumulators; Optax overwrites them with the new maxima.
    new = gx.scale_by_sm3(beta=0.5, eps=1e-8)
    theirs = optax.scale_by_sm3(b1=0.0, b2=0.5)
    assert _compare(new, theirs, jnp.float64, same=False) > 1e-3


def test_ported_positional_calls():
    # Optax's seventh positional argument of adan is weight_decay: keyword-only here.
    with pytest.raises(TypeError, match="positional"):
        gx.adan(0.1, 0.98, 0.92, 0.99, 1e-8, 0.0, 0.01)
    # optax.sm3(lr, momentum): the same meaning here.
    assert gx.sm3(0.1, 0.5) == gx.sm3(learning_rate=0.1, momentum=0.5)
    with pytest.raises(TypeError, match="positional"):
        gx.yogi(0.1, 0.9, 0.999, 1e-3, 1e-6)


# --------------------------------------------------------------------------------------
# AdaBelief's rectification


def test_belief_rectify_runs_both_branches():
    rng = np.random.default_rng(0)
    gs = [rng.normal(size=(3,)) for _ in range(12)]
    b2 = 0.9  # rho_inf = 19: rho_t < 5 for t <= 4, then >= 5
    rho = [19 - 2 * t * b2**t / (1 - b2**t) for t in range(1, 13)]
    assert min(rho) < 5 <= max(rho)
    expected = ref_belief(gs, b2=b2, eps=1e-8, eps_root=1e-8, rectify=True)
    tx = gx.scale_by_belief(0.9, b2, 1e-8, 1e-8, rectify=True)
    with jax.enable_x64(True):
        state = tx.init(jnp.zeros(3))
        for t, (g, exp) in enumerate(zip(gs, expected), 1):
            u, state = jax.jit(tx.update)(jnp.asarray(g), state)
            np.testing.assert_allclose(u, exp["u"], rtol=RTOL64, err_msg=f"step {t}")
            np.testing.assert_allclose(state.nu, exp["nu"], rtol=RTOL64)


def test_belief_rectify_under_traced_b2():
    # b2 as a jit argument (inject_hyperparams-style): same numbers as a Python float.
    g = jnp.array([0.3, -1.0])

    def steps(tx):
        s = tx.init(g)
        out = []
        for k in range(8):
            u, s = tx.update(g * (k + 1), s)
            out.append(u)
        return jnp.stack(out)

    fixed = steps(gx.scale_by_belief(b2=0.9, rectify=True))
    traced = jax.jit(lambda b2: steps(gx.scale_by_belief(b2=b2, rectify=True)))(0.9)
    np.testing.assert_allclose(traced, fixed, rtol=1e-6)


# --------------------------------------------------------------------------------------
# SM3


@pytest.mark.parametrize(
    "shape", [(), (5,), (3, 2), (2, 3, 4)], ids=["scalar", "vector", "matrix", "rank3"]
)
@pytest.mark.parametrize(
    "kwargs", [{}, {"beta": 0.5, "momentum": 0.9, "eps": 1e-8}], ids=["sum", "ema"]
)
def test_sm3_accumulators_are_cover_maxima(shape, kwargs):
    rng = np.random.default_rng(1)
    gs = [rng.normal(size=shape) * (1 + t) for t in range(5)]
    expected = ref_sm3(gs, **kwargs)
    tx = gx.scale_by_sm3(**kwargs)
    with jax.enable_x64(True):
        state = tx.init(jnp.zeros(shape))
        for t, (g, exp) in enumerate(zip(gs, expected), 1):
            u, state = jax.jit(tx.update)(jnp.asarray(g), state)
            np.testing.assert_allclose(u, exp["u"], rtol=RTOL64, err_msg=f"step {t}")
            assert len(state.accumulators) == len(exp["accumulators"]) == max(len(shape), 1)
            for a, e in zip(state.accumulators, exp["accumulators"]):
                assert a.shape == e.shape and a.dtype == jnp.float64
                np.testing.assert_allclose(a, e, rtol=RTOL64)


def test_sm3_matrix_accumulators_by_hand():
    g = jnp.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
    tx = gx.scale_by_sm3()
    state = tx.init(g)
    _, state = tx.update(g, state)
    rows, cols = state.accumulators
    np.testing.assert_array_equal(rows, [[4.0], [9.0]])  # max g^2 per row
    np.testing.assert_array_equal(cols, [[9.0, 4.0, 1.0]])  # max g^2 per column
    u, state = tx.update(g, state)
    # nu = min(row, column) + g^2, per entry.
    nu = np.minimum(rows, cols) + np.asarray(g) ** 2
    np.testing.assert_allclose(u, np.asarray(g) / np.sqrt(nu + 1e-30), rtol=1e-6)


def test_sm3_memory_is_sum_of_dims():
    p = {"w": jax.ShapeDtypeStruct((1000, 500), jnp.float32)}
    state = gx.scale_by_sm3().init(p)
    sizes = [a.size for a in jax.tree_util.tree_leaves(state)]
    assert sum(sizes) == 1500  # Adagrad would keep 500,000
    state = gx.scale_by_sm3(momentum=0.9).init(p)
    assert sum(a.size for a in jax.tree_util.tree_leaves(state)) == 1500 + 500_000


def test_sm3_accumulators_sharded_along_their_axis():
    devices = np.array(jax.devices()[:4])
    mesh = Mesh(devices, ("x",))
    sharding = NamedSharding(mesh, PartitionSpec("x"))
    p = {"w": jax.device_put(jnp.ones((8, 3)), sharding)}
    tx = gx.scale_by_sm3()
    rows, cols = tx.init(p).accumulators["w"]
    assert rows.shape == (8, 1) and cols.shape == (1, 3)
    assert rows.sharding.is_equivalent_to(NamedSharding(mesh, PartitionSpec("x", None)), 2)
    assert cols.sharding.is_equivalent_to(NamedSharding(mesh, PartitionSpec(None, None)), 2)
    abstract = {"w": jax.ShapeDtypeStruct((8, 3), jnp.float32, sharding=sharding)}
    rows2, _ = tx.init(abstract).accumulators["w"]
    assert rows2.sharding.is_equivalent_to(rows.sharding, 2)
    u, _ = jax.jit(tx.update)(p, tx.init(p))
    np.testing.assert_allclose(u["w"], 1.0)


def test_sm3_none_beta_is_not_beta_zero():
    with pytest.raises(ValueError, match=r"scale_by_sm3: beta .*None"):
        gx.sm3(beta=0.0)


def test_sm3_rejects_mismatched_state():
    tx = gx.scale_by_sm3()
    state = tx.init({"w": jnp.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"scale_by_sm3: updates leaf at \['w'\]"):
        tx.update({"w": jnp.zeros((3, 2))}, state)
    with pytest.raises(ValueError, match="scale_by_sm3: the state's accumulators"):
        tx.update({"w": jnp.zeros((2, 3)), "b": jnp.zeros(2)}, state)
    with pytest.raises(TypeError, match=r"\['w'\] has dtype int32"):
        tx.update({"w": jnp.zeros((2, 3), jnp.int32)}, state)


# --------------------------------------------------------------------------------------
# Adan


def test_adan_first_step_has_no_difference():
    tx = gx.scale_by_adan()
    g = jnp.array([2.0, -1.0])
    state = tx.init(jnp.full(2, 5.0))  # the slot of g_0 is 0: it must not count
    u, state = tx.update(g, state)
    np.testing.assert_allclose(u, jnp.sign(g), rtol=1e-6)
    np.testing.assert_array_equal(state.delta, 0.0)
    np.testing.assert_array_equal(state.prev_grad, g)


# --------------------------------------------------------------------------------------
# Bad hyperparameters


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (partial(gx.scale_by_belief, eps_root=-1.0), r"scale_by_belief: eps_root must be"),
        (partial(gx.adabelief, b2=1.0), r"scale_by_belief: b2 must be"),
        (partial(gx.scale_by_yogi, initial_accumulator_value=-1e-6), r"initial_accumulator"),
        (partial(gx.yogi, eps=0.0), r"scale_by_yogi: eps must be"),
        (partial(gx.scale_by_adan, b3=1.0), r"scale_by_adan: b3 must be"),
        (partial(gx.adan, eps_root=-1.0), r"scale_by_adan: eps_root must be"),
        (partial(gx.sm3, momentum=1.0), r"scale_by_sm3: momentum must be"),
        (partial(gx.sm3, beta=1.5), r"scale_by_sm3: beta must be"),
        (partial(gx.scale_by_sm3, eps=0.0), r"scale_by_sm3: eps must be"),
        (partial(gx.adan, weight_decay_mask={"w": True}), r"weight_decay is None"),
    ],
)
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_sm3_options_are_keyword_only():
    with pytest.raises(TypeError):
        gx.scale_by_sm3(0.9)  # Optax's first argument is b1 (its momentum): say which

"""Tests for gradxform.schedules against closed-form values.

Every expected value is a literal or a one-line formula written here (``math`` only),
never the schedule under test. ``count`` is the number of updates already applied.

Tolerances:
- float64 (``jax.enable_x64``): rtol 1e-12, atol 1e-15. Each schedule is a handful of
  correctly-rounded ops plus at most one cos/pow/log (accurate to ~1 ulp = 2.2e-16), so
  any error above a few ulps is a formula bug (formula bugs here are >= 1e-3).
- float32 (default): rtol 1e-6, atol 1e-7. Values are O(1) (scale 1); float32 ulp at 1 is
  1.2e-7, and the cosines lose up to ~1 ulp of the *scale* when the value is near its
  minimum, so a relative bound alone would be meaningless for the closed-form zeros.
"""

from __future__ import annotations

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

F32_TOL = dict(rtol=1e-6, atol=1e-7)
F64_TOL = dict(rtol=1e-12, atol=1e-15)

PI = math.pi


def cos_half(frac):
    """(1 + cos(pi * frac)) / 2: 1 at frac=0, 1/2 at frac=1/2, 0 at frac=1."""
    return 0.5 * (1.0 + math.cos(PI * frac))


# --------------------------------------------------------------------------------------
# The closed-form table: id -> (factory, [(count, expected), ...]).
# A factory (not a built schedule) so each test builds its own.

CASES = {
    "constant": (
        lambda: gx.constant_schedule(0.3),
        [(0, 0.3), (1, 0.3), (1000, 0.3)],
    ),
    "linear": (
        # v0 = 1, v1 = 0.2, begins at 10, lasts 20 steps: v = 1 - 0.8 (t - 10) / 20.
        lambda: gx.linear_schedule(1.0, 0.2, transition_steps=20, transition_begin=10),
        [
            (0, 1.0),  # before begin
            (10, 1.0),  # at begin
            (15, 0.8),  # a quarter of the way
            (20, 0.6),  # middle
            (30, 0.2),  # end
            (100, 0.2),  # after end
        ],
    ),
    "linear_increasing": (
        lambda: gx.linear_schedule(0.0, 2.0, transition_steps=8),
        [(0, 0.0), (2, 0.5), (4, 1.0), (8, 2.0), (9, 2.0)],
    ),
    "polynomial_power2": (
        # (v0 - v1) (1 - t/T)^2 + v1 with v0 = 1, v1 = 0.2, T = 10.
        lambda: gx.polynomial_schedule(1.0, 0.2, power=2, transition_steps=10),
        [
            (0, 1.0),
            (5, (1.0 - 0.2) * 0.25 + 0.2),  # mid-point: (v0 - v1) * 0.25 + v1
            (8, (1.0 - 0.2) * 0.2**2 + 0.2),
            (10, 0.2),
            (50, 0.2),
        ],
    ),
    "polynomial_begin": (
        lambda: gx.polynomial_schedule(2.0, 0.0, power=3, transition_steps=4, transition_begin=6),
        [(0, 2.0), (6, 2.0), (8, 2.0 * 0.5**3), (10, 0.0), (11, 0.0)],
    ),
    "exp_continuous": (
        # v0 * rate^(t / steps)
        lambda: gx.exponential_decay(2.0, decay_rate=0.5, transition_steps=4),
        [(0, 2.0), (1, 2.0 * 0.5**0.25), (4, 1.0), (6, 2.0 * 0.5**1.5), (8, 0.5)],
    ),
    "exp_staircase_steplr": (
        # torch StepLR(step_size=3, gamma=0.1): v0 * gamma ** (t // 3)
        lambda: gx.exponential_decay(1.0, decay_rate=0.1, transition_steps=3, staircase=True),
        [(0, 1.0), (2, 1.0), (3, 0.1), (5, 0.1), (6, 0.1**2), (10, 0.1**3)],
    ),
    "exp_transition_begin": (
        lambda: gx.exponential_decay(1.0, decay_rate=0.5, transition_steps=2, transition_begin=5),
        [(0, 1.0), (5, 1.0), (7, 0.5), (8, 0.5**1.5), (11, 0.125)],
    ),
    "exp_floor_decaying": (
        # end_value is a floor when rate < 1: 0.5^t bottoms out at 0.2 from t = 3.
        lambda: gx.exponential_decay(1.0, decay_rate=0.5, end_value=0.2),
        [(0, 1.0), (2, 0.25), (3, 0.2), (50, 0.2)],
    ),
    "exp_ceiling_growing": (
        # end_value is a ceiling when rate > 1: 2^t tops out at 5 from t = 3.
        lambda: gx.exponential_decay(1.0, decay_rate=2.0, end_value=5.0),
        [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (40, 5.0)],
    ),
    "inverse_time": (
        # v0 / (1 + k t)
        lambda: gx.inverse_time_decay(1.0, 0.5),
        [(0, 1.0), (1, 1.0 / 1.5), (2, 0.5), (10, 1.0 / 6.0)],
    ),
    "inverse_time_staircase": (
        # v0 / (1 + k floor(t / s)) with v0 = 3, k = 0.5, s = 4
        lambda: gx.inverse_time_decay(3.0, 0.5, transition_steps=4, staircase=True),
        [(0, 3.0), (3, 3.0), (4, 2.0), (7, 2.0), (8, 1.5), (13, 3.0 / 2.5)],
    ),
    "piecewise": (
        lambda: gx.piecewise_constant_schedule(boundaries=[10, 20], values=[1.0, 0.1, 0.01]),
        [
            (0, 1.0),
            (9, 1.0),  # just before the first boundary
            (10, 0.1),  # at it
            (11, 0.1),  # just after
            (19, 0.1),
            (20, 0.01),
            (21, 0.01),
            (1000, 0.01),
        ],
    ),
    "piecewise_at_zero": (
        # A boundary at 0 means values[0] is never used.
        lambda: gx.piecewise_constant_schedule(boundaries=[0, 3], values=[9.0, 2.0, 4.0]),
        [(0, 2.0), (2, 2.0), (3, 4.0)],
    ),
    "cosine": (
        # v0 ((1 - a) c + a), c = (1 + cos(pi t / T)) / 2; v0 = 2, T = 100, a = 0.1
        lambda: gx.cosine_decay_schedule(2.0, 100, alpha=0.1),
        [
            (0, 2.0),
            (25, 2.0 * (0.9 * cos_half(0.25) + 0.1)),
            (50, 2.0 * (1 + 0.1) / 2),  # T/2: v0 (1 + alpha) / 2
            (100, 0.1 * 2.0),  # T: alpha v0
            (250, 0.1 * 2.0),  # beyond T
        ],
    ),
    "cosine_alpha0": (
        lambda: gx.cosine_decay_schedule(1.0, 10),
        [(0, 1.0), (5, 0.5), (10, 0.0), (11, 0.0)],
    ),
    "cosine_exponent2": (
        # v0 ((1 - a) c^2 + a): at T/2, c = 1/2 so v = v0 ((1 - a)/4 + a)
        lambda: gx.cosine_decay_schedule(2.0, 100, alpha=0.1, exponent=2.0),
        [
            (0, 2.0),
            (25, 2.0 * (0.9 * cos_half(0.25) ** 2 + 0.1)),
            (50, 2.0 * (0.9 / 4 + 0.1)),
            (100, 0.2),
        ],
    ),
    "warmup_cosine": (
        # 0 -> 1 linearly over 10 steps, then cosine 1 -> 0.1 over steps 10..110.
        lambda: gx.warmup_cosine_decay_schedule(
            0.0, 1.0, warmup_steps=10, decay_steps=110, end_value=0.1
        ),
        [
            (0, 0.0),  # init
            (5, 0.5),  # mid-warmup (linear)
            (9, 0.9),
            (10, 1.0),  # t = warmup: peak
            (35, 0.1 + 0.9 * cos_half(0.25)),
            (60, 0.55),  # mid-decay: (peak + end) / 2
            (110, 0.1),  # end
            (500, 0.1),
        ],
    ),
    "warmup_cosine_nonzero_init": (
        lambda: gx.warmup_cosine_decay_schedule(0.2, 1.0, warmup_steps=4, decay_steps=8),
        [(0, 0.2), (1, 0.4), (2, 0.6), (4, 1.0), (6, 0.5), (8, 0.0)],
    ),
    "warmup_cosine_no_warmup": (
        lambda: gx.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=0, decay_steps=10),
        [(0, 1.0), (5, 0.5), (10, 0.0)],
    ),
    "one_cycle": (
        # T = 100, peak 1, pct_start 0.3, div 25, final_div 1e4:
        # start 1/25 = 0.04, final 0.04 / 1e4 = 4e-6.
        lambda: gx.one_cycle_schedule(transition_steps=100, peak_value=1.0),
        [
            (0, 1.0 / 25),  # start = peak / div_factor
            (15, 0.04 + (1.0 - 0.04) * 0.5),  # half-way up
            (30, 1.0),  # pct_start * T: peak
            (65, 4e-6 + (1.0 - 4e-6) * 0.5),  # half-way down
            (100, 1.0 / (25 * 1e4)),  # T: peak / (div * final_div)
            (150, 4e-6),  # stays there
        ],
    ),
    "one_cycle_custom": (
        # T = 20, peak 2, pct_start 0.5, div 4, final_div 10: start 0.5, final 0.05.
        lambda: gx.one_cycle_schedule(
            transition_steps=20,
            peak_value=2.0,
            pct_start=0.5,
            div_factor=4.0,
            final_div_factor=10.0,
        ),
        [(0, 0.5), (5, 0.5 + 1.5 * cos_half(0.5)), (10, 2.0), (15, 0.05 + 1.95 * 0.5), (20, 0.05)],
    ),
    "sgdr_mult1": (
        # period 10, v0 1, end 0.1: restarts at 10, 20, ...
        lambda: gx.sgdr_schedule(1.0, 10, end_value=0.1),
        [
            (0, 1.0),
            (5, 0.55),
            (9, 0.1 + 0.9 * cos_half(0.9)),
            (10, 1.0),  # restart at period
            (15, 0.55),
            (19, 0.1 + 0.9 * cos_half(0.9)),
            (20, 1.0),  # restart at 2 * period
            (99_999, 0.1 + 0.9 * cos_half(0.9)),
            (100_000, 1.0),
        ],
    ),
    "sgdr_mult2": (
        # T0 = 10, mult 2: periods [0,10), [10,30), [30,70), [70,150) ... restarts at
        # 10 (2^n - 1).
        lambda: gx.sgdr_schedule(1.0, 10, period_mult=2, end_value=0.1),
        [
            (0, 1.0),
            (5, 0.55),
            (9, 0.1 + 0.9 * cos_half(9 / 10)),
            (10, 1.0),  # restart at T0
            (15, 0.1 + 0.9 * cos_half(5 / 20)),
            (20, 0.55),  # middle of the second period (length 20)
            (29, 0.1 + 0.9 * cos_half(19 / 20)),
            (30, 1.0),  # restart at 3 T0
            (50, 0.55),  # middle of the third period (length 40)
            (69, 0.1 + 0.9 * cos_half(39 / 40)),
            (70, 1.0),  # restart at 7 T0
            (110, 0.55),
            (10_229, 0.1 + 0.9 * cos_half(5119 / 5120)),  # just before the 10th restart
            (10_230, 1.0),  # 10 (2^10 - 1)
        ],
    ),
    "sgdr_mult3": (
        # T0 = 4, mult 3: periods [0,4), [4,16), [16,52): restarts at 4, 16, 52.
        lambda: gx.sgdr_schedule(2.0, 4, period_mult=3),
        [(0, 2.0), (2, 1.0), (4, 2.0), (10, 1.0), (16, 2.0), (34, 1.0), (52, 2.0)],
    ),
    "join": (
        # linear 0 -> 1 over 10 steps, then from t = 10 a cosine 1 -> 0 over 20 steps that
        # sees t - 10, then from t = 30 a constant.
        lambda: gx.join_schedules(
            [
                gx.linear_schedule(0.0, 1.0, 10),
                gx.cosine_decay_schedule(1.0, 20),
                gx.constant_schedule(0.05),
            ],
            boundaries=[10, 30],
        ),
        [
            (0, 0.0),
            (5, 0.5),
            (9, 0.9),
            (10, 1.0),  # second schedule at its own t = 0
            (15, cos_half(5 / 20)),
            (20, 0.5),  # second schedule at its own t = 10 = T/2
            (29, cos_half(19 / 20)),
            (30, 0.05),
            (99, 0.05),
        ],
    ),
    "join_shifted_linear": (
        # Second schedule is linear *from its own 0*: sees t - 5.
        lambda: gx.join_schedules(
            [gx.constant_schedule(3.0), gx.linear_schedule(1.0, 0.0, 4)], boundaries=[5]
        ),
        [(0, 3.0), (4, 3.0), (5, 1.0), (6, 0.75), (8, 0.25), (9, 0.0), (20, 0.0)],
    ),
}

CASE_IDS = list(CASES)

# One of each schedule class, for the structural tests.
FACTORIES = {
    "constant": lambda: gx.constant_schedule(0.3),
    "linear": lambda: gx.linear_schedule(1.0, 0.2, 20, 10),
    "polynomial": lambda: gx.polynomial_schedule(1.0, 0.2, 2, 10),
    "exponential_decay": lambda: gx.exponential_decay(
        1.0, decay_rate=0.5, transition_steps=4, transition_begin=2, staircase=False, end_value=0.1
    ),
    "exponential_decay_staircase": lambda: gx.exponential_decay(
        1.0, decay_rate=0.1, transition_steps=3, staircase=True
    ),
    "inverse_time_decay": lambda: gx.inverse_time_decay(1.0, 0.5),
    "piecewise": lambda: gx.piecewise_constant_schedule([10, 20], [1.0, 0.1, 0.01]),
    "cosine": lambda: gx.cosine_decay_schedule(2.0, 100, alpha=0.1, exponent=2.0),
    "warmup_cosine": lambda: gx.warmup_cosine_decay_schedule(0.0, 1.0, 10, 110, 0.1),
    "one_cycle": lambda: gx.one_cycle_schedule(transition_steps=100, peak_value=1.0),
    "sgdr": lambda: gx.sgdr_schedule(1.0, 10, end_value=0.1),
    "sgdr_mult2": lambda: gx.sgdr_schedule(1.0, 10, period_mult=2, end_value=0.1),
    "join": lambda: gx.join_schedules(
        [gx.linear_schedule(0.0, 1.0, 10), gx.cosine_decay_schedule(1.0, 20)], [10]
    ),
}
FACTORY_IDS = list(FACTORIES)


def _expected(case_id):
    factory, points = CASES[case_id]
    counts = [t for t, _ in points]
    values = [v for _, v in points]
    return factory, counts, values


def test_every_schedule_class_has_closed_form_cases():
    classes = {type(factory()) for factory, _ in CASES.values()}
    exported = {getattr(gx, name) for name in gx.schedules.__all__ if name != "Schedule"}
    assert exported <= classes, f"no closed-form case for {exported - classes}"


# --------------------------------------------------------------------------------------
# Closed-form values, float32 and float64


@pytest.mark.parametrize("case_id", CASE_IDS, ids=CASE_IDS)
def test_closed_form_float32(case_id):
    factory, counts, values = _expected(case_id)
    sched = factory()
    for t, v in zip(counts, values):
        out = sched(t)
        assert out.dtype == jnp.float32, (t, out.dtype)
        assert out.shape == ()
        np.testing.assert_allclose(np.asarray(out), v, **F32_TOL, err_msg=f"t={t}")


@pytest.mark.parametrize("case_id", CASE_IDS, ids=CASE_IDS)
def test_closed_form_float64(case_id):
    factory, counts, values = _expected(case_id)
    with jax.enable_x64(True):
        sched = factory()
        for t, v in zip(counts, values):
            out = sched(jnp.asarray(t, jnp.int32))
            assert out.dtype == jnp.float64, (t, out.dtype)
            np.testing.assert_allclose(np.asarray(out), v, **F64_TOL, err_msg=f"t={t}")


@pytest.mark.parametrize("case_id", CASE_IDS, ids=CASE_IDS)
def test_closed_form_jit_traced_int32(case_id):
    """The schedule is a jit *argument* and the count a traced int32 scalar."""
    factory, counts, values = _expected(case_id)
    f = jax.jit(lambda s, c: s(c))
    sched = factory()
    for t, v in zip(counts, values):
        out = f(sched, jnp.asarray(t, jnp.int32))
        assert out.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(out), v, **F32_TOL, err_msg=f"t={t}")


@pytest.mark.parametrize("case_id", CASE_IDS, ids=CASE_IDS)
def test_closed_form_vmap(case_id):
    """A vector of counts through vmap (under jit, schedule as argument) gives the values."""
    factory, counts, values = _expected(case_id)
    sched = factory()
    ts = jnp.asarray(counts, jnp.int32)
    out = jax.jit(jax.vmap(lambda s, c: s(c), in_axes=(None, 0)))(sched, ts)
    assert out.shape == (len(counts),) and out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), values, **F32_TOL)


@pytest.mark.parametrize("case_id", CASE_IDS, ids=CASE_IDS)
def test_closed_form_vmap_float64(case_id):
    factory, counts, values = _expected(case_id)
    with jax.enable_x64(True):
        out = jax.jit(jax.vmap(factory()))(jnp.asarray(counts, jnp.int32))
        assert out.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(out), values, **F64_TOL)


def test_python_and_numpy_counts_accepted():
    sched = gx.linear_schedule(1.0, 0.0, 10)
    for count in (4, np.int32(4), np.int64(4), jnp.asarray(4, jnp.int32)):
        np.testing.assert_allclose(np.asarray(sched(count)), 0.6, **F32_TOL)


# --------------------------------------------------------------------------------------
# Shape properties


def test_one_cycle_monotone_up_then_down():
    sched = gx.one_cycle_schedule(transition_steps=100, peak_value=1.0, pct_start=0.3)
    v = np.asarray(jax.jit(jax.vmap(sched))(jnp.arange(0, 131, dtype=jnp.int32)))
    assert np.all(np.diff(v[:31]) > 0), "must increase strictly up to pct_start * T = 30"
    assert np.all(np.diff(v[30:]) <= 0), "must not increase after the peak"
    assert np.all(np.diff(v[30:101]) < 0), "must decrease strictly from 30 to T = 100"
    assert int(np.argmax(v)) == 30


def test_sgdr_restarts_return_to_init_value():
    v0 = 0.7
    mult1 = gx.sgdr_schedule(v0, 10)
    mult2 = gx.sgdr_schedule(v0, 10, period_mult=2)
    for t in (0, 10, 20, 30, 500):
        np.testing.assert_allclose(np.asarray(mult1(t)), v0, **F32_TOL, err_msg=f"t={t}")
    for t in (0, 10, 30, 70, 150, 310):  # 10 (2^n - 1)
        np.testing.assert_allclose(np.asarray(mult2(t)), v0, **F32_TOL, err_msg=f"t={t}")
    # The step before each restart is the lowest point of its period (near end_value = 0).
    for t in (9, 29, 69, 149, 309):
        assert float(mult2(t)) < 0.03 * v0, t
    # Restart points found by the closed-form period index, for a long run of counts:
    # n(t) = floor(log2(t / 10 + 1)), start(n) = 10 (2^n - 1).
    ts = np.arange(0, 2000)
    n = np.floor(np.log2(ts / 10 + 1)).astype(int)
    start = 10 * (2**n - 1)
    frac = (ts - start) / (10 * 2.0**n)
    expected = v0 * 0.5 * (1 + np.cos(np.pi * frac))
    out = jax.jit(jax.vmap(mult2))(jnp.asarray(ts, jnp.int32))
    np.testing.assert_allclose(np.asarray(out), expected, **F32_TOL)


# --------------------------------------------------------------------------------------
# Pytree / value semantics


def test_schedule_is_a_pytree_with_numbers_as_leaves():
    leaves = jax.tree_util.tree_leaves(gx.cosine_decay_schedule(0.1, 100))
    assert 0.1 in leaves
    assert 100 in leaves
    assert isinstance(gx.cosine_decay_schedule(0.1, 100), gx.Schedule)


def test_static_fields_are_not_leaves():
    leaves = jax.tree_util.tree_leaves(
        gx.exponential_decay(0.5, decay_rate=0.9, transition_steps=3, staircase=True)
    )
    assert not any(isinstance(x, bool) for x in leaves)  # staircase is in the treedef
    assert sorted(leaves) == sorted([0.5, 0.9, 3, 0])
    pw = jax.tree_util.tree_leaves(gx.piecewise_constant_schedule([10, 20], [1.0, 0.5, 0.25]))
    assert pw == [1.0, 0.5, 0.25]  # boundaries are structure


@pytest.mark.parametrize("name", FACTORY_IDS, ids=FACTORY_IDS)
def test_equal_configs_compare_and_hash_equal(name):
    a, b = FACTORIES[name](), FACTORIES[name]()
    assert a is not b
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1


@pytest.mark.parametrize("name", FACTORY_IDS, ids=FACTORY_IDS)
def test_tree_roundtrip_preserves_equality(name):
    sched = FACTORIES[name]()
    leaves, treedef = jax.tree_util.tree_flatten(sched)
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert rebuilt == sched and type(rebuilt) is type(sched)


def test_different_configs_compare_unequal():
    a = gx.cosine_decay_schedule(0.1, 100)
    assert a != gx.cosine_decay_schedule(0.2, 100)
    assert a != gx.cosine_decay_schedule(0.1, 200)
    assert a != gx.cosine_decay_schedule(0.1, 100, alpha=0.5)
    assert a != gx.linear_schedule(0.1, 0.0, 100)
    e = gx.exponential_decay(1.0, decay_rate=0.5)
    assert e != gx.exponential_decay(1.0, decay_rate=0.5, staircase=True)  # static field differs
    p = gx.piecewise_constant_schedule([10], [1.0, 0.5])
    assert p != gx.piecewise_constant_schedule([11], [1.0, 0.5])


def test_repr_shows_arguments():
    assert repr(gx.cosine_decay_schedule(0.1, 100)) == (
        "cosine_decay_schedule(init_value=0.1, decay_steps=100, alpha=0.0, exponent=1.0)"
    )
    r = repr(gx.exponential_decay(0.5, decay_rate=0.9, transition_steps=3, staircase=True))
    assert r.startswith("exponential_decay(")
    for part in ("init_value=0.5", "decay_rate=0.9", "transition_steps=3", "staircase=True"):
        assert part in r
    r = repr(gx.piecewise_constant_schedule([10, 20], [1.0, 0.1, 0.01]))
    assert "boundaries=(10, 20)" in r and "values=(1.0, 0.1, 0.01)" in r
    r = repr(gx.sgdr_schedule(1.0, 10, period_mult=2))
    assert "period=10" in r and "period_mult=2" in r
    r = repr(gx.join_schedules([gx.constant_schedule(1.0), gx.constant_schedule(0.5)], [5]))
    assert "constant_schedule(value=1.0)" in r and "boundaries=(5,)" in r


# --------------------------------------------------------------------------------------
# No retracing when a numeric hyperparameter changes


def test_changing_init_value_does_not_retrace():
    traces = []

    @jax.jit
    def value(sched, count):
        traces.append(1)  # runs only while tracing
        return sched(count)

    c = jnp.asarray(50, jnp.int32)
    np.testing.assert_allclose(
        np.asarray(value(gx.cosine_decay_schedule(0.1, 100), c)), 0.05, **F32_TOL
    )
    np.testing.assert_allclose(
        np.asarray(value(gx.cosine_decay_schedule(0.4, 100), c)), 0.2, **F32_TOL
    )
    np.testing.assert_allclose(
        np.asarray(value(gx.cosine_decay_schedule(0.4, 200), c)), 0.4 * cos_half(0.25), **F32_TOL
    )
    np.testing.assert_allclose(
        np.asarray(value(gx.cosine_decay_schedule(0.4, 200, alpha=0.5), c)),
        0.4 * (0.5 * cos_half(0.25) + 0.5),
        **F32_TOL,
    )
    assert len(traces) == 1


@pytest.mark.parametrize("name", FACTORY_IDS, ids=FACTORY_IDS)
def test_changing_numeric_leaves_does_not_retrace(name):
    traces = []

    @jax.jit
    def value(sched, count):
        traces.append(1)
        return sched(count)

    sched = FACTORIES[name]()
    leaves, treedef = jax.tree_util.tree_flatten(sched)
    # Same kind of numbers, different values (floats scaled, ints incremented).
    bumped = [x * 1.5 if isinstance(x, float) else x + 1 for x in leaves]
    other = jax.tree_util.tree_unflatten(treedef, bumped)
    c = jnp.asarray(3, jnp.int32)
    value(sched, c)
    value(other, c)
    assert len(traces) == 1


def test_changing_static_field_does_retrace():
    """Sanity check of the trace counter: a static (structural) change must retrace."""
    traces = []

    @jax.jit
    def value(sched, count):
        traces.append(1)
        return sched(count)

    c = jnp.asarray(5, jnp.int32)
    np.testing.assert_allclose(
        np.asarray(value(gx.exponential_decay(1.0, decay_rate=0.5, transition_steps=2), c)),
        0.5**2.5,
        **F32_TOL,
    )
    np.testing.assert_allclose(
        np.asarray(
            value(gx.exponential_decay(1.0, decay_rate=0.5, transition_steps=2, staircase=True), c)
        ),
        0.25,
        **F32_TOL,
    )
    assert len(traces) == 2


# --------------------------------------------------------------------------------------
# Validation

NAN = float("nan")
INF = float("inf")

INVALID = {
    # non-positive transition / decay steps
    "linear_steps_zero": (lambda: gx.linear_schedule(1.0, 0.0, 0), "transition_steps"),
    "linear_steps_negative": (lambda: gx.linear_schedule(1.0, 0.0, -5), "transition_steps"),
    "linear_begin_negative": (lambda: gx.linear_schedule(1.0, 0.0, 5, -1), "transition_begin"),
    "polynomial_steps_zero": (lambda: gx.polynomial_schedule(1.0, 0.0, 2, 0), "transition_steps"),
    "polynomial_power_zero": (lambda: gx.polynomial_schedule(1.0, 0.0, 0, 10), "power"),
    "exp_steps_zero": (
        lambda: gx.exponential_decay(1.0, decay_rate=0.5, transition_steps=0),
        "transition_steps",
    ),
    "exp_steps_negative": (
        lambda: gx.exponential_decay(1.0, decay_rate=0.5, transition_steps=-3),
        "transition_steps",
    ),
    "exp_rate_zero": (lambda: gx.exponential_decay(1.0, decay_rate=0.0), "decay_rate"),
    "exp_end_nan": (lambda: gx.exponential_decay(1.0, decay_rate=0.5, end_value=NAN), "end_value"),
    "inverse_steps_zero": (lambda: gx.inverse_time_decay(1.0, 0.5, 0), "transition_steps"),
    "inverse_rate_negative": (lambda: gx.inverse_time_decay(1.0, -0.5), "decay_rate"),
    "one_cycle_steps_zero": (
        lambda: gx.one_cycle_schedule(transition_steps=0, peak_value=1.0),
        "transition_steps",
    ),
    "cosine_steps_zero": (lambda: gx.cosine_decay_schedule(1.0, 0), "decay_steps"),
    "cosine_steps_negative": (lambda: gx.cosine_decay_schedule(1.0, -10), "decay_steps"),
    "warmup_cosine_steps_zero": (
        lambda: gx.warmup_cosine_decay_schedule(0.0, 1.0, 0, 0),
        "decay_steps",
    ),
    "sgdr_period_zero": (lambda: gx.sgdr_schedule(1.0, 0), "period"),
    # NaN / inf values
    "constant_nan": (lambda: gx.constant_schedule(NAN), "value"),
    "linear_init_nan": (lambda: gx.linear_schedule(NAN, 0.0, 10), "init_value"),
    "linear_end_inf": (lambda: gx.linear_schedule(1.0, INF, 10), "end_value"),
    "polynomial_init_nan": (lambda: gx.polynomial_schedule(NAN, 0.0, 2, 10), "init_value"),
    "exp_init_nan": (lambda: gx.exponential_decay(NAN, decay_rate=0.5), "init_value"),
    "exp_init_nan_np": (
        lambda: gx.exponential_decay(np.float32(NAN), decay_rate=0.5),
        "init_value",
    ),
    "inverse_init_nan": (lambda: gx.inverse_time_decay(NAN, 0.5), "init_value"),
    "piecewise_value_nan": (
        lambda: gx.piecewise_constant_schedule([5], [1.0, NAN]),
        r"values\[1\]",
    ),
    "cosine_init_nan": (lambda: gx.cosine_decay_schedule(NAN, 10), "init_value"),
    "cosine_init_inf": (lambda: gx.cosine_decay_schedule(INF, 10), "init_value"),
    "warmup_init_nan": (lambda: gx.warmup_cosine_decay_schedule(NAN, 1.0, 1, 10), "init_value"),
    "warmup_peak_nan": (lambda: gx.warmup_cosine_decay_schedule(0.0, NAN, 1, 10), "peak_value"),
    "one_cycle_peak_nan": (
        lambda: gx.one_cycle_schedule(transition_steps=10, peak_value=NAN),
        "peak_value",
    ),
    "sgdr_init_nan": (lambda: gx.sgdr_schedule(NAN, 10), "init_value"),
    # piecewise boundaries
    "piecewise_boundaries_equal": (
        lambda: gx.piecewise_constant_schedule([10, 10], [1.0, 0.5, 0.1]),
        "strictly increasing",
    ),
    "piecewise_boundaries_decreasing": (
        lambda: gx.piecewise_constant_schedule([20, 10], [1.0, 0.5, 0.1]),
        "strictly increasing",
    ),
    "piecewise_boundary_negative": (
        lambda: gx.piecewise_constant_schedule([-1], [1.0, 0.5]),
        "non-negative integers",
    ),
    "piecewise_boundary_fractional": (
        lambda: gx.piecewise_constant_schedule([2.5], [1.0, 0.5]),
        "integers",
    ),
    # mismatched lengths
    "piecewise_too_few_values": (
        lambda: gx.piecewise_constant_schedule([10, 20], [1.0, 0.5]),
        r"len\(values\) == len\(boundaries\) \+ 1",
    ),
    "piecewise_too_many_values": (
        lambda: gx.piecewise_constant_schedule([10], [1.0, 0.5, 0.1]),
        r"len\(values\) == len\(boundaries\) \+ 1",
    ),
    "join_too_few_schedules": (
        lambda: gx.join_schedules([gx.constant_schedule(1.0)], [5]),
        r"len\(schedules\) == len\(boundaries\) \+ 1",
    ),
    "join_too_many_schedules": (
        lambda: gx.join_schedules([gx.constant_schedule(1.0)] * 3, [5]),
        r"len\(schedules\) == len\(boundaries\) \+ 1",
    ),
    "join_boundaries_decreasing": (
        lambda: gx.join_schedules([gx.constant_schedule(1.0)] * 3, [5, 5]),
        "strictly increasing",
    ),
    # warmup must be shorter than the total length
    "warmup_equals_decay": (
        lambda: gx.warmup_cosine_decay_schedule(0.0, 1.0, 100, 100),
        "warmup_steps",
    ),
    "warmup_exceeds_decay": (
        lambda: gx.warmup_cosine_decay_schedule(0.0, 1.0, 150, 100),
        "warmup_steps",
    ),
    "warmup_negative": (lambda: gx.warmup_cosine_decay_schedule(0.0, 1.0, -1, 100), "warmup_steps"),
    # pct_start in the open interval (0, 1)
    "pct_start_zero": (
        lambda: gx.one_cycle_schedule(transition_steps=100, peak_value=1.0, pct_start=0.0),
        "pct_start",
    ),
    "pct_start_one": (
        lambda: gx.one_cycle_schedule(transition_steps=100, peak_value=1.0, pct_start=1.0),
        "pct_start",
    ),
    "pct_start_negative": (
        lambda: gx.one_cycle_schedule(transition_steps=100, peak_value=1.0, pct_start=-0.1),
        "pct_start",
    ),
    "pct_start_above_one": (
        lambda: gx.one_cycle_schedule(transition_steps=100, peak_value=1.0, pct_start=1.5),
        "pct_start",
    ),
    "pct_start_nan": (
        lambda: gx.one_cycle_schedule(transition_steps=100, peak_value=1.0, pct_start=NAN),
        "pct_start",
    ),
    "div_factor_zero": (
        lambda: gx.one_cycle_schedule(transition_steps=100, peak_value=1.0, div_factor=0.0),
        "div_factor",
    ),
    # cosine alpha in [0, 1]
    "cosine_alpha_negative": (lambda: gx.cosine_decay_schedule(1.0, 10, alpha=-0.1), "alpha"),
    "cosine_alpha_above_one": (lambda: gx.cosine_decay_schedule(1.0, 10, alpha=1.1), "alpha"),
    "cosine_alpha_nan": (lambda: gx.cosine_decay_schedule(1.0, 10, alpha=NAN), "alpha"),
    "cosine_exponent_zero": (lambda: gx.cosine_decay_schedule(1.0, 10, exponent=0.0), "exponent"),
    # sgdr period_mult: an int >= 1
    "sgdr_mult_zero": (lambda: gx.sgdr_schedule(1.0, 10, period_mult=0), "period_mult"),
    "sgdr_mult_negative": (lambda: gx.sgdr_schedule(1.0, 10, period_mult=-2), "period_mult"),
    "sgdr_mult_fractional": (lambda: gx.sgdr_schedule(1.0, 10, period_mult=1.5), "period_mult"),
    "sgdr_mult_float": (lambda: gx.sgdr_schedule(1.0, 10, period_mult=2.0), "period_mult"),
    "sgdr_mult_string": (lambda: gx.sgdr_schedule(1.0, 10, period_mult="2"), "period_mult"),
}
INVALID_IDS = list(INVALID)


@pytest.mark.parametrize("case_id", INVALID_IDS, ids=INVALID_IDS)
def test_invalid_hyperparameters_raise(case_id):
    build, match = INVALID[case_id]
    with pytest.raises(ValueError, match=match):
        build()


VALID_EDGES = {
    "cosine_alpha_zero": lambda: gx.cosine_decay_schedule(1.0, 10, alpha=0.0),
    "cosine_alpha_one": lambda: gx.cosine_decay_schedule(1.0, 10, alpha=1.0),
    "warmup_zero": lambda: gx.warmup_cosine_decay_schedule(0.0, 1.0, 0, 10),
    "warmup_one_less": lambda: gx.warmup_cosine_decay_schedule(0.0, 1.0, 9, 10),
    "pct_start_small": lambda: gx.one_cycle_schedule(
        transition_steps=100, peak_value=1.0, pct_start=0.01
    ),
    "pct_start_large": lambda: gx.one_cycle_schedule(
        transition_steps=100, peak_value=1.0, pct_start=0.99
    ),
    "sgdr_mult_one": lambda: gx.sgdr_schedule(1.0, 10, period_mult=1),
    "linear_begin_zero": lambda: gx.linear_schedule(1.0, 0.0, 1, 0),
    "piecewise_no_boundaries": lambda: gx.piecewise_constant_schedule([], [0.5]),
    "inverse_rate_zero": lambda: gx.inverse_time_decay(1.0, 0.0),
    "exp_end_without_bound": lambda: gx.exponential_decay(1.0, decay_rate=0.5, end_value=None),
}
VALID_EDGE_IDS = list(VALID_EDGES)


@pytest.mark.parametrize("case_id", VALID_EDGE_IDS, ids=VALID_EDGE_IDS)
def test_valid_edge_hyperparameters_accepted(case_id):
    sched = VALID_EDGES[case_id]()
    out = sched(jnp.asarray(3, jnp.int32))
    assert np.isfinite(float(out))


def test_join_rejects_non_callable():
    with pytest.raises(TypeError, match=r"schedules\[1\]"):
        gx.join_schedules([gx.constant_schedule(1.0), 0.5], [5])


def test_join_accepts_plain_callable():
    sched = gx.join_schedules(
        [lambda t: 2.0 * jnp.ones([], jnp.float32), gx.constant_schedule(0.5)], [3]
    )
    np.testing.assert_allclose(
        np.asarray(jax.vmap(sched)(jnp.arange(5, dtype=jnp.int32))),
        [2.0, 2.0, 2.0, 0.5, 0.5],
        **F32_TOL,
    )


# --------------------------------------------------------------------------------------
# Comparison with torch.optim.lr_scheduler: learning rates recorded by
# tests/reference/record_torch_schedules.py (torch is not a test dependency)

TORCH_SCHEDULES = json.loads(
    (pathlib.Path(__file__).parent / "reference" / "torch_schedules.json").read_text()
)["cases"]


@pytest.mark.parametrize("t_mult", [1, 2], ids=["mult1", "mult2"])
def test_sgdr_matches_torch_cosine_annealing_warm_restarts(t_mult):
    ref = np.asarray(TORCH_SCHEDULES[f"cosine_warm_restarts_mult{t_mult}"]["lrs"])
    with jax.enable_x64(True):
        sched = gx.sgdr_schedule(0.5, 10, period_mult=t_mult, end_value=0.01)
        ours = np.asarray(jax.vmap(sched)(jnp.arange(ref.size, dtype=jnp.int32)))
    # torch's chained (recursive) form accumulates a few ulps per step.
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_staircase_exponential_matches_torch_steplr():
    ref = np.asarray(TORCH_SCHEDULES["step_lr"]["lrs"])
    with jax.enable_x64(True):
        sched = gx.exponential_decay(0.5, decay_rate=0.3, transition_steps=7, staircase=True)
        ours = np.asarray(jax.vmap(sched)(jnp.arange(ref.size, dtype=jnp.int32)))
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_join_schedules_with_a_plain_function_passes_through_jit():
    # The lambda sat in a traced tuple: passing the transform to jit raised a TypeError.
    tx = gx.sgd(gx.join_schedules([lambda t: 0.1, gx.constant_schedule(0.01)], [5]))
    step = jax.jit(lambda tx, s, p: tx.update(p, s, p))
    p = jnp.ones(2, jnp.float32)
    s = tx.init(p)
    lrs = []
    for _ in range(7):
        u, s = step(tx, s, p)
        lrs.append(float(-u[0]))
    np.testing.assert_allclose(lrs, [0.1] * 5 + [0.01] * 2, rtol=1e-7)
    assert tx == tx and hash(tx) == hash(tx)


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), None, True, "3"])
def test_bad_boundaries_are_named(bad):
    # inf, NaN and None raised bare int() errors; True was taken for step 1.
    with pytest.raises(ValueError, match="piecewise_constant_schedule: boundaries must be"):
        gx.piecewise_constant_schedule([bad], [1.0, 0.1])
    with pytest.raises(TypeError, match="join_schedules: boundaries and schedules must be"):
        gx.join_schedules([gx.constant_schedule(1.0)], 3)

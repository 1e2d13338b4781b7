"""Tests for gradxform.losses against closed-form values computed independently.

Expected values are hand-computed numbers or plain numpy/math formulas written here,
never the function under test.

Tolerances: float64 results are compared at 1e-12 relative, float32 at 1e-6 relative.
Each loss is a handful of correctly-rounded ops (exp/log/log1p are accurate to ~1 ulp),
so the error is a few ulps: float64 ulp ~2.2e-16 and float32 ulp ~1.2e-7 leave
plenty of margin while still catching any formula error (those are >= 1e-3 here).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform.losses as losses

F32_RTOL = 1e-6
F64_RTOL = 1e-12
LOG2 = math.log(2.0)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def assert_close(actual, expected, *, rtol=F32_RTOL, atol=0.0):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_log_softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def np_softmax(x, axis=-1):
    return np.exp(np_log_softmax(x, axis))


# --------------------------------------------------------------------------------------
# Reductions and generic error handling

REDUCTIONS = ("none", "mean", "sum")

# One valid call per public function that takes `reduction`.
CALLS = {
    "squared_error": lambda r: losses.squared_error([1.0, 2.0], [0.0, 0.0], reduction=r),
    "l2_loss": lambda r: losses.l2_loss([1.0, 2.0], [0.0, 0.0], reduction=r),
    "huber_loss": lambda r: losses.huber_loss([1.0, 2.0], [0.0, 0.0], reduction=r),
    "sigmoid_binary_cross_entropy": lambda r: losses.sigmoid_binary_cross_entropy(
        [0.0, 1.0], [0.0, 1.0], reduction=r
    ),
    "softmax_cross_entropy": lambda r: losses.softmax_cross_entropy([[0.0, 1.0]], [1], reduction=r),
    "gaussian_nll": lambda r: losses.gaussian_nll([0.0], [1.0], [1.0], reduction=r),
    "bernoulli_log_likelihood": lambda r: losses.bernoulli_log_likelihood(
        [0.0, 1.0], [0.0, 1.0], reduction=r
    ),
    "categorical_log_likelihood": lambda r: losses.categorical_log_likelihood(
        [[0.0, 1.0]], [1], reduction=r
    ),
}


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("bad", ["MEAN", None])
def test_unknown_reduction_raises(name, bad):
    with pytest.raises(
        ValueError, match=r"reduction.*one of.*'none'.*'mean'.*'sum'.*got reduction="
    ):
        CALLS[name](bad)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_reductions_are_consistent(name):
    none = np.asarray(CALLS[name]("none"), np.float64)
    assert_close(CALLS[name]("mean"), none.mean())
    assert_close(CALLS[name]("sum"), none.sum())
    assert np.ndim(CALLS[name]("mean")) == 0 and np.ndim(CALLS[name]("sum")) == 0


@pytest.mark.parametrize(
    "fn",
    [losses.squared_error, losses.l2_loss, losses.huber_loss],
    ids=["squared_error", "l2_loss", "huber_loss"],
)
def test_regression_shape_mismatch_raises(fn):
    with pytest.raises(ValueError, match=r"predictions\.shape=\(3,\) and targets\.shape=\(3, 1\)"):
        fn(jnp.zeros(3), jnp.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"predictions\.shape=\(\) and targets\.shape=\(2,\)"):
        fn(1.0, jnp.zeros(2))


def test_mean_squared_error_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):
        losses.mean_squared_error(jnp.zeros((2, 3)), jnp.zeros(3))


# --------------------------------------------------------------------------------------
# squared_error / mean_squared_error / l2_loss


def test_squared_error_values_all_reductions():
    p, t = [1.0, 2.0, 3.0], [0.0, 0.0, 1.0]
    # (1, 4, 4): mean 3, sum 9.
    assert_close(losses.squared_error(p, t, reduction="none"), [1.0, 4.0, 4.0])
    assert_close(losses.squared_error(p, t), 3.0)
    assert_close(losses.squared_error(p, t, reduction="sum"), 9.0)


def test_squared_error_targets_none_means_zero():
    assert_close(losses.squared_error([-2.0, 3.0], reduction="none"), [4.0, 9.0])
    assert_close(losses.squared_error([-2.0, 3.0]), 6.5)


def test_mean_squared_error():
    p = np.array([[0.5, -1.0], [2.0, 4.0]], np.float32)
    t = np.array([[0.0, 1.0], [2.0, 1.0]], np.float32)
    # (0.25 + 4 + 0 + 9) / 4
    assert_close(losses.mean_squared_error(p, t), 13.25 / 4)


def test_l2_loss_values():
    p, t = [1.0, 2.0, 3.0], [0.0, 0.0, 1.0]
    assert_close(losses.l2_loss(p, t, reduction="none"), [0.5, 2.0, 2.0])
    assert_close(losses.l2_loss(p, t), 1.5)
    assert_close(losses.l2_loss(p, t, reduction="sum"), 4.5)
    assert_close(losses.l2_loss([3.0]), 4.5)


def test_l2_loss_gradient_is_residual():
    p = jnp.array([1.0, -2.0, 0.5])
    t = jnp.array([0.0, 1.0, 0.5])
    g = jax.grad(lambda x: losses.l2_loss(x, t, reduction="sum"))(p)
    assert_close(g, [1.0, -3.0, 0.0])


# --------------------------------------------------------------------------------------
# huber_loss


def test_huber_both_branches_delta_1():
    r = np.array([-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.0])
    # |r| <= 1: 0.5 r^2 ; |r| > 1: |r| - 0.5
    expected = [2.5, 0.5, 0.125, 0.0, 0.03125, 0.5, 1.5]
    assert_close(losses.huber_loss(r, reduction="none"), expected)
    assert_close(losses.huber_loss(r, np.zeros_like(r), reduction="sum"), sum(expected))
    assert_close(losses.huber_loss(r), sum(expected) / len(expected))


def test_huber_both_branches_delta_2_with_targets():
    p = np.array([5.0, 1.0, -1.0, 0.5])
    t = np.array([0.0, 0.0, 1.0, 3.0])
    # residuals 5, 1, -2, -2.5 with delta 2:
    # 2*(5-1)=8, 0.5, 0.5*4=2 (boundary: both formulas give 2), 2*(2.5-1)=3
    assert_close(losses.huber_loss(p, t, delta=2.0, reduction="none"), [8.0, 0.5, 2.0, 3.0])
    assert_close(losses.huber_loss(p, t, delta=2.0, reduction="sum"), 13.5)


def test_huber_matches_piecewise_formula_and_gradient():
    r = np.linspace(-4.0, 4.0, 33)
    delta = 1.5
    expected = np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
    with jax.enable_x64(True):
        x = jnp.asarray(r, jnp.float64)
        assert_close(losses.huber_loss(x, delta=delta, reduction="none"), expected, rtol=F64_RTOL)
        g = jax.grad(lambda v: losses.huber_loss(v, delta=delta, reduction="sum"))(x)
        assert_close(g, np.clip(r, -delta, delta), rtol=F64_RTOL)


@pytest.mark.parametrize("delta", [0.0, -1.0])
def test_huber_delta_must_be_positive(delta):
    with pytest.raises(ValueError, match=r"delta must be > 0, got delta="):
        losses.huber_loss(jnp.ones(2), delta=delta)


# --------------------------------------------------------------------------------------
# sigmoid_binary_cross_entropy / bernoulli_log_likelihood


def test_bce_zero_logits_is_log2_for_any_label():
    labels = np.array([0.0, 1.0, 0.3, 0.5])
    assert_close(
        losses.sigmoid_binary_cross_entropy(np.zeros(4), labels, reduction="none"),
        [LOG2] * 4,
    )
    assert_close(losses.sigmoid_binary_cross_entropy(np.zeros(4), labels), LOG2)
    assert_close(
        losses.sigmoid_binary_cross_entropy(np.zeros(4), labels, reduction="sum"), 4 * LOG2
    )


def test_bce_known_values():
    # x = log(3): sigmoid = 3/4. y=1 -> -log(3/4); y=0 -> -log(1/4) = log 4.
    x = np.full(3, math.log(3.0))
    y = np.array([1.0, 0.0, 0.5])
    expected = [math.log(4 / 3), math.log(4.0), 0.5 * (math.log(4 / 3) + math.log(4.0))]
    assert_close(losses.sigmoid_binary_cross_entropy(x, y, reduction="none"), expected)


def test_bce_matches_naive_formula_float64():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4)) * 4
    y = rng.uniform(size=(3, 4))
    s = np_sigmoid(x)
    expected = -(y * np.log(s) + (1 - y) * np.log(1 - s))
    with jax.enable_x64(True):
        out = losses.sigmoid_binary_cross_entropy(
            jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64), reduction="none"
        )
        assert out.dtype == jnp.float64
        assert_close(out, expected, rtol=F64_RTOL)
        assert_close(
            losses.sigmoid_binary_cross_entropy(jnp.asarray(x), jnp.asarray(y)),
            expected.mean(),
            rtol=F64_RTOL,
        )


def test_bce_large_logits_finite_and_exact():
    x = np.array([1000.0, 1000.0, -1000.0, -1000.0, 1000.0], np.float32)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.5], np.float32)
    # The log1p(exp(-1000)) term underflows to exactly 0, so these are exact.
    out = losses.sigmoid_binary_cross_entropy(x, y, reduction="none")
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(np.asarray(out), [0.0, 1000.0, 0.0, 1000.0, 500.0])
    g = jax.grad(lambda v: losses.sigmoid_binary_cross_entropy(v, y, reduction="sum"))(x)
    np.testing.assert_array_equal(np.asarray(g), [0.0, 1.0, 0.0, -1.0, 0.5])


def test_bce_gradient_is_sigmoid_minus_label():
    # Includes x == 0 exactly: autodiff through max/abs there would give -y, not 0.5 - y.
    x = np.array([-3.0, -0.5, 0.0, 0.0, 0.7, 4.0])
    y = np.array([0.0, 1.0, 0.0, 0.25, 1.0, 0.6])
    with jax.enable_x64(True):
        g = jax.grad(lambda v: losses.sigmoid_binary_cross_entropy(v, y, reduction="sum"))(
            jnp.asarray(x, jnp.float64)
        )
        assert_close(g, np_sigmoid(x) - y, rtol=F64_RTOL)
        g_mean = jax.grad(lambda v: losses.sigmoid_binary_cross_entropy(v, y))(
            jnp.asarray(x, jnp.float64)
        )
        assert_close(g_mean, (np_sigmoid(x) - y) / x.size, rtol=F64_RTOL)


def test_bce_integer_labels_are_cast():
    out = losses.sigmoid_binary_cross_entropy(
        jnp.zeros(2), jnp.array([0, 1], jnp.int32), reduction="none"
    )
    assert out.dtype == jnp.float32
    assert_close(out, [LOG2, LOG2])


def test_bce_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"logits\.shape=\(2, 3\) and labels\.shape=\(3,\)"):
        losses.sigmoid_binary_cross_entropy(jnp.zeros((2, 3)), jnp.zeros(3))


def test_bernoulli_log_likelihood_values():
    x = np.array([0.0, math.log(3.0), math.log(3.0), 1000.0, -1000.0])
    y = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    expected = [-LOG2, math.log(0.75), math.log(0.25), -1000.0, 0.0]
    out = losses.bernoulli_log_likelihood(x, y, reduction="none")
    assert_close(out, expected)
    assert np.all(np.asarray(out) <= 0)
    assert_close(losses.bernoulli_log_likelihood(x, y), np.mean(expected))
    assert_close(losses.bernoulli_log_likelihood(x, y, reduction="sum"), np.sum(expected))


def test_bernoulli_log_likelihood_shape_mismatch_names_targets():
    with pytest.raises(ValueError, match=r"logits\.shape=\(2,\) and targets\.shape=\(3,\)"):
        losses.bernoulli_log_likelihood(jnp.zeros(2), jnp.zeros(3))


# --------------------------------------------------------------------------------------
# softmax_cross_entropy / categorical_log_likelihood


def test_softmax_ce_zero_logits_is_log_num_classes():
    logits = np.zeros((2, 5))
    assert_close(losses.softmax_cross_entropy(logits, [0, 4], reduction="none"), [math.log(5)] * 2)
    assert_close(losses.softmax_cross_entropy(logits, [0, 4]), math.log(5))
    assert_close(losses.softmax_cross_entropy(logits, [0, 4], reduction="sum"), 2 * math.log(5))
    uniform = np.full((2, 5), 0.2)
    assert_close(losses.softmax_cross_entropy(logits, uniform), math.log(5))


def test_softmax_ce_known_values():
    # logits (0, log 2, log 3): softmax = (1, 2, 3) / 6.
    logits = np.array([[0.0, math.log(2.0), math.log(3.0)]] * 3)
    labels = np.array([0, 1, 2])
    expected = [math.log(6.0), math.log(3.0), math.log(2.0)]
    assert_close(losses.softmax_cross_entropy(logits, labels, reduction="none"), expected)
    onehot = np.eye(3)
    assert_close(losses.softmax_cross_entropy(logits, onehot, reduction="none"), expected)
    soft = np.array([[0.5, 0.5, 0.0]] * 3)
    assert_close(
        losses.softmax_cross_entropy(logits, soft, reduction="none"),
        [0.5 * (math.log(6.0) + math.log(3.0))] * 3,
    )


def test_softmax_ce_matches_numpy_float64_and_gradient():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 6)) * 3
    labels = rng.integers(0, 6, size=4)
    onehot = np.eye(6)[labels]
    expected = -np_log_softmax(logits)[np.arange(4), labels]
    with jax.enable_x64(True):
        x = jnp.asarray(logits, jnp.float64)
        out = losses.softmax_cross_entropy(x, jnp.asarray(labels), reduction="none")
        assert out.dtype == jnp.float64
        assert_close(out, expected, rtol=F64_RTOL)
        out_p = losses.softmax_cross_entropy(x, jnp.asarray(onehot), reduction="none")
        assert_close(out_p, expected, rtol=F64_RTOL)
        for lab in (jnp.asarray(labels), jnp.asarray(onehot)):
            g = jax.grad(losses.softmax_cross_entropy)(x, lab, reduction="sum")
            # atol: entries near 0 (softmax - onehot ~ 1e-3) still get the 1e-12 rtol
            # through the others; 1e-15 only absorbs cancellation in 1 - p.
            assert_close(g, np_softmax(logits) - onehot, rtol=F64_RTOL, atol=1e-15)


def test_softmax_ce_matches_scipy():
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 7)) * 5
    probs = rng.dirichlet(np.ones(7), size=3)
    expected = -(probs * special.log_softmax(logits, axis=-1)).sum(-1)
    with jax.enable_x64(True):
        out = losses.softmax_cross_entropy(
            jnp.asarray(logits, jnp.float64), jnp.asarray(probs, jnp.float64), reduction="none"
        )
        assert_close(out, expected, rtol=F64_RTOL)


def test_softmax_ce_large_logits_finite_and_exact():
    logits = np.array([[1000.0, 0.0, -1000.0]] * 3, np.float32)
    # The other exponentials underflow to exactly 0 after the max shift.
    out = losses.softmax_cross_entropy(logits, [0, 1, 2], reduction="none")
    np.testing.assert_array_equal(np.asarray(out), [0.0, 1000.0, 2000.0])
    out_p = losses.softmax_cross_entropy(logits, np.eye(3, dtype=np.float32), reduction="none")
    np.testing.assert_array_equal(np.asarray(out_p), [0.0, 1000.0, 2000.0])
    g = jax.grad(lambda v: losses.softmax_cross_entropy(v, jnp.array([1, 1, 1]), reduction="sum"))(
        jnp.asarray(logits)
    )
    np.testing.assert_array_equal(np.asarray(g), [[1.0, -1.0, 0.0]] * 3)


def test_softmax_ce_axis_argument():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 2, 3))  # classes on axis 0
    labels = rng.integers(0, 5, size=(2, 3))
    lp = np_log_softmax(logits, axis=0)
    expected = -np.take_along_axis(lp, labels[None], axis=0)[0]
    out = losses.softmax_cross_entropy(logits, labels, axis=0, reduction="none")
    assert out.shape == (2, 3)
    assert_close(out, expected)
    onehot = np.moveaxis(np.eye(5)[labels], -1, 0)
    assert_close(losses.softmax_cross_entropy(logits, onehot, axis=0, reduction="none"), expected)
    assert_close(losses.softmax_cross_entropy(logits, labels, axis=-3), expected.mean())


def test_softmax_ce_masked_class_with_zero_probability():
    logits = jnp.array([0.0, math.log(3.0), -jnp.inf])
    probs = jnp.array([1.0, 0.0, 0.0])
    # softmax over the finite classes = (1/4, 3/4, 0): loss = log 4.
    assert_close(losses.softmax_cross_entropy(logits, probs), math.log(4.0))
    g = jax.grad(lambda v: losses.softmax_cross_entropy(v, probs))(logits)
    assert_close(g, [0.25 - 1.0, 0.75, 0.0])
    # A fully padded row (every logit -inf, every probability 0) contributes 0; it was NaN.
    raw = jnp.array([[0.0, 1.0], [3.0, 1.0]])
    keep = jnp.array([[True, True], [False, False]])
    labels = jnp.array([[1.0, 0.0], [0.0, 0.0]])

    def loss(r):
        return losses.softmax_cross_entropy(jnp.where(keep, r, -jnp.inf), labels, reduction="sum")

    assert_close(loss(raw), math.log(1 + math.e))
    g = jax.grad(loss)(raw)
    assert bool(jnp.all(jnp.isfinite(g))) and bool(jnp.all(g[1] == 0))


def test_softmax_ce_integer_label_shape_errors():
    with pytest.raises(
        ValueError, match=r"integer labels must have shape \(2,\).*labels\.shape=\(2, 1\)"
    ):
        losses.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros((2, 1), jnp.int32))
    with pytest.raises(ValueError, match=r"integer labels must have shape \(3,\)"):
        losses.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32), axis=-2)


def test_softmax_ce_probability_label_shape_error():
    with pytest.raises(ValueError, match=r"expected shape \(2, 3\), got labels\.shape=\(2, 4\)"):
        losses.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros((2, 4)))


def test_softmax_ce_bad_axis_and_scalar_logits():
    with pytest.raises(ValueError, match=r"axis=2 is out of range"):
        losses.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32), axis=2)
    with pytest.raises(ValueError, match=r"at least one dimension"):
        losses.softmax_cross_entropy(jnp.float32(1.0), jnp.float32(1.0))


@pytest.mark.parametrize("bad", [[0, 3], [-1, 0]])
def test_softmax_ce_out_of_range_labels_raise_eagerly(bad):
    lo, hi = min(bad), max(bad)
    with pytest.raises(ValueError, match=rf"class ids in \[0, 3\), got values in \[{lo}, {hi}\]"):
        losses.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.array(bad))


def test_softmax_ce_out_of_range_labels_nan_under_jit():
    f = jax.jit(lambda x, y: losses.softmax_cross_entropy(x, y, reduction="none"))
    out = np.asarray(f(jnp.zeros((4, 3)), jnp.array([0, 3, -1, 2])))
    assert np.isnan(out[1]) and np.isnan(out[2])
    assert_close(out[[0, 3]], [math.log(3.0)] * 2)


def test_categorical_log_likelihood_autoregressive_shapes():
    batch, time, vocab = 2, 3, 4
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(batch, time, vocab)).astype(np.float32)
    labels = rng.integers(0, vocab, size=(batch, time))
    lp = np_log_softmax(logits)
    expected = np.take_along_axis(lp, labels[..., None], axis=-1)[..., 0]
    out = losses.categorical_log_likelihood(logits, labels, reduction="none")
    assert out.shape == (batch, time)
    assert_close(out, expected)
    assert np.all(np.asarray(out) <= 0)
    assert_close(losses.categorical_log_likelihood(logits, labels), expected.mean())
    assert_close(losses.categorical_log_likelihood(logits, labels, reduction="sum"), expected.sum())
    # Zero logits: each token has probability 1/vocab.
    assert_close(
        losses.categorical_log_likelihood(np.zeros((batch, time, vocab)), labels),
        -math.log(vocab),
    )


def test_categorical_log_likelihood_errors():
    with pytest.raises(ValueError, match=r"integer labels must have shape \(2, 3\)"):
        losses.categorical_log_likelihood(jnp.zeros((2, 3, 4)), jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match=r"\[0, 4\), got values in \[4, 4\]"):
        losses.categorical_log_likelihood(jnp.zeros((1, 4)), jnp.array([4]))


# --------------------------------------------------------------------------------------
# gaussian_nll


def test_gaussian_nll_known_values():
    m = np.array([0.0, 0.0, 1.0, 2.0])
    t = np.array([1.0, 0.0, 3.0, 2.0])
    v = np.array([1.0, 1.0, math.e, 4.0])
    # 0.5*(log v + r^2/v): 0.5*(0+1), 0, 0.5*(1 + 4/e), 0.5*log 4
    expected = np.array([0.5, 0.0, 0.5 * (1.0 + 4.0 / math.e), 0.5 * math.log(4.0)])
    assert_close(losses.gaussian_nll(m, t, v, reduction="none"), expected, atol=1e-7)
    assert_close(losses.gaussian_nll(m, t, v), expected.mean())
    assert_close(losses.gaussian_nll(m, t, v, reduction="sum"), expected.sum())
    assert_close(
        losses.gaussian_nll(m, t, v, full=True, reduction="none"),
        expected + HALF_LOG_2PI,
    )


def test_gaussian_nll_float64_matches_formula():
    rng = np.random.default_rng(5)
    m, t = rng.normal(size=(2, 3, 4))
    v = rng.uniform(0.1, 3.0, size=(3, 4))
    expected = 0.5 * (np.log(v) + (t - m) ** 2 / v) + HALF_LOG_2PI
    with jax.enable_x64(True):
        out = losses.gaussian_nll(
            jnp.asarray(m), jnp.asarray(t), jnp.asarray(v), full=True, reduction="none"
        )
        assert out.dtype == jnp.float64
        assert_close(out, expected, rtol=F64_RTOL)


@pytest.mark.parametrize("var_shape", [(3, 1), (3,)])
def test_gaussian_nll_shared_variance_shapes(var_shape):
    rng = np.random.default_rng(6)
    m, t = rng.normal(size=(2, 3, 2))
    v_col = rng.uniform(0.5, 2.0, size=(3, 1))
    # A (3,) variance is per row (torch's rule), not per column as numpy would align it.
    expected = 0.5 * (np.log(v_col) + (t - m) ** 2 / v_col)
    with jax.enable_x64(True):
        out = losses.gaussian_nll(
            jnp.asarray(m), jnp.asarray(t), jnp.asarray(v_col.reshape(var_shape)), reduction="none"
        )
        assert out.shape == (3, 2)
        assert_close(out, expected, rtol=F64_RTOL)


def test_gaussian_nll_clamps_variance_at_eps():
    eps = 1e-3
    # variance 0 and 1e-5 both act as eps: 0.5*(log eps + r^2/eps) with r = 0.1
    expected = 0.5 * (math.log(eps) + 0.01 / eps)
    with jax.enable_x64(True):
        out = losses.gaussian_nll(
            jnp.zeros(2), jnp.full(2, 0.1), jnp.array([0.0, 1e-5]), eps=eps, reduction="none"
        )
        assert_close(out, [expected, expected], rtol=F64_RTOL)
        # torch clamps under no_grad: the gradient reaches the raw variance as if it
        # were eps, d/dv = 0.5*(1/v - r^2/v^2) at v = eps.
        g = jax.grad(
            lambda v: losses.gaussian_nll(
                jnp.zeros(2), jnp.full(2, 0.1), v, eps=eps, reduction="sum"
            )
        )(jnp.array([1e-5, 2.0]))
        assert_close(
            g, [0.5 * (1 / eps - 0.01 / eps**2), 0.5 * (1 / 2.0 - 0.01 / 4.0)], rtol=F64_RTOL
        )


def test_gaussian_nll_gradient_wrt_mean():
    m = jnp.array([0.0, 1.0])
    t = jnp.array([1.0, -1.0])
    v = jnp.array([2.0, 0.5])
    g = jax.grad(lambda x: losses.gaussian_nll(x, t, v, reduction="sum"))(m)
    assert_close(g, [-(1.0 - 0.0) / 2.0, -(-1.0 - 1.0) / 0.5])


def test_gaussian_nll_errors():
    with pytest.raises(ValueError, match=r"variance must be non-negative, got a minimum of -0\.5"):
        losses.gaussian_nll(jnp.zeros(2), jnp.zeros(2), jnp.array([1.0, -0.5]))
    with pytest.raises(ValueError, match=r"mean\.shape=\(2,\) and targets\.shape=\(3,\)"):
        losses.gaussian_nll(jnp.zeros(2), jnp.zeros(3), jnp.ones(2))
    with pytest.raises(ValueError, match=r"variance must have shape .*got variance\.shape=\(3,\)"):
        losses.gaussian_nll(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.ones(3))


def test_gaussian_nll_negative_variance_not_checked_under_jit():
    f = jax.jit(lambda v: losses.gaussian_nll(jnp.zeros(1), jnp.zeros(1), v))
    # Clamped to eps, so finite; the point is that tracing does not raise.
    assert np.isfinite(f(jnp.array([-1.0])))


# --------------------------------------------------------------------------------------
# dtypes and jit, for every loss

# (name, fn(*arrays), inputs exactly representable in bfloat16, closed-form expected)
DTYPE_CASES = [
    ("squared_error", lambda a, b: losses.squared_error(a, b), ([1.5, -2.0], [0.5, 1.0]), 5.0),
    ("mean_squared_error", losses.mean_squared_error, ([1.5, -2.0], [0.5, 1.0]), 5.0),
    ("l2_loss", lambda a, b: losses.l2_loss(a, b), ([1.5, -2.0], [0.5, 1.0]), 2.5),
    ("huber_loss", lambda a, b: losses.huber_loss(a, b), ([1.5, -2.0], [0.5, 1.0]), 1.5),
    (
        "sigmoid_binary_cross_entropy",
        lambda a, b: losses.sigmoid_binary_cross_entropy(a, b),
        ([0.0, 0.0], [0.0, 1.0]),
        LOG2,
    ),
    (
        "bernoulli_log_likelihood",
        lambda a, b: losses.bernoulli_log_likelihood(a, b),
        ([0.0, 0.0], [0.0, 1.0]),
        -LOG2,
    ),
    (
        "softmax_cross_entropy",
        lambda a, b: losses.softmax_cross_entropy(a, b),
        ([[0.0, 0.0, 0.0, 0.0]], [[0.25, 0.25, 0.25, 0.25]]),
        math.log(4.0),
    ),
    (
        "categorical_log_likelihood",
        lambda a, b: losses.categorical_log_likelihood(a, b),
        ([[0.0, 0.0, 0.0, 0.0]], [[1.0, 0.0, 0.0, 0.0]]),
        -math.log(4.0),
    ),
    (
        "gaussian_nll",
        lambda a, b: losses.gaussian_nll(a, b, jnp.ones_like(a)),
        ([0.0, 0.0], [1.0, -1.0]),
        0.5,
    ),
]


@pytest.mark.parametrize("name, fn, inputs, expected", DTYPE_CASES, ids=[c[0] for c in DTYPE_CASES])
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_low_precision_inputs_give_float32(name, fn, inputs, expected, dtype):
    a, b = (jnp.asarray(x, dtype) for x in inputs)
    out = fn(a, b)
    assert out.dtype == jnp.float32
    assert_close(out, expected)


@pytest.mark.parametrize("name, fn, inputs, expected", DTYPE_CASES, ids=[c[0] for c in DTYPE_CASES])
def test_float64_stays_float64(name, fn, inputs, expected):
    with jax.enable_x64(True):
        a, b = (jnp.asarray(x, jnp.float64) for x in inputs)
        out = fn(a, b)
        assert out.dtype == jnp.float64
        assert_close(out, expected, rtol=F64_RTOL)


@pytest.mark.parametrize("name, fn, inputs, expected", DTYPE_CASES, ids=[c[0] for c in DTYPE_CASES])
def test_jit(name, fn, inputs, expected):
    a, b = (jnp.asarray(x, jnp.float32) for x in inputs)
    assert_close(jax.jit(fn)(a, b), expected)


def test_jit_with_integer_labels_and_static_reduction():
    f = jax.jit(losses.softmax_cross_entropy, static_argnames=("axis", "reduction"))
    out = f(jnp.zeros((2, 3)), jnp.array([0, 2]), reduction="none")
    assert_close(out, [math.log(3.0)] * 2)


def test_x64_is_not_enabled_globally():
    assert jnp.asarray(1.0).dtype == jnp.float32


# --------------------------------------------------------------------------------------
# Review fixes


def test_small_integer_label_dtypes():
    # num_classes wrapped in the label dtype (300 -> 44 in uint8): valid ids gave NaN.
    logits = jnp.arange(300.0) / 300.0
    lse = math.log(sum(math.exp(i / 300.0) for i in range(300)))
    for dtype in (jnp.uint8, jnp.int16, jnp.uint16):
        labels = jnp.asarray([200, 100], dtype)
        got = losses.softmax_cross_entropy(jnp.stack([logits, logits]), labels, reduction="none")
        assert_close(got, [lse - 200 / 300.0, lse - 100 / 300.0])


def test_fully_padded_row_has_a_finite_gradient():
    # Its value was already 0, but the gradient through log(0) was NaN for the batch.
    w = jnp.array([0.5, -0.5, 0.0])
    keep = jnp.array([[True, True, False], [False, False, False]])
    labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])

    def loss(w):
        logits = jnp.where(keep, jnp.stack([w, w]), -jnp.inf)
        return losses.softmax_cross_entropy(logits, labels, reduction="sum")

    s = 1 / (1 + math.exp(-1.0))  # softmax of (0.5, -0.5): (s, 1 - s)
    assert_close(loss(w), -math.log(s))
    assert_close(jax.grad(loss)(w), [s - 1, 1 - s, 0.0])


def test_bce_keeps_the_small_loss_of_a_confident_correct_prediction():
    # softplus(x) - x*y rounded x + tiny - x to 0: logit 20, label 1 gave 0, not 2.1e-9.
    x = jnp.array([17.0, 20.0, 30.0, -30.0])
    y = jnp.array([1.0, 1.0, 1.0, 0.0])
    want = [math.log1p(math.exp(-17.0)), math.log1p(math.exp(-20.0))]
    want += [math.log1p(math.exp(-30.0))] * 2
    assert_close(losses.sigmoid_binary_cross_entropy(x, y, reduction="none"), want)
    # Gradient sigmoid(x) - y, exact at 0 too.
    assert_close(
        jax.grad(lambda v: losses.sigmoid_binary_cross_entropy(v, jnp.ones(1)))(jnp.zeros(1)),
        [-0.5],
    )


def test_huber_gradient_at_an_infinite_residual():
    r = jnp.array([0.5, jnp.inf, -jnp.inf])
    g = jax.grad(lambda p: jnp.sum(losses.huber_loss(p, reduction="none")))(r)
    assert_close(g, [0.5, 1.0, -1.0])


def test_bad_inputs_are_refused():
    with pytest.raises(TypeError, match="losses take real inputs, got complex64"):
        losses.squared_error(jnp.asarray([1j], jnp.complex64))
    with pytest.raises(ValueError, match=r"delta must be a scalar, got shape \(3, 1\)"):
        losses.huber_loss(jnp.ones(3), delta=jnp.ones((3, 1)))
    with pytest.raises(ValueError, match=r"eps must be a scalar, got shape \(2, 1\)"):
        losses.gaussian_nll(jnp.zeros(3), jnp.ones(3), jnp.ones(3), eps=jnp.ones((2, 1)))
    with pytest.raises(TypeError, match="axis must be an integer"):
        losses.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 1]), axis=None)

"""Numeric cores of ``gradxform.losses``: stable kernels and input checks.

Private: ``losses`` holds the public functions and their conventions; this module holds
what they share (reductions, dtype and shape checks) and the numerically careful kernels
(log-softmax with padded rows, sigmoid cross-entropy with exact derivatives, clamped
variances), each written once.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ArrayLike = Any

_REDUCTIONS = ("none", "mean", "sum")

#
# The numeric cores (`_*_kernel`, `_log_prob_of_ids`, `_expected_log_prob`) are jitted,
# with validation kept outside in Python, because an eager call would otherwise compile
# and dispatch each op separately: several times slower for every new shape. Inside a
# caller's jit they are simply inlined.


def reduce(loss: jax.Array, reduction: str) -> jax.Array:
    """Apply ``reduction`` ("none" | "mean" | "sum") to an elementwise loss."""
    # isinstance first: `in` on a tuple compares with ==, which is ambiguous for arrays.
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got reduction={reduction!r}")
    if reduction == "mean":
        return jnp.mean(loss)
    if reduction == "sum":
        return jnp.sum(loss)
    return loss


def float_dtype(*arrays: jax.Array) -> Any:
    """The computation dtype: the inputs' common dtype, promoted to at least float32."""
    # Standard rules regardless of the global jax_numpy_dtype_promotion: mixing float
    # logits with integer labels is normal here, and the inputs are then cast explicitly.
    with jax.numpy_dtype_promotion("standard"):
        dtype = jnp.result_type(*arrays)
        if jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(f"losses take real inputs, got {dtype}")
        return jnp.promote_types(dtype, jnp.float32)


def check_scalar(name: str, value: Any) -> None:
    # A per-element value would broadcast against the loss and change its shape.
    if jnp.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}")


def is_concrete(x: Any) -> bool:
    """Whether values of ``x`` can be inspected now (i.e. we are not tracing it)."""
    return not isinstance(x, jax.core.Tracer)


def check_same_shape(a: jax.Array, a_name: str, b: jax.Array, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape, got "
            f"{a_name}.shape={a.shape} and {b_name}.shape={b.shape}"
        )


def residual(predictions: ArrayLike, targets: ArrayLike | None) -> jax.Array:
    """``predictions - targets`` (targets None means 0) in the computation dtype."""
    predictions = jnp.asarray(predictions)
    if targets is None:
        return predictions.astype(float_dtype(predictions))
    targets = jnp.asarray(targets)
    check_same_shape(predictions, "predictions", targets, "targets")
    dtype = float_dtype(predictions, targets)
    return predictions.astype(dtype) - targets.astype(dtype)


@jax.jit
def huber_kernel(r: jax.Array, delta: jax.Array) -> jax.Array:
    abs_r = jnp.abs(r)
    # One expression, no jnp.where: a discarded quadratic branch would give 0 * inf = NaN
    # in the gradient at an infinite residual. Equal to 0.5 r^2 for |r| <= delta and
    # delta (|r| - delta / 2) beyond; the gradient is r, then delta sign(r) (0 at r = 0).
    quadratic = jnp.minimum(abs_r, delta)
    return 0.5 * quadratic * quadratic + delta * (abs_r - quadratic)


def sigmoid_bce(logits: ArrayLike, labels: ArrayLike, labels_name: str) -> jax.Array:
    """Elementwise sigmoid binary cross-entropy, max(x,0) - x*y + log1p(exp(-|x|))."""
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    check_same_shape(logits, "logits", labels, labels_name)
    dtype = float_dtype(logits, labels)
    return _sigmoid_bce_kernel(logits.astype(dtype), labels.astype(dtype))


@jax.custom_jvp
def _sigmoid_bce_elementwise(x: jax.Array, y: jax.Array) -> jax.Array:
    # -(y log s + (1-y) log(1-s)) with s = sigmoid(x) equals softplus(x) - x*y; this
    # never forms log(0) for saturated logits, so +-1000 stays finite. Summed as
    # (max(x, 0) - x*y) + log1p(exp(-|x|)): the first part is exactly 0 for a confident
    # correct prediction, so its small loss is not lost to rounding against x.
    return (jnp.maximum(x, 0) - x * y) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@_sigmoid_bce_elementwise.defjvp
def _sigmoid_bce_jvp(primals, tangents):
    (x, y), (x_dot, y_dot) = primals, tangents
    # The exact derivatives: autodiff through max/abs at x == 0 takes d|x|/dx = 1 and
    # d max/dx = 1/2, which give -y instead of sigmoid(0) - y. d/dx = sigmoid(x) - y,
    # d/dy = -x.
    out = _sigmoid_bce_elementwise(x, y)
    return out, (jax.nn.sigmoid(x) - y) * x_dot - x * y_dot


_sigmoid_bce_kernel = jax.jit(_sigmoid_bce_elementwise)


def _log_softmax(x: jax.Array, axis: int) -> jax.Array:
    """log softmax along ``axis`` via the max-shifted log-sum-exp."""
    shift = jnp.max(x, axis=axis, keepdims=True)
    # An all -inf slice has a -inf max, and -inf - -inf is NaN; do not shift those. The
    # shift cancels exactly in the result, so it needs no gradient.
    shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, 0))
    shifted = x - shift
    total = jnp.sum(jnp.exp(shifted), axis=axis, keepdims=True)
    # Only an all -inf slice sums to 0 (elsewhere the max contributes exp(0) = 1): its
    # log-probabilities are -inf either way, and log(1) keeps its gradient finite.
    return shifted - jnp.log(jnp.where(total > 0, total, 1))


def categorical_log_prob(logits: ArrayLike, labels: ArrayLike, axis: int) -> jax.Array:
    """Per-example log softmax(logits)[labels] (integer labels) or sum(labels * log q)."""
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if logits.ndim == 0:
        raise ValueError("logits must have at least one dimension (the class axis)")
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"axis must be an integer (the class axis), got axis={axis!r}")
    if not -logits.ndim <= axis < logits.ndim:
        raise ValueError(f"axis={axis} is out of range for logits with shape {logits.shape}")
    axis = axis % logits.ndim
    num_classes = logits.shape[axis]

    if jnp.issubdtype(labels.dtype, jnp.integer):
        expected = logits.shape[:axis] + logits.shape[axis + 1 :]
        if labels.shape != expected:
            raise ValueError(
                f"integer labels must have shape {expected} (logits.shape="
                f"{logits.shape} without axis {axis}), got labels.shape={labels.shape}"
            )
        if is_concrete(labels) and labels.size:
            values = np.asarray(labels)
            lo, hi = int(values.min()), int(values.max())
            if lo < 0 or hi >= num_classes:
                raise ValueError(
                    f"integer labels must be class ids in [0, {num_classes}), got "
                    f"values in [{lo}, {hi}]"
                )
        return _log_prob_of_ids(logits.astype(float_dtype(logits)), labels, axis)

    if labels.shape != logits.shape:
        raise ValueError(
            f"probability labels must have the same shape as logits, expected shape "
            f"{logits.shape}, got labels.shape={labels.shape}"
        )
    dtype = float_dtype(logits, labels)
    return _expected_log_prob(logits.astype(dtype), labels.astype(dtype), axis)


@functools.partial(jax.jit, static_argnames="axis")
def _log_prob_of_ids(logits: jax.Array, labels: jax.Array, axis: int) -> jax.Array:
    num_classes = logits.shape[axis]
    if jnp.dtype(labels.dtype).itemsize < 4:
        # num_classes would wrap in uint8/int16 (300 -> 44): compare and index in int32.
        labels = labels.astype(jnp.int32)
    index = jnp.expand_dims(labels, axis)
    in_range = (index >= 0) & (index < num_classes)
    picked = jnp.take_along_axis(
        _log_softmax(logits, axis), jnp.clip(index, 0, num_classes - 1), axis=axis
    )
    # Traced labels cannot be range-checked; NaN makes a bad id loud rather than
    # silently reading a wrapped (negative) or clamped class.
    return jnp.squeeze(jnp.where(in_range, picked, jnp.nan), axis)


@functools.partial(jax.jit, static_argnames="axis")
def _expected_log_prob(logits: jax.Array, probs: jax.Array, axis: int) -> jax.Array:
    log_probs = _log_softmax(logits, axis)
    # A masked class (logit -inf) with probability 0 would give 0 * -inf = NaN; its true
    # contribution is 0. Zeroing log_probs (not the product) keeps gradients NaN-free.
    masked = (probs == 0) & jnp.isneginf(logits)  # (a row of only such classes: 0)
    return jnp.sum(probs * jnp.where(masked, 0, log_probs), axis=axis)


@jax.custom_jvp
def _clamp_min_straight_through(x: jax.Array, lo: jax.Array) -> jax.Array:
    return jnp.maximum(x, lo)


@_clamp_min_straight_through.defjvp
def _clamp_min_straight_through_jvp(primals, tangents):
    (x, lo), (x_dot, _) = primals, tangents
    # torch's GaussianNLLLoss clamps the variance under no_grad, so the gradient flows to
    # the variance as if it were not clamped; match that rather than zeroing it.
    return jnp.maximum(x, lo), x_dot


@functools.partial(jax.jit, static_argnames="full")
def gaussian_nll_kernel(
    m: jax.Array, t: jax.Array, variance: jax.Array, eps: jax.Array, *, full: bool
) -> jax.Array:
    v = _clamp_min_straight_through(variance, eps)
    loss = 0.5 * (jnp.log(v) + jnp.square(t - m) / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return loss


def variance_like(variance: jax.Array, mean_shape: tuple[int, ...]) -> jax.Array:
    """Accept torch's variance shapes: mean's shape, or its last dim as 1 or dropped."""
    if variance.shape == mean_shape:
        return variance
    if mean_shape:
        if variance.shape == mean_shape[:-1] + (1,):
            return variance
        if variance.shape == mean_shape[:-1]:
            # One variance shared along the last dim. Note numpy broadcasting would align
            # this shape with the *leading* dims instead; torch (and we) do not.
            return jnp.expand_dims(variance, -1)
        allowed = f"{mean_shape}, {mean_shape[:-1] + (1,)} or {mean_shape[:-1]}"
    else:
        allowed = f"{mean_shape}"
    raise ValueError(
        f"variance must have shape {allowed} for mean.shape={mean_shape}, got "
        f"variance.shape={variance.shape}"
    )

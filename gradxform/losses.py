"""Loss functions for regression and classification, with a torch-style ``reduction``.

Conventions shared by every loss here:

- Inputs are array-likes; math runs in at least float32
  (``jnp.promote_types(dtype, jnp.float32)``), so bfloat16/float16 inputs give a float32
  loss and float64 stays float64 when x64 is enabled.
- ``reduction`` is one of ``"none"`` (elementwise / per-example losses), ``"mean"``
  (default, like torch) or ``"sum"``. ``reduction="none"`` matches the corresponding
  optax function, which never reduces.
- Predictions and targets must have equal shapes; nothing is broadcast silently. The
  only exceptions are integer class labels (the class axis is dropped) and the
  ``variance`` of :func:`gaussian_nll` (torch's shorthand shapes).
- Logits of any finite size (e.g. +-1000) give finite, exact losses.

This module imports nothing from the rest of the package.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ArrayLike = Any

__all__ = [
    "squared_error",
    "mean_squared_error",
    "l2_loss",
    "huber_loss",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "gaussian_nll",
    "bernoulli_log_likelihood",
    "categorical_log_likelihood",
]

_REDUCTIONS = ("none", "mean", "sum")


# --------------------------------------------------------------------------------------
# Private helpers
#
# The numeric cores (`_*_kernel`, `_log_prob_of_ids`, `_expected_log_prob`) are jitted,
# with validation kept outside in Python, because an eager call would otherwise compile
# and dispatch each op separately: several times slower for every new shape. Inside a
# caller's jit they are simply inlined.


def _reduce(loss: jax.Array, reduction: str) -> jax.Array:
    """Apply ``reduction`` ("none" | "mean" | "sum") to an elementwise loss."""
    # isinstance first: `in` on a tuple compares with ==, which is ambiguous for arrays.
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got reduction={reduction!r}")
    if reduction == "mean":
        return jnp.mean(loss)
    if reduction == "sum":
        return jnp.sum(loss)
    return loss


def _float_dtype(*arrays: jax.Array) -> Any:
    """The computation dtype: the inputs' common dtype, promoted to at least float32."""
    # Standard rules regardless of the global jax_numpy_dtype_promotion: mixing float
    # logits with integer labels is normal here, and the inputs are then cast explicitly.
    with jax.numpy_dtype_promotion("standard"):
        dtype = jnp.result_type(*arrays)
        if jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(f"losses take real inputs, got {dtype}")
        return jnp.promote_types(dtype, jnp.float32)


def _check_scalar(name: str, value: Any) -> None:
    # A per-element value would broadcast against the loss and change its shape.
    if jnp.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}")


def _is_concrete(x: Any) -> bool:
    """Whether values of ``x`` can be inspected now (i.e. we are not tracing it)."""
    return not isinstance(x, jax.core.Tracer)


def _check_same_shape(a: jax.Array, a_name: str, b: jax.Array, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape, got "
            f"{a_name}.shape={a.shape} and {b_name}.shape={b.shape}"
        )


def _residual(predictions: ArrayLike, targets: ArrayLike | None) -> jax.Array:
    """``predictions - targets`` (targets None means 0) in the computation dtype."""
    predictions = jnp.asarray(predictions)
    if targets is None:
        return predictions.astype(_float_dtype(predictions))
    targets = jnp.asarray(targets)
    _check_same_shape(predictions, "predictions", targets, "targets")
    dtype = _float_dtype(predictions, targets)
    return predictions.astype(dtype) - targets.astype(dtype)


@jax.jit
def _huber_kernel(r: jax.Array, delta: jax.Array) -> jax.Array:
    abs_r = jnp.abs(r)
    # One expression, no jnp.where: a discarded quadratic branch would give 0 * inf = NaN
    # in the gradient at an infinite residual. Equal to 0.5 r^2 for |r| <= delta and
    # delta (|r| - delta / 2) beyond; the gradient is r, then delta sign(r) (0 at r = 0).
    quadratic = jnp.minimum(abs_r, delta)
    return 0.5 * quadratic * quadratic + delta * (abs_r - quadratic)


def _sigmoid_bce(logits: ArrayLike, labels: ArrayLike, labels_name: str) -> jax.Array:
    """Elementwise sigmoid binary cross-entropy, max(x,0) - x*y + log1p(exp(-|x|))."""
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    _check_same_shape(logits, "logits", labels, labels_name)
    dtype = _float_dtype(logits, labels)
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


def _categorical_log_prob(logits: ArrayLike, labels: ArrayLike, axis: int) -> jax.Array:
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
        if _is_concrete(labels) and labels.size:
            values = np.asarray(labels)
            lo, hi = int(values.min()), int(values.max())
            if lo < 0 or hi >= num_classes:
                raise ValueError(
                    f"integer labels must be class ids in [0, {num_classes}), got "
                    f"values in [{lo}, {hi}]"
                )
        return _log_prob_of_ids(logits.astype(_float_dtype(logits)), labels, axis)

    if labels.shape != logits.shape:
        raise ValueError(
            f"probability labels must have the same shape as logits, expected shape "
            f"{logits.shape}, got labels.shape={labels.shape}"
        )
    dtype = _float_dtype(logits, labels)
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
def _gaussian_nll_kernel(
    m: jax.Array, t: jax.Array, variance: jax.Array, eps: jax.Array, *, full: bool
) -> jax.Array:
    v = _clamp_min_straight_through(variance, eps)
    loss = 0.5 * (jnp.log(v) + jnp.square(t - m) / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return loss


def _variance_like(variance: jax.Array, mean_shape: tuple[int, ...]) -> jax.Array:
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


# --------------------------------------------------------------------------------------
# Regression losses


def squared_error(
    predictions: ArrayLike, targets: ArrayLike | None = None, *, reduction: str = "mean"
) -> jax.Array:
    """Squared error between predictions and targets.

    .. math:: \\ell = (p - t)^2

    Args:
      predictions: predicted values.
      targets: target values, same shape as ``predictions``; ``None`` means zeros.
      reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Returns:
      The elementwise loss for ``"none"``, else a scalar.

    Equivalent to torch ``nn.MSELoss(reduction=...)``; with ``reduction="none"``, to
    ``optax.squared_error``.
    """
    return _reduce(jnp.square(_residual(predictions, targets)), reduction)


def mean_squared_error(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Mean squared error, a named shorthand for ``squared_error(..., reduction="mean")``.

    .. math:: \\ell = \\frac{1}{n} \\sum_i (p_i - t_i)^2

    Args:
      predictions: predicted values.
      targets: target values, same shape as ``predictions``.

    Returns:
      A scalar.

    Equivalent to torch ``nn.MSELoss()``.
    """
    return squared_error(predictions, targets, reduction="mean")


def l2_loss(
    predictions: ArrayLike, targets: ArrayLike | None = None, *, reduction: str = "mean"
) -> jax.Array:
    """Half the squared error, whose gradient is exactly the residual ``p - t``.

    .. math:: \\ell = \\tfrac12 (p - t)^2

    Args:
      predictions: predicted values.
      targets: target values, same shape as ``predictions``; ``None`` means zeros.
      reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Returns:
      The elementwise loss for ``"none"``, else a scalar.

    With ``reduction="none"``, equivalent to ``optax.l2_loss``; equals
    ``0.5 * torch.nn.MSELoss(reduction=...)``.
    """
    return _reduce(0.5 * jnp.square(_residual(predictions, targets)), reduction)


def huber_loss(
    predictions: ArrayLike,
    targets: ArrayLike | None = None,
    *,
    delta: float = 1.0,
    reduction: str = "mean",
) -> jax.Array:
    """Huber loss: quadratic for small residuals, linear beyond ``delta``.

    .. math::
        \\ell = \\begin{cases} \\tfrac12 r^2 & |r| \\le \\delta \\\\
                               \\delta (|r| - \\tfrac12 \\delta) & |r| > \\delta
                \\end{cases}, \\qquad r = p - t

    Args:
      predictions: predicted values.
      targets: target values, same shape as ``predictions``; ``None`` means zeros.
      delta: where the loss switches from quadratic to linear; must be > 0.
      reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Returns:
      The elementwise loss for ``"none"``, else a scalar.

    Raises:
      ValueError: if a concrete ``delta`` is not > 0.

    Equivalent to torch ``nn.HuberLoss(reduction=..., delta=delta)``; with
    ``reduction="none"``, to ``optax.huber_loss(..., delta=delta)``.
    """
    _check_scalar("delta", delta)
    if _is_concrete(delta) and not np.all(np.asarray(delta) > 0):
        raise ValueError(f"delta must be > 0, got delta={delta!r}")
    r = _residual(predictions, targets)
    return _reduce(_huber_kernel(r, jnp.asarray(delta, dtype=r.dtype)), reduction)


def gaussian_nll(
    mean: ArrayLike,
    targets: ArrayLike,
    variance: ArrayLike,
    *,
    eps: float = 1e-6,
    full: bool = False,
    reduction: str = "mean",
) -> jax.Array:
    """Negative log-likelihood of ``targets`` under a Gaussian with predicted mean/variance.

    .. math::
        \\ell = \\tfrac12 \\left(\\log v + \\frac{(t - m)^2}{v}\\right)
                \\; [+ \\tfrac12 \\log 2\\pi \\text{ if full}], \\qquad
        v = \\max(\\mathrm{variance}, \\epsilon)

    Args:
      mean: predicted means.
      targets: observed values, same shape as ``mean``.
      variance: predicted variances (>= 0). Shape ``mean.shape``, or (as torch allows,
        for a variance shared along the last dim) ``mean.shape[:-1] + (1,)`` or
        ``mean.shape[:-1]``.
      eps: lower clamp on the variance, for stability.
      full: add the constant ``0.5 * log(2 pi)``.
      reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Returns:
      The elementwise loss (shape ``mean.shape``) for ``"none"``, else a scalar.

    Raises:
      ValueError: on a shape mismatch, or if a concrete ``variance`` has a negative
        entry. A traced variance cannot be checked; negative entries are then
        clamped to ``eps`` like any other value below it.

    Equivalent to torch ``nn.GaussianNLLLoss(full=full, eps=eps, reduction=...)``,
    including its gradient: like torch, the clamp is straight-through, so the gradient
    reaches a variance below ``eps`` as if evaluated at ``eps``.
    """
    mean, targets, variance = map(jnp.asarray, (mean, targets, variance))
    _check_same_shape(mean, "mean", targets, "targets")
    _check_scalar("eps", eps)
    variance = _variance_like(variance, mean.shape)
    if _is_concrete(variance) and variance.size:
        smallest = np.min(np.asarray(variance))
        if smallest < 0:
            raise ValueError(f"variance must be non-negative, got a minimum of {float(smallest)}")
    dtype = _float_dtype(mean, targets, variance)
    loss = _gaussian_nll_kernel(
        mean.astype(dtype),
        targets.astype(dtype),
        variance.astype(dtype),
        jnp.asarray(eps, dtype),
        full=bool(full),
    )
    return _reduce(loss, reduction)


# --------------------------------------------------------------------------------------
# Classification losses and log-likelihoods


def sigmoid_binary_cross_entropy(
    logits: ArrayLike, labels: ArrayLike, *, reduction: str = "mean"
) -> jax.Array:
    """Binary cross-entropy on logits, for independent (multi-label) binary targets.

    .. math::
        \\ell = -\\bigl(y \\log \\sigma(x) + (1 - y) \\log(1 - \\sigma(x))\\bigr)
              = \\max(x, 0) - x y + \\log(1 + e^{-|x|})

    The right-hand form is what is computed: it never overflows and stays exact for
    saturated logits (e.g. +-1000). Its gradient is ``sigmoid(x) - y``.

    Args:
      logits: unnormalized log-odds.
      labels: targets in [0, 1] (soft labels allowed; not checked), same shape as
        ``logits``. Integer/bool labels are cast to the float dtype.
      reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Returns:
      The elementwise loss for ``"none"``, else a scalar.

    Equivalent to torch ``nn.BCEWithLogitsLoss(reduction=...)``; with
    ``reduction="none"``, to ``optax.sigmoid_binary_cross_entropy``.
    """
    return _reduce(_sigmoid_bce(logits, labels, "labels"), reduction)


def softmax_cross_entropy(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, reduction: str = "mean"
) -> jax.Array:
    """Cross-entropy between ``softmax(logits)`` along ``axis`` and the labels.

    .. math:: \\ell = -\\sum_c y_c \\log \\mathrm{softmax}(x)_c

    computed with a max-shifted log-sum-exp, so any finite logits are safe. For integer
    labels ``k`` this is ``-log softmax(x)_k``. Its gradient is ``softmax(x) - y``.

    Args:
      logits: unnormalized log-probabilities; classes along ``axis``.
      labels: either integer class ids with shape ``logits.shape`` minus ``axis``, or
        (any float/bool dtype) probabilities / one-hot with the same shape as
        ``logits``. Classes with logit ``-inf`` and probability 0 contribute 0.
      axis: the class axis of ``logits``.
      reduction: ``"none"`` (per-example, shape ``logits.shape`` minus ``axis``),
        ``"mean"`` (default) or ``"sum"``.

    Returns:
      The per-example loss for ``"none"``, else a scalar.

    Raises:
      ValueError: if ``labels`` has the wrong shape, or if concrete integer labels lie
        outside ``[0, num_classes)``. Traced integer labels (under ``jit``/``vmap``)
        cannot be checked; an out-of-range id gives a NaN loss for that example.

    With integer labels, equivalent to torch ``nn.CrossEntropyLoss(reduction=...)``
    (no ``weight``, ``ignore_index`` or ``label_smoothing``); with probability labels,
    to torch's probability-target form. With ``reduction="none"``, equivalent to
    ``optax.softmax_cross_entropy`` / ``optax.softmax_cross_entropy_with_integer_labels``.
    """
    return _reduce(-_categorical_log_prob(logits, labels, axis), reduction)


def bernoulli_log_likelihood(
    logits: ArrayLike, targets: ArrayLike, *, reduction: str = "mean"
) -> jax.Array:
    """Log-likelihood of binary ``targets`` under Bernoulli(sigmoid(logits)).

    .. math::
        \\log p(y \\mid x) = y \\log \\sigma(x) + (1 - y) \\log(1 - \\sigma(x))
                          = x y - \\max(x, 0) - \\log(1 + e^{-|x|})

    This is a log-likelihood (values <= 0, higher is better): for maximum-likelihood
    training minimize its negative, which is :func:`sigmoid_binary_cross_entropy`.

    Args:
      logits: unnormalized log-odds.
      targets: observations in [0, 1] (soft allowed), same shape as ``logits``.
      reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Returns:
      The elementwise log-likelihood for ``"none"``, else a scalar.

    Equals ``-torch.nn.BCEWithLogitsLoss(reduction=...)`` and
    ``torch.distributions.Bernoulli(logits=x).log_prob(y)`` for ``"none"``.
    """
    return _reduce(-_sigmoid_bce(logits, targets, "targets"), reduction)


def categorical_log_likelihood(
    logits: ArrayLike, labels: ArrayLike, *, axis: int = -1, reduction: str = "mean"
) -> jax.Array:
    """Log-likelihood of class ``labels`` under Categorical(softmax(logits)).

    .. math:: \\log p(k \\mid x) = \\log \\mathrm{softmax}(x)_k

    E.g. for an autoregressive model, ``logits`` of shape (batch, time, vocab) and
    ``labels`` of shape (batch, time). This is a log-likelihood (values <= 0): it equals
    ``-softmax_cross_entropy(logits, labels, ...)``, which is what to minimize.

    Args:
      logits: unnormalized log-probabilities; classes along ``axis``.
      labels: integer class ids with shape ``logits.shape`` minus ``axis``. As in
        :func:`softmax_cross_entropy`, float labels of ``logits``' shape are also
        accepted and give the expected log-likelihood ``sum_c y_c log softmax(x)_c``.
      axis: the class axis of ``logits``.
      reduction: ``"none"`` (per-example), ``"mean"`` (default) or ``"sum"``.

    Returns:
      The per-example log-likelihood for ``"none"``, else a scalar.

    Raises:
      ValueError: as :func:`softmax_cross_entropy`.

    Equals ``torch.distributions.Categorical(logits=x).log_prob(k)`` for ``"none"``.
    """
    return _reduce(_categorical_log_prob(logits, labels, axis), reduction)

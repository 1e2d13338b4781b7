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

The numeric kernels live in the private ``_loss_kernels``; nothing else of the package
is imported.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._loss_kernels import (
    categorical_log_prob,
    check_same_shape,
    check_scalar,
    float_dtype,
    gaussian_nll_kernel,
    huber_kernel,
    is_concrete,
    reduce,
    residual,
    sigmoid_bce,
    variance_like,
)

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

    Example:
      >>> p, t = jnp.array([1.0, 2.0]), jnp.array([0.0, 4.0])
      >>> gx.squared_error(p, t), gx.squared_error(p, t, reduction="none")
      (Array(2.5, dtype=float32), Array([1., 4.], dtype=float32))
    """
    return reduce(jnp.square(residual(predictions, targets)), reduction)


def mean_squared_error(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Mean squared error, a named shorthand for ``squared_error(..., reduction="mean")``.

    .. math:: \\ell = \\frac{1}{n} \\sum_i (p_i - t_i)^2

    Args:
      predictions: predicted values.
      targets: target values, same shape as ``predictions``.

    Returns:
      A scalar.

    Equivalent to torch ``nn.MSELoss()``.

    Example:
      >>> gx.mean_squared_error(jnp.array([1.0, 2.0]), jnp.array([0.0, 4.0]))
      Array(2.5, dtype=float32)
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

    Example:
      >>> p = jnp.array([1.0, 2.0])
      >>> gx.l2_loss(p, jnp.array([0.0, 4.0]), reduction="sum")
      Array(2.5, dtype=float32)
      >>> jax.grad(lambda p: gx.l2_loss(p, reduction="sum"))(p)  # the residual
      Array([1., 2.], dtype=float32)
    """
    return reduce(0.5 * jnp.square(residual(predictions, targets)), reduction)


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
      delta: where the loss switches from quadratic to linear; must be > 0. Default 1.0
        (torch ``nn.HuberLoss``).
      reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Returns:
      The elementwise loss for ``"none"``, else a scalar.

    Raises:
      ValueError: if a concrete ``delta`` is not > 0.

    Equivalent to torch ``nn.HuberLoss(reduction=..., delta=delta)``; with
    ``reduction="none"``, to ``optax.huber_loss(..., delta=delta)``.

    Example:
      >>> gx.huber_loss(jnp.array([0.5, 3.0]), reduction="none")  # 0.5 r^2, |r| - 0.5
      Array([0.125, 2.5  ], dtype=float32)
    """
    check_scalar("delta", delta)
    if is_concrete(delta) and not np.all(np.asarray(delta) > 0):
        raise ValueError(f"delta must be > 0, got delta={delta!r}")
    r = residual(predictions, targets)
    return reduce(huber_kernel(r, jnp.asarray(delta, dtype=r.dtype)), reduction)


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
      eps: lower clamp on the variance, for stability. Default 1e-6 (torch
        ``nn.GaussianNLLLoss``).
      full: add the constant ``0.5 * log(2 pi)``. Default False (torch
        ``nn.GaussianNLLLoss``).
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

    Example:
      >>> gx.gaussian_nll(jnp.array([0.0, 0.0]), jnp.array([2.0, 1.0]), jnp.array([1.0, 1.0]))
      Array(1.25, dtype=float32)
    """
    mean, targets, variance = map(jnp.asarray, (mean, targets, variance))
    check_same_shape(mean, "mean", targets, "targets")
    check_scalar("eps", eps)
    variance = variance_like(variance, mean.shape)
    if is_concrete(variance) and variance.size:
        smallest = np.min(np.asarray(variance))
        if smallest < 0:
            raise ValueError(f"variance must be non-negative, got a minimum of {float(smallest)}")
    dtype = float_dtype(mean, targets, variance)
    loss = gaussian_nll_kernel(
        mean.astype(dtype),
        targets.astype(dtype),
        variance.astype(dtype),
        jnp.asarray(eps, dtype),
        full=bool(full),
    )
    return reduce(loss, reduction)


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

    Example:
      >>> logits, labels = jnp.array([0.0, 1000.0]), jnp.array([1.0, 1.0])
      >>> loss = gx.sigmoid_binary_cross_entropy(logits, labels, reduction="none")
      >>> [round(x, 4) for x in loss.tolist()]  # log 2, and ~0 for a confident hit
      [0.6931, 0.0]
    """
    return reduce(sigmoid_bce(logits, labels, "labels"), reduction)


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
      axis: the class axis of ``logits``. Default -1.
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

    Example:
      >>> logits = jnp.log(jnp.array([[0.25, 0.75], [0.5, 0.5]]))
      >>> loss = gx.softmax_cross_entropy(logits, jnp.array([1, 0]), reduction="none")
      >>> loss.round(4)  # -log 0.75, -log 0.5
      Array([0.2877, 0.6931], dtype=float32)
      >>> one_hot = jnp.array([[0.0, 1.0], [1.0, 0.0]])
      >>> bool(jnp.allclose(gx.softmax_cross_entropy(logits, one_hot), loss.mean()))
      True
    """
    return reduce(-categorical_log_prob(logits, labels, axis), reduction)


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

    Example:
      >>> ll = gx.bernoulli_log_likelihood(jnp.array([0.0]), jnp.array([1.0]))
      >>> round(float(ll), 4)  # log 1/2
      -0.6931
    """
    return reduce(-sigmoid_bce(logits, targets, "targets"), reduction)


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
      axis: the class axis of ``logits``. Default -1.
      reduction: ``"none"`` (per-example), ``"mean"`` (default) or ``"sum"``.

    Returns:
      The per-example log-likelihood for ``"none"``, else a scalar.

    Raises:
      ValueError: as :func:`softmax_cross_entropy`.

    Equals ``torch.distributions.Categorical(logits=x).log_prob(k)`` for ``"none"``.

    Example:
      >>> logits = jnp.log(jnp.array([[0.25, 0.75]]))
      >>> gx.categorical_log_likelihood(logits, jnp.array([0]), reduction="none").round(4)
      Array([-1.3863], dtype=float32)
    """
    return reduce(categorical_log_prob(logits, labels, axis), reduction)

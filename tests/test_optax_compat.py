"""Ported Optax calls: each one means the same in gradxform, raises, or is documented.

Code ported from Optax by renaming ``optax.`` to ``gx.`` (or from torch.optim) must never
run with a different meaning silently. Every row of the tables below is one ported call:

(a) ``Same``: gradxform's spelling of it gives Optax's numbers (a few update steps on a
    small tree, in float32 and in float64, or the values of a schedule);
(b) ``Raises``: the port, written as in Optax (positionally), raises a ``TypeError``;
    the Optax original is run too, to show it is a valid Optax call;
(c) ``Documented``: a known difference; the row of README.md's "Migrating from Optax"
    (or "from torch.optim") table that states it must exist, and ``check`` shows the
    difference is exactly the documented one.

Tolerances (``Same`` rows). float32: parameters are O(1) (|p| < 3, one ulp <= 2.4e-7)
and each of the 6 steps rounds its operations in a different order, hence 1e-6. Rules
with bias corrections 1 - b^t (Adam family, ema) add Optax's float32 rounding of them:
b2 = 0.999 is 0.99900001 in float32, so Optax's 1 - b2 is off by 1.3e-5 relative and its
update by ~6.5e-6 relative (gradxform computes 1 - b^t accurately in float32, see
``gradxform.optimizers._moments.bias_correction``): 2e-5 * lr more per step. float64: the
same arithmetic up to the order of operations, 1e-12 (measured <= 2e-14), except RAdam,
whose eps sits on the raw root (README: eps / sqrt(1 - b2^t) for Optax's eps): 1e-8
(measured 6e-10).
"""

from __future__ import annotations

import inspect
import pathlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

optax = pytest.importorskip("optax")
pytest.importorskip("optax.contrib")  # reduce_on_plateau lives there

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import gradxform as gx  # noqa: E402

README = (pathlib.Path(__file__).parents[1] / "README.md").read_text()


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, f"README.md has no section '## {title}'"
    return match.group(1)


FROM_OPTAX = _section("Migrating from Optax")
FROM_TORCH = _section("Migrating from torch.optim")

STEPS = 6
ATOL32 = 1e-6
ATOL64 = 1e-12


def standard_promotion():
    # Optax is not clean under the suite's strict dtype promotion (tests/conftest.py).
    return jax.numpy_dtype_promotion("standard")


# --------------------------------------------------------------------------------------
# Running transforms, schedules and losses


def _params(dtype):
    return {
        "w": jnp.array([[0.5, -1.0, 2.0], [1.5, -0.3, 0.8]], dtype),
        "b": jnp.array([0.1, -0.2, 0.3], dtype),
    }


def _grads(params, t):
    # Smooth, varied in sign and size, different at every step.
    return jax.tree_util.tree_map(lambda x: jnp.sin(3 * x + t) + 0.5 * x, params)


def trajectory(tx, dtype, steps=STEPS, apply=gx.apply_updates):
    """The params after each of ``steps`` jitted updates of ``tx``."""
    params = _params(dtype)
    state = tx.init(params)

    @jax.jit
    def step(params, state, t):
        updates, state = tx.update(_grads(params, t), state, params)
        return apply(params, updates), state

    out = []
    for t in range(steps):
        params, state = step(params, state, jnp.asarray(t, dtype))
        out.append(params)
    return out


def optax_trajectory(tx, dtype, steps=STEPS):
    with standard_promotion():
        return trajectory(tx, dtype, steps, apply=optax.apply_updates)


def assert_same_trajectory(ours, theirs, atol):
    assert len(ours) == len(theirs)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        for k in b:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=atol, err_msg=f"step {t}, {k}")


COUNTS = [0, 1, 5, 10, 15, 20, 37, 50, 99, 100, 150, 300]


def schedule_values(schedule):
    with standard_promotion():
        return np.array([float(schedule(jnp.asarray(t, jnp.int32))) for t in COUNTS])


# --------------------------------------------------------------------------------------
# The rows


@dataclass(frozen=True)
class Same:
    """(a) gradxform's spelling of the call gives Optax's numbers."""

    ours: Callable[[], Any]
    theirs: Callable[[], Any]
    kind: str = "transform"  # or "schedule"
    bias_corrected_lr: float = 0.0  # lr of a rule with 1 - b^t corrections (tolerance)
    atol32: float | None = None  # overrides the float32 tolerance, with its reason
    atol64: float = ATOL64
    steps: int = STEPS
    ours_strict: bool = True  # False when ours holds Optax pieces (not strict-clean)


@dataclass(frozen=True)
class Raises:
    """(b) the port raises a TypeError; ``theirs`` (the Optax original) runs."""

    port: Callable[[], Any]
    theirs: Callable[[], Any] | None = None  # None for torch.optim calls
    match: str | None = None


@dataclass(frozen=True)
class Documented:
    """(c) a documented difference: ``readme`` is in the migration table; ``check`` shows it."""

    readme: str
    check: Callable[[], None]
    torch: bool = False  # the row is in "Migrating from torch.optim"


MASK = {"w": True, "b": False}
LABELS = {"w": "adam", "b": "sgd"}
SGDR_PIECE = dict(init_value=1.0, peak_value=1.0, warmup_steps=1, decay_steps=50)


def _cond(t):
    return t % 2 == 0


SAME: dict[str, Same] = {
    # Named optimizers, as written in Optax where the meaning is the same.
    "optax.sgd(0.1)": Same(lambda: gx.sgd(0.1), lambda: optax.sgd(0.1)),
    "optax.sgd(0.1, 0.9)": Same(lambda: gx.sgd(0.1, 0.9), lambda: optax.sgd(0.1, 0.9)),
    "optax.sgd(0.1, 0.9, nesterov=True)": Same(
        lambda: gx.sgd(0.1, 0.9, nesterov=True), lambda: optax.sgd(0.1, 0.9, nesterov=True)
    ),
    "optax.sgd(schedule, 0.9)": Same(
        lambda: gx.sgd(gx.exponential_decay(0.1, transition_steps=2, decay_rate=0.5), 0.9),
        lambda: optax.sgd(optax.exponential_decay(0.1, 2, 0.5), 0.9),
        # Optax's schedules return float32 even under x64 (0.1 * 0.5**0.5 rounded to
        # float32: 1e-8 relative); ours are float64 there.
        atol64=1e-7,
    ),
    "optax.adam(1e-2)": Same(
        lambda: gx.adam(1e-2), lambda: optax.adam(1e-2), bias_corrected_lr=1e-2
    ),
    "optax.adam(1e-2, 0.8, 0.99, 1e-6)": Same(
        lambda: gx.adam(1e-2, 0.8, 0.99, 1e-6),
        lambda: optax.adam(1e-2, 0.8, 0.99, 1e-6),
        bias_corrected_lr=1e-2,
    ),
    "optax.adam(1e-2, eps_root=1e-6, nesterov=True)": Same(
        lambda: gx.adam(1e-2, eps_root=1e-6, nesterov=True),
        lambda: optax.adam(1e-2, eps_root=1e-6, nesterov=True),
        bias_corrected_lr=1e-2,
    ),
    "optax.adamw(1e-2, weight_decay=0.1)": Same(
        lambda: gx.adamw(1e-2, weight_decay=0.1),
        lambda: optax.adamw(1e-2, weight_decay=0.1),
        bias_corrected_lr=1e-2,
    ),
    "optax.adamw(1e-2, weight_decay=0.1, mask=...)": Same(
        lambda: gx.adamw(1e-2, weight_decay=0.1, weight_decay_mask=MASK),
        lambda: optax.adamw(1e-2, weight_decay=0.1, mask=MASK),
        bias_corrected_lr=1e-2,
    ),
    "optax.nadam(1e-2)": Same(
        lambda: gx.adam(1e-2, nesterov=True), lambda: optax.nadam(1e-2), bias_corrected_lr=1e-2
    ),
    "optax.radam(1e-2)": Same(
        # 10 steps: rho_t > 5 from step 6 on, so both branches run.
        lambda: gx.radam(1e-2),
        lambda: optax.radam(1e-2),
        # rho_t = rho_inf - 2 t b2^t / (1 - b2^t) cancels (1999 - 1993 at t = 6): Optax's
        # float32 error in 1 - b2^t (1.3e-5) grows ~300x in rho_t - 4, hence in the
        # rectified steps' scale (measured 4e-6 here).
        atol32=2e-5,
        atol64=1e-8,
        steps=10,
    ),
    "optax.adamax(1e-2, 0.8, 0.99, 1e-6)": Same(
        lambda: gx.adamax(1e-2, 0.8, 0.99, 1e-6),
        lambda: optax.adamax(1e-2, 0.8, 0.99, 1e-6),
        bias_corrected_lr=1e-2,
    ),
    "optax.adagrad(0.1)": Same(
        lambda: gx.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-7, eps_in_sqrt=True),
        lambda: optax.adagrad(0.1),
    ),
    "optax.adadelta(0.5, 0.9, 1e-6, 0.01)": Same(
        lambda: gx.adadelta(0.5, 0.9, 1e-6, 0.01), lambda: optax.adadelta(0.5, 0.9, 1e-6, 0.01)
    ),
    "optax.rmsprop(1e-2, 0.9, 1e-8)": Same(
        lambda: gx.rmsprop(1e-2, 0.9, 1e-8, eps_in_sqrt=True),
        lambda: optax.rmsprop(1e-2, 0.9, 1e-8),
    ),
    "optax.rmsprop(1e-2, 0.9, centered=True, momentum=0.9)": Same(
        lambda: gx.rmsprop(1e-2, 0.9, eps_in_sqrt=True, centered=True, momentum=0.9),
        lambda: optax.rmsprop(1e-2, 0.9, centered=True, momentum=0.9),
    ),
    "optax.lion(1e-3, 0.9, 0.99, weight_decay=0.1)": Same(
        lambda: gx.lion(1e-3, 0.9, 0.99, weight_decay=0.1),
        lambda: optax.lion(1e-3, 0.9, 0.99, weight_decay=0.1),
    ),
    # Primitives and wrappers.
    "optax.clip_by_global_norm(1.0)": Same(
        lambda: gx.clip_by_global_norm(1.0), lambda: optax.clip_by_global_norm(1.0)
    ),
    "optax.clip(0.5)": Same(lambda: gx.clip(0.5), lambda: optax.clip(0.5)),
    "optax.scale(-0.1)": Same(lambda: gx.scale(-0.1), lambda: optax.scale(-0.1)),
    # Learning-rate sign: scale_by_learning_rate multiplies by -lr, as Optax.
    "optax.scale_by_learning_rate(0.1)": Same(
        lambda: gx.scale_by_learning_rate(0.1), lambda: optax.scale_by_learning_rate(0.1)
    ),
    "optax.add_decayed_weights(0.1)": Same(
        lambda: gx.chain(gx.add_decayed_weights(0.1), gx.scale(-0.1)),
        lambda: optax.chain(optax.add_decayed_weights(0.1), optax.scale(-0.1)),
    ),
    "optax.scale_by_adam(0.9, 0.99, 1e-8, 1e-6)": Same(
        lambda: gx.chain(gx.scale_by_adam(0.9, 0.99, 1e-8, 1e-6), gx.scale(-0.01)),
        lambda: optax.chain(optax.scale_by_adam(0.9, 0.99, 1e-8, 1e-6), optax.scale(-0.01)),
        bias_corrected_lr=1e-2,
    ),
    "optax.scale_by_rms(0.9, 1e-8)": Same(
        lambda: gx.chain(gx.scale_by_rms(0.9, 1e-8, eps_in_sqrt=True), gx.scale(-0.01)),
        lambda: optax.chain(optax.scale_by_rms(0.9, 1e-8), optax.scale(-0.01)),
    ),
    "optax.scale_by_rss(0.1, 1e-7)": Same(
        lambda: gx.chain(gx.scale_by_rss(0.1, 1e-7, eps_in_sqrt=True), gx.scale(-0.01)),
        lambda: optax.chain(optax.scale_by_rss(0.1, 1e-7), optax.scale(-0.01)),
    ),
    "optax.scale_by_lion(0.9, 0.99)": Same(
        lambda: gx.chain(gx.scale_by_lion(0.9, 0.99), gx.scale(-0.01)),
        lambda: optax.chain(optax.scale_by_lion(0.9, 0.99), optax.scale(-0.01)),
    ),
    "optax.scale_by_adadelta(0.9, 1e-6)": Same(
        lambda: gx.chain(gx.scale_by_adadelta(0.9, 1e-6), gx.scale(-0.5)),
        lambda: optax.chain(optax.scale_by_adadelta(0.9, 1e-6), optax.scale(-0.5)),
    ),
    "optax.scale_by_adamax(0.9, 0.999, 1e-8)": Same(
        lambda: gx.chain(gx.scale_by_adamax(0.9, 0.999, 1e-8), gx.scale(-0.01)),
        lambda: optax.chain(optax.scale_by_adamax(0.9, 0.999, 1e-8), optax.scale(-0.01)),
        bias_corrected_lr=1e-2,
    ),
    "optax.ema(0.9)": Same(
        lambda: gx.chain(gx.ema(0.9), gx.scale(-0.1)),
        lambda: optax.chain(optax.ema(0.9), optax.scale(-0.1)),
        bias_corrected_lr=0.1,
    ),
    "optax.scale_by_sign()": Same(
        lambda: gx.chain(gx.scale_by_sign(), gx.scale(-0.1)),
        lambda: optax.chain(optax.scale_by_sign(), optax.scale(-0.1)),
    ),
    "optax.centralize()": Same(
        lambda: gx.chain(gx.centralize(), gx.scale(-0.1)),
        lambda: optax.chain(optax.centralize(), optax.scale(-0.1)),
    ),
    "optax.masked(optax.adam(0.1), mask)": Same(
        lambda: gx.masked(gx.adam(0.1), MASK),
        lambda: optax.masked(optax.adam(0.1), MASK),
        bias_corrected_lr=0.1,
    ),
    "optax.partition(transforms, param_labels)": Same(
        lambda: gx.partition({"adam": gx.adam(0.1), "sgd": gx.sgd(0.1)}, LABELS),
        lambda: optax.partition({"adam": optax.adam(0.1), "sgd": optax.sgd(0.1)}, LABELS),
        bias_corrected_lr=0.1,
    ),
    "optax.apply_if_finite(optax.adam(0.1), 3)": Same(
        lambda: gx.apply_if_finite(gx.adam(0.1), 3),
        lambda: optax.apply_if_finite(optax.adam(0.1), 3),
        bias_corrected_lr=0.1,
    ),
    "optax.conditionally_transform(optax.sgd(0.1, 0.9), fn)": Same(
        lambda: gx.conditionally_transform(gx.sgd(0.1, 0.9), _cond),
        lambda: optax.conditionally_transform(optax.sgd(0.1, 0.9), _cond),
    ),
    "optax.chain(clip_by_global_norm, adamw(cosine_decay_schedule))": Same(
        lambda: gx.chain(
            gx.clip_by_global_norm(1.0),
            gx.adamw(gx.cosine_decay_schedule(1e-2, 10), weight_decay=1e-4),
        ),
        lambda: optax.chain(
            optax.clip_by_global_norm(1.0),
            optax.adamw(optax.cosine_decay_schedule(1e-2, 10), weight_decay=1e-4),
        ),
        bias_corrected_lr=1e-2,
    ),
    "optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)), Optax piece kept": Same(
        lambda: gx.chain(optax.clip_by_global_norm(1.0), gx.adam(1e-2)),
        lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)),
        bias_corrected_lr=1e-2,
        ours_strict=False,
    ),
    # Schedules: `count` is the number of updates already applied, in both.
    "optax.constant_schedule(0.3)": Same(
        lambda: gx.constant_schedule(0.3), lambda: optax.constant_schedule(0.3), "schedule"
    ),
    "optax.linear_schedule(1.0, 0.1, 100, 10)": Same(
        lambda: gx.linear_schedule(1.0, 0.1, 100, 10),
        lambda: optax.linear_schedule(1.0, 0.1, 100, 10),
        "schedule",
    ),
    "optax.polynomial_schedule(1.0, 0.1, 2, 100, 10)": Same(
        lambda: gx.polynomial_schedule(1.0, 0.1, 2, 100, 10),
        lambda: optax.polynomial_schedule(1.0, 0.1, 2, 100, 10),
        "schedule",
    ),
    "optax.exponential_decay(1e-2, 100, 0.5)": Same(
        lambda: gx.exponential_decay(1e-2, transition_steps=100, decay_rate=0.5),
        lambda: optax.exponential_decay(1e-2, 100, 0.5),
        "schedule",
    ),
    "optax.exponential_decay(1e-2, 10, 0.5, 5, True, 1e-3)": Same(
        lambda: gx.exponential_decay(
            1e-2,
            transition_steps=10,
            decay_rate=0.5,
            transition_begin=5,
            staircase=True,
            end_value=1e-3,
        ),
        lambda: optax.exponential_decay(1e-2, 10, 0.5, 5, True, 1e-3),
        "schedule",
    ),
    "optax.cosine_decay_schedule(1.0, 100, 0.1, 2.0)": Same(
        lambda: gx.cosine_decay_schedule(1.0, 100, 0.1, 2.0),
        lambda: optax.cosine_decay_schedule(1.0, 100, 0.1, 2.0),
        "schedule",
    ),
    "optax.warmup_cosine_decay_schedule(0.0, 1.0, 10, 100, 0.01)": Same(
        lambda: gx.warmup_cosine_decay_schedule(0.0, 1.0, 10, 100, 0.01),
        lambda: optax.warmup_cosine_decay_schedule(0.0, 1.0, 10, 100, 0.01),
        "schedule",
    ),
    "optax.join_schedules([linear, cosine], [10])": Same(
        lambda: gx.join_schedules(
            [gx.linear_schedule(0.0, 1.0, 10), gx.cosine_decay_schedule(1.0, 90)], [10]
        ),
        lambda: optax.join_schedules(
            [optax.linear_schedule(0.0, 1.0, 10), optax.cosine_decay_schedule(1.0, 90)], [10]
        ),
        "schedule",
    ),
    "optax.piecewise_constant_schedule(1.0, {10: 0.5, 20: 0.5})": Same(
        lambda: gx.piecewise_constant_schedule([10, 20], [1.0, 0.5, 0.25]),
        lambda: optax.piecewise_constant_schedule(1.0, {10: 0.5, 20: 0.5}),
        "schedule",
    ),
    "optax.cosine_onecycle_schedule(100, 1.0)": Same(
        lambda: gx.one_cycle_schedule(transition_steps=100, peak_value=1.0),
        lambda: optax.cosine_onecycle_schedule(100, 1.0),
        "schedule",
    ),
    # Issue 16's optimizers that Optax has too.
    "optax.adabelief(0.05)": Same(
        lambda: gx.adabelief(0.05), lambda: optax.adabelief(0.05), bias_corrected_lr=0.05
    ),
    "optax.yogi(0.05)": Same(
        lambda: gx.yogi(0.05), lambda: optax.yogi(0.05), bias_corrected_lr=0.05
    ),
    "optax.adan(0.05, 0.9, 0.5, 0.99, 1e-8, 1e-8)": Same(
        lambda: gx.adan(0.05, 0.9, 0.5, 0.99, 1e-8, 1e-8),
        lambda: optax.adan(0.05, 0.9, 0.5, 0.99, 1e-8, 1e-8),
        bias_corrected_lr=0.05,
    ),
    "optax.sm3(0.1, 0.9)": Same(lambda: gx.sm3(0.1, 0.9, eps=1e-8), lambda: optax.sm3(0.1, 0.9)),
    "optax.lamb(1e-2, weight_decay=0.1, mask=...)": Same(
        lambda: gx.lamb(1e-2, weight_decay=0.1, weight_decay_mask=MASK),
        lambda: optax.lamb(1e-2, weight_decay=0.1, mask=MASK),
        bias_corrected_lr=1e-2,
    ),
    "optax.lars(0.5, trust_coefficient=0.02, trust_ratio_mask=...)": Same(
        lambda: gx.lars(0.5, trust_coefficient=0.02, trust_ratio_mask=MASK),
        lambda: optax.lars(0.5, trust_coefficient=0.02, trust_ratio_mask=MASK),
    ),
    "optax.novograd(1e-2, 0.9, 0.25, 1e-6, weight_decay=0.1)": Same(
        lambda: gx.novograd(1e-2, 0.9, 0.25, 1e-6, weight_decay=0.1),
        lambda: optax.novograd(1e-2, 0.9, 0.25, 1e-6, weight_decay=0.1),
    ),
    # The ratio alone makes params grow geometrically (to ~12 in 6 steps: 1 float32 ulp
    # is 1e-6 there), so it is chained with a small step.
    "optax.scale_by_trust_ratio()": Same(
        lambda: gx.chain(gx.scale_by_trust_ratio(), gx.scale(-0.1)),
        lambda: optax.chain(optax.scale_by_trust_ratio(), optax.scale(-0.1)),
    ),
}


RAISES: dict[str, Raises] = {
    # Optax's positional order, ported by renaming: each would mean something else here.
    "optax.exponential_decay(1e-2, 100, 0.5)": Raises(
        lambda: gx.exponential_decay(1e-2, 100, 0.5),
        lambda: optax.exponential_decay(1e-2, 100, 0.5),
    ),
    "optax.lbfgs(1.0)": Raises(lambda: gx.lbfgs(1.0), lambda: optax.lbfgs(1.0)),
    "optax.adam(1e-2, 0.9, 0.999, 1e-8, 1e-6)": Raises(
        lambda: gx.adam(1e-2, 0.9, 0.999, 1e-8, 1e-6),
        lambda: optax.adam(1e-2, 0.9, 0.999, 1e-8, 1e-6),
    ),
    "optax.adamw(1e-2, 0.9, 0.999, 1e-8, 0.0, None, 1e-4)": Raises(
        lambda: gx.adamw(1e-2, 0.9, 0.999, 1e-8, 0.0, None, 1e-4),
        lambda: optax.adamw(1e-2, 0.9, 0.999, 1e-8, 0.0, None, 1e-4),
    ),
    "optax.amsgrad(1e-2, 0.9, 0.999, 1e-8, 1e-6)": Raises(
        lambda: gx.amsgrad(1e-2, 0.9, 0.999, 1e-8, 1e-6),
        lambda: optax.amsgrad(1e-2, 0.9, 0.999, 1e-8, 1e-6),
    ),
    "optax.nadam(1e-2, 0.9, 0.999, 1e-8, 1e-6)": Raises(
        lambda: gx.nadam(1e-2, 0.9, 0.999, 1e-8, 1e-6),
        lambda: optax.nadam(1e-2, 0.9, 0.999, 1e-8, 1e-6),
    ),
    "optax.radam(1e-2, 0.9, 0.999, 1e-8, 0.0, 5.0)": Raises(
        lambda: gx.radam(1e-2, 0.9, 0.999, 1e-8, 0.0, 5.0),
        lambda: optax.radam(1e-2, 0.9, 0.999, 1e-8, 0.0, 5.0),
    ),
    "optax.sgd(0.1, 0.9, True)": Raises(
        lambda: gx.sgd(0.1, 0.9, True), lambda: optax.sgd(0.1, 0.9, True)
    ),
    "optax.adagrad(0.1, 0.1, 1e-7)": Raises(
        lambda: gx.adagrad(0.1, 0.1, 1e-7), lambda: optax.adagrad(0.1, 0.1, 1e-7)
    ),
    "optax.rmsprop(1e-2, 0.9, 1e-8, 0.1)": Raises(
        lambda: gx.rmsprop(1e-2, 0.9, 1e-8, 0.1), lambda: optax.rmsprop(1e-2, 0.9, 1e-8, 0.1)
    ),
    "optax.lion(1e-3, 0.9, 0.99, None, 1e-3)": Raises(
        lambda: gx.lion(1e-3, 0.9, 0.99, None, 1e-3),
        lambda: optax.lion(1e-3, 0.9, 0.99, None, 1e-3),
    ),
    "optax.scale_by_adam(0.9, 0.999, 1e-8, 0.0, jnp.bfloat16)": Raises(
        lambda: gx.scale_by_adam(0.9, 0.999, 1e-8, 0.0, jnp.bfloat16),
        lambda: optax.scale_by_adam(0.9, 0.999, 1e-8, 0.0, jnp.bfloat16),
    ),
    "optax.scale_by_radam(0.9, 0.999, 1e-8, 0.0)": Raises(
        lambda: gx.scale_by_radam(0.9, 0.999, 1e-8, 0.0),
        lambda: optax.scale_by_radam(0.9, 0.999, 1e-8, 0.0),
    ),
    "optax.scale_by_rms(0.9, 1e-8, 0.1)": Raises(
        lambda: gx.scale_by_rms(0.9, 1e-8, 0.1), lambda: optax.scale_by_rms(0.9, 1e-8, 0.1)
    ),
    "optax.add_noise(0.01, 0.55, 0)": Raises(
        lambda: gx.add_noise(0.01, 0.55, 0), lambda: optax.add_noise(0.01, 0.55, 0)
    ),
    "optax.conditionally_transform(optax.sgd(0.1), fn, True)": Raises(
        lambda: gx.conditionally_transform(gx.sgd(0.1), _cond, True),
        lambda: optax.conditionally_transform(optax.sgd(0.1), _cond, True),
    ),
    "optax.lookahead(optax.sgd(0.1), 5, 0.5, True)": Raises(
        lambda: gx.lookahead(gx.sgd(0.1), 5, 0.5, True),
        lambda: optax.lookahead(optax.sgd(0.1), 5, 0.5, True),
    ),
    "optax.contrib.reduce_on_plateau(0.5, 2, 1e-4, 0.0, 0, 3)": Raises(
        lambda: gx.reduce_on_plateau(0.5, 2, 1e-4, 0.0, 0, 3),
        lambda: optax.contrib.reduce_on_plateau(0.5, 2, 1e-4, 0.0, 0, 3),
    ),
    "optax.softmax_cross_entropy(logits, labels, -1)": Raises(
        lambda: gx.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.ones((2, 3)) / 3, -1),
        lambda: optax.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.ones((2, 3)) / 3, -1),
    ),
    # Positions that hold another kind of value in Optax: refused by validation.
    "optax.piecewise_constant_schedule(0.1, {100: 0.5})": Raises(
        lambda: gx.piecewise_constant_schedule(0.1, {100: 0.5}),
        lambda: optax.piecewise_constant_schedule(0.1, {100: 0.5}),
        match="must be sequences",
    ),
    "optax.sgdr_schedule([cosine kwargs, ...])": Raises(
        lambda: gx.sgdr_schedule([SGDR_PIECE, SGDR_PIECE]),
        lambda: optax.sgdr_schedule([SGDR_PIECE, SGDR_PIECE]),
    ),
    "optax.freeze(mask)": Raises(
        lambda: gx.freeze({"w": True, "b": False}),
        lambda: optax.freeze({"w": True, "b": False}),
        match="freeze",
    ),
    # torch.optim's positional order (after dropping params). Adagrad's second argument is
    # lr_decay in torch but initial_accumulator_value in Optax: it cannot be positional.
    "torch.optim.SGD(params, 0.1, 0.9, 0.0, 1e-4)": Raises(lambda: gx.sgd(0.1, 0.9, 0.0, 1e-4)),
    "torch.optim.Adam(params, 1e-3, (0.9, 0.999))": Raises(
        lambda: gx.adam(1e-3, (0.9, 0.999)), match="b1 must be a real number"
    ),
    "torch.optim.Adagrad(params, 1e-2, 0.01)": Raises(lambda: gx.adagrad(1e-2, 0.01)),
    "torch.optim.RMSprop(params, 1e-2, 0.99, 1e-8, 1e-4)": Raises(
        lambda: gx.rmsprop(1e-2, 0.99, 1e-8, 1e-4)
    ),
    "torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, 1000)": Raises(
        lambda: gx.one_cycle_schedule(0.1, 1000)
    ),
    "optax.adan(1e-2, 0.98, 0.92, 0.99, 1e-8, 0.0, 1e-4)": Raises(
        lambda: gx.adan(1e-2, 0.98, 0.92, 0.99, 1e-8, 0.0, 1e-4),
        lambda: optax.adan(1e-2, 0.98, 0.92, 0.99, 1e-8, 0.0, 1e-4),
    ),
    "optax.scale_by_yogi(0.9, 0.999, 1e-3, 0.0, 1e-6)": Raises(
        lambda: gx.scale_by_yogi(0.9, 0.999, 1e-3, 0.0, 1e-6),
        lambda: optax.scale_by_yogi(0.9, 0.999, 1e-3, 0.0, 1e-6),
    ),
    "optax.scale_by_sm3(0.9)": Raises(
        lambda: gx.scale_by_sm3(0.9), lambda: optax.scale_by_sm3(0.9)
    ),
    "optax.lamb(1e-2, 0.9, 0.999, 1e-6, 0.0, 1e-4)": Raises(
        lambda: gx.lamb(1e-2, 0.9, 0.999, 1e-6, 0.0, 1e-4),
        lambda: optax.lamb(1e-2, 0.9, 0.999, 1e-6, 0.0, 1e-4),
    ),
    "optax.lars(0.1, 1e-4)": Raises(lambda: gx.lars(0.1, 1e-4), lambda: optax.lars(0.1, 1e-4)),
    "optax.novograd(1e-2, 0.9, 0.25, 1e-6, 0.0, 1e-3)": Raises(
        lambda: gx.novograd(1e-2, 0.9, 0.25, 1e-6, 0.0, 1e-3),
        lambda: optax.novograd(1e-2, 0.9, 0.25, 1e-6, 0.0, 1e-3),
    ),
}


def _check_adamw_default():
    # The only difference is the default decay: Optax's adamw with torch's 1e-2 is ours.
    assert_same_trajectory(
        trajectory(gx.adamw(1e-2), jnp.float32),
        optax_trajectory(optax.adamw(1e-2, weight_decay=1e-2), jnp.float32),
        ATOL32 + 2e-5 * 1e-2 * STEPS,
    )
    assert gx.adamw(1e-2).add_decayed_weights.weight_decay == 1e-2
    assert inspect.signature(optax.adamw).parameters["weight_decay"].default == 1e-4


def _check_lion_default():
    assert_same_trajectory(
        trajectory(gx.lion(1e-3), jnp.float32),
        optax_trajectory(optax.lion(1e-3, weight_decay=0.0), jnp.float32),
        ATOL32,
    )
    ours = trajectory(gx.lion(1e-3), jnp.float32)[-1]["w"]
    theirs = optax_trajectory(optax.lion(1e-3), jnp.float32)[-1]["w"]
    assert not np.allclose(ours, theirs, rtol=0, atol=1e-7)  # Optax decays by default
    assert inspect.signature(optax.lion).parameters["weight_decay"].default == 1e-3


def _check_rmsprop_defaults():
    assert_same_trajectory(
        trajectory(gx.rmsprop(1e-2, decay=0.9, eps_in_sqrt=True), jnp.float32),
        optax_trajectory(optax.rmsprop(1e-2), jnp.float32),
        ATOL32,
    )
    assert_same_trajectory(
        trajectory(gx.rmsprop(1e-2), jnp.float32),
        optax_trajectory(optax.rmsprop(1e-2, decay=0.99, eps_in_sqrt=False), jnp.float32),
        ATOL32,
    )


def _check_rmsprop_momentum_under_schedule():
    ours_lr = gx.exponential_decay(1e-2, decay_rate=0.5)
    theirs_lr = optax.exponential_decay(1e-2, 1, 0.5)
    ours = trajectory(gx.rmsprop(ours_lr, 0.9, eps_in_sqrt=True, momentum=0.9), jnp.float32)
    theirs = optax_trajectory(optax.rmsprop(theirs_lr, 0.9, momentum=0.9), jnp.float32)
    # Step 1 agrees (one lr so far); then torch's form rescales the whole buffer by lr_t
    # (here by 0.005 of a buffer of size ~3 at step 2).
    assert_same_trajectory(ours[:1], theirs[:1], ATOL32)
    assert not np.allclose(ours[-1]["w"], theirs[-1]["w"], rtol=0, atol=1e-3)


def _check_adagrad_defaults():
    ours = trajectory(gx.adagrad(0.1), jnp.float32)[-1]["w"]
    theirs = optax_trajectory(optax.adagrad(0.1), jnp.float32)[-1]["w"]
    assert not np.allclose(ours, theirs, rtol=0, atol=1e-3)
    assert_same_trajectory(
        trajectory(
            gx.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-7, eps_in_sqrt=True),
            jnp.float32,
        ),
        optax_trajectory(optax.adagrad(0.1), jnp.float32),
        ATOL32,
    )


def _check_amsgrad_max():
    # A large gradient, then zeros: v shrinks. The max of the raw v (ours, torch) keeps
    # step 1's v; Optax keeps step 1's bias-corrected v_hat = g^2, a different number.
    params = {"x": jnp.array([1.0])}
    seq = [jnp.array([2.0]), jnp.array([0.0]), jnp.array([0.0])]
    ours, theirs = gx.amsgrad(0.1), optax.amsgrad(0.1)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for g in seq:
        _, s_ours = ours.update({"x": g}, s_ours, params)
        with standard_promotion():
            _, s_theirs = theirs.update({"x": g}, s_theirs, params)
    # float32: 1 - b2 and the bias correction round to ~1e-5 relative.
    np.testing.assert_allclose(s_ours.scale_by_adam.nu_max["x"], [(1 - 0.999) * 4.0], rtol=2e-5)
    np.testing.assert_allclose(s_theirs[0].nu_max["x"], [4.0], rtol=2e-5)


def _check_nadam():
    ours = trajectory(gx.nadam(1e-2), jnp.float32)[-1]["w"]
    theirs = optax_trajectory(optax.nadam(1e-2), jnp.float32)[-1]["w"]
    assert not np.allclose(ours, theirs, rtol=0, atol=1e-4)  # torch's NAdam, another rule
    assert "momentum_decay" in repr(gx.nadam(1e-2))


LOGITS = jnp.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0], [-2.0, 0.0, 1.0]])
ONE_HOT = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
PRED = jnp.array([[1.0, 2.0], [0.5, -1.0]])
TARGET = jnp.array([[0.0, 1.0], [1.5, 1.0]])


def _check_losses_reduce_to_mean():
    pairs = [
        ("l2_loss", (PRED, TARGET)),
        ("squared_error", (PRED, TARGET)),
        ("huber_loss", (PRED, TARGET)),
        ("sigmoid_binary_cross_entropy", (LOGITS, ONE_HOT)),
        ("softmax_cross_entropy", (LOGITS, ONE_HOT)),
    ]
    for name, args in pairs:
        theirs = np.asarray(getattr(optax.losses, name)(*args))
        np.testing.assert_allclose(getattr(gx, name)(*args, reduction="none"), theirs, rtol=1e-6)
        np.testing.assert_allclose(getattr(gx, name)(*args), theirs.mean(), rtol=1e-6)
    # The example: Optax's l2_loss(p, t).sum() is 3.0; the mean's sum is 0.75.
    p, t = jnp.array([1.0, 2.0, 1.0, 0.0]), jnp.zeros(4)
    assert float(optax.l2_loss(p, t).sum()) == 3.0
    assert float(gx.l2_loss(p, t).sum()) == 0.75
    assert float(gx.l2_loss(p, t, reduction="sum")) == 3.0


def _check_integer_labels():
    labels = jnp.array([1, 2, 0])
    np.testing.assert_allclose(
        gx.softmax_cross_entropy(LOGITS, labels, reduction="none"),
        optax.losses.softmax_cross_entropy_with_integer_labels(LOGITS, labels),
        rtol=1e-6,
    )


PLATEAU_LOSSES = [1.0, 0.9, 0.9, 0.95, 0.9, 0.91, 0.92, 0.5, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7]


def _plateau_scales(tx):
    state, out = tx.init(jnp.zeros(2)), []
    for v in PLATEAU_LOSSES:
        with standard_promotion():
            u, state = tx.update(jnp.ones(2), state, jnp.zeros(2), value=jnp.asarray(v))
        out.append(float(u[0]))
    return out


def _check_plateau_patience():
    for kw in (
        dict(factor=0.5, patience=1),
        dict(factor=0.5, patience=1, cooldown=1),
        dict(factor=0.5, patience=0, rtol=0.1),
        dict(factor=0.5, patience=1, accumulation_size=2),
        dict(factor=0.5, patience=2, cooldown=2, atol=0.01, min_scale=0.3),
    ):
        shifted = dict(kw, patience=kw["patience"] + 1)
        ours = _plateau_scales(gx.reduce_on_plateau(**kw))
        assert ours == _plateau_scales(optax.contrib.reduce_on_plateau(**shifted)), kw
        assert ours != _plateau_scales(optax.contrib.reduce_on_plateau(**kw)), kw


def _check_lookahead_params():
    # Ours: the params are the fast weights. Optax's: LookaheadParams(fast, slow).
    p0 = jnp.array([1.0, -2.0, 0.5])
    ours, theirs = (
        gx.lookahead(gx.sgd(0.1, 0.9), 3, 0.5),
        optax.lookahead(optax.sgd(0.1, 0.9), 3, 0.5),
    )
    p, s = p0, ours.init(p0)
    lp = optax.LookaheadParams.init_synced(p0)
    st = theirs.init(lp)
    for _ in range(7):
        u, s = ours.update(p, s, p)  # the gradient of |p|^2 / 2
        p = gx.apply_updates(p, u)
        with standard_promotion():
            ut, st = theirs.update(lp.fast, st, lp)
            lp = optax.apply_updates(lp, ut)
        np.testing.assert_allclose(p, lp.fast, rtol=1e-6, atol=1e-7)


def _check_state_fields():
    params = _params(jnp.float32)
    ours, theirs = gx.sgd(0.1, 0.9).init(params), optax.sgd(0.1, 0.9).init(params)
    assert ours[0].velocity.keys() == theirs[0].trace.keys()
    assert ours.scale_by_momentum is ours[0]
    ours, theirs = gx.adadelta(1.0).init(params), optax.adadelta(1.0).init(params)
    assert ours[0]._fields == ("sq_avg", "delta_avg") and theirs[1]._fields == ("e_g", "e_x")
    ours, theirs = gx.adam(1e-3).init(params), optax.adam(1e-3).init(params)
    assert ours[0]._fields == (*theirs[0]._fields, "nu_max") and ours[0].nu_max is None


def _check_torch_momentum_none():
    params = _params(jnp.float32)
    assert gx.sgd(0.1).init(params).names == ("scale_by_learning_rate",)
    zero = gx.sgd(0.1, momentum=0.0)  # torch's momentum=0: the same numbers, a buffer kept
    assert zero.init(params).names == ("scale_by_momentum", "scale_by_learning_rate")
    assert_same_trajectory(trajectory(zero, jnp.float32), trajectory(gx.sgd(0.1), jnp.float32), 0.0)


def _check_torch_weight_decay_none():
    params = _params(jnp.float32)
    assert gx.adam(0.1).init(params).names == ("scale_by_adam", "scale_by_learning_rate")
    zero = gx.adam(0.1, weight_decay=0.0)  # torch's weight_decay=0
    assert zero.init(params).names[0] == "add_decayed_weights"
    assert_same_trajectory(
        trajectory(zero, jnp.float32), trajectory(gx.adam(0.1), jnp.float32), 0.0
    )


def _check_adan_b2_weight():
    # Optax 0.2.8 weighs the gradient difference by 1 - b2; the paper and
    # pytorch_optimizer by b2: equal at b2 = 0.5 (a Same row), not at the default 0.92.
    ours = trajectory(gx.adan(0.05, eps_root=1e-8), jnp.float32)[-1]["w"]
    theirs = optax_trajectory(optax.adan(0.05), jnp.float32)[-1]["w"]
    assert not np.allclose(ours, theirs, rtol=0, atol=1e-3)
    # eps_root: 0 here (pytorch_optimizer), 1e-8 in optax.adan (0 in its scale_by_adan).
    assert inspect.signature(optax.adan).parameters["eps_root"].default == 1e-8
    assert inspect.signature(gx.adan).parameters["eps_root"].default == 0.0


def _check_sm3_defaults():
    # Optax: momentum 0.9, eps 1e-8; here none and 1e-30 (pytorch_optimizer).
    assert inspect.signature(optax.sm3).parameters["momentum"].default == 0.9
    ours = trajectory(gx.sm3(0.1), jnp.float32)[-1]["w"]
    theirs = optax_trajectory(optax.sm3(0.1), jnp.float32)[-1]["w"]
    assert not np.allclose(ours, theirs, rtol=0, atol=1e-3)
    assert_same_trajectory(
        trajectory(gx.sm3(0.1, 0.9, eps=1e-8), jnp.float32),
        optax_trajectory(optax.sm3(0.1), jnp.float32),
        ATOL32,
    )


DOCUMENTED: dict[str, Documented] = {
    "optax.adan(0.05)": Documented(
        "the gradient difference is weighed by b2 (the paper's 1 - beta_2", _check_adan_b2_weight
    ),
    "optax.sm3(0.1)": Documented("no momentum by default (Optax: 0.9)", _check_sm3_defaults),
    "optax.adamw(1e-2)": Documented(
        "`weight_decay` default 1e-2 (torch.optim.AdamW), Optax's 1e-4", _check_adamw_default
    ),
    "optax.lion(1e-3)": Documented("no weight decay by default (Optax: 1e-3)", _check_lion_default),
    "optax.rmsprop(1e-2)": Documented(
        "`decay` 0.99 (torch's `alpha`) and eps outside the root (Optax: 0.9, inside)",
        _check_rmsprop_defaults,
    ),
    "optax.rmsprop(schedule, momentum=0.9)": Documented(
        "the learning rate multiplies the momentum buffer's output (torch) where Optax feeds "
        "lr-scaled steps into it: same numbers for a constant learning rate",
        _check_rmsprop_momentum_under_schedule,
    ),
    "optax.adagrad(0.1)": Documented(
        "torch's defaults: `initial_accumulator_value` 0 and `eps` 1e-10 outside the root "
        "(Optax: 0.1 and 1e-7 inside)",
        _check_adagrad_defaults,
    ),
    "optax.amsgrad(0.1)": Documented(
        "the max is taken over the raw second moment v (torch), Optax's over the "
        "bias-corrected v_hat",
        _check_amsgrad_max,
    ),
    "optax.nadam(1e-2) as gx.nadam": Documented(
        "`gx.nadam` is torch's NAdam (momentum schedule, `momentum_decay`), another rule",
        _check_nadam,
    ),
    "optax.l2_loss(p, t) and the other losses": Documented(
        'losses reduce to the mean by default (torch\'s choice): `reduction="none"` gives '
        "Optax's per-example values",
        _check_losses_reduce_to_mean,
    ),
    "optax.softmax_cross_entropy_with_integer_labels(logits, labels)": Documented(
        "`softmax_cross_entropy(logits, labels)` | integer labels are accepted",
        _check_integer_labels,
    ),
    "optax.contrib.reduce_on_plateau(factor, patience)": Documented(
        "`patience=k` here is Optax's `patience=k + 1`", _check_plateau_patience
    ),
    "optax.lookahead(fast_optimizer, sync_period, slow_step_size)": Documented(
        "the params are the fast weights themselves, no `LookaheadParams`",
        _check_lookahead_params,
    ),
    "opt_state[0].trace": Documented("Optax's `trace` is `velocity`", _check_state_fields),
    "torch.optim.SGD(params, lr, momentum=0)": Documented(
        "`momentum=None`, the default (0 keeps a buffer equal to the gradient)",
        _check_torch_momentum_none,
        torch=True,
    ),
    "torch.optim.Adam(params, lr, weight_decay=0)": Documented(
        "`weight_decay=None`, the default (0 gives the same numbers and keeps an idle term in "
        "the state)",
        _check_torch_weight_decay_none,
        torch=True,
    ),
}


def test_the_table_is_large_enough():
    assert len(SAME) + len(RAISES) + len(DOCUMENTED) >= 25
    # Every named optimizer Optax also has appears in its Optax form.
    named = ["sgd", "adam", "adamw", "amsgrad", "nadam", "radam", "adamax", "adagrad"]
    named += ["adadelta", "rmsprop", "lion", "lbfgs"]
    named += ["adabelief", "yogi", "adan", "sm3", "lamb", "lars", "novograd"]
    ported = " ".join([*SAME, *RAISES, *DOCUMENTED])
    assert not [n for n in named if f"optax.{n}(" not in ported]


# --------------------------------------------------------------------------------------
# (a) the same numbers


TRANSFORMS = {k: v for k, v in SAME.items() if v.kind == "transform"}
SCHEDULES = {k: v for k, v in SAME.items() if v.kind == "schedule"}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("call", list(TRANSFORMS))
def test_same_numbers_as_optax(call, dtype):
    row = TRANSFORMS[call]
    with jax.enable_x64(dtype == jnp.float64):
        if row.ours_strict:
            ours = trajectory(row.ours(), dtype, row.steps)
        else:
            with standard_promotion():
                ours = trajectory(row.ours(), dtype, row.steps)
        theirs = optax_trajectory(row.theirs(), dtype, row.steps)
    if dtype == jnp.float32:
        atol = row.atol32 or ATOL32 + 2e-5 * row.bias_corrected_lr * row.steps
    else:
        atol = row.atol64
    assert_same_trajectory(ours, theirs, atol)


@pytest.mark.parametrize("call", list(SCHEDULES))
def test_same_schedule_values_as_optax(call):
    row = SCHEDULES[call]
    # The same formula in float32: within a few float32 roundings (measured 3e-7).
    np.testing.assert_allclose(
        schedule_values(row.ours()), schedule_values(row.theirs()), rtol=1e-6, atol=1e-7
    )


# --------------------------------------------------------------------------------------
# (b) a TypeError instead of a silent change of meaning


@pytest.mark.parametrize("call", list(RAISES))
def test_ported_call_raises(call):
    row = RAISES[call]
    if row.theirs is not None:
        with standard_promotion():
            row.theirs()  # a valid Optax call
    with pytest.raises(TypeError, match=row.match):
        row.port()


# --------------------------------------------------------------------------------------
# (c) documented differences


@pytest.mark.parametrize("call", list(DOCUMENTED))
def test_documented_difference(call):
    row = DOCUMENTED[call]
    table = FROM_TORCH if row.torch else FROM_OPTAX
    assert row.readme in table, f"README's migration table lacks: {row.readme}"
    row.check()


def test_radam_eps_placement_is_documented():
    # The one Same row held to a looser float64 tolerance says why in the README.
    assert "i.e. Optax's rule with eps / sqrt(1 - b2^t) for eps" in FROM_OPTAX


def test_every_optax_row_of_the_readme_names_a_real_optax_function():
    # The first column's names exist in the installed Optax (or optax.contrib).
    names = re.findall(r"^\| `(contrib\.)?([a-z_]+)\(", FROM_OPTAX, re.M)
    assert len(names) >= 20
    # A contrib row is looked up in contrib only (Optax's top-level aliases of contrib
    # names, such as optax.dpsgd, warn that they are deprecated).
    missing = [n for c, n in names if not hasattr(optax.contrib if c else optax, n)]
    assert not missing

"""The first steps of every primitive transform, checked against independent references.

Each test feeds a fixed sequence of gradients (a small dict tree with positive, negative
and zero entries) and compares the emitted updates, and the key state slots, with either
literals worked out by hand or a few lines of plain numpy that implement the published
update rule (torch.optim documentation / the paper). No expected value is computed with
gradxform.

Comparisons run in float64 (``jax.enable_x64``) with ``rtol=1e-12``: the reference is the
same formula in float64 over a handful of steps, so only rounding can differ. One float32
Adam case checks the float32 path with ``rtol=1e-6``.
"""

from __future__ import annotations

import inspect
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import OPTIMIZERS, PRIMITIVES, slot_fields
from references import ref_adam, ref_radam

import gradxform as gx

# Same formula, float64, 3 steps (7 for RAdam): only rounding differs.
RTOL = 1e-12
ATOL = 0.0

# --------------------------------------------------------------------------------------
# Fixed inputs (numpy float64; converted to jax arrays inside enable_x64 blocks)

# b[1, 0] is zero at every step, a[2] is zero then not, a[1] is not then zero.
GRADS = [
    {"a": np.array([1.0, -2.0, 0.0]), "b": np.array([[0.5, -4.0], [0.0, 3.0]])},
    {"a": np.array([-0.5, 0.0, 4.0]), "b": np.array([[2.0, 1.0], [0.0, -3.0]])},
    {"a": np.array([0.25, -1.0, 3.0]), "b": np.array([[-0.5, 1.5], [0.0, 2.0]])},
]
# Seven steps for RAdam: the three above, then rescaled repeats.
GRADS_LONG = [{k: v * (1.0 + 0.25 * (i // 3)) for k, v in GRADS[i % 3].items()} for i in range(7)]
PARAMS = {"a": np.array([0.5, -1.5, 0.0]), "b": np.array([[2.0, -1.0], [0.0, -3.0]])}
KEYS = ("a", "b")


def to_jax(tree, dtype=jnp.float64):
    return {k: jnp.asarray(v, dtype=dtype) for k, v in tree.items()}


def run(tx, grads, params=None, *, evolve=False):
    """Jitted ``tx.update`` over ``grads`` (numpy trees); returns [(updates, state)].

    Call inside ``jax.enable_x64(True)`` for float64. ``params`` (numpy tree) is passed to
    every update; with ``evolve=True`` it is advanced by p <- p + u after each step.
    Returns (init_state, [(updates, state) per step]).
    """
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    jgrads = [to_jax(g, dtype) for g in grads]
    p = None if params is None else to_jax(params, dtype)
    state = tx.init(p if p is not None else jgrads[0])
    init_state = state
    step = jax.jit(lambda u, s, q: tx.update(u, s, q))
    out = []
    for g in jgrads:
        u, state = step(g, state, p)
        out.append((u, state))
        if evolve:
            p = {k: p[k] + u[k] for k in KEYS}
    return init_state, out


def assert_tree_close(actual, expected, *, rtol=RTOL, atol=ATOL, dtype=np.float64, msg=""):
    assert set(actual) == set(expected), msg
    for k in expected:
        x = actual[k]
        assert x.dtype == dtype, f"{msg} leaf {k}: dtype {x.dtype}, expected {dtype}"
        assert x.shape == np.shape(expected[k]), f"{msg} leaf {k}: shape {x.shape}"
        np.testing.assert_allclose(
            np.asarray(x), expected[k], rtol=rtol, atol=atol, err_msg=f"{msg} leaf {k}"
        )


def assert_steps_literal(tx, expected, params=None):
    """Run tx on GRADS in float64 and compare each step with literal trees."""
    with jax.enable_x64(True):
        _, steps = run(tx, GRADS, params)
    assert len(steps) == len(expected) == 3
    for t, ((u, _), exp) in enumerate(zip(steps, expected), 1):
        exp = {k: np.asarray(v, dtype=np.float64) for k, v in exp.items()}
        assert_tree_close(u, exp, msg=f"step {t}")


def takes_params(ref) -> bool:
    """Whether a reference needs its leaf's parameter (a layer-wise rule: trust ratio)."""
    return "params" in inspect.signature(ref).parameters


def takes_trees(ref) -> bool:
    """Whether a reference takes whole trees, ``ref(grad_trees, params, evolve)``: a global
    rule (Prodigy, D-Adaptation, DoG) sums over every leaf, so it cannot run leaf by leaf."""
    return next(iter(inspect.signature(ref).parameters)) == "grad_trees"


def ref_tree(ref, grads, params=None):
    """Apply an element-wise reference ``ref(list of leaf grads) -> [dict per step]`` to
    every leaf; returns [dict slot -> tree per step]. A reference with a ``params``
    argument (a layer-wise rule) also gets that leaf of ``params``; a global rule's
    (``takes_trees``) gets the whole trees, with ``params`` held fixed."""
    if takes_trees(ref):
        return ref(grads, params=params, evolve=False)
    if params is not None and takes_params(ref):
        per_leaf = {k: ref([g[k] for g in grads], params=params[k]) for k in KEYS}
    else:
        per_leaf = {k: ref([g[k] for g in grads]) for k in KEYS}
    n = len(grads)
    return [{s: {k: per_leaf[k][t][s] for k in KEYS} for s in per_leaf["a"][t]} for t in range(n)]


# --------------------------------------------------------------------------------------
# Stateful element-wise transforms: updates and state slots against the references

ELEMENTWISE = [
    pytest.param(ref.make, ref.numpy, ref.slots, id=ref.id)
    for rule in PRIMITIVES.values()
    for ref in rule.references
]


@pytest.mark.parametrize("make_tx, ref, slots", ELEMENTWISE)
def test_stateful_elementwise_first_steps(make_tx, ref, slots):
    if takes_trees(ref):  # a global rule: params advance by each update (p <- p + u)
        expected = ref(GRADS, params=PARAMS, evolve=True)
        with jax.enable_x64(True):
            _, steps = run(make_tx(), GRADS, PARAMS, evolve=True)
    else:
        expected = ref_tree(ref, GRADS, PARAMS)
        with jax.enable_x64(True):
            _, steps = run(make_tx(), GRADS, PARAMS if takes_params(ref) else None)
    for t, ((u, state), exp) in enumerate(zip(steps, expected), 1):
        assert_tree_close(u, exp["u"], msg=f"step {t} updates")
        for s in slots:
            assert_tree_close(getattr(state, s), exp[s], msg=f"step {t} state.{s}")
        if "count" in state._fields:
            assert int(state.count) == t
        if "mu_product" in exp:
            np.testing.assert_allclose(float(state.mu_product), exp["mu_product"]["a"], rtol=RTOL)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_named_optimizer_first_steps(name):
    # The whole chain at the registry's `quad` hyperparameters: -learning_rate times the
    # NumPy direction of its rule (weight decay, if any, is 0 there).
    case = OPTIMIZERS[name]
    lr = case.quad["learning_rate"]
    expected = ref_tree(case.reference, GRADS, PARAMS)
    with jax.enable_x64(True):
        _, steps = run(case.make(), GRADS, PARAMS)
    for t, ((u, _), exp) in enumerate(zip(steps, expected), 1):
        assert_tree_close(u, {k: -lr * exp["u"][k] for k in KEYS}, msg=f"{name} step {t}")


def test_momentum_first_step_is_undamped():
    # torch seeds the buffer with the raw first gradient: v_1 = g_1 whatever dampening.
    with jax.enable_x64(True):
        _, steps = run(gx.scale_by_momentum(0.9, dampening=0.5), GRADS)
    assert_tree_close(steps[0][0], GRADS[0])
    assert_tree_close(steps[0][1].velocity, GRADS[0])
    # second step: 0.9 * g1 + 0.5 * g2, by hand for leaf a
    np.testing.assert_allclose(np.asarray(steps[1][0]["a"]), [0.65, -1.8, 2.0], rtol=RTOL)


def test_adam_amsgrad_uses_running_max_of_raw_nu():
    # b2 = 0.5: b[0, 1] has g = -4 then 1, so v drops from 8 to 4.5 while nu_max stays 8.
    with jax.enable_x64(True):
        _, ams = run(gx.scale_by_adam(0.9, 0.5, amsgrad=True), GRADS)
        _, plain = run(gx.scale_by_adam(0.9, 0.5), GRADS)
    s2 = ams[1][1]
    assert float(s2.nu["b"][0, 1]) == pytest.approx(4.5, rel=RTOL)
    assert float(s2.nu_max["b"][0, 1]) == pytest.approx(8.0, rel=RTOL)
    # u = m_hat / (sqrt(nu_max / (1 - 0.5^2)) + eps), m_2 = 0.9 * -0.4 + 0.1 * 1 = -0.26
    m_hat = -0.26 / (1 - 0.9**2)
    expected = m_hat / (math.sqrt(8.0 / 0.75) + 1e-8)
    assert float(ams[1][0]["b"][0, 1]) == pytest.approx(expected, rel=RTOL)
    assert float(ams[1][0]["b"][0, 1]) != pytest.approx(float(plain[1][0]["b"][0, 1]))
    # Where v only grows, amsgrad and adam agree.
    np.testing.assert_allclose(np.asarray(ams[0][0]["a"]), np.asarray(plain[0][0]["a"]), rtol=RTOL)


def test_adam_first_step_is_sign_like():
    # Hand value: after one step m_hat = g and v_hat = g^2, so u = g / (|g| + eps).
    with jax.enable_x64(True):
        _, steps = run(gx.scale_by_adam(), GRADS)
    g = GRADS[0]
    exp = {k: g[k] / (np.abs(g[k]) + 1e-8) for k in KEYS}
    assert_tree_close(steps[0][0], exp, rtol=1e-10)


def test_adam_float32():
    expected = ref_tree(ref_adam, GRADS)
    with jax.enable_x64(False):
        _, steps = run(gx.scale_by_adam(), GRADS)
        for t, ((u, state), exp) in enumerate(zip(steps, expected), 1):
            assert_tree_close(u, exp["u"], rtol=1e-6, atol=0.0, dtype=np.float32, msg=f"step {t}")
            assert_tree_close(state.mu, exp["mu"], rtol=1e-6, dtype=np.float32)
            assert_tree_close(state.nu, exp["nu"], rtol=1e-6, dtype=np.float32)
            assert int(state.count) == t


@pytest.mark.parametrize(
    "threshold, first_rectified",
    [pytest.param(5.0, 6, id="threshold-5"), pytest.param(4.0, 5, id="threshold-4")],
)
def test_radam_both_branches(threshold, first_rectified):
    # b2 = 0.9: rho_inf = 19 and rho_t = 1, 1.95, 2.86, 3.74, 4.58, 5.39, 6.13 for
    # t = 1..7, so the first steps are momentum SGD and the later ones are rectified.
    ref = partial(ref_radam, b1=0.9, b2=0.9, eps=1e-8, threshold=threshold)
    expected = ref_tree(ref, GRADS_LONG)
    rect = [bool(e["rectified"]["a"]) for e in expected]
    assert rect == [t >= first_rectified for t in range(1, 8)]
    with jax.enable_x64(True):
        _, steps = run(gx.scale_by_radam(0.9, 0.9, threshold=threshold), GRADS_LONG)
    for t, ((u, state), exp) in enumerate(zip(steps, expected), 1):
        assert_tree_close(u, exp["u"], msg=f"step {t} (rectified={rect[t - 1]})")
        assert_tree_close(state.mu, exp["mu"], msg=f"step {t} mu")
        assert_tree_close(state.nu, exp["nu"], msg=f"step {t} nu")
        assert state.nu_max is None
        assert int(state.count) == t
        if not rect[t - 1]:  # not rectified: exactly the bias-corrected momentum
            m_hat = {k: np.asarray(state.mu[k]) / (1 - 0.9**t) for k in KEYS}
            assert_tree_close(u, m_hat)


# --------------------------------------------------------------------------------------
# Stateless primitives: literals worked out by hand


def test_scale_literal():
    assert_steps_literal(
        gx.scale(0.5),
        [
            {"a": [0.5, -1.0, 0.0], "b": [[0.25, -2.0], [0.0, 1.5]]},
            {"a": [-0.25, 0.0, 2.0], "b": [[1.0, 0.5], [0.0, -1.5]]},
            {"a": [0.125, -0.5, 1.5], "b": [[-0.25, 0.75], [0.0, 1.0]]},
        ],
    )


def test_scale_by_sign_literal():
    assert_steps_literal(
        gx.scale_by_sign(),
        [
            {"a": [1.0, -1.0, 0.0], "b": [[1.0, -1.0], [0.0, 1.0]]},
            {"a": [-1.0, 0.0, 1.0], "b": [[1.0, 1.0], [0.0, -1.0]]},
            {"a": [1.0, -1.0, 1.0], "b": [[-1.0, 1.0], [0.0, 1.0]]},
        ],
    )


def test_clip_literal():
    assert_steps_literal(
        gx.clip(1.5),
        [
            {"a": [1.0, -1.5, 0.0], "b": [[0.5, -1.5], [0.0, 1.5]]},
            {"a": [-0.5, 0.0, 1.5], "b": [[1.5, 1.0], [0.0, -1.5]]},
            {"a": [0.25, -1.0, 1.5], "b": [[-0.5, 1.5], [0.0, 1.5]]},
        ],
    )


def test_centralize_literal():
    # vector a untouched; each row of b loses its mean.
    assert_steps_literal(
        gx.centralize(),
        [
            {"a": [1.0, -2.0, 0.0], "b": [[2.25, -2.25], [-1.5, 1.5]]},
            {"a": [-0.5, 0.0, 4.0], "b": [[0.5, -0.5], [1.5, -1.5]]},
            {"a": [0.25, -1.0, 3.0], "b": [[-1.0, 1.0], [-1.0, 1.0]]},
        ],
    )


def test_centralize_mean_over_all_axes_but_0():
    with jax.enable_x64(True):
        tx = gx.centralize()
        u = {
            "c": jnp.arange(8.0, dtype=jnp.float64).reshape(2, 2, 2),
            "s": jnp.asarray(3.0, dtype=jnp.float64),
        }
        out, state = tx.update(u, tx.init(u))
    # rows 0..3 and 4..7 have means 1.5 and 5.5
    row = [[-1.5, -0.5], [0.5, 1.5]]
    np.testing.assert_array_equal(np.asarray(out["c"]), [row, row])
    assert out["s"].dtype == jnp.float64 and float(out["s"]) == 3.0  # scalar untouched
    assert state == gx.EmptyState()


@pytest.mark.parametrize(
    "dtype", [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]
)
def test_set_to_zero(dtype):
    with jax.enable_x64(True):
        tx = gx.set_to_zero()
        state = tx.init(to_jax(GRADS[0], dtype))
        for g in GRADS:
            u, state = tx.update(to_jax(g, dtype), state)
            zeros = {k: np.zeros_like(g[k]) for k in KEYS}
            assert_tree_close(u, zeros, rtol=0.0, dtype=dtype)  # exact zeros, same dtype


def test_identity():
    assert_steps_literal(
        gx.identity(),
        [
            {"a": [1.0, -2.0, 0.0], "b": [[0.5, -4.0], [0.0, 3.0]]},
            {"a": [-0.5, 0.0, 4.0], "b": [[2.0, 1.0], [0.0, -3.0]]},
            {"a": [0.25, -1.0, 3.0], "b": [[-0.5, 1.5], [0.0, 2.0]]},
        ],
    )


def _double_plus_params(updates, params):
    return jax.tree_util.tree_map(lambda u, p: 2 * u + p, updates, params)


def test_stateless_user_function():
    # u <- 2 u + p with PARAMS = a [0.5, -1.5, 0], b [[2, -1], [0, -3]]
    assert_steps_literal(
        gx.stateless(_double_plus_params),
        [
            {"a": [2.5, -5.5, 0.0], "b": [[3.0, -9.0], [0.0, 3.0]]},
            {"a": [-0.5, -1.5, 8.0], "b": [[6.0, 1.0], [0.0, -9.0]]},
            {"a": [1.0, -3.5, 6.0], "b": [[1.0, 2.0], [0.0, 1.0]]},
        ],
        params=PARAMS,
    )


@pytest.mark.parametrize(
    "max_norm, clipped",
    [
        pytest.param(10.0, [False, False, False], id="below"),
        pytest.param(5.0, [True, True, False], id="mixed"),
        pytest.param(2.75, [True, True, True], id="above"),
    ],
)
def test_clip_by_global_norm(max_norm, clipped):
    # Global norms by hand: sqrt(5 + 25.25) = 5.5, sqrt(16.25 + 14) = 5.5,
    # sqrt(10.0625 + 6.5) = sqrt(16.5625).
    norms = [5.5, 5.5, math.sqrt(16.5625)]
    with jax.enable_x64(True):
        _, steps = run(gx.clip_by_global_norm(max_norm), GRADS)
    for t, ((u, _), g, n, c) in enumerate(zip(steps, GRADS, norms, clipped), 1):
        assert (n > max_norm) == c
        factor = max_norm / n if c else 1.0
        assert_tree_close(u, {k: g[k] * factor for k in KEYS}, msg=f"step {t}")
        got = math.sqrt(sum(float(np.sum(np.asarray(u[k]) ** 2)) for k in KEYS))
        assert got == pytest.approx(max_norm if c else n, rel=RTOL)
    if max_norm == 2.75:  # by hand: the first two steps are exactly halved
        assert_tree_close(steps[0][0], {"a": [0.5, -1.0, 0.0], "b": [[0.25, -2.0], [0.0, 1.5]]})


# --------------------------------------------------------------------------------------
# Learning rate


@pytest.mark.parametrize(
    "make_tx, lrs",
    [
        pytest.param(lambda: gx.scale_by_learning_rate(0.1), [-0.1, -0.1, -0.1], id="float"),
        pytest.param(
            lambda: gx.scale_by_learning_rate(gx.exponential_decay(0.1, decay_rate=0.5)),
            [-0.1, -0.05, -0.025],
            id="schedule",
        ),
        pytest.param(
            lambda: gx.scale_by_learning_rate(0.1, flip_sign=False), [0.1, 0.1, 0.1], id="no-flip"
        ),
        pytest.param(
            lambda: gx.scale_by_learning_rate(
                gx.exponential_decay(0.1, decay_rate=0.5), flip_sign=False
            ),
            [0.1, 0.05, 0.025],
            id="schedule-no-flip",
        ),
    ],
)
def test_scale_by_learning_rate(make_tx, lrs):
    with jax.enable_x64(True):
        init_state, steps = run(make_tx(), GRADS)
    assert int(init_state.count) == 0
    for t, ((u, state), g, lr) in enumerate(zip(steps, GRADS, lrs), 1):
        assert_tree_close(u, {k: lr * g[k] for k in KEYS}, msg=f"step {t}")
        assert int(state.count) == t


def test_scale_by_learning_rate_schedule_literal():
    assert_steps_literal(
        gx.scale_by_learning_rate(gx.exponential_decay(0.5, decay_rate=0.5)),
        [
            {"a": [-0.5, 1.0, 0.0], "b": [[-0.25, 2.0], [0.0, -1.5]]},
            {"a": [0.125, 0.0, -1.0], "b": [[-0.5, -0.25], [0.0, 0.75]]},
            {"a": [-0.03125, 0.125, -0.375], "b": [[0.0625, -0.1875], [0.0, -0.25]]},
        ],
    )


# --------------------------------------------------------------------------------------
# Regularization terms


def test_add_decayed_weights_literal():
    # u = g + 0.5 p, 0.5 PARAMS = a [0.25, -0.75, 0], b [[1, -0.5], [0, -1.5]]
    assert_steps_literal(
        gx.add_decayed_weights(0.5),
        [
            {"a": [1.25, -2.75, 0.0], "b": [[1.5, -4.5], [0.0, 1.5]]},
            {"a": [-0.25, -0.75, 4.0], "b": [[3.0, 0.5], [0.0, -4.5]]},
            {"a": [0.5, -1.75, 3.0], "b": [[0.5, 1.0], [0.0, 0.5]]},
        ],
        params=PARAMS,
    )


def test_add_decayed_weights_mask_and_schedule_literal():
    # wd = 0.5 * 0.5^t = 0.5, 0.25, 0.125 on b only; a passes through.
    tx = gx.add_decayed_weights(
        gx.exponential_decay(0.5, decay_rate=0.5), mask={"a": False, "b": True}
    )
    assert_steps_literal(
        tx,
        [
            {"a": [1.0, -2.0, 0.0], "b": [[1.5, -4.5], [0.0, 1.5]]},
            {"a": [-0.5, 0.0, 4.0], "b": [[2.5, 0.75], [0.0, -3.75]]},
            {"a": [0.25, -1.0, 3.0], "b": [[-0.25, 1.375], [0.0, 1.625]]},
        ],
        params=PARAMS,
    )


@pytest.mark.parametrize(
    "wd, wds, mask",
    [
        pytest.param(0.1, [0.1] * 3, None, id="const"),
        pytest.param(0.1, [0.1] * 3, {"a": True, "b": False}, id="const-mask-a"),
        pytest.param("sched", [0.1, 0.05, 0.025], None, id="schedule"),
        pytest.param("sched", [0.1, 0.05, 0.025], {"a": False, "b": True}, id="schedule-mask-b"),
        pytest.param(0.1, [0.1] * 3, lambda p: {"a": True, "b": False}, id="callable-mask"),
    ],
)
def test_add_decayed_weights(wd, wds, mask):
    wd = gx.exponential_decay(0.1, decay_rate=0.5) if wd == "sched" else wd
    mask_tree = mask(PARAMS) if callable(mask) else mask
    with jax.enable_x64(True):
        init_state, steps = run(gx.add_decayed_weights(wd, mask=mask), GRADS, PARAMS)
    assert int(init_state.count) == 0
    for t, ((u, state), g, w) in enumerate(zip(steps, GRADS, wds), 1):
        exp = {
            k: g[k] + (w * PARAMS[k] if mask_tree is None or mask_tree[k] else 0.0) for k in KEYS
        }
        assert_tree_close(u, exp, msg=f"step {t}")
        assert int(state.count) == t


def test_add_l1_subgradient_literal():
    # u = g + 0.5 sign(p); sign(0) = 0 leaves a[2] and b[1, 0] alone.
    assert_steps_literal(
        gx.add_l1_subgradient(0.5),
        [
            {"a": [1.5, -2.5, 0.0], "b": [[1.0, -4.5], [0.0, 2.5]]},
            {"a": [0.0, -0.5, 4.0], "b": [[2.5, 0.5], [0.0, -3.5]]},
            {"a": [0.75, -1.5, 3.0], "b": [[0.0, 1.0], [0.0, 1.5]]},
        ],
        params=PARAMS,
    )


PROX_P0 = {"a": np.array([0.5, -1.5, 0.1]), "b": np.array([[2.0, -0.2], [0.0, -3.0]])}
PROX_UPDATES = [{k: -0.1 * g[k] for k in KEYS} for g in GRADS]


@pytest.mark.parametrize(
    "lr, lrs",
    [
        pytest.param(0.5, [0.5] * 3, id="const-lr"),
        pytest.param("sched", [0.5, 0.25, 0.125], id="schedule-lr"),
    ],
)
def test_proximal_l1(lr, lrs):
    strength = 0.5
    lr = gx.exponential_decay(0.5, decay_rate=0.5) if lr == "sched" else lr
    # Reference: soft threshold z = p + u -> sign(z) max(|z| - lr strength, 0).
    p, expected = {k: v.copy() for k, v in PROX_P0.items()}, []
    for u, lr_t in zip(PROX_UPDATES, lrs):
        new = {}
        for k in KEYS:
            z = p[k] + u[k]
            new[k] = np.sign(z) * np.maximum(np.abs(z) - lr_t * strength, 0.0)
        expected.append({k: new[k] - p[k] for k in KEYS})
        p = new
    with jax.enable_x64(True):
        init_state, steps = run(gx.proximal_l1(strength, lr), PROX_UPDATES, PROX_P0, evolve=True)
    assert int(init_state.count) == 0
    for t, ((u, state), exp) in enumerate(zip(steps, expected), 1):
        assert_tree_close(u, exp, msg=f"step {t}")
        assert int(state.count) == t
    # Step 1 by hand: z = a [0.4, -1.3, 0.1], b [[1.95, 0.2], [0, -3.3]], threshold 0.25.
    u1 = steps[0][0]
    new_a = PROX_P0["a"] + np.asarray(u1["a"])
    new_b = PROX_P0["b"] + np.asarray(u1["b"])
    np.testing.assert_allclose(new_a, [0.15, -1.05, 0.0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(new_b, [[1.7, 0.0], [0.0, -3.05]], rtol=1e-12, atol=1e-15)
    # Small weights become exactly zero (not merely small).
    assert new_a[2] == 0.0 and new_b[0, 1] == 0.0 and new_b[1, 0] == 0.0


# --------------------------------------------------------------------------------------
# Noise


def _noise_steps(seed, shape=(4, 5), eta=0.5, gamma=0.55, updates=None):
    with jax.enable_x64(True):
        u = jnp.zeros(shape, jnp.float64) if updates is None else updates
        tx = gx.add_noise(eta, gamma, seed=seed)
        step = jax.jit(lambda u, s: tx.update({"w": u}, s))
        state = tx.init({"w": u})
        outs = []
        for t in range(3):
            out, state = step(u, state)
            assert int(state.count) == t + 1
            outs.append(np.asarray(out["w"]))
    return outs


def test_add_noise_same_seed_same_noise():
    a, b, c = _noise_steps(3), _noise_steps(3), _noise_steps(4)
    for t in range(3):
        np.testing.assert_array_equal(a[t], b[t])
        assert not np.allclose(a[t], c[t]), "different seeds gave the same noise"
        assert np.all(a[t] != 0.0)
    assert not np.allclose(a[0] / a[0].std(), a[1] / a[1].std()), "key not advanced"


def test_add_noise_draws_independent_noise_per_leaf_under_jit():
    tx = gx.add_noise(0.1, seed=0)
    updates = {"a": jnp.zeros(64), "b": jnp.zeros(64), "skip": None}
    eager, _ = tx.update(updates, tx.init(updates))
    jitted, _ = jax.jit(tx.update)(updates, tx.init(updates))
    assert not np.allclose(jitted["a"], jitted["b"]), "same-shaped leaves got the same noise"
    np.testing.assert_allclose(jitted["a"], eager["a"], rtol=1e-6)
    assert jitted["skip"] is None


def test_add_noise_is_added_to_updates():
    g = np.linspace(-1.0, 1.0, 20).reshape(4, 5)
    with jax.enable_x64(True):
        noisy = _noise_steps(7, updates=jnp.asarray(g, dtype=jnp.float64))
    noise = _noise_steps(7)
    for t in range(3):
        np.testing.assert_allclose(noisy[t] - g, noise[t], rtol=0, atol=1e-14)


def test_add_noise_variance_anneals():
    n, eta, gamma = 200_000, 0.5, 0.55
    outs = _noise_steps(0, shape=(n,), eta=eta, gamma=gamma)
    for t, z in enumerate(outs):
        var = eta / (1 + t) ** gamma
        assert z.dtype == np.float64
        assert np.var(z) == pytest.approx(var, rel=0.02), f"t={t}"
        assert abs(np.mean(z)) < 5 * math.sqrt(var / n)


# --------------------------------------------------------------------------------------
# State layout: NamedTuples with named fields; counts go 0 -> 1 -> 2 -> 3


# The optimizers' rules come from the registry (every configuration it checks against
# NumPy, with the slots that configuration fills); the generic transforms have no slots.
STATE_LAYOUTS = [
    pytest.param(ref.make, rule.state_fields, ref.slots, id=ref.id)
    for rule in PRIMITIVES.values()
    for ref in rule.references
] + [
    pytest.param(make_tx, fields, (), id=name)
    for name, make_tx, fields in [
        (
            "scale_by_learning_rate",
            lambda: gx.scale_by_learning_rate(0.1),
            ("count", "learning_rate"),
        ),
        ("add_decayed_weights", lambda: gx.add_decayed_weights(0.1), ("count",)),
        ("proximal_l1", lambda: gx.proximal_l1(0.1, 0.1), ("count",)),
        ("add_noise", lambda: gx.add_noise(), ("count", "key")),
        ("scale", lambda: gx.scale(2.0), ()),
        ("scale_by_sign", lambda: gx.scale_by_sign(), ()),
        ("centralize", lambda: gx.centralize(), ()),
        ("clip", lambda: gx.clip(1.0), ()),
        ("clip_by_global_norm", lambda: gx.clip_by_global_norm(1.0), ("norm", "clipped_norm")),
        ("add_l1_subgradient", lambda: gx.add_l1_subgradient(0.1), ()),
        ("identity", lambda: gx.identity(), ()),
        ("stateless", lambda: gx.stateless(_double_plus_params), ()),
        ("set_to_zero", lambda: gx.set_to_zero(), ()),
    ]
]


@pytest.mark.parametrize("make_tx, fields, slots", STATE_LAYOUTS)
def test_state_is_named_tuple(make_tx, fields, slots):
    with jax.enable_x64(True):
        init_state, steps = run(make_tx(), GRADS, PARAMS)
    for t, state in enumerate([init_state] + [s for _, s in steps]):
        assert isinstance(state, tuple) and hasattr(type(state), "_fields"), type(state)
        assert type(state) is type(init_state)
        assert state._fields == fields
        for f in fields:  # every field is reachable by name
            getattr(state, f)
        if "count" in fields:
            assert state.count.dtype == jnp.int32 and state.count.shape == ()
            assert int(state.count) == t
        # Per-parameter slots (a tree like params) in exactly the registry's fields.
        assert slot_fields(state, PARAMS) == tuple(f for f in fields if f in slots)
    if not fields:
        assert init_state == gx.EmptyState()

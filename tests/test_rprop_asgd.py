"""Rprop and ASGD: torch's quirks, the averaged parameters, learning-rate semantics, errors.

torch parity is in ``test_reference_parity.py`` (``torch_new-rprop_*``,
``torch_new-asgd_*``, the latter with ``eval_trajectory``: torch's ``state['ax']``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

# --------------------------------------------------------------------------------------
# Rprop


def _steps(tx, grads, params):
    state = tx.init(params)
    out = []
    for g in grads:
        u, state = tx.update(jnp.asarray(g), state, params)
        out.append((np.asarray(u), state))
    return out


def test_rprop_sign_flip_skips_the_step_and_forgets_the_gradient():
    # torch's rule: where g flips sign, the step size shrinks, the step is skipped and the
    # stored gradient is 0, so the next step keeps the (shrunk) size whatever its sign.
    tx = gx.rprop(learning_rate=0.1)
    p = jnp.zeros(2)
    (u1, _), (u2, s2), (u3, s3) = _steps(tx, [[1.0, 1.0], [-1.0, 2.0], [-3.0, 5.0]], p)
    np.testing.assert_allclose(u1, [-0.1, -0.1], rtol=1e-7)
    np.testing.assert_allclose(u2, [0.0, -0.12], rtol=1e-7)  # flipped: skipped
    rp = s2["scale_by_rprop"]
    np.testing.assert_array_equal(np.asarray(rp.prev), [0.0, 2.0])
    np.testing.assert_allclose(np.asarray(rp.step_size), [0.5, 1.2], rtol=1e-7)
    np.testing.assert_allclose(u3, [0.05, -0.144], rtol=1e-6)  # prev 0: size kept (x1)


def test_rprop_step_ignores_the_gradient_magnitude():
    # After the first step lr is only a unit: the step is lr times the adapted factor,
    # the same for a gradient of 1e-3 or 1e3 with the same sign history.
    tx = gx.rprop(learning_rate=0.1)
    p = jnp.zeros(2)
    big = _steps(tx, [[1e3, -1e3]] * 4, p)
    small = _steps(tx, [[1e-3, -1e-3]] * 4, p)
    for (ub, _), (us, _) in zip(big, small):
        np.testing.assert_array_equal(ub, us)
    np.testing.assert_allclose(big[-1][0], [-0.1 * 1.2**3, 0.1 * 1.2**3], rtol=1e-6)


def test_rprop_step_sizes_are_bounded_in_absolute_units():
    # step_sizes are torch's absolute bounds, whatever the learning rate.
    tx = gx.rprop(learning_rate=0.1, etas=(0.5, 2.0), step_sizes=(0.04, 0.3))
    # second coordinate: 5 times +, then flips every other step (each flip halves its
    # size: 0.3 -> 0.15 -> 0.075 -> 0.0375, floored at 0.04)
    signs = [1.0] * 5 + [-1.0, -1.0, 1.0, 1.0, -1.0, -1.0]
    out = _steps(tx, [[1.0, s] for s in signs], jnp.zeros(2))
    assert float(np.max(np.abs(out[4][0]))) == pytest.approx(0.3)  # 0.1 -> 0.2 -> 0.3 cap
    np.testing.assert_allclose(out[-1][0], [-0.3, 0.04], rtol=1e-6)  # cap and floor
    for u, _ in out:
        assert np.all(np.abs(u) <= 0.3 + 1e-7)


def test_rprop_complex_parts_adapt_independently():
    # torch views a complex parameter as two real ones: the real part keeps its sign and
    # grows, the imaginary part flips and is skipped.
    tx = gx.rprop(learning_rate=0.1)
    out = _steps(tx, [[1 + 1j], [1 - 1j]], jnp.zeros(1, jnp.complex64))
    np.testing.assert_allclose(out[0][0], [-0.1 - 0.1j], rtol=1e-6)
    np.testing.assert_allclose(out[1][0], [-0.12 + 0j], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out[1][1]["scale_by_rprop"].step_size), [1.2 + 0.5j])


def test_rprop_learning_rate_is_a_unit_of_the_step_sizes():
    # A new lr (a jit argument) rescales every adapted step at once: here the same state
    # stepped with half the learning rate moves half as far (torch's lr schedulers do
    # nothing to Rprop after its first step: they change only the initial size).
    p = jnp.zeros(2)
    tx = gx.rprop(learning_rate=0.1)
    state = tx.init(p)
    for g in ([1.0, -1.0], [1.0, -1.0]):
        _, state = tx.update(jnp.asarray(g), state, p)
    g = jnp.asarray([1.0, -1.0])
    u_full = tx.update(g, state, p)[0]
    u_half = gx.rprop(learning_rate=0.05).update(g, state, p)[0]
    np.testing.assert_allclose(np.asarray(u_half), np.asarray(u_full) / 2, rtol=1e-6)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: gx.rprop(learning_rate=0.0), r"learning_rate must be a finite number in \(0"),
        (lambda: gx.rprop(etas=(1.5, 1.2)), r"eta_minus must be a finite number in \(0, 1\)"),
        (lambda: gx.rprop(etas=(0.5, 0.9)), r"eta_plus must be a finite number in \(1"),
        (lambda: gx.rprop(etas=0.5), r"etas must be a pair"),
        (lambda: gx.rprop(step_sizes=(1.0, 0.1)), "min_step_size must be <= max_step_size"),
        (lambda: gx.scale_by_rprop(min_step_size=-1.0), r"min_step_size must be a finite"),
    ],
)
def test_rprop_bad_hyperparameters(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_rprop_optax_positional_port_fails():
    # optax.rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size)
    with pytest.raises(TypeError):
        gx.rprop(0.01, 0.5, 1.2)  # type: ignore[misc]
    with pytest.raises(TypeError):
        gx.scale_by_rprop(0.5, 1.2)  # type: ignore[misc]


# --------------------------------------------------------------------------------------
# ASGD


def _asgd_run(tx, params, grads):
    state = tx.init(params)
    iterates = []
    for g in grads:
        u, state = tx.update(g, state, params)
        params = gx.apply_updates(params, u)
        iterates.append(params)
    return params, state, iterates


def test_asgd_eval_params_is_the_mean_of_the_iterates_from_t0_plus_2():
    with jax.enable_x64(True):
        p0 = {"w": jnp.asarray([1.0, -2.0, 0.5]), "tag": "frozen"}
        grads = [{"w": jnp.asarray([0.3 * t, -1.0, 2.0 - t]), "tag": "frozen"} for t in range(8)]
        tx = gx.asgd(learning_rate=0.1, lambd=0.01, t0=3)
        params, state, iterates = _asgd_run(tx, p0, grads)
        ev = gx.eval_params(state, params)
        mean = np.mean([np.asarray(p["w"]) for p in iterates[4:]], axis=0)  # p_5 .. p_8
        # float64 running mean of 4 iterates vs NumPy's mean: rounding only
        np.testing.assert_allclose(np.asarray(ev["w"]), mean, rtol=1e-14)
        assert ev["tag"] == "frozen"


def test_asgd_eval_params_before_averaging_and_before_any_step():
    p0 = {"w": jnp.asarray([1.0, -2.0])}
    tx = gx.asgd(learning_rate=0.1)  # t0 = 1e6: ax follows the iterate
    state = tx.init(p0)
    # torch's ax is 0 before any step: the parameters are returned instead
    np.testing.assert_array_equal(np.asarray(gx.eval_params(state, p0)["w"]), [1.0, -2.0])
    params, state, _ = _asgd_run(tx, p0, [{"w": jnp.asarray([1.0, 1.0])}] * 3)
    np.testing.assert_array_equal(np.asarray(state[0]._eval_params(params)["w"]), params["w"])


def test_asgd_eta_decays_as_torch():
    # eta_t = lr / (1 + lambd lr (t - 1))^alpha; with a zero parameter the update is
    # -eta_t g exactly.
    lr, lambd, alpha = 0.5, 2.0, 0.75
    with jax.enable_x64(True):
        tx = gx.asgd(learning_rate=lr, lambd=lambd, alpha=alpha)
        p = jnp.zeros(1)
        state = tx.init(p)
        for t in range(1, 5):
            u, state = tx.update(jnp.ones(1), state, p)
            eta = lr / (1 + lambd * lr * (t - 1)) ** alpha
            np.testing.assert_allclose(np.asarray(u), [-eta], rtol=1e-15)


def test_asgd_keeps_bfloat16_params_and_float32_average():
    p = {"w": jnp.ones(3, jnp.bfloat16)}
    params, state, _ = _asgd_run(gx.asgd(t0=0), p, [{"w": jnp.ones(3, jnp.bfloat16)}] * 4)
    assert params["w"].dtype == jnp.bfloat16
    assert state[0].ax["w"].dtype == jnp.float32
    assert gx.eval_params(state, params)["w"].dtype == jnp.bfloat16


def test_asgd_needs_params():
    tx = gx.asgd()
    with pytest.raises(ValueError, match="scale_by_asgd"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(learning_rate=-1.0), "learning_rate must be a finite number"),
        (dict(lambd=-1.0), "lambd must be a finite number"),
        (dict(alpha=float("nan")), "alpha must be a finite number"),
        (dict(t0=-1.0), "t0 must be a finite number"),
        (dict(weight_decay=-0.1), "weight_decay must be a finite number"),
        (dict(learning_rate=lambda t: 0.1), "learning_rate does not accept a schedule"),
    ],
)
def test_asgd_bad_hyperparameters(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        gx.asgd(**kwargs)

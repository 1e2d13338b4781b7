"""Adafactor beyond the registry: factored state layout, the factor slots against the
NumPy reference, batched leading dimensions, the relative-step cap, dtypes, memory and
bad inputs. torch parity is in reference/adafactor_trajectories.json."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from references import ref_adafactor

import gradxform as gx

RTOL = 1e-12  # float64, same formula over a few steps: only rounding differs


def _grads(shapes, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [{k: rng.normal(size=s) for k, s in shapes.items()} for _ in range(steps)]


SHAPES = {"m": (3, 4), "t": (2, 3, 5), "v": (4,), "s": ()}


def test_state_layout_factored_batched_and_unfactored():
    params = {k: jnp.zeros(s) for k, s in SHAPES.items()} | {"frozen": None}
    state = gx.scale_by_adafactor().init(params)
    assert state.row_var["m"].shape == (3, 1) and state.col_var["m"].shape == (1, 4)
    # Leading dims batched (torch factors the last two dims only).
    assert state.row_var["t"].shape == (2, 3, 1) and state.col_var["t"].shape == (2, 1, 5)
    assert state.variance["v"].shape == (4,) and state.variance["s"].shape == ()
    for k in ("m", "t"):
        assert state.variance[k] is None
    for k in ("v", "s", "frozen"):
        assert state.row_var[k] is None and state.col_var[k] is None
    assert state.variance["frozen"] is None
    # init on ShapeDtypeStructs gives the same layout.
    abstract = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in SHAPES.items()}
    a = gx.scale_by_adafactor().init(abstract)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(
        gx.scale_by_adafactor().init({k: jnp.zeros(s) for k, s in SHAPES.items()})
    )


@pytest.mark.parametrize(
    "kwargs, ref_kwargs",
    [
        pytest.param({}, {}, id="default"),
        pytest.param(
            dict(beta2_decay=-0.5, eps=1e-3, d=1.2),
            dict(beta2_decay=-0.5, eps1=1e-3, d=1.2),
            id="tuned",
        ),
    ],
)
def test_updates_and_factors_match_numpy(kwargs, ref_kwargs):
    grads = _grads(SHAPES, 4)
    expected = {k: ref_adafactor([g[k] for g in grads], **ref_kwargs) for k in SHAPES}
    with jax.enable_x64(True):
        tx = gx.scale_by_adafactor(**kwargs)
        state = tx.init({k: jnp.zeros(s) for k, s in SHAPES.items()})
        step = jax.jit(tx.update)
        for t, g in enumerate(grads):
            u, state = step({k: jnp.asarray(v) for k, v in g.items()}, state)
            for k in SHAPES:
                exp = expected[k][t]
                np.testing.assert_allclose(u[k], exp["u"], rtol=RTOL, atol=1e-15)
                for slot in ("row_var", "col_var", "variance"):
                    got = getattr(state, slot)[k]
                    if exp[slot] is None:
                        assert got is None
                    else:
                        assert got.dtype == jnp.float64 and got.shape == exp[slot].shape
                        np.testing.assert_allclose(got, exp[slot], rtol=RTOL)


def test_leading_dims_are_independent_without_clipping():
    # Without update clipping (whose RMS is over the whole leaf, as torch) each slice of a
    # batched leaf is its own matrix.
    grads = _grads({"t": (2, 3, 5)}, 3, seed=1)
    with jax.enable_x64(True):
        tx = gx.scale_by_adafactor(d=None)
        whole = tx.init({"t": jnp.zeros((2, 3, 5))})
        parts = [tx.init(jnp.zeros((3, 5))) for _ in range(2)]
        for g in grads:
            u, whole = tx.update({"t": jnp.asarray(g["t"])}, whole)
            for i in range(2):
                ui, parts[i] = tx.update(jnp.asarray(g["t"][i]), parts[i])
                np.testing.assert_allclose(u["t"][i], ui, rtol=RTOL)


def test_relative_step_cap_and_parameter_scale():
    # One 1-D leaf with a constant gradient: U = sign(g) every step (V = g^2 exactly), so
    # the step is max(eps2, RMS(p)) * min(lr, 1/sqrt(t)) * sign(g); lr = 0.5 is capped
    # from t = 5 on (1/sqrt(5) < 0.5).
    with jax.enable_x64(True):
        tx = gx.adafactor(learning_rate=0.5, eps=(None, 1e-3))
        p = jnp.array([3.0, -4.0])
        state = tx.init(p)
        g = jnp.array([1.0, -2.0])
        for t in range(1, 9):
            u, state = tx.update(g, state, p)
            rms = float(jnp.sqrt(jnp.mean(p * p)))
            expected = -rms * min(0.5, 1 / np.sqrt(t)) * np.sign(np.asarray(g))
            np.testing.assert_allclose(u, expected, rtol=RTOL)
            p = p + u


def test_eps_none_is_the_compute_dtype_epsilon():
    g = {"w": jnp.array([[1e-4, 0.0], [0.0, 2e-4]]), "b": jnp.array([0.0, 1e-5])}
    a = gx.scale_by_adafactor(eps=None)
    b = gx.scale_by_adafactor(eps=float(jnp.finfo(jnp.float32).eps))
    ua, _ = a.update(g, a.init(g))
    ub, _ = b.update(g, b.init(g))
    for k in g:
        np.testing.assert_array_equal(ua[k], ub[k])


def test_bfloat16_params_keep_float32_factors():
    params = {"w": jnp.ones((4, 3), jnp.bfloat16), "b": jnp.ones(3, jnp.bfloat16)}
    tx = gx.adafactor()
    state = tx.init(params)
    grads = jax.tree.map(lambda x: x * 0.5, params)
    u, state2 = jax.jit(tx.update)(grads, state, params)
    assert u["w"].dtype == jnp.bfloat16 and u["b"].dtype == jnp.bfloat16
    inner = state2.scale_by_adafactor
    assert inner.row_var["w"].dtype == inner.col_var["w"].dtype == jnp.float32
    assert inner.variance["b"].dtype == jnp.float32
    assert jax.tree.map(lambda x: x.dtype, state) == jax.tree.map(lambda x: x.dtype, state2)


def test_jit_equals_eager():
    grads = _grads({"w": (5, 3), "b": (3,)}, 3, seed=2)
    tx = gx.adafactor(learning_rate=0.3, weight_decay=0.1)
    p = {"w": jnp.ones((5, 3)), "b": jnp.ones(3)}
    s_e = s_j = tx.init(p)
    step = jax.jit(tx.update)
    for g in grads:
        g = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g)
        ue, s_e = tx.update(g, s_e, p)
        uj, s_j = step(g, s_j, p)
        for k in p:
            np.testing.assert_allclose(ue[k], uj[k], rtol=1e-6, atol=1e-7)  # XLA fusion order


def test_state_is_sublinear_in_matrix_size():
    # The point of the factoring: n + m floats for an n x m matrix (Adam: 2 n m).
    params = {"w": jax.ShapeDtypeStruct((4096, 1024), jnp.float32)}
    state = gx.scale_by_adafactor().init(params)
    leaves = jax.tree_util.tree_leaves((state.row_var, state.col_var, state.variance))
    assert sum(x.nbytes for x in leaves) == 4 * (4096 + 1024)


def test_needs_params_for_the_parameter_scale():
    tx = gx.adafactor()
    g = jnp.ones(3)
    with pytest.raises(ValueError, match="scale_by_adafactor needs the current parameters"):
        tx.update(g, tx.init(g))
    # Without the parameter scale the rule needs none.
    gx.scale_by_adafactor().update(g, gx.scale_by_adafactor().init(g))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: gx.scale_by_adafactor(beta2_decay=0.5), "beta2_decay"),
        (lambda: gx.scale_by_adafactor(d=0.5), "scale_by_adafactor.*d"),
        (lambda: gx.scale_by_adafactor(eps=-1.0), "eps"),
        (lambda: gx.adafactor(eps=(None, -1.0)), "param_scale_eps"),
        (lambda: gx.adafactor(learning_rate=-0.1), "learning_rate"),
        (lambda: gx.adafactor(weight_decay=-0.1), "weight_decay"),
    ],
)
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_eps_must_be_a_pair():
    with pytest.raises(TypeError, match=r"adafactor: eps must be a pair \(eps1, eps2\)"):
        gx.adafactor(eps=1e-3)


def test_positional_port_from_optax_raises():
    # optax.adafactor(learning_rate, min_dim_size_to_factor, decay_rate, ...): a
    # positional second argument means something else here.
    with pytest.raises(TypeError):
        gx.adafactor(1e-2, 128)  # type: ignore[misc]

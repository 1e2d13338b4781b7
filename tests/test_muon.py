"""Muon: the Newton-Schulz iteration, the 2-D views, routing to AdamW, sharding, errors.

torch parity (float64 and bfloat16 iterations) is in ``test_reference_parity.py``
(``torch_new-muon_*``); the registry tests (``test_optimizers.py``) cover jit, dtypes,
state layout and convergence.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from references import ref_muon

import gradxform as gx

CUBIC = (1.5, -0.5, 0.0)  # the classical Newton-Schulz iteration: converges to U V^T


def _rand(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def _polar(g):
    u, _, vh = np.linalg.svd(g, full_matrices=False)
    return u @ vh


def _direction(tx, g, params=None):
    state = tx.init(g if params is None else params)
    return tx.update(g, state, params)[0]


# --------------------------------------------------------------------------------------
# The iteration


@pytest.mark.parametrize("shape", [(6, 3), (3, 6), (4, 4)])
def test_cubic_iteration_converges_to_the_polar_factor(shape):
    # With the classical cubic coefficients and enough steps NS(G) is U V^T (G = U S V^T):
    # the iteration is an orthogonalisation, for tall, wide and square matrices alike.
    # Singular values of the normalised G are >= 0.2 here, so 40 steps converge to
    # float64 rounding (each step maps s to 1.5 s - 0.5 s^3).
    with jax.enable_x64(True):
        g = _rand(shape, seed=1)
        tx = gx.scale_by_muon(momentum=0.0, ns_coefficients=CUBIC, ns_steps=40)
        u = np.asarray(_direction(tx, jnp.asarray(g)))
    r = math.sqrt(max(1, shape[0] / shape[1]))  # "original" adjustment
    np.testing.assert_allclose(u / r, _polar(g), rtol=0, atol=1e-12)


def test_complex_matrices_use_the_conjugate_transpose():
    with jax.enable_x64(True):
        g = _rand((3, 5), seed=2) + 1j * _rand((3, 5), seed=3)
        tx = gx.scale_by_muon(momentum=0.0, ns_coefficients=CUBIC, ns_steps=40)
        u = np.asarray(_direction(tx, jnp.asarray(g)))
    assert u.dtype == np.complex128
    np.testing.assert_allclose(u, _polar(g), rtol=0, atol=1e-12)


def test_quintic_singular_values_land_in_torchs_band():
    # Jordan's coefficients trade exactness for speed: singular values end in about
    # [0.7, 1.2] rather than at 1 (torch.optim.Muon's docstring: ~ Uniform(0.5, 1.5)).
    g = jnp.asarray(_rand((16, 8), seed=4, dtype=np.float32))
    u = _direction(gx.scale_by_muon(momentum=0.0), g) / math.sqrt(2)
    s = np.linalg.svd(np.asarray(u), compute_uv=False)
    assert s.min() > 0.6 and s.max() < 1.25, s


def test_first_steps_match_numpy_reference_with_adjustments():
    # Both adjust_lr_fn rules on a tall matrix (rows / cols = 2), nesterov on and off.
    gs = [_rand((4, 2), seed=s) for s in range(3)]
    for kwargs, ref_kwargs in [
        (dict(adjust_lr_fn="original"), dict(adjust="original")),
        (
            dict(adjust_lr_fn="match_rms_adamw", nesterov=False),
            dict(adjust="match_rms_adamw", nesterov=False),
        ),  # fmt: skip
    ]:
        expected = ref_muon(gs, **ref_kwargs)
        with jax.enable_x64(True):
            tx = gx.scale_by_muon(**kwargs)
            state = tx.init(jnp.asarray(gs[0]))
            for g, exp in zip(gs, expected):
                u, state = tx.update(jnp.asarray(g), state)
                # float64, same operations: rounding only (1e-15 seen).
                np.testing.assert_allclose(np.asarray(u), exp["u"], rtol=1e-12, atol=1e-14)
                np.testing.assert_allclose(np.asarray(state.mu), exp["mu"], rtol=1e-13)


def test_zero_gradient_gives_zero_update():
    tx = gx.scale_by_muon()
    u = _direction(tx, jnp.zeros((3, 2)))
    np.testing.assert_array_equal(np.asarray(u), 0.0)


def test_bfloat16_iteration_option():
    # ns_dtype=bfloat16 (torch's choice): the update keeps the parameter dtype and agrees
    # with the float32 iteration to bfloat16 precision (8 bits: 2^-8 relative, a few
    # roundings per step of the iteration).
    g = jnp.asarray(_rand((8, 4), seed=5, dtype=np.float32))
    u32 = _direction(gx.scale_by_muon(momentum=0.0), g)
    u16 = _direction(gx.scale_by_muon(momentum=0.0, ns_dtype=jnp.bfloat16), g)
    assert u16.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(u16), np.asarray(u32), atol=0.05)
    assert not np.array_equal(np.asarray(u16), np.asarray(u32))


# --------------------------------------------------------------------------------------
# Leaves that are not matrices


def test_non_matrix_leaf_is_refused_with_its_path():
    tx = gx.muon(learning_rate=0.1)
    params = {"layer": {"w": jnp.ones((3, 2)), "bias": jnp.ones(2)}}
    with pytest.raises(ValueError, match=r"\['layer'\]\['bias'\] has shape \(2,\).*reshape="):
        tx.init(params)
    with pytest.raises(ValueError, match=r"\['conv'\] has shape \(3, 3, 2, 4\)"):
        gx.scale_by_muon().update({"conv": jnp.ones((3, 3, 2, 4))}, gx.MuonState(mu={"conv": None}))


def test_declared_reshape_orthogonalises_the_2d_view():
    # A conv kernel (h, w, in, out) viewed as (h w in, out): same update as the matrix,
    # reshaped back; the adjustment uses the view's (rows, cols).
    def view(shape):
        return (math.prod(shape[:-1]), shape[-1])

    k = jnp.asarray(_rand((3, 3, 2, 4), seed=6, dtype=np.float32))
    u = _direction(gx.scale_by_muon(reshape=view), {"conv": k})["conv"]
    u2 = _direction(gx.scale_by_muon(), {"conv": k.reshape(18, 4)})["conv"]
    assert u.shape == k.shape
    np.testing.assert_array_equal(np.asarray(u), np.asarray(u2).reshape(k.shape))


def test_reshape_of_the_wrong_size_is_refused():
    tx = gx.scale_by_muon(reshape=lambda shape: (2, 2))
    with pytest.raises(ValueError, match=r"reshape\(\(6,\)\) for the leaf at \['b'\] returned"):
        tx.init({"b": jnp.ones(6)})


# --------------------------------------------------------------------------------------
# Routing the other leaves to AdamW


def test_adamw_routing_is_partition_of_the_two_optimizers():
    # muon(..., adamw=...) is exactly partition({"muon": muon, "adamw": adamw}): the
    # same updates, leaf for leaf, as the two optimizers run on their own leaves.
    params = {"w": jnp.asarray(_rand((3, 2), dtype=np.float32)), "b": jnp.ones(4)}
    grads = {"w": jnp.asarray(_rand((3, 2), seed=1, dtype=np.float32)), "b": jnp.arange(4.0)}
    adamw_kw = dict(learning_rate=0.01, weight_decay=0.05)
    routed = gx.muon(0.02, adamw=adamw_kw)
    alone_w = gx.muon(0.02)
    alone_b = gx.adamw(**adamw_kw)
    s, sw, sb = routed.init(params), alone_w.init(params["w"]), alone_b.init(params["b"])
    for _ in range(3):
        u, s = routed.update(grads, s, params)
        uw, sw = alone_w.update(grads["w"], sw, params["w"])
        ub, sb = alone_b.update(grads["b"], sb, params["b"])
        np.testing.assert_array_equal(np.asarray(u["w"]), np.asarray(uw))
        np.testing.assert_array_equal(np.asarray(u["b"]), np.asarray(ub))
    # any transform works, and labels may be given in the selector language
    tx = gx.muon(
        0.02, adamw=gx.sgd(learning_rate=0.5), labels=gx.match({"w": "muon"}, default="adamw")
    )
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(np.asarray(u["b"]), -0.5 * np.arange(4.0))


def test_adamw_routing_takes_nd_leaves_to_muon_when_reshape_is_declared():
    params = {"conv": jnp.ones((2, 2, 3)), "b": jnp.ones(3)}
    tx = gx.muon(0.1, adamw={}, reshape=lambda s: (s[0] * s[1], s[2]))
    state = tx.init(params)
    inner = state["partition"].inner_state
    assert inner["muon"][0].mu["conv"].shape == (2, 2, 3) and inner["muon"][0].mu["b"] is None


def test_labels_without_adamw_is_refused():
    with pytest.raises(ValueError, match="labels was given without adamw"):
        gx.muon(labels={"w": "muon"})


# --------------------------------------------------------------------------------------
# Sharded weights


@pytest.mark.parametrize("spec", [PartitionSpec("x", None), PartitionSpec(None, "x")])
def test_sharded_weight_same_update_and_sharding(spec):
    # A (8, 4) weight sharded over the 4-device mesh by rows or by columns: the jitted
    # update equals the unsharded one and keeps the weight's sharding. The Gram products
    # become partial sums reduced across devices (another summation order): float32
    # rounding (6e-8 relative), amplified by the iteration's slope (up to ~3.4 per step
    # near 0) over 5 steps. Seen: 6e-8 absolute on entries up to 0.1 (lr 0.1 times NS);
    # 1e-6 leaves a 15x margin.
    mesh = Mesh(np.array(jax.devices()[:4]), ("x",))
    sharding = NamedSharding(mesh, spec)
    w = jnp.asarray(_rand((8, 4), seed=7, dtype=np.float32))
    g = jnp.asarray(_rand((8, 4), seed=8, dtype=np.float32))
    tx = gx.muon(learning_rate=0.1)
    expected, _ = tx.update(g, tx.init(w), w)
    ws, gs = jax.device_put(w, sharding), jax.device_put(g, sharding)
    state = tx.init(ws)
    u, state = jax.jit(tx.update)(gs, state, ws)
    assert u.sharding.is_equivalent_to(sharding, 2), u.sharding
    assert state["scale_by_muon"].mu.sharding.is_equivalent_to(sharding, 2)
    np.testing.assert_allclose(np.asarray(u), np.asarray(expected), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------
# Signature and bad inputs


def test_positional_order_is_torchs():
    # torch.optim.Muon(params, lr, weight_decay, momentum, nesterov, ns_coefficients, eps,
    # ns_steps, adjust_lr_fn)
    tx = gx.muon(0.02, 0.05, 0.9, False, CUBIC, 1e-6, 3, "match_rms_adamw")
    core = tx["scale_by_muon"]
    assert (core.momentum, core.nesterov, core.ns_coefficients) == (0.9, False, CUBIC)
    assert (core.eps, core.ns_steps, core.adjust_lr_fn) == (1e-6, 3, "match_rms_adamw")
    assert tx["add_decayed_weights"].weight_decay == 0.05
    # optax.contrib.muon(learning_rate, ns_coeffs, ...) ported positionally fails loudly
    with pytest.raises(TypeError, match="weight_decay"):
        gx.muon(0.02, (3.4445, -4.775, 2.0315))


def test_weight_decay_is_decoupled_and_none_turns_it_off():
    w = jnp.asarray(_rand((2, 3), seed=9, dtype=np.float32))
    g = jnp.zeros((2, 3))
    u, _ = gx.muon(0.5, 0.1).update(g, gx.muon(0.5, 0.1).init(w), w)
    np.testing.assert_allclose(np.asarray(u), -0.5 * 0.1 * np.asarray(w), rtol=1e-6)
    tx = gx.muon(0.5, None)
    assert "add_decayed_weights" not in tx.names
    np.testing.assert_array_equal(np.asarray(tx.update(g, tx.init(w), w)[0]), 0.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(adjust_lr_fn="rms"), "adjust_lr_fn must be one of"),
        (dict(ns_steps=100), r"ns_steps must be < 100"),
        (dict(ns_steps=2.5), "ns_steps must be an integer"),
        (dict(ns_coefficients=(1.0, 2.0)), r"ns_coefficients must be a tuple \(a, b, c\)"),
        (dict(momentum=1.0), r"momentum must be a finite number in \[0, 1\)"),
        (dict(eps=0.0), "eps must be a finite number"),
        (dict(ns_dtype=jnp.int32), "ns_dtype must be None or a real floating dtype"),
        (dict(reshape=3), "reshape must be None or a function"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        gx.scale_by_muon(**kwargs)


def test_adamw_routing_without_weight_decay():
    # weight_decay=None leaves the decay term out of the Muon branch (no None member).
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    tx = gx.muon(0.1, None, adamw=dict(weight_decay=None))
    u, _ = tx.update({"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}, tx.init(params), params)
    np.testing.assert_array_equal(np.asarray(u["w"]), 0.0)
    np.testing.assert_array_equal(np.asarray(u["b"]), 0.0)

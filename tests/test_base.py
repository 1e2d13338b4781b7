"""The protocol: value semantics, chain, apply_updates, structure errors."""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import OPTIMIZERS, TrainState, make_train_step

import gradxform as gx
from gradxform import _leafwise


def test_transforms_are_values():
    a = gx.scale_by_adam(b1=0.8)
    assert a == gx.scale_by_adam(b1=0.8)
    assert a != gx.scale_by_adam(b1=0.7)
    assert a != gx.scale_by_adam(b1=0.8, amsgrad=True)
    assert hash(a) == hash(gx.scale_by_adam(b1=0.8))
    assert repr(a).startswith("scale_by_adam(b1=0.8, b2=0.999, eps=1e-08")
    # repr is evaluable: it reconstructs an equal transform.
    assert eval(repr(a), {"scale_by_adam": gx.scale_by_adam}) == a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.b1 = 0.5
    # Numbers are leaves, flags and dtypes are structure.
    leaves, treedef = jax.tree_util.tree_flatten(a)
    assert leaves == [0.8, 0.999, 1e-8, 0.0]
    assert jax.tree_util.tree_unflatten(treedef, leaves) == a


def test_hyperparameters_found_by_path():
    tx = gx.adamw(learning_rate=gx.cosine_decay_schedule(1e-3, 100), weight_decay=0.1)
    paths = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(tx)[0]}
    assert paths[".scale_by_adam.b1"] == 0.9
    assert paths[".add_decayed_weights.weight_decay"] == 0.1
    assert paths[".scale_by_learning_rate.learning_rate.init_value"] == 1e-3
    assert tx.scale_by_adam.b2 == tx["scale_by_adam"].b2 == tx[0].b2 == 0.999


def test_array_hyperparameters_compare_but_do_not_hash():
    a = gx.scale(jnp.asarray(2.0))
    assert a == gx.scale(jnp.asarray(2.0))
    assert a != gx.scale(jnp.asarray(3.0))
    with pytest.raises(TypeError, match="not hashable because a hyperparameter is an array"):
        hash(a)


def test_static_transform_under_jit_like_flax_train_state():
    # flax's TrainState keeps tx as static metadata: it must hash, and equal configs
    # must hit the same cache entry.
    traces = []
    train_step = make_train_step(traces)

    p = {"w": jnp.ones(2)}
    ts = TrainState(p, gx.adam(1e-2).init(p), gx.adam(1e-2))
    ts = train_step(ts, {"w": jnp.ones(2)})
    ts = train_step(TrainState(ts.params, ts.opt_state, gx.adam(1e-2)), {"w": jnp.ones(2)})
    assert len(traces) == 1
    np.testing.assert_allclose(np.asarray(ts.params["w"]), 1 - 2e-2, rtol=1e-5)


def test_chain_state_addressable_by_name_and_index():
    tx = gx.chain(
        gx.clip_by_global_norm(1.0),
        gx.scale_by_adam(),
        gx.add_decayed_weights(1e-4),
        gx.scale_by_learning_rate(gx.cosine_decay_schedule(1e-3, 10_000)),
    )
    p = {"w": jnp.ones(3)}
    s = tx.init(p)
    assert s.names == (
        "clip_by_global_norm",
        "scale_by_adam",
        "add_decayed_weights",
        "scale_by_learning_rate",
    )
    assert s["scale_by_adam"] is s.scale_by_adam is s[1]
    _, s = tx.update({"w": jnp.ones(3)}, s, p)
    assert int(s.scale_by_adam.count) == 1 and int(s[3].count) == 1
    paths = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(s)[0]]
    assert ".scale_by_adam.mu['w']" in paths
    with pytest.raises(KeyError, match="no transform named 'adam'"):
        s["adam"]


def test_chain_naming():
    tx = gx.chain(gx.scale(2.0), gx.scale(3.0), clipper=gx.clip(1.0))
    assert tx.names == ("scale_0", "scale_1", "clipper")
    assert repr(tx) == (
        "chain(scale(step_size=2.0), scale(step_size=3.0), clipper=clip(max_delta=1.0))"
    )
    assert eval(repr(tx), vars(gx)) == tx
    u, _ = tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
    np.testing.assert_array_equal(np.asarray(u["w"]), 1.0)  # 6 clipped to 1
    with pytest.raises(TypeError, match="argument 0 must be a gradient transformation"):
        gx.chain(lambda g: g)
    with pytest.raises(ValueError, match="state does not belong to this chain"):
        tx.update({"w": jnp.ones(2)}, gx.adam(1.0).init({"w": jnp.ones(2)}))


def test_chain_forwards_extra_arguments():
    seen = {}

    class record(gx.GradientTransformation):  # noqa: N801
        def init(self, params):
            return gx.EmptyState()

        def update(self, updates, state, params=None, **extra):
            seen.update(extra)
            return updates, state

    tx = gx.chain(gx.scale(1.0), record())
    tx.update({"w": jnp.ones(1)}, tx.init({"w": jnp.ones(1)}), value=3.0)
    assert seen == {"value": 3.0}


def test_identity_stateless_set_to_zero():
    g = {"w": jnp.arange(3.0)}
    assert gx.identity().update(g, gx.identity().init(g))[0] is g
    double = gx.stateless(lambda u, p: jax.tree_util.tree_map(lambda x: 2 * x, u))
    np.testing.assert_array_equal(
        np.asarray(double.update(g, double.init(g))[0]["w"]), [0.0, 2.0, 4.0]
    )
    z = gx.set_to_zero().update(g, gx.EmptyState())[0]["w"]
    assert z.dtype == g["w"].dtype
    np.testing.assert_array_equal(np.asarray(z), 0.0)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_apply_updates_adds_in_wider_dtype_and_casts_back(dtype):
    p = {"w": jnp.asarray([1.0, 256.0], dtype), "skip": None, "tag": "x"}
    u = {"w": jnp.asarray([1e-3, 0.75], jnp.float32), "skip": None, "tag": "x"}
    new = gx.apply_updates(p, u)
    assert new["w"].dtype == jnp.dtype(dtype) and new["skip"] is None and new["tag"] == "x"
    expected = (np.asarray(p["w"], np.float32) + np.asarray(u["w"])).astype(jnp.dtype(dtype))
    np.testing.assert_array_equal(np.asarray(new["w"]), expected)


def test_structure_mismatch_names_the_path():
    tx = gx.adam(1e-3)
    p = {"enc": {"w": jnp.ones(2), "b": jnp.ones(1)}, "dec": jnp.ones(2)}
    s = tx.init(p)
    bad = {"enc": {"w": jnp.ones(2), "bias": jnp.ones(1)}, "dec": jnp.ones(2)}
    with pytest.raises(
        ValueError,
        match=r"first path in params but not in updates: "
        r"\['enc'\]\['b'\]",
    ) as info:
        tx.update(bad, s, p)
    assert "['enc']['bias']" in str(info.value)
    with pytest.raises(
        ValueError, match=r"in updates but not in state slot 0: \['enc'\]\['bias'\]"
    ):
        tx.update(bad, s)  # no params: caught against the state
    with pytest.raises(ValueError, match=r"params vs updates"):
        gx.apply_updates(p, bad)


def test_update_for_a_leaf_that_was_none_at_init():
    tx = gx.adam(1e-3)
    s = tx.init({"w": jnp.ones(2), "frozen": None})
    with pytest.raises(ValueError, match=r"array at \['frozen'\] but the state has no slot"):
        tx.update({"w": jnp.ones(2), "frozen": jnp.ones(2)}, s)


def test_integer_params_are_rejected_with_their_path():
    with pytest.raises(TypeError, match=r"params leaf at \['step'\] has dtype int32"):
        gx.adam(1e-3).init({"w": jnp.ones(2), "step": jnp.zeros((), jnp.int32)})


def test_integer_params_rejected_at_init_by_stateless_optimizers_too():
    # Used on their own (not in a chain), the stateless primitives used to accept them;
    # the update computed for the integer leaf was then dropped by apply_updates.
    clip = gx.clip(1.0)
    for tx in (
        gx.sgd(0.1),
        gx.chain(gx.clip_by_global_norm(1.0)),
        gx.masked(gx.sgd(0.1), True),
        clip,
        gx.clip_by_global_norm(1.0),
        gx.add_decayed_weights(0.1),
        gx.add_noise(0.1),
        gx.proximal_l1(0.1, 0.1),
        gx.keep_params_nonnegative(),
        gx.apply_if_finite(clip, 2),
        gx.conditionally_transform(clip, lambda t: t > 0),
    ):
        with pytest.raises(TypeError, match=r"params leaf at \['step'\] has dtype int32"):
            tx.init({"w": jnp.ones(2), "step": jnp.zeros((), jnp.int32)})


def test_integer_updates_are_rejected_with_their_path():
    # They would otherwise pass every transform unscaled and be added to the parameter.
    p = {"w": jnp.full(2, 10.0)}
    for tx in (gx.sgd(0.1), gx.adam(0.1)):
        with pytest.raises(TypeError, match=r"updates leaf at \['w'\] has dtype int32"):
            tx.update({"w": jnp.array([1, 2])}, tx.init(p), p)


def test_update_shapes_must_match_the_parameters():
    # JAX would broadcast: the parameter (and Adam's moments) would change shape.
    p = {"a": jnp.ones(1)}
    tx = gx.adam(0.1)
    with pytest.raises(ValueError, match=r"updates leaf at \['a'\] has shape \(4, 3\), its param"):
        tx.update({"a": jnp.ones((4, 3))}, tx.init(p), p)
    with pytest.raises(ValueError, match=r"updates leaf at \['a'\] has shape \(3,\)"):
        gx.apply_updates(p, {"a": jnp.ones(3)})
    # Without params the state's slots tell: a (1,) or (3,) update for a () parameter used
    # to broadcast into the moments, changing the state's shapes.
    # Every named optimizer that keeps per-parameter slots (the registry's).
    s = {"a": jnp.asarray(1.0)}
    # Those that need the parameters say so first; given them, the shapes are compared.
    for tx in (case.make() for case in OPTIMIZERS.values() if case.slots):
        for shape in ((3,), (1,)):
            try:
                tx.update({"a": jnp.ones(shape)}, tx.init(s))
            except ValueError as e:
                if "needs the current parameters" not in str(e):
                    assert re.search(r"updates leaf at \['a'\] has shape", str(e)), e
                    continue
            else:
                raise AssertionError(f"{tx!r}: a {shape} update of a () parameter passed")
            with pytest.raises(ValueError, match=r"updates leaf at \['a'\] has shape"):
                tx.update({"a": jnp.ones(shape)}, tx.init(s), s)


def test_python_float_leaves_are_parameters():
    p = {"w": jnp.ones(2), "f": 2.0}
    # The update is p itself: sgd steps by 0.1 * 2, Adam's first step by 0.1.
    for tx, expected in (
        (gx.sgd(0.1), 1.8),
        (gx.adam(0.1), 1.9),
        (gx.accumulate(gx.sgd(0.1), 1), 1.8),
    ):
        u, _ = tx.update(p, tx.init(p), p)
        assert float(gx.apply_updates(p, u)["f"]) == pytest.approx(expected, abs=1e-6)


def test_states_and_transforms_pickle_and_copy():
    import copy
    import pickle

    p = {"w": jnp.ones(3)}
    roundtrips = (lambda x: pickle.loads(pickle.dumps(x)), copy.deepcopy, copy.copy)
    tx = gx.adamw(1e-3, weight_decay_mask={"w": True})
    state = tx.update(p, tx.init(p), p)[1]
    for f in roundtrips:
        s2 = f(state)
        assert s2.names == state.names
        assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), s2, state))
    selectors = ({"w": True}, gx.match("w"), gx.match({"w": True}, default=False))
    for t in (tx, *(gx.masked(gx.adam(0.1), m) for m in selectors)):
        for f in roundtrips:
            assert f(t) == t
    where = gx.where(lambda path, leaf: True)
    assert copy.copy(where) == where and copy.deepcopy(where) == where


def test_chain_name_must_be_a_string_and_repr_round_trips():
    with pytest.raises(TypeError, match="name labels the chain and must be a string"):
        gx.chain(gx.clip(1.0), name=gx.sgd(0.5))
    with pytest.raises(ValueError, match="'states' is reserved"):
        gx.chain(states=gx.clip(1.0))
    with pytest.raises(ValueError, match="'update' is reserved"):  # tx["update"] was the method
        gx.chain(update=gx.clip(1.0))
    for tx in (
        gx.chain(opt=gx.scale_by_adam(), clip=gx.clip(1.0)),
        gx.chain(gx.clip(1.0), gx.clip(2.0), opt=gx.scale_by_adam()),
        gx.chain(gx.clip(1.0), scale_by_adam=gx.scale_by_adam()),
    ):
        again = eval(repr(tx), vars(gx))
        assert again == tx and again.names == tx.names


@pytest.mark.parametrize(
    "tx",
    [gx.add_decayed_weights(0.1), gx.add_l1_subgradient(0.1), gx.proximal_l1(0.1, 0.1)],
    ids=lambda t: type(t).__name__,
)
def test_transforms_that_need_params_say_so(tx):
    g = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx.update(g, tx.init(g))


def test_weight_decay_mask_and_callable_mask():
    p = {"w": jnp.ones(2), "b": jnp.ones(2)}
    g = jax.tree_util.tree_map(jnp.zeros_like, p)
    tx = gx.add_decayed_weights(0.5, mask={"w": True, "b": False})
    assert hash(tx) == hash(gx.add_decayed_weights(0.5, mask={"w": True, "b": False}))
    u, _ = tx.update(g, tx.init(p), p)
    np.testing.assert_array_equal(np.asarray(u["w"]), 0.5)
    np.testing.assert_array_equal(np.asarray(u["b"]), 0.0)
    tx = gx.add_decayed_weights(0.5, mask=lambda params: {k: k != "b" for k in params})
    u, _ = tx.update(g, tx.init(p), p)
    np.testing.assert_array_equal(np.asarray(u["b"]), 0.0)
    with pytest.raises(ValueError, match=r"mask tree is not a prefix .* path: b \(in params"):
        bad = gx.add_decayed_weights(0.5, mask={"w": True})
        bad.update(g, bad.init(p), p)
    with pytest.raises(ValueError, match=r"params vs add_decayed_weights mask"):
        bad = gx.add_decayed_weights(0.5, mask=lambda ps: {"w": True})
        bad.update(g, bad.init(p), p)
    with pytest.raises(TypeError, match="mask leaves must be Python bools"):
        gx.add_decayed_weights(0.5, mask={"w": jnp.asarray(True)})
    # None or a number over a parameter: named (it was a missing-state-slot error, or a
    # shape error about the mask leaf).
    for bad, match in (
        (lambda ps: {"w": True, "b": None}, r"mask has None at \['b'\], over a parameter"),
        (lambda ps: {"w": True, "b": jnp.asarray(0.0)}, r"mask has Array\(0\., .* at \['b'\]"),
    ):
        tx = gx.add_decayed_weights(0.5, mask=bad)
        with pytest.raises(TypeError, match=match):
            tx.update(g, tx.init(p), p)
    # A callable mask computed from the values: traced under jit (it raised there).
    tx = gx.add_decayed_weights(0.5, mask=lambda ps: {k: jnp.max(v) > 1 for k, v in ps.items()})
    p = {"w": jnp.full(2, 2.0), "b": jnp.ones(2)}
    for run in (tx.update, jax.jit(tx.update)):
        u, _ = run(g, tx.init(p), p)
        np.testing.assert_array_equal(np.asarray(u["w"]), 1.0)
        np.testing.assert_array_equal(np.asarray(u["b"]), 0.0)


def test_weight_decay_masks_take_the_selectors_of_masked():
    # One selector language: every kind gx.masked takes selects the same leaves here.
    p = {"enc": {"w": jnp.ones(2), "bias": jnp.ones(2)}, "head": {"w": jnp.ones(2)}}
    g = jax.tree_util.tree_map(jnp.zeros_like, p)
    decayed = {"enc/w", "head/w"}
    for mask in (
        "*/w",
        gx.match("**/w"),
        gx.where(lambda path, leaf: path[-1] == "w"),
        {"enc": {"w": True, "bias": False}, "head": True},
    ):
        for tx in (gx.add_decayed_weights(0.5, mask=mask), gx.adamw(0.5, weight_decay_mask=mask)):
            u, _ = jax.jit(tx.update)(g, tx.init(p), p)
            moved = {f"{a}/{b}" for a in u for b in u[a] if float(jnp.abs(u[a][b]).max()) > 0}
            assert moved == decayed, (mask, tx)
        assert gx.add_decayed_weights(0.5, mask=mask) == gx.add_decayed_weights(0.5, mask=mask)
    # The selector errors of masked, under the weight decay's name.
    with pytest.raises(ValueError, match=r"add_decayed_weights: pattern '\*/kernel' matches no"):
        tx = gx.add_decayed_weights(0.5, mask="*/kernel")
        tx.update(g, tx.init(p), p)
    with pytest.raises(TypeError, match=r"add_decayed_weights: .*is a gradient transformation"):
        gx.add_decayed_weights(0.5, mask=gx.sgd(0.1))


def test_works_with_registered_dataclass_and_list_trees():
    @jax.tree_util.register_dataclass
    @dataclasses.dataclass
    class Linear:
        w: jax.Array
        b: jax.Array

    p = [Linear(jnp.ones((2, 2)), jnp.zeros(2)), (jnp.ones(1),)]
    tx = gx.adam(0.1)
    s = tx.init(p)
    g = jax.tree_util.tree_map(jnp.ones_like, p)
    u, s = jax.jit(tx.update)(g, s, p)
    new = gx.apply_updates(p, u)
    assert isinstance(new[0], Linear)
    np.testing.assert_allclose(np.asarray(new[0].w), 0.9, rtol=1e-6)


def test_learning_rate_schedule_counts_updates():
    tx = gx.sgd(gx.piecewise_constant_schedule((2,), (1.0, 0.1)))
    p = {"w": jnp.zeros(())}
    s = tx.init(p)
    steps = []
    for _ in range(4):
        u, s = tx.update({"w": jnp.ones(())}, s, p)
        steps.append(float(u["w"]))
    np.testing.assert_allclose(steps, [-1.0, -1.0, -0.1, -0.1], rtol=1e-6)


def test_plain_python_callable_schedule_is_static():
    tx = gx.sgd(lambda count: 0.1 / (1 + count.astype(jnp.float32)))
    leaves = jax.tree_util.tree_leaves(tx)
    assert leaves == []
    p = {"w": jnp.zeros(())}
    s = tx.init(p)
    _, s = tx.update({"w": jnp.ones(())}, s, p)
    u, _ = tx.update({"w": jnp.ones(())}, s, p)
    np.testing.assert_allclose(float(u["w"]), -0.05, rtol=1e-6)


def test_leafwise_math_is_traced_once_per_leaf_signature():
    """Under jit, a transform's per-leaf function runs (in Python) once per distinct leaf
    shape/dtype, not once per leaf: that is what keeps tracing cheap for many leaves.
    A function of a few equations is traced per leaf (nested calls would cost XLA more)."""
    calls = []

    def adam_like(u, m):  # >= 8 equations
        calls.append(u.shape)
        m = 0.9 * m + 0.1 * u
        return m / (jnp.sqrt(m * m + 1e-3) + 1e-8) * 0.5 - 0.1 * u, m

    def tiny(u, m):
        calls.append(u.shape)
        return u * 2, m + u

    leaves = [jnp.ones(3) for _ in range(50)] + [jnp.ones((2, 2)), None]
    slots = [jnp.zeros(3) for _ in range(50)] + [jnp.zeros((2, 2)), None]
    step = jax.jit(lambda u, s: _leafwise.map_updates(adam_like, u, s, n_out=2))
    out, new_slots = step(leaves, slots)
    assert sorted(calls) == [(2, 2), (3,)]
    np.testing.assert_allclose(np.asarray(new_slots[7]), 0.1)
    assert out[51] is None and new_slots[51] is None
    calls.clear()
    out, _ = jax.jit(lambda u, s: _leafwise.map_updates(tiny, u, s, n_out=2))(leaves, slots)
    assert len(calls) == 52  # every leaf, plus the first once more to measure its size
    np.testing.assert_array_equal(np.asarray(out[7]), 2.0)
    calls.clear()
    _leafwise.map_updates(adam_like, leaves, slots, n_out=2)  # eager: plain, no compile per step
    assert len(calls) == 51


def test_leafwise_nested_jit_changes_no_bit(monkeypatch):
    """The compiled step is bitwise the one traced leaf by leaf without nested jit."""
    p = {"w": jnp.linspace(-1.0, 1.0, 7), "b": jnp.arange(3.0), "h": jnp.ones(4, jnp.bfloat16)}
    g = jax.tree_util.tree_map(lambda x: 0.1 * jnp.cos(x), p)
    mask = {"w": True, "b": False, "h": True}
    tx = gx.chain(
        gx.clip_by_global_norm(0.05), gx.adamw(1e-2, weight_decay=0.1, weight_decay_mask=mask)
    )

    def step(p, s):
        u, s = tx.update(g, s, p)
        return gx.apply_updates(p, u), s

    s = tx.init(p)
    nested = jax.jit(step)(p, s)
    monkeypatch.setattr(_leafwise, "per_leaf", lambda fn, leaves: fn)
    plain = jax.jit(step)(p, s)
    for a, b in zip(jax.tree_util.tree_leaves(nested), jax.tree_util.tree_leaves(plain)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_slot_dtype_options_checked_at_construction_and_complex_kept():
    for bad in (jnp.int32, "foo"):
        with pytest.raises(TypeError, match="mu_dtype must be None or a real floating dtype"):
            gx.adam(0.1, mu_dtype=bad)
    with pytest.raises(TypeError, match="accumulator_dtype must be None or a real floating"):
        gx.scale_by_momentum(0.9, accumulator_dtype=jnp.int8)
    # A real mu_dtype on a mixed tree keeps complex first moments complex (its precision).
    p = {"c": jnp.array([1 + 1j], jnp.complex64), "r": jnp.ones(1)}
    tx = gx.adam(0.1, mu_dtype=jnp.bfloat16)
    mu = tx.update({"c": jnp.array([1j], jnp.complex64), "r": jnp.ones(1)}, tx.init(p), p)[1][0].mu
    assert mu["c"].dtype == jnp.complex64 and mu["r"].dtype == jnp.bfloat16
    np.testing.assert_allclose(mu["c"], [0.1j], rtol=1e-6)  # (1 - b1) g, imaginary part kept


def test_clip_complex_under_strict_promotion():
    x = {"a": jnp.array([3 + 4j], jnp.complex64)}
    with jax.numpy_dtype_promotion("strict"):
        u = gx.clip(1.0).update(x, gx.clip(1.0).init(x))[0]
    np.testing.assert_allclose(u["a"], [0.6 + 0.8j], rtol=1e-6)  # |u| clipped to 1


def test_array_hyperparameters_of_the_other_float_width_under_x64():
    # Strict promotion (this suite's mode) with x64: these three mixed an np.float32 (or
    # float64) hyperparameter into float64 (float32) arithmetic and raised.
    with jax.enable_x64(True):
        p32, p64 = {"w": jnp.ones(3, jnp.float32)}, {"w": jnp.ones(3, jnp.float64)}
        cases = [
            (gx.clip_by_global_norm(np.float64(0.5)), p32, gx.clip_by_global_norm(0.5)),
            (gx.clip_by_global_norm(np.float32(0.5)), p64, gx.clip_by_global_norm(0.5)),
            (gx.add_noise(np.float32(0.5), seed=1), p32, gx.add_noise(0.5, seed=1)),
            (gx.radam(1e-3, b2=np.float32(0.5)), p32, gx.radam(1e-3, b2=0.5)),
        ]
        for tx, p, same in cases:
            u = tx.update(p, tx.init(p), p)[0]
            want = same.update(p, same.init(p), p)[0]
            np.testing.assert_allclose(u["w"], want["w"], rtol=1e-6)
            assert u["w"].dtype == p["w"].dtype


def test_apply_updates_refuses_what_it_would_drop():
    # Each of these was silently dropped, truncated or added as 1.0.
    cases = [
        ({"n": jnp.asarray([1, 2])}, {"n": jnp.ones(2)}, r"\['n'\], the int32 parameter"),
        ({"x": jnp.ones(1)}, {"x": jnp.asarray([0.5 + 2j])}, r"\['x'\], a complex update"),
        ({"x": jnp.ones(1)}, {"x": jnp.asarray([True])}, r"\['x'\], the update has dtype bool"),
    ]
    for params, updates, match in cases:
        with pytest.raises(TypeError, match="apply_updates: at " + match):
            gx.apply_updates(params, updates)
    # Still fine: None updates, non-array leaves, integer params left alone.
    p = {"x": jnp.ones(1), "n": jnp.asarray([1, 2]), "s": "name", "f": None}
    out = gx.apply_updates(p, {"x": jnp.ones(1), "n": None, "s": "name", "f": None})
    assert out["n"] is p["n"] and out["s"] == "name" and float(out["x"][0]) == 2.0


def test_complex_hyperparameters_are_refused():
    # A complex NumPy scalar passed validation and lost its imaginary part (a warning).
    for value in (np.complex64(0.1 + 5j), jnp.asarray(0.1 + 5j), 0.1 + 5j):
        with pytest.raises(TypeError, match="learning_rate must be a number or a schedule"):
            gx.sgd(value)

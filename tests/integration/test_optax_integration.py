"""gradxform and Optax mixed both ways: our transforms inside Optax's combinators, Optax's
transforms inside ``gx.chain`` (also as a jit argument), and ``optax.tree_utils`` on our
states."""

from __future__ import annotations

import pytest

optax = pytest.importorskip(
    "optax", reason="Optax is in the 'integration' extra: pip install -e '.[integration]'"
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from compile_counter import count_compiles  # noqa: E402
from optax.tree_utils import NamedTupleKey, tree_get  # noqa: E402

import gradxform as gx  # noqa: E402

PARAMS = {
    "enc": {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.zeros(3)},
    "head": jnp.ones(3),
}


@pytest.fixture(autouse=True)
def _standard_promotion():
    # Optax's code is not written for strict dtype promotion (conftest's setting); the
    # gradxform parts run under strict promotion everywhere else in the suite.
    with jax.numpy_dtype_promotion("standard"):
        yield


def _grads(i):
    return jax.tree.map(lambda p: jnp.cos(p + 0.3 * i) + 0.1, PARAMS)


def _run(tx, steps=4, grads=_grads, name="step"):
    """``steps`` jitted updates; returns params, state and the number of compiles."""

    def step(params, state, g):
        updates, state = tx.update(g, state, params)
        return optax.apply_updates(params, updates), state

    step.__name__ = name
    step = jax.jit(step)
    params, state = PARAMS, tx.init(PARAMS)
    with count_compiles(name) as compiles:
        for i in range(steps):
            params, state = step(params, state, grads(i))
    return params, state, compiles.n


def _close(a, b, rtol=1e-6, atol=1e-7):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


# --------------------------------------------------------------------------------------
# gradxform inside Optax


def test_inside_optax_chain():
    p1, s, n = _run(optax.chain(optax.clip_by_global_norm(1.0), gx.adam(1e-2)))
    p2, _, _ = _run(gx.chain(gx.clip_by_global_norm(1.0), gx.adam(1e-2)))
    _close(p1, p2)
    assert n == 1
    assert isinstance(s[1], gx.ChainState) and int(s[1].scale_by_adam.count) == 4


def test_inside_optax_masked():
    mask = {"enc": {"w": True, "b": False}, "head": True}
    p1, s, n = _run(optax.masked(gx.adam(1e-2), mask))
    p2, _, _ = _run(gx.masked(gx.adam(1e-2), mask))
    _close(p1, p2, rtol=0, atol=0)
    assert n == 1


def test_inside_optax_multi_transform():
    labels = {"enc": {"w": "adam", "b": "sgd"}, "head": "sgd"}
    opt = {"adam": gx.adam(1e-2), "sgd": gx.sgd(0.1, momentum=0.9)}
    p1, s, n = _run(optax.multi_transform(opt, labels))
    p2, _, _ = _run(gx.partition(opt, labels))
    _close(p1, p2, rtol=0, atol=0)
    assert n == 1


def test_inside_optax_multisteps():
    p1, s, n = _run(optax.MultiSteps(gx.adam(1e-2), every_k_schedule=2), steps=6)
    p2, _, _ = _run(gx.accumulate(gx.adam(1e-2), every_k=2), steps=6)
    _close(p1, p2)
    assert n == 1
    assert int(s.inner_opt_state.scale_by_adam.count) == 3


def test_inside_optax_apply_if_finite():
    def grads(i):  # the second step's gradient is NaN
        g = _grads(i)
        return jax.tree.map(lambda x: x * jnp.nan, g) if i == 1 else g

    tx = optax.apply_if_finite(gx.adam(1e-2), max_consecutive_errors=3)
    p1, s, n = _run(tx, steps=3, grads=grads)
    assert n == 1
    assert int(s.total_notfinite) == 1
    assert int(s.inner_state.scale_by_adam.count) == 2  # the NaN step was skipped
    p2, _, _ = _run(gx.adam(1e-2), steps=2, grads=lambda i: _grads(2 * i))
    _close(p1, p2, rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# Optax inside gradxform


def test_optax_members_in_gx_chain_are_named_and_work():
    tx = gx.chain(optax.clip_by_global_norm(1.0), gx.adam(1e-2), optax.scale(1.0))
    assert tx.names == ("clip_by_global_norm", "adam", "scale")
    p1, s, n = _run(tx)
    p2, _, _ = _run(gx.chain(gx.clip_by_global_norm(1.0), gx.adam(1e-2)))
    _close(p1, p2)
    assert n == 1
    assert s.names == tx.names and int(s.adam.scale_by_adam.count) == 4
    # Optax's named optimizers are chains: name them with a keyword.
    assert gx.chain(optax.adam(1e-3)).names == ("chain",)
    assert gx.chain(opt=optax.adam(1e-3), clip=gx.clip(1.0)).names == ("opt", "clip")
    injected = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    inner = gx.chain(injected, optax.MultiSteps(optax.sgd(0.1), 2))
    assert inner.names == ("inject_hyperparams", "MultiSteps")


def test_gx_chain_with_optax_members_as_a_jit_argument():
    clip = optax.clip_by_global_norm(1.0)
    tx = gx.chain(clip, gx.adam(1e-2))
    # The Optax member is structure (in the treedef); our hyperparameters are leaves.
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tx)]
    assert ".adam.scale_by_learning_rate.learning_rate" in paths
    assert all(p.startswith(".adam.") for p in paths)

    @jax.jit
    def step(tx, params, state, g):
        updates, state = tx.update(g, state, params)
        return optax.apply_updates(params, updates), state

    params, state = PARAMS, tx.init(PARAMS)
    with count_compiles("step") as compiles:
        for i, lr in enumerate((1e-2, 5e-3, 1e-3)):
            params, state = step(gx.replace(tx, learning_rate=lr), params, state, _grads(i))
    assert compiles.n == 1
    # A new Optax object (new closures) is a new structure: one more compile.
    with count_compiles("step") as compiles:
        step(gx.chain(optax.clip_by_global_norm(1.0), gx.adam(1e-2)), params, state, _grads(0))
    assert compiles.n == 1
    assert gx.chain(clip, gx.adam(1e-2)) == tx and hash(gx.chain(clip, gx.adam(1e-2))) == hash(tx)


def test_gx_save_load_of_a_chain_with_optax_state(tmp_path):
    tx = gx.chain(opt=optax.adam(1e-2), ours=gx.sgd(0.1, momentum=0.9))
    _, state, _ = _run(tx)
    keys = gx.state_dict(state)
    assert "opt/0/mu/enc/w" in keys and "opt/0/count" in keys
    assert "ours/scale_by_momentum/velocity/head" in keys
    gx.save(tmp_path / "s.npz", state)
    restored = gx.load(tmp_path / "s.npz", jax.eval_shape(tx.init, PARAMS))
    _close(restored, state, rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# optax.tree_utils on our states


def test_tree_get_on_gx_states():
    _, state, _ = _run(gx.adam(1e-2), steps=3)
    # gx.adam's state has two counters (scale_by_adam's and scale_by_learning_rate's),
    # so the bare name is ambiguous ...
    with pytest.raises(KeyError, match="Found multiple values for 'count'"):
        tree_get(state, "count")
    # ... address one: by the state type's name, by a filter on the path, or by ours.
    assert int(tree_get(state, "AdamState").count) == 3

    def only_adam(path, value):
        return isinstance(path[-1], NamedTupleKey) and path[-1].tuple_name == "AdamState"

    assert int(tree_get(state, "count", filtering=only_adam)) == 3
    assert int(state.scale_by_adam.count) == 3
    assert int(state["scale_by_adam"].count) == 3
    # Unique names need nothing more.
    assert tree_get(state, "mu")["enc"]["w"].shape == (2, 3)
    assert float(tree_get(state, "learning_rate")) == pytest.approx(1e-2)

"""gradxform with Flax Linen's ``TrainState``: training, msgpack and Orbax checkpoints,
and changing the learning rate without a recompile."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip(
    "flax", reason="Flax is in the 'integration' extra: pip install -e '.[integration]'"
)

import flax.linen as nn  # noqa: E402
import flax.serialization  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from compile_counter import count_compiles  # noqa: E402
from flax import struct  # noqa: E402
from flax.training import train_state  # noqa: E402

import gradxform as gx  # noqa: E402


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(16, name="hidden")(x))
        return nn.Dense(1, name="out")(x)


X = jax.random.normal(jax.random.key(0), (32, 3))
Y = jnp.sin(X.sum(axis=1, keepdims=True))


def _bits_equal(a, b) -> bool:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    return ta == tb and all(
        np.asarray(x).dtype == np.asarray(y).dtype
        and np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
        for x, y in zip(la, lb)
    )


def _create(tx, cls=train_state.TrainState):
    model = MLP()
    params = model.init(jax.random.key(1), X)["params"]
    return cls.create(apply_fn=model.apply, params=params, tx=tx)


def _loss(params, apply_fn):
    return jnp.mean((apply_fn({"params": params}, X) - Y) ** 2)


def _wrappers():
    return gx.chain(
        gx.masked(gx.adam(1e-2), "*/bias"),
        gx.partition(
            {"mat": gx.sgd(0.05, momentum=0.9), "vec": gx.identity()},
            gx.where(lambda path, leaf: "mat" if leaf.ndim > 1 else "vec"),
        ),
        gx.apply_if_finite(gx.accumulate(gx.adam(gx.cosine_decay_schedule(1e-2, 20)), 2), 3),
    )


def _make_step():
    @jax.jit
    def step(state):
        loss, grads = jax.value_and_grad(_loss)(state.params, state.apply_fn)
        return state.apply_gradients(grads=grads), loss

    return step


def test_train_state_trains_an_mlp_with_one_compile():
    state = _create(gx.adam(1e-2))
    step = _make_step()
    with count_compiles("step") as compiles:
        losses = []
        for _ in range(30):
            state, loss = step(state)
            losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    assert compiles.n == 1
    assert int(state.step) == 30 and int(state.opt_state.scale_by_adam.count) == 30


@pytest.mark.parametrize("make_tx", [lambda: gx.adam(1e-2), _wrappers], ids=["adam", "wrappers"])
def test_msgpack_round_trip(make_tx):
    step = _make_step()
    state = _create(make_tx())
    for _ in range(3):
        state, _ = step(state)
    data = flax.serialization.to_bytes(state)
    restored = flax.serialization.from_bytes(_create(make_tx()), data)
    assert isinstance(restored.opt_state, gx.ChainState)
    assert restored.opt_state.names == state.opt_state.names
    assert _bits_equal(restored.params, state.params)
    assert _bits_equal(restored.opt_state, state.opt_state)
    # The msgpack holds the chain as {member name: state}.
    raw = flax.serialization.msgpack_restore(data)
    assert list(raw["opt_state"]) == list(state.opt_state.names)
    # Training on from the restored state is the same run.
    a, b = state, restored
    for _ in range(3):
        a, _ = step(a)
        b, _ = step(b)
    assert _bits_equal(a.params, b.params) and _bits_equal(a.opt_state, b.opt_state)


def test_msgpack_restore_into_a_different_chain_names_the_members():
    state = _create(gx.adam(1e-2))
    data = flax.serialization.to_bytes(state)
    with pytest.raises(ValueError, match="the state dict has members"):
        flax.serialization.from_bytes(_create(gx.chain(gx.clip(1.0), gx.adam(1e-2))), data)


@pytest.mark.parametrize("first", ["gradxform", "flax"])
def test_chain_state_registration_with_flax_in_either_import_order(first):
    # A fresh interpreter: gradxform registers ChainState when flax.serialization is
    # imported (import hook) or at once when it already is; import gradxform alone never
    # imports flax.
    code = f"""
import sys
if {first!r} == "gradxform":
    import gradxform as gx
    assert "flax" not in sys.modules
    import flax.serialization as s
else:
    import flax.serialization as s
    import gradxform as gx
import jax.numpy as jnp
state = gx.adam(1e-3).init({{"w": jnp.ones(2)}})
assert set(s.to_state_dict(state)) == {{"scale_by_adam", "scale_by_learning_rate"}}
back = s.from_bytes(state, s.to_bytes(state))
assert isinstance(back, gx.ChainState) and back.names == state.names
assert not [f for f in sys.meta_path if type(f).__name__ == "_FlaxHook"]
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=180)


def test_orbax_round_trip_of_a_train_state(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint", reason="Orbax is in the 'integration' extra")
    step = _make_step()
    state = _create(_wrappers())
    for _ in range(3):
        state, _ = step(state)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp_path / "ckpt", state)
    ckpt.wait_until_finished()
    # With a template (abstract: nothing allocated): the TrainState, ChainState and all.
    abstract = jax.eval_shape(lambda: _create(_wrappers()))
    restored = ckpt.restore(tmp_path / "ckpt", abstract)
    assert isinstance(restored.opt_state, gx.ChainState)
    assert _bits_equal(restored.params, state.params)
    assert _bits_equal(restored.opt_state, state.opt_state)
    # Without a template: plain nested dicts, keyed like gx.state_dict's key components.
    raw = ckpt.restore(tmp_path / "ckpt")
    assert set(raw) == {"step", "params", "opt_state"}
    fresh = _create(_wrappers())
    back = fresh.replace(
        step=raw["step"],
        params=gx.load_state_dict(fresh.params, raw["params"]),
        opt_state=gx.load_state_dict(fresh.opt_state, raw["opt_state"]),
    )
    assert _bits_equal(back.opt_state, state.opt_state)
    assert _bits_equal(back.params, state.params)
    ckpt.close()


# --------------------------------------------------------------------------------------
# Changing the learning rate mid-run


def _apply(state, tx, grads):
    """``apply_gradients`` with the transform given (a traced argument), not ``state.tx``."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = gx.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state)


def test_learning_rate_change_without_recompile_tx_as_jit_argument():
    # TrainState keeps tx as static metadata; pass the transform to the step instead.
    @jax.jit
    def step(state, tx):
        grads = jax.grad(_loss)(state.params, state.apply_fn)
        return _apply(state, tx, grads)

    tx = gx.adam(1e-2)
    state = _create(tx)
    with count_compiles("step") as compiles:
        for lr in (1e-2, 1e-2, 5e-3, 1e-3, 3e-4):
            state = step(state, gx.replace(tx, learning_rate=lr))
    assert compiles.n == 1
    # The new rate is used: the last step equals one taken by a freshly built adam(3e-4).
    assert float(state.opt_state.scale_by_learning_rate.learning_rate) == pytest.approx(3e-4)
    # The checkpoint formats are unchanged (tx stays static in the TrainState).
    data = flax.serialization.to_bytes(state)
    assert _bits_equal(flax.serialization.from_bytes(_create(tx), data).opt_state, state.opt_state)


class PytreeTxTrainState(train_state.TrainState):
    """``tx`` as a pytree field (its numbers are leaves): ``state.replace(tx=...)`` with
    the same structure reuses the compiled step."""

    tx: gx.GradientTransformation = struct.field(pytree_node=True)


def test_learning_rate_change_without_recompile_tx_as_pytree_field():
    step = _make_step()
    state = _create(gx.adam(1e-2), cls=PytreeTxTrainState)
    with count_compiles("step") as compiles:
        for lr in (1e-2, 5e-3, 1e-3):
            state = state.replace(tx=gx.replace(state.tx, learning_rate=lr))
            state, _ = step(state)
    assert compiles.n == 1
    assert float(state.opt_state.scale_by_learning_rate.learning_rate) == pytest.approx(1e-3)
    # msgpack serializes state, not transforms: keep the stock TrainState for msgpack.
    with pytest.raises(TypeError, match="can not serialize 'chain' object"):
        flax.serialization.to_bytes(state)


def test_pytree_tx_train_state_through_orbax(tmp_path):
    # Orbax saves the transform's numbers with the state and restores them.
    ocp = pytest.importorskip("orbax.checkpoint", reason="Orbax is in the 'integration' extra")
    step = _make_step()
    state = _create(gx.adam(1e-2), cls=PytreeTxTrainState)
    state = state.replace(tx=gx.replace(state.tx, learning_rate=3e-3))
    state, _ = step(state)
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp_path / "ckpt", state)
        ckpt.wait_until_finished()
        template = jax.eval_shape(lambda: _create(gx.adam(1e-2), cls=PytreeTxTrainState))
        restored = ckpt.restore(tmp_path / "ckpt", template)
    assert float(restored.tx.scale_by_learning_rate.learning_rate) == pytest.approx(3e-3)
    assert _bits_equal(restored.opt_state, state.opt_state)


def test_replacing_a_static_tx_recompiles():
    # What the two tests above avoid: a new static tx is a new treedef.
    step = _make_step()
    state = _create(gx.adam(1e-2))
    with count_compiles("step") as compiles:
        state, _ = step(state)
        state, _ = step(state.replace(tx=gx.replace(state.tx, learning_rate=5e-3)))
    assert compiles.n == 2

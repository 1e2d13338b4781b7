"""gradxform with Flax NNX: ``nnx.Optimizer``, ``nnx.state`` round trips, freezing."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "flax.nnx", reason="Flax is in the 'integration' extra: pip install -e '.[integration]'"
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from compile_counter import count_compiles  # noqa: E402
from flax import nnx  # noqa: E402

import gradxform as gx  # noqa: E402

X = jax.random.normal(jax.random.key(0), (32, 3))
Y = jnp.sin(X.sum(axis=1, keepdims=True))


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.encoder = nnx.Linear(3, 16, rngs=rngs)
        self.head = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        return self.head(jax.nn.relu(self.encoder(x)))


def _arrays(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _bits_equal(a, b) -> bool:
    la, lb = _arrays(a), _arrays(b)
    return len(la) == len(lb) and all(
        x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True) for x, y in zip(la, lb)
    )


def _make_step():
    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(X) - Y) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    return step


def test_nnx_optimizer_trains_with_one_compile():
    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, gx.adam(1e-2), wrt=nnx.Param)
    step = _make_step()
    with count_compiles("step") as compiles:
        losses = [float(step(model, optimizer)) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    assert compiles.n == 1
    assert int(optimizer.step[...]) == 30
    assert isinstance(optimizer.opt_state, gx.ChainState)
    assert int(optimizer.opt_state.scale_by_adam.count[...]) == 30


def test_nnx_state_round_trip_through_gx_save(tmp_path):
    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, gx.adam(1e-2), wrt=nnx.Param)
    step = _make_step()
    for _ in range(3):
        step(model, optimizer)
    # nnx.state(optimizer) is a pytree (nnx.State of Variables): the key paths name the
    # chain members and the parameters, and ".../value" the Variable's array.
    saved = nnx.state(optimizer)
    keys = gx.state_dict(saved)
    assert "opt_state/scale_by_adam/mu/encoder/kernel/value" in keys
    assert "step/value" in keys
    gx.save(tmp_path / "opt.npz", {"model": nnx.state(model), "optimizer": saved})
    # A fresh model and optimizer, filled from the file.
    model2 = MLP(nnx.Rngs(1))
    optimizer2 = nnx.Optimizer(model2, gx.adam(1e-2), wrt=nnx.Param)
    template = {"model": nnx.state(model2), "optimizer": nnx.state(optimizer2)}
    restored = gx.load(tmp_path / "opt.npz", template)
    nnx.update(model2, restored["model"])
    nnx.update(optimizer2, restored["optimizer"])
    assert _bits_equal(nnx.state(optimizer2), saved)
    # Both continue identically.
    for _ in range(3):
        step(model, optimizer)
        step(model2, optimizer2)
    assert _bits_equal(nnx.state(model2), nnx.state(model))
    assert _bits_equal(nnx.state(optimizer2), nnx.state(optimizer))


def test_nnx_state_round_trip_through_orbax(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint", reason="Orbax is in the 'integration' extra")
    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, gx.adam(1e-2), wrt=nnx.Param)
    step = _make_step()
    for _ in range(3):
        step(model, optimizer)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp_path / "ckpt", nnx.state(optimizer))
    ckpt.wait_until_finished()
    abstract = nnx.eval_shape(lambda: nnx.Optimizer(MLP(nnx.Rngs(0)), gx.adam(1e-2), wrt=nnx.Param))
    restored = ckpt.restore(tmp_path / "ckpt", nnx.state(abstract))
    optimizer2 = nnx.Optimizer(MLP(nnx.Rngs(1)), gx.adam(1e-2), wrt=nnx.Param)
    nnx.update(optimizer2, restored)
    assert isinstance(optimizer2.opt_state, gx.ChainState)
    assert _bits_equal(nnx.state(optimizer2), nnx.state(optimizer))
    ckpt.close()


@pytest.mark.parametrize("how", ["gx.freeze", "nnx filter"])
def test_freeze_a_submodule(how):
    model = MLP(nnx.Rngs(0))
    if how == "gx.freeze":
        # Key-path pattern on the nnx.State paths (".../value" is matched by "**").
        optimizer = nnx.Optimizer(model, gx.freeze(gx.adam(1e-2), "encoder/**"), wrt=nnx.Param)
    else:
        # Or NNX's own filters: the encoder is not in `wrt` at all.
        wrt = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("encoder")))
        optimizer = nnx.Optimizer(model, gx.adam(1e-2), wrt=wrt)
    encoder = _arrays(nnx.state(model.encoder))
    head = _arrays(nnx.state(model.head))

    @nnx.jit
    def step(model, optimizer):
        diff = nnx.DiffState(0, optimizer.wrt)
        grads = nnx.grad(lambda m: jnp.mean((m(X) - Y) ** 2), argnums=diff)(model)
        optimizer.update(model, grads)

    for _ in range(3):
        step(model, optimizer)
    assert all(np.array_equal(a, b) for a, b in zip(encoder, _arrays(nnx.state(model.encoder))))
    assert not any(np.array_equal(a, b) for a, b in zip(head, _arrays(nnx.state(model.head))))
    # No optimizer slots for the frozen encoder either way.
    assert not [k for k in gx.state_dict(nnx.state(optimizer)) if "encoder" in k]

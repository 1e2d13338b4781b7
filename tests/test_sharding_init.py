"""``init`` keeps the parameters' shardings: on ShapeDtypeStructs, on arrays, under jit.

Every state slot (a leaf with its parameter's shape) must have its parameter's sharding;
scalars (counts, the last learning rate) may be replicated or on the default device.
conftest.py gives 4 host CPU devices: a 2 x 2 mesh, data ("data") by model ("model").
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import gradxform as gx

SHAPES = {"w": (8, 4), "b": (4,), "emb": (16, 8)}
# data-parallel: the leading (batch-like) axis over "data"; model-parallel: weights split
# over "model"; one leaf over both axes; one replicated.
SPECS = {
    "data": {"w": P("data", None), "b": P(), "emb": P("data", None)},
    "model": {"w": P(None, "model"), "b": P("model"), "emb": P(None, "model")},
    "2d": {"w": P("data", "model"), "b": P(None), "emb": P("model", "data")},
}

TRANSFORMS = {
    "adam": lambda: gx.adam(1e-3),
    "sgd_momentum": lambda: gx.sgd(1e-2, momentum=0.9),
    "adagrad": lambda: gx.adagrad(1e-2),
    "masked_adam": lambda: gx.masked(gx.adam(1e-3), {"w": True, "b": False, "emb": True}),
    "accumulate_adam": lambda: gx.accumulate(gx.adam(1e-3), every_k=2),
}


def _mesh(axis_type=AxisType.Auto):
    return jax.make_mesh((2, 2), ("data", "model"), axis_types=(axis_type, axis_type))


def _abstract(mesh, layout):
    return {
        k: jax.ShapeDtypeStruct(s, jnp.float32, sharding=NamedSharding(mesh, SPECS[layout][k]))
        for k, s in SHAPES.items()
    }


def _slots_follow_params(state, params):
    """Assert each params-shaped state leaf has its parameter's sharding; return how many
    slots were checked. Scalars: replicated or on one device (the default)."""
    checked = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        key = next((k.key for k in path if isinstance(k, jax.tree_util.DictKey)), None)
        if key is None:  # a scalar: count, learning rate, micro step
            assert leaf.shape == ()
            s = leaf.sharding
            assert s.is_fully_replicated or len(s.device_set) == 1, (path, s)
            continue
        want = params[key].sharding
        assert leaf.shape == params[key].shape
        assert leaf.sharding.is_equivalent_to(want, leaf.ndim), (
            jax.tree_util.keystr(path),
            leaf.sharding,
            want,
        )
        checked += 1
    return checked


@pytest.mark.parametrize("layout", list(SPECS))
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_init_on_sharded_shape_dtype_structs_keeps_each_slots_sharding(name, layout):
    # Regression: slots of ShapeDtypeStructs were built on device 0 (Optax keeps P('x')).
    abstract = _abstract(_mesh(), layout)
    state = TRANSFORMS[name]().init(abstract)
    assert _slots_follow_params(state, abstract) > 0


@pytest.mark.parametrize("layout", list(SPECS))
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_init_on_sharded_arrays_keeps_each_slots_sharding(name, layout):
    abstract = _abstract(_mesh(), layout)
    params = {k: jnp.zeros(a.shape, a.dtype, device=a.sharding) for k, a in abstract.items()}
    state = TRANSFORMS[name]().init(params)
    assert _slots_follow_params(state, params) > 0


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_jit_init_follows_params_on_a_mesh_with_explicit_axes(name):
    # Regression: jax.jit(tx.init)(sharded params) gave single-device state. With Explicit
    # mesh axes the tracer's type carries the sharding and init constrains each slot to it.
    mesh = _mesh(AxisType.Explicit)
    abstract = _abstract(mesh, "2d")
    params = {k: jnp.zeros(a.shape, a.dtype, device=a.sharding) for k, a in abstract.items()}
    with jax.set_mesh(mesh):
        state = jax.jit(TRANSFORMS[name]().init)(params)
        # and eval_shape shows those shardings (usable as out_shardings)
        shapes = jax.eval_shape(TRANSFORMS[name]().init, abstract)
    assert _slots_follow_params(state, params) > 0
    for a, b in zip(jax.tree.leaves(shapes), jax.tree.leaves(state)):
        if a.ndim:
            assert a.sharding.spec == b.sharding.spec


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_jit_init_in_place_from_shape_dtype_structs_on_an_auto_mesh(name):
    # With Auto axes (Mesh's default) a tracer does not show its input's sharding, so
    # jax.jit(tx.init)(params) cannot follow it. The documented ways both build the state
    # sharded inside the compiled program, with no parameter values:
    tx = TRANSFORMS[name]()
    abstract = _abstract(_mesh(), "2d")
    # 1. ShapeDtypeStructs closed over: init sees their shardings and constrains slots.
    state = jax.jit(lambda: tx.init(abstract))()
    assert _slots_follow_params(state, abstract) > 0
    # 2. out_shardings read off the (cheap, compiled-once) in-place init of (1).
    out_shardings = jax.tree.map(lambda x: x.sharding, state)
    params = {k: jnp.zeros(a.shape, a.dtype, device=a.sharding) for k, a in abstract.items()}
    state2 = jax.jit(tx.init, out_shardings=out_shardings)(params)
    assert _slots_follow_params(state2, abstract) > 0


def test_jit_update_keeps_the_shardings_init_gave():
    mesh = _mesh()
    abstract = _abstract(mesh, "model")
    params = {k: jnp.ones(a.shape, a.dtype, device=a.sharding) for k, a in abstract.items()}
    tx = gx.adam(1e-3)
    state = tx.init(abstract)
    grads = jax.tree.map(lambda p: p * 0.5, params)
    updates, state = jax.jit(tx.update)(grads, state, params)
    assert _slots_follow_params(state, params) > 0
    for k in params:
        assert updates[k].sharding.is_equivalent_to(params[k].sharding, params[k].ndim)


def test_init_on_unsharded_shape_dtype_structs_still_works():
    state = gx.adam(1e-3).init({"w": jax.ShapeDtypeStruct((3,), jnp.float32)})
    assert state.scale_by_adam.mu["w"].shape == (3,)
    with contextlib.suppress(AttributeError):
        assert len(state.scale_by_adam.mu["w"].sharding.device_set) == 1

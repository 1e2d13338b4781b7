"""gx.zero1 in the pytest process (4 host devices): placement rule, eager and jitted use,
bad arguments. The 8-device checks (memory 1/N, collectives, FSDP) are in
test_sharding_8dev.py; the 2-process run in test_multiprocess.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import gradxform as gx


def _mesh():
    return jax.sharding.Mesh(np.array(jax.devices()[:4]), ("data",), axis_types=(AxisType.Auto,))


def _params(mesh):
    rng = np.random.default_rng(0)
    rep = NamedSharding(mesh, P())
    shapes = {"w": (8, 6), "v": (3, 8), "odd": (3, 5), "s": ()}
    return {
        k: jax.device_put(jnp.asarray(rng.normal(size=s).astype(np.float32)), rep)
        for k, s in shapes.items()
    }


@pytest.mark.parametrize(
    "shape, spec, want",
    [
        ((8, 6), P(), P("data", None)),  # first divisible dimension
        ((3, 8), P(), P(None, "data")),  # the first one does not divide
        ((3, 5), P(), None),  # none divides: stays replicated, no padding
        ((), P(), None),  # scalars stay
        ((8,), P("data"), None),  # FSDP: already over the axis
        ((8, 8), P("model"), P("model", "data")),  # model parallel kept
        ((8, 6), None, P("data", P.UNCONSTRAINED)),  # unknown (traced, Auto axes)
    ],
)
def test_placement_rule(shape, spec, want):
    assert gx.zero1_spec(shape, spec, "data", 4) == want


def test_eager_and_jitted_updates_equal_the_unsharded_adam_bitwise():
    mesh = _mesh()
    params = _params(mesh)
    tx, base = gx.zero1(gx.adam(1e-2), mesh), gx.adam(1e-2)
    sz, sb = tx.init(params), base.init(params)
    mu = sz.inner_state.scale_by_adam.mu
    assert mu["w"].sharding.spec == P("data", None) and mu["v"].sharding.spec == P(None, "data")
    assert mu["odd"].sharding.is_fully_replicated
    assert mu["w"].addressable_shards[0].data.shape == (2, 6)
    rng = np.random.default_rng(1)
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    for update in (tx.update, jax.jit(tx.update)):
        uz, sz2 = update(grads, sz, params)
        ub, sb2 = base.update(grads, sb, params)
        for a, b in zip(jax.tree.leaves((uz, sz2.inner_state)), jax.tree.leaves((ub, sb2))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert all(u.sharding.is_fully_replicated for u in jax.tree.leaves(uz))
        assert sz2.inner_state.scale_by_adam.nu["w"].sharding.is_equivalent_to(mu["w"].sharding, 2)


def test_bad_arguments():
    mesh = _mesh()
    with pytest.raises(TypeError, match="zero1: inner must be a gradient transformation"):
        gx.zero1(object(), mesh)
    with pytest.raises(TypeError, match="zero1: mesh must be a jax.sharding.Mesh"):
        gx.zero1(gx.adam(1e-3), "data")
    with pytest.raises(ValueError, match=r"zero1: axis must be one of .*'model'"):
        gx.zero1(gx.adam(1e-3), mesh, "model")
    with pytest.raises(TypeError, match="gather_updates must be True or False"):
        gx.zero1(gx.adam(1e-3), mesh, gather_updates=1)

"""The opt-in flat parameter layout: round trip, flat gradients, same numerics."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import OPTIMIZERS
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import gradxform as gx


def _params():
    rng = np.random.default_rng(0)
    return {
        "enc": {
            "w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=4), jnp.float32),
        },
        "head": [jnp.asarray(rng.normal(size=(4, 2)), jnp.bfloat16), None, "relu"],
        "scale": jnp.asarray(1.5, jnp.float32),
    }


def _loss(p):
    h = jnp.tanh(jnp.ones((2, 3)) @ p["enc"]["w"] + p["enc"]["b"][None, :])
    out = h @ p["head"][0].astype(jnp.float32)
    return jnp.sum(out**2) * p["scale"]


def test_round_trip_groups_by_dtype():
    p = _params()
    layout = gx.ParamLayout.of(p)
    flat = layout.flatten(p)
    assert set(flat) == {"float32", "bfloat16"}
    assert flat["float32"].shape == (12 + 4 + 1,) and flat["bfloat16"].shape == (8,)
    assert layout.num_params == 25
    back = layout.unflatten(flat)
    assert back["head"][1] is None and back["head"][2] == "relu"
    for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(back)):
        if hasattr(a, "dtype"):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    assert repr(layout) == "ParamLayout(4 leaves -> float32[17], bfloat16[8])"
    assert layout == gx.ParamLayout.of(p) and hash(layout) == hash(gx.ParamLayout.of(p))


def test_gradients_arrive_flat_and_match_tree_gradients():
    p = _params()
    layout = gx.ParamLayout.of(p)
    g_flat = jax.grad(lambda f: _loss(layout.unflatten(f)))(layout.flatten(p))
    arrays = {"enc": p["enc"], "head0": p["head"][0], "scale": p["scale"]}
    g_tree = jax.grad(
        lambda q: _loss({"enc": q["enc"], "head": [q["head0"], None, "relu"], "scale": q["scale"]})
    )(arrays)
    assert set(g_flat) == {"float32", "bfloat16"}
    np.testing.assert_array_equal(
        np.asarray(g_flat["float32"]),
        np.asarray(
            jnp.concatenate([g_tree["enc"]["w"].ravel(), g_tree["enc"]["b"], g_tree["scale"][None]])
        ),
    )


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_elementwise_optimizers_are_bitwise_equal_on_the_flat_layout(opt):
    p = {k: v for k, v in _params().items() if k != "head"}
    layout = gx.ParamLayout.of(p)
    tx = getattr(gx, opt)(1e-2)

    def run(params, loss):
        state = tx.init(params)
        for _ in range(5):
            g = jax.grad(loss)(params)
            u, state = jax.jit(tx.update)(g, state, params)
            params = gx.apply_updates(params, u)
        return params

    loss = lambda q: _loss({**q, "head": [jnp.ones((4, 2), jnp.bfloat16), None, "relu"]})  # noqa: E731
    tree = run(p, loss)
    flat = layout.unflatten(run(layout.flatten(p), lambda f: loss(layout.unflatten(f))))
    for a, b in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(flat)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_pad_to_allows_sharding_the_flat_buffer():
    p = {"a": jnp.ones(5), "b": jnp.ones((2, 3))}
    layout = gx.ParamLayout.of(p, pad_to=4)
    flat = layout.flatten(p)
    assert flat["float32"].shape == (12,)
    np.testing.assert_array_equal(np.asarray(flat["float32"][11:]), 0.0)
    mesh = Mesh(np.array(jax.devices()[:4]), ("x",))
    sharding = NamedSharding(mesh, PartitionSpec("x"))
    flat = jax.device_put(flat, sharding)
    tx = gx.adam(1e-3)
    state = tx.init(flat)
    assert state[0].mu["float32"].sharding.is_equivalent_to(sharding, 1)
    back = layout.unflatten(flat)
    np.testing.assert_array_equal(np.asarray(back["b"]), 1.0)


def test_layout_errors():
    with pytest.raises(ValueError, match="pad_to must be an integer >= 1, got 0"):
        gx.ParamLayout.of({"a": jnp.ones(2)}, pad_to=0)
    with pytest.raises(ValueError, match="pad_to must be an integer >= 1, got True"):
        gx.ParamLayout.of({"a": jnp.ones(2)}, pad_to=True)
    assert gx.ParamLayout.of({"a": jnp.ones(2)}, pad_to=np.int64(4)).sizes == (("float32", 4),)
    # A float array where the layout holds a non-optimized leaf was dropped without a word.
    with pytest.raises(ValueError, match=r"leaf at \['b'\] is a float array, but the layout"):
        gx.ParamLayout.of({"a": jnp.ones(2), "b": None}).flatten(
            {"a": jnp.ones(2), "b": jnp.ones(5)}
        )
    layout = gx.ParamLayout.of({"a": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"leaf has float32\[3\], layout expects float32\[2\]"):
        layout.flatten({"a": jnp.ones(3)})
    with pytest.raises(ValueError, match="layout groups vs flat"):
        layout.unflatten({"float64": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"flat\['float32'\] is float32\[4\], the layout expects"):
        layout.unflatten({"float32": jnp.ones(4)})  # e.g. flattened with pad_to=4
    with pytest.raises(ValueError, match=r"flat\['float32'\] is bfloat16\[2\]"):
        layout.unflatten({"float32": jnp.ones(2, jnp.bfloat16)})


def test_layout_with_unhashable_fixed_leaves_is_a_static_argument():
    # Non-optimized array leaves (an int step, a numpy mask) are compared by identity.
    p = {"w": jnp.ones(3), "step": jnp.asarray(3), "mask": np.array([1, 0]), "name": "x"}
    layout = gx.ParamLayout.of(p)
    assert layout == gx.ParamLayout.of(p) and hash(layout) == hash(gx.ParamLayout.of(p))
    assert layout != gx.ParamLayout.of({**p, "mask": np.array([1, 0])})

    @functools.partial(jax.jit, static_argnums=1)
    def run(flat, lay):
        tree = lay.unflatten(flat)
        return tree["w"] * tree["step"]

    np.testing.assert_array_equal(run(layout.flatten(p), layout), jnp.full(3, 3.0))

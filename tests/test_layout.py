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


# Rules that look at a whole leaf (a layer) rather than each coordinate: on a flat buffer
# they see one big layer, so they are not elementwise-equal to the tree run. The
# trust-ratio ones take ``layout=`` to reduce per original leaf (tested below).
PER_LEAF = {
    "adafactor": "factored row / column moments of matrices",
    "lamb": "per-leaf trust ratio (layout= restores it)",
    "lars": "per-leaf trust ratio (layout= restores it)",
    "novograd": "one second moment per leaf",
    "muon": "orthogonalises each matrix",
    "ldog": "one step size per leaf",
}


@pytest.mark.parametrize("opt", sorted(set(OPTIMIZERS) - set(PER_LEAF)))
def test_elementwise_optimizers_are_bitwise_equal_on_the_flat_layout(opt):
    p = {k: v for k, v in _params().items() if k != "head"}
    layout = gx.ParamLayout.of(p)
    tx = OPTIMIZERS[opt].make(learning_rate=1e-2)

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


# --------------------------------------------------------------------------------------
# Per-leaf choices on the flat layout: labels (masks, partitions, freezing), per-leaf sums


def _model_params():
    rng = np.random.default_rng(1)
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
    return {
        "layer0": {"kernel": f(3, 4), "bias": f(4), "scale": f(4)},
        "layer1": {"kernel": f(4, 2), "bias": f(2), "scale": f(2)},
    }


def _model_loss(p):
    h = jnp.ones((2, 3))
    for name in ("layer0", "layer1"):
        h = jnp.tanh(h @ p[name]["kernel"] + p[name]["bias"][None]) * p[name]["scale"][None]
    return jnp.sum(h**2)


DECAY = gx.match({"**/kernel": "decay"}, default="no_decay")


def _train(tx, params, loss, steps=5):
    state = tx.init(params)
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
    for _ in range(steps):
        u, state = step(params, state)
        params = gx.apply_updates(params, u)
    return params


def _assert_trees_bitwise(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_labels_give_one_buffer_per_label_and_dtype():
    p = {**_model_params(), "emb": jnp.ones((2, 2), jnp.bfloat16), "step": 3}
    layout = gx.ParamLayout.of(p, labels=DECAY, pad_to=4)
    flat = layout.flatten(p)
    assert jax.tree_util.tree_map(jnp.shape, flat) == {
        "decay": {"float32": (20,)},
        "no_decay": {"float32": (12,), "bfloat16": (4,)},
    }
    assert layout.labels() == {
        "decay": {"float32": "decay"},
        "no_decay": {"float32": "no_decay", "bfloat16": "no_decay"},
    }
    back = layout.unflatten(flat)
    assert back["step"] == 3
    _assert_trees_bitwise(back, p)


def test_weight_decay_mask_on_flat_buffers_equals_the_tree_mask():
    p = _model_params()
    layout = gx.ParamLayout.of(p, labels=DECAY)
    tree = _train(gx.adamw(1e-2, weight_decay=0.1, weight_decay_mask="**/kernel"), p, _model_loss)
    flat_tx = gx.adamw(1e-2, weight_decay=0.1, weight_decay_mask={"decay": True, "no_decay": False})
    flat = _train(flat_tx, layout.flatten(p), lambda f: _model_loss(layout.unflatten(f)))
    _assert_trees_bitwise(layout.unflatten(flat), tree)


def test_partition_and_freeze_on_flat_buffers_equal_the_tree_versions():
    p = _model_params()
    txs = {"decay": gx.adamw(1e-2, weight_decay=0.1), "no_decay": gx.sgd(0.05, momentum=0.9)}
    layout = gx.ParamLayout.of(p, labels=DECAY)
    flat_loss = lambda f: _model_loss(layout.unflatten(f))  # noqa: E731
    tree = _train(gx.partition(txs, DECAY), p, _model_loss)
    flat = _train(gx.partition(txs, layout.labels()), layout.flatten(p), flat_loss)
    _assert_trees_bitwise(layout.unflatten(flat), tree)

    frozen = gx.match({"layer0/**": "frozen"}, default="train")
    layout = gx.ParamLayout.of(p, labels=frozen)
    flat_loss = lambda f: _model_loss(layout.unflatten(f))  # noqa: E731
    tree = _train(gx.freeze(gx.adam(1e-2), "layer0/**"), p, _model_loss)
    flat_tx = gx.freeze(gx.adam(1e-2), {"frozen": True, "train": False})
    state = flat_tx.init(layout.flatten(p))
    assert state.inner_state[0].mu["frozen"]["float32"] is None  # no state for frozen leaves
    flat = _train(flat_tx, layout.flatten(p), flat_loss)
    _assert_trees_bitwise(layout.unflatten(flat), tree)
    _assert_trees_bitwise(layout.unflatten(flat)["layer0"], p["layer0"])


def test_leaf_sums_give_per_leaf_norms_and_skip_the_padding():
    p = {**_model_params(), "half": jnp.full((3,), 2.0, jnp.bfloat16)}
    layout = gx.ParamLayout.of(p, pad_to=7)  # float32[32 -> 35], bfloat16[3 -> 7]
    flat = layout.flatten(p)
    flat = jax.tree_util.tree_map(lambda x: x.at[-1].set(100.0), flat)  # junk in the padding
    sums = jax.jit(layout.leaf_sums)(jax.tree_util.tree_map(jnp.square, flat))
    leaves = [x for x in jax.tree_util.tree_leaves(p) if x.dtype == jnp.float32]
    want = [float(jnp.sum(x.astype(jnp.float32) ** 2)) for x in leaves]
    np.testing.assert_allclose(np.asarray(sums["float32"][:-1]), want, rtol=1e-6)
    assert float(sums["float32"][-1]) == 100.0**2  # the padding is its own segment
    assert float(sums["bfloat16"][0]) == 12.0
    per_element = layout.per_element(sums)
    assert per_element["float32"].shape == flat["float32"].shape
    np.testing.assert_array_equal(
        np.asarray(layout.unflatten(per_element)["layer0"]["bias"]), np.full(4, sums["float32"][0])
    )


def test_flat_params_keeps_the_loss_written_for_the_tree():
    p = _model_params()
    flat, unflatten = gx.flat_params(p, pad_to=4, labels=DECAY)
    assert unflatten.layout == gx.ParamLayout.of(p, 4, labels=DECAY)
    assert float(_model_loss(unflatten(flat))) == float(_model_loss(p))
    g = jax.grad(lambda f: _model_loss(unflatten(f)))(flat)
    assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(flat)


def test_layout_label_errors():
    p = {"a": jnp.ones(2), "b": jnp.ones(1)}
    with pytest.raises(
        ValueError, match=r"labels must be non-empty and contain no '/', got \['x/y'\]"
    ):
        gx.ParamLayout.of(p, labels={"a": "x/y", "b": "z"})
    with pytest.raises(ValueError, match=r"ParamLayout.of: 1 parameter\(s\) have no label"):
        gx.ParamLayout.of(p, labels=gx.match({"a": "x"}))
    with pytest.raises(ValueError, match="built without labels="):
        gx.ParamLayout.of(p).labels()
    with pytest.raises(ValueError, match="layout groups vs flat"):
        gx.ParamLayout.of(p).leaf_sums({"float64": jnp.ones(3)})


@pytest.mark.parametrize("name", ["lamb", "lars"])
def test_trust_ratios_on_flat_buffers_are_per_original_leaf(name):
    # The ratio uses each original leaf's norms (segment ids), not the buffer's: the flat
    # run equals the tree run up to the order of the norms' sums.
    p = _model_params()
    layout = gx.ParamLayout.of(p, labels=DECAY, pad_to=8)
    mask = {"decay": True, "no_decay": False}
    if name == "lamb":
        tree_tx = gx.lamb(1e-2, weight_decay=0.1, trust_ratio_mask="**/kernel")
        flat_tx = gx.lamb(1e-2, weight_decay=0.1, trust_ratio_mask=mask, layout=layout)
    else:
        tree_tx = gx.lars(0.5, weight_decay=0.1, weight_decay_mask="**/kernel")
        flat_tx = gx.lars(0.5, weight_decay=0.1, weight_decay_mask=mask, layout=layout)
    tree = _train(tree_tx, p, _model_loss)
    flat = _train(flat_tx, layout.flatten(p), lambda f: _model_loss(layout.unflatten(f)))
    moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), tree, p)
    assert min(jax.tree_util.tree_leaves(moved)) > 1e-4  # every leaf trained
    for a, b in zip(
        jax.tree_util.tree_leaves(layout.unflatten(flat)), jax.tree_util.tree_leaves(tree)
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-6, atol=1e-7)
    # Without the layout, a buffer would be one layer: a different (wrong) step.
    whole = _train(
        gx.lamb(1e-2, weight_decay=0.1, trust_ratio_mask=mask)
        if name == "lamb"
        else gx.lars(0.5, weight_decay=0.1, weight_decay_mask=mask),
        layout.flatten(p),
        lambda f: _model_loss(layout.unflatten(f)),
    )
    assert not np.allclose(
        np.asarray(whole["decay"]["float32"]), np.asarray(flat["decay"]["float32"])
    )


def test_leaf_norms_do_not_overflow():
    layout = gx.ParamLayout.of({"a": jnp.ones(2), "b": jnp.ones(2)}, pad_to=8)
    flat = {"float32": jnp.array([3e30, 4e30, 3e-30, 4e-30, 0, 0, 0, 0])}
    np.testing.assert_allclose(
        np.asarray(layout.leaf_norms(flat)["float32"]), [5e30, 5e-30, 0.0], rtol=1e-6
    )

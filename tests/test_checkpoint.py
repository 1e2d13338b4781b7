"""Checkpoints without any framework: ``state_dict`` keys, ``load_state_dict`` (strict and
not, shardings), ``save``/``load`` round trips bit for bit in every dtype, and
``import gradxform`` leaving Flax alone."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

import gradxform as gx

PARAMS = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}}


def _bits(x):
    """The array's raw bits (NaN payloads, -0.0 and all), for exact comparison."""
    a = np.ascontiguousarray(x).reshape(-1)
    if a.dtype.kind == "c":
        a = a.view(np.dtype(f"f{a.dtype.itemsize // 2}"))
    if a.dtype == np.bool_:
        return a.view(np.uint8)
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


def assert_trees_bitwise_equal(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert np.shape(x) == np.shape(y) and jnp.dtype(x.dtype) == jnp.dtype(y.dtype)
        np.testing.assert_array_equal(_bits(x), _bits(y))


def _wrapper_chain():
    return gx.chain(
        gx.masked(gx.adam(1e-2), "*/bias"),
        gx.partition(
            {"mat": gx.sgd(0.1, momentum=0.9), "vec": gx.identity()},
            gx.where(lambda path, leaf: "mat" if leaf.ndim > 1 else "vec"),
        ),
        gx.apply_if_finite(
            gx.accumulate(gx.adam(gx.cosine_decay_schedule(1e-2, 10)), every_k=2), 3
        ),
    )


TRANSFORMS = {
    "adam": lambda: gx.adam(1e-3),
    "sgd_momentum": lambda: gx.sgd(0.1, momentum=0.9),
    "wrappers": _wrapper_chain,
}


def _trained(tx, params, steps=3):
    state = tx.init(params)
    for i in range(steps):
        grads = jax.tree.map(lambda p, i=i: jnp.full_like(p, 0.5 + i), params)
        _, state = tx.update(grads, state, params)
    return state


# --------------------------------------------------------------------------------------
# state_dict


def test_state_dict_keys_of_adam():
    state = gx.adam(1e-3).init(PARAMS)
    d = gx.state_dict(state)
    assert set(d) == {
        "scale_by_adam/count",
        "scale_by_adam/mu/dense/bias",
        "scale_by_adam/mu/dense/kernel",
        "scale_by_adam/nu/dense/bias",
        "scale_by_adam/nu/dense/kernel",
        "scale_by_learning_rate/count",
        "scale_by_learning_rate/learning_rate",
    }
    assert d["scale_by_adam/mu/dense/kernel"] is state.scale_by_adam.mu["dense"]["kernel"]
    assert d["scale_by_adam/count"].shape == ()  # scalars are entries; nu_max (None) is not


def test_state_dict_keys_of_wrappers_and_named_members():
    d = gx.state_dict(_wrapper_chain().init(PARAMS))
    # masked: no slot (None) for the kernel; partition: dict labels; nested wrappers.
    assert "masked/inner_state/scale_by_adam/mu/dense/bias" in d
    assert not any(k.startswith("masked/inner_state/scale_by_adam/mu/dense/kernel") for k in d)
    assert "partition/inner_state/mat/scale_by_momentum/velocity/dense/kernel" in d
    assert "apply_if_finite/inner_state/inner_state/scale_by_adam/nu/dense/bias" in d
    assert "apply_if_finite/total_errors" in d
    # keyword members and list indices
    tx = gx.chain(opt=gx.sgd(0.1, momentum=0.9))
    d = gx.state_dict(tx.init([jnp.ones(2), None, jnp.ones(1)]))
    assert set(d) == {
        "opt/scale_by_momentum/count",
        "opt/scale_by_momentum/velocity/0",
        "opt/scale_by_momentum/velocity/2",
        "opt/scale_by_learning_rate/count",
        "opt/scale_by_learning_rate/learning_rate",
    }


def test_state_dict_refuses_colliding_keys():
    with pytest.raises(ValueError, match=r"two leaves have the key 'a/b': \['a'\]\['b'\] and"):
        gx.state_dict({"a": {"b": jnp.ones(1)}, "a/b": jnp.ones(1)})


def test_state_dict_of_an_abstract_state():
    abstract = jax.eval_shape(gx.adam(1e-3).init, PARAMS)
    d = gx.state_dict(abstract)
    assert d["scale_by_adam/nu/dense/kernel"].shape == (2, 3)
    assert set(d) == set(gx.state_dict(gx.adam(1e-3).init(PARAMS)))


# --------------------------------------------------------------------------------------
# load_state_dict


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_load_state_dict_round_trip(name):
    tx = TRANSFORMS[name]()
    state = _trained(tx, PARAMS)
    for template in (tx.init(PARAMS), jax.eval_shape(tx.init, PARAMS)):
        restored = gx.load_state_dict(template, gx.state_dict(state))
        assert_trees_bitwise_equal(restored, state)
        assert isinstance(restored, gx.ChainState) and restored.names == state.names
    # from NumPy values, and from nested dicts (what Orbax restores without a template)
    as_numpy = {k: np.asarray(v) for k, v in gx.state_dict(state).items()}
    assert_trees_bitwise_equal(gx.load_state_dict(tx.init(PARAMS), as_numpy), state)
    nested: dict = {}
    for k, v in as_numpy.items():
        *head, last = k.split("/")
        node = nested
        for part in head:
            node = node.setdefault(part, {})
        node[last] = v
    assert_trees_bitwise_equal(gx.load_state_dict(tx.init(PARAMS), nested), state)


def test_load_state_dict_reports_every_mismatch_by_name():
    template = gx.adam(1e-3).init(PARAMS)
    d = {k: np.asarray(v) for k, v in gx.state_dict(template).items()}
    del d["scale_by_adam/nu/dense/bias"]
    d["scale_by_adam/mu/dense/kernel"] = np.zeros((3, 2), np.float32)
    d["scale_by_adam/count"] = np.zeros([], np.int64)
    d["scale_by_adam/velocity"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError) as info:
        gx.load_state_dict(template, d)
    msg = str(info.value)
    assert "missing (1): scale_by_adam/nu/dense/bias" in msg
    assert "unexpected (1): scale_by_adam/velocity" in msg
    assert "scale_by_adam/mu/dense/kernel (expected float32[2, 3], got float32[3, 2])" in msg
    assert "scale_by_adam/count (expected int32[], got int64[])" in msg


def test_load_state_dict_not_strict_keeps_the_template_elsewhere():
    tx = gx.adam(1e-3)
    template = tx.init(PARAMS)
    state = _trained(tx, PARAMS)
    d = {
        "scale_by_adam/mu/dense/kernel": state.scale_by_adam.mu["dense"]["kernel"],
        "scale_by_adam/nu/dense/kernel": np.zeros((9,), np.float32),  # mis-shaped: skipped
        "something/else": np.ones(2),  # unexpected: ignored
    }
    out = gx.load_state_dict(template, d, strict=False)
    assert_trees_bitwise_equal(out.scale_by_adam.mu["dense"]["kernel"], d[next(iter(d))])
    assert out.scale_by_adam.nu["dense"]["kernel"] is template.scale_by_adam.nu["dense"]["kernel"]
    assert out.scale_by_adam.count is template.scale_by_adam.count
    # an abstract template has no value to keep
    with pytest.raises(ValueError, match="ShapeDtypeStruct .no value.: scale_by_adam/count"):
        gx.load_state_dict(jax.eval_shape(tx.init, PARAMS), d, strict=False)


def test_load_state_dict_places_arrays_with_the_template_sharding():
    mesh = jax.make_mesh((4,), ("x",))
    sharding = NamedSharding(mesh, PartitionSpec("x"))
    params = {"w": jax.device_put(jnp.arange(8.0), sharding)}
    tx = gx.adam(1e-3)
    state = _trained(tx, params)
    d = {k: np.asarray(v) for k, v in gx.state_dict(state).items()}  # host arrays
    concrete = gx.load_state_dict(tx.init(params), d)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tx.init(params)
    )
    for restored in (concrete, gx.load_state_dict(abstract, d)):
        assert restored.scale_by_adam.mu["w"].sharding == sharding
        assert_trees_bitwise_equal(restored, state)
    # uncommitted template arrays (parameters made by jnp.ones): uncommitted results, so
    # a jitted step sees the same placement as with the running state
    plain_params = {"w": jnp.arange(8.0)}
    loaded = gx.load_state_dict(tx.init(plain_params), d)
    assert not loaded.scale_by_adam.mu["w"].committed
    assert (
        loaded.scale_by_adam.mu["w"].committed
        == tx.init(plain_params).scale_by_adam.mu["w"].committed
    )
    # a ShapeDtypeStruct without a sharding: the default device
    plain = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tx.init(params))
    out = gx.load_state_dict(plain, d)
    assert len(out.scale_by_adam.mu["w"].sharding.device_set) == 1


def test_load_state_dict_inside_jit():
    tx = gx.sgd(0.1, momentum=0.9)
    state = _trained(tx, PARAMS)
    out = jax.jit(gx.load_state_dict)(tx.init(PARAMS), gx.state_dict(state))
    assert_trees_bitwise_equal(out, state)


# --------------------------------------------------------------------------------------
# save / load


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_save_load_states_bit_exact_and_resume_identically(name, tmp_path):
    tx = TRANSFORMS[name]()
    state = _trained(tx, PARAMS)
    path = tmp_path / "state.npz"
    gx.save(path, state)
    for template in (tx.init(PARAMS), jax.eval_shape(tx.init, PARAMS)):
        restored = gx.load(path, template)
        assert_trees_bitwise_equal(restored, state)
    # stepping on from the restored state gives the same states as from the original
    g = jax.tree.map(lambda p: jnp.full_like(p, -0.25), PARAMS)
    _, a = tx.update(g, state, PARAMS)
    _, b = tx.update(g, restored, PARAMS)
    assert_trees_bitwise_equal(a, b)
    assert sorted(os.listdir(tmp_path)) == ["state.npz"]  # no temporary left behind


def _all_bit_patterns(dtype, n=4096):
    """Raw bits viewed as ``dtype``, NaNs with payloads, infinities and subnormals
    included: every pattern of an 8- or 16-bit type, ``n`` random ones (and +-0) above."""
    dt = jnp.dtype(dtype)
    rng = np.random.default_rng(0)
    if dt.kind == "c":
        half = np.dtype(f"u{dt.itemsize // 2}")
        return rng.integers(0, np.iinfo(half).max, n, dtype=half, endpoint=True).view(dt)
    if dt.name in ("int4", "uint4"):  # sub-byte: every value once
        info = ml_dtypes.iinfo(dt)
        return np.arange(int(info.min), int(info.max) + 1).astype(dt)
    if dt.name == "float4_e2m1fn":
        return np.arange(16, dtype=np.uint8).view(dt)
    unsigned = np.dtype(f"u{dt.itemsize}")
    if dt.itemsize <= 2:
        return np.arange(np.iinfo(unsigned).max + 1, dtype=unsigned).view(dt)
    bits = rng.integers(0, np.iinfo(unsigned).max, n, dtype=unsigned, endpoint=True)
    extra = np.asarray([0, 1 << (8 * dt.itemsize - 1)], unsigned)  # +0.0 and -0.0
    return np.concatenate([bits, extra]).view(dt)


NUMPY_DTYPES = ["float16", "float32", "complex64", "int8", "uint32", "bool"]
BIT_DTYPES = [
    "bfloat16",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "float8_e4m3b11fnuz",
    "float8_e8m0fnu",
    "float4_e2m1fn",
    "int4",
    "uint4",
]


@pytest.mark.parametrize("dtype", NUMPY_DTYPES + BIT_DTYPES)
def test_save_load_dtypes_bit_exact(dtype, tmp_path):
    if dtype == "bool":
        values = np.asarray([True, False, True])
    else:
        values = _all_bit_patterns(dtype)
    tree = {"x": jnp.asarray(values), "scalar": jnp.asarray(values[0])}
    assert tree["x"].dtype == jnp.dtype(dtype)
    gx.save(tmp_path / "t.npz", tree)
    out = gx.load(tmp_path / "t.npz", tree)
    assert_trees_bitwise_equal(out, tree)
    np.testing.assert_array_equal(_bits(out["x"]), _bits(values))


def test_save_load_float64_and_complex128_under_x64(tmp_path):
    with jax.enable_x64(True):
        tree = {
            "f64": jnp.asarray(_all_bit_patterns("float64")),
            "c128": jnp.asarray(_all_bit_patterns("complex128")),
        }
        tx = gx.adam(1e-3)
        params = {"w": jnp.linspace(-1.0, 1.0, 5, dtype=jnp.float64)}
        state = _trained(tx, params)
        assert state.scale_by_adam.mu["w"].dtype == jnp.float64
        gx.save(tmp_path / "t.npz", {"tree": tree, "state": state})
        out = gx.load(tmp_path / "t.npz", {"tree": tree, "state": tx.init(params)})
        assert_trees_bitwise_equal(out, {"tree": tree, "state": state})


def test_save_load_bfloat16_state(tmp_path):
    params = {"w": jnp.linspace(-1.0, 1.0, 7).astype(jnp.bfloat16)}
    tx = gx.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)
    state = _trained(tx, params)
    assert state.scale_by_adam.nu["w"].dtype == jnp.bfloat16
    gx.save(tmp_path / "s.npz", state)
    assert_trees_bitwise_equal(gx.load(tmp_path / "s.npz", tx.init(params)), state)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:  # bits, and the dtype name
        assert z["scale_by_adam/nu/w"].dtype == np.uint16
        assert '"scale_by_adam/nu/w": "bfloat16"' in str(z["__gradxform__"])


def test_save_load_typed_prng_keys(tmp_path):
    tree = {"key": jax.random.key(3), "keys": jax.random.split(jax.random.key(4, impl="rbg"), 3)}
    gx.save(tmp_path / "k.npz", tree)
    out = gx.load(tmp_path / "k.npz", tree)
    for name in tree:
        assert out[name].dtype == tree[name].dtype
        np.testing.assert_array_equal(
            jax.random.key_data(out[name]), jax.random.key_data(tree[name])
        )


def test_the_file_is_a_plain_npz(tmp_path):
    state = gx.sgd(0.1, momentum=0.9).init(PARAMS)
    path = tmp_path / "plain"  # no suffix added
    gx.save(path, {"file": jnp.ones(1), "allow_pickle": jnp.zeros(1), "s": state})
    with zipfile.ZipFile(path) as zf:
        assert "s/scale_by_momentum/velocity/dense/kernel.npy" in zf.namelist()
    with np.load(path, allow_pickle=False) as z:
        assert z["file"].tolist() == [1.0] and z["allow_pickle"].tolist() == [0.0]
    # a file written with np.savez (NumPy dtypes only) loads too
    np.savez(tmp_path / "np.npz", **{k: np.asarray(v) for k, v in gx.state_dict(state).items()})
    assert_trees_bitwise_equal(gx.load(tmp_path / "np.npz", state), state)


def test_load_refuses_a_foreign_format_and_save_an_abstract_state(tmp_path):
    np.savez(tmp_path / "x.npz", __gradxform__=np.asarray('{"format": "other", "version": 1}'))
    with pytest.raises(ValueError, match="holds format 'other'"):
        gx.load(tmp_path / "x.npz", {})
    with pytest.raises(TypeError, match="ShapeDtypeStruct"):
        gx.save(tmp_path / "y.npz", jax.eval_shape(gx.adam(1e-3).init, PARAMS))


# --------------------------------------------------------------------------------------
# Flax stays out of `import gradxform`


def test_import_gradxform_does_not_import_flax():
    code = (
        "import sys, gradxform\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('flax', 'optax', 'orbax')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

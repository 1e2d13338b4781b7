"""Tests for gradxform.tree (norms, arithmetic, inner products) and check_tree_structure.

Expected values are literals or one-line ``math`` formulas written here. Inputs are
small integers / halves, exactly representable in every float format used (bfloat16
included) and whose sums of squares and products are exact in float32, so the only
rounding is the final sqrt (and, for complex leaves, |z| = sqrt(re^2 + im^2) followed by
squaring). Hence:

- exact comparisons (``==``) for add/sub/scale/sum/vdot/zeros: there is no rounding at all;
- rtol 1e-6 for float32 norms: one or two correctly rounded ops, ~1 ulp = 1.2e-7 each;
- rtol 1e-12 for float64 norms (ulp 2.2e-16).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

F32_RTOL = 1e-6
F64_RTOL = 1e-12


def f32(*xs):
    return jnp.asarray(xs, jnp.float32)


def assert_exact(actual, expected, dtype):
    actual = jnp.asarray(actual)
    assert actual.dtype == jnp.dtype(dtype), (actual.dtype, dtype)
    np.testing.assert_array_equal(
        np.asarray(actual.astype(jnp.float32) if actual.dtype == jnp.bfloat16 else actual),
        np.asarray(expected),
    )


# --------------------------------------------------------------------------------------
# global_norm

NORM_CASES = {
    "float32_vector": ({"a": f32(3.0, 4.0)}, 5.0),
    "float32_matrix": ({"a": jnp.asarray([[1.0, 2.0], [3.0, 4.0]], jnp.float32)}, math.sqrt(30.0)),
    "complex64_abs2": ({"z": jnp.asarray([3 + 4j, 1j], jnp.complex64)}, math.sqrt(26.0)),
    # 257 ones: the sum of squares 257 is not representable in bfloat16 (8 significant
    # bits, rounds to 256), so a bf16 accumulation would give 16, float32 gives sqrt(257).
    "bfloat16_accumulated_in_float32": ({"h": jnp.ones(257, jnp.bfloat16)}, math.sqrt(257)),
    # 300^2 + 400^2 overflows float16 (max 65504): must be squared in float32.
    "float16_squared_in_float32": ({"h": jnp.asarray([300.0, 400.0], jnp.float16)}, 500.0),
    "none_leaves_skipped": ({"a": None, "b": f32(3.0), "c": [None, f32(4.0)]}, 5.0),
    "several_leaves": (
        {
            "w": jnp.asarray([[1.0, 2.0], [3.0, 4.0]], jnp.float32),  # 30
            "z": jnp.asarray([3 + 4j, 1j], jnp.complex64),  # 25 + 1
            "h": jnp.ones(257, jnp.bfloat16),  # 257
            "n": None,
            "nested": [f32(2.0), (jnp.asarray([0.5], jnp.float32),)],  # 4 + 0.25
        },
        math.sqrt(30 + 26 + 257 + 4 + 0.25),
    ),
}
NORM_IDS = list(NORM_CASES)


@pytest.mark.parametrize("case_id", NORM_IDS, ids=NORM_IDS)
def test_global_norm_closed_form(case_id):
    tree, expected = NORM_CASES[case_id]
    out = gx.global_norm(tree)
    assert out.shape == () and out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), expected, rtol=F32_RTOL)


@pytest.mark.parametrize("case_id", NORM_IDS, ids=NORM_IDS)
def test_global_norm_under_jit(case_id):
    tree, expected = NORM_CASES[case_id]
    out = jax.jit(gx.global_norm)(tree)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=F32_RTOL)


EMPTY_TREES = {
    "empty_dict": {},
    "empty_list": [],
    "none": None,
    "only_none": {"a": None, "b": [None]},
}


@pytest.mark.parametrize("name", list(EMPTY_TREES), ids=list(EMPTY_TREES))
def test_global_norm_empty_tree_is_zero(name):
    out = gx.global_norm(EMPTY_TREES[name])
    assert out.shape == () and out.dtype == jnp.float32
    assert float(out) == 0.0


def test_global_norm_float64():
    with jax.enable_x64(True):
        tree = {"a": jnp.asarray([0.1, 0.2], jnp.float64), "z": jnp.asarray([0.3j], jnp.complex128)}
        out = gx.global_norm(tree)
        assert out.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(out), math.sqrt(0.01 + 0.04 + 0.09), rtol=F64_RTOL)
        # float32 + float64 leaves: accumulated in the wider float64.
        mixed = gx.global_norm({"a": f32(3.0), "b": jnp.asarray([4.0], jnp.float64)})
        assert mixed.dtype == jnp.float64 and float(mixed) == 5.0


def test_global_norm_counts_python_float_leaves():
    """Python floats are parameters (base.is_param), so they count in the norm.

    clip_by_global_norm scales Python-float updates, so leaving them out of the norm
    would clip with the wrong factor.
    """
    np.testing.assert_allclose(
        np.asarray(gx.global_norm({"a": 3.0, "b": f32(4.0)})), 5.0, rtol=F32_RTOL
    )


# --------------------------------------------------------------------------------------
# tree_add / tree_sub / tree_scale


def _abc(x, y, z):
    return {
        "a": jnp.asarray(x, jnp.float32),
        "b": None,
        "c": [jnp.asarray(y, jnp.bfloat16), jnp.asarray(z, jnp.complex64)],
    }


def test_tree_add_and_sub():
    a = _abc([1.0, 2.0], [0.5, 4.0], [1 + 2j])
    b = _abc([3.0, -1.0], [1.5, 2.0], [3 - 1j])
    s = gx.tree_add(a, b)
    d = gx.tree_sub(a, b)
    assert s["b"] is None and d["b"] is None
    assert_exact(s["a"], [4.0, 1.0], jnp.float32)
    assert_exact(s["c"][0], [2.0, 6.0], jnp.bfloat16)
    assert_exact(s["c"][1], [4 + 1j], jnp.complex64)
    assert_exact(d["a"], [-2.0, 3.0], jnp.float32)
    assert_exact(d["c"][0], [-1.0, 2.0], jnp.bfloat16)
    assert_exact(d["c"][1], [-2 + 3j], jnp.complex64)


def test_tree_add_sub_under_jit():
    a = {"x": f32(1.0, 2.0), "y": None}
    b = {"x": f32(0.5, 0.25), "y": None}
    assert_exact(jax.jit(gx.tree_add)(a, b)["x"], [1.5, 2.25], jnp.float32)
    assert_exact(jax.jit(gx.tree_sub)(a, b)["x"], [0.5, 1.75], jnp.float32)


@pytest.mark.parametrize(
    "fn", [gx.tree_add, gx.tree_sub, gx.tree_vdot], ids=["tree_add", "tree_sub", "tree_vdot"]
)
def test_binary_ops_reject_different_structures(fn):
    with pytest.raises(ValueError, match=r"\['c'\]"):
        fn({"a": f32(1.0), "c": f32(1.0)}, {"a": f32(1.0), "d": f32(1.0)})


@pytest.mark.parametrize(
    "fn", [gx.tree_add, gx.tree_sub, gx.tree_vdot], ids=["tree_add", "tree_sub", "tree_vdot"]
)
def test_binary_ops_reject_none_vs_array(fn):
    """None in one tree and an array in the other is a structure mismatch, not a skip.

    (Silently skipping it would make tree_vdot pair up the wrong leaves.)
    """
    with pytest.raises(ValueError, match=r"\['a'\]"):
        fn({"a": None, "b": f32(1.0)}, {"a": f32(2.0), "b": f32(3.0)})


SCALE_CASES = {
    "float32": (jnp.asarray([1.0, -3.0], jnp.float32), [0.5, -1.5]),
    "bfloat16": (jnp.asarray([1.0, -3.0], jnp.bfloat16), [0.5, -1.5]),
    "float16": (jnp.asarray([1.0, -3.0], jnp.float16), [0.5, -1.5]),
    "complex64": (jnp.asarray([1 + 2j], jnp.complex64), [0.5 + 1j]),
}
SCALE_IDS = list(SCALE_CASES)


@pytest.mark.parametrize("case_id", SCALE_IDS, ids=SCALE_IDS)
def test_tree_scale_keeps_dtype(case_id):
    x, expected = SCALE_CASES[case_id]
    out = gx.tree_scale(0.5, {"x": x, "n": None})
    assert out["n"] is None
    assert_exact(out["x"], expected, x.dtype)


def test_tree_scale_traced_scalar():
    tree = {"x": f32(2.0, 4.0), "y": [jnp.asarray([8.0], jnp.bfloat16)]}
    out = jax.jit(gx.tree_scale)(jnp.asarray(0.25, jnp.float32), tree)
    assert_exact(out["x"], [0.5, 1.0], jnp.float32)
    assert_exact(out["y"][0], [2.0], jnp.bfloat16)


def test_tree_arithmetic_refuses_integer_arrays_and_a_lossy_complex_scale():
    # tree_add({"a": [1]}, {"a": [2]}) returned [1] (integer arrays passed through), and
    # tree_scale(2j, real) returned zeros.
    i = {"a": jnp.asarray([1], jnp.int32)}
    for call in (
        lambda: gx.tree_add(i, i),
        lambda: gx.tree_sub(i, i),
        lambda: gx.tree_scale(2.0, i),
    ):
        with pytest.raises(TypeError, match=r"leaf at \['a'\] has dtype int32"):
            call()
    with pytest.raises(TypeError, match="tree_scale: complex scalar"):
        gx.tree_scale(2j, {"x": f32(1.0)})
    z = gx.tree_scale(2j, {"z": jnp.asarray([1 + 1j], jnp.complex64)})
    assert_exact(z["z"], [-2 + 2j], jnp.complex64)


# --------------------------------------------------------------------------------------
# tree_vdot


def test_tree_vdot_conjugates_first_argument():
    a = {"z": jnp.asarray([1 + 2j], jnp.complex64)}
    b = {"z": jnp.asarray([3 + 4j], jnp.complex64)}
    # conj(1 + 2j) (3 + 4j) = (1 - 2j)(3 + 4j) = 11 - 2j, as jnp.vdot.
    assert_exact(gx.tree_vdot(a, b), 11 - 2j, jnp.complex64)
    assert_exact(gx.tree_vdot(b, a), 11 + 2j, jnp.complex64)
    assert complex(jnp.vdot(a["z"], b["z"])) == 11 - 2j


def test_tree_vdot_mixed_leaves():
    a = {
        "m": jnp.asarray([[1.0, 2.0], [3.0, 4.0]], jnp.float32),
        "n": None,
        "z": jnp.asarray([1 + 2j, 2j], jnp.complex64),
    }
    b = {
        "m": jnp.asarray([[5.0, 6.0], [7.0, 8.0]], jnp.float32),
        "n": None,
        "z": jnp.asarray([3 + 4j, 1.0], jnp.complex64),
    }
    # matrices flattened: 5 + 12 + 21 + 32 = 70; complex: (11 - 2j) + conj(2j) 1 = 11 - 4j
    assert_exact(gx.tree_vdot(a, b), 81 - 4j, jnp.complex64)


def test_tree_vdot_low_precision_in_float32():
    a = {"h": jnp.ones(257, jnp.bfloat16), "f": jnp.asarray([300.0, 400.0], jnp.float16)}
    b = {"h": jnp.ones(257, jnp.bfloat16), "f": jnp.asarray([300.0, 400.0], jnp.float16)}
    # 257 (not a bfloat16) + 250000 (overflows float16): needs float32 accumulation.
    assert_exact(gx.tree_vdot(a, b), 250257.0, jnp.float32)


def test_tree_vdot_empty_and_jit():
    out = gx.tree_vdot({"a": None}, {"a": None})
    assert out.dtype == jnp.float32 and float(out) == 0.0
    a = {"x": f32(1.0, 2.0), "y": None}
    assert_exact(jax.jit(gx.tree_vdot)(a, a), 5.0, jnp.float32)


def test_tree_vdot_float64():
    with jax.enable_x64(True):
        a = {"x": jnp.asarray([0.1, 0.2], jnp.float64), "y": f32(2.0)}
        out = gx.tree_vdot(a, a)
        assert out.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(out), 0.01 + 0.04 + 4.0, rtol=F64_RTOL)


# --------------------------------------------------------------------------------------
# tree_sum / tree_zeros_like


def test_tree_sum():
    tree = {
        "a": f32(1.0, 2.0, 3.0),
        "b": None,
        "c": [jnp.ones((257,), jnp.bfloat16)],
        "d": jnp.asarray([60000.0, 60000.0], jnp.float16),
    }
    # 6 + 257 (bf16 would round to 256) + 120000 (float16 would overflow to inf)
    assert_exact(gx.tree_sum(tree), 120263.0, jnp.float32)
    assert_exact(jax.jit(gx.tree_sum)(tree), 120263.0, jnp.float32)


def test_tree_sum_complex_and_empty():
    tree = {"a": f32(1.0), "z": jnp.asarray([1 + 2j, 3j], jnp.complex64)}
    assert_exact(gx.tree_sum(tree), 2 + 5j, jnp.complex64)
    empty = gx.tree_sum({"a": None})
    assert empty.dtype == jnp.float32 and float(empty) == 0.0


ZEROS_DTYPES = {
    "keep": None,
    "float16": jnp.float16,
    "bfloat16_str": "bfloat16",
    "np_dtype_float16": np.dtype("float16"),
}


@pytest.mark.parametrize("name", list(ZEROS_DTYPES), ids=list(ZEROS_DTYPES))
def test_tree_zeros_like(name):
    dtype = ZEROS_DTYPES[name]
    tree = {
        "a": jnp.ones((2, 3), jnp.float32),
        "b": None,
        "c": [jnp.ones((4,), jnp.bfloat16), jnp.ones((), jnp.complex64)],
    }
    out = gx.tree_zeros_like(tree, dtype)
    assert out["b"] is None
    for leaf, ref in [
        (out["a"], tree["a"]),
        (out["c"][0], tree["c"][0]),
        (out["c"][1], tree["c"][1]),
    ]:
        assert leaf.shape == ref.shape
        assert leaf.dtype == (ref.dtype if dtype is None else jnp.dtype(dtype))
        assert not np.any(
            np.asarray(leaf.astype(jnp.float32) if leaf.dtype != jnp.complex64 else leaf)
        )


def test_tree_zeros_like_integer_leaf_keeps_dtype():
    out = gx.tree_zeros_like({"count": jnp.asarray(7, jnp.int32)})
    assert_exact(out["count"], 0, jnp.int32)


# Python float leaves are parameters (base.is_param) and tree_add handles them; the
# other helpers should too.
PY_SCALAR_CASES = {
    "tree_add": (lambda: gx.tree_add({"a": 1.5}, {"a": 2.0})["a"], 3.5),
    "tree_sum": (lambda: gx.tree_sum({"a": 1.5, "b": f32(2.0)}), 3.5),
    "tree_scale": (lambda: gx.tree_scale(2.0, {"a": 1.5})["a"], 3.0),
    "tree_vdot": (lambda: gx.tree_vdot({"a": 1.5}, {"a": 2.0}), 3.0),
    "tree_zeros_like": (lambda: gx.tree_zeros_like({"a": 1.5})["a"], 0.0),
}
PY_SCALAR_IDS = list(PY_SCALAR_CASES)


@pytest.mark.parametrize("case_id", PY_SCALAR_IDS, ids=PY_SCALAR_IDS)
def test_python_float_leaves(case_id):
    fn, expected = PY_SCALAR_CASES[case_id]
    assert float(fn()) == expected


# --------------------------------------------------------------------------------------
# check_tree_structure

X = jnp.zeros((2,), jnp.float32)


@dataclasses.dataclass
class Linear:
    w: object
    b: object


jax.tree_util.register_dataclass(Linear, data_fields=["w", "b"], meta_fields=[])


SAME_STRUCTURE = {
    "dicts": ({"a": X, "b": [X, X]}, {"a": X + 1, "b": [X, X]}),
    "none_in_both": ({"a": None, "b": X}, {"a": None, "b": X}),
    "different_dtypes_and_shapes": ({"a": X}, {"a": jnp.ones((3, 3), jnp.bfloat16)}),
    "dataclass": (Linear(X, None), Linear(X, None)),
    "empty": ({}, {}),
}


@pytest.mark.parametrize("case_id", list(SAME_STRUCTURE), ids=list(SAME_STRUCTURE))
def test_check_tree_structure_accepts_same_structure(case_id):
    a, b = SAME_STRUCTURE[case_id]
    assert gx.check_tree_structure(a, b) is None


DIFFERENT_STRUCTURE = {
    "dict_keys": ({"a": X, "b": X}, {"a": X, "c": X}, r"\['b'\]"),
    "dict_keys_received_side": ({"a": X, "b": X}, {"a": X, "c": X}, r"\['c'\]"),
    "dict_missing_key_first_of_two": ({"a": X, "b": X, "c": X}, {"a": X}, r"\['b'\] \(2 such path"),
    "nested_lists": ([[X, X], [X]], [[X, X], [X, X]], r"\[1\]\[1\]"),
    "nested_dict_in_list": (
        {"layers": [{"w": X}, {"w": X, "b": X}]},
        {"layers": [{"w": X}, {"w": X}]},
        r"\['layers'\]\[1\]\['b'\]",
    ),
    "none_vs_array": ({"a": None, "b": X}, {"a": X, "b": X}, r"\['a'\]"),
    "array_vs_none": ({"a": X, "b": X}, {"a": X, "b": None}, r"\['b'\]"),
    "none_vs_array_in_list": ([X, None], [X, X], r"\[1\]"),
    "none_vs_python_float": ({"a": None}, {"a": 1.0}, r"\['a'\]"),
    "none_vs_int_array": ({"a": None}, {"a": jnp.arange(3)}, r"\['a'\]"),
    "dataclass_none_vs_array": (Linear(X, None), Linear(X, X), r"\.b"),
    "dataclass_nested_key": (Linear({"k": X}, X), Linear({"j": X}, X), r"\.w\['k'\]"),
    "tuple_vs_list": ((X, X), [X, X], "different node types"),
}
DIFFERENT_IDS = list(DIFFERENT_STRUCTURE)


@pytest.mark.parametrize("case_id", DIFFERENT_IDS, ids=DIFFERENT_IDS)
def test_check_tree_structure_names_first_differing_path(case_id):
    a, b, match = DIFFERENT_STRUCTURE[case_id]
    with pytest.raises(ValueError, match=match):
        gx.check_tree_structure(a, b)


def test_check_tree_structure_uses_given_names():
    with pytest.raises(ValueError, match=r"first path in params but not in updates: \['b'\]"):
        gx.check_tree_structure({"a": X, "b": X}, {"a": X}, names=("params", "updates"))


def test_tree_ops_align_leaves_and_pass_non_arrays_through():
    # Each tree used to be filtered separately: 1.0 met 5.0, not 3 (an int, not an array).
    with pytest.raises(TypeError, match=r"leaf at \['p'\] is an array in one tree only"):
        gx.tree_vdot({"p": 1.0, "q": [2.0]}, {"p": 3, "q": [5.0]})
    assert float(gx.tree_vdot({"p": 1.0, "q": [2.0]}, {"p": 3.0, "q": [5.0]})) == 13.0
    t = {"w": jnp.ones(2), "name": "layer"}
    assert gx.tree_add(t, t)["name"] == "layer" and gx.tree_sub(t, t)["name"] == "layer"
    assert gx.tree_scale(0.5, t)["name"] == "layer"
    assert gx.tree_zeros_like(t)["name"] == "layer"
    with pytest.raises(TypeError, match=r"leaf at \['i'\] has dtype int32"):
        gx.tree_scale(0.5, {"i": jnp.arange(3)})  # refused, like every tree helper

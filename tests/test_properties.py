"""Hostile inputs, by property: random pytrees through every named optimizer and wrapper.

Hypothesis draws parameter trees (nested dicts, lists and tuples; None leaves, 0-d and
zero-size arrays; float16, bfloat16, float32, complex64, and float64 under x64), gradients
of the same structure at random scales, and a random learning rate. For every optimizer in
the registry and every wrapper below, one step must:

- run, eagerly and under ``jit``, with the same numbers (to a few units in the last place
  of the update's dtype: ``jit`` fuses and may contract to FMAs);
- keep the structure, shapes and dtypes of the gradients, and the state's layout;
- turn finite inputs into finite updates and a finite state.

Extreme gradients are checked per optimizer without Hypothesis: zeros and 1e-30 give
finite steps; Inf and NaN under ``apply_if_finite`` leave the inner state bit for bit.
The example counts are fixed and derandomized, so CI runs the same examples every time.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import OPTIMIZERS
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import gradxform as gx

EXAMPLES = 8  # per optimizer / wrapper; the whole module runs in about a minute
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32, jnp.complex64]
SHAPES = [(), (0,), (3,), (2, 3), (1, 0), (4, 1)]

# Optimizers whose rule is defined for real parameters only (they refuse complex ones
# with an error at init): drawn trees for them have no complex leaves.
REAL_ONLY: set[str] = set()
# Optimizers that need more than the gradient (the loss: value_fn) or a matrix leaf.
NOT_PLAIN: set[str] = set()


@dataclasses.dataclass(frozen=True)
class Leaf:
    """A leaf to draw values for (not a pytree node: a tuple would be one)."""

    shape: tuple[int, ...]
    dtype: Any


@st.composite
def leaves(draw, dtypes):
    if draw(st.integers(0, 5)) == 0:
        return None
    return Leaf(draw(st.sampled_from(SHAPES)), draw(st.sampled_from(dtypes)))


def trees(dtypes):
    return st.recursive(
        leaves(dtypes),
        lambda kids: st.one_of(
            st.dictionaries(st.sampled_from("abcd"), kids, min_size=1, max_size=3),
            st.lists(kids, min_size=1, max_size=3),
            st.lists(kids, min_size=1, max_size=3).map(tuple),
        ),
        max_leaves=6,
    ).filter(lambda t: t is not None)  # params=None means "not given" to update


def _fill(spec, rng, scale):
    def make(s):
        if s is None:
            return None
        shape, dtype = s.shape, s.dtype
        x = rng.normal(size=shape) * scale
        if jnp.issubdtype(dtype, jnp.complexfloating):
            x = x + 1j * rng.normal(size=shape) * scale
        return jnp.asarray(x, dtype)

    return jax.tree_util.tree_map(make, spec, is_leaf=lambda x: x is None)


def _arrays(tree):
    return [x for x in jax.tree_util.tree_leaves(tree) if isinstance(x, jax.Array)]


def _avals(tree):
    return jax.tree_util.tree_map(
        lambda x: (jnp.shape(x), jnp.result_type(x)) if isinstance(x, jax.Array) else x, tree
    )


def _tolerance(dtype):
    # A few units in the last place of the update's dtype, relative to the largest value.
    return 8 * float(jnp.finfo(dtype).eps)


def _check_step(tx, params, grads):
    state = tx.init(params)
    u, new_state = tx.update(grads, state, params)
    uj, new_state_j = jax.jit(tx.update)(grads, state, params)
    # Structure, shapes and dtypes of the updates are the gradients'.
    assert jax.tree_util.tree_structure(u) == jax.tree_util.tree_structure(grads)
    assert _avals(u) == _avals(grads)
    assert _avals(uj) == _avals(grads)
    # The state keeps its layout.
    assert _avals(new_state) == _avals(state)
    assert _avals(new_state_j) == _avals(state)
    # Finite inputs give finite outputs.
    for x in _arrays(u) + _arrays(new_state):
        if jnp.issubdtype(x.dtype, jnp.inexact):
            assert bool(jnp.all(jnp.isfinite(x))), f"non-finite output {x}"
    # jit and eager agree.
    for a, b in zip(_arrays(u), _arrays(uj)):
        if a.size == 0:
            continue
        scale = max(float(jnp.max(jnp.abs(a.astype(jnp.complex64)))), 1e-30)
        err = float(jnp.max(jnp.abs(a.astype(jnp.complex64) - b.astype(jnp.complex64))))
        assert err <= _tolerance(a.dtype) * scale, (err, scale, a.dtype)


def _optimizer_dtypes(name):
    return [d for d in DTYPES if not (name in REAL_ONLY and d == jnp.complex64)]


@pytest.mark.parametrize("name", sorted(set(OPTIMIZERS) - NOT_PLAIN))
def test_optimizers_on_random_trees(name):
    case = OPTIMIZERS[name]

    @SETTINGS
    @given(
        spec=trees(_optimizer_dtypes(name)),
        seed=st.integers(0, 2**16),
        scale=st.sampled_from([1e-3, 1.0, 1e3]),
        lr_factor=st.sampled_from([0.1, 1.0, 3.0]),
    )
    def check(spec, seed, scale, lr_factor):
        rng = np.random.default_rng(seed)
        params, grads = _fill(spec, rng, 1.0), _fill(spec, rng, scale)
        lr = case.quad["learning_rate"] * lr_factor
        _check_step(case.make(learning_rate=lr), params, grads)

    check()


WRAPPERS = {
    "masked": lambda: gx.masked(gx.adam(0.1), gx.where(lambda path, leaf: len(path) % 2 == 0)),
    "freeze": lambda: gx.freeze(gx.sgd(0.1, momentum=0.9), gx.where(lambda p, x: x.ndim == 0)),
    "partition": lambda: gx.partition(
        {"a": gx.adam(0.1), "b": gx.rmsprop(0.01)},
        gx.where(lambda path, leaf: "a" if leaf.ndim < 2 else "b"),
    ),
    "apply_if_finite": lambda: gx.apply_if_finite(gx.adam(0.1), 3),
    "accumulate": lambda: gx.accumulate(gx.adamw(0.1), 2),
    "lookahead": lambda: gx.lookahead(gx.adam(0.1), 2, 0.5),
    "clip_chain": lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.clip(0.5), gx.adam(0.1)),
    "conditionally_transform": lambda: gx.conditionally_transform(
        gx.nadam(0.1), lambda t: t % 2 == 0, otherwise="zero"
    ),
}


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_wrappers_on_random_trees(name):
    @SETTINGS
    @given(spec=trees(DTYPES), seed=st.integers(0, 2**16), scale=st.sampled_from([1e-3, 1e3]))
    def check(spec, seed, scale):
        if name == "partition":  # by design, a transform given no parameter is an error
            ndims = {len(x.shape) < 2 for x in jax.tree_util.tree_leaves(spec)}
            assume(ndims == {True, False})
        rng = np.random.default_rng(seed)
        _check_step(WRAPPERS[name](), _fill(spec, rng, 1.0), _fill(spec, rng, scale))

    check()


@SETTINGS
@given(spec=trees([jnp.float64, jnp.float32]), seed=st.integers(0, 2**16))
def test_float64_under_x64(spec, seed):
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        params, grads = _fill(spec, rng, 1.0), _fill(spec, rng, 10.0)
        for tx in (gx.adam(0.1), gx.sgd(0.1, momentum=0.9), gx.apply_if_finite(gx.lion(0.1), 2)):
            _check_step(tx, params, grads)


PARAMS = {"w": jnp.ones((2, 3)), "b": [jnp.ones(3, jnp.bfloat16), None], "s": jnp.ones(())}


@pytest.mark.parametrize("name", sorted(set(OPTIMIZERS) - NOT_PLAIN))
@pytest.mark.parametrize("value", [0.0, 1e-30, -1e-30])
def test_zero_and_tiny_gradients_give_finite_steps(name, value):
    tx = OPTIMIZERS[name].make()
    grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, value), PARAMS)
    _check_step(tx, PARAMS, grads)


@pytest.mark.parametrize("name", sorted(set(OPTIMIZERS) - NOT_PLAIN))
def test_inf_and_nan_gradients_never_touch_the_state_under_apply_if_finite(name):
    tx = gx.apply_if_finite(OPTIMIZERS[name].make(), 10)
    state = tx.init(PARAMS)
    step = jax.jit(tx.update)
    u, state = step(jax.tree_util.tree_map(jnp.ones_like, PARAMS), state, PARAMS)
    for bad in (jnp.inf, -jnp.inf, jnp.nan):
        grads = jax.tree_util.tree_map(jnp.ones_like, PARAMS)
        grads["w"] = grads["w"].at[1, 2].set(bad)
        u, new_state = step(grads, state, PARAMS)
        for a, b in zip(_arrays(new_state.inner_state), _arrays(state.inner_state)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for x in _arrays(u):
            np.testing.assert_array_equal(np.asarray(x, np.float32), 0.0)
        assert int(new_state.total_errors) == int(state.total_errors) + 1

"""Transforms that are not ours (Optax-style: a NamedTuple of two functions, or any object
with init/update) inside ``gx.chain``: their default names, and the chain as a jit
argument. No Optax needed; tests/integration/test_optax_integration.py uses the real one."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

import gradxform as gx


class OptaxStyle(NamedTuple):  # what optax.GradientTransformation is
    init: Callable
    update: Callable


def scale_by_two():  # an Optax-style factory: closures named init_fn / update_fn
    def init_fn(params):
        return ()

    def update_fn(updates, state, params=None):
        return jax.tree.map(lambda g: 2 * g, updates), state

    return OptaxStyle(init_fn, update_fn)


class Halve:  # an object with methods
    def init(self, params):
        return ()

    def update(self, updates, state, params=None):
        return jax.tree.map(lambda g: g / 2, updates), state


def test_default_names_of_foreign_members():
    lam = OptaxStyle(lambda p: (), lambda u, s, p=None: (u, s))
    tx = gx.chain(scale_by_two(), gx.scale(1.0), lam, Halve(), scale_by_two())
    assert tx.names == ("scale_by_two_0", "scale", "OptaxStyle", "Halve", "scale_by_two_1")
    assert gx.chain(twice=scale_by_two()).names == ("twice",)


def test_chain_with_foreign_members_is_a_jit_argument_without_recompiles():
    two, halve = scale_by_two(), Halve()
    tx = gx.chain(two, gx.sgd(0.5, momentum=0.9), halve)
    # Foreign members are structure: only our hyperparameters are leaves.
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tx)]
    assert paths and all(p.startswith(".sgd.") for p in paths)
    leaves, treedef = jax.tree_util.tree_flatten(tx)
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert rebuilt.transforms[0] is two and rebuilt.transforms[2] is halve
    assert rebuilt == tx and hash(rebuilt) == hash(tx)

    traces = []

    @jax.jit
    def step(tx, params, state):
        traces.append(1)
        updates, state = tx.update(params, state, params)
        return gx.apply_updates(params, updates), state

    # The same chain of our own transforms, jitted apart: the same numbers.
    ours = gx.chain(gx.scale(2.0), gx.sgd(0.5, momentum=0.9), gx.scale(0.5))
    ref_step = jax.jit(step.__wrapped__)
    params = ref = {"w": jnp.linspace(1.0, 2.0, 3)}
    state, ref_state = tx.init(params), ours.init(ref)
    for lr in (0.5, 0.25, 0.125):
        params, state = step(gx.replace(tx, learning_rate=lr), params, state)
        ref, ref_state = ref_step(gx.replace(ours, learning_rate=lr), ref, ref_state)
    assert len(traces) == 2  # one trace of `step`, one of `ref_step`
    assert state.names == tx.names
    assert jnp.array_equal(params["w"], ref["w"])

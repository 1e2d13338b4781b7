"""The wrappers together: state structure stable through lax.cond / lax.scan, composition
inside ``chain`` in several orders and nestings, hyperparameters as pytree leaves."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

RNG = np.random.default_rng(2)
X = jnp.asarray(RNG.normal(size=(16, 4)).astype(np.float32))
Y = X @ jnp.array([0.5, 1.5, -1.0, 2.0]) + 0.25
PARAMS = {"w": jnp.full(4, 0.5, jnp.float32), "b": jnp.ones([], jnp.float32), "n": None}


def loss(p):
    return jnp.mean((X @ p["w"] + p["b"] - Y) ** 2)


def clip01(tree):
    return jax.tree.map(lambda x: jnp.clip(x, 0.0, 3.0), tree)


def sched():
    return gx.warmup_cosine_decay_schedule(0.0, 0.1, 3, 40)


class _with_loss(gx.GradientTransformation):
    """Passes value_fn=loss to a transform that needs it (sam); its state is inner's."""

    inner: gx.GradientTransformation

    def init(self, params):
        return self.inner.init(params)

    def update(self, updates, state, params=None, **extra):
        return self.inner.update(updates, state, params, value_fn=loss, **extra)


WRAPPERS = {
    "apply_if_finite": lambda: gx.apply_if_finite(gx.adam(sched()), 2),
    "apply_if_finite_raise": lambda: gx.apply_if_finite(gx.adam(0.1), 2, on_limit="raise"),
    "accumulate": lambda: gx.accumulate(gx.adam(sched()), 3),
    "lookahead": lambda: gx.lookahead(gx.adam(0.1), 3, 0.5),
    "conditionally_transform": lambda: gx.conditionally_transform(
        gx.adam(0.1), lambda t: t % 3 != 1, otherwise="zero"
    ),
    "reduce_on_plateau": lambda: gx.chain(gx.sgd(0.1), gx.reduce_on_plateau(patience=1)),
    "scale_by_schedule": lambda: gx.chain(gx.sgd(1.0), gx.scale_by_schedule(sched())),
    "project": lambda: gx.chain(gx.adam(0.1), gx.project(clip01)),
    "keep_params_nonnegative": lambda: gx.chain(gx.adam(0.1), gx.keep_params_nonnegative()),
    "sam": lambda: _with_loss(gx.sam(gx.adam(0.1), 0.05)),
    "asam_in_apply_if_finite": lambda: _with_loss(
        gx.apply_if_finite(gx.sam(gx.sgd(0.05, momentum=0.5), 0.5, adaptive=True), 2)
    ),
    "skip_large_updates": lambda: gx.skip_large_updates(gx.adam(sched()), 1e6),
    "dynamic_loss_scale": lambda: gx.dynamic_loss_scale(
        gx.adam(0.1), init_scale=2.0**10, growth_interval=3
    ),
    "zero_nans_adaptive_grad_clip": lambda: gx.chain(
        gx.zero_nans(), gx.adaptive_grad_clip(0.1), gx.adam(0.1)
    ),
    "nested": lambda: gx.apply_if_finite(
        gx.accumulate(
            gx.lookahead(
                gx.conditionally_transform(gx.adam(0.1), lambda t: t > 0, otherwise="zero")
            ),
            2,
        ),
        1,
    ),
}

# Composition in chain, in several orders (bad steps included).
CHAINS = {
    "loss_scale_of_skip_large": lambda: gx.chain(
        gx.zero_nans(),
        gx.dynamic_loss_scale(
            gx.skip_large_updates(gx.chain(gx.adaptive_grad_clip(0.5), gx.adam(0.05)), 1e4),
            init_scale=1.0,
            growth_interval=4,
        ),
        gx.keep_params_nonnegative(),
    ),
    "skip_outside_accumulate": lambda: gx.chain(
        gx.clip_by_global_norm(10.0),
        gx.apply_if_finite(gx.accumulate(gx.adam(sched()), 2), 3),
        gx.keep_params_nonnegative(),
    ),
    "accumulate_of_chain": lambda: gx.accumulate(
        gx.chain(
            gx.apply_if_finite(gx.lookahead(gx.sgd(0.05, momentum=0.5), 2), 3),
            gx.reduce_on_plateau(factor=0.5, patience=3),
            gx.project(clip01),
        ),
        2,
    ),
    "plateau_first": lambda: gx.apply_if_finite(
        gx.chain(
            gx.reduce_on_plateau(factor=0.5, patience=3),
            gx.conditionally_transform(gx.clip(1.0), lambda t: t < 10),
            gx.lookahead(gx.adam(0.05), 4, 0.8),
            gx.scale_by_schedule(lambda t: jnp.where(t < 30, 1.0, 0.5).astype(jnp.float32)),
            gx.keep_params_nonnegative(),
        ),
        3,
    ),
}


def avals(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, [(x.shape, jnp.result_type(x), getattr(x, "weak_type", False)) for x in leaves]


def _scan(tx, steps, nan_steps=()):
    """``steps`` updates in one ``lax.scan`` (the state is its carry: a type change fails)."""
    bad = jnp.asarray([t in nan_steps for t in range(steps)])

    @jax.jit
    def go(params):
        def body(carry, poison):
            p, s = carry
            value, g = jax.value_and_grad(loss)(p)
            g["w"] = g["w"] * jnp.where(poison, jnp.inf, 1.0).astype(jnp.float32)
            u, s = tx.update(g, s, p, value=value)
            return (gx.apply_updates(p, u), s), value

        return jax.lax.scan(body, (params, tx.init(params)), bad)

    return go(PARAMS)


@pytest.mark.parametrize("name", list(WRAPPERS))
def test_state_structure_stable(name):
    tx = WRAPPERS[name]()
    state = tx.init(PARAMS)
    grads = jax.grad(loss)({k: v for k, v in PARAMS.items()})
    new_state = jax.eval_shape(
        lambda g, s: tx.update(g, s, PARAMS, value=jnp.float32(1.0))[1], grads, state
    )
    assert avals(new_state) == avals(state)
    (p, s), losses = _scan(tx, 12)
    assert avals(s) == avals(state)
    assert np.all(np.isfinite(np.asarray(losses)))
    assert float(losses[-1]) < float(losses[0])


@pytest.mark.parametrize("name", list(WRAPPERS) + list(CHAINS))
def test_states_are_named_tuples(name):
    tx = {**WRAPPERS, **CHAINS}[name]()

    def check(s):
        if isinstance(s, gx.ChainState):
            for x in s:
                check(x)
        elif isinstance(s, tuple):
            assert hasattr(s, "_fields"), f"{type(s)} is not a NamedTuple"
            for x in s:
                check(x)

    check(tx.init(PARAMS))


@pytest.mark.parametrize("name", list(CHAINS))
def test_composition_in_chain_with_bad_steps(name):
    tx = CHAINS[name]()
    (p, s), losses = _scan(tx, 40, nan_steps=(5, 6, 17))
    losses = np.asarray(losses)
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < 0.5 * losses[0], losses
    assert float(jnp.min(p["w"])) >= 0.0 and p["n"] is None
    assert avals(s) == avals(tx.init(PARAMS))


def test_skip_counters_reach_through_chain():
    tx = CHAINS["skip_outside_accumulate"]()
    _, s = _scan(tx, 12, nan_steps=(5, 6))[0]
    inner = s.apply_if_finite
    assert int(inner.total_errors) == 2 and int(inner.consecutive_errors) == 0
    # 12 calls, 2 skipped: 10 micro-batches, 5 optimizer steps.
    assert int(inner.inner_state.count) == 5
    assert int(inner.inner_state.inner_state.scale_by_adam.count) == 5


def test_hyperparameters_are_leaves():
    tx = gx.apply_if_finite(
        gx.accumulate(gx.lookahead(gx.sgd(0.1), 4, 0.5), 2), 3, on_limit="raise"
    )
    paths = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(tx)[0]}
    assert paths == {
        ".inner.inner.inner.scale_by_learning_rate.learning_rate": 0.1,
        ".inner.inner.sync_period": 4,
        ".inner.inner.alpha": 0.5,
        ".inner.every_k": 2,
        ".max_consecutive_errors": 3,
    }
    assert tx == gx.apply_if_finite(
        gx.accumulate(gx.lookahead(gx.sgd(0.1), 4, 0.5), 2), 3, on_limit="raise"
    )
    assert tx != gx.apply_if_finite(gx.accumulate(gx.lookahead(gx.sgd(0.1), 4, 0.5), 2), 3)
    plateau = gx.reduce_on_plateau()
    assert jax.tree_util.tree_leaves(plateau) == [0.1, 10, 1e-4, 0.0, 0, 0.0, 1]


def test_slots_shard_like_params():
    sharding = jax.sharding.NamedSharding(
        jax.make_mesh((4,), ("d",)), jax.sharding.PartitionSpec("d")
    )
    params = {"w": jax.device_put(jnp.arange(8.0, dtype=jnp.float32), sharding)}
    for tx in (gx.accumulate(gx.adam(0.1), 2), gx.lookahead(gx.adam(0.1), 2)):
        state = tx.init(params)
        _, state = jax.jit(tx.update)(params, state, params)
        slots = [x for x in jax.tree_util.tree_leaves(state) if x.ndim == 1]
        assert len(slots) == 3
        assert all(x.sharding.is_equivalent_to(sharding, 1) for x in slots)


def test_repr_round_trips():
    tx = gx.accumulate(gx.lookahead(gx.sgd(0.1), 3, 0.5), 4, accumulator_dtype=None)
    assert eval(repr(tx), vars(gx)) == tx
    tx = gx.apply_if_finite(gx.chain(gx.adam(0.1), gx.reduce_on_plateau(patience=2)), 3)
    assert eval(repr(tx), vars(gx)) == tx


@pytest.mark.parametrize("k", [2, 2.0, np.int64(2), jnp.asarray(2)], ids=str)
def test_integer_hyperparameters_accept_integral_numbers_and_arrays(k):
    p = {"w": jnp.ones(2)}
    for tx in (
        gx.accumulate(gx.sgd(0.5), k),
        gx.lookahead(gx.sgd(0.5), k, 0.5),
        gx.apply_if_finite(gx.sgd(0.5), k, on_limit="raise"),
        gx.chain(gx.sgd(0.5), gx.reduce_on_plateau(patience=k, accumulation_size=k)),
    ):
        s = tx.init(p)
        step = jax.jit(lambda t, g, s: t.update(g, s, p, value=jnp.float32(1.0)))
        for _ in range(2):
            u, s = step(tx, p, s)
        assert u["w"].dtype == jnp.float32


@pytest.mark.parametrize(
    "tx",
    [
        gx.apply_if_finite(gx.sgd(0.1), 2),
        gx.accumulate(gx.sgd(0.1), 2),
        gx.lookahead(gx.sgd(0.1), 2, 0.5),
        gx.conditionally_transform(gx.sgd(0.1), lambda t: t > 0),
        gx.masked(gx.sgd(0.1), {"w": True, "b": False, "n": None}),
        gx.freeze(gx.sgd(0.1), "b"),
        gx.partition({"a": gx.sgd(0.1), "b": gx.adam(0.1)}, {"w": "a", "b": "b", "n": None}),
        gx.skip_large_updates(gx.sgd(0.1), 1.0),
        gx.dynamic_loss_scale(gx.sgd(0.1)),
        gx.sam(gx.sgd(0.1)),
    ],
    ids=lambda tx: type(tx).__name__,
)
def test_every_wrapper_names_the_wrapped_state_inner_state(tx):
    # One name, so that code walking states (hyperparams, users' own) needs no guessing.
    state = tx.init(PARAMS)
    assert "inner_state" in state._fields
    inner = state.inner_state
    if isinstance(tx, gx.partition):
        assert set(inner) == {"a", "b"}
        inner = inner["a"]
    assert isinstance(inner, gx.ChainState)

"""Properties every named optimizer must have, driven by the registry in ``helpers``."""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import OPTIMIZERS, PRIMITIVES, max_dist, parity_cases, run, slot_fields
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import gradxform as gx
import gradxform.optimizers
from gradxform import problems

NAMES = sorted(OPTIMIZERS)


def make(name, which="quad"):
    return OPTIMIZERS[name].make(which)


def grads_like(params, seed=0):
    leaves, treedef = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(seed)
    out = []
    for x in leaves:
        g = rng.normal(size=x.shape)
        if jnp.iscomplexobj(x):
            g = g + 1j * rng.normal(size=x.shape)
        out.append(jnp.asarray(g, x.dtype))
    return treedef.unflatten(out)


def params_of(dtype):
    rng = np.random.default_rng(1)

    def arr(shape):
        x = rng.normal(size=shape)
        if jnp.issubdtype(dtype, jnp.complexfloating):
            x = x + 1j * rng.normal(size=shape)
        return jnp.asarray(x, dtype)

    return {"w": arr((3, 4)), "b": arr((4,)), "nested": [arr(())]}


# --------------------------------------------------------------------------------------
# The registry covers what gradxform exports


def _exported_by_optimizer_modules():
    """(named optimizers, per-coordinate rules) in ``gradxform/optimizers/*.py``'s
    ``__all__``: the alias functions and the transform classes, by module."""
    aliases, rules = {}, {}
    for info in pkgutil.iter_modules(gradxform.optimizers.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"gradxform.optimizers.{info.name}")
        for name in module.__all__:
            obj = getattr(module, name)
            assert getattr(gx, name, None) is obj, f"gx.{name} is not {module.__name__}.{name}"
            if inspect.isfunction(obj):
                aliases[name] = module.__name__
            elif isinstance(obj, type) and issubclass(obj, gx.GradientTransformation):
                rules[name] = module.__name__
            else:
                raise AssertionError(f"{module.__name__}.{name}: neither an alias nor a rule")
    return aliases, rules


def test_every_exported_optimizer_has_a_registry_entry():
    aliases, rules = _exported_by_optimizer_modules()
    assert {"adam", "sgd", "lion"} <= set(aliases) and "scale_by_adam" in rules
    missing = {n: m for n, m in aliases.items() if n not in OPTIMIZERS}
    assert not missing, f"add an OptimizerCase to tests/helpers.py OPTIMIZERS for {missing}"
    assert set(OPTIMIZERS) == set(aliases), f"stale entries: {set(OPTIMIZERS) - set(aliases)}"
    missing = {n: m for n, m in rules.items() if n not in PRIMITIVES}
    assert not missing, f"add a PrimitiveCase to tests/helpers.py PRIMITIVES for {missing}"
    assert set(PRIMITIVES) == set(rules), f"stale entries: {set(PRIMITIVES) - set(rules)}"


def test_registry_entries_are_consistent():
    recorded = parity_cases()
    claimed = {}
    for name, case in OPTIMIZERS.items():
        assert case.name == name and callable(getattr(gx, name))
        assert case.reference is not None or case.parity_cases, f"{name}: no reference at all"
        if case.primitive is None:
            assert case.slots == (), name
        else:
            assert set(case.slots) <= set(PRIMITIVES[case.primitive].state_fields), name
        assert "learning_rate" in case.quad and "learning_rate" in case.rosen
        for c in case.parity_cases:
            assert recorded.get(c) == name, f"{name}: reference case {c!r} runs {recorded.get(c)}"
            claimed[c] = name
    # Every recorded reference trajectory is listed under the optimizer it runs.
    assert set(claimed) == set(recorded), f"not in the registry: {set(recorded) - set(claimed)}"
    for name, rule in PRIMITIVES.items():
        assert rule.name == name and rule.references, name
        for ref in rule.references:
            assert type(ref.make()) is getattr(gx, name), ref.id
            assert set(ref.slots) <= set(rule.state_fields), ref.id


@pytest.mark.parametrize("name", NAMES)
def test_state_layout(name):
    # The per-parameter slots are where the registry says: in the state of the rule the
    # optimizer chains, a tree like params in each listed field and in no other field.
    case = OPTIMIZERS[name]
    tx = make(name)
    p = params_of(jnp.float32)
    s0 = tx.init(p)
    s1 = jax.jit(tx.update)(grads_like(p), s0, p)[1]
    for s in (s0, s1):
        assert isinstance(s, gx.ChainState) and s.names == tx.names
        if case.primitive is not None:
            assert case.primitive in s.names, (name, s.names)
            assert s[case.primitive]._fields == PRIMITIVES[case.primitive].state_fields
        found = {(n, f) for n in s.names for f in slot_fields(s[n], p)}
        assert found == {(case.primitive, f) for f in case.slots}, found


# --------------------------------------------------------------------------------------
# Properties of every named optimizer


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_quadratic(name):
    loss, x0, xs = problems.bowl_tree()
    p = run(make(name), loss, x0, 2000)
    assert max_dist(p, xs) < OPTIMIZERS[name].quad_tol, (name, max_dist(p, xs))


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_rosenbrock(name):
    loss, x0, xs = problems.rosenbrock_tree()
    assert float(loss(x0)) > 24
    p = run(make(name, "rosen"), loss, x0, 20_000)
    assert max_dist(p, xs) < OPTIMIZERS[name].rosen_tol, (name, max_dist(p, xs))


@pytest.mark.parametrize("name", NAMES)
def test_complex_quadratic_converges(name):
    # f(z) = sum |z - c|^2; its steepest-ascent direction is 2 (z - c) (what a complex
    # optimizer must be fed: the conjugate of jax.grad's output for C -> R functions).
    c = jnp.asarray([1 + 2j, -0.5 + 0.25j, 3 - 1j], jnp.complex64)
    tx = make(name)
    p = {"z": jnp.zeros(3, jnp.complex64)}
    s = tx.init(p)

    @jax.jit
    def step(p, s):
        u, s = tx.update({"z": 2 * (p["z"] - c)}, s, p)
        return gx.apply_updates(p, u), s

    for _ in range(3000):
        p, s = step(p, s)
    assert p["z"].dtype == jnp.complex64
    assert float(jnp.max(jnp.abs(p["z"] - c))) < OPTIMIZERS[name].complex_tol


@pytest.mark.parametrize("name", NAMES)
def test_jit_matches_eager(name):
    loss, p, _ = problems.logistic_tree()
    tx = make(name)

    def step(p, s):
        u, s = tx.update(jax.grad(loss)(p), s, p)
        return gx.apply_updates(p, u), s

    pe, se = p, tx.init(p)
    pj, sj = p, tx.init(p)
    jstep = jax.jit(step)
    for _ in range(5):
        pe, se = step(pe, se)
        pj, sj = jstep(pj, sj)
    # XLA may fuse a*b+c into one FMA under jit, so the two paths can differ in the last
    # bit of float32 per step; 5 steps stay within a few ulps.
    for a, b in zip(jax.tree_util.tree_leaves((pe, se)), jax.tree_util.tree_leaves((pj, sj))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_no_retrace_and_hyperparameters_are_jit_arguments(name):
    traces = []

    @jax.jit
    def step(tx, p, s, g):
        traces.append(None)
        u, s = tx.update(g, s, p)
        return gx.apply_updates(p, u), s

    tx = make(name)
    p = params_of(jnp.float32)
    s = tx.init(p)
    g = grads_like(p)
    p, s = step(tx, p, s, g)
    p, s = step(tx, p, s, g)
    assert len(traces) == 1
    # A new learning rate is a new leaf value, not a new program.
    tx2 = OPTIMIZERS[name].make(learning_rate=OPTIMIZERS[name].quad["learning_rate"] / 2)
    assert tx2 != tx
    p2, _ = step(tx2, p, s, g)
    assert len(traces) == 1
    assert not np.allclose(np.asarray(p2["w"]), np.asarray(step(tx, p, s, g)[0]["w"]))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64", "complex64"])
@pytest.mark.parametrize("name", NAMES)
def test_dtypes_preserved(name, dtype):
    with jax.enable_x64(dtype == "float64"):
        dtype = jnp.dtype(dtype)
        tx = make(name)
        p = params_of(dtype)
        s = tx.init(p)
        g = grads_like(p)
        for _ in range(3):
            u, s = jax.jit(tx.update)(g, s, p)
            p = gx.apply_updates(p, u)
        for leaf in jax.tree_util.tree_leaves((u, p)):
            assert leaf.dtype == dtype
            assert bool(jnp.all(jnp.isfinite(leaf)))
        # State is kept in at least float32: bf16 moments would lose most of their bits.
        for leaf in jax.tree_util.tree_leaves(s):
            if jnp.issubdtype(leaf.dtype, jnp.inexact):
                assert leaf.dtype.itemsize >= 4, leaf.dtype
                assert bool(jnp.all(jnp.isfinite(leaf)))


@pytest.mark.parametrize("name", NAMES)
def test_state_dtypes_stable_when_updates_and_params_differ(name):
    # float64 params, float32 gradients: the slots were made float64 at init and stored
    # in the gradient's float32 after one update, so a scan carry broke.
    with jax.enable_x64(True):
        tx = make(name)
        p = {"w": jnp.ones(3, jnp.float64)}
        g = {"w": jnp.full(3, 0.5, jnp.float32)}
        s0 = tx.init(p)
        _, s1 = tx.update(g, s0, p)
        assert [x.dtype for x in jax.tree.leaves(s1)] == [x.dtype for x in jax.tree.leaves(s0)]
        jax.lax.scan(lambda s, _: (tx.update(g, s, p)[1], None), s0, length=2)


@pytest.mark.parametrize("name", NAMES)
def test_none_and_non_array_leaves_untouched(name):
    tx = make(name)
    p = {"w": jnp.ones(3), "frozen": None, "label": "encoder", "n_layers": 2}
    s = tx.init(p)
    g = {"w": jnp.full(3, 0.5), "frozen": None, "label": "encoder", "n_layers": 2}
    u, s = tx.update(g, s, p)
    assert u["frozen"] is None and u["label"] == "encoder" and u["n_layers"] == 2
    new = gx.apply_updates(p, u)
    assert new["frozen"] is None and new["label"] == "encoder" and new["n_layers"] == 2
    assert not np.allclose(np.asarray(new["w"]), 1.0)


@pytest.mark.parametrize("name", NAMES)
def test_state_structure_stable_through_cond(name):
    tx = make(name)
    p = params_of(jnp.float32)
    g = grads_like(p)

    @jax.jit
    def maybe_step(pred, s):
        return jax.lax.cond(pred, lambda s: tx.update(g, s, p)[1], lambda s: s, s)

    s0 = tx.init(p)
    s1 = maybe_step(True, s0)
    s_skip = maybe_step(False, s0)
    assert jax.tree_util.tree_structure(s1) == jax.tree_util.tree_structure(s0)
    for a, b in zip(jax.tree_util.tree_leaves(s0), jax.tree_util.tree_leaves(s_skip)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", NAMES)
def test_params_and_state_can_be_donated(name):
    # A training step usually donates params and state: no state leaf may be a params
    # buffer or appear twice ("Attempt to donate the same buffer twice"), and every
    # donated buffer must be usable (warnings are errors here).
    params = problems.bowl_tree()[1]
    tx = OPTIMIZERS[name].make()
    state = tx.init(params)
    buffers = [x.unsafe_buffer_pointer() for x in jax.tree_util.tree_leaves((params, state))]
    assert len(buffers) == len(set(buffers)), f"{name}: init aliases a buffer"

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state):
        grads = jax.tree_util.tree_map(jnp.ones_like, params)
        updates, state = tx.update(grads, state, params)
        return gx.apply_updates(params, updates), state

    for _ in range(2):
        params, state = step(params, state)


@pytest.mark.parametrize("name", NAMES)
def test_compiled_step_grows_linearly_with_the_leaf_count(name):
    # XLA may fuse a chain of cheap scalar reductions over all leaves into every leaf's
    # consumer: O(leaves^2) instructions (Prodigy once compiled 196 leaves in 33 s where
    # Adam takes 1 s). Four times the leaves must give about four times the HLO.
    def hlo_lines(n):
        params = {f"p{i:03d}": jnp.ones((3, 2) if i % 2 else (4,)) for i in range(n)}
        tx = OPTIMIZERS[name].make()
        state = tx.init(params)
        lowered = jax.jit(tx.update).lower(params, state, params)
        return lowered.compile().as_text().count("\n")

    small, large = hlo_lines(12), hlo_lines(48)
    assert large < 6 * small, f"{name}: {small} HLO lines at 12 leaves, {large} at 48"


@pytest.mark.parametrize("name", NAMES)
def test_init_on_shape_dtype_structs(name):
    tx = make(name)
    p = params_of(jnp.float32)
    abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), p)
    s_direct = tx.init(abstract)
    s_shape = jax.eval_shape(tx.init, abstract)
    s_real = tx.init(p)
    for a, b, c in zip(*(jax.tree_util.tree_leaves(t) for t in (s_direct, s_shape, s_real))):
        assert a.shape == b.shape == c.shape and a.dtype == b.dtype == c.dtype


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", NAMES)
def test_zero_gradients_in_half_precision_never_nan(name, dtype):
    tx = make(name)
    p = {"w": jnp.full((4,), 0.5, dtype), "b": jnp.zeros((), dtype)}
    s = tx.init(p)
    g = jax.tree_util.tree_map(jnp.zeros_like, p)
    for _ in range(5):
        u, s = tx.update(g, s, p)
        p = gx.apply_updates(p, u)
    for leaf in jax.tree_util.tree_leaves((p, u, s)):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    np.testing.assert_array_equal(np.asarray(p["w"], np.float32), 0.5)


@pytest.mark.parametrize("name", NAMES)
def test_sharded_params_give_equally_sharded_state(name):
    devices = np.array(jax.devices()[:4])
    assert devices.size == 4, "conftest should provide 4 host devices"
    mesh = Mesh(devices, ("x",))
    sharding = NamedSharding(mesh, PartitionSpec("x"))
    p = {"w": jax.device_put(jnp.ones((8, 3)), sharding)}
    tx = make(name)
    s = tx.init(p)
    for leaf in jax.tree_util.tree_leaves(s):
        if leaf.shape == (8, 3):
            assert leaf.sharding.is_equivalent_to(sharding, 2), leaf.sharding
    u, s = jax.jit(tx.update)({"w": jax.device_put(jnp.ones((8, 3)), sharding)}, s, p)
    assert u["w"].sharding.is_equivalent_to(sharding, 2)
    for leaf in jax.tree_util.tree_leaves(s):
        if leaf.shape == (8, 3):
            assert leaf.sharding.is_equivalent_to(sharding, 2), leaf.sharding


@pytest.mark.parametrize("name", NAMES)
def test_value_semantics(name):
    a, b = make(name), make(name)
    assert a == b and hash(a) == hash(b)
    assert a.name == name
    assert repr(a).startswith("chain(") and f"name={name!r}" in repr(a)
    assert a != make(name, "rosen") or OPTIMIZERS[name].quad == OPTIMIZERS[name].rosen


BAD_HPARAMS = [
    ("sgd", {"learning_rate": -0.1}, r"learning_rate must be a finite number in \[0, inf\]"),
    ("sgd", {"learning_rate": math.nan}, "learning_rate.*got nan"),
    ("sgd", {"momentum": 1.0}, r"momentum must be a finite number in \[0, 1\)"),
    ("sgd", {"nesterov": True}, "nesterov=True requires momentum > 0"),
    (
        "momentum",
        {"momentum": 0.9, "dampening": 0.5, "nesterov": True},
        "nesterov=True requires dampening=0",
    ),
    ("adam", {"b1": 1.0}, r"b1 must be a finite number in \[0, 1\), got 1.0"),
    ("adam", {"b2": -0.1}, r"b2 must be a finite number in \[0, 1\)"),
    ("adam", {"eps": 0.0}, r"eps must be a finite number in \(0, inf\]"),
    ("adam", {"learning_rate": math.inf}, "learning_rate.*got inf"),
    ("adamw", {"weight_decay": -1e-2}, "weight_decay must be"),
    ("adagrad", {"lr_decay": -1.0}, "lr_decay must be"),
    ("adagrad", {"learning_rate": -1.0, "lr_decay": 0.1}, r"learning_rate must be .*\[0, inf\]"),
    (
        "adagrad",
        {"learning_rate": gx.constant_schedule(0.1), "lr_decay": 0.1},
        "either a learning_rate schedule or lr_decay",
    ),
    ("rmsprop", {"decay": 1.5}, r"decay must be a finite number in \[0, 1\]"),
    ("adadelta", {"rho": -0.5}, "rho must be"),
    ("nadam", {"momentum_decay": -1.0}, "momentum_decay must be"),
    ("lion", {"b2": 2.0}, "b2 must be"),
    ("adam", {"learning_rate": "0.001"}, "learning_rate must be a number or a schedule"),
    ("sgd", {"weight_decay_mask": {"w": True}}, "weight_decay_mask was given but weight_decay"),
]


@pytest.mark.parametrize(
    "name,kwargs,match", BAD_HPARAMS, ids=[f"{n}-{'-'.join(k)}" for n, k, _ in BAD_HPARAMS]
)
def test_bad_hyperparameters_raise_at_construction(name, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        getattr(gx, name)(**kwargs)


def test_schedulable_hyperparameters():
    p = {"w": jnp.ones(3)}
    g = {"w": jnp.ones(3)}
    lr = gx.piecewise_constant_schedule((1,), (0.1, 0.01))
    tx = gx.sgd(
        lr, momentum=gx.constant_schedule(0.5), weight_decay=gx.linear_schedule(0.0, 1.0, 1)
    )
    s = tx.init(p)
    u1, s = tx.update(g, s, p)  # wd 0, v = 1, lr 0.1
    np.testing.assert_allclose(np.asarray(u1["w"]), -0.1, rtol=1e-6)
    u2, s = tx.update(g, s, p)  # wd 1 -> g = 2, v = 0.5 + 2 = 2.5, lr 0.01
    np.testing.assert_allclose(np.asarray(u2["w"]), -0.025, rtol=1e-6)


def test_heavy_ball_and_momentum_agree_at_constant_lr_and_differ_under_schedule():
    loss, x0, _ = problems.bowl_tree()
    a = run(gx.heavy_ball(0.05, 0.9), loss, x0, 50)
    b = run(gx.momentum(0.05, 0.9), loss, x0, 50)
    assert max_dist(a, b) < 1e-5
    sched = gx.exponential_decay(0.05, decay_rate=0.5, transition_steps=10)
    a = run(gx.heavy_ball(sched, 0.9), loss, x0, 50)
    b = run(gx.momentum(sched, 0.9), loss, x0, 50)
    assert max_dist(a, b) > 1e-2


def test_heavy_ball_is_the_course_formula():
    # seed 003: W <- W - a dJ/dW + b (W_t - W_{t-1}), with W_0 - W_{-1} = 0.
    a, b = 0.1, 0.8
    d = np.array([1.0, 3.0])
    w_prev = w = np.array([2.0, -1.0])
    p = {"w": jnp.asarray(w, jnp.float32)}
    tx = gx.heavy_ball(a, b)
    s = tx.init(p)
    for _ in range(5):
        w_new = w - a * d * w + b * (w - w_prev)
        w_prev, w = w, w_new
        u, s = tx.update({"w": jnp.asarray(d, jnp.float32) * p["w"]}, s, p)
        p = gx.apply_updates(p, u)
        np.testing.assert_allclose(np.asarray(p["w"]), w, rtol=1e-6)

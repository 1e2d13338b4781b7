"""Prodigy, D-Adaptation Adam and DoG / L-DoG: the global step-size estimates.

The registry (tests/helpers.py) covers convergence, dtypes, sharding and first steps, and
tests/test_reference_parity.py replays the packages' trajectories. Here: the global
scalars (d, rbar, G) step by step against the NumPy references, the initial parameters
taken at the first update (so ``init`` works on shapes alone), the references' early
return on an all-zero gradient, and bad arguments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from references import ref_dadapt_adam, ref_dog, ref_prodigy

import gradxform as gx

# float64 NumPy references of the same formulas over a few steps: only rounding differs.
RTOL = 1e-12
PARAMS = {"a": np.array([0.5, -1.5, 0.0]), "b": np.array([[2.0, -1.0], [0.0, -3.0]])}
GRADS = [
    {"a": np.array([1.0, -2.0, 0.0]), "b": np.array([[0.5, -4.0], [0.0, 3.0]])},
    {"a": np.array([-0.5, 0.0, 4.0]), "b": np.array([[2.0, 1.0], [0.0, -3.0]])},
    {"a": np.array([0.25, -1.0, 3.0]), "b": np.array([[-0.5, 1.5], [0.0, 2.0]])},
]
# D-Adaptation's d grows when successive gradients agree: the same gradient 8 times.
SAME_GRADS = [GRADS[0]] * 8


def _run(tx, grads, params=PARAMS):
    """float64 steps of ``tx`` with params advanced by p <- p + u; [(u, state)] per step."""
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v) for k, v in params.items()}
        state = tx.init(p)
        step = jax.jit(tx.update)
        out = []
        for g in grads:
            u, state = step({k: jnp.asarray(v) for k, v in g.items()}, state, p)
            out.append((u, state))
            p = {k: p[k] + u[k] for k in p}
    return out


def _assert_tree(actual, expected, msg):
    for k in expected:
        np.testing.assert_allclose(np.asarray(actual[k]), expected[k], rtol=RTOL, err_msg=msg)


@pytest.mark.parametrize(
    "tx, ref, grads",
    [
        # d_coef 10: d grows at step 2 (<g_2, x0 - x_1> > 0 for these gradients).
        (gx.scale_by_prodigy(d0=0.5, d_coef=10.0), dict(d0=0.5, d_coef=10.0), GRADS),
        (
            gx.scale_by_prodigy(0.5, d0=0.2, d_coef=20.0, safeguard_warmup=True, growth_rate=1.5),
            dict(lr=0.5, d0=0.2, d_coef=20.0, safeguard=True, growth=1.5),
            GRADS,
        ),
    ],
    ids=["prodigy", "prodigy-safeguard"],
)
def test_prodigy_estimate_against_reference(tx, ref, grads):
    expected = ref_prodigy(grads, PARAMS, **ref)
    steps = _run(tx, grads)
    ds = [float(s.d) for _, s in steps]
    assert ds[1] > ds[0], ds  # the estimate moves: the test sees the growth path
    for t, ((u, s), exp) in enumerate(zip(steps, expected), 1):
        _assert_tree(u, exp["u"], f"step {t} u")
        _assert_tree(s.p0, exp["p0"], f"step {t} p0")
        np.testing.assert_allclose(float(s.d), exp["d"], rtol=RTOL, err_msg=f"step {t} d")
        assert float(s.d_max) >= float(s.d)


@pytest.mark.parametrize("growth", [np.inf, 1.5])
def test_dadapt_adam_estimate_against_reference(growth):
    expected = ref_dadapt_adam(SAME_GRADS, PARAMS, b2=0.9, growth=growth)
    steps = _run(gx.scale_by_dadapt_adam(b2=0.9, growth_rate=growth), SAME_GRADS)
    ds = [float(s.d) for _, s in steps]
    assert ds[-1] > 10 * ds[0], ds  # d grew from d0
    if growth != np.inf:
        assert all(b <= 1.5 * a * (1 + 1e-15) for a, b in zip(ds, ds[1:])), ds
    for t, ((u, s), exp) in enumerate(zip(steps, expected), 1):
        _assert_tree(u, exp["u"], f"step {t} u")
        _assert_tree(s.s, exp["s"], f"step {t} s")
        np.testing.assert_allclose(float(s.d), exp["d"], rtol=RTOL, err_msg=f"step {t} d")


@pytest.mark.parametrize("layer_wise", [False, True], ids=["dog", "ldog"])
def test_dog_distance_against_reference(layer_wise):
    grads = SAME_GRADS[:4] + GRADS
    expected = ref_dog(grads, PARAMS, reps_rel=0.1, layer=layer_wise)
    steps = _run(gx.scale_by_dog(0.1, layer_wise=layer_wise), grads)
    for t, ((u, s), exp) in enumerate(zip(steps, expected), 1):
        _assert_tree(u, exp["u"], f"step {t} u")
        _assert_tree(s.x0, PARAMS, f"step {t} x0")
    _, last = steps[-1]
    assert last.rbar.shape == last.g2_sum.shape == ((2,) if layer_wise else ())


def test_ldog_step_sizes_are_per_leaf():
    # Scaling leaf b's gradient changes b's DoG step size only under L-DoG.
    big = [{"a": g["a"], "b": 100 * g["b"]} for g in GRADS]
    for layer_wise, same in [(True, True), (False, False)]:
        tx = gx.scale_by_dog(0.1, layer_wise=layer_wise)
        u1, u2 = _run(tx, GRADS)[0][0], _run(tx, big)[0][0]
        assert np.allclose(np.asarray(u1["a"]), np.asarray(u2["a"]), rtol=1e-14) == same


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw", "dog", "ldog"])
def test_init_on_shapes_alone_then_x0_from_first_update(name):
    # The initial parameters are taken at the first update, so init needs no values:
    # eval_shape of init, or init on ShapeDtypeStructs carrying a sharding, is the state.
    mesh = Mesh(np.array(jax.devices()[:4]), ("x",))
    sharding = NamedSharding(mesh, PartitionSpec("x"))
    p = {"w": jax.device_put(jnp.arange(8.0).reshape(8, 1) - 3.0, sharding), "b": jnp.ones(3)}
    abstract = {
        "w": jax.ShapeDtypeStruct((8, 1), jnp.float32, sharding=sharding),
        "b": jax.ShapeDtypeStruct((3,), jnp.float32),
    }
    tx = getattr(gx, name)()
    state = tx.init(abstract)
    shapes = jax.eval_shape(tx.init, abstract)
    concrete = tx.init(p)
    for a, b, c in zip(*(jax.tree_util.tree_leaves(t) for t in (state, shapes, concrete))):
        assert a.shape == b.shape == c.shape and a.dtype == b.dtype == c.dtype
    x0_field = "x0" if "dog" in name else "p0"
    rule = {"prodigy": "scale_by_prodigy", "dadapt_adamw": "scale_by_dadapt_adam"}
    rule = rule.get(name, "scale_by_dog")
    if name != "dadapt_adamw":  # D-Adaptation Adam keeps no initial point
        assert getattr(state[rule], x0_field)["w"].sharding.is_equivalent_to(sharding, 2)
    g = {"w": jnp.full((8, 1), 0.5), "b": jnp.full(3, -0.25)}
    u_abstract, s_abstract = jax.jit(tx.update)(g, state, p)
    u_concrete, s_concrete = jax.jit(tx.update)(g, concrete, p)
    for a, b in zip(jax.tree_util.tree_leaves(u_abstract), jax.tree_util.tree_leaves(u_concrete)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if name != "dadapt_adamw":
        x0 = getattr(s_abstract[rule], x0_field)
        np.testing.assert_array_equal(np.asarray(x0["w"]), np.asarray(p["w"]))
        assert x0["w"].sharding.is_equivalent_to(sharding, 2)
        # Later updates keep the first point.
        _, s2 = jax.jit(tx.update)(g, s_abstract, jax.tree_util.tree_map(lambda x: x + 1, p))
        np.testing.assert_array_equal(np.asarray(getattr(s2[rule], x0_field)["b"]), 1.0)


@pytest.mark.parametrize(
    "tx",
    [gx.scale_by_prodigy(d0=0.5, d_coef=10.0), gx.scale_by_dadapt_adam(d0=0.1)],
    ids=["prodigy", "dadapt"],
)
def test_all_zero_gradient_changes_nothing(tx):
    # The references return before any step when the accumulated s is 0 everywhere: no
    # update; neither the step count k nor the estimate moves (count, read by schedules,
    # does; Prodigy's p0 is recorded at the first call, as the reference's).
    zeros = {k: np.zeros_like(v) for k, v in PARAMS.items()}
    steps = _run(tx, [zeros, zeros] + GRADS[:2])
    with jax.enable_x64(True):
        init = tx.init({k: jnp.asarray(v) for k, v in PARAMS.items()})
    for t, (u, s) in enumerate(steps[:2], 1):
        assert all(not np.any(np.asarray(x)) for x in jax.tree_util.tree_leaves(u))
        assert int(s.count) == t and int(s.k) == 0
        kept = s._replace(count=init.count, **({"p0": init.p0} if "p0" in s._fields else {}))
        for a, b in zip(jax.tree_util.tree_leaves(kept), jax.tree_util.tree_leaves(init)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if "p0" in steps[0][1]._fields:
        _assert_tree(steps[0][1].p0, PARAMS, "p0 at the first call")
    # Then it runs as if the zero steps had not happened.
    fresh = _run(tx, GRADS[:2])
    for (u, s), (v, r) in zip(steps[2:], fresh):
        _assert_tree(u, {k: np.asarray(x) for k, x in v.items()}, "after zeros")
        assert int(s.k) == int(r.k) and float(s.d) == float(r.d)


def test_zero_learning_rate_step_is_a_no_op():
    sched = lambda t: jnp.where(t < 1, 0.0, 1.0)  # noqa: E731
    for tx in (gx.scale_by_prodigy(sched, d0=0.5), gx.scale_by_dadapt_adam(sched)):
        (u0, s0), (u1, s1) = _run(tx, GRADS[:2])
        assert all(not np.any(np.asarray(x)) for x in jax.tree_util.tree_leaves(u0))
        assert (int(s0.count), int(s0.k), int(s1.count), int(s1.k)) == (1, 0, 2, 1)
        assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(u1))


def test_prodigy_traced_b1_zero_matches_concrete():
    # b1 = 0 switches the reference's step to d g with the new d; a traced b1 takes the
    # same path through jnp.where.
    concrete = _run(gx.scale_by_prodigy(b1=0.0, d0=0.5, d_coef=10.0), GRADS)
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v) for k, v in PARAMS.items()}

        @jax.jit
        def go(b1):
            tx = gx.scale_by_prodigy(b1=b1, d0=0.5, d_coef=10.0)
            s, q, us = tx.init(p), p, []
            for g in GRADS:
                u, s = tx.update({k: jnp.asarray(v) for k, v in g.items()}, s, q)
                q = {k: q[k] + u[k] for k in q}
                us.append(u)
            return us

        traced = go(jnp.asarray(0.0))
    expected = ref_prodigy(GRADS, PARAMS, b1=0.0, d0=0.5, d_coef=10.0)
    for (u, _), v, exp in zip(concrete, traced, expected):
        _assert_tree(u, exp["u"], "concrete b1=0")
        _assert_tree(v, exp["u"], "traced b1=0")


def test_global_scalars_take_the_widest_param_dtype():
    # d, d_max, ... live in the widest compute dtype of the parameters, chosen at init.
    tx = gx.prodigy(d0=1e-3)
    half = {"w": jnp.ones(3, jnp.bfloat16)}
    assert tx.init(half)["scale_by_prodigy"].d.dtype == jnp.float32
    with jax.enable_x64(True):
        mixed = {"w": jnp.ones(3, jnp.float32), "b": jnp.ones(2, jnp.float64)}
        state = tx.init(mixed)
        assert state["scale_by_prodigy"].d.dtype == jnp.float64
        u, state = jax.jit(tx.update)(mixed, state, mixed)
        assert state["scale_by_prodigy"].d.dtype == jnp.float64
        assert u["w"].dtype == jnp.float32 and u["b"].dtype == jnp.float64


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: gx.prodigy(d0=0.0), r"scale_by_prodigy: d0 must be .*\(0, inf\]"),
        (lambda: gx.prodigy(growth_rate=0.0), "growth_rate must be"),
        (lambda: gx.prodigy(growth_rate=float("nan")), "growth_rate.*got nan"),
        (lambda: gx.prodigy(beta3=1.0), r"beta3 must be .*\[0, 1\)"),
        (lambda: gx.prodigy(betas=(0.9, 1.5)), r"b2 must be .*\[0, 1\)"),
        (lambda: gx.prodigy(weight_decay=-0.1), "weight_decay must be"),
        (lambda: gx.prodigy(d_coef=-1.0), "d_coef must be"),
        (lambda: gx.dadapt_adamw(eps=0.0), "scale_by_dadapt_adam: eps must be"),
        (lambda: gx.dadapt_adamw(learning_rate=-1.0), "learning_rate must be"),
        (lambda: gx.dog(reps_rel=0.0), "scale_by_dog: reps_rel must be"),
        (lambda: gx.dog(init_eta=-1.0), "init_eta must be"),
        (lambda: gx.ldog(eps=-1.0), "eps must be"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("name", ["prodigy", "dog", "ldog"])
def test_update_needs_params(name):
    tx = getattr(gx, name)()
    p = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx.update(p, tx.init(p))


def test_dadapt_adamw_needs_params_only_for_decoupled_decay():
    p = {"w": jnp.ones(2)}
    tx = gx.dadapt_adamw()
    u, _ = tx.update(p, tx.init(p))  # no decay: params not needed
    assert u["w"].shape == (2,)
    tx = gx.dadapt_adamw(weight_decay=0.1)
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx.update(p, tx.init(p))


def _optax_pair(ours, theirs, steps=40):
    """Both on a small float64 quartic bowl; max |difference| of the params over the run."""
    import optax

    with jax.enable_x64(True):
        target = {"a": jnp.asarray([1.0, -2.0, 0.5]), "b": jnp.asarray([[3.0, 0.0], [-1.0, 2.0]])}

        def loss(p):
            return sum(jnp.sum((p[k] - target[k]) ** 2 + 0.1 * p[k] ** 4) for k in p)

        worst, ps = 0.0, []
        for tx, apply in ((ours, gx.apply_updates), (theirs, optax.apply_updates)):
            p = {k: jnp.asarray(v) for k, v in PARAMS.items()}
            s, traj = tx.init(p), []
            for _ in range(steps):
                u, s = tx.update(jax.grad(loss)(p), s, p)
                p = apply(p, u)
                traj.append(p)
            ps.append(traj)
        for p, q in zip(*ps):
            worst = max(worst, max(float(jnp.max(jnp.abs(p[k] - q[k]))) for k in p))
    return worst


def test_matches_optax_contrib_with_its_settings():
    # Migration facts: optax.contrib.prodigy and dadapt_adamw are these with Adam's bias
    # correction on (prodigyopt's and dadaptation's default is off); estim_lr0 is d0 and
    # estim_lr_coef d_coef. optax.contrib.dog's init_step ("heuristic", r) is reps_rel=r
    # and ("learning_rate", eta) init_eta=eta. Same formulas: only rounding differs.
    import optax

    pairs = [
        (
            gx.prodigy(
                0.5,
                use_bias_correction=True,
                beta3=0.9,
                d0=1e-3,
                d_coef=2.0,
                weight_decay=0.1,
                safeguard_warmup=True,
            ),
            optax.contrib.prodigy(
                0.5,
                beta3=0.9,
                estim_lr0=1e-3,
                estim_lr_coef=2.0,
                weight_decay=0.1,
                safeguard_warmup=True,
            ),
        ),  # fmt: skip
        (
            gx.dadapt_adamw(use_bias_correction=True, weight_decay=0.1, d0=1e-4),
            optax.contrib.dadapt_adamw(1.0, estim_lr0=1e-4, weight_decay=0.1),
        ),
        (
            gx.dog(reps_rel=1e-4, weight_decay=0.1),
            optax.contrib.dog(1.0, init_step=("heuristic", 1e-4), weight_decay=0.1),
        ),
        (gx.dog(init_eta=1e-3), optax.contrib.dog(1.0, init_step=("learning_rate", 1e-3))),
    ]
    for ours, theirs in pairs:
        assert _optax_pair(ours, theirs) < 1e-12, ours
    # Without the bias correction (the reference packages' default) they differ.
    assert _optax_pair(gx.prodigy(), optax.contrib.prodigy(1.0)) > 1e-7

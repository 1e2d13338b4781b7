"""Parameter averaging (``ema_params``, ``swa``), ``eval_params`` and ``incremental_update``.

``ema_params`` and ``swa`` are pass-through transforms placed last in a chain, not
optimizers, so the registry does not cover them: their parity with torch's
``AveragedModel`` (recorded by ``tests/reference/record_averaging.py`` into
``averaging_reference.json``, replayed here because a case's gradxform side is a chain),
state layout, jit, dtypes, ``None`` leaves and bad inputs are tested here.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

FIXTURE = json.loads(
    (pathlib.Path(__file__).parent / "reference" / "averaging_reference.json").read_text()
)
TOL = 1e-12  # float64 rounding over 50 steps (as tests/test_reference_parity.py)


def _rel_err(ours, ref):
    return float(np.max(np.abs(ours - ref)) / max(1.0, float(np.max(np.abs(ref)))))


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=[c["name"] for c in FIXTURE["cases"]])
def test_torch_averaged_model_parity(case):
    problem = FIXTURE["problem"]
    leaves = list(problem["shapes"])
    shapes = {k: tuple(v) for k, v in problem["shapes"].items()}
    recorded = {int(t) for t in FIXTURE["recorded_steps"]}
    spec = case["gradxform"]
    with jax.enable_x64(True):
        a = jnp.asarray(np.asarray(problem["A"], np.float64))
        c = jnp.asarray(np.asarray(problem["c"], np.float64))
        lam = float(problem["lam"])

        def grad_fn(params):
            x = jnp.concatenate([params[k].ravel() for k in leaves])
            g = jnp.dot(a, x, precision=jax.lax.Precision.HIGHEST) - c + lam * x**3
            out, off = {}, 0
            for k in leaves:
                size = int(np.prod(shapes[k]))
                out[k] = g[off : off + size].reshape(shapes[k])
                off += size
            return out

        tx = gx.chain(
            getattr(gx, spec["optimizer"])(**spec["kwargs"]),
            getattr(gx, spec["average"])(**spec["average_kwargs"]),
        )
        params = {
            k: jnp.asarray(np.asarray(problem["x0"][k], np.float64).reshape(shapes[k]))
            for k in leaves
        }
        state = tx.init(params)

        @jax.jit
        def step(params, state):
            updates, state = tx.update(grad_fn(params), state, params)
            return gx.apply_updates(params, updates), state

        worst, apart = 0.0, 0.0
        for t in range(1, int(FIXTURE["num_steps"]) + 1):
            params, state = step(params, state)
            if t not in recorded:
                continue
            got = {"trajectory": params, "eval_trajectory": gx.eval_params(state, params)}
            for what, ours in got.items():
                for k in leaves:
                    theirs = np.asarray(case[what][str(t)][k], np.float64).reshape(shapes[k])
                    assert ours[k].dtype == jnp.float64
                    err = _rel_err(np.asarray(ours[k]), theirs)
                    worst = max(worst, err)
                    assert err < TOL, f"{case['name']}: {what}[{k!r}] at step {t}: {err:.3e}"
            apart = max(apart, _rel_err(np.asarray(got["eval_trajectory"]["w"]), params["w"]))
    # The average is not the params (the parity above would then be vacuous).
    assert apart > 1e-3
    print(f"averaging-{case['name']}: max rel err {worst:.3e}")


# --------------------------------------------------------------------------------------
# ema_params


def _walk(tx, grads, params):
    """Eager: [(params after the step, state)] for each gradient."""
    state, out = tx.init(params), []
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = gx.apply_updates(params, updates)
        out.append((params, state))
    return out


GRADS = [jnp.array([1.0, -2.0]), jnp.array([0.5, 4.0]), jnp.array([-3.0, 0.25])]


@pytest.mark.parametrize("debias", [True, False])
def test_ema_params_against_numpy(debias):
    d, lr = 0.8, 0.5
    tx = gx.chain(gx.sgd(learning_rate=lr), gx.ema_params(d, debias=debias))
    with jax.enable_x64(True):
        p0 = jnp.array([0.3, -0.7], jnp.float64)
        steps = _walk(tx, [g.astype(jnp.float64) for g in GRADS], p0)
        p, e, avg = np.asarray(p0), np.zeros(2), None
        for t, (g, (params, state)) in enumerate(zip(GRADS, steps), 1):
            p = p - lr * np.asarray(g, np.float64)
            np.testing.assert_allclose(np.asarray(params), p, rtol=1e-15)
            if debias:  # Adam: zero start, divided by 1 - d^t
                e = d * e + (1 - d) * p
                avg = e / (1 - d**t)
            else:  # torch AveragedModel: a copy of p_1, then a lerp
                avg = p.copy() if avg is None else d * avg + (1 - d) * p
            np.testing.assert_allclose(np.asarray(state[1].ema), avg, rtol=1e-14)
            np.testing.assert_allclose(np.asarray(gx.eval_params(state, params)), avg, rtol=1e-14)
            assert int(state[1].n_averaged) == t


def test_ema_params_passes_updates_through_and_its_state_layout():
    p = {"w": jnp.ones((2, 3)), "frozen": None, "name": "layer", "b": jnp.zeros(3, jnp.bfloat16)}
    g = {
        "w": jnp.full((2, 3), 0.5),
        "frozen": None,
        "name": "layer",
        "b": jnp.ones(3, jnp.bfloat16),
    }
    tx = gx.ema_params(0.9)
    s = tx.init(p)
    assert type(s) is gx.EmaParamsState and s._fields == ("n_averaged", "ema")
    assert s.ema["frozen"] is None and s.ema["name"] is None
    # bfloat16 params keep an at least float32 average.
    assert s.ema["w"].dtype == jnp.float32 and s.ema["b"].dtype == jnp.float32
    u, s1 = tx.update(g, s, p)
    assert u is g  # unchanged, the same object
    assert s1.ema["frozen"] is None and s1.ema["name"] is None
    assert jax.tree.structure(s1) == jax.tree.structure(s)
    ev = gx.eval_params(s1, p)
    assert ev["frozen"] is None and ev["name"] == "layer"
    assert ev["b"].dtype == jnp.bfloat16  # the params' dtypes
    np.testing.assert_array_equal(np.asarray(ev["w"]), 1.5)  # p + u: first average = copy


def test_average_dtype_is_configurable():
    with jax.enable_x64(True):
        p = jnp.ones(3, jnp.float32)
        for tx in (gx.ema_params(0.9, average_dtype=jnp.float64), gx.swa(average_dtype="float64")):
            s = tx.init(p)
            assert jax.tree.leaves(s)[-1].dtype == jnp.float64
            _, s = tx.update(jnp.full(3, 1e-9, jnp.float32), s, p)
            assert jax.tree.leaves(s)[-1].dtype == jnp.float64
    s = gx.ema_params(0.9, average_dtype=jnp.bfloat16).init(p)
    assert s.ema.dtype == jnp.bfloat16


@pytest.mark.parametrize("make", [lambda: gx.ema_params(0.7), lambda: gx.swa(2, every=2)])
def test_jit_matches_eager_and_abstract_init(make):
    tx = gx.chain(gx.adam(learning_rate=0.1), make())
    p = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.1, 0.2])}
    grads = [jax.tree.map(lambda x, i=i: jnp.sin(x + i), p) for i in range(5)]
    eager = _walk(tx, grads, p)[-1]

    @jax.jit
    def step(params, state, g):
        updates, state = tx.update(g, state, params)
        return gx.apply_updates(params, updates), state

    params, state = p, tx.init(p)
    for g in grads:
        params, state = step(params, state, g)
    for a, b in zip(jax.tree.leaves((params, state)), jax.tree.leaves(eager)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    ev = jax.jit(gx.eval_params)(state, params)
    for a, b in zip(jax.tree.leaves(ev), jax.tree.leaves(gx.eval_params(*eager[::-1]))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), p)
    s_abs = tx.init(abstract)
    assert jax.tree.structure(s_abs) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(s_abs), jax.tree.leaves(state)):
        assert a.shape == b.shape and a.dtype == b.dtype


def test_averages_never_share_buffers_with_params():
    tx = gx.chain(gx.sgd(learning_rate=0.1), gx.ema_params(0.5), name=None)
    p = {"w": jnp.ones(4)}
    donating = jax.jit(
        lambda p, s: (lambda u, s: (gx.apply_updates(p, u), s))(*tx.update(p, s, p)),
        donate_argnums=(0, 1),
    )
    p, s = donating(p, tx.init(p))
    pointers = {x.unsafe_buffer_pointer() for x in jax.tree.leaves(s)}
    assert p["w"].unsafe_buffer_pointer() not in pointers


# --------------------------------------------------------------------------------------
# swa


def test_swa_start_and_every_against_numpy():
    tx = gx.chain(gx.sgd(learning_rate=1.0), gx.swa(start_step=2, every=3))
    p, avg, n = np.zeros(2), None, 0
    steps = _walk(tx, [jnp.array([-1.0, 2.0]) * (1 + 0.1 * i) for i in range(9)], jnp.zeros(2))
    for t, (params, state) in enumerate(steps, 1):
        p = np.asarray(params)
        if t >= 2 and (t - 2) % 3 == 0:  # steps 2, 5, 8
            n += 1
            avg = p.copy() if avg is None else avg + (p - avg) / n
        sw = state[1]
        assert int(sw.count) == t and int(sw.n_averaged) == n
        ev = np.asarray(gx.eval_params(state, params))
        np.testing.assert_allclose(ev, p if avg is None else avg, rtol=1e-6)
    assert n == 3
    assert gx.SwaState._fields == ("count", "n_averaged", "average")


def test_swa_none_and_non_array_leaves():
    p = {"w": jnp.ones(2), "frozen": None, "n_layers": 2}
    tx = gx.swa()
    s = tx.init(p)
    assert s.average["frozen"] is None and s.average["n_layers"] is None
    u, s = tx.update({"w": jnp.ones(2), "frozen": None, "n_layers": 2}, s, p)
    ev = gx.eval_params(s, p)
    assert ev["frozen"] is None and ev["n_layers"] == 2
    np.testing.assert_array_equal(np.asarray(ev["w"]), 2.0)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: gx.ema_params(1.0),
            ValueError,
            r"ema_params: decay must be a finite number in \[0, 1\)",
        ),
        (lambda: gx.ema_params(-0.1), ValueError, r"decay must be a finite number in \[0, 1\)"),
        (lambda: gx.ema_params("0.9"), TypeError, "ema_params: decay must be a real number"),
        (lambda: gx.ema_params(0.9, average_dtype=jnp.int32), TypeError, "average_dtype must be"),
        (lambda: gx.swa(0), ValueError, r"swa: start_step must be a finite number in \[1"),
        (lambda: gx.swa(1, every=0), ValueError, r"swa: every must be a finite number in \[1"),
        (lambda: gx.swa(2.5), ValueError, "swa: start_step must be an integer >= 1"),
        (lambda: gx.swa(1, every=1.5), ValueError, "swa: every must be an integer >= 1"),
    ],
)
def test_bad_hyperparameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("tx", [gx.ema_params(0.9), gx.swa()], ids=["ema_params", "swa"])
def test_averages_need_params(tx):
    with pytest.raises(ValueError, match=f"{type(tx).__name__} needs the current parameters"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


def test_ema_params_is_not_positional_past_decay():
    with pytest.raises(TypeError):
        gx.ema_params(0.9, False)  # type: ignore[misc]


# --------------------------------------------------------------------------------------
# eval_params


def test_eval_params_finds_the_state_in_nested_wrappers():
    inner = gx.chain(gx.sgd(learning_rate=0.5), gx.ema_params(0.5, debias=False))
    tx = gx.apply_if_finite(gx.masked(inner, {"w": True, "b": False}), 3)
    p = {"w": jnp.array([1.0]), "b": jnp.array([2.0])}
    s = tx.init(p)
    for _ in range(2):
        u, s = tx.update(p, s, p)
        p = gx.apply_updates(p, u)
    ev = jax.jit(gx.eval_params)(s, p)
    np.testing.assert_array_equal(np.asarray(ev["b"]), np.asarray(p["b"]))  # masked out
    np.testing.assert_allclose(np.asarray(ev["w"]), [0.375])  # 0.5 avg of 0.5 and 0.25


def test_eval_params_without_an_averaging_state_says_what_it_saw():
    tx = gx.adam(learning_rate=0.1)
    p = jnp.ones(2)
    with pytest.raises(ValueError, match=r"found none; states seen: ChainState, AdamState"):
        gx.eval_params(tx.init(p), p)


def test_eval_params_refuses_two_averaging_states():
    tx = gx.chain(gx.schedule_free_sgd(0.1), gx.ema_params(0.9))
    p = jnp.ones(2)
    with pytest.raises(ValueError, match=r"found 2 \(ScheduleFreeState, EmaParamsState\)"):
        gx.eval_params(tx.init(p), p)


def test_eval_params_before_any_update_is_the_params():
    p = {"w": jnp.array([1.0, 2.0])}
    for tx in (gx.ema_params(0.9), gx.swa(5)):
        ev = gx.eval_params(tx.init(p), p)
        np.testing.assert_array_equal(np.asarray(ev["w"]), [1.0, 2.0])


# --------------------------------------------------------------------------------------
# incremental_update


def test_incremental_update_is_optax_formula():
    new = {"a": jnp.array([1.0, 2.0]), "b": None, "c": jnp.array([4.0], jnp.bfloat16)}
    old = {"a": jnp.array([3.0, 0.0]), "b": None, "c": jnp.array([0.0], jnp.bfloat16)}
    out = gx.incremental_update(new, old, 0.25)
    np.testing.assert_array_equal(np.asarray(out["a"]), [2.5, 0.5])
    assert out["b"] is None
    assert out["c"].dtype == jnp.bfloat16 and float(out["c"][0]) == 1.0
    with jax.enable_x64(True):
        x = jnp.asarray([1.0], jnp.float64)
        out = gx.incremental_update(x, jnp.zeros(1, jnp.float64), 1e-3)
        assert out.dtype == jnp.float64 and float(out[0]) == 1e-3
    with pytest.raises(ValueError, match="tree structures differ"):
        gx.incremental_update({"a": jnp.ones(1)}, {"b": jnp.ones(1)}, 0.5)

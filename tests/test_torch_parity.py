"""Parity of gradxform optimizers with torch.optim (float64 reference trajectories).

The reference data lives in ``tests/reference/torch_trajectories.json`` and is
produced by ``tests/reference/record_torch.py`` (needs torch; this test does
not import torch). Each case runs ``num_steps`` optimizer steps on a small
quartic problem with two parameter leaves and compares the params after each
recorded step with torch's, in float64.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

FIXTURE = pathlib.Path(__file__).parent / "reference" / "torch_trajectories.json"
with FIXTURE.open() as _f:
    REF = json.load(_f)

CASES = {case["name"]: case for case in REF["cases"]}
CASE_NAMES = [case["name"] for case in REF["cases"]]
LEAVES = list(REF["problem"]["shapes"])  # ["w", "b"]: order of concatenation into x
TOL = 1e-12

# Largest error seen per case (filled in as the tests run; nothing is written to disk).
MAX_ERRORS = {}


def _rel_err(ours, ref):
    """max |ours - ref| / max(1, max |ref|) for one leaf."""
    return float(np.max(np.abs(ours - ref)) / max(1.0, float(np.max(np.abs(ref)))))


@pytest.mark.parametrize("name", CASE_NAMES, ids=CASE_NAMES)
def test_torch_parity(name, record_property):
    case = CASES[name]
    problem = REF["problem"]
    recorded = {int(s) for s in REF["recorded_steps"]}
    num_steps = int(REF["num_steps"])
    opt_name = case["gradxform"]["optimizer"]
    kwargs = case["gradxform"]["kwargs"]

    with jax.enable_x64(True):
        a = jnp.asarray(np.asarray(problem["A"], dtype=np.float64))
        c = jnp.asarray(np.asarray(problem["c"], dtype=np.float64))
        lam = float(problem["lam"])
        shapes = {k: tuple(problem["shapes"][k]) for k in LEAVES}
        sizes = {k: int(np.prod(shapes[k])) for k in LEAVES}

        def grad_fn(params):
            x = jnp.concatenate([params[k].ravel() for k in LEAVES])
            g = jnp.dot(a, x, precision=jax.lax.Precision.HIGHEST) - c + lam * x**3
            out, off = {}, 0
            for k in LEAVES:
                out[k] = g[off : off + sizes[k]].reshape(shapes[k])
                off += sizes[k]
            return out

        tx = getattr(gx, opt_name)(**kwargs)
        params = {
            k: jnp.asarray(np.asarray(problem["x0"][k], dtype=np.float64).reshape(shapes[k]))
            for k in LEAVES
        }
        state = tx.init(params)

        @jax.jit
        def step(params, state):
            grads = grad_fn(params)
            updates, state = tx.update(grads, state, params)
            return gx.apply_updates(params, updates), state

        worst = 0.0
        for t in range(1, num_steps + 1):
            params, state = step(params, state)
            if t not in recorded:
                continue
            for k in LEAVES:
                assert params[k].dtype == jnp.float64, (
                    f"{name}: leaf {k!r} has dtype {params[k].dtype} after step {t}, "
                    "expected float64"
                )
            ref = case["trajectory"][str(t)]
            errs = {}
            for k in LEAVES:
                ours = np.asarray(params[k], dtype=np.float64)
                theirs = np.asarray(ref[k], dtype=np.float64).reshape(shapes[k])
                errs[k] = _rel_err(ours, theirs)
            err = max(errs.values())
            worst = max(worst, err) if np.isfinite(err) else float("inf")
            if not err < TOL:  # also catches NaN
                MAX_ERRORS[name] = worst
                record_property("max_rel_err", worst)
                detail = "\n".join(
                    f"  {k}: rel err {errs[k]:.3e}\n"
                    f"    ours:  {np.asarray(params[k]).ravel().tolist()}"
                    f"\n    torch: {np.ravel(ref[k]).tolist()}"
                    for k in LEAVES
                )
                pytest.fail(
                    f"{name} ({opt_name}(**{kwargs})): step {t}: "
                    f"max rel err {err:.3e} >= {TOL:.0e}\n{detail}"
                )

    MAX_ERRORS[name] = worst
    record_property("max_rel_err", worst)
    print(f"{name}: max rel err over recorded steps = {worst:.3e}")

"""Parity of gradxform optimizers with their reference implementations (float64).

Every ``tests/reference/<name>_trajectories.json`` is produced by the script
``tests/reference/record_<name>.py`` (torch.optim, and the reference packages of the
newer optimizers; see ``tests/reference/_problem.py``); this test imports none of them.
Each case runs ``num_steps`` steps on a small quartic problem with two parameter leaves
and compares the params (and, where recorded, ``gx.eval_params``) after each recorded
step with the reference's, in float64.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

REFERENCE_DIR = pathlib.Path(__file__).parent / "reference"
FILES = {
    p.name.removesuffix("_trajectories.json"): json.loads(p.read_text())
    for p in sorted(REFERENCE_DIR.glob("*_trajectories.json"))
}
CASES = [(source, case) for source, ref in FILES.items() for case in ref["cases"]]
IDS = [f"{source}-{case['name']}" for source, case in CASES]
TOL = 1e-12  # float64 rounding over 50 steps; a case may widen it with a written reason

# Largest error seen per case (filled in as the tests run; nothing is written to disk).
MAX_ERRORS = {}


def _rel_err(ours, ref):
    """max |ours - ref| / max(1, max |ref|) for one leaf."""
    return float(np.max(np.abs(ours - ref)) / max(1.0, float(np.max(np.abs(ref)))))


def _kwargs(kwargs):
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


@pytest.mark.parametrize(("source", "case"), CASES, ids=IDS)
def test_reference_parity(source, case, record_property):
    ref = FILES[source]
    problem = ref["problem"]
    leaves = list(problem["shapes"])  # ["w", "b"]: order of concatenation into x
    recorded = {int(s) for s in ref["recorded_steps"]}
    name = f"{source}-{case['name']}"
    spec = case["gradxform"]
    opt_name, kwargs = spec["optimizer"], _kwargs(spec["kwargs"])
    tol = float(spec.get("tol", TOL))
    trajectories = {"params": case["trajectory"]}
    if "eval_trajectory" in case:
        trajectories["eval_params"] = case["eval_trajectory"]

    with jax.enable_x64(True):
        a = jnp.asarray(np.asarray(problem["A"], dtype=np.float64))
        c = jnp.asarray(np.asarray(problem["c"], dtype=np.float64))
        lam = float(problem["lam"])
        shapes = {k: tuple(problem["shapes"][k]) for k in leaves}

        def flat(params):
            return jnp.concatenate([params[k].ravel() for k in leaves])

        def loss(params):
            x = flat(params)
            hi = jax.lax.Precision.HIGHEST
            return (
                0.5 * jnp.dot(x, jnp.dot(a, x, precision=hi)) - c @ x + 0.25 * lam * jnp.sum(x**4)
            )

        def grad_fn(params):
            x = flat(params)
            g = jnp.dot(a, x, precision=jax.lax.Precision.HIGHEST) - c + lam * x**3
            out, off = {}, 0
            for k in leaves:
                size = int(np.prod(shapes[k]))
                out[k] = g[off : off + size].reshape(shapes[k])
                off += size
            return out

        extra = {"value_fn": loss, "grad_fn": grad_fn}
        extra = {k: extra[k] for k in spec.get("update_extra", ())}
        tx = getattr(gx, opt_name)(**kwargs)
        params = {
            k: jnp.asarray(np.asarray(problem["x0"][k], dtype=np.float64).reshape(shapes[k]))
            for k in leaves
        }
        state = tx.init(params)

        @jax.jit
        def step(params, state):
            updates, state = tx.update(grad_fn(params), state, params, **extra)
            return gx.apply_updates(params, updates), state

        worst = 0.0
        for t in range(1, int(ref["num_steps"]) + 1):
            params, state = step(params, state)
            if t not in recorded:
                continue
            got = {"params": params}
            if "eval_params" in trajectories:
                got["eval_params"] = gx.eval_params(state, params)
            for what, traj in trajectories.items():
                errs = {}
                for k in leaves:
                    ours = np.asarray(got[what][k])
                    assert ours.dtype == np.float64, f"{name}: {what}[{k!r}] is {ours.dtype}"
                    theirs = np.asarray(traj[str(t)][k], dtype=np.float64).reshape(shapes[k])
                    errs[k] = _rel_err(ours, theirs)
                err = max(errs.values())
                worst = max(worst, err) if np.isfinite(err) else float("inf")
                if not err < tol:  # also catches NaN
                    MAX_ERRORS[name] = worst
                    record_property("max_rel_err", worst)
                    detail = "\n".join(
                        f"  {k}: rel err {errs[k]:.3e}\n"
                        f"    ours:      {np.asarray(got[what][k]).ravel().tolist()}"
                        f"\n    reference: {np.ravel(traj[str(t)][k]).tolist()}"
                        for k in leaves
                    )
                    pytest.fail(
                        f"{name} ({opt_name}(**{kwargs})): {what} at step {t}: "
                        f"max rel err {err:.3e} >= {tol:.0e}\n{detail}"
                    )

    MAX_ERRORS[name] = worst
    record_property("max_rel_err", worst)
    print(f"{name}: max rel err over recorded steps = {worst:.3e}")

"""Full-batch benchmark: gx.minimize (L-BFGS, CG) vs SciPy vs Optax's L-BFGS, float64.

    .venv/bin/python benchmarks/fullbatch.py [--repeats 5] [--quick]

Per problem of the classic set (``gradxform.problems.problems()``, with the 10,000 x 100
logistic regression) it runs
- ``gx.minimize(fun, x0, gx.lbfgs())`` called directly, and again inside a jitted
  function shaped like the Optax loop (row "gx lbfgs in jit"), and
  ``gx.minimize(fun, x0, gx.conjugate_gradient(), ftol=0)``: one jitted while_loop each;
- SciPy's ``minimize`` with ``L-BFGS-B`` and ``CG``, given a jitted ``value_and_grad``;
- ``optax.lbfgs()`` in a jitted ``while_loop`` as in Optax's documentation (value and
  gradient reused from the line search state via ``optax.value_and_grad_from_state``).
All stop on max |g_i| <= 1e-5; the L-BFGS runs (ours, SciPy's, Optax's) also stop on a
relative decrease <= 2.22e-9 (SciPy's factr * eps; added to Optax's loop so that all
three stop by the same rule); the CG runs only on the gradient (SciPy's CG has no
decrease test). Wall time is the best of at least ``--repeats`` runs (more for fast
methods, about 1 s each) after a warm-up run (which compiles), methods interleaved
round-robin. Prints a Markdown table and writes it, with the machine, to
``benchmarks/results/fullbatch.md``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import time

# SciPy's BLAS single-threaded: on a 2-core machine its threads otherwise fight XLA's
# thread pool, and interleaved with JAX runs L-BFGS-B was measured up to 50x slower.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402

import gradxform as gx  # noqa: E402
from gradxform.problems import problems  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent

TOL = 1e-5
FTOL = 2.220446049250313e-09
MAX_STEPS = 15_000


def best_times(runs, repeats, budget=1.0):
    """Best wall time of each run, measured round-robin (interleaved, so that load from
    other processes hits every method alike) after a warm-up run that compiles.

    Each method runs at least ``repeats`` times, and more (up to 1000) while that costs
    less than ``budget`` seconds of its own time, so microsecond runs get many samples.
    """
    results, first = {}, {}
    for name, go in runs:
        results[name] = go()  # warm-up (compiles)
        t0 = time.perf_counter()
        results[name] = go()
        first[name] = time.perf_counter() - t0
    want = {name: int(min(1000, max(repeats, budget / max(t, 1e-9)))) for name, t in first.items()}
    times = {name: [first[name]] for name, _ in runs}
    for i in range(max(want.values())):
        for name, go in runs:
            if i < want[name]:
                t0 = time.perf_counter()
                go()
                times[name].append(time.perf_counter() - t0)
    return {name: (results[name], min(times[name]), len(times[name])) for name, _ in runs}


def run_ours(p, tx, ftol):
    x0 = jnp.asarray(p.x0)

    def go():
        res = gx.minimize(p.fun, x0, tx, MAX_STEPS, TOL, ftol=ftol)
        jax.block_until_ready(res)
        return float(res.value), int(res.num_steps), int(res.num_evals)

    return go


def run_ours_in_jit(p, tx, ftol):
    """gx.minimize inside the caller's jitted function, shaped like the Optax loop below
    (starting point in; params, value, steps and evaluations out; tx and the tolerances
    constants): the loop's own cost, without the per-call cost of a direct call's traced
    hyperparameters (8 more arguments) and its 2 more results (gradient, status)."""

    @jax.jit
    def run(x0):
        r = gx.minimize(p.fun, x0, tx, MAX_STEPS, TOL, ftol=ftol)
        return r.params, r.value, r.num_steps, r.num_evals

    x0 = jnp.asarray(p.x0)

    def go():
        _, value, k, evals = jax.block_until_ready(run(x0))
        return float(value), int(k), int(evals)

    return go


def run_scipy(p, method):
    vg = jax.jit(jax.value_and_grad(p.fun))

    def fg(x):
        v, g = vg(jnp.asarray(x))
        return float(v), np.asarray(g)

    vg(jnp.asarray(p.x0))  # compile outside the timed runs

    def go():
        r = scipy.optimize.minimize(
            fg, p.x0, jac=True, method=method, options=dict(maxiter=MAX_STEPS, gtol=TOL)
        )
        return float(r.fun), int(r.nit), int(r.nfev)

    return go


def make_optax(fun):
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    @jax.jit
    def run(x0):
        def step(carry):
            x, state, k, evals, _ = carry
            value, grad = value_and_grad(x, state=state)
            updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
            x = optax.apply_updates(x, updates)
            n = optax.tree_utils.tree_get(state, "num_linesearch_steps")
            return x, state, k + 1, evals + n, value

        def cond(carry):
            _, state, k, _, f_prev = carry
            value = optax.tree_utils.tree_get(state, "value")
            grad = optax.tree_utils.tree_get(state, "grad")
            dec = (f_prev - value) / jnp.maximum(jnp.maximum(jnp.abs(f_prev), jnp.abs(value)), 1)
            done = (jnp.max(jnp.abs(grad)) <= TOL) | ((dec >= 0) & (dec <= FTOL))
            return (k == 0) | ((k < MAX_STEPS) & ~done)

        carry = (x0, opt.init(x0), 0, 1, jnp.asarray(jnp.inf, x0.dtype))
        x, state, k, evals, _ = jax.lax.while_loop(cond, step, carry)
        return x, optax.tree_utils.tree_get(state, "value"), k, evals

    return run


def run_optax(p):
    run = make_optax(p.fun)
    x0 = jnp.asarray(p.x0)

    def go():
        _, value, k, evals = jax.block_until_ready(run(x0))
        return float(value), int(k), int(evals)

    return go


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPU cores; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, jax {jax.__version__}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, optax {optax.__version__}; float64 "
        f"(jax_enable_x64), device {jax.devices()[0].platform}"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small logistic regression")
    args = ap.parse_args()
    size = (2_000, 50) if args.quick else (10_000, 100)
    rows = []
    for p in problems(logistic_size=size):
        runs = [
            ("gx lbfgs", run_ours(p, gx.lbfgs(), FTOL)),
            ("gx lbfgs in jit", run_ours_in_jit(p, gx.lbfgs(), FTOL)),
            ("gx conjugate_gradient", run_ours(p, gx.conjugate_gradient(), 0.0)),
            ("scipy L-BFGS-B", run_scipy(p, "L-BFGS-B")),
            ("scipy CG", run_scipy(p, "CG")),
            ("optax lbfgs", run_optax(p)),
        ]
        results = {}
        for name, ((value, nit, nfev), seconds, n) in best_times(runs, args.repeats).items():
            results[name] = (value, nit, nfev, seconds)
            print(
                f"  {p.name} {name}: f={value:.6e} nit={nit} nfev={nfev} "
                f"{seconds * 1e3:.3f} ms (best of {n})"
            )
        t_optax = results["optax lbfgs"][3]
        for name, (value, nit, nfev, seconds) in results.items():
            rows.append(
                f"| {p.name} | {name} | {value:.6e} | {nit} | {nfev} | {seconds * 1e3:.3f} | "
                f"{seconds / t_optax:.2f} |"
            )
    header = [
        "| problem | method | final value | iterations | evaluations | wall time (ms) "
        "| time / Optax |",
        "|---|---|---|---|---|---|---|",
    ]
    table = "\n".join(header + rows)
    print()
    print(table)
    out = ROOT / "benchmarks" / "results" / "fullbatch.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "# Full-batch benchmark (`benchmarks/fullbatch.py`)\n\n"
        f"Machine: {machine()}.\n\n"
        f"Best of at least {args.repeats} interleaved runs (up to 1000, about 1 s per method) "
        f"after a compiling warm-up; stop at max |g| <= {TOL} "
        "(L-BFGS runs also at relative decrease <= 2.22e-9). Evaluations count value and "
        "gradient together, the first one included (Optax: 1 + its line-search steps). "
        "SciPy's BLAS runs single-threaded (OPENBLAS_NUM_THREADS=1).\n\n"
        f"{table}\n"
    )
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

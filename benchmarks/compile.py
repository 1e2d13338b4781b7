"""Compile-time benchmark: trace + lower vs XLA compile, gradxform vs Optax vs the floor.

    python benchmarks/compile.py [--leaves 1000,4000] [--opts adam,sgd-momentum,chain]
                                 [--reps 3] [--distinct] [--leaf-size 3200] [--memory]
                                 [--libs gradxform,floor,minimal-adam,optax]

For each leaf count and optimizer it builds the step of ``bench.py`` (update + apply in
one ``jit``, params and state donated) on a tree of equal 1-D float32 leaves (3.2K
elements each) and measures, separately, ``jit(...).lower(...)`` (tracing and lowering
to StableHLO: Python work, ours to make small) and ``.compile()`` (XLA). Two floors:
``p + g`` with an Adam-sized state passed through, and (for adam) a hand-written Adam
with the fewest operations per leaf (``bench.minimal_adam``). Libraries and repetitions are
interleaved (round-robin) so that machine load hits all alike; medians are reported.
``--distinct`` gives every leaf a different length (3,200 + i): XLA then cannot reuse
one compiled kernel for all leaves. ``--leaf-size`` sets the length (default 3,200).
``--memory`` runs every measurement in a fresh subprocess and also reports its peak
resident memory (``ru_maxrss``: XLA allocates natively, which tracemalloc does not see),
in total and above the process's peak just before lowering. The library
``gradxform-flat`` is gradxform with the nested per-leaf ``jax.jit`` turned off
(``per_leaf`` returns the plain function). Writes
``benchmarks/results/compile-<backend>-<leaves>[-distinct][-s<leaf size>][-mem].md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

# Run as a script (python benchmarks/compile.py): its folder is on sys.path, bench.py too.
from bench import RESULTS, jax_optimizer, machine_info, md_table, optax

LEAF_SIZE = 3_200


def measure(
    lib: str, opt: str, n_leaves: int, distinct: bool, leaf_size: int = LEAF_SIZE
) -> tuple[float, float]:
    """(seconds to trace + lower, seconds to compile) of one fresh step function."""
    floor = {"floor": "floor:p+g+state", "minimal-adam": "floor:adam"}
    if lib == "gradxform-flat":  # no nested jit: every leaf traced and lowered inline
        from gradxform import _leafwise, base

        _leafwise.per_leaf = base.per_leaf = lambda fn, leaves: fn  # type: ignore[assignment]
        lib = "gradxform"
    init, step = jax_optimizer("floor" if lib in floor else lib, floor.get(lib, opt))
    params = [
        jnp.zeros((leaf_size + (i if distinct else 0),), jnp.float32) for i in range(n_leaves)
    ]
    state = init(params)
    t0 = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params)
    t1 = time.perf_counter()
    lowered.compile()
    return t1 - t0, time.perf_counter() - t1


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _cpu_s() -> float:
    """CPU seconds of this process, all threads (XLA compiles on a thread pool): less
    sensitive than wall time to other processes sharing the cores."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure_isolated(
    lib: str, opt: str, n_leaves: int, distinct: bool, leaf_size: int
) -> tuple[float, float, float, float, float]:
    """``measure`` in a fresh Python process: (lower s, compile s, peak RSS MB, peak RSS
    MB above the process's peak before lowering, i.e. what tracing + compiling added,
    CPU s of building the tree, init, lower and compile)."""
    job = dict(lib=lib, opt=opt, n=n_leaves, distinct=distinct, leaf_size=leaf_size)
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", json.dumps(job)],
        capture_output=True,
        text=True,
        check=True,
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["lower"], r["compile"], r["rss"], r["rss"] - r["rss_before"], r["cpu"]


def _child(job_json: str) -> int:
    job = json.loads(job_json)
    before, cpu = _maxrss_mb(), _cpu_s()  # after importing jax, gradxform, optax
    lo, co = measure(job["lib"], job["opt"], job["n"], job["distinct"], job["leaf_size"])
    cpu = _cpu_s() - cpu
    print(json.dumps(dict(lower=lo, compile=co, rss=_maxrss_mb(), rss_before=before, cpu=cpu)))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leaves", default="1000,4000")
    ap.add_argument("--opts", default="adam,sgd-momentum,chain")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--distinct", action="store_true", help="every leaf a different length")
    ap.add_argument("--libs", default="gradxform,floor,minimal-adam,optax")
    ap.add_argument("--leaf-size", type=int, default=LEAF_SIZE)
    ap.add_argument(
        "--memory", action="store_true", help="a fresh process per measurement, peak RSS"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args.child)
    libs = [lib for lib in args.libs.split(",") if lib != "optax" or optax is not None]
    rows = []
    for n in [int(x) for x in args.leaves.split(",")]:
        for opt in args.opts.split(","):
            times: dict[str, list[tuple[float, ...]]] = {lib: [] for lib in libs}
            for rep in range(args.reps):
                for lib in libs:
                    if lib == "floor" and opt != args.opts.split(",")[0]:
                        continue  # the floor does not depend on the optimizer
                    if lib == "minimal-adam" and opt != "adam":
                        continue
                    if args.memory:
                        res = measure_isolated(lib, opt, n, args.distinct, args.leaf_size)
                    else:
                        res = measure(lib, opt, n, args.distinct, args.leaf_size)
                    times[lib].append(res)
                    mem = (
                        f", peak RSS {res[2]:.0f} MB (+{res[3]:.0f}), CPU {res[4]:.1f} s"
                        if args.memory
                        else ""
                    )
                    print(
                        f"{n} leaves {opt} {lib} rep {rep}: lower {res[0]:.2f} s, "
                        f"compile {res[1]:.2f} s{mem}",
                        file=sys.stderr,
                        flush=True,
                    )
            med = {
                lib: tuple(statistics.median(t[k] for t in ts) for k in range(len(ts[0])))
                for lib, ts in times.items()
                if ts
            }
            ref = sum(med["optax"][:2]) if "optax" in med else None
            for lib, m in med.items():
                lo, co = m[0], m[1]
                ratio = f"{(lo + co) / ref:.2f}" if ref else "n/a"
                label = {
                    "floor": "floor (p+g, state passed through)",
                    "minimal-adam": "floor (hand-written Adam, fewest ops per leaf)",
                    "gradxform-flat": "gradxform, no nested jit",
                }.get(lib, lib)
                row = [f"{n:,}", opt, label, f"{lo:.2f}", f"{co:.2f}", f"{lo + co:.2f}", ratio]
                if args.memory:
                    row += [f"{m[2]:,.0f}", f"{m[3]:,.0f}", f"{m[4]:.1f}"]
                rows.append(row)
    head = ["leaves", "optimizer", "library", "lower s", "compile s", "total s", "total / Optax"]
    if args.memory:
        head += ["peak RSS MB", "RSS added by lower + compile MB", "CPU s"]
    table = md_table(head, rows)
    info = machine_info()
    text = (
        f"# Compile time (`benchmarks/compile.py`)\n\n"
        f"{info['cpu']}, {info['cores']} cores; {info['jax_backend']}; "
        f"{', '.join(f'{k} {v}' for k, v in info['versions'].items())}; commit {info['commit']}; "
        f"load average at start {info['load_avg']}; `{info['command']}`.\n\n"
        f"Leaves of {args.leaf_size:,} float32 elements"
        f"{' plus i (all lengths distinct)' if args.distinct else ' (all equal)'}; "
        f"median of {args.reps} interleaved repetitions"
        f"{', each in a fresh process (peak RSS: ru_maxrss)' if args.memory else ''}."
        f"\n\n{table}\n"
    )
    print(text)
    suffix = args.leaves.replace(",", "-") + ("-distinct" if args.distinct else "")
    suffix += f"-s{args.leaf_size}" if args.leaf_size != LEAF_SIZE else ""
    suffix += "-mem" if args.memory else ""
    out = RESULTS / f"compile-{jax.default_backend()}-{suffix}.md"
    out.write_text(text)
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

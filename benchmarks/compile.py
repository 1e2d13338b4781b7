"""Compile-time benchmark: trace + lower vs XLA compile, gradxform vs Optax vs the floor.

    python benchmarks/compile.py [--leaves 1000,4000] [--opts adam,sgd-momentum,chain]
                                 [--reps 3] [--distinct]
                                 [--libs gradxform,floor,minimal-adam,optax]

For each leaf count and optimizer it builds the step of ``bench.py`` (update + apply in
one ``jit``, params and state donated) on a tree of equal 1-D float32 leaves (3.2K
elements each) and measures, separately, ``jit(...).lower(...)`` (tracing and lowering
to StableHLO: Python work, ours to make small) and ``.compile()`` (XLA). Two floors:
``p + g`` with an Adam-sized state passed through, and (for adam) a hand-written Adam
with the fewest operations per leaf (``bench.minimal_adam``). Libraries and repetitions are
interleaved (round-robin) so that machine load hits all alike; medians are reported.
``--distinct`` gives every leaf a different length (3,200 + i): XLA then cannot reuse
one compiled kernel for all leaves. Writes
``benchmarks/results/compile-<backend>-<leaves>[-distinct].md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp

# Run as a script (python benchmarks/compile.py): its folder is on sys.path, bench.py too.
from bench import RESULTS, jax_optimizer, machine_info, md_table, optax

LEAF_SIZE = 3_200


def measure(lib: str, opt: str, n_leaves: int, distinct: bool) -> tuple[float, float]:
    """(seconds to trace + lower, seconds to compile) of one fresh step function."""
    floor = {"floor": "floor:p+g+state", "minimal-adam": "floor:adam"}
    init, step = jax_optimizer("floor" if lib in floor else lib, floor.get(lib, opt))
    params = [
        jnp.zeros((LEAF_SIZE + (i if distinct else 0),), jnp.float32) for i in range(n_leaves)
    ]
    state = init(params)
    t0 = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params)
    t1 = time.perf_counter()
    lowered.compile()
    return t1 - t0, time.perf_counter() - t1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leaves", default="1000,4000")
    ap.add_argument("--opts", default="adam,sgd-momentum,chain")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--distinct", action="store_true", help="every leaf a different length")
    ap.add_argument("--libs", default="gradxform,floor,minimal-adam,optax")
    args = ap.parse_args(argv)
    libs = [lib for lib in args.libs.split(",") if lib != "optax" or optax is not None]
    rows = []
    for n in [int(x) for x in args.leaves.split(",")]:
        for opt in args.opts.split(","):
            times: dict[str, list[tuple[float, float]]] = {lib: [] for lib in libs}
            for rep in range(args.reps):
                for lib in libs:
                    if lib == "floor" and opt != args.opts.split(",")[0]:
                        continue  # the floor does not depend on the optimizer
                    if lib == "minimal-adam" and opt != "adam":
                        continue
                    lo, co = measure(lib, opt, n, args.distinct)
                    times[lib].append((lo, co))
                    print(
                        f"{n} leaves {opt} {lib} rep {rep}: lower {lo:.2f} s, compile {co:.2f} s",
                        file=sys.stderr,
                        flush=True,
                    )
            med = {
                lib: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts))
                for lib, ts in times.items()
                if ts
            }
            ref = sum(med["optax"]) if "optax" in med else None
            for lib, (lo, co) in med.items():
                ratio = f"{(lo + co) / ref:.2f}" if ref else "n/a"
                label = {
                    "floor": "floor (p+g, state passed through)",
                    "minimal-adam": "floor (hand-written Adam, fewest ops per leaf)",
                }.get(lib, lib)
                rows.append(
                    [f"{n:,}", opt, label, f"{lo:.2f}", f"{co:.2f}", f"{lo + co:.2f}", ratio]
                )
    table = md_table(
        ["leaves", "optimizer", "library", "lower s", "compile s", "total s", "total / Optax"], rows
    )
    info = machine_info()
    text = (
        f"# Compile time (`benchmarks/compile.py`)\n\n"
        f"{info['cpu']}, {info['cores']} cores; {info['jax_backend']}; "
        f"{', '.join(f'{k} {v}' for k, v in info['versions'].items())}; commit {info['commit']}; "
        f"load average at start {info['load_avg']}; `{info['command']}`.\n\n"
        f"Leaves of {LEAF_SIZE:,} float32 elements"
        f"{' plus i (all lengths distinct)' if args.distinct else ' (all equal)'}; "
        f"median of {args.reps} interleaved repetitions.\n\n{table}\n"
    )
    print(text)
    suffix = args.leaves.replace(",", "-") + ("-distinct" if args.distinct else "")
    out = RESULTS / f"compile-{jax.default_backend()}-{suffix}.md"
    out.write_text(text)
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

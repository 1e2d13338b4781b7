"""Optimizer-step benchmark: gradxform vs Optax vs torch.optim (foreach and fused).

Run ``python benchmarks/bench.py --quick`` for a smoke test, or with no flags for the full
suite. Progress goes to stderr, the Markdown table to stdout; the table, a PNG plot and the
raw numbers (JSON) are written to ``benchmarks/results/``. A library that is not importable
is skipped. See ``benchmarks/README.md`` for the method and the meaning of each column.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx  # the checkout, when installed in editable mode (pip install -e)

try:
    import optax
except ImportError:
    optax = None
try:
    import torch
except ImportError:
    torch = None

RESULTS = Path(__file__).resolve().parent / "results"
OPTS = ("sgd-momentum", "adam", "adamw", "chain")
OPT_LABEL = {"chain": "chain(clip, adamw, cosine)"}
LIBS = ("gradxform", "optax", "torch-foreach", "torch-fused")
FLOORS = ("floor:p+g", "floor:p+g+state")
# Ideal DRAM traffic per fp32 parameter (bytes): sgd-momentum reads p,g,v and writes p,v;
# Adam(W) reads p,g,m,v and writes p,m,v; the clipped chain reads g once more for the norm;
# the floors read p,g and write p (the passed-through state is not touched).
IDEAL_BYTES = {"sgd-momentum": 20, "adam": 28, "adamw": 28, "chain": 32}
IDEAL_BYTES.update({f: 12 for f in FLOORS})
LR, WD, MOMENTUM, DECAY_STEPS = 1e-3, 1e-2, 0.9, 10_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# Trees


def parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1:])
    return round(float(text[:-1]) * mult) if mult else int(text)


def fmt_leaves(n: int) -> str:
    return "1 leaf" if n == 1 else f"{n:,} leaves"


def fmt_size(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def transformer_tree(n_params: int, layers: int = 12, ctx: int = 512) -> dict:
    """Shapes of a GPT-like model (~200 leaves): the embedding table absorbs the rest."""
    d = max(8, round(math.sqrt(0.8 * n_params / (12 * layers)) / 8) * 8)

    def layer():
        lin = lambda i, o: {"w": (i, o), "b": (o,)}  # noqa: E731
        return {
            "ln1": {"scale": (d,), "bias": (d,)},
            "attn": {k: lin(d, d) for k in ("q", "k", "v", "o")},
            "ln2": {"scale": (d,), "bias": (d,)},
            "mlp": {"fc": lin(d, 4 * d), "proj": lin(4 * d, d)},
        }

    vocab = max(1, (n_params - layers * (12 * d * d + 13 * d) - 2 * d - ctx * d) // d)
    return {
        "embed": {"tok": (vocab, d), "pos": (ctx, d)},
        "layers": [layer() for _ in range(layers)],
        "ln_f": {"scale": (d,), "bias": (d,)},
    }


def tree_shapes(n_leaves: int, n_params: int):
    """1 leaf, the transformer-like tree (200), or n equal 1-D leaves."""
    if n_leaves == 200:
        return transformer_tree(n_params)
    per, extra = divmod(n_params, n_leaves)
    return {f"p{i:05d}": (per + (i < extra),) for i in range(n_leaves)}


def make_data(n_leaves: int, n_params: int, seed: int = 0):
    """Random fp32 (params, grads) as numpy trees of the requested shape."""
    rng = np.random.default_rng(seed)
    shapes = tree_shapes(n_leaves, n_params)
    is_shape = lambda x: isinstance(x, tuple)  # noqa: E731
    rand = lambda s, scale: (scale * rng.standard_normal(s, np.float32)).astype(np.float32)  # noqa: E731
    params = jax.tree.map(lambda s: rand(s, 0.02), shapes, is_leaf=is_shape)
    grads = jax.tree.map(lambda s: rand(s, 1e-3), shapes, is_leaf=is_shape)
    return params, grads


# ------------------------------------------------------------------------------------------
# Timing


def time_steps(step, steps: int, reps: int, warmup: int = 2) -> dict:
    """Times ``step()`` (which must block): median of all steps, range of per-rep medians."""
    for _ in range(warmup):
        step()
    samples, rep_medians = [], []
    for _ in range(reps):
        ts = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        samples += ts
        rep_medians.append(statistics.median(ts))
    med = statistics.median(samples)
    return {"median_s": med, "min_s": min(rep_medians), "max_s": max(rep_medians)}


def minimal_adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
    """The fewest operations per leaf an Adam step can have in JAX (a compile-time floor).

    Bias corrections are folded into one step size and epsilon per step (Kingma & Ba,
    end of sec. 2): a_t = lr sqrt(1 - b2^t) / (1 - b1^t), e_t = eps sqrt(1 - b2^t); per leaf
    m += (1 - b1)(g - m), v += (1 - b2)(g^2 - v), p -= a_t m / (sqrt(v) + e_t).
    """

    def init(params):
        return (jnp.zeros([], jnp.int32), *(jax.tree.map(jnp.zeros_like, params) for _ in "mv"))

    def step(params, state, grads):
        count, mu, nu = state
        t = (count + 1).astype(jnp.float32)
        c2 = jnp.sqrt(1 - b2**t)
        a_t, e_t = lr * c2 / (1 - b1**t), eps * c2
        mu = jax.tree.map(lambda m, g: m + (1 - b1) * (g - m), mu, grads)
        nu = jax.tree.map(lambda v, g: v + (1 - b2) * (g * g - v), nu, grads)
        params = jax.tree.map(lambda p, m, v: p - a_t * m / (jnp.sqrt(v) + e_t), params, mu, nu)
        return params, (count + 1, mu, nu)

    return init, step


def jax_optimizer(lib: str, opt: str):
    """(init, step) with step(params, state, grads) -> (params, state)."""
    if lib == "floor" and opt == "floor:adam":
        return minimal_adam(LR)
    if lib == "floor":
        if opt == "floor:p+g":
            init = lambda p: ()  # noqa: E731
        else:  # an Adam-sized state (mu, nu) passed through unchanged
            init = lambda p: (jax.tree.map(jnp.zeros_like, p), jax.tree.map(jnp.zeros_like, p))  # noqa: E731
        return init, lambda p, s, g: (jax.tree.map(jnp.add, p, g), s)
    m = gx if lib == "gradxform" else optax
    if opt == "sgd-momentum":
        tx = m.sgd(LR, momentum=MOMENTUM)
    elif opt == "adam":
        tx = m.adam(LR)
    elif opt == "adamw":
        tx = m.adamw(LR, weight_decay=WD)
    else:
        sched = m.cosine_decay_schedule(LR, DECAY_STEPS)
        tx = m.chain(m.clip_by_global_norm(1.0), m.adamw(sched, weight_decay=WD))

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return m.apply_updates(params, updates), state

    return tx.init, step


def bench_jax(lib, opt, np_params, np_grads, steps, reps) -> dict:
    init, step = jax_optimizer(lib, opt)
    params = jax.tree.map(lambda x: jnp.array(x, copy=True), np_params)
    grads = jax.tree.map(lambda x: jnp.array(x, copy=True), np_grads)
    state = init(params)
    state_bytes = sum(int(x.nbytes) for x in jax.tree.leaves(state))
    t0 = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    ma = compiled.memory_analysis()  # None where the backend does not implement it
    mem = ma and {k: getattr(ma, f"{k}_size_in_bytes") for k in ("argument", "output", "alias")}
    if mem:
        mem["temp"] = ma.temp_size_in_bytes
        mem["peak"] = mem["argument"] + mem["output"] - mem["alias"] + mem["temp"]
    carry = [params, state]

    def one():
        carry[:] = compiled(carry[0], carry[1], grads)
        jax.block_until_ready(carry)

    res = time_steps(one, steps, reps)
    res.update(lower_s=t1 - t0, compile_s=t2 - t1, mem=mem, state_bytes=state_bytes)
    return res


def torch_device() -> str:
    return "cuda" if torch is not None and torch.cuda.is_available() else "cpu"


def bench_torch(variant, opt, np_params, np_grads, steps, reps) -> dict:
    dev = torch_device()
    params = [torch.nn.Parameter(torch.tensor(x, device=dev)) for x in jax.tree.leaves(np_params)]
    for p, g in zip(params, jax.tree.leaves(np_grads)):
        p.grad = torch.tensor(g, device=dev)
    kw = {"foreach": True} if variant == "torch-foreach" else {"fused": True}
    if opt == "sgd-momentum":
        o = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, **kw)
    elif opt == "adam":
        o = torch.optim.Adam(params, lr=LR, **kw)
    else:
        o = torch.optim.AdamW(params, lr=LR, weight_decay=WD, **kw)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=DECAY_STEPS)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def one():
        if opt == "chain":
            torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        o.step()
        if opt == "chain":
            sched.step()
        sync()

    res = time_steps(one, steps, reps)
    state = [t for s in o.state.values() for t in s.values() if torch.is_tensor(t)]
    res["state_bytes"] = sum(t.numel() * t.element_size() for t in state)
    return res


def triad(n: int, steps: int, reps: int) -> dict:
    """a = a + s * b over n fp32 elements, a donated: 12 bytes/element moved."""
    a, b = jnp.ones(n, jnp.float32), jnp.full(n, 0.5, jnp.float32)
    s = jnp.float32(1e-3)
    compiled = jax.jit(lambda a, b, s: a + s * b, donate_argnums=0).lower(a, b, s).compile()
    carry = [a]

    def one():
        carry[0] = compiled(carry[0], b, s)
        carry[0].block_until_ready()

    res = time_steps(one, steps, reps)
    res["bandwidth"] = 12 * n / res["median_s"]
    return res


# ------------------------------------------------------------------------------------------
# Machine description and reporting


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        models = [x for x in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in x]
        cpu = models[0].split(":", 1)[1].strip() if models else cpu
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    versions.update(jax=jax.__version__, gradxform=gx.__version__)
    if optax is not None:
        versions["optax"] = optax.__version__
    if torch is not None:
        versions["torch"] = f"{torch.__version__} ({torch.get_num_threads()} threads)"
    try:
        root = Path(__file__).resolve().parent.parent
        git = lambda *a: subprocess.run(  # noqa: E731
            ["git", *a], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        commit = git("rev-parse", "--short", "HEAD") + (" (dirty)" if git("status", "-s") else "")
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    dev = jax.devices()[0]
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "jax_backend": f"{jax.default_backend()} ({dev.device_kind})",
        "torch_device": torch_device() if torch is not None else "n/a",
        "versions": versions,
        "commit": commit,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def mib(x) -> str:
    return "—" if x is None else f"{x / 2**20:.1f}"


def ratio(t: float, ref: float | None, lib: str) -> str:
    return f"{t / ref:.2f}" if ref and lib != "floor" else "—"


HEADERS = [
    "opt", "lib", "step ms", "range ms", "compile s", "peak MiB", "temp MiB", "state MiB",
    "ideal B/p", "eff B/p", "roofline", "×optax", "×torch",
]  # fmt: skip


def report(results: list[dict], info: dict, bw: float, bw_res: list[dict]) -> str:
    ms = lambda s: f"{1e3 * s:.3g}"  # noqa: E731
    out = ["# gradxform optimizer-step benchmark", ""]
    out += [f"- **{k}**: {v}" for k, v in info.items() if k != "versions"]
    out.append("- **versions**: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    gbs = ", ".join(f"{12 * r['n'] / r['median_s'] / 1e9:.1f}" for r in bw_res)
    tn = fmt_size(bw_res[0]["n"])
    out.append(f"- **triad bandwidth** ({tn} fp32, start, end): {gbs} GB/s; used {bw / 1e9:.1f}")
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["tree"], r["size"]), []).append(r)
    for (tree, size), rows in groups.items():
        n, leaves = rows[0]["n_params"], rows[0]["leaves"]
        kind = " (transformer-like)" if tree == 200 else ""
        out += ["", f"## {fmt_leaves(leaves)}{kind}, {fmt_size(size)} params ({n:,})", ""]
        done = {(r["opt"], r["lib"]): r for r in rows if r["status"] == "ok"}
        table = []
        for r in rows:
            label = OPT_LABEL.get(r["opt"], r["opt"])
            if r["status"] != "ok":
                table.append([label, r["lib"], r["status"]] + [""] * (len(HEADERS) - 3))
                continue
            t, ideal = r["median_s"], IDEAL_BYTES[r["opt"]]
            mem = r.get("mem") or {}
            ref_optax = done.get((r["opt"], "optax"))
            torches = [done[(r["opt"], v)]["median_s"] for v in LIBS[2:] if (r["opt"], v) in done]
            comp = r.get("compile_s")
            table.append([
                label, r["lib"], ms(t), f"{ms(r['min_s'])}–{ms(r['max_s'])}",
                "—" if comp is None else f"{r['lower_s'] + comp:.2f}",
                mib(mem.get("peak")), mib(mem.get("temp")), mib(r.get("state_bytes")),
                str(ideal), f"{t * bw / n:.1f}", f"{100 * ideal * n / bw / t:.0f}%",
                ratio(t, ref_optax and ref_optax["median_s"], r["lib"]),
                ratio(t, min(torches, default=None), r["lib"]),
            ])  # fmt: skip
        out.append(md_table(HEADERS, table))
    return "\n".join(out) + "\n"


def plot(results: list[dict], path: Path, trees, sizes, opts, libs) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no plot")
        return
    fig, axes = plt.subplots(
        len(sizes), len(trees), figsize=(4.2 * len(trees), 3.4 * len(sizes)), squeeze=False
    )
    width = 0.8 / max(1, len(libs))
    for i, size in enumerate(sizes):
        for j, tree in enumerate(trees):
            ax = axes[i][j]
            got = {
                (r["opt"], r["lib"]): r["median_s"]
                for r in results
                if r["tree"] == tree and r["size"] == size and r["status"] == "ok"
            }
            for k, lib in enumerate(libs):
                ys = [1e3 * got.get((o, lib), math.nan) for o in opts]
                ax.bar([x + k * width for x in range(len(opts))], ys, width, label=lib)
            for floor, style in zip(FLOORS, ("--", ":")):
                if (floor, "floor") in got:
                    ax.axhline(1e3 * got[(floor, "floor")], ls=style, c="k", lw=1, label=floor)
            ax.set_yscale("log")
            ax.set_xticks([x + 0.4 - width / 2 for x in range(len(opts))], opts, fontsize=7)
            leaves = next((r["leaves"] for r in results if r["tree"] == tree), tree)
            ax.set_title(f"{fmt_leaves(leaves)}, {fmt_size(size)} params", fontsize=9)
            ax.set_ylabel("median step ms", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------
# Driver


def compile_estimate(history: dict, key: tuple, leaves: int) -> float | None:
    """Extrapolates compile seconds from smaller leaf counts (exponent fitted, in [1.5, 2.5]).

    XLA compile time grows faster than linearly in the leaf count (Adam, 2 cores: ~10 s at
    1,000 leaves, ~50 s at 4,000, ~7 min at 10,000), hence the lower bound 1.5.
    """
    # Below ~100 leaves compile time is fixed overhead: it says nothing about the slope.
    pts = sorted((n, t) for n, t in history.get(key, {}).items() if 100 <= n <= leaves)
    if not pts:
        return None
    n1, t1 = pts[-1]
    k = 1.5
    if len(pts) >= 2 and pts[-2][1] > 0:
        n0, t0 = pts[-2]
        k = min(2.5, max(1.5, math.log(t1 / t0) / math.log(n1 / n0)))
    return t1 * (leaves / n1) ** k


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    csv = lambda f: lambda s: [f(x) for x in s.split(",") if x]  # noqa: E731
    ap.add_argument("--trees", type=csv(int), default=[1, 200, 1000, 10000], help="leaf counts")
    ap.add_argument("--sizes", type=csv(parse_size), default=[3_200_000, 32_000_000])
    ap.add_argument("--opts", type=csv(str), default=list(OPTS), help=",".join(OPTS))
    ap.add_argument("--libs", type=csv(str), default=list(LIBS), help=",".join(LIBS))
    ap.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per repetition")
    ap.add_argument("--triad-size", type=parse_size, default=32_000_000)
    ap.add_argument("--no-floors", action="store_true", help="skip the p+g floor rows")
    mcs_help = "skip JAX configs whose compile time, extrapolated from smaller trees, exceeds this"
    ap.add_argument("--max-compile-seconds", type=float, help=mcs_help)
    ap.add_argument("--skip", type=csv(str), default=[], help="LIB:LEAVES pairs, e.g. optax:10000")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 and 200 leaves at 320K")
    ap.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    args = ap.parse_args(argv)
    if args.quick:
        args.trees, args.sizes, args.reps = [1, 200], [320_000], min(args.reps, 3)
    for name, allowed in (("opts", OPTS), ("libs", LIBS)):
        bad = set(getattr(args, name)) - set(allowed)
        if bad:
            ap.error(f"unknown --{name} {sorted(bad)}; choose from {','.join(allowed)}")
    return args


def run_config(lib, opt, np_params, np_grads, args) -> dict:
    """One (library, optimizer) on one tree; an exception becomes an 'error' status."""
    t0 = time.perf_counter()
    try:
        fn = bench_torch if lib.startswith("torch") else bench_jax
        res = fn(lib, opt, np_params, np_grads, args.steps, args.reps)
    except Exception as e:  # one bad config must not end a long run
        traceback.print_exc(file=sys.stderr)
        msg = str(e).splitlines()[0][:60] if str(e) else ""
        res = {"status": f"error: {type(e).__name__} {msg}".strip()}
    gc.collect()
    return {**res, "wall_s": time.perf_counter() - t0}


def main(argv=None) -> int:
    t_begin = time.perf_counter()
    args = parse_args(argv)
    have = {"gradxform": True, "optax": optax is not None}
    libs = [lib for lib in args.libs if have.get(lib, torch is not None)]
    for lib in set(args.libs) - set(libs):
        log(f"{lib}: not importable, skipped")
    skip, limit = {tuple(s.split(":")) for s in args.skip}, args.max_compile_seconds
    info = machine_info()
    log(f"{info['cpu']}, {info['cores']} cores, {info['jax_backend']}, load {info['load_avg']}")
    bw_res = [{**triad(args.triad_size, args.steps, args.reps), "n": args.triad_size}]
    log(f"triad: {bw_res[0]['bandwidth'] / 1e9:.1f} GB/s")

    configs = [("floor", f) for f in ([] if args.no_floors else FLOORS)]
    configs += [(lib, opt) for opt in args.opts for lib in libs]
    results, history = [], {}
    total, i = len(args.trees) * len(args.sizes) * len(configs), 0
    for tree in args.trees:
        for size in args.sizes:
            np_params, np_grads = make_data(tree, size)
            leaves = len(jax.tree.leaves(np_params))
            n = sum(x.size for x in jax.tree.leaves(np_params))
            for lib, opt in configs:
                i += 1
                row = {"tree": tree, "leaves": leaves, "size": size, "n_params": n}
                row.update(opt=opt, lib=lib, status="ok")
                key = ("jax", opt) if lib == "floor" else (lib, opt)
                est = compile_estimate(history, key, leaves)
                if (lib, str(tree)) in skip:
                    row["status"] = "skipped (--skip)"
                elif not lib.startswith("torch") and limit and est and est > limit:
                    row["status"] = f"skipped (est. compile {est:.0f} s > {limit:g} s)"
                else:
                    row.update(run_config(lib, opt, np_params, np_grads, args))
                results.append(row)
                msg = row["status"]
                if msg == "ok":
                    msg = f"{1e3 * row['median_s']:.3g} ms"
                    if "compile_s" in row:
                        history.setdefault(key, {})[leaves] = row["lower_s"] + row["compile_s"]
                        msg += f", compile {history[key][leaves]:.2f} s"
                    msg += f" (wall {row['wall_s']:.0f} s)"
                log(f"[{i}/{total}] {fmt_leaves(leaves)}, {fmt_size(n)}, {opt}, {lib}: {msg}")
    bw_res.append({**triad(args.triad_size, args.steps, args.reps), "n": args.triad_size})
    bw = statistics.median([r["bandwidth"] for r in bw_res])
    text = report(results, info, bw, bw_res)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    backend = jax.default_backend()
    stem = f"quick-{backend}" if args.quick else f"bench-{backend}-{time.strftime('%Y%m%d-%H%M')}"
    (args.out / f"{stem}.md").write_text(text)
    raw = {"machine": info, "triad": bw_res, "bandwidth": bw, "results": results}
    (args.out / f"{stem}.json").write_text(json.dumps(raw, indent=1, default=str))
    plot(results, args.out / f"{stem}.png", args.trees, args.sizes, args.opts, libs)
    log(f"wrote {args.out / stem}.* in {time.perf_counter() - t_begin:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

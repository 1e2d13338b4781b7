"""Flat layout vs per-leaf tree with a weight-decay mask: AdamW step and compile time.

gradxform on the tree (``weight_decay_mask`` selecting the matrices), gradxform on the
flat layout (``ParamLayout.of(params, labels=...)``: decayed and non-decayed leaves in
buffers of their own, the mask a selector over the two labels), Optax ``adamw(mask=...)``
on the tree, and torch.optim ``AdamW`` (foreach and fused, two parameter groups), side by
side in one process on the same trees: the transformer-shaped tree (about 200 leaves) and
trees of 1,000 and 10,000 leaves (alternately matrices and vectors). Step: update + apply
in one donated ``jit``, median of ``--reps`` x ``--steps``; compile: ``lower`` +
``compile`` of that step. Run from the repository root::

    python benchmarks/flat_layout.py --trees 200,1000,10000 --size 3.2M

Writes the Markdown table to stdout and to ``benchmarks/results/flat-layout-<backend>.md``.
A library that is not importable is left out; ``--skip optax:10000`` leaves out a pair.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from bench import fmt_leaves, log, machine_info, md_table, parse_size, time_steps, transformer_tree

import gradxform as gx

try:
    import optax
except ImportError:
    optax = None
try:
    import torch
except ImportError:
    torch = None

RESULTS = Path(__file__).resolve().parent / "results"
LR, WD = 1e-3, 1e-2


def shapes(n_leaves: int, n_params: int) -> dict:
    """The transformer-shaped tree for 200, else alternating (k, 8) matrices and (k,) vectors."""
    if n_leaves == 200:
        return transformer_tree(n_params)
    per = max(8, n_params // n_leaves)
    out = {}
    for i in range(n_leaves):
        out[f"p{i:05d}"] = {"w": (per // 8, 8)} if i % 2 == 0 else {"b": (per,)}
    return out


def make(n_leaves: int, n_params: int):
    rng = np.random.default_rng(0)
    is_shape = lambda x: isinstance(x, tuple)  # noqa: E731
    tree = shapes(n_leaves, n_params)
    params = jax.tree.map(
        lambda s: (0.02 * rng.standard_normal(s)).astype(np.float32), tree, is_leaf=is_shape
    )
    grads = jax.tree.map(
        lambda s: (1e-3 * rng.standard_normal(s)).astype(np.float32), tree, is_leaf=is_shape
    )
    return params, grads


def decayed(path, leaf) -> bool:
    """Matrices are decayed; vectors (biases, norm scales) are not."""
    return leaf.ndim >= 2


def bench_jax(kind: str, np_params, np_grads, steps: int, reps: int) -> dict:
    params = jax.tree.map(jnp.asarray, np_params)
    grads = jax.tree.map(jnp.asarray, np_grads)
    if kind == "gradxform-flat":
        layout = gx.ParamLayout.of(
            params, labels=gx.where(lambda p, x: "decay" if decayed(p, x) else "no_decay")
        )
        params, grads = layout.flatten(params), layout.flatten(grads)
        tx = gx.adamw(LR, weight_decay=WD, weight_decay_mask={"decay": True, "no_decay": False})
        init, update, apply = tx.init, tx.update, gx.apply_updates
    elif kind == "gradxform-tree":
        tx = gx.adamw(LR, weight_decay=WD, weight_decay_mask=gx.where(decayed))
        init, update, apply = tx.init, tx.update, gx.apply_updates
    else:
        mask = jax.tree.map(lambda x: x.ndim >= 2, params)
        tx = optax.adamw(LR, weight_decay=WD, mask=mask)
        init, update, apply = tx.init, tx.update, optax.apply_updates

    def step(p, s, g):
        u, s = update(g, s, p)
        return apply(p, u), s

    state = init(params)
    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()
    compile_s = time.perf_counter() - t0
    carry = [params, state]

    def one():
        carry[:] = compiled(carry[0], carry[1], grads)
        jax.block_until_ready(carry)

    res = time_steps(one, steps, reps)
    res["compile_s"] = compile_s
    return res


def bench_torch(variant: str, np_params, np_grads, steps: int, reps: int) -> dict:
    leaves = jax.tree.leaves(np_params)
    params = [torch.nn.Parameter(torch.tensor(x)) for x in leaves]
    for p, g in zip(params, jax.tree.leaves(np_grads)):
        p.grad = torch.tensor(g)
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": WD},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    kw = {"foreach": True} if variant == "torch-foreach" else {"fused": True}
    opt = torch.optim.AdamW(groups, lr=LR, **kw)
    return time_steps(opt.step, steps, reps)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trees", default="200,1000,10000")
    ap.add_argument("--size", default="3.2M")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--skip", default="", help="LIB:LEAVES pairs to leave out")
    args = ap.parse_args(argv)
    n_params = parse_size(args.size)
    skip = {tuple(x.split(":")) for x in args.skip.split(",") if x}
    libs = ["gradxform-flat", "gradxform-tree"]
    libs += ["optax"] if optax is not None else []
    libs += ["torch-foreach", "torch-fused"] if torch is not None else []
    rows = []
    for n in [int(x) for x in args.trees.split(",")]:
        np_params, np_grads = make(n, n_params)
        count = sum(x.size for x in jax.tree.leaves(np_params))
        base = None
        for lib in libs:
            if (lib, str(n)) in skip:
                rows.append([fmt_leaves(n), lib, "skipped", "", ""])
                continue
            log(f"{lib} {fmt_leaves(n)} ({count:,} params)")
            run = bench_torch if lib.startswith("torch") else bench_jax
            res = run(lib, np_params, np_grads, args.steps, args.reps)
            base = base or res["median_s"]
            compile_s = f"{res['compile_s']:.2f}" if "compile_s" in res else "n/a"
            rows.append(
                [
                    f"{fmt_leaves(n)} ({count / 1e6:.2f}M)",
                    lib,
                    f"{1e3 * res['median_s']:.2f} "
                    f"({1e3 * res['min_s']:.2f}-{1e3 * res['max_s']:.2f})",
                    f"{res['median_s'] / base:.2f}x",
                    compile_s,
                ]
            )
    info = machine_info()
    table = md_table(
        ["tree", "library", "step ms, median (rep range)", "vs flat", "compile s"], rows
    )
    text = (
        f"AdamW with a weight-decay mask (matrices decayed), {args.reps}x{args.steps} steps.\n"
        f"Machine: {info['cpu']}, {info['cores']} cores, load {info['load_avg']}; "
        f"{info['jax_backend']}; {info['versions']}; commit {info['commit']}.\n\n{table}\n"
    )
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"flat-layout-{jax.default_backend()}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

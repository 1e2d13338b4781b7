"""The newer gradxform optimizers and wrappers vs Optax: step time, compile time, state size.

One row per optimizer: one donated-``jit`` step (update + apply) of gradxform and, where
Optax has the same optimizer (in ``optax`` or ``optax.contrib``), of Optax at matching
hyperparameters, in the same process on the same transformer-shaped tree (about 200 leaves,
float32). Each pair is timed back to back: median of ``--reps`` x ``--steps`` steps (the
range of the per-rep medians), ``lower`` + ``compile`` seconds, and the bytes of the
optimizer state. Wrappers Optax lacks as a transform (``ema_params``, ``swa``,
``dynamic_loss_scale``) are timed against gradxform's ``adam`` alone: the column then gives
their overhead. Optimizers that take more than a gradient get the same extra input on both
sides: ``sam`` a loss (0.5 ||p||^2, one extra gradient per step; Optax's ``sam`` in
``opaque_mode`` with ``sync_period=2``), ``dpsgd`` per-example gradients (``--dp-batch``
examples), ``dynamic_loss_scale`` float16 gradients of a loss scaled by 2^16. Run from the
repository root::

    python benchmarks/new_optimizers.py --size 3.2M
    python benchmarks/new_optimizers.py --only lamb,muon --reps 3

Writes the Markdown table to stdout and to
``benchmarks/results/new-optimizers-<backend>.md``. Names not (yet) in ``gradxform`` are
listed and skipped; without Optax only the gradxform columns are filled.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from bench import log, machine_info, md_table, parse_size, time_steps, transformer_tree

import gradxform as gx

try:
    import optax
    import optax.contrib as optax_contrib
except ImportError:
    optax = optax_contrib = None

RESULTS = Path(__file__).resolve().parent / "results"
LR, WD = 1e-3, 1e-2
LOSS_SCALE = 2.0**16


def plain(tx, x, state, params):
    return tx.update(x, state, params)


def sam_loss(params) -> jax.Array:
    """0.5 ||p||^2 over every leaf: a gradient (p itself) as cheap as a loss can give."""
    return 0.5 * sum(jnp.vdot(x, x) for x in jax.tree.leaves(params))


def gx_sam(tx, x, state, params):
    return tx.update(x, state, params, value_fn=sam_loss)


def optax_sam(tx, x, state, params):
    return tx.update(x, state, params, grad_fn=lambda p, _: jax.grad(sam_loss)(p))


def gx_dpsgd(tx, x, state, params):
    # ``grads`` only gives the result's tree and dtypes: the first example serves.
    first = jax.tree.map(lambda a: a[0], x)
    return tx.update(first, state, params, per_example_grads=x)


@dataclass
class Case:
    """One row: the gradxform transform and what it is compared with."""

    name: str  # the gradxform name that must exist (hasattr(gx, name))
    ours: Callable[[], Any]
    theirs: Callable[[], Any] | None  # None: not comparable (reason in ``label``)
    label: str  # the comparison: an Optax call, "gx.adam alone (overhead)", or why none
    lib: str = "optax"  # "optax" or "gradxform" (an overhead baseline)
    note: str = ""
    inputs: str = "grads"  # grads | grads16 | per_example: what the step is fed
    their_inputs: str = "grads"
    our_call: Callable = plain
    their_call: Callable = plain
    needs: tuple[str, ...] = ()  # Optax attributes the comparison needs ("contrib.muon")


def optax_has(path: str) -> bool:
    if optax is None:
        return False
    mod, _, attr = path.rpartition(".")
    return hasattr(optax_contrib if mod == "contrib" else optax, attr)


def cases() -> list[Case]:
    o, oc = optax, optax_contrib
    adam = lambda: gx.adam(LR)  # noqa: E731
    with_sgd = lambda t: gx.chain(t, gx.sgd(LR))  # noqa: E731
    o_with_sgd = lambda t: o.chain(t, o.sgd(LR))  # noqa: E731
    return [
        Case("ema_params", lambda: gx.chain(gx.adam(LR), gx.ema_params(0.999)), adam,
             "gx.adam alone (overhead)", lib="gradxform",
             note="chain(adam, ema_params(0.999)); Optax has no EMA of the parameters "
             "(optax.ema averages the updates)"),
        Case("swa", lambda: gx.chain(gx.adam(LR), gx.swa(start_step=1)), adam,
             "gx.adam alone (overhead)", lib="gradxform",
             note="chain(adam, swa(start_step=1)): averaging every step; no Optax SWA"),
        Case("adafactor", lambda: gx.adafactor(1e-2),
             lambda: o.adafactor(1e-2, min_dim_size_to_factor=1),
             "optax.adafactor(1e-2, min_dim_size_to_factor=1)", needs=("adafactor",),
             note="ours torch.optim.Adafactor's rule, Optax Shazeer & Stern's original "
             "(decay 0.8, clip 1, parameter scale); every matrix factored in both"),
        Case("lamb", lambda: gx.lamb(LR, weight_decay=WD),
             lambda: o.lamb(LR, weight_decay=WD), "optax.lamb(1e-3, weight_decay=1e-2)",
             needs=("lamb",)),
        Case("lars", lambda: gx.lars(LR, weight_decay=WD, momentum=0.9),
             lambda: o.lars(LR, weight_decay=WD, momentum=0.9),
             "optax.lars(1e-3, weight_decay=1e-2, momentum=0.9)", needs=("lars",),
             note="decay inside the ratio (ours, LARS paper) vs added before it (Optax)"),
        Case("scale_by_trust_ratio", lambda: with_sgd(gx.scale_by_trust_ratio()),
             lambda: o_with_sgd(o.scale_by_trust_ratio()),
             "chain(optax.scale_by_trust_ratio(), optax.sgd(1e-3))",
             needs=("scale_by_trust_ratio",), note="the primitive, then sgd(1e-3)"),
        Case("muon",
             lambda: gx.muon(LR, weight_decay=WD, eps=1e-8,
                             adamw=dict(learning_rate=LR, weight_decay=None)),
             lambda: oc.muon(LR, weight_decay=WD, eps=1e-8),
             "optax.contrib.muon(1e-3, weight_decay=1e-2, eps=1e-8)",
             needs=("contrib.muon",),
             note="2-D leaves (embeddings included) to Muon, the rest to Adam in both; "
             "ours torch's update scale (adjust_lr_fn=None)"),
        Case("schedule_free_sgd", lambda: gx.schedule_free_sgd(1e-2, momentum=0.9),
             lambda: oc.schedule_free_sgd(1e-2, b1=0.9),
             "optax.contrib.schedule_free_sgd(1e-2, b1=0.9)",
             needs=("contrib.schedule_free_sgd",)),
        Case("schedule_free_adamw", lambda: gx.schedule_free_adamw(2.5e-3),
             lambda: oc.schedule_free_adamw(2.5e-3),
             "optax.contrib.schedule_free_adamw(2.5e-3)",
             needs=("contrib.schedule_free_adamw",), note="no weight decay in either"),
        Case("prodigy", lambda: gx.prodigy(1.0), lambda: oc.prodigy(1.0),
             "optax.contrib.prodigy(1.0)", needs=("contrib.prodigy",)),
        Case("dadapt_adamw", lambda: gx.dadapt_adamw(1.0), lambda: oc.dadapt_adamw(1.0),
             "optax.contrib.dadapt_adamw(1.0)", needs=("contrib.dadapt_adamw",)),
        Case("dog", lambda: gx.dog(1.0, reps_rel=1e-6),
             lambda: oc.dog(1.0, init_step=("heuristic", 1e-6)),
             "optax.contrib.dog(1.0, init_step=('heuristic', 1e-6))",
             needs=("contrib.dog",)),
        Case("adabelief", lambda: gx.adabelief(LR), lambda: o.adabelief(LR),
             "optax.adabelief(1e-3)", needs=("adabelief",)),
        Case("yogi", lambda: gx.yogi(1e-2), lambda: o.yogi(1e-2), "optax.yogi(1e-2)",
             needs=("yogi",)),
        Case("rprop", lambda: gx.rprop(1e-2), lambda: o.rprop(1e-2), "optax.rprop(1e-2)",
             needs=("rprop",)),
        Case("asgd", lambda: gx.asgd(1e-2), None, "not comparable: Optax has no ASGD"),
        Case("adan", lambda: gx.adan(LR), lambda: o.adan(LR, eps_root=0.0),
             "optax.adan(1e-3, eps_root=0.0)", needs=("adan",),
             note="eps_root=0 as ours (Optax's default is 1e-8)"),
        Case("novograd", lambda: gx.novograd(LR, b1=0.9, b2=0.25, eps=1e-6),
             lambda: o.novograd(LR, b1=0.9, b2=0.25, eps=1e-6),
             "optax.novograd(1e-3, b1=0.9, b2=0.25, eps=1e-6)", needs=("novograd",),
             note="Optax's defaults on both sides"),
        Case("sm3", lambda: gx.sm3(0.1, momentum=0.9), lambda: o.sm3(0.1, momentum=0.9),
             "optax.sm3(0.1, momentum=0.9)", needs=("sm3",)),
        Case("sam", lambda: gx.sam(gx.sgd(LR), rho=0.05),
             lambda: oc.sam(o.sgd(LR), o.chain(oc.normalize(), o.sgd(0.05)),
                            sync_period=2, opaque_mode=True),
             "optax.contrib.sam(sgd(1e-3), chain(normalize(), sgd(0.05)), sync_period=2, "
             "opaque_mode=True)", needs=("contrib.sam", "contrib.normalize"),
             our_call=gx_sam, their_call=optax_sam,
             note="loss 0.5 ||p||^2: one extra gradient per step in both"),
        Case("adaptive_grad_clip", lambda: with_sgd(gx.adaptive_grad_clip(0.01)),
             lambda: o_with_sgd(o.adaptive_grad_clip(0.01)),
             "chain(optax.adaptive_grad_clip(0.01), optax.sgd(1e-3))",
             needs=("adaptive_grad_clip",), note="the clip, then sgd(1e-3)"),
        Case("zero_nans", lambda: with_sgd(gx.zero_nans()),
             lambda: o_with_sgd(o.zero_nans()), "chain(optax.zero_nans(), optax.sgd(1e-3))",
             needs=("zero_nans",), note="the primitive, then sgd(1e-3); no NaN present"),
        Case("skip_large_updates",
             lambda: gx.skip_large_updates(gx.adam(LR), max_squared_norm=1e6),
             lambda: o.MultiSteps(o.adam(LR), every_k_schedule=1,
                                  should_skip_update_fn=_optax_skip_large(1e6)),
             "optax.MultiSteps(adam(1e-3), 1, should_skip_update_fn=skip_large_updates)",
             needs=("skip_large_updates", "MultiSteps"),
             note="threshold 1e6: every step applied; Optax's is a MultiSteps predicate "
             "(MultiSteps keeps a gradient accumulator)"),
        Case("dynamic_loss_scale", lambda: gx.dynamic_loss_scale(gx.adam(LR)), adam,
             "gx.adam alone, float32 grads (overhead)", lib="gradxform", inputs="grads16",
             note="float16 grads of a loss scaled by 2^16, float32 params; Optax has no "
             "loss scaling (jmp is a separate library)"),
        Case("dpsgd", lambda: gx.dpsgd(LR, l2_norm_clip=1.0, noise_multiplier=1.0, seed=0),
             lambda: oc.dpsgd(LR, 1.0, 1.0, 0),
             "optax.contrib.dpsgd(1e-3, 1.0, 1.0, seed=0)", needs=("contrib.dpsgd",),
             inputs="per_example", their_inputs="per_example", our_call=gx_dpsgd,
             note="per-example grads with a batch axis (see the heading) in both"),
    ]  # fmt: skip


def _optax_skip_large(max_squared_norm: float):
    def fn(updates, gradient_step, params):
        return optax.skip_large_updates(updates, gradient_step, params, max_squared_norm)

    return fn


def make_inputs(n_params: int, dp_batch: int, seed: int = 0) -> dict:
    """fp32 params ~N(0, 0.02^2), grads ~N(0, 0.001^2), and the derived inputs."""
    rng = np.random.default_rng(seed)
    is_shape = lambda x: isinstance(x, tuple)  # noqa: E731
    tree = transformer_tree(n_params)
    rand = lambda s, scale: (scale * rng.standard_normal(s, np.float32)).astype(np.float32)  # noqa: E731
    params = jax.tree.map(lambda s: rand(s, 0.02), tree, is_leaf=is_shape)
    grads = jax.tree.map(lambda s: rand(s, 1e-3), tree, is_leaf=is_shape)
    per_example = jax.tree.map(lambda s: rand((dp_batch, *s), 1e-3), tree, is_leaf=is_shape)
    return {
        "params": params,
        "grads": grads,
        "grads16": jax.tree.map(lambda g: (g * LOSS_SCALE).astype(np.float16), grads),
        "per_example": per_example,
    }


def state_bytes(state) -> int:
    return sum(int(x.nbytes) for x in jax.tree.leaves(state) if hasattr(x, "nbytes"))


def bench(tx, call, apply, data: dict, inputs: str, steps: int, reps: int) -> dict:
    params = jax.tree.map(jnp.asarray, data["params"])
    x = jax.tree.map(jnp.asarray, data[inputs])

    def step(p, s, g):
        u, s = call(tx, g, s, p)
        return apply(p, u), s

    # Some inits (schedule-free's z, Prodigy's and DoG's x0) return the params' own buffers
    # in the state: donating params and state would donate them twice. Fresh copies.
    state = jax.tree.map(jnp.copy, tx.init(params))
    nbytes = state_bytes(state)
    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, x).compile()
    compile_s = time.perf_counter() - t0
    carry = [params, state]

    def one():
        carry[:] = compiled(carry[0], carry[1], x)
        jax.block_until_ready(carry)

    res = time_steps(one, steps, reps)
    res.update(compile_s=compile_s, state_bytes=nbytes)
    return res


def run_side(what: str, tx_fn, call, apply, data, inputs, args) -> dict | str:
    """The result dict, or a one-line error (the traceback goes to stderr)."""
    try:
        return bench(tx_fn(), call, apply, data, inputs, args.steps, args.reps)
    except Exception as e:  # noqa: BLE001 - one failing optimizer must not stop the table
        log(f"  {what} failed:\n{traceback.format_exc()}")
        return f"error: {type(e).__name__}"
    finally:
        gc.collect()  # the last optimizer's buffers, before the next one is timed


def fmt_time(res) -> str:
    if isinstance(res, str):
        return res
    ms = lambda s: f"{1e3 * s:.2f}"  # noqa: E731
    return f"{ms(res['median_s'])} ({ms(res['min_s'])}-{ms(res['max_s'])})"


def fmt_bytes(n: int) -> str:
    for unit, div in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n} B"


def pair(a, b, fmt) -> str:
    side = lambda r: fmt(r) if isinstance(r, dict) else "—"  # noqa: E731
    return f"{side(a)} / {side(b)}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="3.2M", help="total parameters (K, M, G suffixes)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--only", default="", help="comma-separated names (default: all)")
    ap.add_argument("--dp-batch", type=int, default=8, help="examples per dpsgd step")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder of the .md table")
    args = ap.parse_args(argv)
    all_cases = cases()
    only = [x for x in args.only.split(",") if x]
    unknown = sorted(set(only) - {c.name for c in all_cases})
    if unknown:
        ap.error(f"--only: unknown names {unknown}; known: {[c.name for c in all_cases]}")
    selected = [c for c in all_cases if not only or c.name in only]
    missing = [c.name for c in selected if not hasattr(gx, c.name)]
    if missing:
        log(f"not in gradxform (skipped): {', '.join(missing)}")
    data = make_inputs(parse_size(args.size), args.dp_batch)
    count = sum(x.size for x in jax.tree.leaves(data["params"]))
    n_leaves = len(jax.tree.leaves(data["params"]))
    rows = []
    for c in selected:
        if c.name in missing:
            continue
        log(f"{c.name}")
        ours = run_side("gradxform", c.ours, c.our_call, gx.apply_updates, data, c.inputs, args)
        theirs: dict | str | None = None
        label = c.label
        if c.theirs is None:
            pass
        elif c.lib == "gradxform":
            apply = gx.apply_updates
            theirs = run_side(c.label, c.theirs, c.their_call, apply, data, c.their_inputs, args)
        elif all(optax_has(n) for n in c.needs):
            apply = optax.apply_updates
            theirs = run_side(c.label, c.theirs, c.their_call, apply, data, c.their_inputs, args)
        else:
            need = ", ".join(n for n in c.needs if not optax_has(n))
            label = f"not comparable: this Optax lacks {need}"
        both = isinstance(ours, dict) and isinstance(theirs, dict)
        rows.append(
            [
                f"`{c.name}`",
                label if c.theirs is None or c.lib == "gradxform" else f"`{label}`",
                fmt_time(ours),
                fmt_time(theirs) if theirs is not None else "—",
                f"{ours['median_s'] / theirs['median_s']:.2f}" if both else "—",
                pair(ours, theirs, lambda r: f"{r['compile_s']:.2f}"),
                pair(ours, theirs, lambda r: fmt_bytes(r["state_bytes"])),
                c.note,
            ]
        )
    info = machine_info()
    headers = [
        "optimizer", "compared with", "ours: step ms, median (rep range)",
        "theirs: step ms, median (rep range)", "ours / theirs", "compile s (ours / theirs)",
        "state (ours / theirs)", "notes",
    ]  # fmt: skip
    table = md_table(headers, rows)
    skipped = f"\nNot in gradxform, skipped: {', '.join(missing)}.\n" if missing else ""
    text = (
        f"New gradxform optimizers vs Optax: one donated-jit step (update + apply) on the "
        f"transformer-shaped tree ({n_leaves} leaves, {count:,} float32 params; dpsgd: "
        f"{args.dp_batch} per-example gradients), {args.reps}x{args.steps} steps.\n"
        f"Machine: {info['cpu']}, {info['cores']} cores, load {info['load_avg']}; "
        f"{info['jax_backend']}; {info['versions']}; commit {info['commit']}.\n"
        f"Command: {info['command']}\n\n{table}\n{skipped}"
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"new-optimizers-{jax.default_backend()}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

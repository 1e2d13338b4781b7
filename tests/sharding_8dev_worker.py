"""Worker for tests/test_sharding_8dev.py (not a test module: no ``test_`` prefix).

``python sharding_8dev_worker.py OUT.json`` runs on 8 host CPU devices (the parent sets
``--xla_force_host_platform_device_count=8``; the pytest process already has 4) and writes
one JSON report that the test asserts on, so that the whole check costs one interpreter
start and one JAX initialisation:

- ``sharding``: for every named optimizer of the registry (tests/helpers.py OPTIMIZERS),
  every wrapper and chain of tests/test_wrappers_compose.py, and a few representative
  wrapped or reducing transforms, on three layouts of a 2 x 4 ("data", "model") mesh:
  whether ``init`` (eager, and ``jax.eval_shape`` + ``jit(init, out_shardings=...)`` from
  ShapeDtypeStructs carrying shardings) gives state with the params' shardings, whether a
  jitted ``update`` keeps every sharding, and the collectives in its compiled HLO.
- ``zero1``: ``gx.zero1`` against the unsharded run (bitwise), its collectives, the
  per-device state bytes for N = 1, 2, 4, 8, and FSDP parameters.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if "xla_force_host_platform_device_count=8" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    )
sys.path.insert(0, str(Path(__file__).parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import gradxform as gx  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

import test_wrappers_compose  # noqa: E402
from helpers import OPTIMIZERS  # noqa: E402
from test_wrappers_compose import CHAINS, WRAPPERS  # noqa: E402

SHAPES = {"w": (32, 16), "b": (16,), "e": (16, 32), "s": ()}
LAYOUTS = {
    "data": {"w": P(), "b": P(), "e": P(), "s": P()},  # data parallel: replicated
    "model": {"w": P("model"), "b": P("model"), "e": P("model"), "s": P()},
    "2d": {"w": P("data", "model"), "b": P("model"), "e": P("model", "data"), "s": P()},
}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")
_OP = re.compile(
    r"=\s*(?P<type>.*?)\s(?P<op>" + "|".join(COLLECTIVES) + r")(?:-start)?\(",
)
EXPLICIT = (AxisType.Explicit, AxisType.Explicit)
_SHAPE = re.compile(r"[a-z]+[0-9]*\[([0-9,]*)\]")


def _loss(params) -> jax.Array:
    """A loss on SHAPES' tree, for the transforms that take ``value_fn`` (sam)."""
    return sum(0.5 * jnp.sum(x * x) for x in jax.tree.leaves(params))


# The compose tables' transforms that need a loss (sam) call that module's `loss`, written
# for its own tree: give them one for SHAPES' tree.
test_wrappers_compose.loss = _loss


def _own_transforms() -> dict:
    """Wrapped and reducing transforms beyond the compose tables, on SHAPES' tree."""
    mask = {"w": True, "b": False, "e": True, "s": False}
    return {
        "masked(adam)": lambda: gx.masked(gx.adam(1e-2), mask),
        "partition(adam|sgd)": lambda: gx.partition(
            {"a": gx.adam(1e-2), "m": gx.sgd(1e-2, momentum=0.9)},
            {"w": "a", "b": "m", "e": "a", "s": "m"},
        ),
        "freeze(adam, b)": lambda: gx.freeze(gx.adam(1e-2), "b"),
        "clip_by_global_norm+adam": lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adam(1e-2)),
        "clip+sgd": lambda: gx.chain(gx.clip(1.0), gx.sgd(1e-2)),
        "add_noise+sgd": lambda: gx.chain(gx.add_noise(0.01, seed=1), gx.sgd(1e-2)),
        "scale_by_sign": lambda: gx.scale_by_sign(),
        "centralize": lambda: gx.centralize(),
        "monitor+adam": lambda: gx.chain(gx.monitor(), gx.adam(1e-2)),
        "scale_by_lbfgs": lambda: gx.scale_by_lbfgs(memory_size=3),
    }


def cases() -> dict:
    out = {name: (lambda c=c: c.make()) for name, c in OPTIMIZERS.items()}
    out.update({f"compose:{k}": v for k, v in WRAPPERS.items()})
    out.update({f"compose:{k}": v for k, v in CHAINS.items()})
    out.update(_own_transforms())
    return out


def collectives(text: str) -> list[tuple[str, int]]:
    """(op, elements moved) per collective instruction of compiled HLO text."""
    found = []
    for line in text.splitlines():
        m = _OP.search(line)
        if m is None or "-done" in line.split("=")[1].split("(")[0]:
            continue
        elems = 0
        for dims in _SHAPE.findall(m.group("type")):
            elems += int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
        found.append((m.group("op"), elems))
    return found


def _norm(spec) -> tuple:
    entries = list(spec)
    while entries and entries[-1] is None:
        entries.pop()
    return tuple(entries)


def _sharding_ok(leaf, want) -> bool:
    if isinstance(leaf, jax.ShapeDtypeStruct):  # eval_shape's: on an AbstractMesh
        return _norm(leaf.sharding.spec) == _norm(want.spec)
    return leaf.sharding.is_equivalent_to(want, leaf.ndim)


def _check_slots(state, shardings: dict, errors: list, where: str) -> None:
    """Params-shaped state leaves have their parameter's sharding; scalars replicated (or
    on one device, for eager init's counters)."""
    by_shape = {SHAPES[k]: s for k, s in shardings.items()}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        if not hasattr(leaf, "sharding") or leaf.sharding is None:
            continue
        s = leaf.sharding
        if leaf.shape == ():
            if not (s.is_fully_replicated or len(s.device_set) == 1):
                errors.append(f"{where}: scalar {jax.tree_util.keystr(path)} is {s}")
        elif leaf.shape in by_shape and not _sharding_ok(leaf, by_shape[leaf.shape]):
            errors.append(
                f"{where}: {jax.tree_util.keystr(path)} {s} != {by_shape[leaf.shape].spec}"
            )


def abstract_shardings(mesh, specs: dict) -> dict:
    return {k: NamedSharding(mesh, specs[k]) for k in SHAPES}


def sharding_case(make, mesh, layout: str) -> dict:
    specs = LAYOUTS[layout]
    shardings = {k: NamedSharding(mesh, specs[k]) for k in SHAPES}
    replicated = NamedSharding(mesh, P())
    rng = np.random.default_rng(0)
    params = {
        k: jax.device_put(jnp.asarray(rng.normal(size=s).astype(np.float32)), shardings[k])
        for k, s in SHAPES.items()
    }
    grads = jax.tree.map(lambda p: p * 0.5, params)
    errors: list[str] = []
    tx = make()
    # eager init on sharded arrays
    _check_slots(tx.init(params), shardings, errors, "init")
    # In place from ShapeDtypeStructs: jax.eval_shape shows the state's shardings (on a
    # mesh with Explicit axes: with Auto axes tracing hides them), jit builds the state
    # with them as out_shardings, without the parameters' values.
    explicit = jax.sharding.Mesh(mesh.devices, mesh.axis_names, axis_types=EXPLICIT)
    abstract = {
        k: jax.ShapeDtypeStruct(s, jnp.float32, sharding=NamedSharding(explicit, specs[k]))
        for k, s in SHAPES.items()
    }
    with jax.set_mesh(explicit):
        shapes = jax.eval_shape(tx.init, abstract)
    _check_slots(shapes, abstract_shardings(explicit, specs), errors, "eval_shape(init)")
    out_shardings = jax.tree.map(
        lambda s: NamedSharding(mesh, s.sharding.spec) if s.sharding is not None else replicated,
        shapes,
    )
    if layout == "data":  # all replicated: the eager state, committed to the mesh
        state = jax.device_put(tx.init(params), out_shardings)
    else:
        state = jax.jit(tx.init, out_shardings=out_shardings)(params)
        _check_slots(state, shardings, errors, "jit(init, out_shardings)")
    extra = {"value": jax.device_put(jnp.float32(1.0), replicated)}
    update = jax.jit(lambda g, s, p, e: tx.update(g, s, p, **e))
    compiled = update.lower(grads, state, params, extra).compile()
    found = collectives(compiled.as_text())
    updates, new_state = compiled(grads, state, params, extra)
    for k in SHAPES:
        if not _sharding_ok(updates[k], shardings[k]):
            errors.append(f"update: updates[{k}] {updates[k].sharding} != {specs[k]}")
    for path, a, b in zip(
        jax.tree_util.tree_flatten_with_path(state)[0],
        jax.tree.leaves(state),
        jax.tree.leaves(new_state),
    ):
        if hasattr(a, "sharding") and not _sharding_ok(b, a.sharding):
            errors.append(
                f"update: state {jax.tree_util.keystr(path[0])} {b.sharding} != {a.sharding}"
            )
    return {"errors": errors, "collectives": found}


# --------------------------------------------------------------------------------------
# ZeRO-1


def _bits(tree) -> list:
    return [np.asarray(x).view(np.uint32).tolist() for x in jax.tree.leaves(tree)]


# elementwise optimizers of the registry checked bitwise under zero1 (a few: each costs two
# compiles, and the others share their code path)
ZERO1_EQUALITY = ("adam", "momentum", "rmsprop", "adagrad", "lion")


def zero1_equality(mesh) -> dict:
    """zero1 vs unsharded, 3 steps: updates and state bits."""
    replicated = NamedSharding(mesh, P())
    rng = np.random.default_rng(1)
    shapes = {"w": (64, 24), "b": (24,), "s": (), "odd": (5, 3)}
    params = {
        k: jax.device_put(jnp.asarray(rng.normal(size=s).astype(np.float32)), replicated)
        for k, s in shapes.items()
    }
    grads = [
        {
            k: jax.device_put(jnp.asarray(rng.normal(size=s).astype(np.float32)), replicated)
            for k, s in shapes.items()
        }
        for _ in range(3)
    ]
    apply = jax.jit(gx.apply_updates)
    out = {}
    for name in ZERO1_EQUALITY:
        case = OPTIMIZERS[name]
        try:
            base, tx = case.make(), gx.zero1(case.make(), mesh)
            sb, sz = base.init(params), tx.init(params)
            fb, fz = jax.jit(base.update), jax.jit(tx.update)
            pb = pz = params
            equal, worst = True, 0.0
            for g in grads:
                ub, sb = fb(g, sb, pb)
                uz, sz = fz(g, sz, pz)
                for a, b in zip(jax.tree.leaves((ub, sb)), jax.tree.leaves((uz, sz.inner_state))):
                    a, b = np.asarray(a), np.asarray(b)
                    if a.dtype.kind == "f":
                        equal &= bool((a.view(np.uint32) == b.view(np.uint32)).all())
                        scale = max(float(np.abs(a).max(initial=0.0)), 1e-30)
                        worst = max(worst, float(np.abs(a - b).max(initial=0.0)) / scale)
                pb, pz = apply(pb, ub), apply(pz, uz)
            slot_specs = sorted(
                {str(x.sharding.spec) for x in jax.tree.leaves(sz) if x.shape == (64, 24)}
            )
            out[name] = {"bitwise": equal, "worst_rel": worst, "w_state_specs": slot_specs}
        except Exception:  # noqa: BLE001 - reported, and the test fails on it
            out[name] = {"error": traceback.format_exc(limit=4)}
    return out


def zero1_step(mesh, params, tx):
    """The jitted train-step-like update + apply, compiled; its collectives."""

    def step(g, s, p):
        u, s = tx.update(g, s, p)
        return gx.apply_updates(p, u), s

    state = tx.init(params)
    compiled = jax.jit(step).lower(params, state, params).compile()
    return compiled, state


def zero1_memory(devices, hidden: int = 256) -> list[dict]:
    """Per-device adam state bytes of an MLP-shaped tree under zero1, N = 1, 2, 4, 8."""
    shapes = {
        "w1": (hidden, 4 * hidden),
        "b1": (4 * hidden,),
        "w2": (4 * hidden, hidden),
        "b2": (hidden,),
    }
    rows = []
    for n in (1, 2, 4, 8):
        mesh = jax.sharding.Mesh(np.array(devices[:n]), ("data",), axis_types=(AxisType.Auto,))
        rep = NamedSharding(mesh, P())
        params = {k: jax.device_put(jnp.zeros(s, jnp.float32), rep) for k, s in shapes.items()}
        tx = gx.zero1(gx.adam(1e-3), mesh)
        compiled, state = zero1_step(mesh, params, tx)
        per_device = [0] * n
        index = {d: i for i, d in enumerate(mesh.devices.flat)}
        for leaf in jax.tree.leaves(state):
            if leaf.ndim:
                for shard in leaf.addressable_shards:
                    per_device[index[shard.device]] += shard.data.nbytes
        mem = compiled.memory_analysis()
        rows.append(
            {
                "n": n,
                "params": int(sum(np.prod(s) for s in shapes.values())),
                "state_bytes_per_device": per_device,
                "argument_bytes": int(mem.argument_size_in_bytes),
                "output_bytes": int(mem.output_size_in_bytes),
                "temp_bytes": int(mem.temp_size_in_bytes),
                "collectives": collectives(compiled.as_text()),
            }
        )
    return rows


def zero1_fsdp(devices) -> dict:
    """Parameters sharded over "data" (FSDP): state follows them, nothing moves."""
    mesh = jax.sharding.Mesh(
        np.array(devices).reshape(4, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2
    )
    specs = {"w": P("data", "model"), "b": P("data"), "s": P()}
    shapes = {"w": (16, 8), "b": (8,), "s": ()}
    params = {
        k: jax.device_put(jnp.ones(s, jnp.float32), NamedSharding(mesh, specs[k]))
        for k, s in shapes.items()
    }
    tx = gx.zero1(gx.adam(1e-3), mesh, gather_updates=False)
    state = tx.init(params)
    followed = all(
        leaf.sharding.is_equivalent_to(params[k].sharding, leaf.ndim)
        for k in ("w", "b")
        for leaf in (state.inner_state.scale_by_adam.mu[k], state.inner_state.scale_by_adam.nu[k])
    )
    compiled = jax.jit(tx.update).lower(params, state, params).compile()
    updates, new_state = compiled(params, state, params)
    kept = all(updates[k].sharding.is_equivalent_to(params[k].sharding, 2) for k in ("w", "b"))
    kept_state = all(
        b.sharding.is_equivalent_to(a.sharding, a.ndim)
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new_state))
        if a.ndim
    )
    # model-parallel params (not over "data"): zero1 adds "data" on the free dimension
    mp = {"w": jax.device_put(jnp.ones((16, 8)), NamedSharding(mesh, P(None, "model")))}
    mp_state = gx.zero1(gx.adam(1e-3), mesh).init(mp)
    return {
        "state_follows_params": followed,
        "updates_keep_params_sharding": kept,
        "update_keeps_state_sharding": kept_state,
        "collectives": collectives(compiled.as_text()),
        "model_parallel_state_spec": str(mp_state.inner_state.scale_by_adam.mu["w"].sharding.spec),
    }


def main() -> None:
    devices = jax.devices()
    assert len(devices) == 8, devices
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
    report: dict = {"sharding": {}, "zero1": {}, "seconds": {}}
    t0 = time.perf_counter()

    def run(key: str, make, layout: str) -> tuple[str, dict]:
        t1 = time.perf_counter()
        try:
            row = sharding_case(make, mesh, layout)
        except Exception:  # noqa: BLE001 - reported, and the test fails on it
            row = {"errors": [traceback.format_exc(limit=4)], "collectives": []}
        row["seconds"] = time.perf_counter() - t1
        return key, row

    jobs = [
        (f"{name}|{layout}", make, layout) for name, make in cases().items() for layout in LAYOUTS
    ]
    # XLA compiles outside the GIL: two threads keep both cores of a small CI machine busy.
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        report["sharding"] = dict(pool.map(lambda job: run(*job), jobs))
    report["seconds"]["sharding"] = time.perf_counter() - t0
    data_mesh = jax.sharding.Mesh(np.array(devices), ("data",), axis_types=(AxisType.Auto,))
    report["zero1"]["equality"] = zero1_equality(data_mesh)
    report["seconds"]["zero1_equality"] = time.perf_counter() - t0
    report["zero1"]["memory"] = zero1_memory(devices)
    report["seconds"]["zero1_memory"] = time.perf_counter() - t0
    report["zero1"]["fsdp"] = zero1_fsdp(devices)
    Path(sys.argv[1]).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

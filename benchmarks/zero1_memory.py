"""Per-device optimizer-state memory under ZeRO-1 (``gx.zero1``), N = 1, 2, 4, 8 devices.

Runs on 8 host CPU devices (sets ``--xla_force_host_platform_device_count=8`` itself, so
run it as its own process): ``python benchmarks/zero1_memory.py``. An MLP-shaped tree of
about 4.2M float32 parameters, Adam (two slots), replicated parameters, the state sharded
over a "data" axis of N devices. Prints, per N: the live bytes of the state's array
leaves on each device (``leaf.addressable_shards[i].data.nbytes``, summed), the compiled
step's ``memory_analysis()`` (arguments, outputs, temporaries: per device), and the
collectives in the compiled step.
"""

from __future__ import annotations

import os
import re

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import gradxform as gx  # noqa: E402

HIDDEN = 512
SHAPES = {
    "w1": (HIDDEN, 4 * HIDDEN),
    "b1": (4 * HIDDEN,),
    "w2": (4 * HIDDEN, HIDDEN),
    "b2": (HIDDEN,),
    "w3": (HIDDEN, 4 * HIDDEN),
    "w4": (4 * HIDDEN, HIDDEN),
}
_OP = re.compile(
    r"\s(all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)(?:-start)?\("
)


def measure(n: int) -> dict:
    devices = np.array(jax.devices()[:n])
    mesh = jax.sharding.Mesh(devices, ("data",), axis_types=(AxisType.Auto,))
    rep = NamedSharding(mesh, P())
    params = {k: jax.device_put(jnp.zeros(s, jnp.float32), rep) for k, s in SHAPES.items()}
    tx = gx.zero1(gx.adam(1e-3), mesh)
    state = tx.init(params)

    def step(g, s, p):
        u, s = tx.update(g, s, p)
        return gx.apply_updates(p, u), s

    compiled = jax.jit(step).lower(params, state, params).compile()
    per_device = dict.fromkeys(mesh.devices.flat, 0)
    for leaf in jax.tree.leaves(state):
        for shard in leaf.addressable_shards:
            per_device[shard.device] += shard.data.nbytes
    mem = compiled.memory_analysis()
    ops = _OP.findall(compiled.as_text())
    return {
        "n": n,
        "params": int(sum(np.prod(s) for s in SHAPES.values())),
        "state": max(per_device.values()),
        "args": mem.argument_size_in_bytes,
        "out": mem.output_size_in_bytes,
        "temp": mem.temp_size_in_bytes,
        "ops": {op: ops.count(op) for op in sorted(set(ops))},
    }


def main() -> None:
    rows = [measure(n) for n in (1, 2, 4, 8)]
    full = rows[0]["state"]
    mib = 2.0**20
    print(f"adam, {rows[0]['params']:,} float32 params, replicated; state sharded by gx.zero1")
    print(
        "| devices N | state per device (MiB) | x of N=1 | step args (MiB) | step outputs "
        "(MiB) | step temp (MiB) | collectives in the step |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ops = ", ".join(f"{v} {k}" for k, v in r["ops"].items()) or "none"
        print(
            f"| {r['n']} | {r['state'] / mib:.2f} | {r['state'] / full:.3f} | "
            f"{r['args'] / mib:.2f} | {r['out'] / mib:.2f} | {r['temp'] / mib:.2f} | {ops} |"
        )


if __name__ == "__main__":
    main()

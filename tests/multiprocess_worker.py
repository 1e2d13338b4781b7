"""Worker for tests/test_multiprocess.py (not a test module: no ``test_`` prefix).

``python multiprocess_worker.py OUT single`` trains on one device;
``python multiprocess_worker.py OUT multi PORT PROCESS_ID`` is one of two processes
(``jax.distributed`` over 127.0.0.1:PORT, gloo CPU collectives, one CPU device each)
that train the same model data-parallel: the global batch is sharded along a mesh over
the 2 global devices, parameters and optimizer state replicated, and then again with the
Adam state sharded over the 2 processes (``gx.zero1``). They write the final
parameters to OUT/params_<mode><process id>.npy (a flat float32 vector; the ZeRO-1 run
to OUT/params_zero1<process id>.npy); ``single`` also writes the initial ones to
OUT/params_init.npy.
"""

import sys

import jax

MODE = sys.argv[2]
if MODE == "multi":
    # Must be set before initialize: the CPU client is created with these collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{sys.argv[3]}",
        num_processes=2,
        process_id=int(sys.argv[4]),
        initialization_timeout=60,
    )

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import gradxform as gx  # noqa: E402

STEPS, GLOBAL_BATCH, D_IN, HIDDEN = 20, 16, 4, 8


def data():
    """(STEPS, GLOBAL_BATCH, ...) inputs and targets, the same in every process."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS, GLOBAL_BATCH, D_IN)).astype(np.float32)
    w = rng.normal(size=(D_IN, 1)).astype(np.float32)
    y = (np.sin(x @ w) + 0.1 * rng.normal(size=(STEPS, GLOBAL_BATCH, 1))).astype(np.float32)
    return x, y


def init_params():
    rng = np.random.default_rng(1)
    return {
        "w1": (0.5 * rng.normal(size=(D_IN, HIDDEN))).astype(np.float32),
        "b1": np.zeros(HIDDEN, np.float32),
        "w2": (0.5 * rng.normal(size=(HIDDEN, 1))).astype(np.float32),
        "b2": np.zeros(1, np.float32),
    }


def loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] + params["b2"] - y) ** 2)


tx = gx.chain(
    gx.clip_by_global_norm(1.0),
    gx.adam(gx.warmup_cosine_decay_schedule(0.0, 0.05, warmup_steps=5, decay_steps=STEPS)),
)


def step(params, state, x, y):
    grads = jax.grad(loss)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return gx.apply_updates(params, updates), state


def zero1_run(out, mesh, pid, xs, ys) -> None:
    """The same training with the Adam state sharded over the 2 processes (ZeRO-1):
    clipping on the replicated gradients, then gx.zero1(adam): each process stores and
    updates half of every moment, XLA all-gathers the updates."""
    batch = NamedSharding(mesh, P("data"))
    replicated = NamedSharding(mesh, P())
    tx1 = gx.chain(
        gx.clip_by_global_norm(1.0),
        gx.zero1(
            gx.adam(gx.warmup_cosine_decay_schedule(0.0, 0.05, warmup_steps=5, decay_steps=STEPS)),
            mesh,
            "data",
        ),
    )

    def step1(params, state, x, y):
        grads = jax.grad(loss)(params, x, y)
        updates, state = tx1.update(grads, state, params)
        return gx.apply_updates(params, updates), state

    params = jax.tree.map(
        lambda a: jax.make_array_from_process_local_data(replicated, a), init_params()
    )
    state = jax.jit(tx1.init)(params)
    mu = state[1].inner_state.scale_by_adam.mu
    # w1 (4, 8), b1 (8,), w2 (8, 1): split in halves over the processes; b2 (1,) replicated
    assert len(mu["w1"].addressable_shards) == 1
    assert mu["w1"].addressable_shards[0].data.shape == (D_IN // 2, HIDDEN), mu["w1"].sharding
    assert mu["b1"].addressable_shards[0].data.shape == (HIDDEN // 2,)
    assert mu["b2"].sharding.is_fully_replicated
    train = jax.jit(step1, out_shardings=(replicated, None), donate_argnums=(0, 1))
    per = GLOBAL_BATCH // 2
    rows = slice(pid * per, (pid + 1) * per)
    for t in range(STEPS):
        x = jax.make_array_from_process_local_data(batch, xs[t, rows], xs[t].shape)
        y = jax.make_array_from_process_local_data(batch, ys[t, rows], ys[t].shape)
        params, state = train(params, state, x, y)
    mu = state[1].inner_state.scale_by_adam.mu
    assert mu["w1"].addressable_shards[0].data.shape == (D_IN // 2, HIDDEN), mu["w1"].sharding
    params = jax.tree.map(lambda a: a.addressable_data(0), params)
    flat = np.concatenate([np.asarray(a).ravel() for a in jax.tree.leaves(params)])
    np.save(f"{out}/params_zero1{pid}.npy", flat)


def main() -> None:
    out = sys.argv[1]
    xs, ys = data()
    if MODE == "single":
        assert jax.device_count() == 1, jax.devices()
        params = jax.tree.map(jnp.asarray, init_params())
        flat0 = np.concatenate([a.ravel() for a in jax.tree.leaves(init_params())])
        np.save(f"{out}/params_init.npy", flat0)
        state = tx.init(params)
        train = jax.jit(step)
        for t in range(STEPS):
            params, state = train(params, state, xs[t], ys[t])
        tag = "single0"
    else:
        pid = jax.process_index()
        assert jax.process_count() == 2, jax.process_count()
        assert jax.device_count() == 2 and jax.local_device_count() == 1, jax.devices()
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
        batch = NamedSharding(mesh, P("data"))
        replicated = NamedSharding(mesh, P())
        # Replicated: each process holds the whole value.
        params = jax.tree.map(
            lambda a: jax.make_array_from_process_local_data(replicated, a), init_params()
        )
        state = jax.jit(tx.init, out_shardings=replicated)(params)
        train = jax.jit(
            step,
            in_shardings=(replicated, replicated, batch, batch),
            out_shardings=(replicated, replicated),
            donate_argnums=(0, 1),
        )
        per = GLOBAL_BATCH // 2
        rows = slice(pid * per, (pid + 1) * per)  # this process's half of each global batch
        for t in range(STEPS):
            x = jax.make_array_from_process_local_data(batch, xs[t, rows], xs[t].shape)
            y = jax.make_array_from_process_local_data(batch, ys[t, rows], ys[t].shape)
            assert x.sharding == batch and len(x.addressable_shards) == 1
            params, state = train(params, state, x, y)
        assert all(a.sharding == replicated for a in jax.tree.leaves(params))
        params = jax.tree.map(lambda a: a.addressable_data(0), params)
        tag = f"multi{pid}"
        zero1_run(out, mesh, pid, xs, ys)
    flat = np.concatenate([np.asarray(a).ravel() for a in jax.tree.leaves(params)])
    np.save(f"{out}/params_{tag}.npy", flat)
    if MODE == "multi":
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()

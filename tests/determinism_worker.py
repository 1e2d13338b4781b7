"""Worker for tests/test_determinism.py (not a test module: no ``test_`` prefix).

One training run: ``apply_if_finite(accumulate(adam(warmup_cosine_decay_schedule),
every_k=2))`` on a small MLP, NaN micro-batches at steps in ``NAN_STEPS``.

``python determinism_worker.py OUT`` runs all ``STEPS`` micro-steps and writes
``{"params", "opt_state"}`` with ``gx.save`` to OUT;
``python determinism_worker.py OUT STOP`` stops after ``STOP`` micro-steps and writes
the same checkpoint; ``python determinism_worker.py OUT STOP CKPT`` loads CKPT (written
after ``STOP`` steps) with ``gx.load`` and runs the remaining steps.

Importing this module runs nothing (the test builds its ``gx.load`` template from
``template()``).
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx

STEPS, BATCH, D_IN, HIDDEN = 24, 8, 3, 6
NAN_STEPS = (5, 14)  # one before the mid-run checkpoint, one after


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS, BATCH, D_IN)).astype(np.float32)
    y = np.cos(x.sum(-1, keepdims=True)).astype(np.float32)
    x[list(NAN_STEPS), 0, 0] = np.nan
    return x, y


def init_params():
    rng = np.random.default_rng(1)
    return {
        "w1": jnp.asarray(0.5 * rng.normal(size=(D_IN, HIDDEN)), jnp.float32),
        "b1": jnp.zeros(HIDDEN, jnp.float32),
        "w2": jnp.asarray(0.5 * rng.normal(size=(HIDDEN, 1)), jnp.float32),
        "b2": jnp.zeros(1, jnp.float32),
    }


def loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] + params["b2"] - y) ** 2)


tx = gx.apply_if_finite(
    gx.accumulate(
        gx.adam(gx.warmup_cosine_decay_schedule(0.0, 0.05, warmup_steps=3, decay_steps=16)),
        every_k=2,
    ),
    max_consecutive_errors=3,
)


def template():
    params = init_params()
    return {"params": params, "opt_state": tx.init(params)}


@jax.jit
def step(train_state, x, y):
    params, state = train_state["params"], train_state["opt_state"]
    grads = jax.grad(loss)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return {"params": gx.apply_updates(params, updates), "opt_state": state}


def main() -> None:
    out = sys.argv[1]
    stop = int(sys.argv[2]) if len(sys.argv) > 2 else STEPS
    xs, ys = data()
    if len(sys.argv) > 3:  # resume: steps stop .. STEPS from the checkpoint
        train_state = gx.load(sys.argv[3], template())
        first, last = stop, STEPS
    else:
        train_state = template()
        first, last = 0, stop
    for t in range(first, last):
        train_state = step(train_state, xs[t], ys[t])
    gx.save(out, train_state)


if __name__ == "__main__":
    main()

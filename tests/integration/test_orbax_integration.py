"""gradxform states with Orbax: ``StandardCheckpointer`` with and without a template, and
``CheckpointManager`` resuming a run bit for bit."""

from __future__ import annotations

import pytest

ocp = pytest.importorskip(
    "orbax.checkpoint",
    reason="Orbax is in the 'integration' extra: pip install -e '.[integration]'",
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from compile_counter import count_compiles  # noqa: E402

import gradxform as gx  # noqa: E402

PARAMS = {
    "enc": {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.zeros(3)},
    "head": jnp.ones(3),
}


def _tx():
    # adam + a schedule + accumulate + apply_if_finite (outermost, so that a NaN batch
    # reaches no state), with masked and partition inside.
    inner = gx.chain(
        gx.masked(gx.adam(1e-2), "*/b"),
        gx.partition(
            {"mat": gx.sgd(0.05, momentum=0.9), "vec": gx.identity()},
            gx.where(lambda path, leaf: "mat" if leaf.ndim > 1 else "vec"),
        ),
        gx.accumulate(gx.adam(gx.warmup_cosine_decay_schedule(0.0, 1e-2, 3, 20)), 2),
    )
    return gx.chain(guard=gx.apply_if_finite(inner, 3), clip=gx.clip(1.0))


def _bits_equal(a, b) -> bool:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    return ta == tb and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y, equal_nan=True)
        for x, y in zip(la, lb)
    )


def _batch(i):
    g = jax.tree.map(lambda p: jnp.cos(p * (1.0 + 0.1 * i)), PARAMS)
    if i == 5:  # one bad micro-batch: apply_if_finite drops it
        g = jax.tree.map(lambda x: x * jnp.nan, g)
    return g


def _make_step(tx):
    @jax.jit
    def step(params, state, g):
        updates, state = tx.update(g, state, params)
        return gx.apply_updates(params, updates), state

    return step


def _trained(steps=4):
    tx = _tx()
    step = _make_step(tx)
    params, state = PARAMS, tx.init(PARAMS)
    for i in range(steps):
        params, state = step(params, state, _batch(i))
    return params, state


def test_standard_checkpointer_with_a_template(tmp_path):
    params, state = _trained()
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp_path / "c", {"params": params, "opt_state": state})
    ckpt.wait_until_finished()
    for template in (
        {"params": PARAMS, "opt_state": _tx().init(PARAMS)},
        jax.eval_shape(lambda: {"params": PARAMS, "opt_state": _tx().init(PARAMS)}),
    ):
        restored = ckpt.restore(tmp_path / "c", template)
        assert isinstance(restored["opt_state"], gx.ChainState)
        assert _bits_equal(restored, {"params": params, "opt_state": state})
    ckpt.close()


def test_standard_checkpointer_without_a_template(tmp_path):
    params, state = _trained()
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp_path / "c", {"params": params, "opt_state": state})
    ckpt.wait_until_finished()
    raw = ckpt.restore(tmp_path / "c")
    ckpt.close()
    # What Orbax gives back: nested dicts keyed by member names and fields (the same
    # components as gx.state_dict's keys), None where the state has no slot.
    opt = raw["opt_state"]
    assert set(opt) == {"guard", "clip"}
    assert set(opt["guard"]) == {
        "inner_state",
        "consecutive_errors",
        "total_errors",
        "last_finite",
    }
    masked = opt["guard"]["inner_state"]["masked"]
    assert masked["inner_state"]["scale_by_adam"]["mu"]["enc"]["w"] is None
    assert isinstance(opt["guard"]["total_errors"], jax.Array)
    # gx.load_state_dict puts it back into a template by key, whatever the dict order.
    back = gx.load_state_dict(_tx().init(PARAMS), opt)
    assert isinstance(back, gx.ChainState) and _bits_equal(back, state)
    assert _bits_equal(gx.load_state_dict(PARAMS, raw["params"]), params)
    # The same from the abstract template (nothing allocated first).
    abstract = jax.eval_shape(_tx().init, PARAMS)
    assert _bits_equal(gx.load_state_dict(abstract, opt), state)
    # By leaf order instead (jax.tree.unflatten(treedef, jax.tree.leaves(raw))) is not
    # the same: the dicts come back with sorted keys, a chain keeps its members' order.
    treedef = jax.tree.structure(state)
    leaves = jax.tree.leaves(opt)
    assert len(leaves) == treedef.num_leaves
    assert not _bits_equal(jax.tree.unflatten(treedef, leaves), state)


def test_checkpoint_manager_resume_is_bit_identical(tmp_path):
    total, crash_after, every = 12, 7, 3
    tx = _tx()
    step = _make_step(tx)

    # The uninterrupted run.
    params, state = PARAMS, tx.init(PARAMS)
    with count_compiles("step") as compiles:
        for i in range(total):
            params, state = step(params, state, _batch(i))
    assert compiles.n == 1
    assert int(state.guard.total_errors) == 1

    # A run saved every 3 steps that stops after step 7 (last checkpoint: after step 6).
    options = ocp.CheckpointManagerOptions(save_interval_steps=every, max_to_keep=2)
    with ocp.CheckpointManager(tmp_path / "run", options=options) as mngr:
        p, s = PARAMS, tx.init(PARAMS)
        for i in range(crash_after):
            p, s = step(p, s, _batch(i))
            mngr.save(i + 1, args=ocp.args.StandardSave({"params": p, "opt_state": s}))
        mngr.wait_until_finished()

    # A new process would start here: a new manager, the latest step, an abstract template.
    with ocp.CheckpointManager(tmp_path / "run", options=options) as mngr:
        latest = mngr.latest_step()
        assert latest == 6
        abstract = jax.eval_shape(lambda: {"params": PARAMS, "opt_state": tx.init(PARAMS)})
        restored = mngr.restore(latest, args=ocp.args.StandardRestore(abstract))
    p, s = restored["params"], restored["opt_state"]
    with count_compiles("step") as compiles:
        for i in range(latest, total):
            p, s = step(p, s, _batch(i))
    # Orbax's arrays are committed to a device, the uninterrupted run's were not: at most
    # one compile for that (a new process compiles once anyway), none per step.
    assert compiles.n <= 1
    assert _bits_equal(p, params) and _bits_equal(s, state)

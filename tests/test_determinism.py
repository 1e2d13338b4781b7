"""Bitwise reproducibility across processes, and bitwise resume from ``gx.save``.

tests/determinism_worker.py trains ``apply_if_finite(accumulate(adam(schedule), 2))`` for
24 micro-steps with NaN micro-batches at steps 5 and 14, and writes params + optimizer
state with ``gx.save``. Two fresh processes must write the same bits; a third stops
after 10 micro-steps (mid accumulation cycle: one micro-batch summed, one NaN step
counted) and a fourth resumes from that checkpoint in a fresh process: it must end
bitwise where the uninterrupted runs end. (Orbax resume: tests/integration.)
"""

import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

import gradxform as gx

sys.path.insert(0, str(Path(__file__).parent))
import determinism_worker as worker  # noqa: E402

WORKER = Path(__file__).with_name("determinism_worker.py")
STOP = 10
TIMEOUT_S = 120


def _start(*args):
    return subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(*procs):
    try:
        outs = [p.communicate(timeout=TIMEOUT_S)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, f"{p.args} exited with {p.returncode}:\n{out[-4000:]}"


def _assert_bitwise_equal(a, b):
    sa, sb = gx.state_dict(a), gx.state_dict(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        x, y = np.asarray(sa[k]), np.asarray(sb[k])
        assert x.dtype == y.dtype and x.shape == y.shape, k
        assert x.tobytes() == y.tobytes(), f"{k} differs:\n{x}\n{y}"


def test_fresh_processes_and_resume_are_bitwise_identical(tmp_path):
    run_a, run_b = tmp_path / "a.npz", tmp_path / "b.npz"
    ckpt, resumed = tmp_path / "ckpt.npz", tmp_path / "resumed.npz"
    _wait(_start(run_a), _start(run_b), _start(ckpt, STOP))
    _wait(_start(resumed, STOP, ckpt))

    template = worker.template()
    a, b = gx.load(run_a, template), gx.load(run_b, template)
    mid, r = gx.load(ckpt, template), gx.load(resumed, template)

    # The run is what it claims: both NaN micro-batches skipped, 11 optimizer steps.
    s = a["opt_state"]
    assert int(s.total_errors) == 2 and int(s.consecutive_errors) == 0
    assert int(s.inner_state.count) == (worker.STEPS - 2) // 2 == 11
    assert int(s.inner_state.micro_step) == 0
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(a))
    moved = jax.tree.map(lambda p, q: float(np.abs(p - q).max()), a["params"], template["params"])
    assert min(jax.tree.leaves(moved)) > 1e-2
    # The checkpoint is mid-run: one NaN seen, half an accumulation cycle pending.
    m = mid["opt_state"]
    assert int(m.total_errors) == 1 and int(m.inner_state.micro_step) == 1
    assert int(m.inner_state.count) == 4
    assert any(np.abs(np.asarray(x)).max() > 0 for x in jax.tree.leaves(m.inner_state.accumulator))

    _assert_bitwise_equal(a, b)
    _assert_bitwise_equal(a, r)

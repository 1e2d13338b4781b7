"""Data parallelism across processes: two ``jax.distributed`` processes on localhost.

Two worker processes (tests/multiprocess_worker.py), one CPU device each, joined by
``jax.distributed.initialize`` over 127.0.0.1 with gloo CPU collectives, train a small
MLP with ``chain(clip_by_global_norm, adam(warmup_cosine_decay_schedule))`` for 20
steps: each process feeds its half of every global batch
(``jax.make_array_from_process_local_data`` on a mesh over the 2 global devices),
parameters and optimizer state are replicated, and ``jit`` all-reduces the gradients. A
third process trains the same model on the whole global batch on one device. The final
parameters must agree. The two workers then train again with the Adam state sharded
over the 2 processes (``gx.zero1``, ZeRO-1): same final parameters, same tolerance.

Not bitwise: the data-parallel gradient is (sum of half 1) + (sum of half 2) combined by
the all-reduce, the single-device one sums the 16 examples in XLA's own order, so the
two gradients differ by float32 rounding (a few ulps) at every step. Adam's step is
bounded by the learning rate and is a smooth function of the gradient away from zero
(gradients here are not near zero, and clipping keeps them bounded), so each step moves
the two runs apart by a few ulps of the update plus at most half an ulp of the
parameters' rounding in ``apply_updates``; over 20 steps that is below
``STEPS * eps * max|p|``, about 2.9e-6 here (the observed difference is 1 ulp, 1.2e-7,
with 41 of 49 parameters differing). Both workers must end bitwise equal to each other
(the same replicated computation), and training must move the parameters far more than
the tolerance, so the comparison is not vacuous.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("multiprocess_worker.py")
STEPS = 20  # multiprocess_worker.STEPS
TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env() -> dict[str, str]:
    """The environment without conftest's forced device count: one CPU device each."""
    env = dict(os.environ)
    flags = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    env["XLA_FLAGS"] = " ".join(flags)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def test_two_process_data_parallel_matches_single_process(tmp_path):
    port = _free_port()
    env = _child_env()
    cmds = {
        "multi0": [sys.executable, WORKER, tmp_path, "multi", str(port), "0"],
        "multi1": [sys.executable, WORKER, tmp_path, "multi", str(port), "1"],
        "single0": [sys.executable, WORKER, tmp_path, "single"],
    }
    procs = {
        k: subprocess.Popen(
            [str(a) for a in cmd],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for k, cmd in cmds.items()
    }
    outputs = {}
    try:
        for k, p in procs.items():
            outputs[k] = p.communicate(timeout=TIMEOUT_S)[0]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.communicate()
    for k, p in procs.items():
        assert p.returncode == 0, f"{k} exited with {p.returncode}:\n{outputs[k][-4000:]}"

    multi0, multi1, single = (np.load(tmp_path / f"params_{k}.npy") for k in cmds)
    assert multi0.dtype == single.dtype == np.float32 and multi0.shape == single.shape
    # Replicated parameters: both processes hold the same bits.
    np.testing.assert_array_equal(multi0.view(np.uint32), multi1.view(np.uint32))
    assert np.isfinite(single).all()
    tol = STEPS * np.finfo(np.float32).eps * max(1.0, float(np.abs(single).max()))
    np.testing.assert_allclose(multi0, single, rtol=0, atol=tol)

    # ZeRO-1 (the Adam state split over the 2 processes): the same tolerance against
    # the single-process run, both processes bitwise equal (replicated parameters).
    z0, z1 = (np.load(tmp_path / f"params_zero1{i}.npy") for i in (0, 1))
    np.testing.assert_array_equal(z0.view(np.uint32), z1.view(np.uint32))
    np.testing.assert_allclose(z0, single, rtol=0, atol=tol)

    # Not vacuous: 20 steps move the parameters by much more than the tolerance.
    init = np.load(tmp_path / "params_init.npy")
    assert np.abs(single - init).max() > 1000 * tol

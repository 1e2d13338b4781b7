"""Sharding on 8 host devices, for every named optimizer and wrapper, and ZeRO-1.

One subprocess (tests/sharding_8dev_worker.py, 8 host CPU devices: the pytest process has
4 already initialised) loops over every case and writes a JSON report; the tests here
assert on it. Per transform and per layout of a 2 x 4 ("data", "model") mesh (replicated
data parallel; params sharded over "model"; matrices over both axes):

- ``init`` on sharded arrays, ``jax.eval_shape(init)`` on ShapeDtypeStructs carrying
  shardings, and ``jit(init, out_shardings=...)`` give slots with the params' shardings,
  scalars replicated;
- a jitted ``update`` keeps every sharding (updates like params, state like its input);
- the collectives in the compiled update's HLO are those the math needs: none for
  elementwise rules and for replicated params, one all-reduce of per-leaf scalar partial
  sums for a global norm (per group of leaves sharded over the same mesh axes).

KNOWN lists the transforms whose report shows a finding, each with its reason; they are
excluded from the strict checks only for the finding named, and the rest of their row is
still checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import OPTIMIZERS

WORKER = Path(__file__).with_name("sharding_8dev_worker.py")
TIMEOUT_S = 900
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")

# Per-coordinate rules: no reduction over a parameter, so no collective on any layout.
ELEMENTWISE = {
    "sgd", "momentum", "nesterov", "heavy_ball", "adagrad", "adadelta", "rmsprop", "adam",
    "adamw", "amsgrad", "nadam", "radam", "adamax", "lion",
    "compose:accumulate", "compose:lookahead", "compose:conditionally_transform",
    "compose:reduce_on_plateau", "compose:scale_by_schedule", "compose:project",
    "compose:keep_params_nonnegative", "masked(adam)", "partition(adam|sgd)",
    "freeze(adam, b)", "clip+sgd", "add_noise+sgd", "scale_by_sign",
}  # fmt: skip

# Findings: name -> the reason its sharding errors are not failures here.
KNOWN = {
    # freeze emits zeros for frozen leaves built without the gradient's sharding: under
    # jit they come out replicated (no communication, but the update's sharding changes).
    "freeze(adam, b)": "frozen leaves' zero updates are replicated",
    # L-BFGS keeps (memory, *param) histories; init does not shard them like the params,
    # the update does (the state's sharding changes on the first step), and the two-loop
    # recursion all-gathers param-sized vectors.
    "scale_by_lbfgs": "history slots not sharded like params; all-gathers",
    # SM3's per-axis accumulators are not params-shaped: init gives them no sharding
    # from abstract params, update shards them. (Adafactor's factors use
    # _leafwise.new_reduced_slot, which does; SM3 could too.)
    "sm3": "per-axis accumulators not sharded at init",
    # Newton-Schulz orthogonalisation multiplies the sharded matrix by its transpose:
    # a matmul over a sharded contraction dimension, whose operands XLA gathers.
    "muon": "matrix products of a sharded matrix gather it",
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    flags = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    env["XLA_FLAGS"] = " ".join([*flags, "--xla_force_host_platform_device_count=8"])
    env["JAX_PLATFORMS"] = "cpu"
    return env


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharding8") / "report.json"
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(out)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def _rows(report):
    for key, row in report["sharding"].items():
        name, layout = key.rsplit("|", 1)
        yield name, layout, row


def _ops(row) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op, _ in row["collectives"]:
        counts[op] = counts.get(op, 0) + 1
    return counts


def test_every_registry_optimizer_and_layout_is_in_the_report(report):
    names = {name for name, _, _ in _rows(report)}
    assert set(OPTIMIZERS) <= names
    assert {"compose:nested", "masked(adam)", "partition(adam|sgd)"} <= names
    assert len(report["sharding"]) == 3 * len(names)


def test_state_and_updates_keep_the_params_shardings(report):
    bad = [
        f"{name}|{layout}: {e[:400]}"
        for name, layout, row in _rows(report)
        for e in row["errors"]
        if name not in KNOWN or "Traceback" in e
    ]
    assert not bad, "\n".join(bad)


def test_replicated_params_need_no_collective(report):
    bad = {n: row["collectives"] for n, lay, row in _rows(report) if lay == "data"}
    assert not {n: c for n, c in bad.items() if c}


def test_elementwise_transforms_need_no_collective_on_any_layout(report):
    found = {
        f"{n}|{lay}": row["collectives"]
        for n, lay, row in _rows(report)
        if n in ELEMENTWISE and row["collectives"]
    }
    assert not found
    assert {n for n, _, _ in _rows(report)} >= ELEMENTWISE


def test_no_transform_gathers_or_permutes_sharded_arrays(report):
    # Only reductions may communicate: gathering a sharded parameter-sized array, or
    # moving one between devices, is never needed by an optimizer that follows params.
    bad = {
        f"{n}|{lay}": _ops(row)
        for n, lay, row in _rows(report)
        if n not in KNOWN and set(_ops(row)) - {"all-reduce"}
    }
    assert not bad


def test_global_norm_clipping_all_reduces_only_per_leaf_scalars(report):
    rows = {lay: row for n, lay, row in _rows(report) if n == "clip_by_global_norm+adam"}
    # params over "model" only: one all-reduce of the 3 sharded leaves' partial sums
    # (the scalar param is replicated and needs none).
    assert rows["model"]["collectives"] == [["all-reduce", 3]]
    # 2-D: the leaves are sharded over different axis sets; XLA reduces each group
    # separately, every all-reduce carrying at most one scalar per leaf.
    ops = rows["2d"]["collectives"]
    assert {op for op, _ in ops} == {"all-reduce"}
    assert 1 <= len(ops) <= 3 and all(n <= 3 for _, n in ops), ops


# --------------------------------------------------------------------------------------
# ZeRO-1


def test_zero1_is_bitwise_the_unsharded_run_for_elementwise_optimizers(report):
    eq = report["zero1"]["equality"]
    assert eq, "no optimizer checked"
    for name, row in eq.items():
        assert "error" not in row, (name, row.get("error"))
        assert row["bitwise"], (name, row["worst_rel"])
        # the (64, 24) slots are split along their first dimension over the 8 devices
        assert row["w_state_specs"] in ([], ["P('data',)"]), (name, row["w_state_specs"])


def test_zero1_state_memory_per_device_falls_as_one_over_n(report):
    rows = report["zero1"]["memory"]
    assert [r["n"] for r in rows] == [1, 2, 4, 8]
    full = rows[0]["state_bytes_per_device"][0]
    assert full == 2 * 4 * rows[0]["params"]  # adam: mu and nu, float32
    for r in rows:
        # every leaf of the MLP-shaped tree divides by 8: exactly 1/N on every device
        assert r["state_bytes_per_device"] == [full // r["n"]] * r["n"], r
        if r["n"] > 1:
            # the only communication: one all-gather of the updates per sharded leaf
            assert {op for op, _ in r["collectives"]} == {"all-gather"}, r["collectives"]
            assert len(r["collectives"]) == 4
        else:
            assert r["collectives"] == []


def test_zero1_with_fsdp_params_state_follows_params_and_nothing_moves(report):
    fsdp = report["zero1"]["fsdp"]
    assert fsdp["state_follows_params"]
    assert fsdp["updates_keep_params_sharding"]
    assert fsdp["update_keeps_state_sharding"]
    assert fsdp["collectives"] == []
    # model-parallel params P(None, "model"): zero1 adds "data" on the free dimension
    assert fsdp["model_parallel_state_spec"] == "P('data', 'model')"

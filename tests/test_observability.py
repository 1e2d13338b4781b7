"""Changing and reading hyperparameters, the metrics side channel, and the loggers."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx


def _params():
    return {"w": jnp.asarray([1.0, -2.0, 3.0]), "b": jnp.asarray(0.5)}


def test_replace_by_name_and_path():
    tx = gx.adamw(1e-3, weight_decay=0.1)
    new = gx.replace(tx, learning_rate=3e-4, weight_decay=0.05)
    assert new.scale_by_learning_rate.learning_rate == 3e-4
    assert new.add_decayed_weights.weight_decay == 0.05
    assert new.name == "adamw" and new.names == tx.names
    assert tx.scale_by_learning_rate.learning_rate == 1e-3  # the original is untouched
    assert gx.replace(tx, {".scale_by_adam.b2": 0.99}).scale_by_adam.b2 == 0.99
    # Same structure: same treedef, only leaf values differ.
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(tx)


def test_replace_keeps_masks():
    tx = gx.adamw(1e-3, weight_decay=0.1, weight_decay_mask={"w": True, "b": False})
    new = gx.replace(tx, weight_decay=0.2)
    assert new.add_decayed_weights.mask == tx.add_decayed_weights.mask
    p = _params()
    g = jax.tree_util.tree_map(jnp.zeros_like, p)
    u, _ = new.update(g, new.init(p), p)
    assert float(u["b"]) == 0.0 and float(u["w"][0]) != 0.0


def test_replace_reaches_into_schedules_and_validates():
    tx = gx.sgd(gx.cosine_decay_schedule(0.1, 100))
    new = gx.replace(tx, init_value=0.2)
    assert new.scale_by_learning_rate.learning_rate.init_value == 0.2
    with pytest.raises(ValueError, match=r"b1 must be a finite number in \[0, 1\), got 1.5"):
        gx.replace(gx.adam(), b1=1.5)
    with pytest.raises(ValueError, match=r"\['b3'\] matched no field.*\.scale_by_adam\.b1"):
        gx.replace(gx.adam(), b3=0.5)
    with pytest.raises(ValueError, match=r"\['\.adam\.b1'\] matched no field"):
        gx.replace(gx.adam(), {".adam.b1": 0.5})


def test_replace_reaches_tuple_elements_by_path():
    tx = gx.sgd(gx.piecewise_constant_schedule((10, 20), (1.0, 0.5, 0.1)))
    path = ".scale_by_learning_rate.learning_rate.values[1]"
    assert path in gx.hyperparams(tx)  # the path hyperparams prints is the one replace takes
    new = gx.replace(tx, {path: 0.25})
    assert new.scale_by_learning_rate.learning_rate.values == (1.0, 0.25, 0.1)
    assert tx.scale_by_learning_rate.learning_rate.values == (1.0, 0.5, 0.1)
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(tx)
    # A field name never matches a tuple element.
    with pytest.raises(ValueError, match=r"\['values\[1\]'\] matched no field"):
        gx.replace(tx, **{"values[1]": 0.25})


def test_replaced_transform_runs_without_retrace():
    traces = []

    @jax.jit
    def step(tx, p, s):
        traces.append(None)
        u, s = tx.update(p, s, p)
        return gx.apply_updates(p, u), s

    tx = gx.adam(1e-2)
    p = _params()
    s = tx.init(p)
    p1, _ = step(tx, p, s)
    p2, _ = step(gx.replace(tx, learning_rate=2e-2), p, s)
    assert len(traces) == 1
    # Adam's first step is lr * sign(g): twice the rate, twice the move.
    np.testing.assert_allclose(
        np.asarray(p2["w"] - p["w"]), 2 * np.asarray(p1["w"] - p["w"]), rtol=1e-5
    )


def test_hyperparams_evaluates_schedules_at_the_state_count():
    sched = gx.exponential_decay(0.1, decay_rate=0.5)
    tx = gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(sched, weight_decay=0.01))
    p = _params()
    s = tx.init(p)
    for _ in range(3):
        _, s = tx.update(p, s, p)
    hp = jax.jit(gx.hyperparams)(tx, s)
    assert float(hp[".adamw.scale_by_learning_rate.learning_rate"]) == pytest.approx(0.1 * 0.5**3)
    assert float(hp[".clip_by_global_norm.max_norm"]) == 1.0
    assert float(hp[".adamw.scale_by_adam.b2"]) == pytest.approx(0.999)
    # bfloat16 params do not make hyperparameters bfloat16.
    assert all(v.dtype == jnp.float32 for v in hp.values())
    # Without a state, a schedule's own numbers are listed.
    assert float(
        gx.hyperparams(tx)[".adamw.scale_by_learning_rate.learning_rate.init_value"]
    ) == pytest.approx(0.1)


def test_hyperparams_inside_partition_and_wrappers():
    p = {"x": jnp.ones(2)}
    tx = gx.partition({"a": gx.adam(gx.linear_schedule(1.0, 0.0, 10))}, {"x": "a"})
    s = tx.update(p, tx.init(p), p)[1]
    hp = gx.hyperparams(tx, s)  # the schedule evaluated at the label's own count
    assert float(hp[".transforms['a'].scale_by_learning_rate.learning_rate"]) == pytest.approx(0.9)
    cond = gx.conditionally_transform(gx.adam(0.1), lambda t: t < 3)
    assert not any("should_transform" in k for k in gx.hyperparams(cond, cond.init(p)))
    piecewise = gx.sgd(gx.piecewise_constant_schedule((10,), (0.1, 0.01)))
    hp = gx.hyperparams(piecewise)
    assert float(hp[".scale_by_learning_rate.learning_rate.values[1]"]) == pytest.approx(0.01)
    # A static field (structure, not a value) is not a hyperparameter.
    assert set(gx.hyperparams(gx.add_noise(seed=3))) == {".eta", ".gamma"}


def test_config_keys_and_array_hyperparameters_for_mlflow():
    key = gx.logging._mlflow_key
    assert key(".transforms['x'].scale.learning_rate") == "transforms.x.scale.learning_rate"
    assert key(".learning_rate.values[0]") == "learning_rate.values.0"
    conf = gx.logging.config_dict(gx.lbfgs(lower={"coef": jnp.zeros(3)}))
    assert conf[".scale_by_lbfgs.lower['coef']"] == [0.0, 0.0, 0.0]
    assert key(".partition.transforms[''].b1") == "partition.transforms..b1"  # empty label


def test_config_of_non_numeric_leaves_and_infinite_bounds(tmp_path):
    # A function leaf (as in an Optax transform chained in) was a crash; an infinite
    # bound inside a tree was written as Infinity, which is not JSON.
    class OptaxStyle(NamedTuple):  # what optax.GradientTransformation is
        init: Callable
        update: Callable

    scale = OptaxStyle(lambda p: (), lambda u, s, p=None: (jax.tree.map(lambda g: 2 * g, u), s))
    tx = gx.chain(gx.lbfgs(upper={"x": jnp.inf}), extra=scale)
    # The Optax-style member is structure (a chain holding it can be a jit argument): it
    # has no leaf path, and the config shows it in the repr.
    assert ".extra.init" not in gx.logging.config_dict(tx)
    assert "extra=OptaxStyle(init=<function" in gx.logging.config_dict(tx)["repr"]
    conf = gx.logging.config_dict(tx)
    assert conf[".lbfgs.scale_by_lbfgs.upper['x']"] == float("inf")
    log = gx.logging.JsonlLogger(tmp_path / "c.jsonl")
    log.log_config(tx)
    log.close()
    line = json.loads((tmp_path / "c.jsonl").read_text(), parse_constant=_no_constants)
    assert line["config"][".lbfgs.scale_by_lbfgs.upper['x']"] is None
    csv_log = gx.logging.CsvLogger(tmp_path / "c.csv")
    csv_log.log_config(tx)
    csv_log.close()
    json.loads((tmp_path / "c.csv.config.json").read_text(), parse_constant=_no_constants)
    log = gx.logging.JsonlLogger(tmp_path / "d.jsonl")
    with pytest.raises(ValueError, match="may not be named 'step'"):
        log.log_metrics({"step": 3.0}, 0)
    log.close()


def _no_constants(name):
    raise ValueError(f"not JSON: {name}")


def test_metrics_inside_jit():
    tx = gx.chain(
        gx.monitor(),
        gx.clip_by_global_norm(1.0),
        gx.adam(gx.linear_schedule(0.1, 0.0, 10)),
        gx.monitor(),
    )
    p = {"w": jnp.asarray([3.0, 4.0])}  # gradient = params: norm 5

    @jax.jit
    def step(p, s):
        u, s = tx.update(p, s, p)
        return gx.apply_updates(p, u), s, gx.metrics(s)

    p1, s, m = step(p, tx.init(p))
    assert set(m) == {
        "monitor_0/update_norm",
        "monitor_0/param_norm",
        "monitor_0/update_max",
        "monitor_0/nonfinite",
        "clip_by_global_norm/norm_before",
        "clip_by_global_norm/norm_after",
        "adam/scale_by_learning_rate/learning_rate",
        "monitor_1/update_norm",
        "monitor_1/param_norm",
        "monitor_1/update_max",
        "monitor_1/nonfinite",
    }
    assert float(m["monitor_0/update_norm"]) == pytest.approx(5.0)
    assert float(m["monitor_0/update_max"]) == pytest.approx(4.0)
    assert float(m["clip_by_global_norm/norm_before"]) == pytest.approx(5.0)
    assert float(m["clip_by_global_norm/norm_after"]) == pytest.approx(1.0)
    assert float(m["adam/scale_by_learning_rate/learning_rate"]) == pytest.approx(0.1)
    # Adam's first step moves each coordinate by lr: norm 0.1 * sqrt(2).
    assert float(m["monitor_1/update_norm"]) == pytest.approx(0.1 * np.sqrt(2), rel=1e-5)
    _, _, m2 = step(p1, s)
    assert float(m2["adam/scale_by_learning_rate/learning_rate"]) == pytest.approx(0.09)
    assert int(m2["monitor_0/nonfinite"]) == 0


def test_monitor_counts_nonfinite_and_passes_updates_through():
    tx = gx.monitor()
    g = {"w": jnp.asarray([1.0, jnp.nan, jnp.inf]), "skip": None}
    u, s = tx.update(g, tx.init(g))
    assert u is g
    assert int(s.nonfinite) == 2
    assert gx.metrics(s)["nonfinite"] == s.nonfinite
    # Python complex leaves count everywhere (update_max and nonfinite skipped them).
    _, s = tx.update({"z": 3 + 4j, "n": complex("nan+1j")}, s)
    assert int(s.nonfinite) == 1 and np.isnan(float(s.update_max))
    _, s = tx.update({"z": 3 + 4j}, s)
    assert float(s.update_max) == 5.0 == float(s.update_norm)


def _train(logger, steps=20):
    tx = gx.chain(gx.clip_by_global_norm(1.0), gx.sgd(gx.exponential_decay(0.1, decay_rate=0.9)))
    p = {"w": jnp.asarray([2.0, -1.0])}
    s = tx.init(p)
    loss_fn = lambda p: jnp.sum(p["w"] ** 2)  # noqa: E731
    logger.log_config(tx)
    expected = []

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(loss_fn)(p)
        u, s = tx.update(g, s, p)
        return gx.apply_updates(p, u), s, {"loss": loss, **gx.metrics(s)}

    for i in range(steps):
        p, s, m = step(p, s)
        logger.log_metrics(m, step=i)
        expected.append({k: float(v) for k, v in m.items()})
    logger.close()
    return expected


def test_jsonl_logger(tmp_path):
    path = tmp_path / "log.jsonl"
    expected = _train(gx.logging.JsonlLogger(path))
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0]["config"][".clip_by_global_norm.max_norm"] == 1.0
    assert "exponential_decay" in lines[0]["config"]["repr"]
    assert [row.pop("step") for row in lines[1:]] == list(range(20))
    assert lines[1:] == expected


def test_csv_logger(tmp_path):
    path = tmp_path / "log.csv"
    expected = _train(gx.logging.CsvLogger(path))
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r.pop("step")) for r in rows] == list(range(20))
    assert [{k: float(v) for k, v in r.items()} for r in rows] == expected
    cfg = json.loads((tmp_path / "log.csv.config.json").read_text())
    assert cfg[".sgd.scale_by_learning_rate.learning_rate.decay_rate"] == 0.9


def test_csv_logger_rejects_changing_columns(tmp_path):
    log = gx.logging.CsvLogger(tmp_path / "x.csv")
    log.log_metrics({"a": 1.0}, 0)
    with pytest.raises(ValueError, match=r"metric names changed: columns are \['step', 'a'\]"):
        log.log_metrics({"b": 1.0}, 1)
    log.close()


# MLflow's SQLite store uses a SQLAlchemy loader option deprecated in SQLAlchemy 2.1;
# that is MLflow's business, not a failure of ours.
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
def test_mlflow_logger_round_trip(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # nothing set: our default
    logger = gx.logging.MLflowLogger(experiment="test", run_name="sgd-run")
    assert logger.tracking_uri == "sqlite:///" + str(tmp_path / "mlflow.db")
    expected = _train(logger)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=logger.tracking_uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "sgd-run"
    assert run.data.params["clip_by_global_norm.max_norm"] == "1.0"
    assert "exponential_decay" in run.data.params["repr"]
    for key in expected[0]:
        history = sorted(client.get_metric_history(logger.run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == list(range(20)), key
        # MLflow stores float64; our values are float32 scalars converted exactly.
        assert [m.value for m in history] == [row[key] for row in expected], key


def test_wrappers_report_skips_phase_and_plateau_scale():
    tx = gx.chain(
        gx.apply_if_finite(gx.accumulate(gx.sgd(gx.constant_schedule(0.1)), every_k=2), 3),
        gx.reduce_on_plateau(factor=0.5, patience=0),
    )
    p = {"w": jnp.ones(2)}
    s = tx.init(p)
    _, s = tx.update({"w": jnp.asarray([jnp.nan, 1.0])}, s, p, value=jnp.asarray(1.0))
    _, s = tx.update({"w": jnp.ones(2)}, s, p, value=jnp.asarray(2.0))
    m = gx.metrics(s)
    assert int(m["apply_if_finite/total_errors"]) == 1
    assert int(m["apply_if_finite/consecutive_errors"]) == 0
    assert int(m["apply_if_finite/inner_state/micro_step"]) == 1
    assert int(m["apply_if_finite/inner_state/optimizer_step"]) == 0
    assert float(m["reduce_on_plateau/best_value"]) == 1.0
    assert float(m["reduce_on_plateau/scale"]) == 0.5  # no improvement, patience 0
    assert "apply_if_finite/inner_state/inner_state/scale_by_learning_rate/learning_rate" in m

"""MLflowLogger as MLflow users expect it: the tracking URI in effect, the active run,
``with`` blocks, and a real tracking server reached over HTTP.

The default store (a SQLite file in the working directory) is covered by
``test_observability.py::test_mlflow_logger_round_trip``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import jax
import jax.numpy as jnp
import pytest

import gradxform as gx

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

# MLflow's SQLite store uses a SQLAlchemy loader option deprecated in SQLAlchemy 2.1;
# that is MLflow's business, not a failure of ours.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    """One SQLite store for the module's tests (creating a store runs its migrations)."""
    return "sqlite:///" + str(tmp_path_factory.mktemp("mlflow") / "store.db")


@pytest.fixture(scope="module")
def other_uri(tmp_path_factory):
    """A second store, for the tests where an explicit tracking_uri names another one."""
    return "sqlite:///" + str(tmp_path_factory.mktemp("mlflow") / "other.db")


@pytest.fixture(autouse=True)
def clean_mlflow(tmp_path, monkeypatch):
    """No tracking URI set and no active run, in an empty working directory; restored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # before monkeypatch restores the environment


def _log(logger, steps=3):
    tx = gx.chain(gx.clip_by_global_norm(1.0), gx.sgd(0.1))
    p = {"w": jnp.asarray([2.0, -1.0])}
    s = tx.init(p)
    logger.log_config(tx)
    losses = []
    for i in range(steps):
        loss, g = jax.value_and_grad(lambda p: jnp.sum(p["w"] ** 2))(p)
        u, s = tx.update(g, s, p)
        p = gx.apply_updates(p, u)
        logger.log_metrics({"loss": loss, **gx.metrics(s)}, step=i)
        losses.append(float(loss))
    return losses


def _history(client, run_id, key):
    return [
        (m.step, m.value)
        for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
    ]


def test_env_var_is_honoured(store_uri, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    logger = gx.logging.MLflowLogger(experiment="env", run_name="r")
    assert logger.tracking_uri == store_uri and logger.owns_run
    losses = _log(logger)
    logger.close()
    run = MlflowClient(store_uri).get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "r"
    assert _history(MlflowClient(store_uri), logger.run_id, "loss") == list(enumerate(losses))
    assert not (tmp_path / "mlflow.db").exists()  # not the default store


def test_set_tracking_uri_is_honoured_and_an_argument_wins(store_uri, other_uri, tmp_path):
    mlflow.set_tracking_uri(store_uri)
    logger = gx.logging.MLflowLogger(experiment="set")
    assert logger.tracking_uri == store_uri
    _log(logger)
    logger.close()
    assert (
        MlflowClient(store_uri)
        .get_run(logger.run_id)
        .data.params["sgd.scale_by_learning_rate.learning_rate"]
        == "0.1"
    )
    assert not (tmp_path / "mlflow.db").exists()
    # An explicit tracking_uri wins over the one set.
    logger = gx.logging.MLflowLogger(experiment="set", tracking_uri=other_uri)
    logger.close()
    assert logger.tracking_uri == other_uri
    assert MlflowClient(other_uri).get_run(logger.run_id).info.status == "FINISHED"


def test_active_run_is_reused_and_left_open(store_uri):
    mlflow.set_tracking_uri(store_uri)
    client = MlflowClient(store_uri)
    with mlflow.start_run(run_name="user-run") as run:
        mlflow.log_param("batch_size", 32)
        logger = gx.logging.MLflowLogger(experiment="ignored", run_name="ignored")
        assert logger.run_id == run.info.run_id and not logger.owns_run
        losses = _log(logger)
        logger.close()
        # close() does not end a run it did not start.
        assert mlflow.active_run().info.run_id == run.info.run_id
        assert client.get_run(run.info.run_id).info.status == "RUNNING"
        mlflow.log_metric("after_close", 1.0)
        # Neither does the end of a `with` block, even a failing one.
        with pytest.raises(ZeroDivisionError):
            with gx.logging.MLflowLogger() as log:
                log.log_metrics({"extra": 1.0}, step=0)
                1 / 0  # noqa: B018
        assert client.get_run(run.info.run_id).info.status == "RUNNING"
    got = client.get_run(run.info.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "user-run"
    assert got.data.params["batch_size"] == "32" and "repr" in got.data.params
    assert set(got.data.metrics) >= {"loss", "after_close", "extra"}
    assert _history(client, run.info.run_id, "loss") == list(enumerate(losses))
    assert client.get_experiment_by_name("ignored") is None  # no run of its own anywhere


def test_active_run_in_another_store_is_not_reused(store_uri, other_uri):
    mlflow.set_tracking_uri(store_uri)
    with mlflow.start_run() as run:
        logger = gx.logging.MLflowLogger(tracking_uri=other_uri)
        logger.close()
        assert logger.run_id != run.info.run_id and logger.owns_run
        assert mlflow.active_run().info.run_id == run.info.run_id


def test_context_manager_finishes_or_fails_its_run(store_uri):
    client = MlflowClient(store_uri)
    with gx.logging.MLflowLogger(experiment="ctx", tracking_uri=store_uri) as log:
        _log(log)
        assert client.get_run(log.run_id).info.status == "RUNNING"
    assert client.get_run(log.run_id).info.status == "FINISHED" and log.closed
    log.close()  # idempotent

    with pytest.raises(RuntimeError, match="diverged"):
        with gx.logging.MLflowLogger(experiment="ctx", tracking_uri=store_uri) as log:
            losses = _log(log, steps=2)
            raise RuntimeError("diverged")
    run = client.get_run(log.run_id)
    assert run.info.status == "FAILED"
    assert _history(client, log.run_id, "loss") == list(enumerate(losses))  # kept


def test_batches_stay_within_mlflow_limits(store_uri):
    # 120 hyperparameters (+ repr) and 1,500 metrics: more than one log_batch each.
    tx = gx.chain(*[gx.scale(float(i)) for i in range(120)])
    with gx.logging.MLflowLogger(experiment="big", tracking_uri=store_uri) as log:
        log.log_config(tx)
        log.log_metrics({f"m{i}": float(i) for i in range(1500)}, step=0)
    run = MlflowClient(store_uri).get_run(log.run_id)
    assert len(run.data.params) == 121 and len(run.data.metrics) == 1500
    assert run.data.metrics["m1499"] == 1499.0


# --------------------------------------------------------------------------------------
# A real tracking server (`mlflow server`, SQLite backend) on 127.0.0.1, over HTTP.
# mlflow-skinny lacks the server's Flask, Flask-CORS and aiohttp: the test extra adds them.

# Seconds. It took 12-25 s on a busy 2-core machine: MLflow imports a lot and migrates a
# fresh SQLite store. The wait ends early if the server process exits.
SERVER_START_TIMEOUT = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    pytest.importorskip("flask", reason="mlflow server needs Flask (the test extra)")
    pytest.importorskip("flask_cors", reason="mlflow server needs Flask-CORS (the test extra)")
    pytest.importorskip("aiohttp", reason="mlflow server needs aiohttp (the test extra)")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{root / 'db.sqlite'}",
           "--default-artifact-root", str(root / "art")]  # fmt: skip
    # No background job runner (it would need huey and more, and start more processes).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        # Its own session: the teardown stops the server and the worker it spawns.
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not _answers(url + "/health"):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = "exited" if proc.poll() is not None else "did not answer in time"
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow server {why}:\n{tail}")
            time.sleep(0.25)
        yield url
    finally:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        # The worker shares the session; make sure nothing of it outlives the test.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_real_tracking_server_over_http(tracking_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    with gx.logging.MLflowLogger(experiment="server", run_name="http") as log:
        assert log.tracking_uri == tracking_server
        losses = _log(log, steps=5)
    client = MlflowClient(tracking_uri=tracking_server)
    run = client.get_run(log.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "http"
    assert run.data.params["clip_by_global_norm.max_norm"] == "1.0"
    assert _history(client, log.run_id, "loss") == list(enumerate(losses))
    lr = _history(client, log.run_id, "sgd/scale_by_learning_rate/learning_rate")
    assert [v for _, v in lr] == pytest.approx([0.1] * 5)

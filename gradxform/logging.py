"""Loggers for per-step metrics and the optimizer's configuration.

A logger has three methods: ``log_config(tx)`` records the transform's configuration
(every hyperparameter by path, plus its ``repr``), ``log_metrics(metrics, step)`` records
a ``{name: scalar}`` dict (typically ``gx.metrics(state)`` plus your loss), and
``close()``. Values may be JAX arrays: they are fetched to the host here, so call the
loggers outside ``jit``.

- ``JsonlLogger(path)`` and ``CsvLogger(path)``: no dependency beyond the standard library.
- ``MLflowLogger(experiment, run_name, tracking_uri)``: logs to an MLflow run (seed 004
  logs every epoch's loss to MLflow): the active run if there is one, else a run of its
  own (a context manager ends it). The tracking URI is ``tracking_uri``, else the one set
  with ``mlflow.set_tracking_uri`` or ``MLFLOW_TRACKING_URI``, else a local SQLite store
  ``sqlite:///mlflow.db`` in the working directory, so it works on a fresh machine with no
  server. Needs the ``mlflow`` extra.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from typing import Any, Protocol

import jax
import numpy as np

__all__ = ["Logger", "JsonlLogger", "CsvLogger", "MLflowLogger", "config_dict"]


class Logger(Protocol):
    def log_config(self, tx: Any) -> None: ...

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None: ...

    def close(self) -> None: ...


def config_dict(tx: Any) -> dict[str, Any]:
    """Every hyperparameter leaf by key path, as given (Python numbers stay exact), plus
    ``"repr"``: the whole transform, which also shows its structural options.

    Args:
      tx: the transform (a ``GradientTransformation``, a ``chain``, or any pytree of
        hyperparameters). No default.

    Example:
      >>> config = gx.logging.config_dict(gx.sgd(learning_rate=0.5, momentum=0.9))
      >>> config[".scale_by_momentum.momentum"]
      0.9
      >>> print(config["repr"])
      chain(scale_by_momentum(momentum=0.9, ...), ..., name='sgd')
    """
    out: dict[str, Any] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tx)[0]:
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic)) and np.issubdtype(
            leaf.dtype, np.number
        ):
            # Arrays (e.g. box bounds like params): scalars as floats, others as lists.
            leaf = np.asarray(leaf)
            leaf = float(leaf) if leaf.ndim == 0 else leaf.tolist()
        elif not isinstance(leaf, (int, float)):
            leaf = repr(leaf)  # e.g. a function inside an Optax transform in the chain
        out[jax.tree_util.keystr(path)] = leaf
    out["repr"] = repr(tx)
    return out


def _json_safe(obj: Any) -> Any:
    """NaN and Inf as null, at any depth (JSON has no spelling for them)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    if "step" in metrics:
        raise ValueError("a metric may not be named 'step': loggers keep the step under it")
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except TypeError as e:
            raise TypeError(f"metric {k!r} is not a scalar: {v!r}") from e
    return out


class JsonlLogger:
    """One JSON object per line: ``{"step": n, name: value, ...}``; config as a first line
    ``{"config": {...}}``.

    The file is opened for appending (a rerun adds lines) and flushed after each line;
    NaN and Inf are written as ``null``.

    Args:
      path: the ``.jsonl`` file to append to (a ``str`` or path-like). No default.

    Example:
      >>> import tempfile, os, json
      >>> d = tempfile.mkdtemp()
      >>> log = gx.logging.JsonlLogger(os.path.join(d, "metrics.jsonl"))
      >>> log.log_config(gx.sgd(learning_rate=0.5))
      >>> log.log_metrics({"loss": jnp.array(0.25), "lr": 0.5}, step=1)
      >>> log.log_metrics({"loss": float("nan")}, step=2)
      >>> log.close()
      >>> with open(os.path.join(d, "metrics.jsonl")) as f:
      ...     lines = [json.loads(line) for line in f]
      >>> lines[0]["config"]["repr"]
      "chain(..., name='sgd')"
      >>> lines[1:]
      [{'step': 1, 'loss': 0.25, 'lr': 0.5}, {'step': 2, 'loss': None}]
      >>> import shutil; shutil.rmtree(d)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def log_config(self, tx: Any) -> None:
        self._write({"config": config_dict(tx)})

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        self._write({"step": int(step), **_floats(metrics)})

    def _write(self, obj: dict) -> None:
        # NaN/Inf are legal metric values (a skipped step) and bounds; JSON: null.
        self._file.write(json.dumps(_json_safe(obj), allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class CsvLogger:
    """A CSV table with a ``step`` column and one column per metric (fixed by the first
    ``log_metrics`` call; a later call with other names raises). Config goes to
    ``<path>.config.json``.

    The file is overwritten on construction and flushed after each row.

    Args:
      path: the ``.csv`` file to write (a ``str`` or path-like). No default.

    Example:
      >>> import tempfile, os
      >>> d = tempfile.mkdtemp()
      >>> log = gx.logging.CsvLogger(os.path.join(d, "metrics.csv"))
      >>> log.log_config(gx.adam(learning_rate=1e-3))
      >>> log.log_metrics({"loss": jnp.array(0.5), "grad_norm": 2.0}, step=0)
      >>> log.log_metrics({"loss": 0.25, "grad_norm": 1.0}, step=1)
      >>> log.close()
      >>> with open(os.path.join(d, "metrics.csv")) as f:
      ...     print(f.read())
      step,loss,grad_norm
      0,0.5,2.0
      1,0.25,1.0
      <BLANKLINE>
      >>> sorted(os.listdir(d))
      ['metrics.csv', 'metrics.csv.config.json']
      >>> import shutil; shutil.rmtree(d)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._file = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer: csv.DictWriter | None = None

    def log_config(self, tx: Any) -> None:
        with open(self.path + ".config.json", "w", encoding="utf-8") as f:
            json.dump(_json_safe(config_dict(tx)), f, indent=1, allow_nan=False)

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        row = {"step": int(step), **_floats(metrics)}
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=list(row))
            self._writer.writeheader()
        elif set(row) != set(self._writer.fieldnames):
            raise ValueError(
                f"CsvLogger: metric names changed: columns are {self._writer.fieldnames}, "
                f"got {list(row)}"
            )
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _mlflow_key(name: str) -> str:
    # MLflow keys allow only alphanumerics and _ - . space /: a key path's ['label'] and
    # [0] become .label and .0; a leading "." reads badly in the UI.
    def component(m: re.Match) -> str:
        return "." + (m.group(1) if m.group(1) is not None else m.group(2))

    name = re.sub(r"\[(?:'([^']*)'|(\d+))\]", component, name)
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name).lstrip(".")


class MLflowLogger:
    """Logs to an MLflow run, the way MLflow's own ``log_*`` functions would.

    Where it logs:

    - inside ``with mlflow.start_run():`` (an active run), into that run, through the
      tracking URI in effect; the run stays open: it belongs to whoever started it, so
      ``close()`` only marks the logger closed;
    - otherwise into a new run of ``experiment`` (created if missing), started on
      construction and ended by ``close()`` or at the end of a ``with`` block.

    The tracking URI is, first found: ``tracking_uri``; the one set with
    ``mlflow.set_tracking_uri``; the ``MLFLOW_TRACKING_URI`` environment variable; a local
    SQLite store ``sqlite:///mlflow.db`` in the working directory (no server needed).

    As a context manager (``with MLflowLogger() as log: ...``), a run it started ends
    ``FINISHED``, or ``FAILED`` when the block raises (the exception propagates). Values
    go through ``MlflowClient.log_batch`` in batches within MLflow's limits. The attributes
    ``tracking_uri``, ``run_id`` and ``owns_run`` say where it logs. Needs the ``mlflow``
    extra.

    Args:
      experiment: experiment name for a new run (created if missing), default
        ``"gradxform"``; unused when logging into an active run.
      run_name: optional name of a new run; unused when logging into an active run.
      tracking_uri: e.g. ``"http://127.0.0.1:5000"``; default: see above. An active run is
        reused only when this is unset or equal to ``mlflow.get_tracking_uri()``.

    Example:
      >>> import tempfile, os
      >>> d = tempfile.mkdtemp()
      >>> uri = "sqlite:///" + os.path.join(d, "mlflow.db")
      >>> with gx.logging.MLflowLogger("demo", run_name="run-1", tracking_uri=uri) as log:
      ...     log.log_config(gx.sgd(learning_rate=0.5))
      ...     log.log_metrics({"loss": jnp.array(0.25)}, step=0)
      >>> log.owns_run, log.closed
      (True, True)
      >>> run = log.client.get_run(log.run_id)
      >>> run.info.run_name, run.info.status, run.data.metrics
      ('run-1', 'FINISHED', {'loss': 0.25})
      >>> run.data.params["scale_by_learning_rate.learning_rate"]
      '0.5'
      >>> import shutil; shutil.rmtree(d)
    """

    # MLflow's log_batch limits: params and metrics per request.
    _MAX_PARAMS = 100
    _MAX_METRICS = 1000

    def __init__(
        self,
        experiment: str = "gradxform",
        run_name: str | None = None,
        tracking_uri: str | None = None,
    ):
        try:
            import mlflow
            from mlflow.tracking import MlflowClient
        except ImportError as e:
            raise ImportError("MLflowLogger needs mlflow: pip install 'gradxform[mlflow]'") from e
        active = mlflow.active_run()
        if active is not None and tracking_uri in (None, mlflow.get_tracking_uri()):
            # The active run lives in the store of the URI in effect (mlflow.log_* use it).
            self.tracking_uri = mlflow.get_tracking_uri()
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            self.run_id: str = active.info.run_id
            self.owns_run = False
        else:
            if tracking_uri is None:
                # set_tracking_uri or MLFLOW_TRACKING_URI; else our default (not MLflow's,
                # which depends on the version and on an existing ./mlruns).
                if mlflow.is_tracking_uri_set():
                    tracking_uri = mlflow.get_tracking_uri()
                else:
                    tracking_uri = "sqlite:///" + os.path.abspath("mlflow.db")
            self.tracking_uri = tracking_uri
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            exp = self.client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
            self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
            self.owns_run = True
        self.closed = False

    def log_config(self, tx: Any) -> None:
        from mlflow.entities import Param

        cfg = config_dict(tx)
        params = [Param(_mlflow_key(k), str(v)[:6000]) for k, v in cfg.items()]
        for i in range(0, len(params), self._MAX_PARAMS):
            self.client.log_batch(self.run_id, params=params[i : i + self._MAX_PARAMS])

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(_mlflow_key(k), v, now, int(step)) for k, v in _floats(metrics).items()]
        for i in range(0, len(batch), self._MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=batch[i : i + self._MAX_METRICS])

    def close(self, status: str = "FINISHED") -> None:
        """Ends the run if this logger started it (a run it reused stays open); idempotent.

        Args:
          status: the run's final status, ``"FINISHED"`` (default), ``"FAILED"`` or
            ``"KILLED"``.
        """
        if not self.closed and self.owns_run:
            self.client.set_terminated(self.run_id, status=status)
        self.closed = True

    def __enter__(self) -> MLflowLogger:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close("FINISHED" if exc_type is None else "FAILED")

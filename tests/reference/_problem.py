"""The reference problem and recording loop shared by every ``record_*.py`` script.

Each script records the trajectories of one reference implementation (torch.optim,
``schedulefree``, ``prodigyopt``, ...) into ``<name>_trajectories.json`` beside it;
``tests/test_reference_parity.py`` replays every such file with gradxform, in float64,
without importing any of those packages. Run a script from the repository root in a
separate virtual environment that has the package it names (torch 2.13.0 and numpy
always)::

    python tests/reference/record_<name>.py

The problem (everything float64, deterministic): params ``{"w": (3, 2), "b": (4,)}``,
``x = concatenate([w.ravel(), b])``, ``f(x) = 0.5 x^T A x - c^T x + 0.25 lam sum(x**4)``
with ``A`` a fixed SPD 10x10 matrix (eigenvalues over [0.5, 10]), so
``grad f(x) = A x - c + lam x**3`` (checked against autograd at the first step).

A case in a fixture file::

    {"name": ..., "reference": "torch.optim.Rprop", "reference_kwargs": {...},
     "gradxform": {"optimizer": "rprop", "kwargs": {...},
                   # optional:
                   "update_extra": ["value_fn"],   # passed to tx.update (the loss)
                   "tol": 1e-10, "tol_reason": "..."},
     "trajectory": {"1": {"w": [...], "b": [...]}, ...},       # params after step t
     "eval_trajectory": {...}}  # optional: gx.eval_params(state, params) after step t

JSON lists in ``kwargs`` are passed to gradxform as tuples.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

import numpy as np
import torch

NUM_STEPS = 50
RECORD_STEPS = [1, 2, 3, 5, 10, 20, 30, 40, 50]
SEED = 20240611
LAM = 0.1
SHAPES = {"w": (3, 2), "b": (4,)}
HERE = os.path.dirname(os.path.abspath(__file__))


def make_problem():
    """(A, c, x0 leaves) as float64 NumPy arrays, from the fixed seed."""
    rng = np.random.default_rng(SEED)
    n = sum(int(np.prod(s)) for s in SHAPES.values())
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eigs = np.geomspace(0.5, 10.0, n)
    a = (q * eigs) @ q.T
    a = 0.5 * (a + a.T)  # exactly symmetric
    assert np.all(np.linalg.eigvalsh(a) > 0)
    c = rng.normal(size=n)
    x0 = rng.normal(size=n)
    leaves, off = {}, 0
    for k, s in SHAPES.items():
        size = int(np.prod(s))
        leaves[k] = x0[off : off + size].reshape(s)
        off += size
    return a, c, leaves


def _flat(params):
    return torch.cat([params[k].reshape(-1) for k in SHAPES])


def closed_form_grads(a, c, params):
    g = a @ _flat(params) - c + LAM * _flat(params) ** 3
    out, off = {}, 0
    for k, s in SHAPES.items():
        size = int(np.prod(s))
        out[k] = g[off : off + size].reshape(s)
        off += size
    return out


def loss(a, c, params):
    x = _flat(params)
    return 0.5 * x @ (a @ x) - c @ x + 0.25 * LAM * torch.sum(x**4)


def run(
    make_optimizers: Callable[[dict], list],
    *,
    closure: bool = False,
    eval_params: Callable[[list, dict], dict] | None = None,
    num_steps: int = NUM_STEPS,
) -> dict:
    """Run one case; returns ``{"trajectory": ..., ["eval_trajectory": ...]}``.

    ``make_optimizers(params)`` gets the leaves as tensors (``requires_grad``) and returns
    the optimizers stepping them (several when leaves go to different optimizers).
    ``closure``: call ``step(closure)`` with a closure that recomputes the closed-form
    gradient and returns the loss (SAM-like methods). ``eval_params(opts, params)``
    returns the evaluation params (averaged, schedule-free x) after a step, leaving the
    optimizers in training mode.
    """
    torch.set_default_dtype(torch.float64)
    a_np, c_np, x0 = make_problem()
    a, c = torch.tensor(a_np), torch.tensor(c_np)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in x0.items()}
    opts = make_optimizers(params)

    def set_grads():
        with torch.no_grad():
            grads = closed_form_grads(a, c, params)
        for k, p in params.items():
            p.grad = grads[k].clone()
        with torch.no_grad():
            return loss(a, c, params)

    for p in params.values():  # closed form == autograd
        p.grad = None
    loss(a, c, params).backward()
    with torch.no_grad():
        grads = closed_form_grads(a, c, params)
    for k, p in params.items():
        torch.testing.assert_close(p.grad, grads[k], rtol=1e-13, atol=1e-13)

    out: dict = {"trajectory": {}}
    if eval_params is not None:
        out["eval_trajectory"] = {}
    for step in range(1, num_steps + 1):
        set_grads()
        for opt in opts:
            if closure:
                opt.step(set_grads)
            else:
                opt.step()
        for k, p in params.items():
            assert p.dtype == torch.float64
            assert torch.all(torch.isfinite(p)), (k, step)
        if step in RECORD_STEPS:
            out["trajectory"][str(step)] = {
                k: p.detach().numpy().tolist() for k, p in params.items()
            }
            if eval_params is not None:
                ev = eval_params(opts, params)
                out["eval_trajectory"][str(step)] = {
                    k: np.asarray(ev[k].detach().numpy(), np.float64).tolist() for k in SHAPES
                }
    return out


def write(name: str, description: str, packages: dict[str, str], cases: list[dict]) -> None:
    """Write ``<name>_trajectories.json`` beside this file (floats round-trip exactly)."""
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    a, c, x0 = make_problem()
    data = {
        "description": description,
        "packages": {"torch": torch.__version__, "numpy": np.__version__, **packages},
        "python_version": sys.version.split()[0],
        "problem": {
            "loss": "f(x) = 0.5 x^T A x - c^T x + 0.25 lam sum(x**4), x = concat(w.ravel(), b)",
            "grad": "A x - c + lam x**3",
            "shapes": {k: list(s) for k, s in SHAPES.items()},
            "A": a.tolist(),
            "c": c.tolist(),
            "lam": LAM,
            "x0": {k: v.tolist() for k, v in x0.items()},
        },
        "num_steps": NUM_STEPS,
        "recorded_steps": RECORD_STEPS,
        "cases": cases,
    }
    path = os.path.join(HERE, f"{name}_trajectories.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(cases)} cases to {path} ({os.path.getsize(path)} bytes)")

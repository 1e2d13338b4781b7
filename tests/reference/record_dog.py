"""Record reference trajectories of ``dog.DoG`` and ``dog.LDoG`` (float64).

Run from the repository root in an environment with torch 2.13.0, numpy and
``dog-optimizer==1.0.3`` (not dependencies of gradxform)::

    python tests/reference/record_dog.py

Writes ``tests/reference/dog_trajectories.json`` (see ``_problem.py`` for the problem
and the case format); ``tests/test_reference_parity.py`` replays it with ``gx.dog`` and
``gx.ldog``. Every hyperparameter is given explicitly on both sides.
"""

from __future__ import annotations

import logging

import dog
from _problem import run, write

logging.getLogger("dog").setLevel(logging.ERROR)  # "do not change lr" warnings

BASE = dict(reps_rel=1e-6, lr=1.0, weight_decay=0.0, eps=1e-8, init_eta=None)
# (case name, reference class, kwargs); lr stays 1 with init_eta: the reference's first
# step ignores lr there, gradxform's multiplies init_eta by it.
CASES = [
    ("dog_defaults", "DoG", {}),
    ("dog_reps_1e-3", "DoG", dict(reps_rel=1e-3)),
    ("dog_wd", "DoG", dict(weight_decay=0.1)),
    ("dog_init_eta", "DoG", dict(init_eta=1e-3)),
    ("dog_lr0.5_eps", "DoG", dict(lr=0.5, eps=1e-4)),
    ("ldog_defaults", "LDoG", {}),
    ("ldog_wd_reps", "LDoG", dict(weight_decay=0.1, reps_rel=1e-4)),
    ("ldog_init_eta", "LDoG", dict(init_eta=1e-3)),
]


def _gx_kwargs(kw: dict) -> dict:
    out = {k: v for k, v in kw.items() if k not in ("lr", "init_eta")}
    out["learning_rate"] = kw["lr"]
    if kw["init_eta"] is not None:
        out["init_eta"] = kw["init_eta"]
    if out["weight_decay"] == 0.0:
        out["weight_decay"] = None  # gradxform's off value
    return out


def main() -> None:
    cases = []
    for name, cls, extra in CASES:
        kw = {**BASE, **extra}
        ref = getattr(dog, cls)
        result = run(lambda params, ref=ref, kw=kw: [ref(list(params.values()), **kw)])
        cases.append(
            {
                "name": name,
                "reference": f"dog.{cls}",
                "reference_kwargs": kw,
                "gradxform": {"optimizer": cls.lower(), "kwargs": _gx_kwargs(kw)},
                **result,
            }
        )
    write(
        "dog",
        "dog-optimizer's DoG and LDoG (one parameter group) on the shared quartic problem",
        {"dog-optimizer": "1.0.3"},
        cases,
    )


if __name__ == "__main__":
    main()

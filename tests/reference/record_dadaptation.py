"""Record reference trajectories of ``dadaptation.DAdaptAdam`` (float64).

Run from the repository root in an environment with torch 2.13.0, numpy and
``dadaptation==3.2`` (not dependencies of gradxform)::

    python tests/reference/record_dadaptation.py

Writes ``tests/reference/dadaptation_trajectories.json`` (see ``_problem.py`` for the
problem and the case format); ``tests/test_reference_parity.py`` replays it with
``gx.dadapt_adamw``. Every hyperparameter is given explicitly on both sides.
"""

from __future__ import annotations

import dadaptation
from _problem import run, write

BASE = dict(
    lr=1.0,
    betas=[0.9, 0.999],
    eps=1e-8,
    weight_decay=0.0,
    decouple=False,
    use_bias_correction=False,
    d0=1e-6,
    growth_rate=float("inf"),
)
CASES = [
    ("defaults", {}),
    ("d0_1e-3", dict(d0=1e-3)),
    ("decoupled_wd", dict(weight_decay=0.1, decouple=True)),
    ("coupled_wd", dict(weight_decay=0.1, decouple=False)),
    ("bias_correction", dict(use_bias_correction=True)),
    ("lr0.5_growth", dict(lr=0.5, growth_rate=2.0, betas=[0.8, 0.99])),
]


def _gx_kwargs(kw: dict) -> dict:
    out = {k: v for k, v in kw.items() if k != "lr"}
    out["learning_rate"] = kw["lr"]
    if out["weight_decay"] == 0.0:
        out["weight_decay"] = None  # gradxform's off value
    if out["growth_rate"] == float("inf"):
        del out["growth_rate"]  # JSON has no inf; gx's default is inf
    return out


def main() -> None:
    cases = []
    for name, extra, *tol in CASES:
        kw = {**BASE, **extra}
        ref_kw = {**kw, "betas": tuple(kw["betas"])}
        result = run(
            lambda params, ref_kw=ref_kw: [dadaptation.DAdaptAdam(list(params.values()), **ref_kw)]
        )
        json_kw = {k: ("inf" if v == float("inf") else v) for k, v in kw.items()}
        cases.append(
            {
                "name": name,
                "reference": "dadaptation.DAdaptAdam",
                "reference_kwargs": json_kw,
                "gradxform": {
                    "optimizer": "dadapt_adamw",
                    "kwargs": _gx_kwargs(kw),
                    **(tol[0] if tol else {}),
                },
                **result,
            }
        )
    write(
        "dadaptation",
        "dadaptation.DAdaptAdam (one parameter group) on the shared quartic problem",
        {"dadaptation": "3.2"},
        cases,
    )


if __name__ == "__main__":
    main()

"""Record reference trajectories of ``prodigyopt.Prodigy`` (float64).

Run from the repository root in an environment with torch 2.13.0, numpy and
``prodigyopt==1.1.2`` (not dependencies of gradxform)::

    python tests/reference/record_prodigy.py

Writes ``tests/reference/prodigy_trajectories.json`` (see ``_problem.py`` for the
problem and the case format); ``tests/test_reference_parity.py`` replays it with
``gx.prodigy``. Every hyperparameter is given explicitly on both sides.
"""

from __future__ import annotations

import prodigyopt
from _problem import run, write

# (case name, prodigyopt.Prodigy kwargs); gx.prodigy gets the same ones (betas as a
# tuple, lr as learning_rate).
BASE = dict(
    lr=1.0,
    betas=[0.9, 0.999],
    beta3=None,
    eps=1e-8,
    weight_decay=0.0,
    decouple=True,
    use_bias_correction=False,
    safeguard_warmup=False,
    d0=1e-6,
    d_coef=1.0,
    growth_rate=float("inf"),
)
# Decoupled decay: prodigyopt rounds x after the decay and again after the Adam step,
# gradxform once (x + u). The first steps are about d0 = 1e-6 long, so x0 - x_t, whose
# inner product with g feeds d, carries that 1-ulp difference with relative weight
# ~1/d0 (measured 1.4e-10; the reference itself moves 7e-13 after a 1-ulp nudge of x).
WD_TOL = {
    "tol": 1e-9,
    "tol_reason": "1-ulp rounding of the decoupled-decay step, "
    "amplified ~1/d0 through x0 - x in the d estimate (see record_prodigy.py)",
}
CASES = [
    ("defaults", {}),
    ("d0_1e-2", dict(d0=1e-2)),
    ("decoupled_wd", dict(weight_decay=0.1, decouple=True), WD_TOL),
    # The same decay from d0 = 1e-2: steps 1e4 times longer, the 1-ulp difference no
    # longer shows at 1e-12.
    ("decoupled_wd_d0_1e-2", dict(weight_decay=0.1, decouple=True, d0=1e-2)),
    ("coupled_wd", dict(weight_decay=0.1, decouple=False)),
    ("bias_correction", dict(use_bias_correction=True, d0=1e-3)),
    ("safeguard_lr0.5", dict(safeguard_warmup=True, lr=0.5)),
    ("beta3_coef_growth", dict(beta3=0.9, d_coef=0.5, growth_rate=1.5, betas=[0.8, 0.99])),
    ("no_momentum", dict(betas=[0.0, 0.999], lr=0.7)),
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
            lambda params, ref_kw=ref_kw: [prodigyopt.Prodigy(list(params.values()), **ref_kw)]
        )
        json_kw = {k: ("inf" if v == float("inf") else v) for k, v in kw.items()}
        cases.append(
            {
                "name": name,
                "reference": "prodigyopt.Prodigy",
                "reference_kwargs": json_kw,
                "gradxform": {
                    "optimizer": "prodigy",
                    "kwargs": _gx_kwargs(kw),
                    **(tol[0] if tol else {}),
                },
                **result,
            }
        )
    write(
        "prodigy",
        "prodigyopt.Prodigy (one parameter group) on the shared quartic problem",
        {"prodigyopt": "1.1.2"},
        cases,
    )


if __name__ == "__main__":
    main()

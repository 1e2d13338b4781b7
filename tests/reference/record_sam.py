"""Record reference trajectories of pytorch_optimizer's ``SAM`` (float64).

Run from the repository root in an environment with torch 2.13.0, numpy and
``pytorch_optimizer==4.1.0`` (not dependencies of gradxform)::

    python tests/reference/record_sam.py

Writes ``tests/reference/sam_cases.json`` (the problem and the case format of
``_problem.py``; not named ``*_trajectories.json`` because ``gx.sam`` is a wrapper, not a
named optimizer of the registry: its ``kwargs`` hold the wrapped optimizer as
``{"transform": name, "kwargs": {...}}``). ``tests/test_sam.py`` replays it with
``gx.sam(inner, ...)`` and ``value_fn`` = the loss. Every hyperparameter is explicit.

pytorch_optimizer's ``SAM.step(closure)`` does first_step (p <- p + e, e from the
gradient at p), the closure (the gradient at p + e), second_step (p restored, then the
base optimizer's step with that gradient). Its gradient norm is formed in float32
(``get_global_gradient_norm`` casts the norms to float32), so ``e`` carries a float32
rounding: the replay's tolerance says so. Each case is also recorded with that norm
formed in float64 (``get_global_gradient_norm`` patched to skip the cast, name suffix
``-f64norm``): those match at 1e-12, so the float32 norm is the only difference.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import version

import numpy as np
import pytorch_optimizer.optimizer.sam as sam_module
import torch
from _problem import HERE, LAM, NUM_STEPS, RECORD_STEPS, SHAPES, make_problem, run
from pytorch_optimizer import SAM

_FLOAT32_NORM = sam_module.get_global_gradient_norm


def _float64_norm(param_groups, device=None, *, weight_adaptive=False):
    """pytorch_optimizer's get_global_gradient_norm without its cast to float32."""
    total = None
    for group in param_groups:
        adaptive = weight_adaptive and group.get("adaptive", False)
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad * p.abs() if adaptive else p.grad
            sq = g.norm() ** 2
            total = sq if total is None else total + sq
    return total.reshape(1)


# (case name, SAM kwargs, base optimizer name, base kwargs (torch names))
SGD = dict(lr=0.05, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0)
CASES = [
    ("sgd_plain", dict(rho=0.05, adaptive=False), "SGD", SGD),
    ("sgd_momentum_rho0.2", dict(rho=0.2, adaptive=False), "SGD", {**SGD, "momentum": 0.9}),
    ("asam_sgd_momentum", dict(rho=0.5, adaptive=True), "SGD", {**SGD, "momentum": 0.9}),
    (
        "adam",
        dict(rho=0.1, adaptive=False),
        "Adam",
        dict(lr=0.05, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0, amsgrad=False),
    ),
]


TOL = {
    "tol": 1e-7,
    "tol_reason": "pytorch_optimizer forms the gradient norm in float32, so e = rho g / ||g|| "
    "carries a float32 relative rounding (~6e-8) each step; over 50 steps the params differ "
    "at ~1e-8 (the -f64norm twin of this case, with that norm in float64, matches at 1e-12)",
}


def _gx_inner(name: str, kw: dict) -> dict:
    if name == "SGD":
        out = {"learning_rate": kw["lr"], "dampening": kw["dampening"]}
        out["nesterov"] = kw["nesterov"]
        out["momentum"] = kw["momentum"] or None  # gradxform's off value
        return {"transform": "sgd", "kwargs": out}
    b1, b2 = kw["betas"]
    return {
        "transform": "adam",
        "kwargs": dict(learning_rate=kw["lr"], b1=b1, b2=b2, eps=kw["eps"]),
    }


def main() -> None:
    cases = []
    for (name, sam_kw, base, base_kw), f64 in [(c, f) for f in (False, True) for c in CASES]:
        sam_module.get_global_gradient_norm = _float64_norm if f64 else _FLOAT32_NORM
        opt_cls = getattr(torch.optim, base)
        ref_kw = {k: tuple(v) if isinstance(v, list) else v for k, v in base_kw.items()}

        def make(params, sam_kw=sam_kw, opt_cls=opt_cls, ref_kw=ref_kw):
            # foreach=False: the single-tensor paths (the base optimizer's too).
            return [
                SAM(
                    list(params.values()),
                    opt_cls,
                    perturb_eps=1e-12,
                    use_gc=False,
                    foreach=False,
                    **sam_kw,
                    **ref_kw,
                )
            ]

        result = run(make, closure=True)
        cases.append(
            {
                "name": name + ("-f64norm" if f64 else ""),
                "reference": f"pytorch_optimizer.SAM(base_optimizer=torch.optim.{base})",
                "reference_kwargs": {**sam_kw, "perturb_eps": 1e-12, **base_kw},
                "gradxform": {
                    "optimizer": "sam",
                    "kwargs": {
                        "inner": _gx_inner(base, base_kw),
                        "rho": sam_kw["rho"],
                        "adaptive": sam_kw["adaptive"],
                        "eps": 1e-12,
                    },
                    "update_extra": ["value_fn"],
                    **({} if f64 else TOL),
                },
                **result,
            }
        )
    a, c, x0 = make_problem()
    data = {
        "description": "pytorch_optimizer.SAM around torch.optim.SGD / Adam on the shared "
        "quartic problem (see _problem.py)",
        "packages": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pytorch_optimizer": version("pytorch_optimizer"),
        },
        "problem": {
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
    path = os.path.join(HERE, "sam_cases.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(cases)} cases to {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()

"""Record learning rates from ``torch.optim.lr_scheduler`` (float64) for the schedule tests.

Run from the repository root in an environment with ``torch==2.13.0`` (not a gradxform
dependency)::

    python tests/reference/record_torch_schedules.py

It writes ``tests/reference/torch_schedules.json``: for each case, the learning rate an
SGD optimizer holds before each of its steps, with ``scheduler.step()`` after every
optimizer step. ``tests/test_schedules.py`` compares gradxform's schedules with it
without importing torch.
"""

import json
import os

import torch

OUT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_schedules.json")

CASES = {
    # name: (scheduler class, its kwargs, base lr, steps)
    "cosine_warm_restarts_mult1": (
        "CosineAnnealingWarmRestarts",
        {"T_0": 10, "T_mult": 1, "eta_min": 0.01},
        0.5,
        160,
    ),
    "cosine_warm_restarts_mult2": (
        "CosineAnnealingWarmRestarts",
        {"T_0": 10, "T_mult": 2, "eta_min": 0.01},
        0.5,
        160,
    ),
    "step_lr": ("StepLR", {"step_size": 7, "gamma": 0.3}, 0.5, 50),
}


def lrs(scheduler, kwargs, base_lr, n):
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([param], lr=base_lr)
    sched = getattr(torch.optim.lr_scheduler, scheduler)(opt, **kwargs)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def main():
    data = {
        "description": "torch.optim.lr_scheduler learning rates; see record_torch_schedules.py",
        "torch_version": torch.__version__,
        "cases": {
            name: {"scheduler": s, "kwargs": kw, "base_lr": lr, "lrs": lrs(s, kw, lr, n)}
            for name, (s, kw, lr, n) in CASES.items()
        },
    }
    with open(OUT_PATH, "w") as f:
        json.dump(data, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(CASES)} cases to {OUT_PATH}")


if __name__ == "__main__":
    main()

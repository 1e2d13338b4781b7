"""Record torch.optim.Adafactor trajectories (float64) for ``gx.adafactor``.

Run from the repository root in an environment with torch 2.13.0 and numpy::

    python tests/reference/record_adafactor.py

Writes ``adafactor_trajectories.json`` beside this file. The shared problem has a
factored leaf ``w`` (3, 2) and an unfactored ``b`` (4,). torch's single-tensor
implementation (``foreach=False``); every hyperparameter is explicit. torch's
``lr`` is gradxform's ``learning_rate``; its ``weight_decay=0`` is gradxform's None.
The cases with lr > 1/sqrt(t) for some recorded t check the relative-step cap
(rho_t = min(lr, 1/sqrt(t))): lr = 0.5 is capped from t = 5 on.
"""

from __future__ import annotations

import torch
from _problem import run, write

CASES = [
    # (name, torch kwargs, gradxform kwargs)
    (
        "default",
        dict(lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0),
        dict(learning_rate=1e-2, beta2_decay=-0.8, eps=[None, 1e-3], d=1.0),
    ),
    (
        "wd",
        dict(lr=0.05, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.1),
        dict(learning_rate=0.05, beta2_decay=-0.8, eps=[None, 1e-3], d=1.0, weight_decay=0.1),
    ),
    (
        "capped_decay_d",
        dict(lr=0.5, beta2_decay=-0.5, eps=(None, 1e-3), d=2.0, weight_decay=0.0),
        dict(learning_rate=0.5, beta2_decay=-0.5, eps=[None, 1e-3], d=2.0),
    ),
    (
        "eps1_eps2_wd_capped",
        dict(lr=0.3, beta2_decay=-0.6, eps=(1e-2, 0.5), d=1.5, weight_decay=0.2),
        dict(learning_rate=0.3, beta2_decay=-0.6, eps=[1e-2, 0.5], d=1.5, weight_decay=0.2),
    ),
    (
        "no_clipping",
        dict(lr=0.1, beta2_decay=-0.8, eps=(None, 1e-3), d=1e30, weight_decay=0.0),
        dict(learning_rate=0.1, beta2_decay=-0.8, eps=[None, 1e-3], d=None),
    ),
]


def main():
    cases = []
    for name, torch_kwargs, gx_kwargs in CASES:

        def make(params, kw=torch_kwargs):
            return [torch.optim.Adafactor(list(params.values()), foreach=False, **kw)]

        cases.append(
            {
                "name": name,
                "reference": "torch.optim.Adafactor",
                "reference_kwargs": {**torch_kwargs, "eps": list(torch_kwargs["eps"])},
                "gradxform": {"optimizer": "adafactor", "kwargs": gx_kwargs},
                **run(make),
            }
        )
    write(
        "adafactor",
        "torch.optim.Adafactor (single-tensor) on the shared problem, float64",
        {},
        cases,
    )


if __name__ == "__main__":
    main()

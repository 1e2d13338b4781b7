"""Record ``schedulefree`` trajectories (float64) for ``gx.schedule_free_sgd`` / ``_adamw``.

Run from the repository root in an environment with torch 2.13.0, numpy and
schedulefree 1.4.1::

    python tests/reference/record_schedulefree.py

Writes ``schedulefree_trajectories.json`` beside this file. The package's memory-saving
classes (``SGDScheduleFree``, ``AdamWScheduleFree``, single-tensor path
``foreach=False``), put in training mode before the first step. ``trajectory`` is y, the
params the optimizer steps; ``eval_trajectory`` is x, read after ``optimizer.eval()``
(then ``optimizer.train()`` puts y back, as a training loop that evaluates does).
Every hyperparameter is explicit; the package's ``lr`` is ``learning_rate``, SGD's
``momentum`` keeps its name, AdamW's ``betas`` are ``b1, b2``, and its
``weight_decay=0`` is gradxform's None.
"""

from __future__ import annotations

import importlib.metadata

import schedulefree
import torch
from _problem import run, write

CASES = [
    # (name, class, package kwargs, gradxform optimizer, gradxform kwargs)
    (
        "sgd_plain",
        "SGDScheduleFree",
        dict(lr=0.05, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0),
        "schedule_free_sgd",
        dict(learning_rate=0.05, momentum=0.9, warmup_steps=0, r=0.0, weight_lr_power=2.0),
    ),
    (
        "sgd_warmup_wd",
        "SGDScheduleFree",
        dict(lr=0.1, momentum=0.8, weight_decay=0.05, warmup_steps=10, r=0.0, weight_lr_power=2.0),
        "schedule_free_sgd",
        dict(
            learning_rate=0.1,
            momentum=0.8,
            weight_decay=0.05,
            warmup_steps=10,
            r=0.0,
            weight_lr_power=2.0,
        ),
    ),
    (
        "sgd_r_power",
        "SGDScheduleFree",
        dict(lr=0.05, momentum=0.95, weight_decay=0.0, warmup_steps=5, r=1.0, weight_lr_power=1.0),
        "schedule_free_sgd",
        dict(learning_rate=0.05, momentum=0.95, warmup_steps=5, r=1.0, weight_lr_power=1.0),
    ),
    (
        "adamw_plain",
        "AdamWScheduleFree",
        dict(
            lr=0.05,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=0.0,
            warmup_steps=0,
            r=0.0,
            weight_lr_power=2.0,
        ),
        "schedule_free_adamw",
        dict(learning_rate=0.05, b1=0.9, b2=0.999, eps=1e-8, warmup_steps=0, r=0.0),
    ),
    (
        "adamw_warmup_wd",
        "AdamWScheduleFree",
        dict(
            lr=0.1,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=0.05,
            warmup_steps=10,
            r=0.0,
            weight_lr_power=2.0,
        ),
        "schedule_free_adamw",
        dict(
            learning_rate=0.1,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            weight_decay=0.05,
            warmup_steps=10,
            r=0.0,
            weight_lr_power=2.0,
        ),
    ),
    (
        "adamw_r_betas",
        "AdamWScheduleFree",
        dict(
            lr=0.05,
            betas=(0.95, 0.99),
            eps=1e-6,
            weight_decay=0.01,
            warmup_steps=3,
            r=0.5,
            weight_lr_power=1.0,
        ),
        "schedule_free_adamw",
        dict(
            learning_rate=0.05,
            b1=0.95,
            b2=0.99,
            eps=1e-6,
            weight_decay=0.01,
            warmup_steps=3,
            r=0.5,
            weight_lr_power=1.0,
        ),
    ),
]


def evaluated(opts, params):
    """x: the params in the package's eval mode; then back to training mode (y)."""
    (opt,) = opts
    opt.eval()
    x = {k: p.detach().clone() for k, p in params.items()}
    opt.train()
    return x


def main():
    cases = []
    for name, cls, kwargs, gx_name, gx_kwargs in CASES:

        def make(params, cls=cls, kw=kwargs):
            opt = getattr(schedulefree, cls)(list(params.values()), foreach=False, **kw)
            opt.train()
            return [opt]

        reference_kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
        cases.append(
            {
                "name": name,
                "reference": f"schedulefree.{cls}",
                "reference_kwargs": reference_kwargs,
                "gradxform": {"optimizer": gx_name, "kwargs": gx_kwargs},
                **run(make, eval_params=evaluated),
            }
        )
    write(
        "schedulefree",
        "schedulefree.SGDScheduleFree / AdamWScheduleFree (foreach=False) on the shared "
        "problem, float64; trajectory = y, eval_trajectory = x (optimizer.eval())",
        {"schedulefree": importlib.metadata.version("schedulefree")},
        cases,
    )


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    main()

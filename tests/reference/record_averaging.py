"""Record ``torch.optim.swa_utils.AveragedModel`` trajectories (float64) for ``gx.swa``
and ``gx.ema_params``.

Run from the repository root in an environment with torch 2.13.0 and numpy::

    python tests/reference/record_averaging.py

Writes ``averaging_reference.json`` beside this file (not ``*_trajectories.json``: the
gradxform side of a case is a chain, ``chain(<optimizer>, <average>)``, which the generic
``tests/test_reference_parity.py`` does not build; ``tests/test_averaging.py`` replays
it). A torch optimizer (single-tensor, ``foreach=False``) steps the shared problem, and
after step t an ``AveragedModel`` of the params takes ``update_parameters`` when t is an
averaged step (``start``, ``start + every``, ...): the default equal-weight average
(SWA), or ``multi_avg_fn=get_ema_multi_avg_fn(decay)`` (EMA: a copy of the first params,
then a lerp with weight 1 - decay). ``trajectory`` is the params, ``eval_trajectory``
the averaged model's.
"""

from __future__ import annotations

import os

import torch
from _problem import HERE, run, write
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

# (name, torch optimizer, its kwargs, gradxform optimizer, its kwargs, average, its kwargs)
CASES = [
    (
        "sgd_momentum_swa",
        "SGD",
        dict(lr=0.05, momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0),
        "sgd",
        dict(learning_rate=0.05, momentum=0.9),
        "swa",
        dict(start_step=1, every=1),
    ),
    (
        "sgd_swa_start_every",
        "SGD",
        dict(lr=0.1, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0),
        "sgd",
        dict(learning_rate=0.1),
        "swa",
        dict(start_step=10, every=3),
    ),
    (
        "adam_swa_start",
        "Adam",
        dict(lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False),
        "adam",
        dict(learning_rate=0.05, b1=0.9, b2=0.999, eps=1e-8),
        "swa",
        dict(start_step=25, every=1),
    ),
    (
        "adam_ema_0.9",
        "Adam",
        dict(lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False),
        "adam",
        dict(learning_rate=0.05, b1=0.9, b2=0.999, eps=1e-8),
        "ema_params",
        dict(decay=0.9, debias=False),
    ),
    (
        "sgd_momentum_ema_0.99",
        "SGD",
        dict(lr=0.05, momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0),
        "sgd",
        dict(learning_rate=0.05, momentum=0.9),
        "ema_params",
        dict(decay=0.99, debias=False),
    ),
]


class Averager:
    """Calls ``averaged.update_parameters(module)`` after the optimizer's steps start,
    start + every, ...: placed after the optimizer in ``run``'s list of optimizers."""

    def __init__(self, params, average, kwargs):
        self.module = torch.nn.Module()
        for k, p in params.items():
            # Shares p's storage: the module sees every in-place step of the optimizer.
            self.module.register_parameter(k, torch.nn.Parameter(p, requires_grad=False))
        if average == "swa":
            self.averaged = AveragedModel(self.module)
            self.start, self.every = kwargs["start_step"], kwargs["every"]
        else:
            self.averaged = AveragedModel(
                self.module, multi_avg_fn=get_ema_multi_avg_fn(kwargs["decay"])
            )
            self.start, self.every = 1, 1
        self.t = 0

    def step(self):
        self.t += 1
        if self.t >= self.start and (self.t - self.start) % self.every == 0:
            self.averaged.update_parameters(self.module)

    def params(self, names):
        if int(self.averaged.n_averaged) == 0:  # nothing averaged yet: the params
            return {k: getattr(self.module, k).detach().clone() for k in names}
        return {k: getattr(self.averaged.module, k).detach().clone() for k in names}


def main():
    cases = []
    for name, opt, kwargs, gx_opt, gx_kwargs, average, avg_kwargs in CASES:

        def make(params, opt=opt, kw=kwargs, average=average, avg_kw=avg_kwargs):
            optimizer = getattr(torch.optim, opt)(list(params.values()), foreach=False, **kw)
            return [optimizer, Averager(params, average, avg_kw)]

        def evaluated(opts, params):
            return opts[1].params(list(params))

        reference_kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
        reference = (
            "AveragedModel(model)"
            if average == "swa"
            else f"AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn({avg_kwargs['decay']}))"
        )
        cases.append(
            {
                "name": name,
                "reference": f"torch.optim.{opt} + torch.optim.swa_utils.{reference}",
                "reference_kwargs": {**reference_kwargs, "average": avg_kwargs},
                "gradxform": {
                    "optimizer": gx_opt,
                    "kwargs": gx_kwargs,
                    "average": average,
                    "average_kwargs": avg_kwargs,
                },
                **run(make, eval_params=evaluated),
            }
        )
    write(
        "averaging",
        "torch.optim optimizers followed by torch.optim.swa_utils.AveragedModel (SWA and "
        "EMA) on the shared problem, float64; eval_trajectory = the averaged params",
        {},
        cases,
    )
    # The generic parity test reads *_trajectories.json; these cases need a chain.
    os.replace(
        os.path.join(HERE, "averaging_trajectories.json"),
        os.path.join(HERE, "averaging_reference.json"),
    )
    print("renamed to averaging_reference.json")


if __name__ == "__main__":
    main()

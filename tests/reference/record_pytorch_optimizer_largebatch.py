"""Record pytorch_optimizer's Lamb, LARS and NovoGrad trajectories (float64) for
``gx.lamb``, ``gx.lars`` and ``gx.novograd``.

Run from the repository root in an environment with torch 2.13.0, numpy and
pytorch_optimizer 4.1.0::

    python tests/reference/record_pytorch_optimizer_largebatch.py

Writes ``pytorch_optimizer_largebatch_trajectories.json`` beside this file. Each
optimizer runs its single-tensor path (``foreach=False``; one Lamb case runs the batched
path too, which computes the same); every hyperparameter is explicit. The shared problem
has a leaf ``w`` (3, 2) and a leaf ``b`` (4,).

What the cases pin down, and what they leave out on purpose:

- ``Lamb`` with ``weight_decouple=False`` (the decay added to Adam's direction before
  the trust ratio: You et al., 2020, and Optax) and ``adam_debias=True`` (no bias
  correction at all): ``gx.lamb(bias_correction=False, trust_ratio_eps=eps,
  max_param_norm=10)``. pytorch_optimizer's default ``adam_debias=False`` multiplies the
  step by 1 / (1 - b1^t) *after* the trust ratio (which the ratio would otherwise
  normalize away), and its default ``weight_decouple=True`` shrinks p by 1 - lr wd
  before measuring ||p||: neither is the paper's algorithm, and gradxform has no option
  for them. Its ||p|| clip at 10 is never reached on this problem (tests/
  test_trust_ratio.py checks ``max_param_norm`` against NumPy).
- ``LARS``: rescales and decays only leaves with ndim > 1 (here ``w``), so the gradxform
  side passes the masks ``{"w": true, "b": false}``; its trust ratio is the paper's
  tc ||p|| / (||g|| + wd ||p||). ``dampening`` stays 0 (its buffer starts at zero, not
  at the first step's update as torch.optim.SGD's: gradxform's lars has no dampening).
  ``momentum=0`` is gradxform's ``momentum=None``.
- ``NovoGrad``: the paper's algorithm (v_1 = ||g_1||^2, no bias correction), coupled or
  decoupled decay, with and without gradient averaging.
"""

from __future__ import annotations

from importlib import metadata

from _problem import run, write
from pytorch_optimizer import LARS, Lamb, NovoGrad

MASK = {"w": True, "b": False}  # pytorch_optimizer's LARS: leaves with ndim > 1

LAMB_FIXED = dict(
    weight_decouple=False,
    adam_debias=True,
    fixed_decay=False,
    rectify=False,
    grad_averaging=True,
    pre_norm=False,
    adam=False,
    maximize=False,
)


def _lamb(name, lr, betas, eps, wd, foreach=False):
    ref = dict(lr=lr, betas=list(betas), eps=eps, weight_decay=wd, foreach=foreach, **LAMB_FIXED)
    ours = dict(
        learning_rate=lr,
        b1=betas[0],
        b2=betas[1],
        eps=eps,
        bias_correction=False,
        trust_ratio_eps=eps,
        max_param_norm=10.0,
    )
    if wd:
        ours["weight_decay"] = wd
    return name, Lamb, ref, "lamb", ours


def _lars(name, lr, wd, momentum, tc, nesterov):
    ref = dict(
        lr=lr,
        weight_decay=wd,
        momentum=momentum,
        dampening=0.0,
        trust_coefficient=tc,
        nesterov=nesterov,
        foreach=False,
        maximize=False,
    )
    ours = dict(
        learning_rate=lr,
        momentum=momentum or None,
        trust_coefficient=tc,
        nesterov=nesterov,
        trust_ratio_mask=MASK,
    )
    if wd:
        ours.update(weight_decay=wd, weight_decay_mask=MASK)
    return name, LARS, ref, "lars", ours


def _novograd(name, lr, betas, eps, wd, decouple, averaging):
    ref = dict(
        lr=lr,
        betas=list(betas),
        eps=eps,
        weight_decay=wd,
        weight_decouple=decouple,
        fixed_decay=False,
        grad_averaging=averaging,
        foreach=False,
        maximize=False,
    )
    ours = dict(
        learning_rate=lr,
        b1=betas[0],
        b2=betas[1],
        eps=eps,
        decoupled_weight_decay=decouple,
        grad_averaging=averaging,
    )
    if wd:
        ours["weight_decay"] = wd
    return name, NovoGrad, ref, "novograd", ours


CASES = [
    _lamb("lamb_plain", 0.05, (0.9, 0.999), 1e-6, 0.0),
    _lamb("lamb_wd_betas_eps", 0.1, (0.8, 0.99), 1e-4, 0.1),
    _lamb("lamb_wd_foreach", 0.05, (0.9, 0.999), 1e-6, 0.05, foreach=True),
    _lars("lars_momentum", 0.05, 0.0, 0.9, 0.5, False),
    _lars("lars_momentum_wd", 0.05, 0.05, 0.9, 0.5, False),
    _lars("lars_nesterov_wd", 0.05, 0.02, 0.8, 0.3, True),
    _lars("lars_no_momentum_wd", 0.1, 0.1, 0.0, 0.5, False),
    _novograd("novograd_plain", 0.01, (0.95, 0.98), 1e-8, 0.0, False, False),
    _novograd("novograd_wd_optax_betas", 0.01, (0.9, 0.25), 1e-6, 0.05, False, False),
    _novograd("novograd_grad_averaging_wd", 0.05, (0.9, 0.98), 1e-8, 0.02, False, True),
    _novograd("novograd_decoupled_wd", 0.01, (0.95, 0.98), 1e-8, 0.1, True, False),
]


def main():
    cases = []
    for name, cls, ref_kwargs, optimizer, gx_kwargs in CASES:

        def make(params, cls=cls, kw=ref_kwargs):
            kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
            return [cls(list(params.values()), **kw)]

        cases.append(
            {
                "name": name,
                "reference": f"pytorch_optimizer.{cls.__name__}",
                "reference_kwargs": ref_kwargs,
                "gradxform": {"optimizer": optimizer, "kwargs": gx_kwargs},
                **run(make),
            }
        )
    write(
        "pytorch_optimizer_largebatch",
        "pytorch_optimizer Lamb, LARS, NovoGrad (single-tensor) on the shared problem, float64",
        {"pytorch_optimizer": metadata.version("pytorch_optimizer")},
        cases,
    )


if __name__ == "__main__":
    main()

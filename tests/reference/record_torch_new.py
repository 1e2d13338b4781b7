"""Record torch.optim trajectories of the optimizers added in torch 2.x: Muon, Rprop, ASGD.

Run from the repository root in an environment with ``torch==2.13.0`` and ``numpy``::

    python tests/reference/record_torch_new.py

It writes ``tests/reference/torch_new_trajectories.json`` (the problem and the recording
loop are ``_problem.py``'s; single-tensor implementations, float64).

Muon: torch.optim.Muon takes only matrices, so ``w`` (3, 2) is stepped by torch Muon and
``b`` (4,) by torch AdamW, and gradxform runs ``muon(..., adamw=...)``. torch runs the
Newton-Schulz iteration in bfloat16 whatever the parameter dtype; every case but
``muon_bf16`` records it with the iteration run in the parameter dtype instead
(``_zeropower_float64`` below: torch's function with ``grad.bfloat16()`` replaced by
``grad.clone()``, patched in for the run), the float64 arithmetic that gradxform's
default ``ns_dtype`` reproduces. ``muon_bf16`` is stock torch against
``ns_dtype="bfloat16"`` (each op computed in float32 and rounded to bfloat16 once, as
ATen does on CPU: it matches at the default tolerance).
"""

from __future__ import annotations

import contextlib

import torch
import torch.optim._muon as torch_muon
from _problem import run, write

NS = [3.4445, -4.775, 2.0315]


def _zeropower_float64(grad, ns_coefficients, ns_steps, eps):
    """torch.optim._muon._zeropower_via_newtonschulz in the gradient's dtype."""
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if len(grad.shape) != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    a, b, c = ns_coefficients
    ortho_grad = grad.clone()  # torch: grad.bfloat16()
    if grad.size(0) > grad.size(1):
        ortho_grad = ortho_grad.T
    ortho_grad.div_(ortho_grad.norm().clamp(min=eps))
    for _ in range(ns_steps):
        gram_matrix = ortho_grad @ ortho_grad.T
        gram_update = torch.addmm(gram_matrix, gram_matrix, gram_matrix, beta=b, alpha=c)
        ortho_grad = torch.addmm(ortho_grad, gram_update, ortho_grad, beta=a)
    if grad.size(0) > grad.size(1):
        ortho_grad = ortho_grad.T
    return ortho_grad


@contextlib.contextmanager
def _float64_newton_schulz():
    original = torch_muon._zeropower_via_newtonschulz
    torch_muon._zeropower_via_newtonschulz = _zeropower_float64
    try:
        yield
    finally:
        torch_muon._zeropower_via_newtonschulz = original


def muon_case(name, muon_kw, adamw_kw, *, bf16=False):
    def make(params):
        return [
            torch.optim.Muon([params["w"]], **muon_kw),
            torch.optim.AdamW([params["b"]], foreach=False, **adamw_kw),
        ]

    with contextlib.nullcontext() if bf16 else _float64_newton_schulz():
        out = run(make)
    kwargs = {k: v for k, v in muon_kw.items() if k != "lr"}
    adamw = {
        "learning_rate": adamw_kw["lr"],
        "b1": adamw_kw["betas"][0],
        "b2": adamw_kw["betas"][1],
        "eps": adamw_kw["eps"],
        "weight_decay": adamw_kw["weight_decay"],
    }
    kwargs = {"learning_rate": muon_kw["lr"], **kwargs, "adamw": adamw}
    if bf16:
        kwargs["ns_dtype"] = "bfloat16"
    spec = {"optimizer": "muon", "kwargs": kwargs}
    ref = "torch.optim.Muon (w) + torch.optim.AdamW (b)"
    if not bf16:
        ref += ", Newton-Schulz in float64"
    return {
        "name": name,
        "reference": ref,
        "reference_kwargs": {"muon": muon_kw, "adamw": adamw_kw},
        "gradxform": spec,
        **out,
    }


def rprop_case(name, **kw):
    out = run(lambda params: [torch.optim.Rprop(params.values(), foreach=False, **kw)])
    kwargs = {"learning_rate": kw["lr"], "etas": kw["etas"], "step_sizes": kw["step_sizes"]}
    return {
        "name": name,
        "reference": "torch.optim.Rprop",
        "reference_kwargs": kw,
        "gradxform": {"optimizer": "rprop", "kwargs": kwargs},
        **out,
    }


def asgd_case(name, **kw):
    def eval_params(opts, params):
        return {k: opts[0].state[p]["ax"] for k, p in params.items()}

    out = run(
        lambda params: [torch.optim.ASGD(params.values(), foreach=False, **kw)],
        eval_params=eval_params,
    )
    kwargs = {"learning_rate": kw["lr"], **{k: v for k, v in kw.items() if k != "lr"}}
    return {
        "name": name,
        "reference": "torch.optim.ASGD (eval: state['ax'])",
        "reference_kwargs": kw,
        "gradxform": {"optimizer": "asgd", "kwargs": kwargs},
        **out,
    }


def muon_kw(**kw):
    base = dict(
        lr=0.02,
        weight_decay=0.1,
        momentum=0.95,
        nesterov=True,
        ns_coefficients=NS,
        eps=1e-7,
        ns_steps=5,
        adjust_lr_fn=None,
    )
    return {**base, **kw}


ADAMW = dict(lr=0.01, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01, amsgrad=False)

CASES = [
    muon_case("muon_nesterov", muon_kw(), ADAMW),
    muon_case("muon_plain_no_wd", muon_kw(nesterov=False, momentum=0.9, weight_decay=0.0), ADAMW),
    muon_case(
        "muon_match_rms_adamw_3_steps",
        muon_kw(adjust_lr_fn="match_rms_adamw", ns_steps=3, weight_decay=0.05),
        dict(ADAMW, lr=0.05, betas=[0.8, 0.99], weight_decay=0.1),
    ),
    # momentum < 0.5: torch's lerp takes its other formula
    muon_case(
        "muon_original_low_momentum",
        muon_kw(adjust_lr_fn="original", momentum=0.3, ns_steps=7, eps=1e-3),
        ADAMW,
    ),
    # stock torch: Newton-Schulz in bfloat16, against ns_dtype="bfloat16"
    muon_case("muon_bf16", muon_kw(), ADAMW, bf16=True),
    rprop_case("rprop_default", lr=0.01, etas=[0.5, 1.2], step_sizes=[1e-6, 50]),
    rprop_case("rprop_bounded", lr=0.1, etas=[0.3, 1.5], step_sizes=[1e-3, 0.2]),
    asgd_case("asgd_no_averaging", lr=0.05, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0),
    asgd_case("asgd_t0_5_wd", lr=0.05, lambd=1e-3, alpha=0.75, t0=5.0, weight_decay=0.01),
    asgd_case("asgd_t0_0", lr=0.02, lambd=0.1, alpha=0.5, t0=0.0, weight_decay=0.0),
]

if __name__ == "__main__":
    write(
        "torch_new",
        "torch.optim Muon (with AdamW on the non-matrix leaf), Rprop and ASGD, float64, "
        "single-tensor implementations",
        {},
        CASES,
    )

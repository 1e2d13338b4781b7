"""Record AdaBelief, Yogi, Adan and SM3 trajectories from their reference packages.

Run from the repository root, in an environment with torch 2.13.0, numpy,
``adabelief-pytorch==0.2.1`` and ``pytorch_optimizer==4.1.0`` (none of them is a
dependency of gradxform)::

    python tests/reference/record_adamlike.py

It writes ``tests/reference/adamlike_trajectories.json``, replayed in float64 by
``tests/test_reference_parity.py``. Every hyperparameter is explicit on both sides, so
neither library's defaults matter. pytorch_optimizer runs its per-parameter path
(``foreach=False``). Mappings:

* ``adabelief_pytorch.AdaBelief(lr, betas, eps, weight_decay, weight_decouple, rectify)``
  -> ``gx.adabelief(learning_rate, b1, b2, eps, eps_root=eps, weight_decay,
  decoupled_weight_decay, rectify)`` (its single eps is added both to s and to the root);
* ``pytorch_optimizer.Yogi(initial_accumulator=...)`` -> ``gx.yogi(initial_accumulator_value=...)``;
* ``pytorch_optimizer.Adan(betas=(b1, b2, b3), weight_decouple=True)`` -> ``gx.adan``
  (decay-rate convention on both sides; only the decoupled weight decay is offered);
* ``pytorch_optimizer.SM3(momentum=0.0, beta=0.0)`` -> ``gx.sm3(momentum=None,
  beta=None)`` (its 0 switches the term off; a gradxform 0 would not).
"""

from __future__ import annotations

from importlib import metadata

from _problem import run, write
from adabelief_pytorch import AdaBelief
from pytorch_optimizer import SM3, Adan, Yogi


def _adabelief(name, lr, betas, eps, wd, decouple, rectify):
    ref_kwargs = dict(
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=wd,
        amsgrad=False,
        weight_decouple=decouple,
        fixed_decay=False,
        rectify=rectify,
        degenerated_to_sgd=True,
        print_change_log=False,
    )
    gx_kwargs = dict(
        learning_rate=lr,
        b1=betas[0],
        b2=betas[1],
        eps=eps,
        eps_root=eps,
        weight_decay=wd if wd else None,
        decoupled_weight_decay=decouple,
        rectify=rectify,
    )
    out = run(lambda p: [AdaBelief(list(p.values()), **ref_kwargs)])
    return _case(name, "adabelief_pytorch.AdaBelief", ref_kwargs, "adabelief", gx_kwargs, out)


def _case(name, reference, ref_kwargs, gx_name, gx_kwargs, out):
    ref_kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in ref_kwargs.items()}
    return {
        "name": name,
        "reference": reference,
        "reference_kwargs": ref_kwargs,
        "gradxform": {"optimizer": gx_name, "kwargs": gx_kwargs},
        **out,
    }


def _yogi(name, lr, betas, init, eps, wd, decouple):
    ref_kwargs = dict(
        lr=lr,
        betas=betas,
        initial_accumulator=init,
        weight_decay=wd,
        weight_decouple=decouple,
        fixed_decay=False,
        eps=eps,
        maximize=False,
        foreach=False,
    )
    gx_kwargs = dict(
        learning_rate=lr,
        b1=betas[0],
        b2=betas[1],
        eps=eps,
        initial_accumulator_value=init,
        weight_decay=wd if wd else None,
        decoupled_weight_decay=decouple,
    )
    out = run(lambda p: [Yogi(list(p.values()), **ref_kwargs)])
    return _case(name, "pytorch_optimizer.Yogi", ref_kwargs, "yogi", gx_kwargs, out)


def _adan(name, lr, betas, eps, wd):
    ref_kwargs = dict(
        lr=lr,
        betas=betas,
        weight_decay=wd,
        weight_decouple=True,
        max_grad_norm=0.0,
        foreach=False,
        eps=eps,
        maximize=False,
    )
    gx_kwargs = dict(
        learning_rate=lr,
        b1=betas[0],
        b2=betas[1],
        b3=betas[2],
        eps=eps,
        eps_root=0.0,
        weight_decay=wd if wd else None,
    )
    out = run(lambda p: [Adan(list(p.values()), **ref_kwargs)])
    return _case(name, "pytorch_optimizer.Adan", ref_kwargs, "adan", gx_kwargs, out)


def _sm3(name, lr, momentum, beta, eps):
    ref_kwargs = dict(lr=lr, momentum=momentum, beta=beta, eps=eps, maximize=False, foreach=False)
    gx_kwargs = dict(
        learning_rate=lr,
        momentum=momentum if momentum else None,
        beta=beta if beta else None,
        eps=eps,
    )
    out = run(lambda p: [SM3(list(p.values()), **ref_kwargs)])
    return _case(name, "pytorch_optimizer.SM3", ref_kwargs, "sm3", gx_kwargs, out)


def main():
    cases = [
        _adabelief("adabelief_plain", 0.05, (0.9, 0.999), 1e-16, 0.0, True, False),
        _adabelief("adabelief_betas_eps_wd", 0.02, (0.8, 0.99), 1e-8, 0.1, True, False),
        _adabelief("adabelief_coupled_wd", 0.05, (0.9, 0.999), 1e-12, 0.05, False, False),
        # rho_t < 5 for the first steps (SGD with momentum), >= 5 after: both branches.
        _adabelief("adabelief_rectify", 0.05, (0.9, 0.999), 1e-16, 0.0, True, True),
        _adabelief("adabelief_rectify_wd", 0.02, (0.8, 0.9), 1e-8, 0.1, True, True),
        _yogi("yogi_plain", 0.05, (0.9, 0.999), 1e-6, 1e-3, 0.0, True),
        _yogi("yogi_b2_init_eps", 0.02, (0.8, 0.9), 0.1, 1e-6, 0.0, True),
        _yogi("yogi_decoupled_wd", 0.05, (0.9, 0.999), 1e-6, 1e-3, 0.1, True),
        _yogi("yogi_coupled_wd", 0.05, (0.9, 0.999), 1e-6, 1e-3, 0.05, False),
        _adan("adan_plain", 0.05, (0.98, 0.92, 0.99), 1e-8, 0.0),
        _adan("adan_betas", 0.02, (0.9, 0.5, 0.999), 1e-6, 0.0),
        _adan("adan_wd", 0.05, (0.98, 0.92, 0.99), 1e-8, 0.05),
        _sm3("sm3_plain", 0.1, 0.0, 0.0, 1e-30),
        _sm3("sm3_momentum", 0.1, 0.9, 0.0, 1e-30),
        _sm3("sm3_beta_momentum", 0.05, 0.5, 0.9, 1e-8),
    ]
    write(
        "adamlike",
        "AdaBelief (adabelief-pytorch), Yogi, Adan and SM3 (pytorch_optimizer) trajectories "
        "for gradxform's adabelief, yogi, adan and sm3.",
        {
            "adabelief-pytorch": metadata.version("adabelief-pytorch"),
            "pytorch_optimizer": metadata.version("pytorch_optimizer"),
        },
        cases,
    )


if __name__ == "__main__":
    main()
